//! The projection checks: catch-up then live with no gap, partitions in stream order, parking
//! and resuming, rebuilds, leases and the store's check-and-sets — on every projection store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use event_store::projection::{
    AtLeastOnce, Generation, Handle, LeaseKey, PartitionState, Projection, ProjectionName,
    ProjectionState, ProjectionStore, Revision, RunnerOptions, Scope, partition_of,
};
use event_store::{
    BoxError, EventStore, ExpectedVersion, Position, Query, RecordedEvent, RetryPolicy, Store,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::{PATIENCE, batch, ev, suffix};

/// A projection's identity in a check: its name, version and stream prefix.
pub trait KitProjection: Send + Sync + 'static {
    /// The name.
    const NAME: &'static str;
    /// The version.
    const VERSION: u32 = 1;
    /// The streams it reads (`{PREFIX}{tag}-{n}`).
    const PREFIX: &'static str;
}

/// What a [`Recorder`] saw: every event handled, with its generation and partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The generation.
    pub generation: u64,
    /// The partition.
    pub partition: u32,
    /// The event.
    pub event: RecordedEvent,
}

/// An at-least-once projection that records what it handles, and fails on the events a test
/// says (until told otherwise).
pub struct Recorder<K> {
    seen: Arc<Mutex<Vec<Seen>>>,
    failing: Arc<Mutex<HashSet<Uuid>>>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Recorder<K> {
    fn clone(&self) -> Self {
        Self {
            seen: Arc::clone(&self.seen),
            failing: Arc::clone(&self.failing),
            kind: PhantomData,
        }
    }
}

impl<K> Default for Recorder<K> {
    fn default() -> Self {
        Self {
            seen: Arc::default(),
            failing: Arc::default(),
            kind: PhantomData,
        }
    }
}

impl<K> Recorder<K> {
    /// Everything handled so far whose stream holds `tag`.
    pub fn seen(&self, tag: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|s| s.event.stream.contains(tag))
            .cloned()
            .collect()
    }

    /// Makes the handler fail on `id` (or stop failing on it).
    pub fn fail_on(&self, id: Uuid, fail: bool) {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if fail {
            failing.insert(id);
        } else {
            failing.remove(&id);
        }
    }
}

impl<K: KitProjection> Projection for Recorder<K> {
    const NAME: &'static str = K::NAME;
    const VERSION: u32 = K::VERSION;

    fn query(&self) -> Query {
        Query::stream_prefix(K::PREFIX).event_type("kit", "Projected")
    }
}

impl<K: KitProjection> Handle for Recorder<K> {
    async fn handle(&self, scope: Scope<'_>, event: &RecordedEvent) -> Result<(), BoxError> {
        if self
            .failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&event.id)
        {
            return Err(format!("kit: refusing event {}", event.id).into());
        }
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen {
                generation: scope.generation,
                partition: scope.partition,
                event: event.clone(),
            });
        Ok(())
    }
}

macro_rules! kit_projection {
    ($t:ident, $name:literal, $prefix:literal $(, $version:literal)?) => {
        #[doc = concat!("The identity of the `", $name, "` check projection.")]
        #[derive(Debug)]
        pub(crate) struct $t;
        impl KitProjection for $t {
            const NAME: &'static str = $name;
            const PREFIX: &'static str = $prefix;
            $(const VERSION: u32 = $version;)?
        }
    };
}

kit_projection!(CatchUp, "kit-catch-up", "kp-catchup-");
kit_projection!(Ordered, "kit-ordered", "kp-ordered-");
kit_projection!(Parking, "kit-parking", "kp-parking-");
kit_projection!(RebuildV1, "kit-rebuild", "kp-rebuild-");
kit_projection!(RebuildV2, "kit-rebuild", "kp-rebuild-", 2);
kit_projection!(Shared, "kit-shared", "kp-shared-");
kit_projection!(Resized, "kit-resized", "kp-resized-");

