//! The PostgreSQL server stopped and started again: calls fail with a backend error while it is
//! down, and the same store works again once it is back, with nothing lost. Runs only where the
//! test may restart the local server (`pg_ctlcluster` present and `EVENT_STORE_TEST_PG` on
//! 127.0.0.1); it is alone in its test binary so no other test sees the outage.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::match_wild_err_arm,
    clippy::too_many_lines
)]

mod common;

use std::process::Command;
use std::time::Duration;

use event_store::{Error, EventStore, ExpectedVersion, NewEvent};
use serde_json::json;

fn cluster() -> Option<String> {
    let local = common::url().contains("@127.0.0.1") || common::url().contains("@localhost");
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .flatten()
        .next()?
        .file_name();
    (local && Command::new("pg_ctlcluster").arg("--help").output().is_ok())
        .then(|| version.to_string_lossy().into_owned())
}

fn ctl(version: &str, action: &str) {
    let mut cmd = Command::new("pg_ctlcluster");
    cmd.args(["--skip-systemctl-redirect", version, "main", action]);
    if action == "stop" {
        cmd.args(["-m", "fast"]);
    }
    let status = cmd.status().expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_recovers_after_a_server_restart() {
    let Some(version) = cluster() else {
        eprintln!("SKIPPED: cannot restart the PostgreSQL server from here");
        return;
    };
    let Some(t) = common::fresh().await else {
        return;
    };
    let es = EventStore::from_store(t.clone());
    for i in 0..10 {
        es.append(
            "before",
            ExpectedVersion::Any,
            vec![NewEvent::new("restart", "E", json!({"i": i}))],
        )
        .await
        .unwrap();
    }
    ctl(&version, "stop");
    let down = es
        .append(
            "during",
            ExpectedVersion::Any,
            vec![NewEvent::new("restart", "E", json!({}))],
        )
        .await;
    ctl(&version, "start");
    match down {
        Err(Error::Backend { .. }) => {}
        other => panic!("an append while the server is down is a backend error, got {other:?}"),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match es
            .append(
                "after",
                ExpectedVersion::Any,
                vec![NewEvent::new("restart", "E", json!({}))],
            )
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the store did not recover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert_eq!(
        es.stream_version("before").await.unwrap(),
        Some(9),
        "nothing was lost"
    );
    assert_eq!(
        es.stream_version("during").await.unwrap(),
        None,
        "the failed append stored nothing"
    );
    assert_eq!(es.stream_version("after").await.unwrap(), Some(0));
}
