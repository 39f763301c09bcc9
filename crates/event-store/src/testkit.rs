//! The conformance kit: one public async check per invariant of the design (DESIGN §4), which
//! every store and cache adapter runs in its tests.
//!
//! Each check panics with a message naming the broken invariant. The checks use streams and
//! namespaces of their own (with a random suffix), so they may share a store with other data,
//! but they are meant to run on a fresh one.
//!
//! An adapter's test file runs the whole kit with two macros:
//!
//! ```text
//! event_store::store_conformance_tests!(|| async { Some(MyStore::fresh().await) });
//! event_store::cache_conformance_tests!(|| async { Some((MyStore::fresh().await, MyCache::fresh().await)) });
//! ```
//!
//! They expand to one `#[tokio::test]` per check. The factory returns `None` when the backend's
//! service is unreachable and the test should be skipped (it says so itself). The test crate
//! needs `tokio` with the `macros` and `rt-multi-thread` features as a dev-dependency.

// The kit is test code: a failed expectation is a panic with a message, by design.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::many_single_char_names,
    clippy::too_many_lines,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::match_wild_err_arm
)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use std::future::Future;

use crate::backend::{
    Appended, Cache, CacheKey, CachedState, Checkpoints, Emitter, Handler, NoCache, Store,
    StoreStats, Subscription, SubscriptionSpec,
};
use crate::error::{Error, Result};
use crate::facade::EventStore;
use crate::limits::{AppendBatch, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_STREAM_ID_BYTES};
use crate::model::{Direction, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId};
use crate::query::Query;
use crate::{Aggregate, Event, Events};

/// How long a check waits for something that must happen (a tail to catch up) before failing.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A small deterministic random generator (xorshift64*), so failures replay.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// An emitter that records what it is asked to publish (for checks that nothing is emitted
/// twice).
#[derive(Debug, Clone, Default)]
pub struct RecordingEmitter {
    published: Arc<Mutex<Vec<RecordedEvent>>>,
}

impl RecordingEmitter {
    /// Everything published so far.
    pub fn published(&self) -> Vec<RecordedEvent> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Emitter for RecordingEmitter {
    async fn publish(&self, events: &[RecordedEvent]) -> Result<()> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(events);
        Ok(())
    }

    async fn subscribe(&self, spec: SubscriptionSpec, _handler: Handler) -> Result<Subscription> {
        Ok(Subscription::new(spec.group, async { Ok(()) }))
    }
}

/// A store that keeps something alive as long as any clone of it lives: a temporary directory,
/// a guard that drops a test schema, …; it delegates every [`Store`] method.
#[derive(Debug)]
pub struct Guarded<S, G> {
    /// The store.
    pub store: S,
    /// What lives as long as the store.
    pub guard: Arc<G>,
}

impl<S: Clone, G> Clone for Guarded<S, G> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            guard: Arc::clone(&self.guard),
        }
    }
}

impl<S, G> Guarded<S, G> {
    /// `store`, keeping `guard` alive.
    pub fn new(store: S, guard: G) -> Self {
        Self {
            store,
            guard: Arc::new(guard),
        }
    }
}

impl<S: Checkpoints, G: Send + Sync + 'static> Checkpoints for Guarded<S, G> {
    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<Position>>> + Send {
        self.store.load_checkpoint(name)
    }
    fn save_checkpoint(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<()>> + Send {
        self.store.save_checkpoint(name, position)
    }
    fn checkpoints(&self) -> impl Future<Output = Result<Vec<(String, Position)>>> + Send {
        self.store.checkpoints()
    }
}

impl<S: Store, G: Send + Sync + 'static> Store for Guarded<S, G> {
    fn append(&self, batch: AppendBatch) -> impl Future<Output = Result<Appended>> + Send {
        self.store.append(batch)
    }
    fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send {
        self.store.read_stream(stream, from, direction, limit)
    }
    fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send {
        self.store.read_all(after, limit)
    }
    fn read_all_backward(
        &self,
        before: Option<Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send {
        self.store.read_all_backward(before, limit)
    }
    fn stats(&self) -> impl Future<Output = Result<StoreStats>> + Send {
        self.store.stats()
    }
    fn read_query(
        &self,
        query: &Query,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send {
        self.store.read_query(query, after, limit)
    }
    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<u64>>> + Send {
        self.store.stream_version(stream)
    }
    fn watermark(&self) -> impl Future<Output = Result<Position>> + Send {
        self.store.watermark()
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.changes()
    }
}

fn suffix() -> String {
    let s = Uuid::now_v7().simple().to_string();
    // The last 12 hex digits of a v7 id are random (the first ones are the time).
    s[20..].to_owned()
}

fn sid(s: &str) -> StreamId {
    StreamId::new(s).expect("test stream ids are valid")
}

fn ev(namespace: &str, ty: &str, data: Value) -> NewEvent {
    NewEvent::new(namespace, ty, data)
}

fn batch(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendBatch {
    AppendBatch::new(stream, expected, events).expect("test batches are valid")
}

async fn append<S: Store>(
    store: &S,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<Vec<RecordedEvent>> {
    store
        .append(batch(stream, expected, events))
        .await
        .map(|a| a.events)
}

async fn stream_events<S: Store>(store: &S, stream: &str) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    loop {
        let page = store
            .read_stream(&sid(stream), out.len() as u64, Direction::Forward, 1000)
            .await
            .expect("read_stream");
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            return out;
        }
    }
}

/// Reads the whole global log from `after` (waiting until it is final), keeping the events that
/// `keep` accepts.
async fn log_after<S: Store>(
    store: &S,
    after: Position,
    page: usize,
    keep: impl Fn(&RecordedEvent) -> bool,
) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let events = store.read_all(cursor, page).await.expect("read_all");
        let Some(last) = events.last() else {
            return out;
        };
        assert!(
            last.position > cursor,
            "read_all returned events at or before its checkpoint"
        );
        cursor = last.position;
        out.extend(events.into_iter().filter(&keep));
    }
}

