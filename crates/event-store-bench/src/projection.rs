//! Projections: catch-up throughput of a transactional projection into a SQL table, against a
//! plain loop that reads the same rows and upserts the same table in the same batch size (with
//! its checkpoint in the same transaction); and the live lag under 8 writers.

// Each workload reads best as one straight sequence of steps.
#![allow(clippy::too_many_lines)]

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use event_store::projection::{Projection, ProjectionStore, RunnerOptions, Tables, Target};
use event_store::{BoxError, EventStore, ExpectedVersion, Position, Query, RecordedEvent, Store};

use crate::error::{Result, ensure};
use crate::report::{Goal, Report, Sizes, ms, percentiles, rate};
use crate::workload::event;

/// The batch size of both the runner and the plain loop.
const BATCH: usize = 500;

/// Lags recorded by the projection's handler (when it applies an event: the time since the
/// event's time, which the writer set just before its append).
type Lags = Arc<Mutex<Vec<Duration>>>;

/// Quantity and count per SKU: one upsert per event.
#[derive(Clone, Default)]
struct SkuTotals {
    lags: Option<Lags>,
}

impl SkuTotals {
    fn record(&self, e: &RecordedEvent) {
        if let Some(lags) = &self.lags {
            let lag = (chrono::Utc::now() - e.context.time)
                .to_std()
                .unwrap_or_default();
            lags.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(lag);
        }
    }
}

impl Projection for SkuTotals {
    const NAME: &'static str = "bench-sku-totals";

    fn query(&self) -> Query {
        Query::all().namespace("bench")
    }
}

fn sku(e: &RecordedEvent) -> std::result::Result<(&str, i64), BoxError> {
    let sku = e.data["sku"].as_str().ok_or("no sku")?;
    let quantity = e.data["quantity"].as_i64().ok_or("no quantity")?;
    Ok((sku, quantity))
}

impl event_store_postgres::PgProjection for SkuTotals {
    const TABLES: &'static [&'static str] = &["sku_totals"];

    async fn create(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tables: &Tables,
    ) -> std::result::Result<(), BoxError> {
        let t = tables.get("sku_totals")?;
        tx.batch_execute(&format!(
            "CREATE TABLE {t} (sku text PRIMARY KEY, quantity bigint NOT NULL, events bigint NOT NULL)"
        ))
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tables: &Tables,
        e: &RecordedEvent,
    ) -> std::result::Result<(), BoxError> {
        let t = tables.get("sku_totals")?;
        let (sku, quantity) = sku(e)?;
        let stmt = tx.prepare_cached(&pg_upsert(t)).await?;
        tx.execute(&stmt, &[&sku, &quantity]).await?;
        self.record(e);
        Ok(())
    }
}

