//! The relay over the PostgreSQL store, with 8 concurrent writers: a group receives each event
//! once, each stream in version order (the relay reads below the transaction watermark).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use std::time::Duration;

use event_store::{EventStore, ExpectedVersion, NewEvent, NoCache};
use event_store_amqp::{AmqpEmitter, Relay};
use event_store_postgres::{PgConfig, PgStore};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_over_postgres_with_concurrent_writers() {
    if common::broker().await.is_none() {
        return;
    }
    let url = std::env::var("EVENT_STORE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!(
        "es_amqp_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let Some(store) = event_store_testkit::require_service(
        "PostgreSQL (EVENT_STORE_TEST_PG)",
        PgStore::connect(&url, PgConfig::with_schema(&schema)).await,
    ) else {
        return;
    };
    store.migrate().await.unwrap();
    let names = common::names(&["pg"]);
    let emitter = AmqpEmitter::new(common::config(&names)).unwrap();
    let (got, sub) = common::recorder(&emitter, "pg", vec![]).await;
    let relay = Relay::new(store.clone(), common::config(&names)).unwrap();
    let relay = tokio::spawn(async move { relay.run().await });
    let es = EventStore::new(store.clone(), NoCache, emitter.clone());
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let es = es.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    let event = NewEvent::new("amqp-test", "Pg", json!({"w": w, "i": i}));
                    es.append(
                        &format!("pg-{}", (w + i) % 10),
                        ExpectedVersion::Any,
                        vec![event],
                    )
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    common::wait_until("2 000 events handled", Duration::from_secs(120), || {
        got.lock().unwrap().len() >= 2000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    common::assert_once_in_order(&got.lock().unwrap(), 2000);
    relay.abort();
    sub.abort();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}