/// Waits until the global log, read from `after`, holds `n` events that `keep` accepts (the
/// log only shows events once they are final).
async fn wait_for_log<S: Store>(
    store: &S,
    after: Position,
    n: usize,
    keep: impl Fn(&RecordedEvent) -> bool + Copy,
) -> Vec<RecordedEvent> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = log_after(store, after, 1000, keep).await;
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The position of the last final event now (where a check's own events will come after).
pub async fn head<S: Store>(store: &S) -> Position {
    let mut cursor = Position::START;
    loop {
        let page = store.read_all(cursor, 1000).await.expect("read_all");
        match page.last() {
            Some(last) => cursor = last.position,
            None => return cursor,
        }
    }
}

fn assert_conflict(r: Result<Vec<RecordedEvent>>, expected: ExpectedVersion, actual: Option<u64>) {
    match r {
        Err(Error::Conflict {
            expected: e,
            actual: a,
            ..
        }) => {
            assert_eq!(e, expected, "conflict carries the expected version");
            assert_eq!(a, actual, "conflict carries the actual version");
        }
        other => panic!("expected a conflict ({expected} vs {actual:?}), got {other:?}"),
    }
}

// ---- the store checks -------------------------------------------------------------------------

/// Appended events read back exactly as recorded: ids, versions, positions, namespace, type, data
/// (with `event_namespace`/`event_type`), the whole context, and strings with SQL and JSON
/// metacharacters stored verbatim.
pub async fn round_trip<S: Store>(store: &S) {
    let stream = format!("order:{}/é'\";--", suffix());
    let time = Utc
        .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
        .single()
        .expect("valid date")
        + chrono::Duration::microseconds(123_456);
    let corr = Uuid::now_v7();
    let events = vec![
        ev("shop", "Placed", json!({"total": 12.5, "items": [1, 2, {"sku": "a'b"}], "note": "'); DROP TABLE events; --"}))
            .with_action("place-order")
            .with_subject("user_id", 7)
            .with_correlation_id(corr)
            .with_time(time)
            .with_metadata("ip", "127.0.0.1"),
        ev("shop", "Paid", json!({"unicode": "ünïcødé ✓ \u{1F600}", "nested": {"a": null, "b": true}}))
            .with_causation_id(corr)
            .with_time(time),
        ev("shop-audit", "Noted", json!({})).with_id(Uuid::now_v7()),
    ];
    let written = append(store, &stream, ExpectedVersion::NoStream, events.clone())
        .await
        .expect("append");
    assert_eq!(written.len(), 3);
    let read = stream_events(store, &stream).await;
    assert_eq!(
        read, written,
        "events read back differ from the append's result"
    );
    for (i, (r, n)) in read.iter().zip(&events).enumerate() {
        assert_eq!(
            r.version, i as u64,
            "versions start at 0 and are consecutive"
        );
        assert_eq!(r.stream, stream);
        assert_eq!(r.namespace, n.namespace);
        assert_eq!(r.event_type, n.event_type);
        let mut data = n.data.clone();
        data["event_namespace"] = json!(n.namespace);
        data["event_type"] = json!(n.event_type);
        assert_eq!(
            r.data, data,
            "data is stored verbatim, with event_namespace/event_type"
        );
        if let Some(id) = n.id {
            assert_eq!(r.id, id, "a given id is kept");
        } else {
            assert_eq!(r.id.get_version_num(), 7, "ids default to UUID v7");
        }
    }
    assert_eq!(
        read[0].context.time, time,
        "time is kept to the microsecond"
    );
    assert_eq!(read[0].context.action.as_deref(), Some("place-order"));
    assert_eq!(read[0].context.subject.get("user_id"), Some(&json!(7)));
    assert_eq!(read[0].context.correlation_id, Some(corr));
    assert_eq!(read[1].context.causation_id, Some(corr));
    assert_eq!(
        read[0].context.metadata.get("ip"),
        Some(&json!("127.0.0.1"))
    );
    assert!(
        read.windows(2).all(|w| w[0].position < w[1].position),
        "positions grow with versions"
    );
    assert_eq!(
        store.stream_version(&sid(&stream)).await.expect("version"),
        Some(2)
    );
    assert_eq!(
        store
            .stream_version(&sid(&format!("none-{}", suffix())))
            .await
            .expect("version"),
        None
    );
    let own = |e: &RecordedEvent| e.stream == stream;
    let log = wait_for_log(store, Position::START, 3, own).await;
    assert_eq!(log, read, "the global log holds the same events");
    let json_line = serde_json::to_value(&read[0]).expect("encode");
    for key in [
        "id",
        "stream",
        "version",
        "position",
        "namespace",
        "type",
        "data",
        "context",
    ] {
        assert!(json_line.get(key).is_some(), "recorded JSON has `{key}`");
    }
    let back: RecordedEvent = serde_json::from_value(json_line).expect("decode");
    assert_eq!(back, read[0], "recorded events round-trip through JSON");
}

/// A batch is stored whole or not at all, even when the storage itself refuses one of its events
/// (an id clash in the middle of the batch).
pub async fn batch_atomicity<S: Store>(store: &S) {
    let stream = format!("atomic-{}", suffix());
    let other = format!("atomic-other-{}", suffix());
    let taken = append(
        store,
        &other,
        ExpectedVersion::Any,
        vec![ev("kit", "Taken", json!({"n": 0}))],
    )
    .await
    .expect("append")[0]
        .id;
    let mut events: Vec<NewEvent> = (0..5).map(|i| ev("kit", "Item", json!({"i": i}))).collect();
    events[3] = ev("kit", "Item", json!({"i": "clash"})).with_id(taken);
    let r = append(store, &stream, ExpectedVersion::Any, events).await;
    assert!(
        matches!(r, Err(Error::DuplicateId { id }) if id == taken),
        "a clashing id is DuplicateId, got {r:?}"
    );
    assert_eq!(
        store.stream_version(&sid(&stream)).await.expect("version"),
        None,
        "nothing of a refused batch is stored"
    );

    let events: Vec<NewEvent> = (0..100)
        .map(|i| ev("kit", "Item", json!({"i": i})))
        .collect();
    let stored = append(store, &stream, ExpectedVersion::NoStream, events)
        .await
        .expect("append");
    assert_eq!(
        stored.iter().map(|e| e.version).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>()
    );
    let conflicting: Vec<NewEvent> = (0..10)
        .map(|i| ev("kit", "Late", json!({"i": i})))
        .collect();
    let r = append(store, &stream, ExpectedVersion::Exact(50), conflicting).await;
    assert_conflict(r, ExpectedVersion::Exact(50), Some(99));
    assert_eq!(
        stream_events(store, &stream).await,
        stored,
        "a conflicting batch stores nothing"
    );
}

/// Every [`ExpectedVersion`] case, and the versions a conflict reports.
pub async fn expected_versions<S: Store>(store: &S) {
    use ExpectedVersion::{Any, Exact, NoStream, StreamExists};
    let s = format!("ev-{}", suffix());
    let one = || vec![ev("kit", "E", json!({}))];
    assert_conflict(
        append(store, &s, StreamExists, one()).await,
        StreamExists,
        None,
    );
    assert_conflict(append(store, &s, Exact(0), one()).await, Exact(0), None);
    assert_eq!(store.stream_version(&sid(&s)).await.expect("version"), None);
    assert_eq!(
        append(store, &s, NoStream, one())
            .await
            .expect("NoStream on a new stream")[0]
            .version,
        0
    );
    assert_conflict(append(store, &s, NoStream, one()).await, NoStream, Some(0));
    assert_eq!(
        append(store, &s, StreamExists, one())
            .await
            .expect("StreamExists")[0]
            .version,
        1
    );
    assert_eq!(
        append(store, &s, Exact(1), one()).await.expect("Exact(1)")[0].version,
        2
    );
    assert_conflict(append(store, &s, Exact(1), one()).await, Exact(1), Some(2));
    assert_conflict(append(store, &s, Exact(3), one()).await, Exact(3), Some(2));
    assert_eq!(
        append(store, &s, Any, one()).await.expect("Any")[0].version,
        3
    );
    let fresh = format!("ev-any-{}", suffix());
    assert_eq!(
        append(store, &fresh, Any, one())
            .await
            .expect("Any on a new stream")[0]
            .version,
        0
    );
    assert_eq!(
        store.stream_version(&sid(&s)).await.expect("version"),
        Some(3),
        "conflicts stored nothing"
    );
}

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

fn expected_version_after(expected: ExpectedVersion) -> u64 {
    // Each winning batch holds two events: after `Exact(v)` wins, the stream is at v + 2.
    match expected {
        ExpectedVersion::Exact(v) => v + 2,
        _ => 0,
    }
}

/// Re-appending stored events (same ids, same content) stores nothing and returns the original
/// versions and positions; the same id with other content, or in another stream, or in a batch
/// that mixes stored and new events, is [`Error::DuplicateId`] and stores nothing.
pub async fn idempotent_reappend<S: Store>(store: &S) {
    let s = format!("idem-{}", suffix());
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let events = vec![
        ev("kit", "A", json!({"x": 1})).with_id(a),
        ev("kit", "B", json!({"x": 2})).with_id(b),
    ];
    let first = store
        .append(batch(&s, ExpectedVersion::NoStream, events.clone()))
        .await
        .expect("append");
    assert!(first.stored);
    // A retry, even with a stale expectation and a new time, returns the originals.
    let retry_events: Vec<NewEvent> = events
        .iter()
        .cloned()
        .map(|e| e.with_time(Utc::now() + chrono::Duration::seconds(5)))
        .collect();
    let again = store
        .append(batch(&s, ExpectedVersion::NoStream, retry_events))
        .await
        .expect("idempotent retry");
    assert!(!again.stored, "a retry stores nothing");
    assert_eq!(
        again.events, first.events,
        "a retry reports the original versions and positions"
    );
    let single = store
        .append(batch(&s, ExpectedVersion::Any, vec![events[1].clone()]))
        .await
        .expect("retry of one event");
    assert!(!single.stored);
    assert_eq!(single.events, first.events[1..].to_vec());
    // Numbers compare by value: `1.0` (and `1e0`) is the same content as `1`.
    for same in [json!({"x": 1.0}), json!({"x": 1e0})] {
        let retry = store
            .append(batch(
                &s,
                ExpectedVersion::Any,
                vec![ev("kit", "A", same.clone()).with_id(a)],
            ))
            .await
            .unwrap_or_else(|e| panic!("{same} is the same content as {{\"x\": 1}}: {e}"));
        assert!(!retry.stored, "{same}: a retry stores nothing");
    }

    let changed = vec![ev("kit", "A", json!({"x": 999})).with_id(a)];
    let r = store.append(batch(&s, ExpectedVersion::Any, changed)).await;
    assert!(
        matches!(r, Err(Error::DuplicateId { id }) if id == a),
        "same id, other data: {r:?}"
    );
    let elsewhere = vec![ev("kit", "A", json!({"x": 1})).with_id(a)];
    let r = store
        .append(batch(
            &format!("{s}-other"),
            ExpectedVersion::Any,
            elsewhere,
        ))
        .await;
    assert!(
        matches!(r, Err(Error::DuplicateId { .. })),
        "same id in another stream: {r:?}"
    );
    let c = Uuid::now_v7();
    let mixed = vec![events[1].clone(), ev("kit", "C", json!({})).with_id(c)];
    let r = store.append(batch(&s, ExpectedVersion::Any, mixed)).await;
    assert!(
        matches!(r, Err(Error::DuplicateId { .. })),
        "a batch mixing stored and new events: {r:?}"
    );
    assert_eq!(
        stream_events(store, &s).await,
        first.events,
        "nothing new was stored"
    );
    assert_eq!(
        store
            .stream_version(&sid(&format!("{s}-other")))
            .await
            .expect("version"),
        None
    );
}

/// Through the facade, an idempotent retry publishes nothing new.
pub async fn idempotent_emits_once<S: Store + Clone>(store: &S) {
    let emitter = RecordingEmitter::default();
    let es = EventStore::new(store.clone(), NoCache, emitter.clone());
    let s = format!("emit-{}", suffix());
    let id = Uuid::now_v7();
    let e = ev("kit", "Once", json!({"k": 1})).with_id(id);
    let first = es
        .append(&s, ExpectedVersion::Any, vec![e.clone()])
        .await
        .expect("append");
    let second = es
        .append(&s, ExpectedVersion::Any, vec![e])
        .await
        .expect("retry");
    assert_eq!(first.events, second.events);
    let published: Vec<Uuid> = emitter.published().iter().map(|e| e.id).collect();
    assert_eq!(published, vec![id], "the event is published once");
}

/// Concurrent writers on shared streams: the global log agrees with every stream's version order
/// and holds each event once.
pub async fn global_order<S: Store + Clone>(store: &S) {
    let ns = format!("order{}", &suffix()[..8]);
    let streams: Vec<String> = (0..5).map(|i| format!("go-{i}-{}", suffix())).collect();
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (store, streams, ns) = (store.clone(), streams.clone(), ns.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(w + 1);
                for i in 0..25 {
                    let s = &streams[rng.below(streams.len() as u64) as usize];
                    let n = 1 + rng.below(3) as usize;
                    let events = (0..n)
                        .map(|j| ev(&ns, "Step", json!({"w": w, "i": i, "j": j})))
                        .collect();
                    append(&store, s, ExpectedVersion::Any, events)
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let mut total = 0;
    let mut by_stream = HashMap::new();
    for s in &streams {
        let events = stream_events(store, s).await;
        total += events.len();
        by_stream.insert(s.clone(), events);
    }
    let log = wait_for_log(store, Position::START, total, |e| e.namespace == ns).await;
    assert_eq!(log.len(), total, "the global log holds every event once");
    assert!(
        log.windows(2).all(|w| w[0].position < w[1].position),
        "the global log is in position order"
    );
    let mut next: HashMap<&str, u64> = HashMap::new();
    for e in &log {
        let v = next.entry(e.stream.as_str()).or_insert(0);
        assert_eq!(
            e.version, *v,
            "the global log follows stream {}'s version order",
            e.stream
        );
        *v += 1;
        assert_eq!(
            &by_stream[&e.stream][e.version as usize], e,
            "log and stream agree"
        );
    }
}

/// Reading the global log in pages of any size, from every checkpoint, returns each later event
/// exactly once.
pub async fn paging<S: Store>(store: &S) {
    let ns = format!("page{}", &suffix()[..8]);
    let start = head(store).await;
    for i in 0..30 {
        let s = format!("page-{}-{}", i % 3, &ns);
        append(
            store,
            &s,
            ExpectedVersion::Any,
            vec![ev(&ns, "P", json!({"i": i}))],
        )
        .await
        .expect("append");
    }
    let own = |e: &RecordedEvent| e.namespace == ns;
    let all = wait_for_log(store, start, 30, own).await;
    assert_eq!(all.len(), 30);
    let checkpoints: Vec<Position> = std::iter::once(start)
        .chain(all.iter().map(|e| e.position))
        .collect();
    for (k, cp) in checkpoints.iter().enumerate() {
        for page in [1, 7, 1000] {
            let got = log_after(store, *cp, page, own).await;
            assert_eq!(
                got,
                all[k..].to_vec(),
                "paging by {page} from checkpoint {cp}"
            );
        }
    }
    let cp = all[10].position;
    let parsed: Position = cp.to_string().parse().expect("checkpoints parse back");
    assert_eq!(parsed, cp);

    // Backward, from the end and from every checkpoint, in pages of any size.
    let reversed: Vec<RecordedEvent> = all.iter().rev().cloned().collect();
    for (k, before) in std::iter::once(None)
        .chain(all.iter().map(|e| Some(e.position)))
        .enumerate()
    {
        for page in [1, 7, 1000] {
            let got = log_before(store, before, start, page, own).await;
            let want = if k == 0 {
                reversed.clone()
            } else {
                reversed[all.len() - k + 1..].to_vec()
            };
            assert_eq!(got, want, "backward paging by {page} before {before:?}");
        }
    }
}

/// Reads the global log backward from `before` down to (excluding) `stop`.
async fn log_before<S: Store>(
    store: &S,
    before: Option<Position>,
    stop: Position,
    page: usize,
    keep: impl Fn(&RecordedEvent) -> bool,
) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut cursor = before;
    loop {
        let events = store
            .read_all_backward(cursor, page)
            .await
            .expect("read_all_backward");
        let Some(last) = events.last() else {
            return out;
        };
        assert!(
            cursor.is_none_or(|c| last.position < c),
            "read_all_backward went forward"
        );
        assert!(
            events.windows(2).all(|w| w[0].position > w[1].position),
            "newest first"
        );
        cursor = Some(last.position);
        for e in events {
            if e.position <= stop {
                return out;
            }
            if keep(&e) {
                out.push(e);
            }
        }
    }
}

/// Named checkpoints round-trip, are replaced by later saves, are listed, and bad names are
/// refused.
pub async fn checkpoints_round_trip<S: Checkpoints>(store: &S) {
    let name = format!("relay:{}", suffix());
    assert_eq!(store.load_checkpoint(&name).await.expect("load"), None);
    store
        .save_checkpoint(&name, Position::from_parts(7, 9))
        .await
        .expect("save");
    assert_eq!(
        store.load_checkpoint(&name).await.expect("load"),
        Some(Position::from_parts(7, 9))
    );
    store
        .save_checkpoint(&name, Position::from_offset(42))
        .await
        .expect("save");
    assert_eq!(
        store.load_checkpoint(&name).await.expect("load"),
        Some(Position::from_offset(42))
    );
    let other = format!("{name}-other");
    store
        .save_checkpoint(&other, Position::START)
        .await
        .expect("save");
    let all = store.checkpoints().await.expect("list");
    assert!(
        all.contains(&(name.clone(), Position::from_offset(42)))
            && all.contains(&(other, Position::START)),
        "{all:?}"
    );
    let r = store.save_checkpoint("", Position::START).await;
    assert!(
        matches!(r, Err(Error::InvalidInput { .. })),
        "an empty name is refused: {r:?}"
    );
}

/// `stats` counts events, streams and types, and reports the head.
pub async fn stats_counts<S: Store>(store: &S) {
    let ns = format!("stats{}", &suffix()[..8]);
    for i in 0..12u32 {
        let ty = if i % 3 == 0 { "Rare" } else { "Common" };
        append(
            store,
            &format!("st-{}-{ns}", i % 4),
            ExpectedVersion::Any,
            vec![ev(&ns, ty, json!({"i": i}))],
        )
        .await
        .expect("append");
    }
    let last = wait_for_log(store, Position::START, 12, |e| e.namespace == ns).await;
    let stats = store.stats().await.expect("stats");
    let mine: Vec<(String, u64)> = stats
        .types
        .iter()
        .filter(|t| t.namespace == ns)
        .map(|t| (t.event_type.clone(), t.events))
        .collect();
    assert_eq!(
        mine,
        vec![("Common".to_owned(), 8), ("Rare".to_owned(), 4)],
        "events per type, sorted"
    );
    assert!(stats.events >= 12 && stats.streams >= 4);
    assert_eq!(
        stats.types.iter().map(|t| t.events).sum::<u64>(),
        stats.events,
        "types add up to the total"
    );
    let head = stats.head.expect("a head");
    assert!(
        head >= last[11].position,
        "the head is at or after the last final event"
    );
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

/// Every bad input of DESIGN §4.8 is refused with the field named, and nothing is written.
pub async fn bad_input<S: Store + Clone>(store: &S) {
    let es = EventStore::from_store(store.clone());
    let s = format!("bad-{}", suffix());
    let ok = || ev("kit", "Fine", json!({}));
    let mut deep = json!(0);
    for _ in 0..500 {
        deep = json!([deep]);
    }
    let long_stream = "s".repeat(MAX_STREAM_ID_BYTES + 1);
    let cases: Vec<(&str, String, Vec<NewEvent>)> = vec![
        ("stream", String::new(), vec![ok()]),
        ("stream", "nul\0inside".into(), vec![ok()]),
        ("stream", "line\nbreak".into(), vec![ok()]),
        ("stream", long_stream, vec![ok()]),
        ("events", s.clone(), vec![]),
        (
            "events",
            s.clone(),
            (0..=MAX_BATCH_EVENTS).map(|_| ok()).collect(),
        ),
        (
            "events[1].namespace",
            s.clone(),
            vec![ok(), ev("has.dot", "T", json!({}))],
        ),
        (
            "events[0].namespace",
            s.clone(),
            vec![ev("", "T", json!({}))],
        ),
        (
            "events[0].type",
            s.clone(),
            vec![ev("kit", "has space", json!({}))],
        ),
        (
            "events[0].type",
            s.clone(),
            vec![ev("kit", "'; DROP TABLE events;--", json!({}))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!([1, 2]))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!("text"))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!(null))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!({"x": "a\u{0}b"}))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!({"x": deep}))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!({"x": "y".repeat(MAX_EVENT_BYTES)}))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!({"event_type": "Other"}))],
        ),
        (
            "events[0].context.action",
            s.clone(),
            vec![ok().with_action("a\u{7}")],
        ),
        (
            "events[1].id",
            s.clone(),
            vec![ok().with_id(Uuid::nil()), ok().with_id(Uuid::nil())],
        ),
    ];
    for (field, stream, events) in cases {
        let r = es.append(&stream, ExpectedVersion::Any, events).await;
        match r {
            Err(Error::InvalidInput { field: f, .. }) => {
                assert_eq!(f, field, "the refused field is named");
            }
            other => panic!("expected {field} to be refused, got {other:?}"),
        }
    }
    assert_eq!(
        store.stream_version(&sid(&s)).await.expect("version"),
        None,
        "nothing was written"
    );
    for q in [
        Query::stream("has space"),
        Query::all().namespace("a.b"),
        Query::all().data_eq("", 1),
    ] {
        let r = store.read_query(&q, Position::START, 10).await;
        assert!(
            matches!(r, Err(Error::InvalidInput { .. })),
            "a bad query is refused: {r:?}"
        );
    }
}

