//! `event-store bench`: every figure next to the same run's hardware baseline.
//!
//! Baselines do the same work with nothing of ours in between: plain SQL `INSERT`s into a table
//! of the same shape (`LIKE events INCLUDING ALL`: the same columns, constraints and indexes) and
//! a plain `SELECT` of the same rows on the same PostgreSQL; plain rusqlite on a file with the
//! same schema and pragmas; raw lapin publishes with confirms. Ratios are oriented so that
//! higher is better. The CLI's `bench` subcommand runs [`run`]; the figures are printed as a
//! Markdown table on stdout, progress on stderr.
#![warn(missing_docs)]

mod amqp;
mod error;
mod http;
mod message_db;
mod personal;
mod postgres;
mod projection;
mod replicas;
mod report;
mod sqlite;
mod workload;

use std::path::PathBuf;

pub use error::{BenchError, Result};

use crate::error::Context as _;
use crate::report::{Report, Sizes, print_table};
use crate::workload::store_workloads;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// A short run (seconds) with small sizes.
    pub quick: bool,
    /// Where to write the figures as JSON, if anywhere.
    pub json: Option<PathBuf>,
    /// The PostgreSQL to measure (a scratch schema is created and dropped).
    pub pg: String,
    /// The RabbitMQ to measure (a scratch exchange and queue are created and deleted).
    pub amqp: String,
    /// Only these backends (`memory`, `sqlite`, `postgres`, `replicas` (a private primary with
    /// 2 standbys), `amqp`; `message-db` with
    /// `postgres` adds the Message DB comparison, which a run of everything includes); empty:
    /// all reachable.
    pub only: Vec<String>,
}

/// A new scratch directory under the system's temporary directory.
fn scratch_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "event-store-bench-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).context("creating a scratch directory")?;
    Ok(dir)
}

/// Runs the benchmark.
pub async fn run(options: Options) -> Result<()> {
    let sizes = Sizes::new(options.quick);
    let wants = |b: &str| options.only.is_empty() || options.only.iter().any(|o| o == b);
    let mut report = Report::default();
    Report::header();
    if wants("memory") {
        let store = event_store::MemoryStore::new();
        let cache = event_store::MemoryCache::new();
        store_workloads(&mut report, "memory", &store, cache, sizes, None).await?;
        personal::run(
            &mut report,
            "memory",
            &store,
            event_store::erasure::MemoryKeyStore::new(),
            sizes,
        )
        .await?;
        http::run(
            &mut report,
            "memory",
            &event_store::MemoryStore::new(),
            sizes,
        )
        .await?;
    }
    if wants("sqlite") {
        let dir = scratch_dir()?;
        let mut result = sqlite::run(&mut report, &dir, sizes).await;
        if result.is_ok() {
            result = projection::sqlite(&mut report, &dir, sizes).await;
        }
        if result.is_ok() {
            result = match event_store_sqlite::SqliteStore::open(dir.join("http.db")).await {
                Ok(store) => http::run(&mut report, "sqlite", &store, sizes).await,
                Err(e) => Err(e.into()),
            };
        }
        let _ = std::fs::remove_dir_all(&dir);
        result?;
    }
    if wants("postgres") {
        match postgres::run(&mut report, &options.pg, sizes).await {
            Err(BenchError::Unreachable { service, source }) => {
                eprintln!("  postgres: skipped (cannot reach {service}: {source})");
            }
            other => {
                other?;
                projection::pg(&mut report, &options.pg, sizes).await?;
                if wants("message-db") || options.only.is_empty() {
                    let dir = scratch_dir()?;
                    let result = message_db::run(&mut report, &options.pg, &dir, sizes).await;
                    let _ = std::fs::remove_dir_all(&dir);
                    result?;
                }
            }
        }
    }
    if wants("replicas") {
        replicas::run(&mut report, sizes).await?;
    }
    if wants("amqp") {
        match amqp::run(&mut report, &options.amqp, sizes).await {
            Err(BenchError::Unreachable { service, source }) => {
                eprintln!("  amqp: skipped (cannot reach {service}: {source})");
            }
            other => other?,
        }
    }
    print_table(report.figures()).context("printing the table")?;
    if let Some(path) = &options.json {
        let text =
            serde_json::to_string_pretty(report.figures()).context("encoding the figures")?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
