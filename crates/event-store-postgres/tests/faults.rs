//! A connection killed during an append leaves nothing half-written, and the pool recovers.
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

use event_store::{Error, EventStore, ExpectedVersion, NewEvent};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_appends_are_all_or_nothing_and_the_pool_recovers() {
    let Some(t) = common::fresh().await else {
        return;
    };
    let es = EventStore::from_store(t.clone());
    let admin = common::admin().await;
    // Kill the backend while it is running the append (seen active in pg_stat_activity), as
    // many rounds as it takes (bounded) for at least three kills to land mid-append.
    let mut landed = 0;
    let mut rounds = 0;
    while landed < 3 {
        rounds += 1;
        assert!(rounds <= 30, "no kill landed mid-append in 30 rounds");
        let stream = format!("fault-{rounds}");
        let events: Vec<NewEvent> = (0..1000)
            .map(|i| NewEvent::new("fault", "Big", json!({"i": i, "pad": "p".repeat(2000)})))
            .collect();
        let writer = {
            let (es, stream) = (es.clone(), stream.clone());
            tokio::spawn(async move { es.append(&stream, ExpectedVersion::NoStream, events).await })
        };
        let mut killed = false;
        while !writer.is_finished() && !killed {
            killed = admin
                .query_one(
                    "SELECT coalesce(bool_or(pg_terminate_backend(pid)), false)
                       FROM pg_stat_activity
                      WHERE application_name = $1 AND state = 'active'
                        AND query LIKE '%append_events%' AND pid <> pg_backend_pid()",
                    &[&t.schema()],
                )
                .await
                .unwrap()
                .get(0);
        }
        let outcome = writer.await.unwrap();
        // Read back on a healthy connection (retrying while the pool replaces dead ones).
        let mut stored = None;
        for _ in 0..20 {
            match es.stream_version(&stream).await {
                Ok(v) => {
                    stored = Some(v);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let stored = stored.expect("the pool recovers after its connections are killed");
        match outcome {
            Ok(a) => {
                assert!(a.stored);
                assert_eq!(
                    stored,
                    Some(999),
                    "a completed append stored all 1000 events"
                );
            }
            Err(e) => {
                assert!(killed, "only a killed append fails: {e}");
                landed += 1;
                assert!(
                    matches!(e, Error::Backend { .. }),
                    "a killed connection is a backend error: {e}"
                );
                // Killed before its commit: nothing; in the instant after it (the reply lost):
                // everything. Never a part.
                assert!(
                    stored.is_none() || stored == Some(999),
                    "an interrupted append stored all or nothing, not up to version {stored:?}"
                );
            }
        }
    }
    eprintln!("{landed} kills landed mid-append in {rounds} rounds");
    // Every later call works again.
    for i in 0..10 {
        let mut ok = false;
        for _ in 0..20 {
            if es
                .append(
                    "after",
                    ExpectedVersion::Any,
                    vec![NewEvent::new("fault", "After", json!({"i": i}))],
                )
                .await
                .is_ok()
            {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "appends work again after the kill");
    }
    assert_eq!(es.stream_version("after").await.unwrap(), Some(9));
}
