//! Concurrent callers: racing appenders, a tail during appends, and a mixed workload.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use event_store::{Error, EventStore, ExpectedVersion, Query, RecordedEvent, Store};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::aggregates::{Added, KitCounter};
use crate::support::{
    PATIENCE, RecordingEmitter, Rng, append, ev, head, log_after, stream_events, suffix,
};

/// 16 concurrent appenders expecting the same version: exactly one wins, every other one gets a
/// conflict with the actual version; the same for 16 racing to create a stream.
pub async fn concurrent_appenders<S: Store + Clone>(store: &S) {
    const N: usize = 16;
    let s = format!("race-{}", suffix());
    append(
        store,
        &s,
        ExpectedVersion::NoStream,
        vec![ev("kit", "Start", json!({}))],
    )
    .await
    .expect("append");
    for expected in [ExpectedVersion::Exact(0), ExpectedVersion::Exact(2)] {
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let (store, s) = (store.clone(), s.clone());
                tokio::spawn(async move {
                    append(
                        &store,
                        &s,
                        expected,
                        vec![
                            ev("kit", "Racer", json!({"i": i})),
                            ev("kit", "Racer2", json!({"i": i})),
                        ],
                    )
                    .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(events) => winners.push(events),
                Err(Error::Conflict {
                    expected: e,
                    actual,
                    ..
                }) => {
                    assert_eq!(e, expected);
                    assert_eq!(
                        actual,
                        Some(expected_version_after(expected)),
                        "conflict reports the actual version"
                    );
                }
                Err(e) => panic!("a racer failed with {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "exactly one of {N} racers expecting {expected} wins"
        );
    }
    let all = stream_events(store, &s).await;
    assert_eq!(
        all.len(),
        5,
        "one start event and two winning batches of two"
    );
    assert!(all.iter().enumerate().all(|(i, e)| e.version == i as u64));

    let fresh = format!("race-new-{}", suffix());
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (store, s) = (store.clone(), fresh.clone());
            tokio::spawn(async move {
                append(
                    &store,
                    &s,
                    ExpectedVersion::NoStream,
                    vec![ev("kit", "Create", json!({"i": i}))],
                )
                .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => wins += 1,
            Err(Error::Conflict { actual, .. }) => assert_eq!(actual, Some(0)),
            Err(e) => panic!("a creator failed with {e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one of {N} creators wins");
}

pub(crate) fn expected_version_after(expected: ExpectedVersion) -> u64 {
    // Each winning batch holds two events: after `Exact(v)` wins, the stream is at v + 2.
    match expected {
        ExpectedVersion::Exact(v) => v + 2,
        _ => 0,
    }
}

/// A live tail running while concurrent writers append misses nothing and duplicates nothing,
/// and sees each stream in version order.
pub async fn tail_during_appends<S: Store + Clone>(store: &S) {
    let ns = format!("tail{}", &suffix()[..8]);
    let es = EventStore::from_store(store.clone()).with_poll_interval(Duration::from_millis(50));
    let start = head(store).await;
    let mut tail = Box::pin(es.tail(start, Some(Query::all().namespace(ns.clone()))));
    let (writers, per_writer) = (4u64, 40);
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (store, ns) = (store.clone(), ns.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(97 + w);
                let mut written = 0;
                while written < per_writer {
                    let s = format!("tail-{}-{ns}", rng.below(3));
                    let n = (1 + rng.below(3) as usize).min(per_writer - written);
                    let events = (0..n)
                        .map(|i| ev(&ns, "T", json!({"w": w, "i": written + i})))
                        .collect();
                    append(&store, &s, ExpectedVersion::Any, events)
                        .await
                        .expect("append");
                    written += n;
                    if rng.below(4) == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    let total = writers as usize * per_writer;
    let mut seen = Vec::with_capacity(total);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.len() < total {
        match tokio::time::timeout_at(deadline, tail.next()).await {
            Ok(Some(Ok(e))) => seen.push(e),
            Ok(Some(Err(e))) => panic!("the tail failed: {e}"),
            Ok(None) => panic!("a live tail ended"),
            Err(_) => panic!("the tail saw {} of {total} events", seen.len()),
        }
    }
    for h in handles {
        h.await.expect("writer");
    }
    let ids: HashSet<Uuid> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), total, "the tail delivered no event twice");
    let log = log_after(store, start, 1000, |e| e.namespace == ns).await;
    assert_eq!(seen, log, "the tail's sequence equals the final global log");
    let mut next: HashMap<&str, u64> = HashMap::new();
    for e in &seen {
        let v = next.entry(e.stream.as_str()).or_insert(0);
        assert_eq!(e.version, *v, "the tail follows version order");
        *v += 1;
    }
}

/// Many writers on shared and on their own streams, with optimistic concurrency and retries,
/// mixed with cached aggregates and a live tail: every success is stored exactly once (exactly
/// one winner per expected version), the tail equals the final log, and the cached aggregates
/// equal the whole folds.
pub async fn mixed_workload<S: Store + Clone>(store: &S) {
    let tag = &suffix()[..8];
    let shared: Vec<String> = (0..3).map(|i| format!("mix-shared-{i}-{tag}")).collect();
    let cached = EventStore::new(
        store.clone(),
        event_store::MemoryCache::new(),
        RecordingEmitter::default(),
    )
    .with_poll_interval(Duration::from_millis(50));
    let start = head(store).await;
    let mine = move |e: &RecordedEvent| e.stream.contains(tag);
    let mut tail = Box::pin(cached.tail(start, None));
    let writers: Vec<_> = (0..6u64)
        .map(|w| {
            let (es, shared) = (cached.clone(), shared.clone());
            let own = format!("mix-own-{w}-{tag}");
            tokio::spawn(async move {
                let mut rng = Rng::new(w + 1000);
                let mut wins: Vec<(String, u64)> = Vec::new();
                for _ in 0..25 {
                    if rng.below(3) == 0 {
                        let e = es.save(&own, &Added { n: 1 }).await.expect("save");
                        wins.push((own.clone(), e.version));
                        continue;
                    }
                    let s = &shared[rng.below(3) as usize];
                    loop {
                        let seen = es.stream_version(s).await.expect("version");
                        let expected =
                            seen.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        match es.save_expecting(s, expected, &Added { n: 1 }).await {
                            Ok(e) => {
                                assert_eq!(
                                    Some(e.version),
                                    seen.map_or(Some(0), |v| v.checked_add(1))
                                );
                                wins.push((s.clone(), e.version));
                                break;
                            }
                            Err(Error::Conflict { .. }) => tokio::task::yield_now().await,
                            Err(e) => panic!("a writer failed: {e}"),
                        }
                    }
                }
                wins
            })
        })
        .collect();
    let aggregators: Vec<_> = (0..2u64)
        .map(|a| {
            let (es, shared) = (cached.clone(), shared.clone());
            tokio::spawn(async move {
                for i in 0..20u64 {
                    let s = &shared[((a + i) % 3) as usize];
                    es.aggregate::<KitCounter>(s).await.expect("aggregate");
                }
            })
        })
        .collect();
    let mut wins = Vec::new();
    for w in writers {
        wins.extend(w.await.expect("writer"));
    }
    for a in aggregators {
        a.await.expect("aggregator");
    }
    let total = wins.len();
    let distinct: HashSet<&(String, u64)> = wins.iter().collect();
    assert_eq!(
        distinct.len(),
        total,
        "no two appends won the same version of a stream"
    );
    let mut seen = Vec::with_capacity(total);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.len() < total {
        match tokio::time::timeout_at(deadline, tail.next()).await {
            Ok(Some(Ok(e))) if mine(&e) => seen.push(e),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("the tail failed: {e}"),
            Ok(None) => panic!("a live tail ended"),
            Err(_) => panic!("the tail saw {} of {total} events", seen.len()),
        }
    }
    let log = log_after(store, start, 1000, mine).await;
    assert_eq!(
        log.len(),
        total,
        "every success is stored once, and nothing else"
    );
    assert_eq!(seen, log, "the tail equals the final log");
    let plain = EventStore::from_store(store.clone());
    for s in &shared {
        let events = stream_events(store, s).await;
        let won = wins.iter().filter(|(w, _)| w == s).count();
        assert_eq!(events.len(), won, "stream {s}: one event per success");
        assert!(
            events
                .iter()
                .enumerate()
                .all(|(i, e)| e.version == i as u64),
            "versions without gaps"
        );
        let via_cache = cached.aggregate::<KitCounter>(s).await.expect("aggregate");
        let whole = plain.aggregate::<KitCounter>(s).await.expect("aggregate");
        assert_eq!(via_cache, whole, "the cache is invisible under concurrency");
        assert_eq!(whole.count as usize, won);
    }
}
