//! Global order without holes under concurrent writers, and a cache that never keeps a state
//! past an event that commits late.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::match_wild_err_arm,
    clippy::too_many_lines
)]

mod common;

use common::Schema as _;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use event_store::{
    Aggregate, EventStore, ExpectedVersion, NewEvent, Position, Query, RecordedEvent,
};
use event_store_postgres::PgCache;
use event_store_testkit::{Added, KitCounter, Rng};
use futures::StreamExt;
use serde_json::json;

/// 8 writers × 500 events to random streams while a tail follows the global log: the tail's
/// sequence equals the final log (no miss, no duplicate), and every stream is in version order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_equals_final_log_under_8_writers() {
    let Some(t) = common::fresh().await else {
        return;
    };
    let es = EventStore::from_store(t.clone()).with_poll_interval(Duration::from_millis(100));
    let mut tail = Box::pin(es.tail(Position::START, None));
    let (writers, per_writer) = (8u64, 500usize);
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let es = es.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(w * 31 + 7);
                let mut written = 0;
                while written < per_writer {
                    let stream = format!("s-{}", rng.below(20));
                    let n = (1 + rng.below(4) as usize).min(per_writer - written);
                    let events = (0..n)
                        .map(|i| NewEvent::new("conc", "Wrote", json!({"w": w, "i": written + i})))
                        .collect();
                    es.append(&stream, ExpectedVersion::Any, events)
                        .await
                        .unwrap();
                    written += n;
                }
            })
        })
        .collect();
    let total = writers as usize * per_writer;
    let mut seen: Vec<RecordedEvent> = Vec::with_capacity(total);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < total {
        match tokio::time::timeout_at(deadline, tail.next()).await {
            Ok(Some(Ok(e))) => seen.push(e),
            Ok(Some(Err(e))) => panic!("tail failed: {e}"),
            Ok(None) => panic!("the tail ended"),
            Err(_) => panic!("the tail saw {} of {total} events", seen.len()),
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    let log: Vec<RecordedEvent> = es
        .read_all(Position::START)
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(log.len(), total, "the final log holds every event");
    assert_eq!(seen, log, "the tail's sequence equals the final global log");
    let ids: HashSet<_> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), total, "no duplicate");
    let mut next: HashMap<&str, u64> = HashMap::new();
    for e in &seen {
        let v = next.entry(e.stream.as_str()).or_insert(0);
        assert_eq!(e.version, *v, "stream {} in version order", e.stream);
        *v += 1;
    }
}

/// A cross-stream aggregate folded while an older transaction is still in flight returns what
/// is committed (read-your-writes) but caches nothing past the in-flight transaction, so the
/// late commit is folded in next time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_never_skips_a_late_commit() {
    let Some(t) = common::fresh().await else {
        return;
    };
    #[derive(Default, Clone, serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct NamespaceTotal(KitCounter);
    impl Aggregate for NamespaceTotal {
        const NAME: &'static str = "namespace-total";
        type Event = event_store_testkit::CounterEvent;
        type Args = ();
        fn query((): &()) -> Query {
            Query::events::<event_store_testkit::CounterEvent>()
        }
        fn apply(&mut self, e: &Self::Event) {
            KitCounter::apply(&mut self.0, e);
        }
    }
    let es = EventStore::new(t.clone(), PgCache::new(&t.store), event_store::NoEmitter);
    es.save("a", &Added { n: 1 }).await.unwrap();

    // An append in flight on another connection: it holds an older transaction id.
    let mut admin = common::admin().await;
    let tx = admin.transaction().await.unwrap();
    tx.batch_execute(&format!("SET LOCAL search_path TO \"{}\"", t.schema()))
        .await
        .unwrap();
    let late = NewEvent::from_event(&Added { n: 100 }).unwrap();
    let batch = event_store::AppendBatch::new("late", ExpectedVersion::Any, vec![late]).unwrap();
    let p = &batch.events()[0];
    tx.query(
        "SELECT * FROM append_events($1, -1, $2, $3, $4, $5, $6, $7)",
        &[
            &"late",
            &vec![p.id],
            &vec![p.namespace.as_str()],
            &vec![p.event_type.as_str()],
            &vec![p.data.clone()],
            &vec![serde_json::to_value(&p.context).unwrap()],
            &vec![p.context.time],
        ],
    )
    .await
    .unwrap();

    // A newer append commits meanwhile; the aggregate sees it (read-your-writes).
    es.save("b", &Added { n: 10 }).await.unwrap();
    let before = es.aggregate::<NamespaceTotal>(&()).await.unwrap();
    assert_eq!(before.0.total, 11, "committed events are folded");

    tx.commit().await.unwrap();
    let after = es.aggregate::<NamespaceTotal>(&()).await.unwrap();
    assert_eq!(
        after.0.total, 111,
        "the late commit is folded in: the cache stopped below it"
    );
    let plain = EventStore::from_store(t.clone())
        .aggregate::<NamespaceTotal>(&())
        .await
        .unwrap();
    assert_eq!(after, plain);
}

