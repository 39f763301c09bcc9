//! The table refuses what validation refuses, even written around the store (the store's writer
//! only inserts validated events, so this is defense in depth), and events stay immutable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use event_store::{EventStore, ExpectedVersion, NewEvent};
use event_store_sqlite::SqliteStore;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_refuses_rows_that_validation_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).await.unwrap();
    EventStore::from_store(store.clone())
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("shop", "Placed", json!({"total": 1}))],
        )
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let insert = |stream: &str, namespace: &str, event_type: &str, data: &str| {
        conn.execute(
            "INSERT INTO events (id, stream, version, namespace, event_type, data, context, time)
             VALUES (?1, ?2, 0, ?3, ?4, ?5, '{\"time\":\"2026-01-01T00:00:00Z\"}', '2026-01-01')",
            rusqlite::params![
                uuid::Uuid::now_v7().to_string(),
                stream,
                namespace,
                event_type,
                data
            ],
        )
    };
    let long = "s".repeat(256);
    for (what, stream, namespace, event_type, data) in [
        ("an empty stream", "", "shop", "T", "{}"),
        ("a stream over 255 bytes", long.as_str(), "shop", "T", "{}"),
        ("a stream with a space", "a b", "shop", "T", "{}"),
        ("a stream with a tab", "a\tb", "shop", "T", "{}"),
        ("a zero-width space", "order-1\u{200b}", "shop", "T", "{}"),
        (
            "a right-to-left override",
            "\u{202e}order",
            "shop",
            "T",
            "{}",
        ),
        ("a byte-order mark", "\u{feff}order", "shop", "T", "{}"),
        ("a namespace with a dot", "x", "a.b", "T", "{}"),
        ("a namespace with a space", "x", "bad namespace!", "T", "{}"),
        ("a namespace starting with -", "x", "-a", "T", "{}"),
        ("an empty type", "x", "shop", "", "{}"),
        ("a type over 64", "x", "shop", &"t".repeat(65), "{}"),
        ("data that is an array", "x", "shop", "T", "[1]"),
        ("data that is text", "x", "shop", "T", "\"text\""),
    ] {
        let e = insert(stream, namespace, event_type, data).expect_err(what);
        assert!(e.to_string().contains("input rules"), "{what}: {e}");
    }
    insert("other-stream", "shop-2", "Fine_1", "{\"a\":1}").expect("a row the rules accept");
    for sql in ["UPDATE events SET data = '{}'", "DELETE FROM events"] {
        let e = conn.execute(sql, []).expect_err(sql);
        assert!(e.to_string().contains("immutable"), "{sql}: {e}");
    }
    drop(store);
}
