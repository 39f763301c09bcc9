//! `event-store projections list|status|reset|resume`, driven as an operator would while a
//! service's runner works: a projection parks on a failing event, the CLI shows where and why,
//! `resume` continues it once fixed, `reset` rebuilds it with another partition count; on
//! SQLite, and on PostgreSQL when the server is reachable (`EVENT_STORE_TEST_PG`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::collections::HashSet;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_store::projection::{
    AtLeastOnce, Handle, Projection, ProjectionStore, RunnerOptions, Scope,
};
use event_store::{
    BoxError, EventStore, ExpectedVersion, NewEvent, Query, RecordedEvent, RetryPolicy,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_event-store");

/// A projection that refuses the events whose ids are in `broken`.
#[derive(Clone, Default)]
struct Picky {
    broken: Arc<Mutex<HashSet<uuid::Uuid>>>,
    applied: Arc<Mutex<Vec<uuid::Uuid>>>,
}

impl Projection for Picky {
    const NAME: &'static str = "cli-picky";

    fn query(&self) -> Query {
        Query::all().namespace("cli")
    }
}

impl Handle for Picky {
    async fn handle(&self, _: Scope<'_>, event: &RecordedEvent) -> Result<(), BoxError> {
        if self.broken.lock().unwrap().contains(&event.id) {
            return Err(format!("no price for order {}", event.stream).into());
        }
        self.applied.lock().unwrap().push(event.id);
        Ok(())
    }
}

fn run(url: &[String], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(url)
        .args(args)
        .env_remove("EVENT_STORE_URL")
        .env_remove("EVENT_STORE_SCHEMA")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(url: &[String], args: &[&str]) -> String {
    let out = run(url, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(url: &[String], args: &[&str]) -> Value {
    serde_json::from_str(ok(url, args).trim()).unwrap()
}

/// A failed run: non-zero exit and one `error:` line.
fn one_error(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one error line, got: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "gave up: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn operate<S: ProjectionStore>(store: S, url: Vec<String>) {
    let es = EventStore::from_store(store);
    let picky = Picky::default();
    let mut ids = Vec::new();
    for i in 0..30 {
        let saved = es
            .append(
                &format!("order-{}", i % 6),
                ExpectedVersion::Any,
                vec![NewEvent::new("cli", "Placed", serde_json::json!({"i": i}))],
            )
            .await
            .unwrap();
        ids.push(saved.events[0].id);
    }
    let poison = ids[17];
    picky.broken.lock().unwrap().insert(poison);
    let options = RunnerOptions::default()
        .partitions(3)
        .batch(8, Duration::from_millis(5))
        .intervals(Duration::from_millis(100), Duration::from_millis(20))
        .retry(RetryPolicy {
            max_attempts: 2,
            first_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(10),
        });
    let runner = es
        .runner(AtLeastOnce(picky.clone()))
        .with_options(options)
        .spawn();

    // It parks on the poison event: `list` and `status` say so, with the event and the error.
    let url2 = url.clone();
    let parked = move || {
        let list = ok(&url2, &["projections", "list", "--format", "ndjson"]);
        list.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .any(|p| p["name"] == Picky::NAME && p["state"] == "parked")
    };
    until("the projection parks", parked).await;
    let all = json(&url, &["projections", "list", "--format", "json"]);
    let mine = all
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == Picky::NAME)
        .unwrap();
    assert!(
        mine["last_error"]
            .as_str()
            .unwrap()
            .contains("no price for order"),
        "{mine}"
    );
    let status = json(
        &url,
        &["projections", "status", Picky::NAME, "--format", "json"],
    );
    let partitions = status["active"]["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    let stuck: Vec<&Value> = partitions
        .iter()
        .filter(|p| !p["parked"].is_null())
        .collect();
    assert_eq!(
        stuck.len(),
        1,
        "only the poison's partition parks: {status}"
    );
    assert_eq!(stuck[0]["parked"]["event_id"], poison.to_string());
    let table = ok(
        &url,
        &["projections", "status", Picky::NAME, "--format", "table"],
    );
    assert!(
        table.contains("parked") && table.contains(&poison.to_string()),
        "{table}"
    );
    let listed = ok(&url, &["projections", "list", "--format", "table"]);
    assert!(
        listed.contains(Picky::NAME) && listed.contains("parked"),
        "{listed}"
    );

    // Fixed, then resumed: the poison event is applied and the rest after it.
    picky.broken.lock().unwrap().clear();
    let resumed = json(
        &url,
        &["projections", "resume", Picky::NAME, "--format", "json"],
    );
    assert_eq!(resumed["resumed"], 1);
    let applied = Arc::clone(&picky.applied);
    until("every event applied after the resume", move || {
        applied.lock().unwrap().len() >= 30
    })
    .await;
    assert!(picky.applied.lock().unwrap().contains(&poison));
    let again = json(
        &url,
        &["projections", "resume", Picky::NAME, "--format", "json"],
    );
    assert_eq!(again["resumed"], 0, "nothing left parked");

    // Reset with another partition count: a new generation, built by the running runner, then
    // switched to.
    let reset = json(
        &url,
        &[
            "projections",
            "reset",
            Picky::NAME,
            "--partitions",
            "2",
            "--format",
            "json",
        ],
    );
    assert_eq!(reset["generation"]["generation"], 2);
    assert_eq!(reset["generation"]["partitions"], 2);
    assert_eq!(reset["runner"], true, "a runner holds it");
    let url2 = url.clone();
    until("the rebuilt generation is active", move || {
        let s = json(
            &url2,
            &["projections", "status", Picky::NAME, "--format", "json"],
        );
        s["active"]["generation"] == 2 && s["building"].is_null()
    })
    .await;
    runner.stop().await.unwrap();

    // Mistakes are one line.
    let e = one_error(&run(&url, &["projections", "status", "nope"]));
    assert!(e.contains("no projection named `nope`"), "{e}");
    let e = one_error(&run(&url, &["projections", "reset", "Not A Name"]));
    assert!(e.contains("projection name"), "{e}");
    let e = one_error(&run(&url, &["projections", "resume", "nope"]));
    assert!(e.contains("no projection named"), "{e}");
    let out = run(
        &url,
        &["projections", "reset", Picky::NAME, "--partitions", "0"],
    );
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_park_resume_and_reset_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("events.db");
    let store = event_store_sqlite::SqliteStore::open(&path).await.unwrap();
    operate(
        store,
        vec!["--url".into(), format!("sqlite://{}", path.display())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_park_resume_and_reset_on_postgres() {
    let url = std::env::var("EVENT_STORE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let Some((admin, conn)) = event_store_testkit::require_service(
        "PostgreSQL (EVENT_STORE_TEST_PG)",
        tokio_postgres::connect(&url, tokio_postgres::NoTls).await,
    ) else {
        return;
    };
    tokio::spawn(conn);
    let schema = format!(
        "es_cli_proj_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let config = event_store_postgres::PgConfig::with_schema(&schema);
    let store = event_store_postgres::PgStore::connect(&url, config)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let args = vec![
        "--url".into(),
        url.clone(),
        "--schema".into(),
        schema.clone(),
    ];
    let outcome = tokio::spawn(operate(store, args)).await;
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
