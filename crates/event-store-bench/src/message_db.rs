//! Message DB, side by side: its SQL, as its npm package `@eventide/message-db` ships it, is
//! installed into a PostgreSQL database of its own, and the same workloads run against its
//! functions (`write_message`, `get_stream_messages`, `get_category_messages`) through the same
//! client as ours (tokio-postgres, prepared statements), in the same run. Without `npm`, or when
//! the package cannot be installed, the comparison is skipped and the run says so.

// Each workload reads best as one straight sequence of steps.
#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_postgres::types::ToSql;

use crate::error::{BenchError, Context as _, Result};
use crate::report::{Report, Sizes, rate};
use crate::workload::{Moved, payload};

/// The peer's name in the figures.
pub(crate) const NAME: &str = "Message DB 1.3";

/// The package, pinned to the release compared (its SQL is Message DB 1.3.0).
const PACKAGE: &str = "@eventide/message-db@1.3.1";

/// The package's SQL files, in the order its `install.sh` runs them (roles and privileges left
/// out: the benchmark connects as the database's owner).
const FILES: &[&str] = &[
    "extensions/pgcrypto.sql",
    "schema/message-store.sql",
    "types/message.sql",
    "tables/messages.sql",
    "functions/message-store-version.sql",
    "functions/hash-64.sql",
    "functions/acquire-lock.sql",
    "functions/category.sql",
    "functions/is-category.sql",
    "functions/id.sql",
    "functions/cardinal-id.sql",
    "functions/stream-version.sql",
    "functions/write-message.sql",
    "functions/get-stream-messages.sql",
    "functions/get-category-messages.sql",
    "functions/get-last-stream-message.sql",
    "indexes/messages-id.sql",
    "indexes/messages-stream.sql",
    "indexes/messages-category.sql",
];

const WRITE: &str = "SELECT write_message($1, $2, $3, $4, $5, $6)";
const STREAM: &str = "SELECT * FROM get_stream_messages($1, $2, $3)";
const CATEGORY: &str = "SELECT * FROM get_category_messages($1, $2, $3)";

/// Installs Message DB into a scratch database, measures it, and sets its figures beside ours
/// (the `postgres` figures must be in `report` already).
pub(crate) async fn run(report: &mut Report, url: &str, dir: &Path, sizes: Sizes) -> Result<()> {
    let Some(sql) = install_package(dir) else {
        return Ok(());
    };
    let admin = crate::postgres::pg_client(url).await?;
    let db = format!(
        "event_store_bench_mdb_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .await
        .context("creating Message DB's scratch database")?;
    let result = async {
        let mut config: tokio_postgres::Config = url.parse().context("parsing the URL")?;
        config.dbname(&db);
        let c = connect(&config).await?;
        for file in FILES {
            let text = std::fs::read_to_string(sql.join(file))
                .with_context(|| format!("reading Message DB's {file}"))?;
            c.batch_execute(&text)
                .await
                .with_context(|| format!("installing Message DB's {file}"))?;
        }
        measure(report, &config, sizes).await
    }
    .await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
        .await
        .context("dropping Message DB's scratch database")?;
    result
}

/// The package's `database` directory, installed under `dir` with npm; `None` (said on stderr)
/// when npm is missing or the install fails.
fn install_package(dir: &Path) -> Option<PathBuf> {
    let npm = Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !npm.is_ok_and(|s| s.success()) {
        eprintln!(
            "  message-db: skipped: npm is not installed (Message DB's SQL ships as the npm \
             package {PACKAGE}; install Node.js and npm to compare)"
        );
        return None;
    }
    eprintln!("  message-db: installing {PACKAGE} with npm");
    let installed = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir)
        .arg(PACKAGE)
        .stdin(Stdio::null())
        .output();
    let sql = dir.join("node_modules/@eventide/message-db/database");
    match installed {
        Ok(out) if out.status.success() && sql.is_dir() => Some(sql),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            eprintln!(
                "  message-db: skipped: `npm install {PACKAGE}` failed ({}): {why}",
                out.status
            );
            None
        }
        Err(e) => {
            eprintln!("  message-db: skipped: cannot run npm: {e}");
            None
        }
    }
}

async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client> {
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to Message DB's database")?;
    tokio::spawn(conn);
    client
        .batch_execute("SET search_path TO message_store, public")
        .await?;
    Ok(client)
}

fn context_json() -> Value {
    json!({"time": "2026-01-01T00:00:00.000000Z"})
}

/// Writes `n` messages, one per call, to the streams `stream(i)`.
async fn write_each(
    c: &tokio_postgres::Client,
    n: usize,
    stream: impl Fn(usize) -> String,
) -> Result<()> {
    let stmt = c.prepare(WRITE).await?;
    let meta = context_json();
    for i in 0..n {
        let id = uuid::Uuid::now_v7().to_string();
        let expected: Option<i64> = None;
        c.execute(
            &stmt,
            &[&id, &stream(i), &"Moved", &payload(i), &meta, &expected],
        )
        .await?;
    }
    Ok(())
}

/// 8 writers, each on its own connection, writing to `stream(w)`: events/s.
async fn write_8(
    config: &tokio_postgres::Config,
    n: usize,
    stream: fn(usize) -> String,
) -> Result<f64> {
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(connect(config).await?);
    }
    let t = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(w, c)| tokio::spawn(async move { write_each(&c, n / 8, |_| stream(w)).await }))
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(rate(n / 8 * 8, t.elapsed()))
}