impl event_store_sqlite::SqliteProjection for SkuTotals {
    const TABLES: &'static [&'static str] = &["sku_totals"];

    fn create(
        &self,
        conn: &rusqlite::Connection,
        tables: &Tables,
    ) -> std::result::Result<(), BoxError> {
        let t = tables.get("sku_totals")?;
        conn.execute_batch(&format!(
            "CREATE TABLE {t} (sku TEXT PRIMARY KEY, quantity INTEGER NOT NULL, events INTEGER NOT NULL)"
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        conn: &rusqlite::Connection,
        tables: &Tables,
        e: &RecordedEvent,
    ) -> std::result::Result<(), BoxError> {
        let t = tables.get("sku_totals")?;
        let (sku, quantity) = sku(e)?;
        conn.prepare_cached(&sqlite_upsert(t))?
            .execute((sku, quantity))?;
        self.record(e);
        Ok(())
    }
}

fn pg_upsert(table: &str) -> String {
    format!(
        "INSERT INTO {table} (sku, quantity, events) VALUES ($1, $2, 1)
         ON CONFLICT (sku) DO UPDATE
         SET quantity = {table}.quantity + excluded.quantity, events = {table}.events + 1"
    )
}

fn sqlite_upsert(table: &str) -> String {
    format!(
        "INSERT INTO {table} (sku, quantity, events) VALUES (?1, ?2, 1)
         ON CONFLICT (sku) DO UPDATE
         SET quantity = quantity + excluded.quantity, events = events + 1"
    )
}

fn options() -> RunnerOptions {
    RunnerOptions::default().batch(BATCH, Duration::from_millis(10))
}

/// Appends `n` events in batches of 100 over 1 000 streams; returns the last position.
async fn seed<S: Store + Clone>(store: &S, n: usize) -> Result<Position> {
    let es = EventStore::from_store(store.clone());
    let mut last = Position::START;
    for b in 0..n.div_ceil(100) {
        let events = (0..100).map(|i| event(b * 100 + i)).collect();
        let saved = es
            .append(
                &format!("sku-stream-{}", b % 1000),
                ExpectedVersion::Any,
                events,
            )
            .await?;
        last = saved.last_position().unwrap_or(last);
    }
    Ok(last)
}

/// 8 writers append one event at a time, each pausing 5 ms between appends, `total` events in
/// all, while the projection (already running and caught up) applies them; returns the lags
/// it recorded (p50, p99).
async fn live_lag<S: Store + Clone>(
    store: &S,
    lags: &Lags,
    total: usize,
) -> Result<(Duration, Duration)> {
    lags.lock().unwrap_or_else(PoisonError::into_inner).clear();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let es = EventStore::from_store(store.clone());
            tokio::spawn(async move {
                let mut last = Position::START;
                for i in 0..total / 8 {
                    let saved = es
                        .append(&format!("live-{w}"), ExpectedVersion::Any, vec![event(i)])
                        .await?;
                    last = saved.last_position().unwrap_or(last);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<Position, event_store::Error>(last)
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = lags.lock().unwrap_or_else(PoisonError::into_inner).len();
        if seen >= total / 8 * 8 {
            break;
        }
        ensure(
            Instant::now() < deadline,
            format!(
                "the live projection applied {seen} of {} events",
                total / 8 * 8
            ),
        )?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let samples = std::mem::take(&mut *lags.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(percentiles(samples))
}

/// Runs the projection through `target` over the `n` seeded events (up to `head`), timing the
/// catch-up, then measures its live lag; returns the catch-up rate and the lag's (p50, p99).
async fn run_projection<S, T>(
    store: &S,
    target: impl FnOnce(SkuTotals) -> T,
    n: usize,
    head: Position,
    sizes: Sizes,
) -> Result<(f64, (Duration, Duration))>
where
    S: ProjectionStore,
    T: Target<S>,
{
    let lags = Lags::default();
    let projection = SkuTotals {
        lags: Some(Arc::clone(&lags)),
    };
    let es = EventStore::from_store(store.clone());
    let t = Instant::now();
    let runner = es
        .runner(target(projection))
        .with_options(options())
        .spawn();
    let took = caught_up(&runner, n, t).await?;
    es.projections()
        .wait_for(SkuTotals::NAME, head, Duration::from_secs(600))
        .await?;
    let lag = live_lag(store, &lags, sizes.live).await;
    runner.stop().await?;
    Ok((rate(n, took), lag?))
}

/// The time from `start` until the runner has applied `n` events (its counter is bumped after
/// each batch commits; read every millisecond).
async fn caught_up(
    runner: &event_store::projection::RunnerHandle,
    n: usize,
    start: Instant,
) -> Result<Duration> {
    let deadline = start + Duration::from_secs(600);
    loop {
        let applied = runner
            .metrics()
            .applied
            .load(std::sync::atomic::Ordering::Relaxed);
        if applied >= n as u64 {
            return Ok(start.elapsed());
        }
        ensure(
            Instant::now() < deadline && !runner.is_finished(),
            format!("the runner applied {applied} of {n} events"),
        )?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn add_figures(
    report: &mut Report,
    backend: &str,
    n: usize,
    ours: f64,
    baseline: f64,
    lag: (Duration, Duration),
) {
    report.add(
        "projection_catch_up",
        &format!("projection catch-up ({n} events, transactional)"),
        backend,
        ours,
        "events/s",
        Some(baseline),
        true,
        Goal::Ratio(0.7),
    );
    report.add(
        "projection_lag_p50",
        "projection live lag p50 (8 writers)",
        backend,
        ms(lag.0),
        "ms",
        None,
        false,
        Goal::None,
    );
    report.add(
        "projection_lag_p99",
        "projection live lag p99 (8 writers)",
        backend,
        ms(lag.1),
        "ms",
        None,
        false,
        Goal::AtMost(100.0),
    );
}

/// PostgreSQL: the runner against a plain loop on its own connection.
pub(crate) async fn pg(report: &mut Report, url: &str, sizes: Sizes) -> Result<()> {
    let mut admin = crate::postgres::pg_client(url).await?;
    let schema = format!(
        "event_store_bench_proj_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let mut config = event_store_postgres::PgConfig::with_schema(&schema);
    config.pool_size = 16;
    let store = event_store_postgres::PgStore::connect(url, config).await?;
    store.migrate().await?;
    let result = async {
        let n = sizes.projection;
        let head = seed(&store, n).await?;
        admin
            .batch_execute(&format!(
                "SET search_path TO \"{schema}\";
                 CREATE TABLE baseline_totals (sku text PRIMARY KEY, quantity bigint NOT NULL,
                                               events bigint NOT NULL);
                 CREATE TABLE baseline_checkpoint (id int PRIMARY KEY, tx bigint NOT NULL,
                                                   seq bigint NOT NULL);
                 INSERT INTO baseline_checkpoint VALUES (1, 0, 0);"
            ))
            .await?;

        admin.batch_execute("VACUUM ANALYZE events").await?;
        // The plain loop: read a page after the checkpoint, upsert each row, save the
        // checkpoint, commit.
        let read = admin
            .prepare(
                "SELECT tx, seq, id, stream, version, namespace, event_type, data, context
                   FROM events
                  WHERE (tx, seq) > ($1, $2) AND namespace = 'bench'
                    AND tx < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint)
                  ORDER BY tx, seq LIMIT $3",
            )
            .await?;
        let upsert = admin.prepare(&pg_upsert("baseline_totals")).await?;
        let save = admin
            .prepare("UPDATE baseline_checkpoint SET tx = $1, seq = $2 WHERE id = 1")
            .await?;
        let t = Instant::now();
        let (mut tx, mut seq) = (0_i64, 0_i64);
        let mut applied = 0;
        loop {
            let limit = i64::try_from(BATCH).unwrap_or(500);
            let rows = admin.query(&read, &[&tx, &seq, &limit]).await?;
            let Some(last) = rows.last() else { break };
            (tx, seq) = (last.get(0), last.get(1));
            let t = admin.transaction().await?;
            for row in &rows {
                let data: serde_json::Value = row.get(7);
                let _context: serde_json::Value = row.get(8);
                let sku = data["sku"].as_str().unwrap_or_default();
                let quantity = data["quantity"].as_i64().unwrap_or_default();
                t.execute(&upsert, &[&sku, &quantity]).await?;
            }
            t.execute(&save, &[&tx, &seq]).await?;
            t.commit().await?;
            applied += rows.len();
        }
        let baseline = rate(applied, t.elapsed());
        ensure(
            applied == n,
            format!("the plain loop applied {applied} of {n}"),
        )?;

        let (ours, lag) = run_projection(
            &store,
            event_store_postgres::Transactional::new,
            n,
            head,
            sizes,
        )
        .await?;
        let counted: i64 = admin
            .query_one(
                "SELECT coalesce(sum(events), 0)::bigint FROM sku_totals",
                &[],
            )
            .await?
            .get(0);
        ensure(
            counted == i64::try_from(n + sizes.live / 8 * 8).unwrap_or(-1),
            format!("the read model counted {counted} events"),
        )?;
        add_figures(report, "postgres", n, ours, baseline, lag);
        Ok(())
    }
    .await;
    drop(store);
    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    result
}

/// SQLite: the runner against a plain rusqlite loop on the same file.
pub(crate) async fn sqlite(report: &mut Report, dir: &Path, sizes: Sizes) -> Result<()> {
    let path = dir.join("projection.db");
    let store = event_store_sqlite::SqliteStore::open(&path).await?;
    let n = sizes.projection;
    let head = seed(&store, n).await?;

    let baseline = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || -> Result<f64> {
            let mut c = rusqlite::Connection::open(&path)?;
            c.busy_timeout(Duration::from_secs(30))?;
            c.execute_batch(
                "PRAGMA synchronous = FULL;
                 CREATE TABLE baseline_totals (sku TEXT PRIMARY KEY, quantity INTEGER NOT NULL,
                                               events INTEGER NOT NULL);
                 CREATE TABLE baseline_checkpoint (id INTEGER PRIMARY KEY, position INTEGER NOT NULL);
                 INSERT INTO baseline_checkpoint VALUES (1, 0);",
            )?;
            let t = Instant::now();
            let mut at = 0_i64;
            let mut applied = 0;
            loop {
                let rows: Vec<(i64, String)> = {
                    let mut read = c.prepare_cached(
                        "SELECT position, id, stream, version, namespace, event_type, data, context
                           FROM events WHERE position > ?1 AND +namespace = 'bench'
                          ORDER BY position LIMIT ?2",
                    )?;
                    let limit = i64::try_from(BATCH).unwrap_or(500);
                    read.query_map((at, limit), |r| Ok((r.get(0)?, r.get(6)?)))?
                        .collect::<rusqlite::Result<_>>()?
                };
                let Some(last) = rows.last() else { break };
                at = last.0;
                let t = c.transaction()?;
                {
                    let mut upsert = t.prepare_cached(&sqlite_upsert("baseline_totals"))?;
                    for (_, data) in &rows {
                        let data: serde_json::Value = serde_json::from_str(data)?;
                        let sku = data["sku"].as_str().unwrap_or_default();
                        let quantity = data["quantity"].as_i64().unwrap_or_default();
                        upsert.execute((sku, quantity))?;
                    }
                    t.execute("UPDATE baseline_checkpoint SET position = ?1 WHERE id = 1", [at])?;
                }
                t.commit()?;
                applied += rows.len();
            }
            ensure(applied == n, format!("the plain loop applied {applied} of {n}"))?;
            Ok(rate(applied, t.elapsed()))
        })
        .await??
    };

    let (ours, lag) = run_projection(
        &store,
        event_store_sqlite::Transactional::new,
        n,
        head,
        sizes,
    )
    .await?;
    let counted: i64 = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || -> Result<i64> {
            let c = rusqlite::Connection::open(&path)?;
            Ok(
                c.query_row("SELECT coalesce(sum(events), 0) FROM sku_totals", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await??
    };
    ensure(
        counted == i64::try_from(n + sizes.live / 8 * 8).unwrap_or(-1),
        format!("the read model counted {counted} events"),
    )?;
    add_figures(report, "sqlite", n, ours, baseline, lag);
    Ok(())
}
