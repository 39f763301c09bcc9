//! A group that joins late catches up — by a replay request answered by the relay, or from the
//! store it shares — and then continues live.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{names, recorder, save_many, start_relay, store, wait_until};
use event_store::{BoxError, Position, RecordedEvent, SubscriptionSpec, TypeFilter};

fn types() -> Vec<TypeFilter> {
    vec![TypeFilter {
        namespace: "amqp-test".into(),
        event_type: Some("Happened".into()),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_group_catches_up_by_replay_then_goes_live() {
    if common::broker().await.is_none() {
        return;
    }
    let names = names(&["late"]);
    let es = store(&names);
    let (metrics, relay) = start_relay(&es, &names);
    save_many(&es, 4, 10, 30).await; // 300 events published before the group exists
    wait_until("published", Duration::from_secs(30), || {
        metrics.confirmed.load(std::sync::atomic::Ordering::Relaxed) >= 300
    })
    .await;
    let (got, sub) = recorder(es.emitter(), "late", types()).await;
    es.emitter()
        .request_replay("late", &types(), Position::START)
        .await
        .unwrap();
    wait_until("the replay arrived", Duration::from_secs(60), || {
        got.lock().unwrap().len() >= 300
    })
    .await;
    save_many(&es, 4, 10, 10).await; // and 100 live ones
    wait_until("live events arrived", Duration::from_secs(60), || {
        got.lock().unwrap().len() >= 400
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    common::assert_once_in_order(&got.lock().unwrap(), 400);
    assert_eq!(
        metrics.replayed.load(std::sync::atomic::Ordering::Relaxed),
        300
    );
    sub.abort();
    relay.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_group_sharing_the_store_catches_up_from_it() {
    if common::broker().await.is_none() {
        return;
    }
    let names = names(&["sharer"]);
    let es = store(&names);
    let (_m, relay) = start_relay(&es, &names);
    save_many(&es, 4, 10, 30).await;
    let got: common::Received = Arc::default();
    let sink = Arc::clone(&got);
    let handler: event_store::Handler = Arc::new(move |e: RecordedEvent| {
        let sink = Arc::clone(&sink);
        Box::pin(async move {
            sink.lock().unwrap().push(e);
            Ok::<(), BoxError>(())
        })
    });
    let sub = es
        .emitter()
        .subscribe_from_store(
            es.store().clone(),
            Position::START,
            SubscriptionSpec {
                group: "sharer".into(),
                types: types(),
            },
            handler,
        )
        .await
        .unwrap();
    let worker = tokio::spawn(sub.into_future());
    save_many(&es, 4, 10, 10).await;
    wait_until("caught up and live", Duration::from_secs(60), || {
        got.lock().unwrap().len() >= 400
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::assert_once_in_order(&got.lock().unwrap(), 400);
    worker.abort();
    relay.abort();
}
