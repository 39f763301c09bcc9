//! The in-process emitter through the facade: groups, competing instances, retries, dead
//! letters, publish order, and handlers that use the store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_store::{
    BoxError, Event, EventStore, Events, InProcessEmitter, MemoryCache, MemoryStore, RecordedEvent,
};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(namespace = "shop")]
struct Placed {
    n: u32,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(namespace = "shop")]
struct Cancelled {
    n: u32,
}

#[derive(Events, Debug, Clone, PartialEq)]
enum Shop {
    Placed(Placed),
    Cancelled(Cancelled),
}

type Seen = Arc<Mutex<Vec<RecordedEvent>>>;

fn store() -> EventStore<MemoryStore, MemoryCache, InProcessEmitter> {
    EventStore::new(
        MemoryStore::new(),
        MemoryCache::new(),
        InProcessEmitter::new().with_retry(3, Duration::from_millis(1)),
    )
}

async fn recorder(
    es: &EventStore<MemoryStore, MemoryCache, InProcessEmitter>,
    group: &str,
) -> (Seen, tokio::task::JoinHandle<event_store::Result<()>>) {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let sub = es
        .subscribe(group, move |_e: Shop, recorded: RecordedEvent| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(recorded);
                tokio::task::yield_now().await;
                Ok::<(), BoxError>(())
            }
        })
        .await
        .unwrap();
    (seen, tokio::spawn(sub.into_future()))
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_each_receive_everything_and_instances_share() {
    let es = store();
    let (a1, h1) = recorder(&es, "billing").await;
    let (a2, h2) = recorder(&es, "billing").await;
    let (b, h3) = recorder(&es, "shipping").await;
    for i in 0..200 {
        es.save(&format!("order-{}", i % 7), &Placed { n: i })
            .await
            .unwrap();
    }
    wait_until("every group sees 200", || {
        a1.lock().unwrap().len() + a2.lock().unwrap().len() == 200 && b.lock().unwrap().len() == 200
    })
    .await;
    let mut billing: Vec<u64> = a1
        .lock()
        .unwrap()
        .iter()
        .chain(a2.lock().unwrap().iter())
        .map(|e| e.position.parts().1)
        .collect();
    billing.sort_unstable();
    assert_eq!(
        billing,
        (1..=200).collect::<Vec<_>>(),
        "the instances of a group share the events, each once"
    );
    let shipping: Vec<u64> = b
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.position.parts().1)
        .collect();
    assert_eq!(
        shipping,
        (1..=200).collect::<Vec<_>>(),
        "a lone instance receives everything in order"
    );
    for h in [h1, h2, h3] {
        h.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_to_one_stream_publish_in_version_order() {
    let es = store();
    let (seen, h) = recorder(&es, "ordered").await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let es = es.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    es.save("hot", &Placed { n: w * 100 + i }).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    wait_until("400 events delivered", || seen.lock().unwrap().len() == 400).await;
    let versions: Vec<u64> = seen.lock().unwrap().iter().map(|e| e.version).collect();
    assert_eq!(versions, (0..400).collect::<Vec<_>>());
    h.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handlers_are_retried_then_dead_lettered() {
    let es = store();
    let calls: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let done: Arc<AtomicU32> = Arc::default();
    let (c, d) = (Arc::clone(&calls), Arc::clone(&done));
    let sub = es
        .subscribe("flaky", move |e: Placed, _| {
            let (calls, done) = (Arc::clone(&c), Arc::clone(&d));
            async move {
                let attempt = {
                    let mut calls = calls.lock().unwrap();
                    let n = calls.entry(e.n).or_default();
                    *n += 1;
                    *n
                };
                match e.n {
                    // Fails twice, then succeeds.
                    1 if attempt <= 2 => Err::<(), BoxError>("not yet".into()),
                    // Always fails.
                    2 => Err(format!("poison #{attempt}").into()),
                    _ => {
                        done.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                }
            }
        })
        .await
        .unwrap();
    let h = tokio::spawn(sub.into_future());
    es.save("s", &Placed { n: 1 }).await.unwrap();
    es.save("s", &Placed { n: 2 }).await.unwrap();
    es.save("s", &Placed { n: 3 }).await.unwrap();
    wait_until("events 1 and 3 handled", || {
        done.load(Ordering::SeqCst) == 2
    })
    .await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls[&1], 3,
        "failed twice, succeeded on the third call, then acknowledged"
    );
    assert_eq!(calls[&2], 3, "tried max_attempts times");
    assert_eq!(calls[&3], 1);
    let dead = es.emitter().dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].group, "flaky");
    assert_eq!(dead[0].reason, "poison #3");
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].event.decode::<Placed>().unwrap(), Placed { n: 2 });
    h.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_may_use_the_store_and_types_are_filtered() {
    let es = store();
    let writer = es.clone();
    let sub = es
        .subscribe("projector", move |e: Cancelled, recorded| {
            let writer = writer.clone();
            async move {
                // A handler that writes back: a follow-up event caused by the one handled.
                let follow = event_store::NewEvent::from_event(&Placed { n: e.n + 1000 })?
                    .with_causation_id(recorded.id);
                writer
                    .append(
                        "follow-ups",
                        event_store::ExpectedVersion::Any,
                        vec![follow],
                    )
                    .await?;
                Ok(())
            }
        })
        .await
        .unwrap();
    let h = tokio::spawn(sub.into_future());
    es.save("o", &Placed { n: 1 }).await.unwrap();
    let cancel = es.save("o", &Cancelled { n: 1 }).await.unwrap();
    let mut follow = Vec::new();
    wait_until("the follow-up is written", || {
        follow = futures::executor::block_on(es.read_stream_page("follow-ups", 0, 10)).unwrap();
        !follow.is_empty()
    })
    .await;
    assert_eq!(
        follow.len(),
        1,
        "only the Cancelled event reached the handler"
    );
    assert_eq!(follow[0].context.causation_id, Some(cancel.id));
    h.abort();
}
