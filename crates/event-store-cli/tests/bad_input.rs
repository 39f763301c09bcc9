//! Hostile input through the public API (memory, SQLite, and PostgreSQL when reachable) and
//! through the CLI: clear errors, nothing written, no panic, no stack overflow; SQL
//! metacharacters in every string field are stored verbatim.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::process::Command;

use event_store::{Error, EventStore, ExpectedVersion, MemoryStore, NewEvent, Store};
use serde_json::{Value, json};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_event-store");
const METACHARACTERS: &str = "'; DROP TABLE events; -- \" OR 1=1 /* */ $1 \\x00? %s {}[]";

async fn hostile<S: Store + Clone>(store: S) {
    let es = EventStore::from_store(store);
    let ten_mb = "x".repeat(10 << 20);
    let refused = |r: event_store::Result<event_store::Appended>, field: &str| match r {
        Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
        other => panic!(
            "expected {field} to be refused, got {:?}",
            other.map(|a| a.events.len())
        ),
    };
    refused(
        es.append(
            &ten_mb,
            ExpectedVersion::Any,
            vec![NewEvent::new("n", "T", json!({}))],
        )
        .await,
        "stream",
    );
    refused(
        es.append(
            "s",
            ExpectedVersion::Any,
            vec![NewEvent::new("n", "T", json!({"big": ten_mb}))],
        )
        .await,
        "events[0].data",
    );
    refused(
        es.append(
            "s",
            ExpectedVersion::Any,
            vec![NewEvent::new(&ten_mb, "T", json!({}))],
        )
        .await,
        "events[0].namespace",
    );
    refused(
        es.append(
            "s",
            ExpectedVersion::Any,
            vec![NewEvent::new("n", "T", json!({})).with_action(ten_mb.clone())],
        )
        .await,
        "events[0].context.action",
    );
    refused(
        es.append(
            "s",
            ExpectedVersion::Any,
            vec![NewEvent::new("n", "T", json!({})).with_metadata("m", ten_mb.clone())],
        )
        .await,
        "events[0].data",
    );
    for bad in ["a\0b", "tab\t", "bell\u{7}", "new\nline", "del\u{7f}", ""] {
        refused(
            es.append(
                bad,
                ExpectedVersion::Any,
                vec![NewEvent::new("n", "T", json!({}))],
            )
            .await,
            "stream",
        );
    }
    assert_eq!(
        es.stream_version("s").await.unwrap(),
        None,
        "nothing was written"
    );

    // SQL metacharacters everywhere strings may hold them: stored and read back verbatim.
    let stream = "o'r\"d;e--r/*1*/";
    let event = NewEvent::new(
        "n",
        "T",
        json!({"note": METACHARACTERS, METACHARACTERS: [METACHARACTERS]}),
    )
    .with_action(METACHARACTERS.replace("\\x00", ""))
    .with_subject("user", METACHARACTERS)
    .with_metadata(METACHARACTERS, METACHARACTERS);
    let written = es
        .append(stream, ExpectedVersion::NoStream, vec![event])
        .await
        .unwrap()
        .events;
    let read = es.read_stream_page(stream, 0, 10).await.unwrap();
    assert_eq!(read, written);
    assert_eq!(read[0].data["note"], METACHARACTERS);
    assert_eq!(read[0].context.subject["user"], METACHARACTERS);
    let found = es
        .store()
        .read_committed(
            &event_store::Query::all()
                .subject_eq("user", METACHARACTERS)
                .data_eq("note", METACHARACTERS)
                .check()
                .unwrap(),
            event_store::Position::START,
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        found, written,
        "metacharacters in query values are bound, not executed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_through_the_api() {
    hostile(MemoryStore::new()).await;
    let dir = tempfile::tempdir().unwrap();
    hostile(
        event_store_sqlite::SqliteStore::open(dir.path().join("e.db"))
            .await
            .unwrap(),
    )
    .await;
    let url = std::env::var("EVENT_STORE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!(
        "es_bad_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    match event_store_postgres::PgStore::connect(
        &url,
        event_store_postgres::PgConfig::with_schema(&schema),
    )
    .await
    {
        Ok(store) => {
            store.migrate().await.unwrap();
            let outcome = tokio::spawn(hostile(store.clone())).await;
            let client = store.pool().get().await.unwrap();
            client
                .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .await
                .unwrap();
            if let Err(e) = outcome {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        Err(e) => {
            event_store_testkit::require_service(
                "PostgreSQL (EVENT_STORE_TEST_PG)",
                Err::<(), _>(e),
            );
        }
    }
}

fn cli(db: &std::path::Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    common::output_with_stdin(
        Command::new(BIN)
            .arg("--url")
            .arg(format!("sqlite://{}", db.display()))
            .args(args),
        stdin,
    )
}

fn one_error_line(out: &std::process::Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !err.contains("panicked") && !err.contains("overflow"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn hostile_input_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    // A 10 MB line.
    let big = format!(
        "{{\"stream\":\"s\",\"namespace\":\"n\",\"type\":\"T\",\"data\":{{\"x\":\"{}\"}}}}\n",
        "y".repeat(10 << 20)
    );
    let e = one_error_line(&cli(&db, &["append", "--ndjson"], big.as_bytes()));
    assert!(e.contains("line 1") && e.contains("events[0].data"), "{e}");
    // JSON nested 100 000 deep.
    let deep = format!(
        "{{\"stream\":\"s\",\"namespace\":\"n\",\"type\":\"T\",\"data\":{{\"d\":{}{}}}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = one_error_line(&cli(&db, &["append", "--ndjson"], deep.as_bytes()));
    assert!(e.contains("line 1") && e.contains("recursion limit"), "{e}");
    // The same file through import.
    let file = dir.path().join("deep.ndjson");
    std::fs::write(&file, &deep).unwrap();
    let e = one_error_line(&cli(&db, &["import", file.to_str().unwrap()], b""));
    assert!(e.contains("line 1"), "{e}");
    // Control characters in a stream id.
    let e = one_error_line(&cli(&db, &["append", "a\u{1b}[31mred", "n.T"], b""));
    assert!(e.contains("invalid stream"), "{e}");
    let out = cli(&db, &["stats", "--format", "json"], b"");
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["events"], 0, "nothing was written");
    // SQL metacharacters through the CLI: stored verbatim.
    let data = json!({"note": METACHARACTERS}).to_string();
    let out = cli(&db, &["append", "o'r\"der;--", "shop.Placed", &data], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&db, &["read", "o'r\"der;--", "--format", "ndjson"], b"");
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["data"]["note"], METACHARACTERS);
}