/// Quick options for checks: short intervals, small batches.
pub fn kit_options(partitions: u32) -> RunnerOptions {
    RunnerOptions::default()
        .partitions(partitions)
        .batch(50, Duration::from_millis(5))
        .intervals(Duration::from_millis(50), Duration::from_millis(20))
        .retry(RetryPolicy {
            max_attempts: 3,
            first_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
}

/// Appends `per_stream` events to each of `streams` streams `{prefix}{tag}-{n}`, plus as many
/// events of another type that the projections do not want; returns how many wanted ones, and
/// the last position written (what a reader waits for).
async fn write<S: Store + Clone>(
    store: &S,
    prefix: &str,
    tag: &str,
    streams: usize,
    per_stream: usize,
) -> (usize, Position) {
    let mut last = Position::START;
    for round in 0..per_stream {
        for s in 0..streams {
            let stream = format!("{prefix}{tag}-{s}");
            let events = vec![
                ev("kit", "Projected", json!({"round": round, "stream": s})),
                ev("kit", "Ignored", json!({"round": round})),
            ];
            let appended = store
                .append(batch(&stream, ExpectedVersion::Any, events))
                .await
                .expect("append");
            last = last.max(appended.last_position().unwrap_or(last));
        }
    }
    (streams * per_stream, last)
}

/// Waits until `done` holds, or fails after [`PATIENCE`] saying `what`.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Each event exactly once, and each stream's events in version order.
fn assert_exactly_once_in_order(seen: &[Seen], expected: usize) {
    let mut ids = HashSet::new();
    for s in seen {
        assert!(ids.insert(s.event.id), "event {} applied twice", s.event.id);
    }
    assert_eq!(seen.len(), expected, "every wanted event, once");
    let mut last: HashMap<&str, u64> = HashMap::new();
    for s in seen {
        if let Some(prev) = last.insert(&s.event.stream, s.event.version) {
            assert!(
                s.event.version > prev,
                "stream {} applied version {} after {prev}",
                s.event.stream,
                s.event.version
            );
        }
        assert_eq!(s.event.event_type, "Projected", "only the wanted type");
    }
}

/// Events written before a runner starts are caught up, events written while it runs are
/// followed live — with no gap in between and none twice, only the wanted type, and
/// `wait_for` (read your writes) returns once the last save is applied.
pub async fn projection_catches_up_and_follows<S: ProjectionStore>(store: &S) {
    let tag = suffix();
    let es = EventStore::from_store(store.clone());
    let (before, _) = write(store, CatchUp::PREFIX, &tag, 10, 15).await;
    let model = Recorder::<CatchUp>::default();
    let runner = es
        .runner(AtLeastOnce(model.clone()))
        .with_options(kit_options(1))
        .spawn();
    let projections = es.projections();
    // Writers while the runner catches up and after it went live.
    let (during, head) = write(store, CatchUp::PREFIX, &tag, 10, 10).await;
    projections
        .wait_for(CatchUp::NAME, head, PATIENCE)
        .await
        .expect("the projection catches up");
    let seen = model.seen(&tag);
    assert_exactly_once_in_order(&seen, before + during);
    let mut positions: Vec<Position> = seen.iter().map(|s| s.event.position).collect();
    let sorted = {
        let mut p = positions.clone();
        p.sort();
        p
    };
    assert_eq!(positions, sorted, "one partition applies in log order");
    // Live: one more event is applied without a restart.
    let (more, head) = write(store, CatchUp::PREFIX, &tag, 1, 1).await;
    projections
        .wait_for(CatchUp::NAME, head, PATIENCE)
        .await
        .expect("the live event is applied");
    assert_exactly_once_in_order(&model.seen(&tag), before + during + more);
    let status = projections
        .status(CatchUp::NAME)
        .await
        .expect("status")
        .expect("the projection has run");
    let active = status.active.expect("an active generation");
    assert_eq!(active.lag_events, 0, "nothing left to apply");
    assert!(active.partitions.iter().all(|p| p.caught_up && p.running));
    assert_eq!(status.state, ProjectionState::Running);
    positions.clear();
    runner.stop().await.expect("the runner stops cleanly");
    let status = projections
        .status(CatchUp::NAME)
        .await
        .expect("status")
        .expect("known");
    assert_eq!(status.state, ProjectionState::Stopped, "no runner holds it");
}

/// Four partitions while four writers append: every event once, each stream in version order,
/// each stream in the partition its hash says.
pub async fn projection_partitions_keep_stream_order<S: ProjectionStore>(store: &S) {
    let tag = suffix();
    let es = EventStore::from_store(store.clone());
    let model = Recorder::<Ordered>::default();
    let runner = es
        .runner(AtLeastOnce(model.clone()))
        .with_options(kit_options(4))
        .spawn();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, tag) = (store.clone(), format!("{tag}w{w}"));
            tokio::spawn(async move { write(&store, Ordered::PREFIX, &tag, 10, 8).await })
        })
        .collect();
    let (mut total, mut head) = (0, Position::START);
    for w in writers {
        let (n, last) = w.await.expect("writer");
        total += n;
        head = head.max(last);
    }
    es.projections()
        .wait_for(Ordered::NAME, head, PATIENCE)
        .await
        .expect("the projection catches up");
    let seen = model.seen(&tag);
    assert_exactly_once_in_order(&seen, total);
    for s in &seen {
        assert_eq!(
            s.partition,
            partition_of(&s.event.stream, 4),
            "a stream's events go to its partition"
        );
    }
    let used: HashSet<u32> = seen.iter().map(|s| s.partition).collect();
    assert!(used.len() > 1, "40 streams spread over the partitions");
    runner.stop().await.expect("stop");
}

