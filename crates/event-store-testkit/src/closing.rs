//! Closing streams: no appends, hidden from stream reads and lists, still in the global log.

use event_store::{
    Direction, Error, ExpectedVersion, MultiAppend, Query, RecordedEvent, Result, Store,
};
use futures::StreamExt;
use serde_json::json;

use crate::support::{append, batch, ev, head, sid, stream_events, suffix, wait_for_log};

fn assert_closed<T: std::fmt::Debug>(r: Result<T>, stream: &str, what: &str) {
    match r {
        Err(Error::StreamClosed { stream: s }) => assert_eq!(s, stream, "{what}: which stream"),
        other => panic!("{what}: expected StreamClosed for `{stream}`, got {other:?}"),
    }
}

/// [`Store::close_stream`]: a closed stream refuses appends (any expected version, alone or in
/// a multi-stream append, which then stores nothing) with `StreamClosed`, except an idempotent
/// retry of events stored before the close; stream reads and its version are refused; it is left
/// out of [`Store::streams`] and listed by [`Store::closed_streams`] (paged, by prefix); its
/// events are still in the global log, in queries and by id. A stream without events can be
/// closed. Appends racing with a close are each either stored whole or refused. Reopening
/// brings everything back, versions going on where they stopped.
pub async fn closed_streams_keep_their_events<S: Store>(store: &S) {
    let p = format!("close{}-", &suffix()[..8]);
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    let before = head(store).await;
    let first = vec![
        ev("kit", "Opened", json!({"n": 0})).with_id(uuid::Uuid::now_v7()),
        ev("kit", "Noted", json!({"n": 1})).with_id(uuid::Uuid::now_v7()),
    ];
    let retry = first.clone();
    let stored_a = append(store, &a, ExpectedVersion::NoStream, first)
        .await
        .expect("append");
    let stored_b = append(
        store,
        &b,
        ExpectedVersion::NoStream,
        vec![ev("kit", "Opened", json!({}))],
    )
    .await
    .expect("append");

    assert!(
        store.close_stream(&sid(&a), true).await.expect("close"),
        "it was open"
    );
    assert!(
        !store.close_stream(&sid(&a), true).await.expect("close"),
        "closing again changes nothing"
    );

    // No appends, whatever they expect.
    for expected in [
        ExpectedVersion::Any,
        ExpectedVersion::StreamExists,
        ExpectedVersion::Exact(1),
        ExpectedVersion::NoStream,
    ] {
        let r = append(store, &a, expected, vec![ev("kit", "Late", json!({}))]).await;
        assert_closed(r, &a, &format!("an append expecting {expected}"));
    }
    // A multi-stream append touching it stores nothing at all.
    let many = MultiAppend::new(vec![
        batch(
            &b,
            ExpectedVersion::Exact(0),
            vec![ev("kit", "Along", json!({}))],
        ),
        batch(&a, ExpectedVersion::Any, vec![ev("kit", "Late", json!({}))]),
    ])
    .expect("valid");
    assert_closed(store.append_many(many).await, &a, "a multi-stream append");
    assert_eq!(
        stream_events(store, &b).await,
        stored_b,
        "the other batch was not stored"
    );
    // An idempotent retry of what was stored before the close still gets the originals.
    let again = store
        .append(batch(&a, ExpectedVersion::NoStream, retry))
        .await
        .expect("a retry of a stored batch");
    assert!(!again.stored);
    assert_eq!(again.events, stored_a, "the retry returns the originals");

    // Stream reads and its version are refused; the list leaves it out.
    for direction in [Direction::Forward, Direction::Backward] {
        let from = if direction == Direction::Forward {
            0
        } else {
            u64::MAX
        };
        assert_closed(
            store.read_stream(&sid(&a), from, direction, 10).await,
            &a,
            "read_stream",
        );
        let rows: Vec<Result<RecordedEvent>> = store
            .read_stream_rows(&sid(&a), from, direction, 10)
            .collect()
            .await;
        assert_eq!(rows.len(), 1, "read_stream_rows yields the refusal alone");
        assert_closed(
            rows.into_iter().next().expect("one"),
            &a,
            "read_stream_rows",
        );
    }
    assert_closed(store.stream_version(&sid(&a)).await, &a, "stream_version");
    let listed = store.streams(&p, None, 10).await.expect("streams");
    let ids: Vec<&str> = listed.iter().map(|s| s.stream.as_str()).collect();
    assert_eq!(ids, [b.as_str()], "only the open stream is listed");

    // Still in the global log, in queries and by id.
    let log = wait_for_log(store, before, 3, |e| e.stream.starts_with(&p)).await;
    assert_eq!(
        log.iter().filter(|e| e.stream == a).count(),
        2,
        "its events are in the log"
    );
    let query = Query::stream(a.clone()).check().expect("query");
    let found = store
        .read_committed(&query, before, 100)
        .await
        .expect("read_committed");
    assert_eq!(found, stored_a, "a query by stream finds its events");
    assert_eq!(
        store.read_event(stored_a[0].id).await.expect("read_event"),
        Some(stored_a[0].clone())
    );

    // A stream without events can be closed; closed streams are listed in byte order, paged.
    let empty = format!("{p}c-empty");
    let z = format!("{p}z");
    assert!(store.close_stream(&sid(&empty), true).await.expect("close"));
    assert!(store.close_stream(&sid(&z), true).await.expect("close"));
    let r = append(
        store,
        &empty,
        ExpectedVersion::NoStream,
        vec![ev("kit", "Opened", json!({}))],
    );
    assert_closed(
        r.await,
        &empty,
        "an append to a closed stream without events",
    );
    let closed = store
        .closed_streams(&p, None, 10)
        .await
        .expect("closed_streams");
    let names: Vec<&str> = closed.iter().map(|c| c.stream.as_str()).collect();
    assert_eq!(
        names,
        [a.as_str(), empty.as_str(), z.as_str()],
        "byte order"
    );
    let now = chrono::Utc::now();
    for c in &closed {
        let age = now.signed_duration_since(c.closed_at);
        assert!(
            age > chrono::Duration::minutes(-5) && age < chrono::Duration::minutes(5),
            "{} closed at {} (now {now})",
            c.stream,
            c.closed_at
        );
    }
    let page = store
        .closed_streams(&p, Some(&sid(&a)), 1)
        .await
        .expect("closed_streams");
    assert_eq!(page, closed[1..2].to_vec(), "paged after an id");
    assert!(
        store
            .closed_streams(&format!("x{p}"), None, 10)
            .await
            .expect("closed_streams")
            .is_empty(),
        "by prefix"
    );

    // Appends racing with a close: each stored whole or refused, nothing after the close.
    let race = format!("{p}race");
    append(
        store,
        &race,
        ExpectedVersion::NoStream,
        vec![ev("kit", "Opened", json!({}))],
    )
    .await
    .expect("append");
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let race = race.clone();
            async move {
                let mut stored = Vec::new();
                for i in 0..20 {
                    let events = vec![
                        ev("kit", "Raced", json!({"w": w, "i": i, "part": 0})),
                        ev("kit", "Raced", json!({"w": w, "i": i, "part": 1})),
                    ];
                    match append(store, &race, ExpectedVersion::Any, events).await {
                        Ok(events) => stored.extend(events),
                        Err(Error::StreamClosed { .. }) => return (stored, true),
                        Err(e) => panic!("an append racing a close: {e}"),
                    }
                }
                (stored, false)
            }
        })
        .collect();
    let closing = async {
        tokio::task::yield_now().await;
        store.close_stream(&sid(&race), true).await.expect("close")
    };
    let (results, changed) = futures::join!(futures::future::join_all(writers), closing);
    assert!(changed);
    let stored: Vec<RecordedEvent> = results.iter().flat_map(|(s, _)| s.clone()).collect();
    assert_closed(
        append(
            store,
            &race,
            ExpectedVersion::Any,
            vec![ev("kit", "Late", json!({}))],
        )
        .await,
        &race,
        "an append after the close returned",
    );
    let query = Query::stream(race.clone()).check().expect("query");
    let in_log = store
        .read_committed(&query, before, 1000)
        .await
        .expect("read_committed");
    assert_eq!(
        in_log.len(),
        stored.len() + 1,
        "every stored append is whole in the log"
    );
    let versions: Vec<u64> = in_log.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (0..in_log.len() as u64).collect::<Vec<_>>(),
        "no gap"
    );
    for e in &stored {
        assert!(in_log.contains(e), "stored event {} is in the log", e.id);
    }

    // Reopening brings it back; versions go on.
    assert!(store.close_stream(&sid(&a), false).await.expect("reopen"));
    assert!(
        !store.close_stream(&sid(&a), false).await.expect("reopen"),
        "it was open"
    );
    assert_eq!(
        store.stream_version(&sid(&a)).await.expect("version"),
        Some(1)
    );
    let later = append(
        store,
        &a,
        ExpectedVersion::Exact(1),
        vec![ev("kit", "Later", json!({}))],
    )
    .await
    .expect("an append after reopening");
    assert_eq!(later[0].version, 2);
    assert_eq!(stream_events(store, &a).await.len(), 3);
    let listed = store.streams(&p, None, 10).await.expect("streams");
    assert!(listed.iter().any(|s| s.stream == a), "listed again");
    let closed = store
        .closed_streams(&p, None, 10)
        .await
        .expect("closed_streams");
    assert!(closed.iter().all(|c| c.stream != a), "no longer closed");
}
