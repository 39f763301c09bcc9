//! Multi-stream appends: all or nothing, each stream's own expected version, idempotent per
//! batch, and no deadlock between appends whose stream sets cross.

use std::collections::HashMap;

use event_store::{AppendBatch, Error, ExpectedVersion, MultiAppend, Position, Store};
use serde_json::json;

use crate::support::{ev, sid, suffix};

fn batch(stream: &str, expected: ExpectedVersion, n: usize) -> AppendBatch {
    let events = (0..n)
        .map(|i| ev("kit-multi", "Moved", json!({ "i": i })))
        .collect();
    AppendBatch::new(stream, expected, events).expect("valid batch")
}

fn multi(batches: Vec<AppendBatch>) -> MultiAppend {
    MultiAppend::new(batches).expect("valid multi-stream append")
}

/// A multi-stream append stores every batch or none: each against its own expected version
/// (a conflict names its stream, expected and actual versions, and stores nothing anywhere),
/// positions in batch order, a stream's later batches checked against what its earlier ones
/// left; a retry with the same ids stores nothing new, batch by batch; an id twice is refused
/// before anything is written.
pub async fn multi_stream_appends<S: Store>(store: &S) {
    let t = suffix();
    let (a, b, c) = (format!("ma-{t}"), format!("mb-{t}"), format!("mc-{t}"));
    let first = multi(vec![
        batch(&a, ExpectedVersion::NoStream, 2),
        batch(&b, ExpectedVersion::NoStream, 3),
    ]);
    let done = store.append_many(first.clone()).await.expect("append");
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|d| d.stored));
    assert_eq!(
        done.iter()
            .map(|d| d.events.iter().map(|e| e.version).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        [vec![0, 1], vec![0, 1, 2]]
    );
    let positions: Vec<Position> = done
        .iter()
        .flat_map(|d| d.events.iter().map(|e| e.position))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions follow the batches' order: {positions:?}"
    );
    for (stream, appended) in [(&a, &done[0]), (&b, &done[1])] {
        let stored = store
            .read_stream(&sid(stream), 0, event_store::Direction::Forward, 100)
            .await
            .expect("read");
        assert_eq!(
            stored, appended.events,
            "the events reported are the events stored"
        );
    }

    // One expectation fails: nothing is stored in either stream.
    let err = store
        .append_many(multi(vec![
            batch(&a, ExpectedVersion::Exact(1), 1),
            batch(&b, ExpectedVersion::Exact(7), 1),
        ]))
        .await
        .expect_err("stream b is at version 2");
    match err {
        Error::Conflict {
            stream,
            expected,
            actual,
        } => {
            assert_eq!(stream, b);
            assert_eq!(expected, ExpectedVersion::Exact(7));
            assert_eq!(actual, Some(2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.stream_version(&sid(&a)).await.expect("version"),
        Some(1)
    );
    let err = store
        .append_many(multi(vec![
            batch(&c, ExpectedVersion::NoStream, 1),
            batch(&a, ExpectedVersion::NoStream, 1),
        ]))
        .await
        .expect_err("stream a exists");
    assert!(err.is_conflict(), "{err}");
    assert_eq!(
        store.stream_version(&sid(&c)).await.expect("version"),
        None,
        "the first batch was rolled back with the second"
    );

    // Idempotent, batch by batch.
    let again = store.append_many(first.clone()).await.expect("retry");
    assert!(again.iter().all(|d| !d.stored), "a retry stores nothing");
    assert_eq!(again[0].events, done[0].events, "and reports the originals");
    let mixed = store
        .append_many(multi(vec![
            first.batches()[0].clone(),
            batch(&c, ExpectedVersion::NoStream, 1),
        ]))
        .await
        .expect("a stored batch beside a new one");
    assert_eq!(
        mixed.iter().map(|d| d.stored).collect::<Vec<_>>(),
        [false, true]
    );

    // Interleaved input keeps its order: a stream may have several batches, each checked
    // against the version the batches before it left.
    let d = format!("md-{t}");
    let woven = store
        .append_many(multi(vec![
            batch(&d, ExpectedVersion::NoStream, 1),
            batch(&c, ExpectedVersion::Exact(0), 1),
            batch(&d, ExpectedVersion::Exact(0), 2),
        ]))
        .await
        .expect("a stream twice, in order");
    assert_eq!(
        woven
            .iter()
            .flat_map(|w| w.events.iter().map(|e| (e.stream.clone(), e.version)))
            .collect::<Vec<_>>(),
        [
            (d.clone(), 0),
            (c.clone(), 1),
            (d.clone(), 1),
            (d.clone(), 2)
        ]
    );
    let read_d = store
        .read_stream(&sid(&d), 0, event_store::Direction::Forward, 100)
        .await
        .expect("read");
    let reported_d: Vec<_> = woven
        .iter()
        .flat_map(|w| w.events.iter())
        .filter(|e| e.stream == d)
        .cloned()
        .collect();
    assert_eq!(read_d, reported_d, "positions and versions as reported");
    let err = store
        .append_many(multi(vec![
            batch(&d, ExpectedVersion::Exact(2), 1),
            batch(&d, ExpectedVersion::Exact(2), 1),
        ]))
        .await
        .expect_err("the second batch sees the first");
    assert!(err.is_conflict(), "{err}");
    assert_eq!(
        store.stream_version(&sid(&d)).await.expect("version"),
        Some(2)
    );

    // Bad input, refused before the store sees it.
    let one = batch(&a, ExpectedVersion::Any, 1);
    let same_id = AppendBatch::new(
        &b,
        ExpectedVersion::Any,
        vec![ev("kit-multi", "Moved", json!({})).with_id(one.events()[0].id)],
    )
    .expect("valid alone");
    let err = MultiAppend::new(vec![one, same_id]).expect_err("an id twice");
    assert_eq!(err.field(), Some("batches[1].events"));
    assert!(MultiAppend::new(Vec::new()).is_err());
}

/// Concurrent multi-stream appends over crossing stream sets (one writer takes `x` then `y`,
/// another `y` then `x`) all complete: no deadlock, every event stored once, each stream's
/// versions consecutive and in position order.
pub async fn multi_stream_appends_do_not_deadlock<S: Store + Clone>(store: &S) {
    let t = suffix();
    let streams: Vec<String> = (0..4).map(|i| format!("mx{i}-{t}")).collect();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, streams) = (store.clone(), streams.clone());
            tokio::spawn(async move {
                for round in 0..20 {
                    // Writer w crosses writer w+1's order.
                    let mut set: Vec<&String> =
                        (0..3).map(|k| &streams[(w + round + k) % 4]).collect();
                    if w % 2 == 1 {
                        set.reverse();
                    }
                    let batches = set
                        .into_iter()
                        .map(|s| batch(s, ExpectedVersion::Any, 2))
                        .collect();
                    store
                        .append_many(multi(batches))
                        .await
                        .expect("crossing multi-stream appends complete");
                }
            })
        })
        .collect();
    for w in writers {
        tokio::time::timeout(crate::support::PATIENCE, w)
            .await
            .expect("no deadlock")
            .expect("writer");
    }
    let mut total = 0;
    let mut seen: HashMap<String, Vec<(u64, Position)>> = HashMap::new();
    for s in &streams {
        let events = store
            .read_stream(&sid(s), 0, event_store::Direction::Forward, 10_000)
            .await
            .expect("read");
        total += events.len();
        seen.insert(
            s.clone(),
            events.iter().map(|e| (e.version, e.position)).collect(),
        );
    }
    assert_eq!(total, 4 * 20 * 3 * 2, "every event stored once");
    for (s, v) in seen {
        assert!(
            v.iter()
                .enumerate()
                .all(|(i, (version, _))| *version == i as u64),
            "{s}: versions are consecutive"
        );
        assert!(
            v.windows(2).all(|w| w[0].1 < w[1].1),
            "{s}: versions follow positions"
        );
    }
}
