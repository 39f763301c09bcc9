//! The CLI against a primary with a hot standby (issue 18): `--replica` for reads, the
//! `replicas` health check, and the fallback to the primary when the standby is down. The
//! servers are started from the PostgreSQL server binaries (skipped loudly without them,
//! failing when `CI` is set).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use event_store_postgres::cluster::{LocalCluster, server_binaries};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_event-store");

fn cluster() -> Option<LocalCluster> {
    if server_binaries().is_none() {
        let why = "cli replicas: SKIPPED — no PostgreSQL server binaries (set EVENT_STORE_PG_BIN)";
        assert!(std::env::var_os("CI").is_none(), "{why}, and CI is set");
        eprintln!("{why}");
        return None;
    }
    Some(LocalCluster::start(1).expect("a primary and a standby"))
}

fn run(c: &LocalCluster, with_replica: bool, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("EVENT_STORE_URL")
        .env_remove("EVENT_STORE_REPLICAS")
        .env_remove("EVENT_STORE_CONSISTENCY")
        .arg("--url")
        .arg(c.primary_url())
        .arg("--schema")
        .arg("cli_replicas");
    if with_replica {
        cmd.arg("--replica").arg(c.standby_url(0));
    }
    cmd.args(args).stdin(Stdio::null()).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Reads through `--replica` until the standby has the appends (it is eventually consistent).
fn read_until(c: &LocalCluster, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = run(c, true, &["read", "order-1", "--format", "ndjson"]);
        if out.status.success() {
            let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() == n {
                return lines;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the standby had {n} events in time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reads_go_to_the_replica_and_fall_back_to_the_primary() {
    let Some(c) = cluster() else { return };
    ok(&run(&c, false, &["init"]));
    ok(&run(
        &c,
        true,
        &["append", "order-1", "shop.Placed", r#"{"n": 1}"#],
    ));
    ok(&run(
        &c,
        true,
        &["append", "order-1", "shop.Paid", r#"{"n": 2}"#],
    ));
    let events = read_until(&c, 2);
    assert_eq!(events[1]["type"], "Paid");

    // The health check: serving, with a lag.
    let status: Value =
        serde_json::from_str(&ok(&run(&c, true, &["replicas", "--format", "json"]))).unwrap();
    assert_eq!(status[0]["healthy"], true, "{status}");
    assert!(status[0]["lag_seconds"].is_number(), "{status}");
    assert!(
        status[0]["replica"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // --consistency primary reads on the primary only.
    let primary_only = ok(&run(
        &c,
        true,
        &[
            "--consistency",
            "primary",
            "read",
            "order-1",
            "--format",
            "ndjson",
        ],
    ));
    assert_eq!(primary_only.lines().count(), 2);

    // The standby down: reads go to the primary; the health check fails with one line.
    c.stop_standby(0).expect("stop the standby");
    let read = ok(&run(&c, true, &["read", "order-1", "--format", "ndjson"]));
    assert_eq!(read.lines().count(), 2, "the primary served the read");
    let down = run(&c, true, &["replicas", "--format", "json"]);
    assert_eq!(down.status.code(), Some(1));
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(err.contains("1 of 1 replicas not serving reads"), "{err}");
    let status: Value = serde_json::from_slice(&down.stdout).unwrap();
    assert_eq!(status[0]["reachable"], false, "{status}");
    c.start_standby(0).expect("start the standby");
    ok(&run(&c, true, &["replicas"]));
}

#[test]
fn replica_flags_are_checked() {
    const PG: &str = "postgres://x@127.0.0.1:1/x";
    for (args, says) in [
        (
            ["--url", "sqlite://./never.db", "--replica", PG, "stats"].as_slice(),
            "--replica is a PostgreSQL setting",
        ),
        (
            &["--url", PG, "--replica", "sqlite://x.db", "stats"],
            "--replica takes PostgreSQL URLs",
        ),
        (
            &["--url", PG, "--max-replica-lag", "-1", "stats"],
            "out of range",
        ),
        (&["--url", PG, "replicas"], "no replicas"),
    ] {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("EVENT_STORE_REPLICAS")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(
        !std::path::Path::new("./never.db").exists(),
        "nothing was created"
    );
}