/// Streams read forward and backward from any version, with limits, and page through the
/// facade's streams.
pub async fn read_stream_directions<S: Store + Clone>(store: &S) {
    let s = format!("dir-{}", suffix());
    let events = (0..10).map(|i| ev("kit", "D", json!({"i": i}))).collect();
    append(store, &s, ExpectedVersion::NoStream, events)
        .await
        .expect("append");
    let versions = |v: Vec<RecordedEvent>| v.into_iter().map(|e| e.version).collect::<Vec<_>>();
    let id = sid(&s);
    let read = |from, dir, limit| store.read_stream(&id, from, dir, limit);
    assert_eq!(
        versions(read(0, Direction::Forward, 4).await.expect("read")),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        versions(read(8, Direction::Forward, 4).await.expect("read")),
        vec![8, 9]
    );
    assert_eq!(
        versions(read(10, Direction::Forward, 4).await.expect("read")),
        Vec::<u64>::new()
    );
    assert_eq!(
        versions(read(u64::MAX, Direction::Backward, 3).await.expect("read")),
        vec![9, 8, 7]
    );
    assert_eq!(
        versions(read(2, Direction::Backward, 10).await.expect("read")),
        vec![2, 1, 0]
    );
    assert_eq!(
        versions(read(0, Direction::Backward, 10).await.expect("read")),
        vec![0]
    );
    let none = sid(&format!("dir-none-{}", suffix()));
    assert!(
        store
            .read_stream(&none, 0, Direction::Forward, 10)
            .await
            .expect("read")
            .is_empty()
    );

    let big = format!("dir-big-{}", suffix());
    let n = crate::PAGE_SIZE + 88;
    for chunk in 0..n.div_ceil(500) {
        let count = 500.min(n - chunk * 500);
        let events = (0..count)
            .map(|i| ev("kit", "B", json!({"i": chunk * 500 + i})))
            .collect();
        append(store, &big, ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
    let es = EventStore::from_store(store.clone());
    let fwd: Vec<u64> = es
        .read_stream(&big, 0, Direction::Forward)
        .map(|e| e.expect("read").version)
        .collect()
        .await;
    assert_eq!(
        fwd,
        (0..n as u64).collect::<Vec<_>>(),
        "a forward stream pages through every event"
    );
    let bwd: Vec<u64> = es
        .read_stream(&big, u64::MAX, Direction::Backward)
        .map(|e| e.expect("read").version)
        .collect()
        .await;
    assert_eq!(
        bwd,
        (0..n as u64).rev().collect::<Vec<_>>(),
        "a backward stream pages through every event"
    );
}

/// Typed queries (stream, namespace, type, subject, data, time range) return exactly the events
/// [`Query::matches`] accepts, in position order, and page with a checkpoint.
pub async fn queries<S: Store + Clone>(store: &S) {
    let tag = &suffix()[..8];
    let (ns1, ns2) = (format!("qa{tag}"), format!("qb{tag}"));
    let t0 = Utc
        .with_ymd_and_hms(2024, 5, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    for i in 0..40u32 {
        let ns = if i % 3 == 0 { &ns2 } else { &ns1 };
        let ty = ["Created", "Renamed", "Closed"][(i % 4 % 3) as usize];
        let stream = format!("q-{}-{tag}", i % 4);
        let e = ev(
            ns,
            ty,
            json!({"n": i, "parity": i % 2, "label": format!("l{}", i % 5)}),
        )
        .with_subject("user", i % 3)
        .with_time(t0 + chrono::Duration::hours(i.into()));
        append(store, &stream, ExpectedVersion::Any, vec![e])
            .await
            .expect("append");
    }
    let mine = |e: &RecordedEvent| e.namespace == ns1 || e.namespace == ns2;
    let all = wait_for_log(store, Position::START, 40, mine).await;
    assert_eq!(all.len(), 40);
    let queries = vec![
        Query::stream(format!("q-1-{tag}")),
        Query::stream(format!("q-2-{tag}")).namespace(ns1.clone()),
        Query::all().namespace(ns2.clone()),
        Query::all().event_type(ns1.clone(), "Renamed"),
        Query::all()
            .event_type(ns1.clone(), "Closed")
            .event_type(ns2.clone(), "Created"),
        Query::all().namespace(ns1.clone()).subject_eq("user", 1),
        Query::all()
            .namespace(ns1.clone())
            .data_eq("parity", 0)
            .data_eq("label", "l2"),
        Query::all()
            .namespace(ns2.clone())
            .since(t0 + chrono::Duration::hours(10))
            .until(t0 + chrono::Duration::hours(30)),
        Query::all().namespace(ns1.clone()).subject_eq("user", "1"),
        Query::all().namespace(ns1.clone()).data_eq("n", 7.0),
    ];
    for q in queries {
        let want: Vec<RecordedEvent> = all.iter().filter(|e| q.matches(e)).cloned().collect();
        let got = store
            .read_query(&q, Position::START, 1000)
            .await
            .expect("read_query");
        let got: Vec<RecordedEvent> = got.into_iter().filter(mine).collect();
        assert_eq!(got, want, "query {}", q.canonical());
        if want.len() > 2 {
            let after = want[1].position;
            let rest = store.read_query(&q, after, 1000).await.expect("read_query");
            assert_eq!(
                rest.into_iter().filter(mine).collect::<Vec<_>>(),
                want[2..].to_vec(),
                "query {} after a checkpoint",
                q.canonical()
            );
            let first = store
                .read_query(&q, Position::START, 1)
                .await
                .expect("read_query");
            assert_eq!(first.len(), 1, "the limit holds");
        }
    }
}

// ---- the cache checks ---------------------------------------------------------------------------

/// The cache keeps the entry with the latest checkpoint, whatever order concurrent puts arrive
/// in, and keys are independent.
pub async fn cache_moves_forward<C: Cache + Clone>(cache: &C) {
    let key = |q: &str, version| CacheKey {
        aggregate: format!("kit-{q}"),
        version,
        query: format!("{{\"stream\":\"{q}\"}}"),
    };
    let tag = suffix();
    let k = key(&tag, 1);
    assert_eq!(cache.get(&k).await.expect("get"), None);
    let entry = |n: u64| CachedState {
        state: json!({"n": n}),
        checkpoint: Position::from_parts(n / 7, n),
    };
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
}

/// Events of the kit's aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(namespace = "kit-counter")]
pub struct Added {
    /// How much.
    pub n: i64,
}

/// Events of the kit's aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(namespace = "kit-counter")]
pub struct Removed {
    /// How much.
    pub n: i64,
}

/// The kit's counter events.
#[derive(Debug, Clone, PartialEq, Events)]
pub enum CounterEvent {
    /// Added.
    Added(Added),
    /// Removed.
    Removed(Removed),
}

/// A counter whose state also remembers the order it saw events in (so a fold that skips,
/// repeats or reorders events is caught).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KitCounter {
    /// The sum.
    pub total: i64,
    /// How many events.
    pub count: u64,
    /// An order-sensitive digest of the events.
    pub digest: u64,
}

impl KitCounter {
    fn step(&mut self, signed: i64) {
        self.total += signed;
        self.count += 1;
        self.digest = self
            .digest
            .wrapping_mul(1_000_003)
            .wrapping_add(signed.unsigned_abs() * 2 + u64::from(signed < 0));
    }
}

impl Aggregate for KitCounter {
    const NAME: &'static str = "kit-counter";
    type Event = CounterEvent;
    type Args = str;

    fn query(stream: &str) -> Query {
        Query::stream(stream)
    }

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Added(a) => self.step(a.n),
            CounterEvent::Removed(r) => self.step(-r.n),
        }
    }
}

