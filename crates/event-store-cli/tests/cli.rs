//! The `event-store` binary, driven as a user would: every subcommand on SQLite, and on
//! PostgreSQL when the server is reachable (`EVENT_STORE_TEST_PG`); every misuse is one error
//! line and a non-zero exit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines,
    clippy::cast_possible_truncation
)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_event-store");

/// How to reach one store: `--url …` (and `--schema …`).
#[derive(Clone)]
struct Target {
    args: Vec<String>,
}

impl Target {
    fn sqlite(dir: &Path) -> Self {
        Self {
            args: vec![
                "--url".into(),
                format!("sqlite://{}", dir.join("events.db").display()),
            ],
        }
    }

    /// A fresh schema on the test server (the caller drops it), or `None` when the server is
    /// unreachable outside CI.
    fn postgres() -> Option<(
        Self,
        String,
        tokio::runtime::Runtime,
        tokio_postgres::Client,
    )> {
        let (url, rt, admin) = common::postgres()?;
        let schema = format!(
            "es_cli_{}",
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        );
        let t = Self {
            args: vec!["--url".into(), url, "--schema".into(), schema.clone()],
        };
        Some((t, schema, rt, admin))
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(&self.args)
            .args(args)
            .env_remove("EVENT_STORE_URL")
            .env_remove("EVENT_STORE_SCHEMA");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    fn run_with(&self, args: &[&str], stdin: &[u8]) -> Output {
        common::output_with_stdin(&mut self.cmd(args), stdin)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A failed run: non-zero exit, exactly one line on stderr, starting `error: `, no panic.
fn one_error(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "a panic: {err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].starts_with("error: "), "{err}");
    if out.status.code() == Some(2) && lines.len() > 1 {
        // A malformed command line clap found: its whole message (what is wrong, the usage,
        // --help).
        assert!(err.contains("--help"), "{err}");
        return err;
    }
    assert_eq!(lines.len(), 1, "one error line, got: {err}");
    lines[0].to_owned()
}

fn exercise(t: &Target, tmp: &Path) {
    t.ok(&["init"]);
    t.ok(&["init"]); // idempotent

    // append one event; the output is the recorded event.
    let first = lines(&t.ok(&["append", "order-1", "shop.Placed", r#"{"total": 12}"#]));
    assert_eq!(first.len(), 1);
    let e = &first[0];
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
        assert!(e.get(key).is_some(), "recorded JSON has {key}: {e}");
    }
    assert_eq!(e["version"], 0);
    assert_eq!(e["namespace"], "shop");
    assert_eq!(e["type"], "Placed");
    assert_eq!(e["data"]["total"], 12);
    let id = "0190a5d6-1f57-7e2e-9d1a-6b0f6c7e1a01";
    let paid = lines(&t.ok(&[
        "append",
        "order-1",
        "shop.Paid",
        "--id",
        id,
        "--expected-version",
        "0",
    ]));
    assert_eq!(paid[0]["id"], id);
    assert_eq!(paid[0]["version"], 1);
    // The same id and content again: nothing new, the original reported.
    let again = lines(&t.ok(&[
        "append",
        "order-1",
        "shop.Paid",
        "--id",
        id,
        "--expected-version",
        "0",
    ]));
    assert_eq!(again[0]["position"], paid[0]["position"]);

    // append --ndjson: consecutive lines of a stream together.
    let input = b"{\"stream\":\"cart-1\",\"namespace\":\"shop\",\"type\":\"Added\",\"data\":{\"sku\":\"a\"}}\n\n{\"stream\":\"cart-1\",\"namespace\":\"shop\",\"type\":\"Added\",\"data\":{\"sku\":\"b\"},\"context\":{\"action\":\"import\",\"subject\":{\"user\":7}}}\n{\"stream\":\"cart-2\",\"namespace\":\"shop\",\"type\":\"Added\"}\n";
    let out = t.run_with(&["append", "--ndjson"], input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added = lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(added.len(), 3);
    assert_eq!(
        (added[1]["stream"].as_str(), added[1]["version"].as_u64()),
        (Some("cart-1"), Some(1))
    );
    assert_eq!(added[1]["context"]["subject"]["user"], 7);

    // read: the global log, a stream, backward, from, limit, formats.
    let all = lines(&t.ok(&["read", "--format", "ndjson"]));
    assert_eq!(all.len(), 5);
    let positions: Vec<&str> = all
        .iter()
        .map(|e| e["position"].as_str().unwrap())
        .collect();
    let after_second = lines(&t.ok(&["read", "--after", positions[1], "--format", "ndjson"]));
    assert_eq!(
        after_second,
        all[2..].to_vec(),
        "--after takes a checkpoint"
    );
    let limited = lines(&t.ok(&["read", "--limit", "2", "--format", "ndjson"]));
    assert_eq!(limited, all[..2].to_vec());
    let backward = lines(&t.ok(&["read", "--backward", "--format", "ndjson"]));
    assert_eq!(backward, all.iter().rev().cloned().collect::<Vec<_>>());
    let backward_before = lines(&t.ok(&[
        "read",
        "--backward",
        "--before",
        positions[2],
        "--format",
        "ndjson",
    ]));
    assert_eq!(backward_before, vec![all[1].clone(), all[0].clone()]);
    let stream = lines(&t.ok(&["read", "order-1", "--format", "ndjson"]));
    assert_eq!(
        stream
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    let stream_back = lines(&t.ok(&["read", "order-1", "--backward", "--format", "ndjson"]));
    assert_eq!(stream_back[0]["version"], 1);
    let from_version = lines(&t.ok(&["read", "order-1", "--from", "1", "--format", "ndjson"]));
    assert_eq!(from_version.len(), 1);
    let json: Value = serde_json::from_str(&t.ok(&["read", "--format", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 5);
    let table = t.ok(&["read", "--format", "table"]);
    assert!(
        table.starts_with("POSITION") && table.contains("shop.Placed") && table.contains("order-1"),
        "{table}"
    );

    // tail: from the beginning with a limit, and with filters.
    let tailed = lines(&t.ok(&["tail", "--from", "0", "--limit", "3"]));
    assert_eq!(tailed, all[..3].to_vec());
    let carts = lines(&t.ok(&[
        "tail",
        "--from",
        "0",
        "--stream",
        "cart-1",
        "--idle-exit",
        "0.5",
    ]));
    assert_eq!(carts.len(), 2);
    let typed = lines(&t.ok(&[
        "tail",
        "--from",
        "0",
        "--namespace",
        "shop",
        "--type",
        "Paid",
        "--idle-exit",
        "0.5",
    ]));
    assert_eq!(typed.len(), 1);
    // Live: a tail in one process sees appends made by another.
    let live = t
        .cmd(&["tail", "--limit", "2", "--idle-exit", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    t.ok(&["append", "live", "shop.Live", r#"{"n": 1}"#]);
    t.ok(&["append", "live", "shop.Live", r#"{"n": 2}"#]);
    let out = live.wait_with_output().unwrap();
    assert_eq!(printed_ns(&out), vec![1, 2]);

    // stats
    let stats: Value = serde_json::from_str(&t.ok(&["stats", "--format", "json"])).unwrap();
    assert_eq!(stats["events"], 7);
    assert_eq!(stats["streams"], 4);
    assert!(stats["size_bytes"].as_u64().unwrap() > 0);
    let types: Vec<(String, u64)> = stats["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                format!(
                    "{}.{}",
                    t["namespace"].as_str().unwrap(),
                    t["type"].as_str().unwrap()
                ),
                t["events"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("shop.Added".into(), 3),
            ("shop.Live".into(), 2),
            ("shop.Paid".into(), 1),
            ("shop.Placed".into(), 1)
        ]
    );
    let human = t.ok(&["stats", "--format", "table"]);
    assert!(
        human.contains("events        7") && human.contains("head"),
        "{human}"
    );

    // export, then import into a fresh SQLite store twice: the second import stores nothing.
    let exported = t.ok(&["export"]);
    assert_eq!(lines(&exported).len(), 7);
    let file = tmp.join("export.ndjson");
    t.ok(&["export", "--output", file.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), exported);
    let copy = Target {
        args: vec![
            "--url".into(),
            format!("sqlite://{}", tmp.join("copy.db").display()),
        ],
    };
    let out = copy.run(&["import", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("imported 7 events (0 already present)"));
    let out = copy.run(&["import", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("imported 0 events (7 already present)"));
    let copied = lines(&copy.ok(&["export"]));
    let original = lines(&exported);
    for (a, b) in copied.iter().zip(&original) {
        for key in [
            "id",
            "stream",
            "version",
            "namespace",
            "type",
            "data",
            "context",
        ] {
            assert_eq!(a[key], b[key], "import keeps {key}");
        }
    }

    // Misuse: one clear line, non-zero exit, nothing written.
    let conflict =
        one_error(&t.run(&["append", "order-1", "shop.Late", "--expected-version", "0"]));
    assert!(
        conflict.contains("expected version 0, actual version 1"),
        "{conflict}"
    );
    let bad_json = one_error(&t.run(&["append", "order-1", "shop.X", "{not json"]));
    assert!(
        bad_json.contains("DATA_JSON") && bad_json.contains("not valid JSON"),
        "{bad_json}"
    );
    let not_object = one_error(&t.run(&["append", "order-1", "shop.X", "[1, 2]"]));
    assert!(
        not_object.contains("events[0].data") && not_object.contains("JSON object"),
        "{not_object}"
    );
    let bad_type = one_error(&t.run(&["append", "order-1", "shop.has space"]));
    assert!(bad_type.contains("events[0].type"), "{bad_type}");
    let no_dot = one_error(&t.run(&["append", "order-1", "nodot"]));
    assert!(no_dot.contains("NAMESPACE.TYPE"), "{no_dot}");
    let bad_stream = one_error(&t.run(&["append", "has space", "shop.X"]));
    assert!(bad_stream.contains("invalid stream"), "{bad_stream}");
    let bad_expected = one_error(&t.run(&["append", "s", "shop.X", "--expected-version", "soon"]));
    assert!(
        bad_expected.contains("--expected-version"),
        "{bad_expected}"
    );
    let bad_cp = one_error(&t.run(&["read", "--after", "12:ab"]));
    assert!(bad_cp.contains("not a checkpoint"), "{bad_cp}");
    let bad_version = one_error(&t.run(&["read", "order-1", "--from", "x"]));
    assert!(
        bad_version.contains("not a stream version"),
        "{bad_version}"
    );
    let bad_idle = one_error(&t.run(&["tail", "--idle-exit=-1"]));
    assert!(bad_idle.contains("--idle-exit"), "{bad_idle}");
    // NDJSON errors name the line and say what was committed.
    let input = b"{\"stream\":\"n-1\",\"namespace\":\"shop\",\"type\":\"A\"}\n{\"stream\":\"n-2\",\"namespace\":\"shop\",\"type\":\"A\"}\n{\"stream\":\"n-2\",\"namespace\":\"shop\",\"type\":\"A\",\"data\":[]}\n";
    let e = one_error(&t.run_with(&["append", "--ndjson"], input));
    assert!(
        e.contains("line 3") && e.contains("lines 1-1 were committed"),
        "{e}"
    );
    assert_eq!(
        lines(&t.ok(&["read", "n-1", "--format", "ndjson"])).len(),
        1
    );
    assert!(
        lines(&t.ok(&["read", "n-2", "--format", "ndjson"])).is_empty(),
        "the refused batch stored nothing"
    );
    let e = one_error(&t.run_with(
        &["append", "--ndjson"],
        b"{\"stream\":\"q\",\"namespace\":\"shop\",\"type\":\"A\"}\nnot json\n",
    ));
    assert!(
        e.contains("line 2") && e.contains("lines 1-1 were committed"),
        "the lines before a malformed one are committed: {e}"
    );
    let e = one_error(&t.run_with(
        &["append", "--ndjson"],
        b"{\"stream\":\"q\",\"namespace\":\"shop\",\"type\":\"A\",\"colour\":1}\n",
    ));
    assert!(e.contains("line 1") && e.contains("colour"), "{e}");
    let bad_file = tmp.join("bad.ndjson");
    // Two lines of order-1, one of cart-1, then a line that is not UTF-8: the lines before it
    // are committed (in one multi-stream transaction), then the import stops.
    let mut bytes = exported
        .lines()
        .take(3)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes();
    bytes.extend_from_slice(b"\n\xff\xfe not utf-8\n");
    std::fs::write(&bad_file, bytes).unwrap();
    let third = Target {
        args: vec![
            "--url".into(),
            format!("sqlite://{}", tmp.join("third.db").display()),
        ],
    };
    let e = one_error(&third.run(&["import", bad_file.to_str().unwrap()]));
    assert!(
        e.contains("line 4")
            && e.contains("UTF-8")
            && e.contains("lines 1-3 were committed (3 events stored"),
        "{e}"
    );
    let third_log = lines(&third.ok(&["export"]));
    assert_eq!(
        third_log.len(),
        3,
        "exactly the lines said to be committed are stored"
    );
    let e = one_error(&t.run(&["import", tmp.join("missing.ndjson").to_str().unwrap()]));
    assert!(e.contains("cannot open"), "{e}");
    let stats_after: Value = serde_json::from_str(&t.ok(&["stats", "--format", "json"])).unwrap();
    assert_eq!(
        stats_after["events"], 9,
        "only the lines said to be committed (n-1's and q's) were added by the failures"
    );
}

#[test]
fn every_subcommand_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    exercise(&Target::sqlite(tmp.path()), tmp.path());
}

#[test]
fn every_subcommand_on_postgres() {
    let Some((t, schema, rt, admin)) = Target::postgres() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Before init, commands say what to do.
    let e = one_error(&t.run(&["stats"]));
    assert!(e.contains("event-store init"), "{e}");
    let outcome = std::panic::catch_unwind(|| exercise(&t, tmp.path()));
    rt.block_on(admin.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
        .unwrap();
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn connection_mistakes_are_one_line() {
    let run = |url: &str| {
        Command::new(BIN)
            .args(["--url", url, "stats"])
            .output()
            .unwrap()
    };
    let e = one_error(&run("mysql://root:hunter2@127.0.0.1/db"));
    assert!(
        e.contains("unknown scheme `mysql`") && !e.contains("hunter2"),
        "{e}"
    );
    let e = one_error(&run("events.db"));
    assert!(e.contains("sqlite://PATH"), "{e}");
    let e = one_error(&run("postgres://app:hunter2@127.0.0.1:1/db"));
    assert!(
        e.contains("cannot connect to PostgreSQL") && !e.contains("hunter2"),
        "{e}"
    );
    let e = one_error(&run("postgres://app@127.0.0.1:5432/db?sslmode=nonsense"));
    assert!(e.contains("url"), "{e}");
    let e = one_error(
        &Command::new(BIN)
            .args(["read", "--limit", "many"])
            .output()
            .unwrap(),
    );
    assert!(e.contains("--limit") && e.contains("--help"), "{e}");
    let e = one_error(&Command::new(BIN).args(["frobnicate"]).output().unwrap());
    assert!(e.contains("frobnicate"), "{e}");
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("Usage"));
    let e = one_error(&run("sqlite:///nonexistent-dir/sub/events.db"));
    assert!(
        e.contains("no event store at /nonexistent-dir/sub/events.db"),
        "{e}"
    );
}

#[test]
fn demo_runs_on_a_fresh_file() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "concurrent writers",
        "refused: version conflict",
        "re-decided on the new state",
        "cold:",
        "warm:",
        "gives the same: equal",
        "agrees with the aggregates for 22 of 22",
        "1 refused, 0 on hand",
    ] {
        assert!(
            report.contains(needle),
            "the report lacks `{needle}`:\n{report}"
        );
    }
}

/// A writer killed with SIGKILL in the middle of its batches leaves a consistent file in which
/// every batch is all or nothing.
#[test]
fn sqlite_survives_a_killed_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Target::sqlite(tmp.path());
    t.ok(&["init"]);
    const PER_STREAM: usize = 500;
    let mut input = Vec::new();
    for s in 0..200 {
        for i in 0..PER_STREAM {
            let line = json!({"stream": format!("crash-{s}"), "namespace": "crash", "type": "Row", "data": {"i": i, "pad": "x".repeat(200)}});
            input.extend_from_slice(line.to_string().as_bytes());
            input.push(b'\n');
        }
    }
    for round in 0..3u64 {
        let mut child = t
            .cmd(&["append", "--ndjson"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feeder = {
            let input = input.clone();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            })
        };
        std::thread::sleep(Duration::from_millis(300 + round * 200));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let _ = feeder.join();
        // The file opens, passes SQLite's integrity check, and every batch is whole.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = event_store_sqlite::SqliteStore::open(tmp.path().join("events.db"))
                .await
                .unwrap();
            let es = event_store::EventStore::from_store(store.clone());
            for s in 0..200 {
                let n = es
                    .stream_version(&format!("crash-{s}"))
                    .await
                    .unwrap()
                    .map_or(0, |v| v + 1) as usize;
                assert_eq!(
                    n % PER_STREAM,
                    0,
                    "stream crash-{s} holds {n} events: a batch was cut"
                );
            }
        });
        let conn = rusqlite::Connection::open(tmp.path().join("events.db")).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "SQLite's integrity check");
    }
    let stats: Value = serde_json::from_str(&t.ok(&["stats", "--format", "json"])).unwrap();
    eprintln!("after 3 kills the file holds {} events", stats["events"]);
    // And the store accepts writes again.
    t.ok(&["append", "after-crash", "crash.Ok"]);
}

/// An import of interleaved streams killed with `SIGKILL` leaves whole windows of the file's
/// first lines, and importing the file again stores exactly the rest: every line once, each
/// stream in file order.
#[test]
fn import_resumes_after_a_kill() {
    const LINES: usize = 30_000;
    let tmp = tempfile::tempdir().unwrap();
    let t = Target::sqlite(tmp.path());
    t.ok(&["init"]);
    let file = tmp.path().join("interleaved.ndjson");
    let id = |i: usize| uuid::Uuid::from_u128(0xfeed_0000_0000 + i as u128);
    let mut input = String::new();
    for i in 0..LINES {
        let line = json!({"id": id(i), "stream": format!("mix-{}", i % 300), "namespace": "mix", "type": "Row", "data": {"i": i, "pad": "x".repeat(200)}});
        input.push_str(&line.to_string());
        input.push('\n');
    }
    std::fs::write(&file, input).unwrap();
    let stored = || -> u64 {
        let out = t.run(&["stats", "--format", "json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["events"].as_u64())
            .unwrap_or(0)
    };
    let mut child = t
        .cmd(&["import", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stored() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let before = lines(&t.ok(&["export"]));
    assert!(
        !before.is_empty() && before.len() < LINES,
        "the kill landed in the middle of the import ({} events stored)",
        before.len()
    );
    assert_eq!(
        before.len() % 1000,
        0,
        "whole windows of 1 000 lines, never part of one ({} events)",
        before.len()
    );
    let prefix: Vec<String> = (0..before.len()).map(|i| id(i).to_string()).collect();
    let got: Vec<String> = before
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, prefix, "the file's first lines, in order");
    let out = t.run(&["import", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        said.contains(&format!(
            "imported {} events ({} already present)",
            LINES - before.len(),
            before.len()
        )),
        "{said}"
    );
    let after = lines(&t.ok(&["export"]));
    assert_eq!(after.len(), LINES);
    let mut next: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for (i, e) in after.iter().enumerate() {
        assert_eq!(
            e["id"].as_str().unwrap(),
            id(i).to_string(),
            "line {i} once, in order"
        );
        let stream = e["stream"].as_str().unwrap().to_owned();
        let v = next.entry(stream).or_insert(0);
        assert_eq!(e["version"].as_u64(), Some(*v), "each stream in file order");
        *v += 1;
    }
}

/// `publish` relays the log to RabbitMQ and `subscribe` prints what a group receives; `stats`
/// shows the relay's checkpoint and lag.
#[test]
fn publish_and_subscribe_through_rabbitmq() {
    let Some(b) = BrokerTest::new() else {
        return;
    };
    let (t, exchange) = (&b.target, b.exchange.as_str());
    let broker = ["--amqp", b.amqp.as_str(), "--exchange", exchange];
    t.ok(&["append", "o-1", "shop.Placed", r#"{"n": 1}"#]);
    t.ok(&["append", "o-1", "shop.Cancelled", r#"{"n": 2}"#]);
    // Both serve their metrics on a port of their own.
    let with_metrics = [&broker[..], &["--metrics", "127.0.0.1:0"]].concat();
    let (subscriber, mut relay) = printer_and_relay(t, &with_metrics);
    let mut relay_err = std::io::BufReader::new(relay.stderr.take().unwrap());
    let metrics_at = loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut relay_err, &mut line).unwrap() > 0);
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            break rest.trim().trim_end_matches("/metrics").to_owned();
        }
    };
    std::thread::sleep(Duration::from_millis(500));
    t.ok(&["append", "o-2", "shop.Placed", r#"{"n": 3}"#]);
    let out = subscriber.wait_with_output().unwrap();
    let published = format!("event_store_relay_published_total{{exchange=\"{exchange}\"}} 3");
    let mut scraped = String::new();
    for _ in 0..100 {
        scraped = http_get(&metrics_at, "/metrics");
        if scraped.contains(&published) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(scraped.contains(&published), "{scraped}");
    assert!(
        scraped.contains(&format!(
            "event_store_relay_lag_seconds{{exchange=\"{exchange}\"}}"
        )),
        "{scraped}"
    );
    relay.kill().unwrap();
    let _ = relay.wait();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("metrics on http://127.0.0.1:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        printed_ns(&out),
        vec![1, 3],
        "only the bound type, in order"
    );
    let stats: Value = serde_json::from_str(&t.ok(&["stats", "--format", "json"])).unwrap();
    let follower = &stats["checkpoints"][0];
    // The checkpoint names the destination: broker, virtual host and exchange.
    let name = follower["name"].as_str().unwrap();
    assert!(
        name.starts_with("amqp-relay:") && name.ends_with(&format!("/%2F/{exchange}")),
        "{name}"
    );
    assert_eq!(follower["lag"], 0);
    let mut bad = vec!["subscribe", "--group", "printer", "--bind", "no-dot"];
    bad.extend(broker);
    let e = one_error(&t.run(&bad));
    assert!(e.contains("--bind"), "{e}");
}

/// `subscribe --quorum` declares the group's queues as quorum queues and receives as before.
#[test]
fn subscribe_on_quorum_queues() {
    let Some(b) = BrokerTest::new() else {
        return;
    };
    let (t, exchange, rt, conn) = (&b.target, b.exchange.as_str(), &b.rt, &b.conn);
    let broker = ["--amqp", b.amqp.as_str(), "--exchange", exchange];
    t.ok(&["append", "o-1", "shop.Placed", r#"{"n": 1}"#]);
    t.ok(&["append", "o-2", "shop.Placed", r#"{"n": 2}"#]);
    let quorum = [&broker[..], &["--quorum"]].concat();
    let mut sub_args = vec![
        "subscribe",
        "--group",
        "printer",
        "--limit",
        "2",
        "--idle-exit",
        "30",
    ];
    sub_args.extend(&quorum);
    let subscriber = t
        .cmd(&sub_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let queue = format!("{exchange}.printer");
    // The group's queue is a quorum queue: declaring it as a plain classic one is refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let ch = rt.block_on(conn.create_channel()).unwrap();
        let declared = rt.block_on(ch.queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..lapin::options::QueueDeclareOptions::default()
            },
            lapin::types::FieldTable::default(),
        ));
        if declared.is_ok() {
            let ch = rt.block_on(conn.create_channel()).unwrap();
            break rt
                .block_on(ch.queue_declare(
                    queue.as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        durable: true,
                        ..lapin::options::QueueDeclareOptions::default()
                    },
                    lapin::types::FieldTable::default(),
                ))
                .is_err();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the group's queue was declared"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(refused, "the group's queue is not a plain classic queue");
    let mut pub_args = vec!["publish"];
    pub_args.extend(broker);
    let mut relay = t
        .cmd(&pub_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = subscriber.wait_with_output().unwrap();
    relay.kill().unwrap();
    let _ = relay.wait();
    assert_eq!(printed_ns(&out), vec![1, 2]);
}

/// `GET path` on `address` (HTTP/1.1, closed after): the body.
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned())
}

/// The test broker (`EVENT_STORE_TEST_AMQP`): its URL, a runtime and a connection, or `None`
/// (loudly) when it is unreachable outside CI.
fn rabbit() -> Option<(String, tokio::runtime::Runtime, lapin::Connection)> {
    let amqp = std::env::var("EVENT_STORE_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let rt = common::runtime();
    let reachable = rt.block_on(lapin::Connection::connect(
        &amqp,
        lapin::ConnectionProperties::default(),
    ));
    let conn = event_store_testkit::require_service("RabbitMQ (EVENT_STORE_TEST_AMQP)", reachable)?;
    Some((amqp, rt, conn))
}

/// Starts `subscribe` (group `printer`, bound to `shop.Placed`, two events then exit), then,
/// once its queue exists, the relay (`publish`), both with `broker`'s flags.
fn printer_and_relay(t: &Target, broker: &[&str]) -> (std::process::Child, std::process::Child) {
    let mut sub_args = vec![
        "subscribe",
        "--group",
        "printer",
        "--bind",
        "shop.Placed",
        "--limit",
        "2",
        "--idle-exit",
        "30",
    ];
    sub_args.extend(broker);
    let subscriber = t
        .cmd(&sub_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut pub_args = vec!["publish"];
    pub_args.extend(broker);
    let relay = t
        .cmd(&pub_args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (subscriber, relay)
}

/// The `data.n` of each NDJSON event a command that succeeded printed.
fn printed_ns(out: &Output) -> Vec<i64> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .map(|e| e["data"]["n"].as_i64().unwrap())
        .collect()
}

/// A SQLite store and an exchange of its own on the test broker; the group `printer`'s queues,
/// the relay's and the exchanges are deleted on drop.
struct BrokerTest {
    amqp: String,
    rt: tokio::runtime::Runtime,
    conn: lapin::Connection,
    exchange: String,
    target: Target,
    _dir: tempfile::TempDir,
}

impl BrokerTest {
    fn new() -> Option<Self> {
        let (amqp, rt, conn) = rabbit()?;
        let dir = tempfile::tempdir().unwrap();
        Some(Self {
            amqp,
            rt,
            conn,
            exchange: format!(
                "es_cli_{}",
                &uuid::Uuid::now_v7().simple().to_string()[20..]
            ),
            target: Target::sqlite(dir.path()),
            _dir: dir,
        })
    }
}

impl Drop for BrokerTest {
    fn drop(&mut self) {
        let x = &self.exchange;
        let queues = [
            format!("{x}.printer"),
            format!("{x}.printer.dead-letter"),
            format!("{x}.replay-requests"),
        ];
        self.rt
            .block_on(remove_broker_names(&self.conn, x, &queues));
    }
}

/// Deletes a test's queues, then its exchange and dead-letter exchange.
async fn remove_broker_names(conn: &lapin::Connection, exchange: &str, queues: &[String]) {
    let ch = conn.create_channel().await.unwrap();
    for q in queues {
        let _ = ch
            .queue_delete(
                q.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    for x in [exchange.to_owned(), format!("{exchange}.dead-letter")] {
        let _ = ch
            .exchange_delete(
                x.as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

/// `publish --legacy` and `subscribe --legacy` speak the original wire format: the relay's
/// events and an original service's message both reach a subscriber's per-type queue.
#[test]
fn publish_and_subscribe_in_the_original_format() {
    let Some((amqp, rt, conn)) = rabbit() else {
        return;
    };
    let tag = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let exchange = format!("es_cli_{tag}");
    let service = format!("svc{tag}");
    let tmp = tempfile::tempdir().unwrap();
    let t = Target::sqlite(tmp.path());
    let broker = [
        "--amqp",
        amqp.as_str(),
        "--exchange",
        exchange.as_str(),
        "--legacy",
        service.as_str(),
    ];
    t.ok(&["append", "o-1", "shop.Placed", r#"{"n": 1}"#]);
    let (subscriber, mut relay) = printer_and_relay(&t, &broker);
    // An original service's message: legacy `type` only, a null subject, a time with a space.
    let original = json!({
        "id": uuid::Uuid::now_v7(),
        "data": {"type": "shop.Placed", "n": 9},
        "context": {"action": null, "subject": null, "time": "2019-03-04 10:20:30"},
    });
    rt.block_on(async {
        let ch = conn.create_channel().await.unwrap();
        ch.basic_publish(
            exchange.as_str().into(),
            "shop.Placed".into(),
            lapin::options::BasicPublishOptions::default(),
            original.to_string().as_bytes(),
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap();
    });
    let out = subscriber.wait_with_output().unwrap();
    relay.kill().unwrap();
    let _ = relay.wait();
    rt.block_on(remove_broker_names(
        &conn,
        &exchange,
        &[
            format!("{service}-shop.Placed"),
            format!("{service}-_eventstore.EventReplayRequested"),
            format!("{exchange}.printer.dead-letter"),
            format!("{exchange}.replay-requests"),
            format!("{exchange}.replay-requests.dead-letter"),
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<(i64, String, String)> = lines(&String::from_utf8(out.stdout).unwrap())
        .iter()
        .map(|e| {
            (
                e["data"]["n"].as_i64().unwrap(),
                e["stream"].as_str().unwrap().to_owned(),
                e["context"]["time"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].0, got[0].1.as_str()),
        (1, "o-1"),
        "the relay's event keeps its stream"
    );
    assert_eq!(
        (got[1].0, got[1].1.as_str(), got[1].2.as_str()),
        (9, "", "2019-03-04T10:20:30Z"),
        "the original service's event, cleaned"
    );
}

/// `bench --quick` runs and writes its figures in the documented JSON shape.
#[test]
fn bench_quick_writes_its_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let json_path = tmp.path().join("bench.json");
    let out = Command::new(BIN)
        .args([
            "bench",
            "--quick",
            "--only",
            "memory,sqlite",
            "--json",
            json_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert!(figures.len() >= 14, "{figures:?}");
    for f in &figures {
        for key in [
            "workload", "backend", "value", "unit", "baseline", "ratio", "target",
        ] {
            assert!(f.get(key).is_some(), "{key} in {f}");
        }
        assert!(f["value"].as_f64().unwrap() > 0.0);
    }
    let sqlite_batch = figures
        .iter()
        .find(|f| f["backend"] == "sqlite" && f["workload"] == "append 100 events/call")
        .unwrap();
    assert!(
        sqlite_batch["baseline"].as_f64().unwrap() > 0.0
            && sqlite_batch["ratio"].as_f64().unwrap() > 0.0
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("| workload |"), "{table}");
}

#[test]
fn init_creates_the_optional_indexes_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let e = one_error(&Target::sqlite(tmp.path()).run(&["init", "--index", "time"]));
    assert!(e.contains("--index is a PostgreSQL setting"), "{e}");
    let e = one_error(&Target::sqlite(tmp.path()).run(&["init", "--index", "colour"]));
    assert!(e.contains("colour") && e.contains("--index"), "{e}");

    let Some((t, schema, rt, admin)) = Target::postgres() else {
        return;
    };
    let indexes = || -> Vec<String> {
        rt.block_on(admin.query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND indexname IN ('events_subject', 'events_time') ORDER BY 1",
            &[&schema],
        ))
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(t.run(&["init"]).status.success());
        assert!(indexes().is_empty(), "none by default");
        assert!(t.run(&["init", "--index", "subject,time"]).status.success());
        assert_eq!(indexes(), ["events_subject", "events_time"]);
        assert!(t.run(&["init"]).status.success());
        assert_eq!(
            indexes(),
            ["events_subject", "events_time"],
            "never dropped"
        );
    }));
    rt.block_on(admin.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
        .unwrap();
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}
