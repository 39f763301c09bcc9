//! The store's side of the contract.

use std::time::Duration;

use event_store::projection::{
    AtLeastOnce, Generation, LeaseKey, PartitionState, ProjectionName, ProjectionStore, Revision,
};
use event_store::{EventStore, Position, Query};
use uuid::Uuid;

use crate::support::{PATIENCE, suffix};

use super::{KitProjection, Recorder, Resized, kit_options};

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