async fn measure(report: &mut Report, config: &tokio_postgres::Config, sizes: Sizes) -> Result<()> {
    let c = connect(config).await?;
    // 1 message per call, 1 writer.
    let t = Instant::now();
    write_each(&c, sizes.single, |i| format!("single-{}", i % 100)).await?;
    let single = rate(sizes.single, t.elapsed());
    // 8 writers on 8 streams of 8 categories, then on 8 streams of one category.
    let streams = write_8(config, sizes.concurrent, |w| format!("writer{w}-1")).await?;
    let one_category = write_8(config, sizes.concurrent, |w| format!("bench-{w}")).await?;
    // 100 messages per transaction (Message DB writes one message per call: 100 calls,
    // pipelined, in one transaction).
    let mut tc = connect(config).await?;
    let stmt = tc.prepare(WRITE).await?;
    let meta = context_json();
    let t = Instant::now();
    for b in 0..sizes.batches {
        let tx = tc.transaction().await?;
        let stream = format!("batch-{}", b % 10);
        let ids: Vec<String> = (0..100).map(|_| uuid::Uuid::now_v7().to_string()).collect();
        let data: Vec<Value> = (0..100).map(|i| payload(b * 100 + i)).collect();
        let expected: Option<i64> = None;
        let writes = (0..100).map(|i| {
            let params: [&(dyn ToSql + Sync); 6] =
                [&ids[i], &stream, &"Moved", &data[i], &meta, &expected];
            let (tx, stmt) = (&tx, &stmt);
            async move { tx.execute(stmt, &params).await }
        });
        futures::future::try_join_all(writes).await?;
        tx.commit().await?;
    }
    let batch = rate(sizes.batches * 100, t.elapsed());

    // The long stream, written straight into the table (not measured), for the reads.
    let fill = "INSERT INTO messages (id, stream_name, position, type, data, metadata)
        SELECT id, 'long-1', p, 'Moved', d, $3 FROM unnest($1::uuid[], $2::bigint[]) AS t(id, p),
        LATERAL (SELECT jsonb_build_object('sku', 's', 'quantity', p % 7, 'note', repeat('n', 100)) AS d) AS x";
    for chunk in 0..sizes.stream / 1000 {
        let ids: Vec<uuid::Uuid> = (0..1000).map(|_| uuid::Uuid::now_v7()).collect();
        let start = i64::try_from(chunk * 1000).unwrap_or(i64::MAX);
        let positions: Vec<i64> = (start..start + 1000).collect();
        c.execute(fill, &[&ids, &positions, &meta]).await?;
    }
    c.batch_execute("VACUUM ANALYZE messages").await?;
    let (mut category, mut stream) = (0f64, 0f64);
    let (mut category_n, mut stream_n) = (0, 0);
    for _ in 0..3 {
        let (r, n) = read_category(&c).await?;
        (category, category_n) = (category.max(r), n);
        let (r, n) = read_stream(&c).await?;
        (stream, stream_n) = (stream.max(r), n);
    }
    if category_n != sizes.stream || stream_n != sizes.stream {
        return Err(BenchError::Unexpected(format!(
            "Message DB returned {category_n} messages of the category and {stream_n} of the \
             stream; {} were written",
            sizes.stream
        )));
    }
    report.compare("postgres", "append_single", NAME, single, Some(1.25));
    report.compare("postgres", "append_8_streams", NAME, streams, Some(1.25));
    report.compare(
        "postgres",
        "append_8_one_namespace",
        NAME,
        one_category,
        Some(2.0),
    );
    report.compare("postgres", "append_100", NAME, batch, Some(2.0));
    report.compare("postgres", "read_log", NAME, category, Some(1.2));
    report.compare("postgres", "read_stream", NAME, stream, Some(1.1));
    Ok(())
}

/// One message's columns as `get_*_messages` return them, decoded as our reads decode an
/// event: `data` into the event type (`typed`) or a JSON tree, `metadata` into a JSON tree.
fn decode(row: &tokio_postgres::Row, typed: bool) -> Result<i64> {
    let _: (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    let (position, global): (i64, i64) = (row.try_get(3)?, row.try_get(4)?);
    let data: String = row.try_get(5)?;
    if typed {
        std::hint::black_box(serde_json::from_str::<Moved>(&data)?);
    } else {
        std::hint::black_box(serde_json::from_str::<Value>(&data)?);
    }
    if let Some(meta) = row.try_get::<_, Option<String>>(6)? {
        std::hint::black_box(serde_json::from_str::<Value>(&meta)?);
    }
    let _: chrono::NaiveDateTime = row.try_get(7)?;
    Ok(if typed { global } else { position })
}

/// The category `long` a batch of 1 000 at a time (the function's default), typed: events/s.
async fn read_category(c: &tokio_postgres::Client) -> Result<(f64, usize)> {
    read_pages(c, CATEGORY, "long", 1, true).await
}

/// The stream `long-1`, a batch of 1 000 at a time: events/s.
async fn read_stream(c: &tokio_postgres::Client) -> Result<(f64, usize)> {
    read_pages(c, STREAM, "long-1", 0, false).await
}

async fn read_pages(
    c: &tokio_postgres::Client,
    sql: &str,
    name: &str,
    first: i64,
    typed: bool,
) -> Result<(f64, usize)> {
    let stmt = c.prepare(sql).await?;
    let t = Instant::now();
    let (mut position, mut n) = (first, 0usize);
    loop {
        let params: [&(dyn ToSql + Sync); 3] = [&name, &position, &1000i64];
        let rows = c.query_raw(&stmt, params).await?;
        let mut rows = std::pin::pin!(rows);
        let mut page = 0;
        while let Some(row) = rows.next().await {
            position = decode(&row?, typed)? + 1;
            page += 1;
        }
        n += page;
        if page < 1000 {
            return Ok((rate(n, t.elapsed()), n));
        }
    }
}
