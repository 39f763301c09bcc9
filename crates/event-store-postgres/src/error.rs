//! Mapping PostgreSQL errors onto the portable kinds of [`event_store::Error`].

use event_store::{Error, ExpectedVersion};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

pub(crate) const BACKEND: &str = "postgres";

/// A driver error as a backend error. The message never includes the connection string.
pub(crate) fn pg(what: &str, e: tokio_postgres::Error) -> Error {
    let message = match e.as_db_error() {
        Some(db) => format!("{what}: {} ({})", db.message(), db.code().code()),
        None if e.is_closed() => format!("{what}: the connection is closed"),
        None => format!("{what}: {e}"),
    };
    Error::backend_with(BACKEND, message, e)
}

pub(crate) fn pool_error(what: &str, e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg(what, e),
        other => Error::backend_with(BACKEND, format!("{what}: {other}"), other),
    }
}

/// Whether a failed append may simply be tried again: nothing was stored and a new attempt checks
/// everything afresh. Serialization failures and deadlocks say so themselves; a clash on the
/// `(stream, version)` index means the append computed its versions from a snapshot taken before
/// the stream's lock (a caller's transaction at `repeatable read` or above).
pub(crate) fn retryable(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::T_R_SERIALIZATION_FAILURE
            || *db.code() == SqlState::T_R_DEADLOCK_DETECTED
            || (*db.code() == SqlState::UNIQUE_VIOLATION
                && db.constraint() == Some("events_stream_version"))
    })
}

/// Whether `append_events_many` asked for the careful path (SQLSTATE ES425: an expectation
/// failed or an id is stored; nothing was written).
pub(crate) fn careful_path(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.code().code() == "ES425")
}

/// Whether the server broke a deadlock by failing this transaction.
pub(crate) fn deadlock(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| *db.code() == SqlState::T_R_DEADLOCK_DETECTED)
}

/// An append's error, mapped: `Clash` when two appends raced to store the same id and the server
/// did not say which (the caller looks it up).
pub(crate) enum AppendError {
    Mapped(Error),
    Clash(tokio_postgres::Error),
}

/// Maps an append's error: the append function's own codes, then constraint violations.
pub(crate) fn append(
    e: tokio_postgres::Error,
    stream: &str,
    expected: ExpectedVersion,
) -> AppendError {
    if let Some(db) = e.as_db_error() {
        let detail = db.detail().unwrap_or_default();
        match db.code().code() {
            "ES409" => {
                return AppendError::Mapped(Error::Conflict {
                    stream: stream.to_owned(),
                    expected,
                    actual: detail.parse().ok(),
                });
            }
            "ES410" => {
                return AppendError::Mapped(Error::StreamClosed {
                    stream: stream.to_owned(),
                });
            }
            "ES422" => {
                if let Ok(id) = detail.parse::<Uuid>() {
                    return AppendError::Mapped(Error::DuplicateId { id });
                }
            }
            _ if *db.code() == SqlState::UNIQUE_VIOLATION
                && db.constraint() == Some("events_id") =>
            {
                // Two streams raced to store the same id: "Key (id)=(…) already exists."
                let id = detail
                    .split_once("=(")
                    .and_then(|(_, rest)| rest.split_once(')'))
                    .and_then(|(id, _)| id.parse().ok());
                return match id {
                    Some(id) => AppendError::Mapped(Error::DuplicateId { id }),
                    None => AppendError::Clash(e),
                };
            }
            _ => {}
        }
    }
    AppendError::Mapped(pg("append", e))
}
