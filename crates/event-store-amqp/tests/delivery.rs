//! 10 000 saved events reach a group each exactly once, each stream in version order; two
//! instances of a group share the work and two groups each receive everything.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use std::time::Duration;

use common::{assert_once_in_order, names, recorder, save_many, start_relay, store, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_reach_a_group_once_in_order() {
    if common::broker().await.is_none() {
        return;
    }
    let names = names(&["orders"]);
    let es = store(&names);
    let (got, sub) = recorder(es.emitter(), "orders", vec![]).await;
    save_many(&es, 50, 100, 100).await;
    let (metrics, relay) = start_relay(&es, &names);
    wait_until("10 000 events handled", Duration::from_secs(120), || {
        got.lock().unwrap().len() >= 10_000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_once_in_order(&got.lock().unwrap(), 10_000);
    assert_eq!(metrics.nacked.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Messages carry the documented properties (checked on the relay's side of the contract).
    let e = got.lock().unwrap()[0].clone();
    assert_eq!(e.namespace, "amqp-test");
    relay.abort();
    sub.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_and_groups_each_get_everything() {
    if common::broker().await.is_none() {
        return;
    }
    let names = names(&["billing", "shipping"]);
    let es = store(&names);
    let (a1, h1) = recorder(es.emitter(), "billing", vec![]).await;
    let (a2, h2) = recorder(es.emitter(), "billing", vec![]).await;
    let (b, h3) = recorder(es.emitter(), "shipping", vec![]).await;
    let (_m, relay) = start_relay(&es, &names);
    save_many(&es, 10, 20, 100).await;
    wait_until("both groups done", Duration::from_secs(60), || {
        a1.lock().unwrap().len() + a2.lock().unwrap().len() >= 2000
            && b.lock().unwrap().len() >= 2000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (n1, n2) = (a1.lock().unwrap().len(), a2.lock().unwrap().len());
    assert_eq!(
        n1 + n2,
        2000,
        "the instances of a group share each event once"
    );
    assert!(n1 > 0 && n2 > 0, "both instances worked ({n1} and {n2})");
    let mut ids: Vec<_> = a1
        .lock()
        .unwrap()
        .iter()
        .chain(a2.lock().unwrap().iter())
        .map(|e| e.id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2000);
    assert_once_in_order(&b.lock().unwrap(), 2000);
    for h in [h1, h2, h3] {
        h.abort();
    }
    relay.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_group_routes_each_stream_to_one_partition_and_refuses_an_unordered_queue() {
    if common::broker().await.is_none() {
        return;
    }
    use event_store::Emitter as _;
    let mut names = names(&["by-stream", "was-unordered"]);
    names.partitions = 3;
    let mut ordered = common::config(&names);
    ordered.partitions = 3;
    let emitter = event_store_amqp::AmqpEmitter::new(ordered).unwrap();
    let (got, sub) = recorder(&emitter, "by-stream", vec![]).await;
    let es = store(&names);
    save_many(&es, 20, 5, 200).await;
    let (_metrics, relay) = start_relay(&es, &names);
    wait_until("1 000 events handled", Duration::from_secs(120), || {
        got.lock().unwrap().len() >= 1_000
    })
    .await;
    assert_once_in_order(&got.lock().unwrap(), 1_000);
    // Each event went to exactly one partition queue: nothing is left in any of them.
    let broker = common::broker().await.unwrap();
    let ch = broker.create_channel().await.unwrap();
    for i in 0..3 {
        let q = ch
            .queue_declare(
                format!("{}.by-stream.p{i}-of-3", names.exchange)
                    .as_str()
                    .into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        assert_eq!(q.message_count(), 0, "partition {i} drained");
    }

    // A group that ran unordered cannot silently switch: its old queue would fill up for ever.
    let (_, old) = recorder(es.emitter(), "was-unordered", vec![]).await;
    old.abort();
    let Err(err) = emitter
        .subscribe(
            event_store::SubscriptionSpec {
                group: "was-unordered".to_owned(),
                types: vec![],
            },
            std::sync::Arc::new(|_| Box::pin(async { Ok::<(), event_store::BoxError>(()) })),
        )
        .await
    else {
        panic!("an ordered subscription over an unordered queue was accepted");
    };
    assert!(
        matches!(&err, event_store::Error::InvalidInput { field, .. } if field == "partitions"),
        "{err}"
    );
    // Nor can an ordered group ask for a replay into one of its partitions.
    let err = emitter
        .request_replay("by-stream", &[], event_store::Position::START)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, event_store::Error::InvalidInput { .. }),
        "{err}"
    );
    relay.abort();
    sub.abort();
    let _ = broker.close(200, "done".into()).await;
}
