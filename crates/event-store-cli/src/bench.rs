//! `event-store bench`: every figure next to the same run's hardware baseline.
//!
//! Baselines do the same work with nothing of ours in between: plain SQL `INSERT`s into a table
//! of the same shape (`LIKE events INCLUDING ALL`: the same columns, constraints and indexes) and
//! a plain `SELECT` of the same rows on the same PostgreSQL; plain rusqlite on a file with the
//! same schema and pragmas; raw lapin publishes with confirms. Ratios are oriented so that
//! higher is better.

// Each workload reads best as one straight sequence of steps.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use event_store::{
    Aggregate, Cache, Event, EventStore, ExpectedVersion, MemoryCache, MemoryStore, NewEvent,
    NoCache, NoEmitter, Position, Query, Store,
};
use event_store_amqp::{AmqpConfig, AmqpEmitter, Relay};
use event_store_postgres::{PgCache, PgConfig, PgStore};
use event_store_sqlite::{SqliteCache, SqliteStore};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cli::BenchArgs;

/// One measured figure (one element of the `--json` array).
#[derive(Debug, Clone, Serialize)]
struct Figure {
    workload: String,
    backend: String,
    value: f64,
    unit: &'static str,
    baseline: Option<f64>,
    ratio: Option<f64>,
    target: Option<String>,
}

impl Figure {
    /// The baseline, ratio and target as printed (`-` where there is none).
    fn cells(&self) -> (String, String, String) {
        (
            self.baseline.map_or("-".to_owned(), |b| format!("{b:.1}")),
            self.ratio.map_or("-".to_owned(), |r| format!("{r:.2}")),
            self.target.clone().unwrap_or_default(),
        )
    }
}

#[derive(Clone, Copy)]
struct Sizes {
    single: usize,
    concurrent: usize,
    batches: usize,
    stream: usize,
    relay: usize,
    latency: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                single: 200,
                concurrent: 800,
                batches: 40,
                stream: 10_000,
                relay: 5_000,
                latency: 100,
            }
        } else {
            Self {
                single: 2_000,
                concurrent: 8_000,
                batches: 400,
                stream: 100_000,
                relay: 50_000,
                latency: 1_000,
            }
        }
    }
}

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(namespace = "bench")]
struct Moved {
    sku: String,
    quantity: i64,
    note: String,
}

#[derive(Default, Clone, Serialize, Deserialize)]
struct Total {
    quantity: i64,
    count: u64,
}

impl Aggregate for Total {
    const NAME: &'static str = "bench-total";
    type Event = Moved;
    type Args = str;
    fn query(stream: &str) -> Query {
        Query::stream(stream)
    }
    fn apply(&mut self, e: &Moved) {
        self.quantity += e.quantity;
        self.count += 1;
    }
}

fn payload(i: usize) -> Value {
    json!({"sku": format!("sku-{}", i % 1000), "quantity": i % 17, "note": "n".repeat(100)})
}

fn event(i: usize) -> NewEvent {
    NewEvent::new("bench", "Moved", payload(i))
}

