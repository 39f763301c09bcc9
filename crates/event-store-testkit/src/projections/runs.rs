//! The runner's checks: catch-up then live, partitions in stream order, park and resume,
//! rebuilds, runners sharing partitions.

use std::collections::{BTreeMap, HashSet};

use event_store::projection::{AtLeastOnce, ProjectionState, ProjectionStore, partition_of};
use event_store::{EventStore, Position};

use crate::support::{PATIENCE, suffix};

use super::{
    CatchUp, KitProjection, Ordered, Parking, RebuildV1, RebuildV2, Recorder, Seen, Shared,
    assert_exactly_once_in_order, assert_once_in_order, eventually, kit_options, write,
};

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
    // The old generation stops when the new one switches in: it applied every event up to the
    // reset, and those written after it only if it got to them before the switch.
    let old = &seen[&g1];
    assert!(
        (total..=total + more).contains(&old.len()),
        "the retired generation applied {} events; {total} to {} expected",
        old.len(),
        total + more
    );
    assert_once_in_order(old);

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
