//! The cache: it only moves forward, and it is invisible.

use std::collections::HashMap;

use event_store::{
    Aggregate, Cache, CacheKey, CachedState, EventStore, ExpectedVersion, NewEvent, NoCache,
    Position, Query, Store,
};
use serde_json::json;

use crate::aggregates::{
    Added, CounterEvent, KitCounter, KitCounterV2, KitUserTotal, Removed, fold_local,
};
use crate::support::{RecordingEmitter, Rng, suffix};

/// The cache keeps the entry with the latest checkpoint, whatever order concurrent puts arrive
/// in, and keys are independent.
pub async fn cache_moves_forward<S: Store, C: Cache + Clone>(_store: &S, cache: &C) {
    let key = |q: &str, version| CacheKey {
        aggregate: format!("kit-{q}"),
        version,
        upcasters: 0,
        query: format!("{{\"stream\":\"{q}\"}}"),
    };
    let tag = suffix();
    let k = key(&tag, 1);
    assert_eq!(cache.get(&k).await.expect("get"), None);
    let entry = |n: u64| CachedState::new(json!({"n": n}), Position::from_parts(n / 7, n));
    cache.put(&k, entry(5)).await.expect("put");
    assert_eq!(cache.get(&k).await.expect("get"), Some(entry(5)));
    cache.put(&k, entry(3)).await.expect("put");
    assert_eq!(
        cache.get(&k).await.expect("get"),
        Some(entry(5)),
        "an older entry never replaces a newer one"
    );
    cache.put(&k, entry(9)).await.expect("put");
    assert_eq!(cache.get(&k).await.expect("get"), Some(entry(9)));
    assert_eq!(
        cache.get(&key(&tag, 2)).await.expect("get"),
        None,
        "the version is part of the key"
    );
    let other_upcasters = CacheKey {
        upcasters: u64::MAX - 7,
        ..k.clone()
    };
    assert_eq!(
        cache.get(&other_upcasters).await.expect("get"),
        None,
        "the upcasters' fingerprint is part of the key (and takes all 64 bits)"
    );
    cache.put(&other_upcasters, entry(2)).await.expect("put");
    assert_eq!(
        cache.get(&other_upcasters).await.expect("get"),
        Some(entry(2))
    );
    assert_eq!(cache.get(&k).await.expect("get"), Some(entry(9)));
    let k2 = key(&format!("{tag}-race"), 1);
    let mut order: Vec<u64> = (1..=40).collect();
    let mut rng = Rng::new(7);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let tasks: Vec<_> = order
        .into_iter()
        .map(|n| {
            let (cache, k2) = (cache.clone(), k2.clone());
            tokio::spawn(async move { cache.put(&k2, entry(n)).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("put");
    }
    assert_eq!(
        cache.get(&k2).await.expect("get"),
        Some(entry(40)),
        "racing puts leave the latest entry"
    );

    // Entries name the subjects whose personal values they folded; forgetting one removes
    // exactly the entries that name it, with every key and version.
    let (ada, bob) = (format!("{tag}-ada"), format!("{tag}-bob"));
    let personal = |n: u64, subjects: &[&String]| CachedState {
        subjects: subjects.iter().map(|s| (*s).clone()).collect(),
        ..entry(n)
    };
    let (both, only_bob, plain) = (
        key(&format!("{tag}-both"), 1),
        key(&format!("{tag}-bob"), 1),
        key(&format!("{tag}-plain"), 1),
    );
    let both_v2 = key(&format!("{tag}-both"), 2);
    cache
        .put(&both, personal(4, &[&ada, &bob]))
        .await
        .expect("put");
    cache
        .put(&both_v2, personal(4, &[&ada]))
        .await
        .expect("put");
    cache
        .put(&only_bob, personal(4, &[&bob]))
        .await
        .expect("put");
    cache.put(&plain, entry(4)).await.expect("put");
    assert_eq!(
        cache.get(&both).await.expect("get"),
        Some(personal(4, &[&ada, &bob])),
        "subjects round-trip"
    );
    assert_eq!(
        cache
            .forget_subject(&format!("{tag}-nobody"))
            .await
            .expect("forget"),
        0
    );
    assert_eq!(cache.forget_subject(&ada).await.expect("forget"), 2);
    assert_eq!(cache.get(&both).await.expect("get"), None);
    assert_eq!(cache.get(&both_v2).await.expect("get"), None);
    assert_eq!(
        cache.get(&only_bob).await.expect("get"),
        Some(personal(4, &[&bob])),
        "another subject's entry stays"
    );
    assert_eq!(cache.get(&plain).await.expect("get"), Some(entry(4)));
    // A subject id is matched whole, never as a part of another.
    assert_eq!(
        cache
            .forget_subject(&format!("{tag}-bo"))
            .await
            .expect("forget"),
        0
    );
    assert_eq!(cache.forget_subject(&bob).await.expect("forget"), 1);
    assert_eq!(cache.get(&plain).await.expect("get"), Some(entry(4)));
}

/// After random interleavings of saves and aggregates (sequential and concurrent), every
/// aggregate computed through the cache equals the one folded from the whole log.
pub async fn cached_equals_uncached<S: Store + Clone, C: Cache + Clone>(store: &S, cache: &C) {
    let cached = EventStore::new(store.clone(), cache.clone(), RecordingEmitter::default());
    let plain = EventStore::new(store.clone(), NoCache, RecordingEmitter::default());
    let tag = suffix();
    let streams: Vec<String> = (0..3).map(|i| format!("cnt-{i}-{tag}")).collect();
    let users: Vec<String> = (0..2).map(|i| format!("u{i}-{tag}")).collect();
    let mut expected: HashMap<String, Vec<(bool, i64)>> = HashMap::new();
    let mut rng = Rng::new(2024);
    for _ in 0..150 {
        let s = &streams[rng.below(3) as usize];
        if rng.below(3) == 0 {
            let got = cached.fold::<KitCounter>(s).await.expect("aggregate");
            let want = fold_local(expected.get(s).map_or(&[][..], Vec::as_slice));
            assert_eq!(got.state, want, "cached aggregate equals the whole fold");
            assert_eq!(
                plain.aggregate::<KitCounter>(s).await.expect("aggregate"),
                want
            );
        } else {
            let k = 1 + rng.below(4) as usize;
            let mut events = Vec::new();
            for _ in 0..k {
                let add = rng.below(3) != 0;
                let n = 1 + rng.below(100) as i64;
                let user = &users[rng.below(2) as usize];
                let e = if add {
                    NewEvent::from_event(&Added { n })
                } else {
                    NewEvent::from_event(&Removed { n })
                };
                events.push(e.expect("encode").with_subject("user", user.as_str()));
                expected.entry(s.clone()).or_default().push((add, n));
            }
            cached
                .append(s, ExpectedVersion::Any, events)
                .await
                .expect("append");
        }
    }
    for u in &users {
        let a = cached
            .aggregate::<KitUserTotal>(u)
            .await
            .expect("aggregate");
        let b = plain.aggregate::<KitUserTotal>(u).await.expect("aggregate");
        assert_eq!(
            a, b,
            "a cross-stream aggregate through the cache equals the whole fold"
        );
    }
    // Concurrent saves and aggregates on one stream.
    let s = streams[0].clone();
    let tasks: Vec<_> = (0..4u64)
        .map(|t| {
            let (cached, s) = (cached.clone(), s.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(t + 11);
                for _ in 0..30 {
                    if rng.below(2) == 0 {
                        cached.save(&s, &Added { n: 1 }).await.expect("save");
                    } else {
                        cached.aggregate::<KitCounter>(&s).await.expect("aggregate");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let warm = cached.fold::<KitCounter>(&s).await.expect("aggregate");
    let whole = plain.aggregate::<KitCounter>(&s).await.expect("aggregate");
    assert_eq!(
        warm.state, whole,
        "after concurrent saves and aggregates the cache is invisible"
    );
    let again = cached.fold::<KitCounter>(&s).await.expect("aggregate");
    assert_eq!(again.state, whole);
    assert!(again.from_cache, "a warm aggregate uses the cache");
    assert!(
        again.events_read < whole.count,
        "a warm aggregate reads only newer events ({} of {})",
        again.events_read,
        whole.count
    );
}

/// Bumping an aggregate's version ignores the older entries; an entry that no longer decodes is
/// ignored too.
pub async fn version_bump_invalidates<S: Store + Clone, C: Cache + Clone>(store: &S, cache: &C) {
    let es = EventStore::new(store.clone(), cache.clone(), RecordingEmitter::default());
    let s = format!("bump-{}", suffix());
    es.save(&s, &Added { n: 10 }).await.expect("save");
    let last = es.save(&s, &Removed { n: 3 }).await.expect("save");
    // Caches keep only final states: let the saves become final (another test's transaction on a
    // busy server holds finality back for a moment, and the fold would rightly cache nothing).
    crate::support::wait_final(store, last.position).await;
    let v1 = es.aggregate::<KitCounter>(&s).await.expect("aggregate");
    assert_eq!(v1.total, 7);
    let warm = es.fold::<KitCounter>(&s).await.expect("aggregate");
    assert!(
        warm.from_cache && warm.events_read == 0,
        "the second fold is served by the cache"
    );
    let v2 = es.fold::<KitCounterV2>(&s).await.expect("aggregate");
    assert!(
        !v2.from_cache,
        "a bumped version does not use the older entry"
    );
    assert_eq!(v2.state.0.total, 4, "the new fold runs over every event");
    es.save(&s, &Added { n: 1 }).await.expect("save");
    assert_eq!(
        es.aggregate::<KitCounterV2>(&s)
            .await
            .expect("aggregate")
            .0
            .total,
        5
    );
    assert_eq!(
        es.aggregate::<KitCounter>(&s)
            .await
            .expect("aggregate")
            .total,
        8
    );

    let key = CacheKey {
        aggregate: KitCounter::NAME.to_owned(),
        version: KitCounter::VERSION,
        upcasters: 0,
        query: Query::stream(s.clone()).of::<CounterEvent>().canonical(),
    };
    cache
        .put(
            &key,
            CachedState::new(
                json!("not a counter"),
                Position::from_parts(u64::MAX / 2, 0),
            ),
        )
        .await
        .expect("put");
    let healed = es.fold::<KitCounter>(&s).await.expect("aggregate");
    assert!(!healed.from_cache, "an undecodable entry is ignored");
    assert_eq!(healed.state.total, 8);
}