/// A handler that fails on one event: its partition parks with the event's id and error (the
/// events after it in that partition wait), the other partitions go on; after the fix,
/// `resume` continues from that very event.
pub async fn projection_parks_and_resumes<S: ProjectionStore>(store: &S) {
    let tag = suffix();
    let es = EventStore::from_store(store.clone());
    let model = Recorder::<Parking>::default();
    let (total, head) = write(store, Parking::PREFIX, &tag, 12, 4).await;
    // Fail on stream 0's second wanted event.
    let bad_stream = format!("{}{tag}-0", Parking::PREFIX);
    let bad = es
        .read_stream_page(&bad_stream, 0, 10)
        .await
        .expect("read")
        .into_iter()
        .filter(|e| e.event_type == "Projected")
        .nth(1)
        .expect("stream 0 has 4 wanted events");
    model.fail_on(bad.id, true);
    let runner = es
        .runner(AtLeastOnce(model.clone()))
        .with_options(kit_options(2))
        .spawn();
    let projections = es.projections();
    let parked_partition = partition_of(&bad_stream, 2);
    eventually("the partition parks", || async {
        projections
            .status(Parking::NAME)
            .await
            .expect("status")
            .is_some_and(|s| s.state == ProjectionState::Parked)
    })
    .await;
    let status = projections
        .status(Parking::NAME)
        .await
        .expect("status")
        .expect("known");
    let active = status.active.expect("active");
    let parked = active
        .partitions
        .iter()
        .find(|p| p.parked.is_some())
        .expect("a parked partition");
    assert_eq!(parked.partition, parked_partition);
    let why = parked.parked.as_ref().expect("parked");
    assert_eq!(why.event_id, bad.id, "the failing event's id");
    assert_eq!(why.position, bad.position);
    assert_eq!(why.stream, bad_stream);
    assert!(why.error.contains("kit: refusing event"), "{}", why.error);
    assert_eq!(status.last_error.as_deref(), Some(why.error.as_str()));
    // The other partition went on to the end.
    let other = 1 - parked_partition;
    eventually("the other partition catches up", || async {
        let expected = (0..12)
            .filter(|s| partition_of(&format!("{}{tag}-{s}", Parking::PREFIX), 2) == other)
            .count()
            * 4;
        model
            .seen(&tag)
            .iter()
            .filter(|s| s.partition == other)
            .count()
            == expected
    })
    .await;
    // Nothing of the parked stream after the failing event was applied.
    let seen = model.seen(&tag);
    assert!(!seen.iter().any(|s| s.event.id == bad.id));
    assert!(
        !seen
            .iter()
            .any(|s| s.event.stream == bad_stream && s.event.version > bad.version),
        "a stream's later events wait behind its failing one"
    );
    // Fix and resume: the partition continues from the failing event.
    model.fail_on(bad.id, false);
    assert_eq!(
        projections
            .resume(Parking::NAME, None)
            .await
            .expect("resume"),
        1
    );
    projections
        .wait_for(Parking::NAME, head, PATIENCE)
        .await
        .expect("the projection catches up after resume");
    assert_exactly_once_in_order(&model.seen(&tag), total);
    let status = projections
        .status(Parking::NAME)
        .await
        .expect("status")
        .expect("known");
    assert_ne!(status.state, ProjectionState::Parked);
    assert!(status.last_error.is_none());
    assert!(projections.resume("kit-never-ran", None).await.is_err());
    runner.stop().await.expect("stop");
}

