//! Exit codes, and the errors that choose them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done (also when stdout was closed early, as by `head`) |
//! | 1 | the command failed (store unreachable, no store at the path, bad input data, …) |
//! | 2 | the command line is malformed (unknown flag, missing argument, bad value) |
//! | 3 | a version conflict: the stream was not at the expected version (re-read and retry) |
//! | 4 | the stream is closed (`event-store close`): no appends, no reads by stream |
//! | 130 | interrupted (Ctrl-C) while appending input; what was committed is said |

use std::process::ExitCode;

/// A mistake on the command line found after parsing (a value that only the store can judge,
/// two flags that do not go together): exit code 2, as for clap's own errors.
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Ctrl-C during an ingest: the message says what was committed; exit code 130.
#[derive(Debug)]
pub(crate) struct Interrupted(pub(crate) String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// A [`Usage`] error.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// Exit code 2: a malformed command line.
pub(crate) const USAGE: u8 = 2;
/// Exit code 3: a version conflict.
pub(crate) const CONFLICT: u8 = 3;
/// Exit code 4: the stream is closed.
pub(crate) const CLOSED: u8 = 4;
/// Exit code 130: interrupted (128 + SIGINT, as shells report it).
pub(crate) const INTERRUPTED: u8 = 130;

/// How a failed command ends: `None` when it should end quietly with success (stdout closed by
/// its reader), else the message and the exit code.
pub(crate) fn outcome(e: &anyhow::Error) -> Option<(String, ExitCode)> {
    if broken_pipe(e) {
        return None;
    }
    let code = if e.chain().any(<dyn std::error::Error>::is::<Usage>) {
        USAGE
    } else if e.chain().any(<dyn std::error::Error>::is::<Interrupted>) {
        INTERRUPTED
    } else if e.chain().any(|c| {
        c.downcast_ref::<event_store::Error>()
            .is_some_and(event_store::Error::is_conflict)
    }) {
        CONFLICT
    } else if e.chain().any(|c| {
        c.downcast_ref::<event_store::Error>()
            .is_some_and(event_store::Error::is_stream_closed)
    }) {
        CLOSED
    } else {
        1
    };
    Some((one_line(e), ExitCode::from(code)))
}

/// Whether the error is a write to a closed pipe (`read | head -1`): not a failure.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// The error and its causes on one line, each said once.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_error() {
        let code = |e: anyhow::Error| outcome(&e).map(|(_, c)| c);
        assert_eq!(code(usage("--from x")), Some(ExitCode::from(USAGE)));
        let conflict = event_store::Error::Conflict {
            stream: "s".into(),
            expected: event_store::ExpectedVersion::NoStream,
            actual: Some(1),
        };
        assert_eq!(
            code(anyhow::Error::new(conflict).context("line 3")),
            Some(ExitCode::from(CONFLICT))
        );
        let closed = event_store::Error::StreamClosed { stream: "s".into() };
        assert_eq!(
            code(anyhow::Error::new(closed).context("line 1")),
            Some(ExitCode::from(CLOSED))
        );
        assert_eq!(code(anyhow::anyhow!("down")), Some(ExitCode::FAILURE));
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(code(anyhow::Error::new(pipe)), None);
        let json = serde_json::Error::io(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(code(anyhow::Error::new(json).context("printing")), None);
    }
}
