//! What an adversarial run of the release CLI broke, each driven through the real binary: no
//! panic (exit 101) on out-of-range durations or over-long AMQP names, a refusal the broker will
//! repeat is an error at once, one `error:` line without the drivers' own log lines, NDJSON that
//! starts with a byte-order mark, ids that repeat when asked (`--derive-ids`), and the rules for
//! numbers, duplicate keys and invisible characters in stream ids.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_event-store");

fn cmd(db: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--url")
        .arg(format!("sqlite://{}", db.display()))
        .args(args)
        .env_remove("EVENT_STORE_URL")
        .env_remove("EVENT_STORE_LOG");
    c
}

fn run(db: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = cmd(db, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// A failure: the given exit code, one `error:` line, no panic.
fn one_error(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "exit status; stderr: {err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].starts_with("error: "), "{err}");
    if code == 2 {
        // A malformed command line: clap's whole message (what is wrong, the usage, --help).
        return err;
    }
    assert_eq!(lines.len(), 1, "one line: {err}");
    lines[0].to_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn out_of_range_durations_are_usage_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    ok(&run(&db, &["init"], b""));
    for value in ["1e20", "1e19", "-1", "NaN", "inf", "soon"] {
        let flag = format!("--idle-exit={value}");
        for sub in [&["tail"][..], &["subscribe", "--group", "g"][..]] {
            let args: Vec<&str> = sub.iter().copied().chain([flag.as_str()]).collect();
            let e = one_error(&run(&db, &args, b""), 2);
            assert!(e.contains("--idle-exit"), "{args:?}: {e}");
        }
    }
    // The largest accepted value works (and is no deadline in practice).
    let out = run(
        &db,
        &["tail", "--idle-exit", "1000000000", "--limit", "0"],
        b"",
    );
    ok(&out);
}

#[test]
fn over_long_or_reserved_amqp_names_are_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    let exchange = "x".repeat(200);
    let group = "g".repeat(50);
    let e = one_error(
        &run(
            &db,
            &["subscribe", "--exchange", &exchange, "--group", &group],
            b"",
        ),
        1,
    );
    assert!(e.contains("255"), "{e}");
    let e = one_error(
        &run(&db, &["subscribe", "--group", "replay-requests"], b""),
        1,
    );
    assert!(e.contains("relay"), "{e}");
    ok(&run(&db, &["init"], b""));
    // amq.* belongs to the broker: refused at once instead of retried for ever.
    let e = one_error(&run(&db, &["publish", "--exchange", "amq.fanout"], b""), 1);
    assert!(e.contains("amq."), "{e}");
}

#[test]
fn a_refused_login_is_one_line_without_driver_logs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    let url = std::env::var("EVENT_STORE_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
        .replacen("guest:guest@", "guest:not-the-password@", 1);
    let out = run(
        &db,
        &[
            "subscribe",
            "--amqp",
            &url,
            "--group",
            "g",
            "--idle-exit",
            "1",
        ],
        b"",
    );
    let e = one_error(&out, 1);
    assert!(!e.contains("not-the-password"), "{e}");
}

#[test]
fn ndjson_with_a_byte_order_mark_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    ok(&run(&db, &["init"], b""));
    let file = dir.path().join("bom.ndjson");
    std::fs::write(
        &file,
        "\u{feff}{\"stream\":\"s\",\"namespace\":\"n\",\"type\":\"T\"}\n",
    )
    .unwrap();
    ok(&run(&db, &["import", file.to_str().unwrap()], b""));
    assert_eq!(ok(&run(&db, &["read", "s"], b"")).lines().count(), 1);
}

#[test]
fn lines_without_ids_say_so_and_derive_ids_makes_them_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    ok(&run(&db, &["init"], b""));
    let file = dir.path().join("no-ids.ndjson");
    // Two identical lines are two events; they must stay two.
    let line = r#"{"stream":"c","namespace":"n","type":"Incremented","data":{"by":1}}"#;
    std::fs::write(&file, format!("{line}\n{line}\n")).unwrap();
    let path = file.to_str().unwrap();

    let first = run(&db, &["import", path], b"");
    ok(&first);
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(said.contains("2 lines had no id"), "{said}");
    assert!(said.contains("--derive-ids"), "{said}");

    let derived = run(&db, &["import", "--derive-ids", path], b"");
    ok(&derived);
    assert!(
        String::from_utf8_lossy(&derived.stderr).contains("imported 2 events (0 already present)")
    );
    let again = run(&db, &["import", "--derive-ids", path], b"");
    ok(&again);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("imported 0 events (2 already present)"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // append --ndjson derives the same ids: the first of these lines is the file's first.
    let input = format!("{line}\n{line}\n{line}\n");
    let out = ok(&run(
        &db,
        &["append", "--ndjson", "--derive-ids"],
        input.as_bytes(),
    ));
    assert_eq!(
        out.lines().count(),
        1,
        "only the third occurrence is new: {out}"
    );
    let out = ok(&run(
        &db,
        &["append", "--ndjson", "--derive-ids"],
        input.as_bytes(),
    ));
    assert_eq!(out.lines().count(), 0, "nothing new stored: {out}");
    assert_eq!(ok(&run(&db, &["read", "c"], b"")).lines().count(), 5);
}

#[test]
fn numbers_keys_and_invisible_characters_follow_one_rule() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    ok(&run(&db, &["init"], b""));
    // Integers beyond 64 bits and duplicate keys: refused, naming where.
    let e = one_error(
        &run(
            &db,
            &["append", "s", "n.T", r#"{"n": 123456789012345678901234}"#],
            b"",
        ),
        2,
    );
    assert!(e.contains("DATA_JSON.n") && e.contains("64 bits"), "{e}");
    let e = one_error(
        &run(&db, &["append", "s", "n.T", r#"{"k": 1, "k": 2}"#], b""),
        2,
    );
    assert!(e.contains("DATA_JSON.k") && e.contains("twice"), "{e}");
    let e = one_error(
        &run(
            &db,
            &["append", "--ndjson"],
            br#"{"stream":"s","namespace":"n","type":"T","data":{"a":{"b":[1,18446744073709551616]}}}"#,
        ),
        1,
    );
    assert!(e.contains("line 1") && e.contains("data.a.b[1]"), "{e}");
    // -0 reads back as 0.0; 1.0 with the same id as 1 is a retry.
    let id = "0190a5d6-1f57-7e2e-9d1a-6b0f6c7e1a02";
    let first = ok(&run(
        &db,
        &["append", "num", "n.T", r#"{"z": -0, "n": 1}"#, "--id", id],
        b"",
    ));
    assert!(first.contains(r#""z":0.0"#), "{first}");
    ok(&run(
        &db,
        &["append", "num", "n.T", r#"{"z": 0, "n": 1.0}"#, "--id", id],
        b"",
    ));
    assert_eq!(ok(&run(&db, &["read", "num"], b"")).lines().count(), 1);
    // Invisible characters cannot make a second stream that looks like the first.
    for stream in ["order-1\u{200b}", "\u{202e}order-1", "\u{feff}order-1"] {
        let e = one_error(&run(&db, &["append", stream, "n.T"], b""), 1);
        assert!(e.contains("stream"), "{e}");
    }
}
