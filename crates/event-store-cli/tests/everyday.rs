//! The CLI as a new user meets it (issue 15): each test is one thing that broke or surprised,
//! driven through the real binary on SQLite files in a temporary directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_event-store");

/// The binary with a clean environment: no store URL, no log filter, no terminal width.
fn bin() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("EVENT_STORE_URL")
        .env_remove("EVENT_STORE_SCHEMA")
        .env_remove("EVENT_STORE_LOG")
        .env_remove("COLUMNS");
    c
}

/// A SQLite store path in a fresh directory.
struct Store {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        Self { dir, path }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.arg("--url").arg(self.url()).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    fn run_with(&self, args: &[&str], stdin: &[u8]) -> Output {
        common::output_with_stdin(&mut self.cmd(args), stdin)
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(&self.run(args))
    }

    /// `init`, then one event on each of `streams`.
    fn seeded(streams: &[&str]) -> Self {
        let s = Self::new();
        s.ok(&["init"]);
        for stream in streams {
            s.ok(&["append", stream, "shop.Placed", r#"{"total": 1}"#]);
        }
        s
    }

    fn events(&self) -> Vec<Value> {
        lines(&self.ok(&["read", "--format", "ndjson"]))
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure with exit `code` and a message on stderr; returns the message.
fn fails(out: &Output, code: i32) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A failure that is one line.
fn one_line(out: &Output, code: i32) -> String {
    let err = fails(out, code);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err.trim_end().to_owned()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ndjson_line(stream: &str, event_type: &str) -> String {
    format!(r#"{{"stream":"{stream}","namespace":"shop","type":"{event_type}"}}"#)
}

// 1. Importing an export that grew since the copy was made stores the new events.
#[test]
fn a_grown_export_imports_its_new_events() {
    let source = Store::seeded(&["order-1", "order-2"]);
    source.ok(&["append", "order-2", "shop.Paid"]);
    let first = source.dir().join("first.ndjson");
    std::fs::write(&first, source.ok(&["export"])).unwrap();
    let copy = Store::new();
    copy.ok(&["init"]);
    copy.ok(&["import", first.to_str().unwrap()]);
    // One more event on the stream written last, so the new line follows the old ones of its
    // stream in the file (the shape that was refused as a collision).
    source.ok(&["append", "order-2", "shop.Shipped"]);
    source.ok(&["append", "order-3", "shop.Placed"]);
    let second = source.dir().join("second.ndjson");
    std::fs::write(&second, source.ok(&["export"])).unwrap();
    let out = copy.run(&["import", second.to_str().unwrap()]);
    ok(&out);
    assert!(
        stderr(&out).contains("imported 2 events (3 already present)"),
        "{}",
        stderr(&out)
    );
    let ids = |s: &Store| -> Vec<Value> { s.events().iter().map(|e| e["id"].clone()).collect() };
    assert_eq!(ids(&copy), ids(&source));
}

// 2. `append --ndjson --expected-version` holds for each stream's first line.
#[test]
fn ndjson_appends_honour_the_expected_version_per_stream() {
    let s = Store::seeded(&["order-1"]);
    let input = format!(
        "{}\n{}\n{}\n",
        ndjson_line("order-9", "Placed"),
        ndjson_line("order-9", "Paid"),
        ndjson_line("order-1", "Paid")
    );
    let out = s.run_with(
        &["append", "--ndjson", "--expected-version", "no-stream"],
        input.as_bytes(),
    );
    let e = one_line(&out, 3);
    assert!(
        e.contains("line 3") && e.contains("order-1") && e.contains("expected no stream"),
        "{e}"
    );
    assert!(e.contains("lines 1-2 were committed"), "{e}");
    // The new stream's two lines went in; the existing stream got nothing.
    assert_eq!(lines(&s.ok(&["read", "order-9"])).len(), 2);
    assert_eq!(lines(&s.ok(&["read", "order-1"])).len(), 1);
    // `exists` refuses a stream that is not there.
    let out = s.run_with(
        &["append", "--ndjson", "--expected-version", "exists"],
        format!("{}\n", ndjson_line("order-new", "Placed")).as_bytes(),
    );
    assert!(one_line(&out, 3).contains("order-new"));
    // A version: each stream must be at it before its first line.
    let out = s.run_with(
        &["append", "--ndjson", "--expected-version", "1"],
        format!(
            "{}\n{}\n",
            ndjson_line("order-9", "Shipped"),
            ndjson_line("order-9", "Delivered")
        )
        .as_bytes(),
    );
    assert_eq!(lines(&ok(&out)).len(), 2);
}

// 3. A bad flag prints nothing on stdout: no table header before the error.
#[test]
fn a_refused_read_prints_no_header() {
    let s = Store::seeded(&["order-1"]);
    for args in [
        &["read", "--from", "abc", "--format", "table"][..],
        &["read", "--after", "abc", "--format", "table"],
        &["read", "--after", "7741:42", "--format", "table"],
        &["read", "--from", "3", "--format", "table"],
        &["read", "order-1", "--after", "1", "--format", "table"],
    ] {
        let out = s.run(args);
        fails(&out, 2);
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    }
}

/// Runs `args`, reads one line of its output and closes the pipe: the command must end
/// quietly with 0.
fn closed_early(s: &Store, args: &[&str]) {
    let mut child = s
        .cmd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(!first.is_empty());
    drop(out);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{args:?} exited with {status}: {err}");
    assert!(err.is_empty(), "{args:?} said: {err}");
}

// 4. `read | head -1` and `export | head -1`: a closed stdout is not an error.
#[test]
fn a_closed_pipe_ends_quietly() {
    let s = Store::new();
    s.ok(&["init"]);
    // Far more than a pipe's buffer (64 KiB), so the writer meets the closed pipe.
    let pad = "x".repeat(200);
    let mut input = String::new();
    for i in 0..4000 {
        let stream = i % 40;
        std::fmt::Write::write_fmt(
            &mut input,
            format_args!(
                "{{\"stream\":\"s-{stream}\",\"namespace\":\"shop\",\"type\":\"Placed\",\"data\":{{\"pad\":\"{pad}\"}}}}\n"
            ),
        )
        .unwrap();
    }
    ok(&s.run_with(&["append", "--ndjson"], input.as_bytes()));
    closed_early(&s, &["read"]);
    closed_early(&s, &["read", "--format", "json"]);
    closed_early(&s, &["read", "--format", "table"]);
    closed_early(&s, &["read", "s-1"]);
    closed_early(&s, &["export"]);
    closed_early(&s, &["tail", "--after", "0", "--idle-exit", "5"]);
}

// 5. Commands that read never create or change a file.
#[test]
fn reading_commands_create_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("mistyped.db");
    let url = format!("sqlite://{}", missing.display());
    for args in [
        &["read"][..],
        &["stats"],
        &["tail", "--idle-exit", "0"],
        &["export"],
        &["schema"],
        &["projections", "list"],
        &["migrate", "status"],
    ] {
        let out = bin().arg("--url").arg(&url).args(args).output().unwrap();
        let e = one_line(&out, 1);
        assert!(
            e.contains(&format!("no event store at {}", missing.display()))
                && e.contains("event-store init"),
            "{args:?}: {e}"
        );
        assert!(!missing.exists(), "{args:?} created the file");
    }
    // A failed import of a missing file creates no store either.
    let out = bin()
        .arg("--url")
        .arg(&url)
        .args([
            "import",
            dir.path().join("missing.ndjson").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(one_line(&out, 1).contains("cannot open"));
    assert!(!missing.exists(), "a failed import created the store");
    // An unrelated SQLite file is neither read as a store nor given the store's tables.
    let other = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&other).unwrap();
        conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY);")
            .unwrap();
    }
    let before = std::fs::read(&other).unwrap();
    let other_url = format!("sqlite://{}", other.display());
    for args in [&["stats"][..], &["read"], &["append", "s", "shop.Placed"]] {
        let out = bin()
            .arg("--url")
            .arg(&other_url)
            .args(args)
            .output()
            .unwrap();
        let e = one_line(&out, 1);
        assert!(
            e.contains("without the event store's tables"),
            "{args:?}: {e}"
        );
    }
    assert!(
        std::fs::read(&other).unwrap() == before,
        "app.db was changed"
    );
    // Writing commands create a store, as documented.
    let fresh = dir.path().join("fresh.db");
    ok(&bin()
        .arg("--url")
        .arg(format!("sqlite://{}", fresh.display()))
        .args(["append", "s", "shop.Placed"])
        .output()
        .unwrap());
    assert!(fresh.exists());
}

/// `args` run as an unprivileged user (`nobody`, through `setpriv`) when this process is
/// root, which reads and writes any file; `None` when that is not possible here.
fn as_unprivileged(args: &[&str]) -> Option<Output> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some(bin().args(args).output().unwrap());
    }
    // The test binary may sit where `nobody` cannot reach: run a copy from a shared place.
    let copy = std::env::temp_dir().join(format!("event-store-ro-{}", std::process::id()));
    std::fs::copy(BIN, &copy).ok()?;
    set_mode(&copy, 0o755);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .args(args)
        .env_remove("EVENT_STORE_URL")
        .env_remove("EVENT_STORE_LOG")
        .output()
        .ok();
    let _ = std::fs::remove_file(&copy);
    out
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// 6. A file this user may not write is read all the same.
#[test]
fn a_read_only_file_can_be_read() {
    let s = Store::seeded(&["order-1", "order-2"]);
    let expected = s.events();
    set_mode(s.dir(), 0o755);
    set_mode(&s.path, 0o444);
    let url = s.url();
    let Some(read) = as_unprivileged(&["--url", &url, "read", "--format", "ndjson"]) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "setpriv is needed to run as another user"
        );
        eprintln!("SKIPPED: cannot run as another user here (setpriv missing)");
        return;
    };
    assert_eq!(lines(&ok(&read)), expected);
    let stats = as_unprivileged(&["--url", &url, "stats", "--format", "json"]).unwrap();
    let stats: Value = serde_json::from_str(&ok(&stats)).unwrap();
    assert_eq!(stats["events"], 2);
    // Writing says why it cannot, in one line.
    let append = as_unprivileged(&["--url", &url, "append", "order-1", "shop.Paid"]).unwrap();
    assert!(!append.status.success());
    // A file this user cannot read at all is named once, with the reason.
    set_mode(&s.path, 0o000);
    let unreadable = as_unprivileged(&["--url", &url, "read"]).unwrap();
    let e = one_line(&unreadable, 1);
    assert!(
        e.contains("cannot read") && e.contains("permission denied"),
        "{e}"
    );
    assert_eq!(e.matches(&*s.path.display().to_string()).count(), 1, "{e}");
    // `?mode=ro` never writes, whoever runs it.
    set_mode(&s.path, 0o644);
    let before = std::fs::read(&s.path).unwrap();
    let ro = format!("{url}?mode=ro");
    assert_eq!(
        lines(&ok(&bin()
            .args(["--url", &ro, "read", "--format", "ndjson"])
            .output()
            .unwrap())),
        expected
    );
    let e = one_line(
        &bin()
            .args(["--url", &ro, "append", "order-1", "shop.Paid"])
            .output()
            .unwrap(),
        1,
    );
    assert!(e.contains("read-only"), "{e}");
    assert!(std::fs::read(&s.path).unwrap() == before, "mode=ro wrote");
}

// 7. `demo --url` is refused, `stats --help` describes the JSON it prints, and `ndjson` is
// one line where `json` may be indented.
#[test]
fn demo_refuses_a_url_and_stats_formats_are_what_help_says() {
    let out = bin()
        .args(["--url", "sqlite://elsewhere.db", "demo"])
        .output()
        .unwrap();
    assert!(one_line(&out, 2).contains("--keep"));
    let s = Store::seeded(&["order-1"]);
    let help = ok(&s.run(&["stats", "--help"]));
    let stats: Value = serde_json::from_str(&s.ok(&["stats", "--format", "json"])).unwrap();
    for key in stats.as_object().unwrap().keys() {
        assert!(
            help.contains(&format!("\"{key}\"")),
            "help misses {key}: {help}"
        );
    }
    for key in stats["types"][0].as_object().unwrap().keys() {
        assert!(help.contains(&format!("\"{key}\"")), "help misses {key}");
    }
    let ndjson = s.ok(&["stats", "--format", "ndjson"]);
    assert_eq!(ndjson.lines().count(), 1, "{ndjson}");
    let piped = s.ok(&["stats"]);
    assert_eq!(
        serde_json::from_str::<Value>(&piped).unwrap(),
        stats,
        "piped, stats prints JSON"
    );
    let table = s.ok(&["stats", "--format", "table"]);
    assert!(table.starts_with("events"), "{table}");
}

#[test]
fn malformed_command_lines_exit_2_with_clap_s_whole_message() {
    let s = Store::seeded(&["order-1"]);
    let e = fails(&s.run(&["append", "order-1"]), 2);
    assert!(
        e.contains("<NAMESPACE.TYPE>") && e.contains("Usage:"),
        "{e}"
    );
    let e = fails(&s.run(&["read", "--format", "xml"]), 2);
    assert!(
        e.contains("json") && e.contains("ndjson") && e.contains("table"),
        "the valid values are listed: {e}"
    );
    let e = fails(
        &s.run(&["append", "s", "shop.X", "--expected-version", "foo"]),
        2,
    );
    assert!(e.contains("no-stream"), "{e}");
    for (args, says) in [
        (
            &["append", "s", "shop.X", "--expected-version", "-1"][..],
            "count from 0",
        ),
        (&["read", "--limit", "-5"], "0 or more"),
        (&["read", "order-1", "--from", "-2"], "never negative"),
        (&["tail", "--idle-exit", "-1"], "out of range"),
    ] {
        let e = fails(&s.run(args), 2);
        assert!(e.contains(says), "{args:?}: {e}");
    }
    // A version conflict has a code of its own, for scripts that retry.
    let e = one_line(
        &s.run(&["append", "order-1", "shop.Paid", "--expected-version", "5"]),
        3,
    );
    assert!(e.contains("conflict"), "{e}");
}

#[test]
fn sqlite_urls_in_the_forms_users_bring() {
    let s = Store::seeded(&["order-1"]);
    let path = s.path.display().to_string();
    for url in [
        format!("sqlite:{path}"),
        format!("sqlite://{path}?mode=ro"),
        format!("sqlite:{path}?mode=rw"),
    ] {
        let out = bin().args(["--url", &url, "read"]).output().unwrap();
        assert_eq!(lines(&ok(&out)).len(), 1, "{url}");
    }
    // `?mode=rwc` creates the file itself, not one named with the query.
    let made = s.dir().join("made.db");
    let url = format!("sqlite://{}?mode=rwc", made.display());
    ok(&bin().args(["--url", &url, "init"]).output().unwrap());
    assert!(made.exists());
    for entry in std::fs::read_dir(s.dir()).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(!name.to_string_lossy().contains('?'), "{name:?}");
    }
    let e = one_line(
        &bin()
            .args(["--url", &format!("sqlite://{path}?cache=shared"), "read"])
            .output()
            .unwrap(),
        1,
    );
    assert!(e.contains("cache=shared"), "{e}");
    let e = one_line(
        &bin()
            .args(["--url", "sqlite::memory:", "read"])
            .output()
            .unwrap(),
        1,
    );
    assert!(e.contains("in-memory"), "{e}");
    // A missing directory, a directory, each named once.
    let nowhere = s.dir().join("no-dir").join("e.db");
    let e = one_line(
        &bin()
            .args(["--url", &format!("sqlite://{}", nowhere.display()), "init"])
            .output()
            .unwrap(),
        1,
    );
    assert!(e.contains("does not exist"), "{e}");
    assert_eq!(
        e.matches("no-dir").count(),
        2,
        "the path, then its directory: {e}"
    );
    let e = one_line(
        &bin()
            .args(["--url", &format!("sqlite://{}", s.dir().display()), "read"])
            .output()
            .unwrap(),
        1,
    );
    assert!(e.contains("is a directory"), "{e}");
    assert_eq!(e.matches(&*s.dir().display().to_string()).count(), 1, "{e}");
}

