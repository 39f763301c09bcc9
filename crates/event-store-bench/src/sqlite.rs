//! SQLite: the store against plain rusqlite on a file with the same schema and pragmas.

// Each workload reads best as one straight sequence of steps.
#![allow(clippy::too_many_lines)]

use std::path::Path;
use std::time::{Duration, Instant};

use event_store_sqlite::{SqliteCache, SqliteStore};
use serde_json::{Value, json};

use crate::error::{BenchError, Result};
use event_store::Aggregate as _;

use crate::report::{Report, Sizes, ms, rate};
use crate::workload::{Moved, Total, payload, store_workloads};

pub(crate) async fn run(report: &mut Report, dir: &Path, sizes: Sizes) -> Result<()> {
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
    .await?;
    let keys = event_store_sqlite::SqliteKeyStore::new(&store);
    crate::personal::run(report, "sqlite", &store, keys, sizes).await
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
CREATE INDEX IF NOT EXISTS baseline_type_position ON baseline (namespace, event_type, position);";

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
                t.join().map_err(|_| {
                    BenchError::Unexpected("a baseline writer panicked".to_owned())
                })??;
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
        "fold" => {
            // What a cold fold does, with nothing of ours (see the PostgreSQL baseline). In ms.
            let r = rusqlite::Connection::open(events)?;
            let mut stmt =
                r.prepare("SELECT data FROM events WHERE stream = ?1 ORDER BY version")?;
            let mut rows = stmt.query(["long"])?;
            let mut total = Total::default();
            while let Some(row) = rows.next()? {
                let moved: Moved = serde_json::from_str(&row.get::<_, String>(0)?)?;
                total.apply(&moved);
            }
            std::hint::black_box(total);
            return Ok(ms(t.elapsed()));
        }
        other => {
            return Err(BenchError::Unexpected(format!(
                "no SQLite baseline for {other}"
            )));
        }
    };
    Ok(rate(n, t.elapsed()))
}
