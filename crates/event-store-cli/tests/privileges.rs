//! The documented least-privilege grants (`event-store-postgres/sql/grants.sql`) are exactly what
//! the CLI needs: every everyday subcommand runs as a role holding only them, and `init` (the
//! owner's job) fails with one clear line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_event-store");
const GRANTS: &str = include_str!("../../event-store-postgres/sql/grants.sql");

fn amqp_url() -> String {
    std::env::var("EVENT_STORE_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn cli(url: &str, schema: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["--url", url, "--schema", schema])
        .args(args)
        .env_remove("EVENT_STORE_URL")
        .env_remove("EVENT_STORE_SCHEMA")
        .env_remove("EVENT_STORE_LOG");
    c
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn with_stdin(mut c: Command, input: &[u8]) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_cli_runs_with_exactly_the_documented_grants() {
    let Some((url, rt, admin)) = common::postgres() else {
        return;
    };
    let id = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let schema = format!("es_cli_priv_{id}");
    let role = format!("es_cli_app_{id}");
    let exchange = format!("es_test_priv_{id}");

    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ok(
            &cli(&url, &schema, &["init"]).output().unwrap(),
            "init as the owner",
        );
        let grants = GRANTS
            .replace("event_store.", &format!("\"{schema}\"."))
            .replace("SCHEMA event_store", &format!("SCHEMA \"{schema}\""))
            .replace("app_role", &role);
        rt.block_on(admin.batch_execute(&format!("CREATE ROLE {role} LOGIN; {grants}")))
            .unwrap();
        let url = url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
        let run = |args: &[&str]| cli(&url, &schema, args).output().unwrap();

        ok(
            &run(&["append", "order-1", "shop.Placed", r#"{"total": 1}"#]),
            "append",
        );
        ok(
            &with_stdin(
                cli(&url, &schema, &["append", "--ndjson"]),
                br#"{"stream":"order-2","namespace":"shop","type":"Placed","data":{"total":2}}"#,
            ),
            "append --ndjson",
        );
        assert_eq!(ok(&run(&["read"]), "read").lines().count(), 2);
        assert_eq!(
            ok(&run(&["read", "order-1"]), "read a stream")
                .lines()
                .count(),
            1
        );
        assert_eq!(
            ok(&run(&["tail", "--from", "0", "--limit", "2"]), "tail")
                .lines()
                .count(),
            2
        );
        let stats: serde_json::Value =
            serde_json::from_str(&ok(&run(&["stats", "--format", "json"]), "stats")).unwrap();
        assert_eq!(stats["events"], 2);
        let exported = ok(&run(&["export"]), "export");
        let imported = with_stdin(cli(&url, &schema, &["import", "-"]), exported.as_bytes());
        ok(&imported, "import");

        // The owner's job is refused in one line.
        let init = run(&["init"]);
        assert!(!init.status.success());
        let err = String::from_utf8_lossy(&init.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");

        // The relay keeps its checkpoint with the same grants.
        let mut publish = cli(
            &url,
            &schema,
            &["publish", "--amqp", &amqp_url(), "--exchange", &exchange],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let checkpoint = loop {
            let rows = rt
                .block_on(admin.query(&format!("SELECT name FROM \"{schema}\".checkpoints"), &[]))
                .unwrap();
            if let Some(r) = rows.first() {
                break Some(r.get::<_, String>(0));
            }
            if let Ok(Some(status)) = publish.try_wait() {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut publish.stderr.take().unwrap(), &mut err)
                    .unwrap();
                if err.contains("connecting to the broker") {
                    break event_store_testkit::require_service(
                        "RabbitMQ (EVENT_STORE_TEST_AMQP)",
                        Err::<String, _>(err),
                    );
                }
                panic!("publish ended ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "the relay saved no checkpoint");
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = publish.kill();
        let _ = publish.wait();
        if let Some(name) = checkpoint {
            assert!(name.starts_with("amqp-relay:"), "{name}");
        }
    }));

    rt.block_on(async {
        // One statement per call: a failure must not undo the others.
        for sql in [
            format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
            format!("DROP OWNED BY {role}"),
            format!("DROP ROLE IF EXISTS {role}"),
        ] {
            let _ = admin.batch_execute(&sql).await;
        }
        delete_exchange(&exchange).await;
    });
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

async fn delete_exchange(exchange: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(conn) =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    for q in [
        format!("{exchange}.replay-requests"),
        format!("{exchange}.replay-requests.dead-letter"),
    ] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for x in [exchange.to_owned(), format!("{exchange}.dead-letter")] {
        let _ = ch
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "cleanup".into()).await;
}