#[test]
fn after_is_for_checkpoints_and_from_for_versions() {
    let s = Store::seeded(&["order-1", "order-2", "order-3"]);
    let all = s.events();
    let second = all[1]["position"].as_str().unwrap();
    let after = lines(&s.ok(&["read", "--after", second]));
    assert_eq!(after, all[2..].to_vec());
    let before = lines(&s.ok(&["read", "--before", all[2]["position"].as_str().unwrap()]));
    assert_eq!(before, vec![all[1].clone(), all[0].clone()]);
    s.ok(&["append", "order-1", "shop.Paid"]);
    let from = lines(&s.ok(&["read", "order-1", "--from", "1"]));
    assert_eq!(from.len(), 1);
    assert_eq!(from[0]["version"], 1);
    let e = fails(&s.run(&["read", "--from", "1"]), 2);
    assert!(e.contains("--after CHECKPOINT"), "{e}");
    let e = fails(&s.run(&["tail", "--after", "3:4", "--idle-exit", "0"]), 2);
    assert!(e.contains("PostgreSQL checkpoint"), "{e}");
    let e = fails(&s.run(&["export", "--after", "3:4"]), 2);
    assert!(e.contains("PostgreSQL checkpoint"), "{e}");
}

#[test]
fn types_are_namespace_dot_type_everywhere_and_read_filters_as_tail_does() {
    let s = Store::seeded(&["order-1", "cart-1"]);
    s.ok(&["append", "order-1", "bank.Placed"]);
    s.ok(&["append", "order-1", "shop.Paid"]);
    let tailed = lines(&s.ok(&[
        "tail",
        "--after",
        "0",
        "--type",
        "shop.Placed",
        "--idle-exit",
        "0.5",
    ]));
    assert_eq!(tailed.len(), 2, "{tailed:?}");
    assert!(
        tailed
            .iter()
            .all(|e| e["namespace"] == "shop" && e["type"] == "Placed")
    );
    let any_ns = lines(&s.ok(&[
        "tail",
        "--after",
        "0",
        "--type",
        "Placed",
        "--idle-exit",
        "0.5",
    ]));
    assert_eq!(any_ns.len(), 3);
    let read = lines(&s.ok(&["read", "--type", "shop.Placed", "--stream-prefix", "order-"]));
    assert_eq!(read.len(), 1);
    assert_eq!(read[0]["stream"], "order-1");
    let read = lines(&s.ok(&["read", "--namespace", "shop", "--type", "Paid"]));
    assert_eq!(read.len(), 1);
    let read = lines(&s.ok(&["read", "--backward", "--type", "Placed"]));
    assert_eq!(read.len(), 3);
    assert_eq!(read[0]["namespace"], "bank", "newest first");
    let read = lines(&s.ok(&["read", "order-1", "--type", "shop.Paid"]));
    assert_eq!(read.len(), 1);
    let e = fails(
        &s.run(&["read", "--namespace", "bank", "--type", "shop.Paid"]),
        2,
    );
    assert!(e.contains("nothing could match"), "{e}");
}