fn best(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Report {
    figures: Vec<Figure>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        workload: &str,
        backend: &str,
        value: f64,
        unit: &'static str,
        baseline: Option<f64>,
        higher_is_better: bool,
        target: Option<&str>,
    ) {
        let ratio = baseline.map(|b| {
            if higher_is_better {
                value / b
            } else {
                b / value
            }
        });
        let f = Figure {
            workload: workload.to_owned(),
            backend: backend.to_owned(),
            value,
            unit,
            baseline,
            ratio,
            target: target.map(str::to_owned),
        };
        let (baseline, ratio, target) = f.cells();
        eprintln!(
            "  {:<40} {:<9} {:>12.1} {:<8} {baseline:>12} {ratio:>7} {target}",
            f.workload, f.backend, f.value, f.unit
        );
        self.figures.push(f);
    }
}

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    let sizes = Sizes::new(args.quick);
    let wants = |b: &str| args.only.is_empty() || args.only.iter().any(|o| o == b);
    let mut report = Report {
        figures: Vec::new(),
    };
    eprintln!(
        "  {:<40} {:<9} {:>12} {:<8} {:>12} {:>7} target",
        "WORKLOAD", "BACKEND", "VALUE", "UNIT", "BASELINE", "RATIO"
    );
    if wants("memory") {
        let store = MemoryStore::new();
        store_workloads(
            &mut report,
            "memory",
            &store,
            MemoryCache::new(),
            sizes,
            None,
        )
        .await?;
    }
    if wants("sqlite") {
        let dir = std::env::temp_dir().join(format!(
            "event-store-bench-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let result = sqlite(&mut report, &dir, sizes).await;
        let _ = std::fs::remove_dir_all(&dir);
        result?;
    }
    if wants("postgres") {
        match postgres(&mut report, &args.pg, sizes).await {
            Ok(()) => {}
            Err(e) if format!("{e:#}").contains("cannot reach") => {
                eprintln!("  postgres: skipped ({e:#})");
            }
            Err(e) => return Err(e),
        }
    }
    if wants("amqp") {
        match amqp(&mut report, &args.amqp, sizes).await {
            Ok(()) => {}
            Err(e) if format!("{e:#}").contains("cannot reach") => {
                eprintln!("  amqp: skipped ({e:#})");
            }
            Err(e) => return Err(e),
        }
    }
    print_table(&report.figures)?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.figures)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn print_table(figures: &[Figure]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| workload | backend | value | baseline | ratio | target |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---|")?;
    for f in figures {
        let (baseline, ratio, target) = f.cells();
        writeln!(
            out,
            "| {} | {} | {:.1} {} | {baseline} | {ratio} | {target} |",
            f.workload, f.backend, f.value, f.unit
        )?;
    }
    Ok(())
}

/// The same-run baselines of a SQL backend, in events/s (reads: events/s of a plain SELECT).
#[derive(Default)]
struct Baselines {
    single: Option<f64>,
    concurrent: Option<f64>,
    batch: Option<f64>,
    read_log: Option<f64>,
    read_stream: Option<f64>,
}

/// Appends, reads and aggregates on one store; `baselines` measures the same on plain SQL, after
/// the store's own run (so the reads see the same rows).
async fn store_workloads<S: Store + Clone, C: Cache>(
    report: &mut Report,
    backend: &str,
    store: &S,
    cache: C,
    sizes: Sizes,
    baselines: Option<
        &mut dyn FnMut(&'static str) -> futures::future::BoxFuture<'_, Result<Option<f64>>>,
    >,
) -> Result<()> {
    let es = EventStore::new(store.clone(), NoCache, NoEmitter);
    // 1 event per append, 1 writer.
    let t = Instant::now();
    for i in 0..sizes.single {
        es.append(
            &format!("single-{}", i % 100),
            ExpectedVersion::Any,
            vec![event(i)],
        )
        .await?;
    }
    let single = rate(sizes.single, t.elapsed());
    // 1 event per append, 8 writers on distinct streams.
    let t = Instant::now();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let es = es.clone();
            let n = sizes.concurrent / 8;
            tokio::spawn(async move {
                for i in 0..n {
                    es.append(&format!("writer-{w}"), ExpectedVersion::Any, vec![event(i)])
                        .await?;
                }
                Ok::<(), event_store::Error>(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    let concurrent = rate(sizes.concurrent / 8 * 8, t.elapsed());
    // 100 events per append.
    let t = Instant::now();
    for b in 0..sizes.batches {
        let events = (0..100).map(|i| event(b * 100 + i)).collect();
        es.append(&format!("batch-{}", b % 10), ExpectedVersion::Any, events)
            .await?;
    }
    let batch = rate(sizes.batches * 100, t.elapsed());
    // One long stream (filled in batches of 1000; not measured).
    for _ in 0..sizes.stream / 1000 {
        let events = (0..1000_i64)
            .map(|i| {
                NewEvent::from_event(&Moved {
                    sku: "s".into(),
                    quantity: i % 7,
                    note: "n".repeat(100),
                })
            })
            .collect::<event_store::Result<Vec<_>>>()?;
        es.append("long", ExpectedVersion::Any, events).await?;
    }
    // Reads. The backend settles first (PostgreSQL: VACUUM ANALYZE of the scratch tables), then
    // one untimed pass pays the one-time costs of fresh rows (hint bits, page cache); ours and
    // the baseline then alternate, and each keeps its better run, so background work (the
    // autovacuum, the checkpointer) weighs on neither more than the other.
    let mut base = Baselines::default();
    let mut measure = baselines;
    if let Some(m) = measure.as_mut() {
        m("settle").await?;
    }
    let warm: usize = es.read_all(Position::START).count().await;
    anyhow::ensure!(warm > 0, "nothing to read");
    let (mut read_log, mut read_stream, mut log_events, mut stream_events) =
        (0f64, 0f64, 0usize, 0usize);
    for _ in 0..2 {
        let started = Instant::now();
        log_events = 0;
        let mut log = Box::pin(es.read_all(Position::START));
        while let Some(e) = log.next().await {
            e?;
            log_events += 1;
        }
        read_log = read_log.max(rate(log_events, started.elapsed()));
        let started = Instant::now();
        stream_events = 0;
        let mut stream = Box::pin(es.read_stream("long", 0, event_store::Direction::Forward));
        while let Some(e) = stream.next().await {
            e?;
            stream_events += 1;
        }
        read_stream = read_stream.max(rate(stream_events, started.elapsed()));
        if let Some(f) = measure.as_mut() {
            let (a, b) = (f("read_log").await?, f("read_stream").await?);
            base.read_log = best(base.read_log, a);
            base.read_stream = best(base.read_stream, b);
        }
    }
    // Aggregates: cold (nothing cached; median of three) and warm (10 new events; median of 20).
    let cached = EventStore::new(store.clone(), cache, NoEmitter);
    let mut colds = Vec::new();
    let t = Instant::now();
    let first = cached.fold::<Total>("long").await?;
    colds.push(t.elapsed());
    for _ in 0..2 {
        let t = Instant::now();
        es.aggregate::<Total>("long").await?;
        colds.push(t.elapsed());
    }
    colds.sort();
    let mut warms = Vec::new();
    for round in 0..20 {
        let events = (0..10).map(|i| event(round * 10 + i)).collect();
        es.append("long", ExpectedVersion::Any, events).await?;
        let t = Instant::now();
        let warm = cached.fold::<Total>("long").await?;
        warms.push(t.elapsed());
        anyhow::ensure!(warm.from_cache, "the warm fold did not use the cache");
    }
    warms.sort();
    let (cold, warm) = (colds[1], warms[warms.len() / 2]);
    anyhow::ensure!(
        first.events_read >= sizes.stream as u64,
        "the cold fold read {} events",
        first.events_read
    );

    if let Some(f) = measure.as_mut() {
        base.single = f("single").await?;
        base.concurrent = f("concurrent").await?;
        base.batch = f("batch").await?;
    }
    let sqlite = backend == "sqlite";
    report.add(
        "append 1 event/call, 1 writer",
        backend,
        single,
        "ev/s",
        base.single,
        true,
        (backend == "postgres").then_some(">= 0.8"),
    );
    report.add(
        "append 1 event/call, 8 writers",
        backend,
        concurrent,
        "ev/s",
        base.concurrent,
        true,
        (backend == "postgres").then_some(">= 0.8"),
    );
    report.add(
        "append 100 events/call",
        backend,
        batch,
        "ev/s",
        base.batch,
        true,
        (backend == "postgres" || sqlite).then_some(">= 0.7"),
    );
    report.add(
        &format!("read the global log ({log_events} events)"),
        backend,
        read_log,
        "ev/s",
        base.read_log,
        true,
        (backend == "postgres").then_some(">= 0.5"),
    );
    report.add(
        &format!("read one stream ({stream_events} events)"),
        backend,
        read_stream,
        "ev/s",
        base.read_stream,
        true,
        None,
    );
    report.add(
        &format!("aggregate cold ({} events)", sizes.stream),
        backend,
        ms(cold),
        "ms",
        None,
        false,
        None,
    );
    report.add(
        "aggregate warm (+10 events) vs cold",
        backend,
        ms(warm),
        "ms",
        Some(ms(cold)),
        false,
        Some(">= 50 (x faster)"),
    );
    Ok(())
}

async fn sqlite(report: &mut Report, dir: &Path, sizes: Sizes) -> Result<()> {
    let store = SqliteStore::open(dir.join("bench.db")).await?;
    let base_path = dir.join("baseline.db");
    let events_path = dir.join("bench.db");
    let mut measure = |what: &'static str| -> futures::future::BoxFuture<'_, Result<Option<f64>>> {
        let (base_path, events_path) = (base_path.clone(), events_path.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                sqlite_baseline(what, &base_path, &events_path, sizes).map(Some)
            })
            .await?
        })
    };
    store_workloads(
        report,
        "sqlite",
        &store,
        SqliteCache::new(&store),
        sizes,
        Some(&mut measure),
    )
    .await
}

fn sqlite_conn(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let c = rusqlite::Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(30))?;
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
    Ok(c)
}

const SQLITE_BASELINE_DDL: &str = "
CREATE TABLE IF NOT EXISTS baseline (
    position INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, stream TEXT NOT NULL,
    version INTEGER NOT NULL, namespace TEXT NOT NULL, event_type TEXT NOT NULL, data TEXT NOT NULL,
    context TEXT NOT NULL, time TEXT NOT NULL, UNIQUE (stream, version));
CREATE INDEX IF NOT EXISTS baseline_stream_position ON baseline (stream, position);
CREATE INDEX IF NOT EXISTS baseline_type_position ON baseline (namespace, event_type, position);
CREATE INDEX IF NOT EXISTS baseline_time ON baseline (time);";

const SQLITE_INSERT: &str = "INSERT INTO baseline (id, stream, version, namespace, event_type, data, context, time) VALUES (?1, ?2, ?3, 'bench', 'Moved', ?4, ?5, ?6)";

fn sqlite_row(
    c: &rusqlite::Connection,
    stream: &str,
    version: i64,
    i: usize,
) -> rusqlite::Result<usize> {
    let context = json!({"time": "2026-01-01T00:00:00.000000Z"}).to_string();
    c.prepare_cached(SQLITE_INSERT)?.execute(rusqlite::params![
        uuid::Uuid::now_v7().to_string(),
        stream,
        version,
        payload(i).to_string(),
        context,
        "2026-01-01T00:00:00.000000Z"
    ])
}

fn sqlite_baseline(what: &str, base: &Path, events: &Path, sizes: Sizes) -> Result<f64> {
    if what == "settle" {
        return Ok(0.0);
    }
    let c = sqlite_conn(base)?;
    c.execute_batch(SQLITE_BASELINE_DDL)?;
    let t = Instant::now();
    let n = match what {
        "single" => {
            for i in 0..sizes.single {
                sqlite_row(&c, &format!("single-{i}"), 0, i)?;
            }
            sizes.single
        }
        "concurrent" => {
            let threads: Vec<_> = (0..8)
                .map(|w| {
                    let base = base.to_path_buf();
                    let n = sizes.concurrent / 8;
                    std::thread::spawn(move || -> rusqlite::Result<()> {
                        let c = sqlite_conn(&base)?;
                        for i in 0..n {
                            sqlite_row(
                                &c,
                                &format!("writer-{w}"),
                                i64::try_from(i).unwrap_or(0),
                                i,
                            )?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for t in threads {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a baseline writer panicked"))??;
            }
            sizes.concurrent / 8 * 8
        }
        "batch" => {
            for b in 0..sizes.batches {
                c.execute_batch("BEGIN")?;
                for i in 0..100_usize {
                    sqlite_row(&c, &format!("batch-{b}"), i64::try_from(i).unwrap_or(0), i)?;
                }
                c.execute_batch("COMMIT")?;
            }
            sizes.batches * 100
        }
        "read_log" | "read_stream" => {
            let r = rusqlite::Connection::open(events)?;
            let (sql, stream): (&str, Option<&str>) = if what == "read_log" {
                (
                    "SELECT position, id, stream, version, namespace, event_type, data, context FROM events ORDER BY position",
                    None,
                )
            } else {
                (
                    "SELECT position, id, stream, version, namespace, event_type, data, context FROM events WHERE stream = ?1 ORDER BY version",
                    Some("long"),
                )
            };
            let mut stmt = r.prepare(sql)?;
            let mut rows = match stream {
                Some(s) => stmt.query([s])?,
                None => stmt.query([])?,
            };
            let mut n = 0;
            while let Some(row) = rows.next()? {
                // Decode what the store decodes: the JSON columns included.
                let _: (i64, String, String, i64) =
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                let data: Value = serde_json::from_str(&row.get::<_, String>(6)?)?;
                let context: Value = serde_json::from_str(&row.get::<_, String>(7)?)?;
                std::hint::black_box((data, context));
                n += 1;
            }
            return Ok(rate(n, t.elapsed()));
        }
        _ => 0,
    };
    Ok(rate(n, t.elapsed()))
}

async fn pg_client(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("cannot reach PostgreSQL")?;
    tokio::spawn(conn);
    Ok(client)
}

async fn postgres(report: &mut Report, url: &str, sizes: Sizes) -> Result<()> {
    let admin = pg_client(url).await?;
    let schema = format!(
        "event_store_bench_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let mut config = PgConfig::with_schema(&schema);
    config.pool_size = 16;
    let store = PgStore::connect(url, config).await?;
    store.migrate().await?;
    admin
        .batch_execute(&format!(
            "CREATE TABLE \"{schema}\".baseline (LIKE \"{schema}\".events INCLUDING ALL)"
        ))
        .await?;
    let result = {
        let url = url.to_owned();
        let schema = schema.clone();
        let mut measure =
            move |what: &'static str| -> futures::future::BoxFuture<'static, Result<Option<f64>>> {
                let (url, schema) = (url.clone(), schema.clone());
                Box::pin(async move { pg_baseline(what, &url, &schema, sizes).await.map(Some) })
            };
        store_workloads(
            report,
            "postgres",
            &store,
            PgCache::new(&store),
            sizes,
            Some(&mut measure),
        )
        .await
    };
    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    result
}

const PG_INSERT: &str = "INSERT INTO baseline (id, stream, version, namespace, event_type, data, context, time) VALUES ($1, $2, $3, 'bench', 'Moved', $4, $5, now())";
const PG_INSERT_MANY: &str = "INSERT INTO baseline (id, stream, version, namespace, event_type, data, context, time)
    SELECT id, $1, v, 'bench', 'Moved', d, c, now() FROM unnest($2::uuid[], $3::bigint[], $4::jsonb[], $5::jsonb[]) AS t(id, v, d, c)";

async fn pg_baseline(what: &str, url: &str, schema: &str, sizes: Sizes) -> Result<f64> {
    let client = |url: String, schema: String| async move {
        let c = pg_client(&url).await?;
        c.batch_execute(&format!("SET search_path TO \"{schema}\""))
            .await?;
        Ok::<_, anyhow::Error>(c)
    };
    let context = json!({"time": "2026-01-01T00:00:00.000000Z"});
    let c = client(url.to_owned(), schema.to_owned()).await?;
    if what == "settle" {
        c.batch_execute("VACUUM ANALYZE events").await?;
        return Ok(0.0);
    }
    let t = Instant::now();
    let n = match what {
        "single" => {
            let stmt = c.prepare(PG_INSERT).await?;
            for i in 0..sizes.single {
                c.execute(
                    &stmt,
                    &[
                        &uuid::Uuid::now_v7(),
                        &format!("single-{i}"),
                        &0i64,
                        &payload(i),
                        &context,
                    ],
                )
                .await?;
            }
            sizes.single
        }
        "concurrent" => {
            let mut clients = Vec::new();
            for _ in 0..8 {
                clients.push(client(url.to_owned(), schema.to_owned()).await?);
            }
            let t = Instant::now();
            let tasks: Vec<_> = clients
                .into_iter()
                .enumerate()
                .map(|(w, c)| {
                    let context = context.clone();
                    let n = sizes.concurrent / 8;
                    tokio::spawn(async move {
                        let stmt = c.prepare(PG_INSERT).await?;
                        for i in 0..n {
                            c.execute(
                                &stmt,
                                &[
                                    &uuid::Uuid::now_v7(),
                                    &format!("writer-{w}"),
                                    &i64::try_from(i).unwrap_or(0),
                                    &payload(i),
                                    &context,
                                ],
                            )
                            .await?;
                        }
                        Ok::<(), tokio_postgres::Error>(())
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            return Ok(rate(sizes.concurrent / 8 * 8, t.elapsed()));
        }
        "batch" => {
            let stmt = c.prepare(PG_INSERT_MANY).await?;
            for b in 0..sizes.batches {
                let ids: Vec<uuid::Uuid> = (0..100).map(|_| uuid::Uuid::now_v7()).collect();
                let versions: Vec<i64> = (0..100).collect();
                let data: Vec<Value> = (0..100).map(|i| payload(b * 100 + i)).collect();
                let contexts: Vec<Value> = (0..100).map(|_| context.clone()).collect();
                c.execute(
                    &stmt,
                    &[&format!("batch-{b}"), &ids, &versions, &data, &contexts],
                )
                .await?;
            }
            sizes.batches * 100
        }
        "read_log" | "read_stream" => {
            let sql = if what == "read_log" {
                "SELECT tx, seq, id, stream, version, namespace, event_type, data, context FROM events ORDER BY tx, seq"
            } else {
                "SELECT tx, seq, id, stream, version, namespace, event_type, data, context FROM events WHERE stream = 'long' ORDER BY version"
            };
            let rows = c.query_raw(sql, std::iter::empty::<&str>()).await?;
            let mut rows = Box::pin(rows);
            let mut n = 0;
            while let Some(row) = rows.next().await {
                let row = row?;
                let _: (i64, i64, uuid::Uuid, String, i64, String, String) = (
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    row.get(3),
                    row.get(4),
                    row.get(5),
                    row.get(6),
                );
                let (data, context): (Value, Value) = (row.get(7), row.get(8));
                std::hint::black_box((data, context));
                n += 1;
            }
            n
        }
        _ => 0,
    };
    Ok(rate(n, t.elapsed()))
}

async fn amqp(report: &mut Report, url: &str, sizes: Sizes) -> Result<()> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .context("cannot reach RabbitMQ")?;
    let exchange = format!(
        "event_store_bench_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let ch = conn.create_channel().await?;
    let result = amqp_workloads(report, url, &exchange, &ch, sizes).await;
    for q in [
        format!("{exchange}.sink"),
        format!("{exchange}.raw"),
        format!("{exchange}.latency"),
        format!("{exchange}.latency.dead-letter"),
        format!("{exchange}.replay-requests"),
    ] {
        let _ = ch
            .queue_delete(
                q.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    for x in [exchange.clone(), format!("{exchange}.dead-letter")] {
        let _ = ch
            .exchange_delete(
                x.as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
    let _ = conn.close(200, "bench done".into()).await;
    result
}

/// A durable queue bound to `exchange` with `key`.
async fn bound_queue(ch: &lapin::Channel, queue: &str, exchange: &str, key: &str) -> Result<()> {
    use lapin::options::{QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(queue.into(), durable, FieldTable::default())
        .await?;
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

async fn amqp_workloads(
    report: &mut Report,
    url: &str,
    exchange: &str,
    ch: &lapin::Channel,
    sizes: Sizes,
) -> Result<()> {
    use lapin::options::{ExchangeDeclareOptions, QueuePurgeOptions};
    use lapin::types::FieldTable;
    // A durable queue bound to everything, so both the relay and the baseline make the broker
    // store every persistent message.
    ch.exchange_declare(
        exchange.into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    let sink = format!("{exchange}.sink");
    bound_queue(ch, &sink, exchange, "#").await?;

    // The relay: a store of N events published with confirms.
    let store = MemoryStore::new();
    let es = EventStore::from_store(store.clone());
    for b in 0..sizes.relay / 1000 {
        let events = (0..1000).map(|i| event(b * 1000 + i)).collect();
        es.append(&format!("relay-{}", b % 10), ExpectedVersion::Any, events)
            .await?;
    }
    let relay = Relay::new(store.clone(), AmqpConfig::new(url, exchange))?;
    let metrics = relay.metrics();
    let t = Instant::now();
    let task = tokio::spawn(async move { relay.run().await });
    let total = sizes.relay / 1000 * 1000;
    while metrics.confirmed.load(std::sync::atomic::Ordering::Relaxed) < total as u64 {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(300),
            "the relay did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let relay_rate = rate(total, t.elapsed());
    task.abort();
    ch.queue_purge(sink.as_str().into(), QueuePurgeOptions::default())
        .await?;

    // The baseline: the same messages, raw lapin, pages of 512 then their confirms.
    let recorded: Vec<_> = es
        .read_all(Position::START)
        .map(|e| e.map_err(anyhow::Error::from))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let pub_ch = ch.clone();
    pub_ch
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .ok();
    let raw_ch = {
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
        let c = conn.create_channel().await?;
        c.confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await?;
        (conn, c)
    };
    let t = Instant::now();
    for page in recorded.chunks(512) {
        let mut confirms = Vec::with_capacity(page.len());
        for e in page {
            let body = serde_json::to_vec(e)?;
            let props = lapin::BasicProperties::default()
                .with_message_id(e.id.to_string().into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2);
            confirms.push(
                raw_ch
                    .1
                    .basic_publish(
                        exchange.into(),
                        "bench.Moved".into(),
                        lapin::options::BasicPublishOptions::default(),
                        &body,
                        props,
                    )
                    .await?,
            );
        }
        for c in confirms {
            c.await?;
        }
    }
    let raw_rate = rate(recorded.len(), t.elapsed());
    let _ = raw_ch.0.close(200, "done".into()).await;
    ch.queue_purge(sink.as_str().into(), QueuePurgeOptions::default())
        .await?;
    report.add(
        "relay publish with confirms",
        "amqp",
        relay_rate,
        "ev/s",
        Some(raw_rate),
        true,
        Some(">= 0.7"),
    );

    // Save -> subscriber handler latency, against raw publish -> consume latency.
    let (p50, p99) = save_to_handler_latency(url, exchange, sizes.latency).await?;
    let (b50, b99) = raw_latency(url, exchange, sizes.latency).await?;
    report.add(
        "save -> subscriber latency p50",
        "amqp",
        ms(p50),
        "ms",
        Some(ms(b50)),
        false,
        None,
    );
    report.add(
        "save -> subscriber latency p99",
        "amqp",
        ms(p99),
        "ms",
        Some(ms(b99)),
        false,
        Some("<= 50 ms"),
    );
    Ok(())
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |percent: usize| samples[(samples.len() - 1) * percent / 100];
    (at(50), at(99))
}

async fn save_to_handler_latency(
    url: &str,
    exchange: &str,
    n: usize,
) -> Result<(Duration, Duration)> {
    let store = MemoryStore::new();
    let emitter = AmqpEmitter::new(AmqpConfig::new(url, exchange))?;
    let es = EventStore::new(store.clone(), NoCache, emitter);
    let sent: Arc<Mutex<BTreeMap<uuid::Uuid, Instant>>> = Arc::default();
    let samples: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (s, out) = (Arc::clone(&sent), Arc::clone(&samples));
    let sub = es
        .subscribe("latency", move |_e: Moved, recorded| {
            let (s, out) = (Arc::clone(&s), Arc::clone(&out));
            async move {
                let now = Instant::now();
                if let Some(at) = s.lock().map_err(|_| "poisoned")?.get(&recorded.id) {
                    out.lock().map_err(|_| "poisoned")?.push(now - *at);
                }
                Ok(())
            }
        })
        .await?;
    let worker = tokio::spawn(sub.into_future());
    let relay = Relay::new(store.clone(), AmqpConfig::new(url, exchange))?;
    let relay = tokio::spawn(async move { relay.run().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..n {
        let id = uuid::Uuid::now_v7();
        sent.lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(id, Instant::now());
        es.append("latency", ExpectedVersion::Any, vec![event(i).with_id(id)])
            .await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t = Instant::now();
    while samples
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .len()
        < n
    {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "the subscriber did not receive every event"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.abort();
    relay.abort();
    let samples = samples
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok(percentiles(samples))
}

async fn raw_latency(url: &str, exchange: &str, n: usize) -> Result<(Duration, Duration)> {
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    };
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let queue = format!("{exchange}.raw");
    bound_queue(&ch, &queue, exchange, "raw.Latency").await?;
    let consumer_ch = conn.create_channel().await?;
    let mut consumer = consumer_ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let body = serde_json::to_vec(&payload(i))?;
        let t = Instant::now();
        ch.basic_publish(
            exchange.into(),
            "raw.Latency".into(),
            BasicPublishOptions::default(),
            &body,
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await?;
        let d = consumer
            .next()
            .await
            .context("the raw consumer stopped")??;
        samples.push(t.elapsed());
        d.ack(BasicAckOptions::default()).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(percentiles(samples))
}
