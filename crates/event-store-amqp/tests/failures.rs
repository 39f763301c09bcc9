//! A handler failing twice then succeeding is processed once and acknowledged; one that always
//! fails ends in the dead letters with the reason; an unparsable message goes there at once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines,
    clippy::float_cmp // Prometheus counters are whole numbers, exact in f64
)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_store::{
    BoxError, Emitter as _, ExpectedVersion, NewEvent, RecordedEvent, SubscriptionSpec,
};
use event_store_amqp::{
    AmqpEmitter, HEADER_DEAD_LETTER_GROUP, HEADER_DEAD_LETTER_REASON, header_text,
};
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_dead_letters() {
    let Some(conn) = common::broker().await else {
        return;
    };
    let prometheus = event_store_testkit::prometheus::install_recorder();
    let names = common::names(&["flaky"]);
    let mut config = common::config(&names);
    config.max_attempts = 3;
    let emitter = AmqpEmitter::new(config).unwrap();
    let es = event_store::EventStore::new(
        event_store::MemoryStore::new(),
        event_store::NoCache,
        emitter.clone(),
    );
    let calls: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let handled: Arc<Mutex<Vec<i64>>> = Arc::default();
    let (c, h) = (Arc::clone(&calls), Arc::clone(&handled));
    let handler: event_store::Handler = Arc::new(move |e: RecordedEvent| {
        let (calls, handled) = (Arc::clone(&c), Arc::clone(&h));
        Box::pin(async move {
            let n = e.data["n"].as_i64().unwrap();
            let attempt = {
                let mut calls = calls.lock().unwrap();
                let a = calls.entry(n).or_default();
                *a += 1;
                *a
            };
            match n {
                1 if attempt <= 2 => {
                    Err::<(), BoxError>(format!("transient failure {attempt}").into())
                }
                2 => Err("always broken".into()),
                _ => {
                    handled.lock().unwrap().push(n);
                    Ok(())
                }
            }
        })
    });
    let sub = emitter
        .subscribe(
            SubscriptionSpec {
                group: "flaky".into(),
                types: vec![],
            },
            handler,
        )
        .await
        .unwrap();
    let worker = tokio::spawn(sub.into_future());
    let (_m, relay) = common::start_relay(&es, &names);
    for n in 1..=3 {
        es.append(
            "s",
            ExpectedVersion::Any,
            vec![NewEvent::new("amqp-test", "N", json!({"n": n}))],
        )
        .await
        .unwrap();
    }
    // An unparsable message, published straight to the exchange.
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        names.exchange.as_str().into(),
        "amqp-test.N".into(),
        BasicPublishOptions::default(),
        b"{this is not an event",
        BasicProperties::default().with_message_id("garbage-1".into()),
    )
    .await
    .unwrap();
    common::wait_until("events 1 and 3 handled", Duration::from_secs(30), || {
        handled.lock().unwrap().len() == 2
    })
    .await;
    // Collect the dead letters.
    let dlq = format!("{}.flaky.dead-letter", names.exchange);
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dead.len() < 2 && tokio::time::Instant::now() < deadline {
        match ch
            .basic_get(dlq.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(m) => {
                let reason =
                    header_text(&m.delivery.properties, HEADER_DEAD_LETTER_REASON).unwrap();
                let group = header_text(&m.delivery.properties, HEADER_DEAD_LETTER_GROUP).unwrap();
                let id = m
                    .delivery
                    .properties
                    .message_id()
                    .clone()
                    .map(|s| s.to_string());
                dead.push((reason, group, id));
                m.delivery.ack(BasicAckOptions::default()).await.unwrap();
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    dead.sort();
    assert_eq!(dead.len(), 2, "two dead letters: {dead:?}");
    assert!(
        dead.iter()
            .any(|(r, g, _)| r == "always broken" && g == "flaky"),
        "{dead:?}"
    );
    assert!(
        dead.iter()
            .any(|(r, _, id)| r.starts_with("unparsable") && id.as_deref() == Some("garbage-1")),
        "{dead:?}"
    );
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls[&1], 3, "failed twice, then succeeded");
    assert_eq!(
        calls[&2], 3,
        "tried max_attempts times before the dead letters"
    );
    assert_eq!(calls[&3], 1);
    let mut done = handled.lock().unwrap().clone();
    done.sort_unstable();
    assert_eq!(done, vec![1, 3], "event 1 was processed once");
    let m = emitter.metrics();
    assert_eq!(m.dead_letters.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(m.retries.load(std::sync::atomic::Ordering::Relaxed), 4);
    // The same counts through the metrics facade, under the documented names.
    let text = prometheus.render();
    let count = |name: &str| {
        event_store_testkit::prometheus::value(&text, &format!("{name}{{group=\"flaky\"}}"))
    };
    let local = |c: &std::sync::atomic::AtomicU64| {
        Some(c.load(std::sync::atomic::Ordering::Relaxed) as f64)
    };
    assert_eq!(
        count("event_store_subscriber_dead_letters_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        count("event_store_subscriber_retries_total"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        count("event_store_subscriber_delivered_total"),
        local(&m.delivered),
        "{text}"
    );
    assert_eq!(
        count("event_store_subscriber_handled_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        count("event_store_subscriber_redeliveries_total").unwrap_or(0.0),
        local(&m.redeliveries).unwrap_or_default(),
        "{text}"
    );
    let exchange = format!("{{exchange=\"{}\"}}", names.exchange);
    assert_eq!(
        event_store_testkit::prometheus::value(
            &text,
            &format!("event_store_relay_published_total{exchange}")
        ),
        Some(3.0),
        "{text}"
    );
    let lag = event_store_testkit::prometheus::value(
        &text,
        &format!("event_store_relay_lag_seconds{exchange}"),
    )
    .unwrap();
    assert!((0.0..60.0).contains(&lag), "the lag of fresh events: {lag}");
    // Nothing is left unacknowledged in the group's queue.
    tokio::time::sleep(Duration::from_millis(200)).await;
    worker.abort();
    relay.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let q = ch
        .queue_declare(
            format!("{}.flaky", names.exchange).as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0, "every message was acknowledged");
}

/// A broker URL's password never appears in errors or in the configuration's debug output.
#[tokio::test]
async fn passwords_stay_out_of_errors() {
    let config = event_store_amqp::AmqpConfig::new("amqp://user:hunter2@127.0.0.1:1/%2f", "x");
    assert!(!format!("{config:?}").contains("hunter2"));
    let emitter = AmqpEmitter::new(config).unwrap();
    let e = emitter
        .request_replay(
            "g",
            &[event_store::TypeFilter {
                namespace: "n".into(),
                event_type: Some("T".into()),
            }],
            event_store::Position::START,
        )
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        assert!(!s.to_string().contains("hunter2"), "{s}");
        source = s.source();
    }
    let e = event_store_amqp::AmqpEmitter::new(event_store_amqp::AmqpConfig::new(
        "http://user:hunter2@h",
        "x",
    ))
    .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}