/// A reset builds a new generation beside the active one, which stays live; the new one
/// replaces it once caught up, complete. A version bump does the same, and a runner of the old
/// version then stays idle (no ping-pong between deployments).
pub async fn projection_rebuilds<S: ProjectionStore>(store: &S) {
    let tag = suffix();
    let es = EventStore::from_store(store.clone());
    let projections = es.projections();
    let (total, head) = write(store, RebuildV1::PREFIX, &tag, 5, 6).await;
    let v1 = Recorder::<RebuildV1>::default();
    let runner1 = es
        .runner(AtLeastOnce(v1.clone()))
        .with_options(kit_options(2))
        .spawn();
    projections
        .wait_for(RebuildV1::NAME, head, PATIENCE)
        .await
        .expect("caught up");
    let first = projections
        .status(RebuildV1::NAME)
        .await
        .expect("status")
        .expect("known");
    let g1 = first.active.expect("active").generation;

    // Reset: a new generation of the same version, built beside the live one.
    let next = projections
        .reset(RebuildV1::NAME, None)
        .await
        .expect("reset");
    assert_eq!(next.generation, g1 + 1);
    let (more, head) = write(store, RebuildV1::PREFIX, &tag, 5, 1).await;
    eventually("the reset generation switches in", || async {
        projections
            .status(RebuildV1::NAME)
            .await
            .expect("status")
            .is_some_and(|s| {
                s.building.is_none() && s.active.is_some_and(|a| a.generation == next.generation)
            })
    })
    .await;
    projections
        .wait_for(RebuildV1::NAME, head, PATIENCE)
        .await
        .expect("caught up");
    let by_generation = |seen: Vec<Seen>| {
        let mut m: BTreeMap<u64, Vec<Seen>> = BTreeMap::new();
        for s in seen {
            m.entry(s.generation).or_default().push(s);
        }
        m
    };
    let seen = by_generation(v1.seen(&tag));
    assert_exactly_once_in_order(&seen[&next.generation], total + more);
    assert_exactly_once_in_order(&seen[&g1], total + more);

    // A version bump: rebuilt by the new code; the old runner stays idle.
    let v2 = Recorder::<RebuildV2>::default();
    let runner2 = es
        .runner(AtLeastOnce(v2.clone()))
        .with_options(kit_options(2))
        .spawn();
    eventually("version 2 switches in", || async {
        projections
            .status(RebuildV2::NAME)
            .await
            .expect("status")
            .is_some_and(|s| s.building.is_none() && s.active.is_some_and(|a| a.version == 2))
    })
    .await;
    let (latest, head) = write(store, RebuildV1::PREFIX, &tag, 5, 1).await;
    projections
        .wait_for(RebuildV2::NAME, head, PATIENCE)
        .await
        .expect("caught up");
    let v2_seen = by_generation(v2.seen(&tag));
    assert_eq!(v2_seen.len(), 1, "version 2 built one generation");
    let (g3, built) = v2_seen.into_iter().next().expect("one");
    assert!(g3 > next.generation);
    assert_exactly_once_in_order(&built, total + more + latest);
    assert!(
        !v1.seen(&tag).iter().any(|s| s.generation == g3),
        "the old version never writes the new generation"
    );
    let v1_after = v1.seen(&tag).len();
    let (_, head) = write(store, RebuildV1::PREFIX, &tag, 1, 1).await;
    projections
        .wait_for(RebuildV2::NAME, head, PATIENCE)
        .await
        .expect("caught up");
    assert_eq!(v1.seen(&tag).len(), v1_after, "the old version stays idle");
    runner1.stop().await.expect("stop");
    runner2.stop().await.expect("stop");
}