/// The scenario, deterministic: a transaction appends `late` and stays open, another
/// writer commits `fast`. A follower built the documented way (`follow` from its checkpoint)
/// sees neither until `late` commits, then both, in log order: it never skips `late`. The
/// undocumented way (`read_committed`, keeping the last position) would have: it returns `fast`
/// first, and after `late` commits, nothing after `fast`'s position includes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_never_skips_a_late_commit() {
    use event_store::Store as _;

    let Some(t) = common::fresh().await else {
        return;
    };
    let es = EventStore::from_store(t.clone());
    let follow = |after| {
        let es = es.clone();
        async move {
            es.follow(after, Query::stream_prefix("acct-"))
                .map(|e| e.unwrap())
                .collect::<Vec<_>>()
                .await
        }
    };
    let mut admin = common::admin().await;
    let tx = admin.transaction().await.unwrap();
    tx.batch_execute(&format!("SET LOCAL search_path TO \"{}\"", t.schema()))
        .await
        .unwrap();
    let late = NewEvent::from_event(&Added { n: 1 }).unwrap();
    let batch =
        event_store::AppendBatch::new("acct-late", ExpectedVersion::Any, vec![late]).unwrap();
    let p = &batch.events()[0];
    tx.query(
        "SELECT * FROM append_events($1, -1, $2, $3, $4, $5, $6, $7)",
        &[
            &"acct-late",
            &vec![p.id],
            &vec![p.namespace.as_str()],
            &vec![p.event_type.as_str()],
            &vec![p.data.clone()],
            &vec![serde_json::to_value(&p.context).unwrap()],
            &vec![p.context.time],
        ],
    )
    .await
    .unwrap();
    let fast = es.save("acct-fast", &Added { n: 2 }).await.unwrap();

    // Before `late` commits: the follower sees nothing (`fast` is not final yet)...
    assert!(
        follow(Position::START).await.is_empty(),
        "nothing is final yet"
    );
    // ...while a committed read already returns `fast`: keeping its position would skip `late`.
    let query = Query::stream_prefix("acct-").check().unwrap();
    let committed = t.read_committed(&query, Position::START, 10).await.unwrap();
    assert_eq!(
        committed.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![fast.id]
    );

    tx.commit().await.unwrap();
    // Both become final as soon as no older transaction runs (other tests' may, briefly).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = follow(Position::START).await;
    while seen.len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = follow(Position::START).await;
    }
    assert_eq!(
        seen.iter().map(|e| e.stream.as_str()).collect::<Vec<_>>(),
        ["acct-late", "acct-fast"],
        "both, in log order, once `late` committed"
    );
    let behind_fast = t.read_committed(&query, fast.position, 10).await.unwrap();
    assert!(
        behind_fast.is_empty(),
        "a follower keeping `fast`'s position from a committed read has skipped `late` for ever"
    );
}