/// The same counter with a changed fold (removals count double) and a bumped version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KitCounterV2(pub KitCounter);

impl Aggregate for KitCounterV2 {
    const NAME: &'static str = "kit-counter";
    const VERSION: u32 = 2;
    type Event = CounterEvent;
    type Args = str;

    fn query(stream: &str) -> Query {
        Query::stream(stream)
    }

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Added(a) => self.0.step(a.n),
            CounterEvent::Removed(r) => self.0.step(-2 * r.n),
        }
    }
}

/// A counter over every stream, narrowed by subject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KitUserTotal(pub KitCounter);

impl Aggregate for KitUserTotal {
    const NAME: &'static str = "kit-user-total";
    type Event = CounterEvent;
    type Args = str;

    fn query(user: &str) -> Query {
        Query::events::<CounterEvent>().subject_eq("user", user)
    }

    fn apply(&mut self, event: &CounterEvent) {
        KitCounter::apply(&mut self.0, event);
    }
}

fn fold_local(events: &[(bool, i64)]) -> KitCounter {
    let mut c = KitCounter::default();
    for &(add, n) in events {
        c.step(if add { n } else { -n });
    }
    c
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
    es.save(&s, &Removed { n: 3 }).await.expect("save");
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
        query: Query::stream(s.clone()).of::<CounterEvent>().canonical(),
    };
    cache
        .put(
            &key,
            CachedState {
                state: json!("not a counter"),
                checkpoint: Position::from_parts(u64::MAX / 2, 0),
            },
        )
        .await
        .expect("put");
    let healed = es.fold::<KitCounter>(&s).await.expect("aggregate");
    assert!(!healed.from_cache, "an undecodable entry is ignored");
    assert_eq!(healed.state.total, 8);
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
        crate::memory::MemoryCache::new(),
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

