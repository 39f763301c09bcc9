//! Support shared by the CLI's test files.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

/// The test PostgreSQL (`EVENT_STORE_TEST_PG`): its URL, a runtime and an admin connection, or
/// `None` (loudly) when it is unreachable outside CI.
pub fn postgres() -> Option<(String, tokio::runtime::Runtime, tokio_postgres::Client)> {
    let url = std::env::var("EVENT_STORE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let rt = runtime();
    let admin = rt.block_on(async {
        let (client, conn) = event_store_testkit::require_service(
            "PostgreSQL (EVENT_STORE_TEST_PG)",
            tokio_postgres::connect(&url, tokio_postgres::NoTls).await,
        )?;
        tokio::spawn(conn);
        Some(client)
    })?;
    Some((url, rt, admin))
}

/// A current-thread runtime for a test's own calls to a service.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `command` with `stdin` as its input and collects its output. The input is written from
/// a thread of its own: a command that prints as it reads must not stop reading because
/// nobody empties its stdout yet.
pub fn output_with_stdin(
    command: &mut std::process::Command,
    stdin: &[u8],
) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // A command that fails early closes its stdin: the rest of the input is not wanted.
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// Sends Ctrl-C (SIGINT) to a running command.
pub fn send_ctrl_c(child: &std::process::Child) {
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -INT {pid} failed");
}
