//! `event-store import-legacy` against two original-format databases built here (every legacy
//! shape, a collision, a duplicate, an unreadable time), and `event-store schema` over the result.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::process::{Command, Output, Stdio};

use event_store::{Event, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_event-store");

/// The original service's event type, with the original attribute spelling.
#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
#[event_store(namespace = "accounts", rename = "UserRegistered")]
#[serde(deny_unknown_fields)]
struct Registered {
    email: String,
    account_id: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
#[event_store(namespace = "billing", rename = "InvoicePaid")]
struct Paid {
    cents: i64,
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("EVENT_STORE_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok_json(args: &[&str]) -> Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What the fixture holds, counted while it is built.
#[derive(Default)]
struct Expect {
    legacy_type_dropped: u64,
    name_from_legacy_type: u64,
    null_subject: u64,
    missing_subject: u64,
    time_rewritten: u64,
    without_key: u64,
}

/// The rows of one original database: `n` events, cycling through every shape.
fn rows(ns: &str, n: u32, seed: u32, expect: &mut Expect) -> Vec<(uuid::Uuid, Value, Value)> {
    (0..n)
        .map(|i| {
            let k = i + seed;
            let id = uuid::Uuid::from_u128(u128::from(seed) << 64 | u128::from(i));
            let (ty, mut data) = if ns == "accounts" {
                (
                    "UserRegistered",
                    json!({"email": format!("u{k}@example.com"), "account_id": k % 40}),
                )
            } else {
                ("InvoicePaid", json!({"cents": i64::from(k) * 100}))
            };
            if ns == "billing" && i % 5 == 0 {
                // No account: the fallback stream.
                expect.without_key += 1;
            } else if ns == "billing" {
                data["account_id"] = json!(k % 40);
            }
            match i % 3 {
                0 => {
                    data["event_namespace"] = json!(ns);
                    data["event_type"] = json!(ty);
                }
                1 => {
                    data["event_namespace"] = json!(ns);
                    data["event_type"] = json!(ty);
                    data["type"] = json!(format!("{ns}.{ty}"));
                    expect.legacy_type_dropped += 1;
                }
                _ => {
                    data["type"] = json!(format!("{ns}.{ty}"));
                    expect.name_from_legacy_type += 1;
                }
            }
            // Minutes apart, interleaving the two sources (seed shifts by 30 s).
            let secs = i64::from(i) * 60 + i64::from(seed % 2) * 30;
            let t = chrono::DateTime::from_timestamp(1_550_000_000 + secs, 0).unwrap();
            let time = match i % 4 {
                0 => t.to_rfc3339(),
                1 => {
                    expect.time_rewritten += 1;
                    t.format("%Y-%m-%d %H:%M:%S").to_string()
                }
                2 => {
                    expect.time_rewritten += 1;
                    (t + chrono::TimeDelta::hours(1))
                        .format("%Y-%m-%dT%H:%M:%S+01")
                        .to_string()
                }
                _ => {
                    expect.time_rewritten += 1;
                    t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
                }
            };
            let context = match i % 5 {
                0 => {
                    expect.null_subject += 1;
                    json!({"action": "register", "subject": null, "time": time})
                }
                1 => {
                    expect.missing_subject += 1;
                    json!({"action": null, "time": time})
                }
                _ => json!({"action": "pay", "subject": {"user_id": k}, "time": time}),
            };
            (id, data, context)
        })
        .collect()
}

#[test]
fn import_legacy_reports_imports_and_reruns_idempotently() {
    let Some((url, rt, admin)) = common::postgres() else {
        return;
    };
    let tag = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let dbs = [format!("es_legacy_a_{tag}"), format!("es_legacy_b_{tag}")];
    let base = url.rsplit_once('/').unwrap().0.to_owned();
    let mut expect = Expect::default();
    let accounts = rows("accounts", 300, 0, &mut expect);
    let mut billing = rows("billing", 200, 1, &mut expect);
    // One id in both with other content (a collision), one with the same content (a duplicate).
    let collision = accounts[7].0;
    billing[3].0 = collision;
    billing[4] = accounts[8].clone();
    // One row whose time is not a time.
    billing[5].2["time"] = json!("last tuesday");
    let fill = |db: &str, rows: Vec<(uuid::Uuid, Value, Value)>| {
        let url = format!("{base}/{db}");
        rt.block_on(async {
            admin
                .batch_execute(&format!("CREATE DATABASE \"{db}\""))
                .await
                .unwrap();
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c.batch_execute(
                "CREATE TABLE events (id uuid PRIMARY KEY, data jsonb NOT NULL, context jsonb DEFAULT '{}')",
            )
            .await
            .unwrap();
            for (id, data, context) in rows {
                c.execute(
                    "INSERT INTO events (id, data, context) VALUES ($1, $2::text::jsonb, $3::text::jsonb)",
                    &[&id, &data.to_string(), &context.to_string()],
                )
                .await
                .unwrap();
            }
        });
        url
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let a = fill(&dbs[0], accounts.clone());
        let b = fill(&dbs[1], billing.clone());
        check(&a, &b, &expect, collision);
    }));
    rt.block_on(async {
        for db in &dbs {
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                .await
                .unwrap();
        }
    });
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

fn check(a: &str, b: &str, expect: &Expect, collision: uuid::Uuid) {
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", tmp.path().join("events.db").display());
    let sa = format!("accounts={a}");
    let sb = format!("billing={b}");
    let import = |extra: &[&str]| {
        let mut args = vec![
            "--url",
            &store,
            "import-legacy",
            "--source",
            &sa,
            "--source",
            &sb,
            "--stream-key",
            "data.account_id",
            "--stream-prefix",
            "account-",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        ok_json(&args)
    };
    let dry = import(&["--dry-run"]);
    let read_all = || {
        let out = run(&["--url", &store, "read", "--format", "ndjson"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<RecordedEvent>(l).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(read_all().is_empty(), "a dry run imports nothing");

    let first = import(&[]);
    // 300 + 200 rows; the collision (2 rows) and the bad time are not imported, the duplicate
    // is imported once.
    assert_eq!(first["sources"]["accounts"]["rows"], 300);
    assert_eq!(first["sources"]["billing"]["rows"], 200);
    let imported = |r: &Value, s: &str| r["sources"][s]["imported"].as_u64().unwrap();
    assert_eq!(imported(&first, "accounts"), 299, "{first}");
    assert_eq!(imported(&first, "billing"), 200 - 1 - 1 - 1, "{first}");
    assert_eq!(
        (imported(&dry, "accounts"), imported(&dry, "billing")),
        (299, 197),
        "the dry run reports what the import does"
    );
    assert_eq!(first["duplicates_with_same_content"], 1);
    let collisions = first["collisions"].as_array().unwrap();
    assert_eq!(collisions.len(), 1, "{first}");
    assert_eq!(collisions[0]["id"], json!(collision));
    let shown: Vec<&str> = collisions[0]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["accounts", "billing"], "both contents are shown");
    assert!(collisions[0]["sources"][1]["content"]["data"]["cents"].is_number());
    let refused = first["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{first}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("\"last tuesday\" is not a time"),
        "{refused:?}"
    );
    // The cleaning counts, minus the rows not imported (collision: accounts row 7 and billing
    // row 3; duplicate: billing row 4 counted in accounts only; bad time: billing row 5).
    let cleaned = &first["cleaned"];
    let fixes_of = |rows: &[u32]| {
        let mut n = [0u64; 5];
        for i in rows {
            n[0] += u64::from(i % 3 == 1);
            n[1] += u64::from(i % 3 == 2);
            n[2] += u64::from(i % 5 == 0);
            n[3] += u64::from(i % 5 == 1);
            n[4] += u64::from(i % 4 != 0);
        }
        n
    };
    // Skipped rows: accounts 7; billing 3, 4 (before cleaning) and 5 (its time fails cleaning).
    let skipped = fixes_of(&[7, 3, 4, 5]);
    let want = [
        expect.legacy_type_dropped,
        expect.name_from_legacy_type,
        expect.null_subject,
        expect.missing_subject,
        expect.time_rewritten,
    ];
    let got = [
        "dropped legacy `type`",
        "namespace and type from legacy `type`",
        "null subject",
        "missing subject",
        "time rewritten as RFC 3339",
    ]
    .map(|k| cleaned[k].as_u64().unwrap_or(0));
    for k in 0..5 {
        assert_eq!(
            got[k],
            want[k] - skipped[k],
            "cleaning count {k}: {cleaned}"
        );
    }
    // Billing rows 0, 5, 10, … have no account.
    assert_eq!(
        first["without_stream_key"].as_u64().unwrap(),
        expect.without_key - 1,
        "billing row 5 (bad time) is refused before its stream is chosen"
    );

    let events = read_all();
    assert_eq!(events.len(), 299 + 197);
    let mut last = None;
    for e in &events {
        assert!(
            last.is_none_or(|t| t <= e.context.time),
            "the log is in time order"
        );
        last = Some(e.context.time);
        assert!(
            e.data.get("type").is_none(),
            "legacy `type` dropped: {}",
            e.data
        );
        match e.event_type.as_str() {
            "UserRegistered" => {
                let r: Registered = e.decode().unwrap();
                assert_eq!(e.stream, format!("account-{}", r.account_id));
            }
            "InvoicePaid" => {
                let p: Paid = e.decode().unwrap();
                assert!(p.cents >= 0);
                assert!(
                    e.stream.starts_with("account-") || e.stream == "legacy-billing",
                    "{}",
                    e.stream
                );
            }
            other => panic!("unexpected type {other}"),
        }
    }

    let again = import(&[]);
    assert_eq!(
        (imported(&again, "accounts"), imported(&again, "billing")),
        (0, 0),
        "a re-run stores nothing new: {again}"
    );
    assert_eq!(
        again["sources"]["accounts"]["already_present"]
            .as_u64()
            .unwrap()
            + again["sources"]["billing"]["already_present"]
                .as_u64()
                .unwrap(),
        299 + 197
    );
    assert_eq!(read_all().len(), 299 + 197);

    // The schema census: two types, version 1, with their counts.
    let out = run(&["--url", &store, "schema", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let census: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<(String, u64, u64)> = census
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                format!(
                    "{}.{}",
                    e["namespace"].as_str().unwrap(),
                    e["type"].as_str().unwrap()
                ),
                e["version"].as_u64().unwrap(),
                e["events"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("accounts.UserRegistered".to_owned(), 1, 299),
            ("billing.InvoicePaid".to_owned(), 1, 197)
        ]
    );

    // Mistakes are one line.
    let out = run(&["--url", &store, "import-legacy", "--source", "nourl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not NAME=URL"));
    let out = run(&[
        "--url",
        &store,
        "import-legacy",
        "--source",
        &sa,
        "--stream-key",
        "account_id",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither data.FIELD"));
}
