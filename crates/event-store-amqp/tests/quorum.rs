//! Subscriber groups on RabbitMQ quorum queues (issue 18): dead letters, an ordered group's
//! single active consumer per partition, and a clear refusal when a group's queue exists with
//! the other type. One broker node is enough: a quorum queue on one node behaves as on a
//! cluster, only without replicas to fail over to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_store::{
    BoxError, Emitter as _, ExpectedVersion, NewEvent, RecordedEvent, SubscriptionSpec,
};
use event_store_amqp::{AmqpEmitter, HEADER_DEAD_LETTER_REASON, QueueType, header_text};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;

fn quorum(names: &common::Names) -> event_store_amqp::AmqpConfig {
    let mut c = common::config(names);
    c.queue_type = QueueType::Quorum;
    c
}

/// The broker holds `queue` as a quorum queue: as `rabbitmqctl list_queues` says where the
/// broker is local, and in any case by refusing to declare it again as a plain classic queue.
async fn assert_is_quorum(conn: &lapin::Connection, queue: &str) {
    if let Ok(out) = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "name", "type"])
        .output()
        && out.status.success()
    {
        let listed = String::from_utf8_lossy(&out.stdout);
        let kind = listed
            .lines()
            .find_map(|l| l.split_once('\t').filter(|(name, _)| *name == queue))
            .map(|(_, kind)| kind.trim().to_owned());
        assert_eq!(kind.as_deref(), Some("quorum"), "{queue}: {listed}");
    }
    let ch = conn.create_channel().await.unwrap();
    let again = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(again.is_err(), "{queue} is not a classic queue");
    let ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    // Passive: only checks it exists (as quorum, since the classic declaration was refused).
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_group_retries_and_dead_letters() {
    let Some(conn) = common::broker().await else {
        return;
    };
    let names = common::names(&["qflaky"]);
    let mut config = quorum(&names);
    config.max_attempts = 2;
    let emitter = AmqpEmitter::new(config).unwrap();
    let es = event_store::EventStore::new(
        event_store::MemoryStore::new(),
        event_store::NoCache,
        emitter.clone(),
    );
    let handled: Arc<Mutex<Vec<i64>>> = Arc::default();
    let h = Arc::clone(&handled);
    let handler: event_store::Handler = Arc::new(move |e: RecordedEvent| {
        let handled = Arc::clone(&h);
        Box::pin(async move {
            let n = e.data["n"].as_i64().unwrap();
            if n == 2 {
                return Err::<(), BoxError>("always broken".into());
            }
            handled.lock().unwrap().push(n);
            Ok(())
        })
    });
    let sub = emitter
        .subscribe(
            SubscriptionSpec {
                group: "qflaky".into(),
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
    common::wait_until("events 1 and 3 handled", Duration::from_secs(30), || {
        handled.lock().unwrap().len() == 2
    })
    .await;
    let queue = format!("{}.qflaky", names.exchange);
    let dlq = format!("{}.qflaky.dead-letter", names.exchange);
    assert_is_quorum(&conn, &queue).await;
    assert_is_quorum(&conn, &dlq).await;
    let ch = conn.create_channel().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dead = loop {
        if let Some(m) = ch
            .basic_get(dlq.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dead letter arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        header_text(&dead.delivery.properties, HEADER_DEAD_LETTER_REASON).as_deref(),
        Some("always broken")
    );
    let body: serde_json::Value = serde_json::from_slice(&dead.delivery.data).unwrap();
    assert_eq!(body["data"]["n"], 2, "{body}");
    let mut done = handled.lock().unwrap().clone();
    done.sort_unstable();
    assert_eq!(done, vec![1, 3]);
    relay.abort();
    worker.abort();
}

/// An ordered group on quorum partitions, two instances: the broker gives each partition to one
/// of them at a time, so each stream is handled by one instance, in version order, every event
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_partitions_keep_a_single_active_consumer() {
    let Some(conn) = common::broker().await else {
        return;
    };
    let mut names = common::names(&["qordered"]);
    names.partitions = 2;
    let mut config = quorum(&names);
    config.partitions = 2;
    let es = event_store::EventStore::new(
        event_store::MemoryStore::new(),
        event_store::NoCache,
        AmqpEmitter::new(config.clone()).unwrap(),
    );
    let by_instance: Arc<Mutex<Vec<(usize, RecordedEvent)>>> = Arc::default();
    let mut workers = Vec::new();
    for i in 0..2 {
        let emitter = AmqpEmitter::new(config.clone()).unwrap();
        let sink = Arc::clone(&by_instance);
        let handler: event_store::Handler = Arc::new(move |e: RecordedEvent| {
            let sink = Arc::clone(&sink);
            Box::pin(async move {
                sink.lock().unwrap().push((i, e));
                Ok::<(), BoxError>(())
            })
        });
        let sub = emitter
            .subscribe(
                SubscriptionSpec {
                    group: "qordered".into(),
                    types: vec![],
                },
                handler,
            )
            .await
            .unwrap();
        workers.push(tokio::spawn(sub.into_future()));
    }
    let (_m, relay) = common::start_relay(&es, &names);
    let (streams, per_stream) = (8usize, 25usize);
    for v in 0..per_stream {
        for s in 0..streams {
            es.append(
                &format!("o-{s}"),
                ExpectedVersion::Any,
                vec![NewEvent::new("amqp-test", "N", json!({"v": v}))],
            )
            .await
            .unwrap();
        }
    }
    let total = streams * per_stream;
    common::wait_until("every event handled", Duration::from_secs(60), || {
        by_instance.lock().unwrap().len() >= total
    })
    .await;
    let got = by_instance.lock().unwrap().clone();
    let events: Vec<RecordedEvent> = got.iter().map(|(_, e)| e.clone()).collect();
    common::assert_once_in_order(&events, total);
    for p in 0..2 {
        assert_is_quorum(&conn, &format!("{}.qordered.p{p}-of-2", names.exchange)).await;
    }
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, e) in &got {
        let first = *owner.entry(e.stream.as_str()).or_insert(*i);
        assert_eq!(first, *i, "stream {} handled by one instance", e.stream);
    }
    relay.abort();
    for w in workers {
        w.abort();
    }
}

/// A group whose queue exists as classic cannot switch to quorum: one clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_keeps_its_type() {
    let Some(_conn) = common::broker().await else {
        return;
    };
    let names = common::names(&["qswitch"]);
    let classic = AmqpEmitter::new(common::config(&names)).unwrap();
    let (_got, worker) = common::recorder(&classic, "qswitch", vec![]).await;
    worker.abort();
    let emitter = AmqpEmitter::new(quorum(&names)).unwrap();
    let handler: event_store::Handler =
        Arc::new(|_e: RecordedEvent| Box::pin(async { Ok::<(), BoxError>(()) }));
    let refused = emitter
        .subscribe(
            SubscriptionSpec {
                group: "qswitch".into(),
                types: vec![],
            },
            handler,
        )
        .await;
    let Err(e) = refused else {
        panic!("a classic group's queue was redeclared as quorum");
    };
    let text = e.to_string();
    assert!(text.contains("cannot become a quorum queue"), "{text}");
    assert!(
        event_store_amqp::is_refusal(&e),
        "a refusal, not retried: {text}"
    );
}
