//! Tails wake on commits by other processes (LISTEN/NOTIFY), and still work by polling when
//! notifications are off.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::match_wild_err_arm,
    clippy::too_many_lines
)]

mod common;

use common::Schema as _;

use std::time::Duration;

use event_store::{EventStore, ExpectedVersion, NewEvent, Position};
use event_store_postgres::{PgConfig, PgStore};
use futures::StreamExt;
use serde_json::json;

async fn other_writer(schema: &str, notify: bool) -> PgStore {
    let mut config = PgConfig::with_schema(schema);
    config.listen = false;
    config.notify = notify;
    PgStore::connect(&common::url(), config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tails_wake_on_notifications_from_other_writers() {
    let Some(t) = common::fresh().await else {
        return;
    };
    // A poll interval of an hour: only a notification can wake this tail.
    let es = EventStore::from_store(t.clone()).with_poll_interval(Duration::from_secs(3600));
    let mut tail = Box::pin(es.tail(Position::START, None));
    let writer = EventStore::from_store(other_writer(t.schema(), true).await);
    // Let the listener connect (its first wake-up is harmless).
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..3 {
        writer
            .append(
                "w",
                ExpectedVersion::Any,
                vec![NewEvent::new("wake", "Up", json!({"i": i}))],
            )
            .await
            .unwrap();
        let e = tokio::time::timeout(Duration::from_secs(30), tail.next())
            .await
            .expect("a notification woke the tail")
            .unwrap()
            .unwrap();
        assert_eq!(e.version, i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tails_poll_without_notifications() {
    let Some(t) = common::fresh_with(|c| {
        c.listen = false;
        c.notify = false;
    })
    .await
    else {
        return;
    };
    let es = EventStore::from_store(t.clone()).with_poll_interval(Duration::from_millis(50));
    let mut tail = Box::pin(es.tail(Position::START, None));
    let writer = EventStore::from_store(other_writer(t.schema(), false).await);
    for i in 0..3 {
        writer
            .append(
                "w",
                ExpectedVersion::Any,
                vec![NewEvent::new("wake", "Poll", json!({"i": i}))],
            )
            .await
            .unwrap();
        let e = tokio::time::timeout(Duration::from_secs(30), tail.next())
            .await
            .expect("polling found the event")
            .unwrap()
            .unwrap();
        assert_eq!(e.version, i);
    }
}
