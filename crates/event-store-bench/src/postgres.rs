//! PostgreSQL: the store against plain SQL on a table of the same shape (`LIKE events INCLUDING ALL`).

// Each workload reads best as one straight sequence of steps.
#![allow(clippy::too_many_lines)]

use std::time::Instant;

use event_store_postgres::{PgCache, PgConfig, PgStore};
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::error::{BenchError, Result};
use crate::report::{Report, Sizes, rate};
use crate::workload::{payload, store_workloads};

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
        _ => 0,
    };
    Ok(rate(n, t.elapsed()))
}