/// Runs every store check on `store`, in turn.
pub async fn run_store_suite<S: Store + Clone>(store: &S) {
    round_trip(store).await;
    batch_atomicity(store).await;
    expected_versions(store).await;
    concurrent_appenders(store).await;
    idempotent_reappend(store).await;
    idempotent_emits_once(store).await;
    global_order(store).await;
    paging(store).await;
    stats_counts(store).await;
    tail_during_appends(store).await;
    mixed_workload(store).await;
    bad_input(store).await;
    read_stream_directions(store).await;
    queries(store).await;
}

/// Runs every cache check on `store` and `cache`, in turn.
pub async fn run_cache_suite<S: Store + Clone, C: Cache + Clone>(store: &S, cache: &C) {
    cache_moves_forward(cache).await;
    cached_equals_uncached(store, cache).await;
    version_bump_invalidates(store, cache).await;
}

/// Expands to one `#[tokio::test]` per store check, each on a fresh store from `$make`
/// (a closure returning a future of `Option<store>`; `None` skips the test).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::__kit_store_tests!($make; round_trip, batch_atomicity, expected_versions,
            concurrent_appenders, idempotent_reappend, idempotent_emits_once, global_order,
            paging, stats_counts, tail_during_appends, mixed_workload, bad_input,
            read_stream_directions, queries);
    };
}

/// Expands to a `#[tokio::test]` of [`checkpoints_round_trip`] on a store from `$make`.
#[macro_export]
macro_rules! checkpoint_conformance_tests {
    ($make:expr) => {
        $crate::__kit_store_tests!($make; checkpoints_round_trip);
    };
}

/// Expands to one `#[tokio::test]` per cache check, each on a fresh `(store, cache)` pair from
/// `$make` (a closure returning a future of `Option<(store, cache)>`; `None` skips the test).
#[macro_export]
macro_rules! cache_conformance_tests {
    ($make:expr) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn cache_moves_forward() {
            if let Some((_store, cache)) = ($make)().await {
                $crate::testkit::cache_moves_forward(&cache).await;
            }
        }
        $crate::__kit_cache_tests!($make; cached_equals_uncached, version_bump_invalidates);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __kit_store_tests {
    ($make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = ($make)().await {
                    $crate::testkit::$check(&store).await;
                }
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __kit_cache_tests {
    ($make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some((store, cache)) = ($make)().await {
                    $crate::testkit::$check(&store, &cache).await;
                }
            }
        )*
    };
}
