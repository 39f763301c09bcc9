//! Closing streams through the facade: each act recorded with who did it, folds and decisions
//! on a closed stream refused early, the events still in the log for followers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use event_store::closing::{STREAMS_STREAM, StreamClosed, StreamReopened};
use event_store::{Error, EventStore, ExpectedVersion, Position, Query};
use event_store_testkit::{Added, CounterEvent, KitCounter};
use futures::StreamExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_is_recorded_and_refuses_folds_and_decisions() {
    let es = EventStore::memory();
    es.save("counter-1", &CounterEvent::Added(Added { n: 2 }))
        .await
        .unwrap();
    assert_eq!(
        es.aggregate::<KitCounter>("counter-1").await.unwrap().total,
        2
    );

    let closed = es.close_stream("counter-1", "ops").await.unwrap();
    assert_eq!(closed.stream, STREAMS_STREAM);
    assert_eq!(closed.context.action.as_deref(), Some("close"));
    let act = closed.decode::<StreamClosed>().unwrap();
    assert_eq!(
        (act.stream.as_str(), act.by.as_str(), act.was_open),
        ("counter-1", "ops", true)
    );

    // A fold by stream and a decision are refused with the same error; saves too.
    let e = es.aggregate::<KitCounter>("counter-1").await.unwrap_err();
    assert!(e.is_stream_closed(), "{e}");
    let e = es
        .execute::<KitCounter, CounterEvent, std::convert::Infallible, _>("counter-1", |_| {
            Ok(vec![CounterEvent::Added(Added { n: 1 })])
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("closed"), "{e}");
    let e = es
        .save("counter-1", &CounterEvent::Added(Added { n: 1 }))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::StreamClosed { ref stream } if stream == "counter-1"),
        "{e}"
    );
    // A read of the stream ends with the refusal; the log and queries still have its events.
    let read: Vec<_> = es
        .read_stream("counter-1", 0, event_store::Direction::Forward)
        .collect()
        .await;
    assert!(
        read.last()
            .unwrap()
            .as_ref()
            .is_err_and(Error::is_stream_closed)
    );
    let by_query: Vec<_> = es
        .read_committed(Query::stream("counter-1"), Position::START)
        .collect()
        .await;
    assert_eq!(by_query.len(), 1);

    // Nothing of the store's own can be closed; `by` must say who.
    let e = es.close_stream(STREAMS_STREAM, "ops").await.unwrap_err();
    assert_eq!(e.field(), Some("stream"), "{e}");
    let e = es.close_stream("counter-2", " ").await.unwrap_err();
    assert_eq!(e.field(), Some("by"), "{e}");

    // Reopened: recorded; the stream takes appends at its next version.
    let reopened = es.reopen_stream("counter-1", "ops").await.unwrap();
    let act = reopened.decode::<StreamReopened>().unwrap();
    assert!(act.was_closed);
    let saved = es
        .save_expecting(
            "counter-1",
            ExpectedVersion::Exact(0),
            &CounterEvent::Added(Added { n: 1 }),
        )
        .await
        .unwrap();
    assert_eq!(saved.version, 1);
    assert_eq!(
        es.aggregate::<KitCounter>("counter-1").await.unwrap().total,
        3
    );
}