/// Two runners share four partitions (each partition under one lease), a stopped runner's
/// partitions are taken by the other, and every event is applied once, each stream in order.
pub async fn projection_runners_share_partitions<S: ProjectionStore>(store: &S) {
    let tag = suffix();
    let es = EventStore::from_store(store.clone());
    let model = Recorder::<Shared>::default();
    let a = es
        .runner(AtLeastOnce(model.clone()))
        .with_options(kit_options(4))
        .spawn();
    let b = es
        .runner(AtLeastOnce(model.clone()))
        .with_options(kit_options(4))
        .spawn();
    let (first, head) = write(store, Shared::PREFIX, &tag, 16, 3).await;
    eventually("both runners hold two partitions", || async {
        a.metrics()
            .partitions
            .load(std::sync::atomic::Ordering::Relaxed)
            == 2
            && b.metrics()
                .partitions
                .load(std::sync::atomic::Ordering::Relaxed)
                == 2
    })
    .await;
    es.projections()
        .wait_for(Shared::NAME, head, PATIENCE)
        .await
        .expect("caught up");
    a.stop().await.expect("stop a");
    let (second, head) = write(store, Shared::PREFIX, &tag, 16, 3).await;
    eventually("the survivor holds all four", || async {
        b.metrics()
            .partitions
            .load(std::sync::atomic::Ordering::Relaxed)
            == 4
    })
    .await;
    es.projections()
        .wait_for(Shared::NAME, head, PATIENCE)
        .await
        .expect("caught up");
    assert_exactly_once_in_order(&model.seen(&tag), first + second);
    b.stop().await.expect("stop b");
}

