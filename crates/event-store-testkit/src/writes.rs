//! Writing: what an append stores, checks and refuses.

use chrono::{TimeZone, Utc};
use event_store::{
    Error, EventStore, ExpectedVersion, NewEvent, NoCache, Position, RecordedEvent, Store,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::{
    RecordingEmitter, append, assert_conflict, batch, ev, sid, stream_events, suffix, wait_for_log,
};

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
