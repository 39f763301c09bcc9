//! The original wire format against the real broker: a client that behaves as a service still
//! running the original library (its queue named and bound as `LEGACY.md` says, a replay request
//! on start) receives the new store's events, and the events it publishes in the old format
//! reach a new subscriber.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{config, names, wait_until};
use event_store::{
    BoxError, Event, EventStore, ExpectedVersion, MemoryStore, NewEvent, NoCache, RecordedEvent,
};
use event_store_amqp::{AmqpEmitter, LEGACY_REPLAY_KEY, LegacyWire, Relay};
use futures::StreamExt as _;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event_store(namespace = "billing", rename = "InvoicePaid")]
struct Paid {
    cents: i64,
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_original_service_and_a_new_one_exchange_events() {
    let Some(raw) = common::broker().await else {
        return;
    };
    let mut names = names(&["newsvc"]);
    let original_queue = "billing-accounts.UserRegistered".to_owned();
    // Queue names are global on the broker: the test's own prefix keeps them apart.
    let store_ns = format!("new{}", &names.exchange[8..]);
    let original_queue = format!("{}-{original_queue}", &names.exchange[8..]);
    names.extra_queues = vec![
        original_queue.clone(),
        format!("{store_ns}-billing.InvoicePaid"),
        format!("{store_ns}-{LEGACY_REPLAY_KEY}"),
    ];
    let mut cfg = config(&names);
    cfg.legacy = Some(LegacyWire::new(store_ns.clone()));
    let es = EventStore::new(
        MemoryStore::new(),
        NoCache,
        AmqpEmitter::new(cfg.clone()).unwrap(),
    );

    // The new service's events: 20 from 2019, 10 from 2020.
    let mut ids = Vec::new();
    for i in 0..30i64 {
        let time = if i < 20 {
            at("2019-01-01T00:00:00Z") + TimeDelta::minutes(i)
        } else {
            at("2020-01-01T00:00:00Z") + TimeDelta::minutes(i)
        };
        let e = NewEvent::new(
            "accounts",
            "UserRegistered",
            json!({"email": format!("u{i}@example.com")}),
        )
        .with_time(time);
        let stored = es
            .append(&format!("user-{i}"), ExpectedVersion::NoStream, vec![e])
            .await
            .unwrap();
        ids.push(stored.events[0].id);
    }
    let relay = Relay::new(es.store().clone(), cfg.clone()).unwrap();
    let metrics = relay.metrics();
    let relay = tokio::spawn(async move {
        let _ = relay.run().await;
    });
    // Published before the original service's queue exists: it gets them only by replay.
    wait_until("published", Duration::from_secs(30), || {
        metrics.confirmed.load(std::sync::atomic::Ordering::Relaxed) >= 30
    })
    .await;

    // The original service: its queue, then a replay request for what it missed since mid-2019.
    let ch = raw.create_channel().await.unwrap();
    ch.queue_declare(
        original_queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        original_queue.as_str().into(),
        names.exchange.as_str().into(),
        "accounts.UserRegistered".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let publish = |key: &'static str, body: Value| {
        let ch = ch.clone();
        let exchange = names.exchange.clone();
        async move {
            ch.basic_publish(
                exchange.as_str().into(),
                key.into(),
                BasicPublishOptions::default(),
                body.to_string().as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    };
    publish(
        LEGACY_REPLAY_KEY,
        json!({
            "id": uuid::Uuid::now_v7(),
            "data": {
                "event_namespace": "_eventstore",
                "event_type": "EventReplayRequested",
                "requested_event_namespace": "accounts",
                "requested_event_type": "UserRegistered",
                "since": "2019-06-01T00:00:00Z",
            },
            "context": {"action": null, "subject": null, "time": "2019-06-01 00:00:00"},
        }),
    )
    .await;
    // And one that cannot be read: set aside, never answered.
    publish(
        LEGACY_REPLAY_KEY,
        json!({"data": {"requested_event_namespace": "accounts", "requested_event_type": "UserRegistered", "since": "soon"}}),
    )
    .await;

    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let mut consumer = ch
        .basic_consume(
            original_queue.as_str().into(),
            "original".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let sink = Arc::clone(&got);
    let original = tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            sink.lock()
                .unwrap()
                .push(serde_json::from_slice(&d.data).unwrap());
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
    wait_until("the replay arrived", Duration::from_secs(30), || {
        got.lock().unwrap().len() >= 10
    })
    .await;
    // Then a live one.
    let live = es
        .append(
            "user-live",
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                "accounts",
                "UserRegistered",
                json!({"email": "live@example.com"}),
            )],
        )
        .await
        .unwrap()
        .events
        .remove(0);
    wait_until("the live event arrived", Duration::from_secs(30), || {
        got.lock().unwrap().len() >= 11
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = got.lock().unwrap().clone();
    assert_eq!(
        messages.len(),
        11,
        "the replay since mid-2019, then the live event"
    );
    let mut want: HashSet<uuid::Uuid> = ids[20..].iter().copied().collect();
    want.insert(live.id);
    let received: HashSet<uuid::Uuid> = messages
        .iter()
        .map(|m| m["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(received, want);
    for m in &messages {
        let keys: HashSet<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, HashSet::from(["id", "data", "context"]), "{m}");
        assert_eq!(m["data"]["event_namespace"], "accounts");
        assert_eq!(m["data"]["event_type"], "UserRegistered");
        assert!(m["context"]["time"].is_string());
    }
    let refused = ch
        .basic_get(
            format!("{}.replay-requests.dead-letter", names.exchange)
                .as_str()
                .into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap();
    let refused = refused.expect("the unreadable request is set aside");
    assert!(
        event_store_amqp::header_text(
            &refused.properties,
            event_store_amqp::HEADER_DEAD_LETTER_REASON
        )
        .unwrap()
        .contains("\"soon\" is not a time")
    );

    // A new service asks in the original's words; the stores that speak it answer onto the
    // exchange, so the original service's queue receives the events again.
    es.emitter()
        .request_legacy_replay(
            &[event_store::TypeFilter {
                namespace: "accounts".into(),
                event_type: Some("UserRegistered".into()),
            }],
            at("2020-01-01T00:10:00Z"),
        )
        .await
        .unwrap();
    wait_until("the second replay arrived", Duration::from_secs(30), || {
        got.lock().unwrap().len() >= 22
    })
    .await;

    // The original service publishes in its format; a new subscriber receives it, typed.
    let paid: Arc<Mutex<Vec<(Paid, RecordedEvent)>>> = Arc::default();
    let sink = Arc::clone(&paid);
    let sub = es
        .subscribe::<Paid, _, _>("newsvc", move |p, e| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push((p, e));
                Ok::<(), BoxError>(())
            }
        })
        .await
        .unwrap();
    let sub = tokio::spawn(sub.into_future());
    let old_id = uuid::Uuid::now_v7();
    publish(
        "billing.InvoicePaid",
        json!({
            "id": old_id,
            "data": {"type": "billing.InvoicePaid", "cents": 1250},
            "context": {"action": "pay", "subject": null, "time": "2019-03-04 10:20:30"},
        }),
    )
    .await;
    wait_until(
        "the old-format event arrived",
        Duration::from_secs(30),
        || !paid.lock().unwrap().is_empty(),
    )
    .await;
    let (typed, recorded) = paid.lock().unwrap()[0].clone();
    assert_eq!(typed, Paid { cents: 1250 });
    assert_eq!(recorded.id, old_id);
    assert_eq!(recorded.context.time, at("2019-03-04T10:20:30Z"));
    assert_eq!(recorded.context.action.as_deref(), Some("pay"));
    sub.abort();
    original.abort();
    relay.abort();
}