/// The store's side of the contract: leases are exclusive and released on drop; generation
/// changes and partition saves are check-and-sets; a generation keeps its partition count
/// whatever a runner's option says, and a reset changes it.
pub async fn projection_store_contract<S: ProjectionStore>(store: &S) {
    let name = ProjectionName::new(format!("kit-contract-{}", suffix())).expect("name");
    // Leases.
    let key = LeaseKey::partition(&name, 1, 0);
    assert!(!store.is_leased(&key).await.expect("probe"));
    let lease = store.try_lease(&key).await.expect("lease").expect("free");
    assert!(store.is_leased(&key).await.expect("probe"));
    assert!(
        store.try_lease(&key).await.expect("lease").is_none(),
        "held"
    );
    let other = LeaseKey::partition(&name, 1, 1);
    let lease2 = store
        .try_lease(&other)
        .await
        .expect("lease")
        .expect("another key is free");
    drop(lease);
    let mut retaken = None;
    for _ in 0..100 {
        retaken = store.try_lease(&key).await.expect("lease");
        if retaken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(retaken.is_some(), "a dropped lease is released");
    drop((retaken, lease2));

    // Generations.
    let query = Query::stream_prefix("kp-contract-");
    let g1 = Generation::new(1, 1, 2, query.clone());
    assert!(
        store
            .begin_generation(&name, Revision::default(), &g1)
            .await
            .expect("begin")
    );
    assert!(
        !store
            .begin_generation(&name, Revision::default(), &g1)
            .await
            .expect("begin"),
        "a second first generation is refused"
    );
    let record = store
        .projection(&name)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(record.active.as_ref().map(|g| g.generation), Some(1));
    assert!(record.building.is_none());
    assert_eq!(record.partitions_of(1).count(), 2);
    assert_eq!(record.active.as_ref().map(|g| &g.query), Some(&query));
    assert!(store.mark_created(&name, 1).await.expect("mark"));
    assert!(!store.mark_created(&name, 1).await.expect("mark"), "once");

    // Partition saves are check-and-sets on the checkpoint.
    let mut state = PartitionState::start(1, 0);
    state.checkpoint = Position::from_parts(0, 7);
    state.applied = 3;
    store
        .save_partition(&name, &state, Position::START)
        .await
        .expect("save");
    let stale = store
        .save_partition(&name, &state, Position::START)
        .await
        .expect_err("a stale expectation is fenced");
    assert!(stale.is_fenced(), "{stale}");
    let gone = PartitionState::start(9, 0);
    assert!(
        store
            .save_partition(&name, &gone, Position::START)
            .await
            .expect_err("no such generation")
            .is_fenced()
    );
    let record = store
        .projection(&name)
        .await
        .expect("load")
        .expect("exists");
    let saved = record.partition(1, 0).expect("partition 0");
    assert_eq!((saved.checkpoint, saved.applied), (state.checkpoint, 3));

    // A building generation, replaced, then switched in.
    let revision = record.revision();
    let g2 = Generation::new(2, 1, 1, query.clone());
    assert!(
        store
            .begin_generation(&name, revision, &g2)
            .await
            .expect("begin 2")
    );
    assert!(
        !store
            .begin_generation(&name, revision, &g2)
            .await
            .expect("begin 2 again"),
        "a stale revision is refused"
    );
    let record = store
        .projection(&name)
        .await
        .expect("load")
        .expect("exists");
    let g3 = Generation::new(3, 2, 3, query.clone());
    assert!(
        store
            .begin_generation(&name, record.revision(), &g3)
            .await
            .expect("begin 3")
    );
    let record = store
        .projection(&name)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(record.building.as_ref().map(|g| g.generation), Some(3));
    assert_eq!(
        record.partitions_of(2).count(),
        0,
        "the replaced generation is gone"
    );
    assert_eq!(record.partitions_of(3).count(), 3);
    assert!(
        !store
            .switch_generation(&name, Some(2), 3)
            .await
            .expect("switch")
    );
    assert!(
        store
            .switch_generation(&name, Some(1), 3)
            .await
            .expect("switch")
    );
    let record = store
        .projection(&name)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(
        record.active.as_ref().map(|g| (g.generation, g.version)),
        Some((3, 2))
    );
    assert!(record.building.is_none());
    assert_eq!(
        record.partitions_of(1).count(),
        0,
        "the old generation's partitions are gone"
    );

    // Parking and resuming.
    let mut parked = record.partition(3, 1).expect("partition").clone();
    parked.parked = Some(event_store::projection::Parked {
        position: Position::from_parts(0, 5),
        event_id: Uuid::now_v7(),
        stream: "kp-contract-1".into(),
        version: 4,
        error: "kit: broken".into(),
        attempts: 3,
        at: chrono::Utc::now(),
    });
    store
        .save_partition(&name, &parked, Position::START)
        .await
        .expect("park");
    let record = store
        .projection(&name)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(record.partition(3, 1).expect("p").parked, parked.parked);
    assert_eq!(store.resume(&name, Some(0)).await.expect("resume"), 0);
    assert_eq!(store.resume(&name, None).await.expect("resume"), 1);
    let record = store
        .projection(&name)
        .await
        .expect("load")
        .expect("exists");
    assert!(record.partitions.iter().all(|p| p.parked.is_none()));
    let names: Vec<ProjectionName> = store
        .projections()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(names.contains(&name));

    // The partition count is part of a generation: a runner whose option differs runs the
    // stored count (its option only shapes the generations it starts), and a reset changes it.
    let es = EventStore::from_store(store.clone());
    let model = Recorder::<Resized>::default();
    let runner = es
        .runner(AtLeastOnce(model.clone()))
        .with_options(kit_options(1))
        .spawn();
    let head = event_store::head(store).await.expect("head");
    es.projections()
        .wait_for(Resized::NAME, head, PATIENCE)
        .await
        .expect("caught up");
    runner.stop().await.expect("stop");
    let runner = es
        .runner(AtLeastOnce(model))
        .with_options(kit_options(3))
        .spawn();
    let next = es
        .projections()
        .reset(Resized::NAME, Some(2))
        .await
        .expect("reset");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = es
            .projections()
            .status(Resized::NAME)
            .await
            .expect("status")
            .expect("known");
        let active = status.active.expect("active");
        if active.generation == next.generation {
            assert_eq!(
                active.partitions.len(),
                2,
                "built in the count of the reset"
            );
            break;
        }
        assert!(
            !runner.is_finished(),
            "a runner with another partition option keeps running"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reset generation never became active: {status:?}",
            status = es.projections().status(Resized::NAME).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    runner.stop().await.expect("stop");
}
