//! Connections closed by the broker mid-stream, and the broker application restarted: the relay
//! and the subscribers reconnect and carry on, with every event handled once. Alone in its test
//! binary (it disturbs every connection of the broker); needs `rabbitmqctl`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{names, recorder, start_relay, store};
use event_store::{ExpectedVersion, NewEvent};
use serde_json::json;

fn rabbitmqctl(args: &[&str]) -> bool {
    Command::new("rabbitmqctl")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_subscribers_survive_closed_connections_and_a_broker_restart() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "event_store_amqp=debug,lapin=info",
        ))
        .with_test_writer()
        .try_init();
    if common::broker().await.is_none() {
        return;
    }
    let usable = rabbitmqctl(&["status"])
        .then_some(())
        .ok_or("not usable here");
    if event_store_testkit::require_service("rabbitmqctl", usable).is_none() {
        return;
    }
    let names = names(&["survivor"]);
    let es = store(&names);
    let (got, sub) = recorder(es.emitter(), "survivor", vec![]).await;
    let (metrics, relay) = start_relay(&es, &names);
    let writer = {
        let es = es.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                let events = (0..10)
                    .map(|j| NewEvent::new("amqp-test", "Tick", json!({"i": i, "j": j})))
                    .collect();
                es.append(&format!("s-{}", i % 7), ExpectedVersion::Any, events)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(rabbitmqctl(&[
        "close_all_connections",
        "test: closing every connection"
    ]));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(rabbitmqctl(&["stop_app"]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rabbitmqctl(&["start_app"]));
    writer.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while got.lock().unwrap().len() < 3000 {
        if tokio::time::Instant::now() > deadline {
            let ids: std::collections::HashSet<_> =
                got.lock().unwrap().iter().map(|e| e.id).collect();
            panic!(
                "after the outages the group handled {} events ({} distinct) of 3000; relay {:?}; subscribers {:?}; stored {}",
                got.lock().unwrap().len(),
                ids.len(),
                metrics,
                es.emitter().metrics(),
                es.store().len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = got.lock().unwrap().clone();
    let ids: std::collections::HashSet<_> = got.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 3000, "every event arrived");
    assert_eq!(got.len(), 3000, "and none was handled twice");
    let reconnects = metrics
        .reconnects
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("relay reconnected {reconnects} times");
    assert!(reconnects >= 1, "the relay had to reconnect");
    assert!(
        es.emitter()
            .metrics()
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    sub.abort();
    relay.abort();
}