#[test]
fn an_unknown_stream_says_so() {
    let s = Store::seeded(&["order-1"]);
    let out = s.run(&["read", "order-404"]);
    assert!(ok(&out).is_empty());
    assert!(
        stderr(&out).contains("no stream `order-404`"),
        "{}",
        stderr(&out)
    );
    let quiet = s.run(&["--quiet", "read", "order-404"]);
    assert!(ok(&quiet).is_empty() && stderr(&quiet).is_empty());
}

#[test]
fn ndjson_errors_name_the_field_and_help_lists_every_field() {
    let s = Store::seeded(&["order-1"]);
    let out = s.run_with(
        &["append", "--ndjson"],
        br#"{"stream":"q","namespace":"shop","type":"A","context":{"subject":5}}"#,
    );
    let e = one_line(&out, 1);
    assert!(
        e.contains("line 1: context.subject: ") && e.contains("expected a map"),
        "{e}"
    );
    assert!(!e.contains("column"), "{e}");
    let help = s.ok(&["append", "--help"]);
    for field in [
        "stream",
        "namespace",
        "type",
        "data",
        "id",
        "context",
        "version",
        "position",
        "event_namespace",
        "event_type",
        "event_version",
    ] {
        assert!(help.contains(field), "append --help misses {field}");
    }
}

