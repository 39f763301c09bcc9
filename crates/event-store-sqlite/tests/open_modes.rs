//! What opening a file may do to it: `OpenMode::Create` makes a store, `Existing` and
//! `ReadOnly` open only a file that holds one, and `ReadOnly` never changes a byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use event_store::{AppendBatch, Error, ExpectedVersion, NewEvent, Position, Store, StreamId};
use event_store_sqlite::{MIGRATIONS, OpenMode, SqliteConfig, SqliteStore};
use serde_json::json;

fn config(mode: OpenMode) -> SqliteConfig {
    SqliteConfig {
        mode,
        ..SqliteConfig::default()
    }
}

fn reason(e: Error) -> String {
    match e {
        Error::InvalidInput { field, reason } => {
            assert_eq!(field, "path");
            reason
        }
        other => panic!("expected InvalidInput on path, got {other:?}"),
    }
}

async fn open_err(path: &Path, mode: OpenMode) -> String {
    match SqliteStore::open_with(path, config(mode)).await {
        Ok(_) => panic!("{} opened with {mode:?}", path.display()),
        Err(e) => reason(e),
    }
}

/// A store with two events in it.
async fn seeded(path: &Path) {
    let store = SqliteStore::open(path).await.unwrap();
    let events = vec![
        NewEvent::new("shop", "Placed", json!({"n": 1})),
        NewEvent::new("shop", "Paid", json!({"n": 2})),
    ];
    let batch = AppendBatch::new("order-1", ExpectedVersion::NoStream, events).unwrap();
    store.append(batch).await.unwrap();
}

#[tokio::test]
async fn existing_and_read_only_never_create_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    for mode in [OpenMode::Existing, OpenMode::ReadOnly] {
        let e = open_err(&path, mode).await;
        assert_eq!(e, format!("no event store at {}", path.display()));
        assert!(!path.exists(), "{mode:?} created the file");
    }
    // Create makes it, in a directory that exists only.
    let nested = dir.path().join("no-such-dir").join("events.db");
    let e = open_err(&nested, OpenMode::Create).await;
    assert!(
        e.contains("does not exist") && e.contains("no-such-dir"),
        "{e}"
    );
    let e = open_err(dir.path(), OpenMode::Create).await;
    assert!(e.contains("is a directory"), "{e}");
    SqliteStore::open_with(&path, config(OpenMode::Create))
        .await
        .unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn a_database_that_is_not_a_store_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    for mode in [OpenMode::Existing, OpenMode::ReadOnly] {
        let e = open_err(&path, mode).await;
        assert!(e.contains("without the event store's tables"), "{e}");
    }
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the file was changed"
    );
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database, just some text that is long enough".repeat(20),
    )
    .unwrap();
    let e = open_err(&text, OpenMode::ReadOnly).await;
    assert!(e.contains("is not a SQLite database"), "{e}");
}

#[tokio::test]
async fn read_only_reads_and_refuses_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    seeded(&path).await;
    let before = std::fs::read(&path).unwrap();
    let store = SqliteStore::open_with(&path, config(OpenMode::ReadOnly))
        .await
        .unwrap();
    assert!(store.is_read_only());
    let log = store.read_all(Position::START, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    let stream = StreamId::new("order-1").unwrap();
    assert_eq!(store.stream_version(&stream).await.unwrap(), Some(1));
    let batch = AppendBatch::new(
        "order-1",
        ExpectedVersion::Any,
        vec![NewEvent::new("shop", "Late", json!({}))],
    )
    .unwrap();
    let e = store.append(batch).await.unwrap_err().to_string();
    assert!(e.contains("read-only"), "{e}");
    assert!(store.migrate().await.is_err());
    drop(store);
    assert!(
        std::fs::read(&path).unwrap() == before,
        "a read-only open wrote"
    );
    // The same reads through a writable open.
    let writable = SqliteStore::open_with(&path, config(OpenMode::Existing))
        .await
        .unwrap();
    assert_eq!(writable.read_all(Position::START, 10).await.unwrap(), log);
}

#[tokio::test]
async fn read_only_wants_this_release_schema_and_status_reads_any() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    seeded(&path).await;
    let status = SqliteStore::inspect_migrations(&path).await.unwrap();
    assert_eq!(status.applied.len(), MIGRATIONS.len());
    assert!(status.pending.is_empty());
    // A store from an earlier release: its last migration not applied.
    let last = MIGRATIONS.last().unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "DELETE FROM schema_migrations WHERE version = ?1",
            [last.version],
        )
        .unwrap();
    }
    let e = open_err(&path, OpenMode::ReadOnly).await;
    assert!(e.contains("migrate it first"), "{e}");
    let status = SqliteStore::inspect_migrations(&path).await.unwrap();
    assert_eq!(status.pending, vec![(last.version, last.name)]);
    // Existing migrates it (the migration is idempotent).
    let store = SqliteStore::open_with(&path, config(OpenMode::Existing))
        .await
        .unwrap();
    assert!(store.migrations().await.unwrap().pending.is_empty());
    // A store from a later release is refused rather than misread.
    drop(store);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, 'from the future')",
            [last.version + 1],
        )
        .unwrap();
    }
    let e = open_err(&path, OpenMode::ReadOnly).await;
    assert!(e.contains("newer than this release"), "{e}");
}
