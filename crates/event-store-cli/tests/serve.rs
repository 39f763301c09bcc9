//! `event-store serve` as an operator runs it: on a SQLite file, on a port of its own, with
//! and without tokens, stopped with Ctrl-C.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_event-store");

/// `event-store --url URL ARGS…`, which must succeed.
fn ok(url: &str, args: &[&str]) {
    let out = Command::new(BIN)
        .args(["--url", url])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `event-store init` on `url`.
fn init(url: &str) {
    ok(url, &["init"]);
}

/// Starts `serve` on a free port; returns the child and the address it printed.
fn serve(url: &str, extra: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let (child, line) = serve_line(url, extra, env);
    let start = line.find("://").unwrap_or_else(|| panic!("{line}")) + 3;
    let address: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',')
        .collect();
    (child, address)
}

/// Starts `serve` on a free port; returns the child and the line it printed first.
fn serve_line(url: &str, extra: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["--url", url, "serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("EVENT_STORE_TOKENS")
        .env_remove("EVENT_STORE_TOKENS_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// One HTTP/1.1 request; returns the status and the body as JSON.
fn request(address: &str, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status: u16 = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn interrupt(mut child: Child) -> String {
    common::send_ctrl_c(&child);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    assert!(status.success(), "serve exited with {status}: {rest}");
    rest
}

#[test]
fn serve_appends_reads_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("e.db").display());
    // serve needs a store: it does not create one.
    let out = Command::new(BIN)
        .args(["--url", &url, "serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no event store"));
    init(&url);

    let (child, address) = serve(&url, &[], &[]);
    let (status, _) = request(&address, "GET", "/health", &[], "");
    assert_eq!(status, 200);
    let (status, created) = request(
        &address,
        "POST",
        "/streams/order-1",
        &["Expected-Version: no-stream"],
        r#"[{"namespace":"shop","type":"Placed","data":{"total":12}}]"#,
    );
    assert_eq!(status, 201, "{created}");
    let (status, conflict) = request(
        &address,
        "POST",
        "/streams/order-1",
        &["Expected-Version: no-stream"],
        r#"[{"namespace":"shop","type":"Placed"}]"#,
    );
    assert_eq!(status, 409, "{conflict}");
    let (status, page) = request(&address, "GET", "/streams/order-1", &[], "");
    assert_eq!(status, 200);
    assert_eq!(page["events"][0]["data"]["total"], 12);
    // A live-tail client stays connected while the metrics are read.
    let mut tail = TcpStream::connect(&address).unwrap();
    write!(tail, "GET /log/live?after=0 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    tail.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // The metrics of what was just done, in the Prometheus text format.
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(r#"event_store_events_appended_total{namespace="shop",type="Placed"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("event_store_append_conflicts_total 1"),
        "{text}"
    );
    assert!(text.contains("event_store_append_seconds_bucket"), "{text}");
    assert!(text.contains("event_store_live_clients 1"), "{text}");
    assert!(
        text.contains(r#"event_store_http_requests_total{method="POST",status="409"} 1"#),
        "{text}"
    );
    drop(tail);
    let said = interrupt(child);
    assert!(said.contains("stopped"), "{said}");
    // What the API appended is in the file.
    let read = Command::new(BIN)
        .args(["--url", &url, "read", "order-1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&read.stdout).lines().count(), 1);
}

#[test]
fn serve_with_tokens_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("e.db").display());
    init(&url);
    let file = dir.path().join("tokens");
    std::fs::write(&file, "# who may do what\nreader-0123456789abcdef read\n").unwrap();
    let (child, address) = serve(&url, &["--tokens", file.to_str().unwrap()], &[]);
    assert_eq!(request(&address, "GET", "/stats", &[], "").0, 401);
    let reader = "Authorization: Bearer reader-0123456789abcdef";
    assert_eq!(request(&address, "GET", "/stats", &[reader], "").0, 200);
    assert_eq!(
        request(
            &address,
            "POST",
            "/streams/s",
            &[reader],
            r#"[{"namespace":"a","type":"B"}]"#
        )
        .0,
        403
    );
    interrupt(child);
    let (child, address) = serve(
        &url,
        &[],
        &[("EVENT_STORE_TOKENS", "writer-0123456789abcdef append")],
    );
    let writer = "Authorization: Bearer writer-0123456789abcdef";
    assert_eq!(
        request(
            &address,
            "POST",
            "/streams/s",
            &[writer],
            r#"[{"namespace":"a","type":"B"}]"#
        )
        .0,
        201
    );
    interrupt(child);
    // A bad token file is a usage error that names the line, never the token.
    std::fs::write(&file, "tooshort read\n").unwrap();
    let out = Command::new(BIN)
        .args(["--url", &url, "serve", "--tokens", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("line 1") && !e.contains("tooshort"), "{e}");
}

#[test]
fn serve_https_with_a_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("e.db").display());
    init(&url);
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "reader-0123456789abcdef read\n").unwrap();
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let (child, line) = serve_line(&url, &tls, &[]);
    assert!(line.contains("on https://127.0.0.1:"), "{line}");
    interrupt(child);
    // Tokens on a public address without TLS: a warning (shown here on 0.0.0.0, port 0).
    let out = Command::new(BIN)
        .args(["--url", &url, "serve", "--listen", "0.0.0.0:0"])
        .args(["--tokens", tokens.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = out;
    let mut text = String::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    // The start lines come first: the address, the explorer, the warnings.
    for _ in 0..4 {
        if text.contains("warning: no TLS") || reader.read_line(&mut text).unwrap() == 0 {
            break;
        }
    }
    child.stderr = None;
    common::send_ctrl_c(&child);
    child.wait().unwrap();
    assert!(text.contains("warning: no TLS"), "{text}");
    // Mistakes: one line, exit 2.
    for (args, says) in [
        (vec!["--tls-cert", cert.to_str().unwrap()], "--tls-key"),
        (
            vec![
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                key.to_str().unwrap(),
            ],
            "cannot read the certificate from /nonexistent/cert.pem",
        ),
        (
            vec![
                "--tls-cert",
                key.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
            "no CERTIFICATE",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["--url", &url, "serve", "--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(says), "{args:?}: {e}");
    }
}

/// The property-based API tester, from `EVENT_STORE_SCHEMATHESIS` or the `PATH` (`.ci/run`
/// installs it from PyPI).
fn schemathesis() -> Result<String, String> {
    let candidate =
        std::env::var("EVENT_STORE_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_owned());
    match Command::new(&candidate).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(candidate),
        Ok(out) => Err(format!(
            "`{candidate} --version` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!(
            "`{candidate}` not found ({e}); `pip install schemathesis`, or set \
             EVENT_STORE_SCHEMATHESIS"
        )),
    }
}

/// The contract: schemathesis generates requests from `/openapi.json` (valid ones, and ones
/// that break the schema), follows the document's links from an append to its stream and
/// event, and checks every answer: no 5xx, a documented status, content type and headers, a
/// body that matches the schema, schema-breaking input refused, no access without the token.
///
/// Left out: the live tail (it never ends; `event-store-server`'s tests hold it to the log),
/// and the check that every schema-valid request is accepted: the store's rules for a stream id
/// (Unicode NFC, no invisible format characters, a length in bytes) cannot be said in JSON
/// Schema, and their refusals are 422s that the other checks hold to the schema.
#[test]
fn the_api_keeps_its_openapi_contract() {
    let Some(tester) = event_store_testkit::require_service("schemathesis", schemathesis()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("contract.db").display());
    init(&url);
    let token = "contract-admin-token-0123456789";
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{token} admin\n")).unwrap();
    let (child, address) = serve(&url, &["--tokens", tokens.to_str().unwrap()], &[]);
    let out = Command::new(&tester)
        .current_dir(dir.path())
        .args([
            "run",
            &format!("http://{address}/openapi.json"),
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--exclude-path",
            "/log/live",
            "--max-examples",
            "100",
            "--workers",
            "2",
            "--header",
            &format!("Authorization: Bearer {token}"),
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    interrupt(child);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It tested every operation it selected: all but the live tail.
    let number = |label: &str| -> String {
        let at = report
            .find(label)
            .unwrap_or_else(|| panic!("no {label}: {report}"));
        report[at + label.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '/')
            .collect()
    };
    let selected = number("Selected: ");
    let (chosen, total) = selected.split_once('/').unwrap();
    let (chosen, total): (u32, u32) = (chosen.parse().unwrap(), total.parse().unwrap());
    assert_eq!(
        chosen + 1,
        total,
        "only the live tail is left out: {selected}"
    );
    assert_eq!(number("Tested: "), chosen.to_string(), "{report}");
}

/// What the browser test needs: Node.js, playwright-core (`EVENT_STORE_PLAYWRIGHT`: its package
/// directory, from npm) and Chromium (`EVENT_STORE_CHROMIUM`, else Debian's /usr/bin/chromium).
fn browser_tools() -> Result<(String, String), String> {
    let playwright = std::env::var("EVENT_STORE_PLAYWRIGHT").map_err(|_| {
        "EVENT_STORE_PLAYWRIGHT is not set (the playwright-core package's directory; \
         `npm install playwright-core`)"
            .to_owned()
    })?;
    if !std::path::Path::new(&playwright)
        .join("package.json")
        .is_file()
    {
        return Err(format!("no playwright-core package at {playwright}"));
    }
    let chromium =
        std::env::var("EVENT_STORE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !std::path::Path::new(&chromium).is_file() {
        return Err(format!(
            "no Chromium at {chromium} (`apt-get install chromium`)"
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Ok((playwright, chromium)),
        _ => Err("no `node` on the PATH".to_owned()),
    }
}

/// The web explorer in a real browser: headless Chromium, driven by playwright-core, finds a
/// stream by search, opens an event and copies its JSON, searches by type, watches the live
/// tail show an event appended through the API and reads the stats chart. A screenshot of each
/// page is kept under `target/explorer-screenshots/`.
#[test]
fn the_explorer_in_a_real_browser() {
    let Some((playwright, chromium)) =
        event_store_testkit::require_service("a headless browser", browser_tools())
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("explorer.db").display());
    init(&url);
    for (stream, ty, data) in [
        ("order-1", "shop.Placed", r#"{"total": 12}"#),
        ("order-1", "shop.Paid", r#"{"total": 12}"#),
        ("cart-7", "shop.Placed", r#"{"items": 2}"#),
        ("customer-7", "crm.Registered", r#"{"name": "Ada"}"#),
    ] {
        ok(&url, &["append", stream, ty, data]);
    }
    let (child, address) = serve(&url, &[], &[]);
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("explorer-screenshots");
    // Only this run's screenshots.
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/explorer.cjs");
    let out = Command::new("node")
        .arg(&script)
        .env("BASE", format!("http://{address}"))
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &shots)
        .output()
        .unwrap();
    interrupt(child);
    assert!(
        out.status.success(),
        "{}\n{}\n(screenshots in {})",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        shots.display()
    );
    for page in ["streams", "stream", "event", "search", "live", "stats"] {
        let shot = shots.join(format!("{page}.png"));
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
            "a screenshot of {page}"
        );
    }
}
