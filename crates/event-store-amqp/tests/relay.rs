//! The relay: republishes from its checkpoint after a crash between publish and checkpoint
//! (consumers that dedupe see each event once; every copy carries the same message id); only
//! one relay of an exchange is active at a time; its lag is measured.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{names, recorder, save_many, start_relay, store, wait_until};
use event_store::{Checkpoints as _, Position};
use event_store_amqp::Relay;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarted_before_its_checkpoint_republishes_and_dedupe_holds() {
    let Some(conn) = common::broker().await else {
        return;
    };
    let names = names(&["dedupe"]);
    let es = store(&names);
    let (got, sub) = recorder(es.emitter(), "dedupe", vec![]).await;
    // A raw queue sees every copy the relay publishes.
    let (ch, raw) = common::raw_queue(&conn, &names).await;

    save_many(&es, 5, 10, 50).await; // 500 events
    let (m1, relay) = start_relay(&es, &names);
    wait_until("500 handled", Duration::from_secs(60), || {
        got.lock().unwrap().len() >= 500
    })
    .await;
    let name = Relay::new(es.store().clone(), common::config(&names))
        .unwrap()
        .checkpoint_name()
        .clone();
    wait_until("checkpoint at the end", Duration::from_secs(30), || {
        m1.confirmed.load(Ordering::Relaxed) >= 500
    })
    .await;
    relay.abort();
    // The crash: publishes confirmed, but the checkpoint was last saved at event 200.
    let all: Vec<_> = es
        .read_all(Position::START)
        .map(|e| e.unwrap())
        .collect()
        .await;
    es.store()
        .save_checkpoint(&name, all[199].position)
        .await
        .unwrap();
    let (m2, relay) = start_relay(&es, &names);
    wait_until(
        "the restarted relay republished 300",
        Duration::from_secs(60),
        || m2.confirmed.load(Ordering::Relaxed) >= 300,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        got.lock().unwrap().len(),
        500,
        "the deduping group handled each event once"
    );
    assert_eq!(
        es.emitter().metrics().duplicates.load(Ordering::Relaxed),
        300,
        "300 redeliveries were dropped"
    );
    // The raw queue holds 800 messages: 500 + 300 copies with the same ids.
    let mut consumer = ch
        .basic_consume(
            raw.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut ids: HashMap<String, usize> = HashMap::new();
    while ids.values().sum::<usize>() < 800 {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("raw copies")
            .unwrap()
            .unwrap();
        let id = d.properties.message_id().clone().unwrap().to_string();
        *ids.entry(id).or_default() += 1;
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(ids.len(), 500);
    let twice = ids.values().filter(|n| **n == 2).count();
    assert_eq!(
        twice, 300,
        "each republished copy carries the original message id"
    );
    assert_eq!(
        es.store().load_checkpoint(&name).await.unwrap(),
        Some(all[499].position)
    );
    relay.abort();
    sub.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_at_a_time_and_a_standby_takes_over() {
    if common::broker().await.is_none() {
        return;
    }
    let names = names(&["standby"]);
    let es = store(&names);
    let (got, sub) = recorder(es.emitter(), "standby", vec![]).await;
    let (m1, first) = start_relay(&es, &names);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (m2, second) = start_relay(&es, &names);
    tokio::time::sleep(Duration::from_millis(500)).await;
    save_many(&es, 3, 10, 20).await;
    wait_until("200 handled", Duration::from_secs(60), || {
        got.lock().unwrap().len() >= 200
    })
    .await;
    assert_eq!(
        m2.published.load(Ordering::Relaxed),
        0,
        "the second relay waits while the first is active"
    );
    assert!(m1.published.load(Ordering::Relaxed) >= 200);
    let lag_relay = Relay::new(es.store().clone(), common::config(&names)).unwrap();
    wait_until("the lag drains", Duration::from_secs(30), || {
        m1.confirmed.load(Ordering::Relaxed) >= 200
    })
    .await;
    first.abort();
    save_many(&es, 3, 10, 10).await;
    wait_until("the standby took over", Duration::from_secs(60), || {
        got.lock().unwrap().len() >= 300
    })
    .await;
    assert!(
        m2.published.load(Ordering::Relaxed) >= 100,
        "the standby published the new events"
    );
    assert_eq!(
        lag_relay.lag(10_000).await.unwrap(),
        0,
        "no lag once everything is published"
    );
    common::assert_once_in_order(&got.lock().unwrap(), 300);
    second.abort();
    sub.abort();
}
