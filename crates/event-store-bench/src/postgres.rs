//! PostgreSQL: the store against plain SQL on a table of the same shape (`LIKE events INCLUDING ALL`).

// Each workload reads best as one straight sequence of steps.
#![allow(clippy::too_many_lines)]

use std::time::Instant;

use event_store_postgres::{PgCache, PgConfig, PgStore};
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::error::{BenchError, Result};
use event_store::Aggregate as _;
use tokio_postgres::types::Json;

use crate::report::{Goal, Report, Sizes, ms, rate};
use crate::workload::{Moved, Total, payload, store_workloads};

pub(crate) async fn pg_client(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| BenchError::Unreachable {
            service: "PostgreSQL",
            source: e.into(),
        })?;
    tokio::spawn(conn);
    Ok(client)
}

pub(crate) async fn run(report: &mut Report, url: &str, sizes: Sizes) -> Result<()> {
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
    let result = match result {
        Ok(()) => index_costs(report, &admin, &schema, sizes).await,
        Err(e) => Err(e),
    };
    let result = match result {
        Ok(()) => {
            let keys = event_store_postgres::PgKeyStore::new(&store);
            crate::personal::run(report, "postgres", &store, keys, sizes).await
        }
        Err(e) => Err(e),
    };
    let result = match result {
        Ok(()) => crate::http::run(report, "postgres", &store, sizes).await,
        Err(e) => Err(e),
    };
    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    result
}

/// What each optional index costs an insert: the same 100-row INSERTs into a table of the
/// events' shape without it and with it, the rows carrying a subject.
async fn index_costs(
    report: &mut Report,
    admin: &tokio_postgres::Client,
    schema: &str,
    sizes: Sizes,
) -> Result<()> {
    let tables = [
        ("ix_none", ""),
        (
            "ix_subject",
            "CREATE INDEX ON ix_subject USING gin ((context -> 'subject') jsonb_path_ops);",
        ),
        ("ix_time", "CREATE INDEX ON ix_time (time);"),
    ];
    admin
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .await?;
    for (table, index) in tables {
        admin
            .batch_execute(&format!(
                "CREATE TABLE {table} (LIKE events INCLUDING ALL); {index}"
            ))
            .await?;
    }
    let mut rates = [0f64; 3];
    // Alternating rounds, each keeping its best, as the reads do.
    for _ in 0..2 {
        for (k, (table, _)) in tables.iter().enumerate() {
            let sql =
                PG_INSERT_MANY.replace("INSERT INTO baseline", &format!("INSERT INTO {table}"));
            let stmt = admin.prepare(&sql).await?;
            let t = Instant::now();
            for b in 0..sizes.batches {
                let ids: Vec<uuid::Uuid> = (0..100).map(|_| uuid::Uuid::now_v7()).collect();
                let versions: Vec<i64> = (0..100).collect();
                let data: Vec<Value> = (0..100).map(|i| payload(b * 100 + i)).collect();
                let contexts: Vec<Value> = (0..100)
                    .map(|i| {
                        json!({"time": "2026-01-01T00:00:00.000000Z",
                               "subject": {"user_id": (b * 100 + i) % 1000}})
                    })
                    .collect();
                admin
                    .execute(
                        &stmt,
                        &[
                            &format!("ix-{b}-{}", uuid::Uuid::now_v7()),
                            &ids,
                            &versions,
                            &data,
                            &contexts,
                        ],
                    )
                    .await?;
            }
            rates[k] = rates[k].max(rate(sizes.batches * 100, t.elapsed()));
        }
    }
    for (k, what) in [(1, "subject"), (2, "time")] {
        let cost_us = (1e6 / rates[k] - 1e6 / rates[0]).max(0.0);
        report.add(
            if k == 1 { "index_subject" } else { "index_time" },
            &format!("100-row INSERTs with the optional {what} index (vs without; +{cost_us:.1} µs/event)"),
            "postgres",
            rates[k],
            "ev/s",
            Some(rates[0]),
            true,
            Goal::None,
        );
    }
    Ok(())
}

const PG_INSERT: &str = "INSERT INTO baseline (id, stream, version, namespace, event_type, data, context, time) VALUES ($1, $2, $3, 'bench', 'Moved', $4, $5, now())";
const PG_INSERT_MANY: &str = "INSERT INTO baseline (id, stream, version, namespace, event_type, data, context, time)
    SELECT id, $1, v, 'bench', 'Moved', d, c, now() FROM unnest($2::uuid[], $3::bigint[], $4::jsonb[], $5::jsonb[]) AS t(id, v, d, c)";

async fn pg_baseline(what: &str, url: &str, schema: &str, sizes: Sizes) -> Result<f64> {
    let client = |url: String, schema: String| async move {
        let c = pg_client(&url).await?;
        c.batch_execute(&format!("SET search_path TO \"{schema}\""))
            .await?;
        Ok::<_, BenchError>(c)
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
        "fold" => {
            // What a cold fold does, with nothing of ours: the stream's data, decoded straight
            // into the event type, applied in version order. In milliseconds.
            let sql = "SELECT data FROM events WHERE stream = 'long' ORDER BY version";
            let rows = c.query_raw(sql, std::iter::empty::<&str>()).await?;
            let mut rows = Box::pin(rows);
            let mut total = Total::default();
            while let Some(row) = rows.next().await {
                let Json(moved): Json<Moved> = row?.try_get(0)?;
                total.apply(&moved);
            }
            std::hint::black_box(total);
            return Ok(ms(t.elapsed()));
        }
        other => {
            return Err(BenchError::Unexpected(format!(
                "no PostgreSQL baseline for {other}"
            )));
        }
    };
    Ok(rate(n, t.elapsed()))
}