#[test]
fn ctrl_c_during_an_import_says_what_was_committed() {
    let s = Store::new();
    s.ok(&["init"]);
    let mut child = s
        .cmd(&["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // Two full windows of 1 000 lines are committed as they fill; the rest waits for more.
    for i in 0..2500 {
        writeln!(input, "{}", ndjson_line(&format!("s-{}", i % 10), "Placed")).unwrap();
    }
    input.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats: Value = serde_json::from_str(&s.ok(&["stats", "--format", "json"])).unwrap();
        if stats["events"] == 2000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the windows were not committed: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    common::send_ctrl_c(&child);
    let out = child.wait_with_output().unwrap();
    drop(input);
    let e = one_line(&out, 130);
    assert!(
        e.contains("interrupted") && e.contains("lines 1-2000 were committed"),
        "{e}"
    );
}

#[test]
fn the_table_fits_the_terminal_and_stays_whole_in_a_pipe() {
    let s = Store::new();
    s.ok(&["init"]);
    let long = "y".repeat(300);
    s.ok(&[
        "append",
        "order-1",
        "shop.Placed",
        &format!(r#"{{"note": "{long}"}}"#),
    ]);
    let narrow = ok(&s
        .cmd(&["read", "--format", "table"])
        .env("COLUMNS", "150")
        .output()
        .unwrap());
    for line in narrow.lines() {
        assert!(
            line.chars().count() <= 150,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    assert!(narrow.contains('…'));
    let piped = s.ok(&["read", "--format", "table"]);
    assert!(piped.contains(&long), "a piped table keeps the data whole");
}

#[test]
fn event_store_log_logs_on_sqlite() {
    let s = Store::seeded(&["order-1"]);
    let out = s
        .cmd(&["read"])
        .env("EVENT_STORE_LOG", "debug")
        .output()
        .unwrap();
    ok(&out);
    let err = stderr(&out);
    assert!(err.contains("opened the SQLite store"), "{err}");
    assert!(!err.contains('\u{1b}'), "no colour codes in a pipe: {err}");
}

#[test]
fn streams_are_listed_with_counts_and_paged() {
    let s = Store::seeded(&["order-2", "order-1", "cart-1", "order-10"]);
    s.ok(&["append", "order-1", "shop.Paid"]);
    let all = lines(&s.ok(&["streams"]));
    let ids: Vec<&str> = all.iter().map(|e| e["stream"].as_str().unwrap()).collect();
    assert_eq!(ids, ["cart-1", "order-1", "order-10", "order-2"]);
    let order_1 = &all[1];
    assert_eq!(order_1["events"], 2);
    assert_eq!(order_1["last_version"], 1);
    let last = &lines(&s.ok(&["read", "order-1"]))[1];
    assert_eq!(order_1["last_position"], last["position"]);
    assert_eq!(order_1["last_time"], last["context"]["time"]);
    let page = lines(&s.ok(&["streams", "--prefix", "order-", "--limit", "2"]));
    assert_eq!(page, all[1..3].to_vec());
    let next = lines(&s.ok(&["streams", "--prefix", "order-", "--after", "order-10"]));
    assert_eq!(next, all[3..].to_vec());
    let json: Value = serde_json::from_str(&s.ok(&["streams", "--format", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);
    let table = s.ok(&["streams", "--format", "table"]);
    assert!(
        table.starts_with("STREAM") && table.contains("order-10"),
        "{table}"
    );
}

#[test]
fn a_closed_stream_takes_nothing_and_hides_until_reopened() {
    let s = Store::seeded(&["order-1", "order-2"]);
    s.ok(&["append", "order-1", "shop.Paid"]);
    let before = lines(&s.ok(&["read", "order-1"]));
    let closed: Value = serde_json::from_str(&s.ok(&["close", "order-1", "--by", "ops"])).unwrap();
    assert_eq!(closed["namespace"], "event_store");
    assert_eq!(closed["type"], "StreamClosed");
    assert_eq!(closed["stream"], "event_store-streams");
    assert_eq!(closed["data"]["stream"], "order-1");
    assert_eq!(closed["data"]["by"], "ops");
    assert_eq!(closed["data"]["was_open"], true);
    assert_eq!(closed["context"]["action"], "close");

    // No appends (exit 4), no read by stream; hidden from the list, listed as closed.
    let err = one_line(&s.run(&["append", "order-1", "shop.Late"]), 4);
    assert!(err.contains("stream `order-1` is closed"), "{err}");
    let err = one_line(&s.run(&["read", "order-1"]), 4);
    assert!(err.contains("stream `order-1` is closed"), "{err}");
    let ids: Vec<Value> = lines(&s.ok(&["streams"]))
        .iter()
        .map(|e| e["stream"].clone())
        .collect();
    assert_eq!(ids, [json!("event_store-streams"), json!("order-2")]);
    let listed = lines(&s.ok(&["streams", "--closed"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["stream"], "order-1");
    assert!(listed[0]["closed_at"].is_string());
    let table = s.ok(&["streams", "--closed", "--format", "table"]);
    assert!(
        table.starts_with("STREAM") && table.contains("order-1"),
        "{table}"
    );

    // Its events are still in the global log, and `--include-closed` reads them.
    assert_eq!(
        lines(&s.ok(&["read", "order-1", "--include-closed"])),
        before
    );
    let newest = lines(&s.ok(&[
        "read",
        "order-1",
        "--include-closed",
        "--backward",
        "--limit",
        "1",
    ]));
    assert_eq!(newest, before[1..].to_vec());
    let log = lines(&s.ok(&["read"]));
    assert!(before.iter().all(|e| log.contains(e)), "in the log");

    // Closing again records it; the store's own streams cannot be closed; `--by` is required.
    let again: Value = serde_json::from_str(&s.ok(&["close", "order-1", "--by", "ops"])).unwrap();
    assert_eq!(again["data"]["was_open"], false);
    let err = one_line(&s.run(&["close", "event_store-streams", "--by", "ops"]), 2);
    assert!(err.contains("the store's own streams"), "{err}");
    fails(&s.run(&["close", "order-2"]), 2);

    // Reopened: appends go on from its version, reads and the list are back.
    let reopened: Value =
        serde_json::from_str(&s.ok(&["reopen", "order-1", "--by", "ops"])).unwrap();
    assert_eq!(reopened["type"], "StreamReopened");
    assert_eq!(reopened["data"]["was_closed"], true);
    let late: Value = serde_json::from_str(&s.ok(&["append", "order-1", "shop.Late"])).unwrap();
    assert_eq!(late["version"], 2);
    assert_eq!(lines(&s.ok(&["read", "order-1"])).len(), 3);
    assert!(lines(&s.ok(&["streams", "--closed"])).is_empty());
    let audit = lines(&s.ok(&["read", "event_store-streams"]));
    let kinds: Vec<&str> = audit.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["StreamClosed", "StreamClosed", "StreamReopened"]);
}

#[test]
fn read_stats_sums_up_per_type() {
    let s = Store::seeded(&["order-1", "order-2"]);
    s.ok(&["append", "order-1", "shop.Paid"]);
    let summary = lines(&s.ok(&["read", "--stats"]));
    assert_eq!(summary.len(), 2);
    let placed = summary.iter().find(|t| t["type"] == "Placed").unwrap();
    assert_eq!(placed["events"], 2);
    assert_eq!(placed["first_position"], "1");
    assert_eq!(placed["last_position"], "2");
    let stream = lines(&s.ok(&["read", "order-1", "--stats"]));
    assert_eq!(stream.len(), 2);
    let table = s.ok(&["read", "--stats", "--format", "table"]);
    assert!(
        table.contains("shop.Placed") && table.contains("total"),
        "{table}"
    );
}

#[test]
fn migrate_status_completions_man_and_quiet() {
    let s = Store::seeded(&["order-1"]);
    let status: Value = serde_json::from_str(&s.ok(&["migrate", "status"])).unwrap();
    assert!(!status["applied"].as_array().unwrap().is_empty());
    assert_eq!(status["pending"], serde_json::json!([]));
    let table = s.ok(&["migrate", "status", "--format", "table"]);
    assert!(table.contains("up to date"), "{table}");
    // Read-only: a store one migration behind is reported, not migrated.
    {
        let conn = rusqlite::Connection::open(&s.path).unwrap();
        conn.execute(
            "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)",
            [],
        )
        .unwrap();
    }
    let status: Value = serde_json::from_str(&s.ok(&["migrate", "status"])).unwrap();
    assert_eq!(status["pending"].as_array().unwrap().len(), 1);
    let e = one_line(&s.run(&["read"]), 1);
    assert!(e.contains("migrate it first"), "{e}");
    s.ok(&["init"]);
    let status: Value = serde_json::from_str(&s.ok(&["migrate", "status"])).unwrap();
    assert_eq!(status["pending"], serde_json::json!([]));

    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&bin().args(["completions", shell]).output().unwrap());
        assert!(
            script.contains("event-store") && script.contains("import-legacy"),
            "{shell}"
        );
    }
    let man = ok(&bin().arg("man").output().unwrap());
    assert!(man.contains(".TH event-store 1"), "{man}");
    let pages = s.dir().join("man");
    std::fs::create_dir(&pages).unwrap();
    ok(&bin()
        .args(["man", "--dir", pages.to_str().unwrap()])
        .output()
        .unwrap());
    assert!(pages.join("event-store-read.1").exists());

    let file = s.dir().join("one.ndjson");
    std::fs::write(&file, ndjson_line("order-5", "Placed")).unwrap();
    let quiet = s.run(&["--quiet", "import", file.to_str().unwrap()]);
    ok(&quiet);
    assert!(stderr(&quiet).is_empty(), "{}", stderr(&quiet));
    let loud = s.run(&["import", file.to_str().unwrap()]);
    assert!(stderr(&loud).contains("imported 1 events"));
}

#[test]
fn every_subcommand_has_examples_in_its_help() {
    for sub in [
        "init",
        "append",
        "read",
        "tail",
        "streams",
        "stats",
        "schema",
        "export",
        "import",
        "import-legacy",
        "publish",
        "subscribe",
        "bench",
        "demo",
        "serve",
        "completions",
        "man",
    ] {
        let help = ok(&bin().args([sub, "--help"]).output().unwrap());
        assert!(help.contains("Example"), "{sub} --help has no example");
    }
    for sub in [["projections", "list"], ["migrate", "status"]] {
        let help = ok(&bin().args(sub).arg("--help").output().unwrap());
        assert!(help.contains("Example"), "{sub:?} --help has no example");
    }
}
