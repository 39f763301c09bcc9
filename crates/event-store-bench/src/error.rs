//! The harness's error: what failed, and why.

use std::fmt::Display;

use event_store::BoxError;

/// A benchmark step that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A step failed.
    #[error("{what}: {source}")]
    Step {
        /// What the harness was doing.
        what: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// A step found something it did not expect.
    #[error("{0}")]
    Unexpected(String),
    /// A service to measure is unreachable: the run skips that backend.
    #[error("cannot reach {service}: {source}")]
    Unreachable {
        /// The service.
        service: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
}

/// The harness's result type.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Adds what the harness was doing to a failure.
pub(crate) trait Context<T> {
    fn context(self, what: impl Display) -> Result<T>;
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<BoxError>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| BenchError::Step {
            what: what.to_string(),
            source: e.into(),
        })
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| BenchError::Step {
            what: what().to_string(),
            source: e.into(),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Result<T> {
        self.ok_or_else(|| BenchError::Unexpected(what.to_string()))
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| BenchError::Unexpected(what().to_string()))
    }
}

/// Fails with `message` unless `ok`.
pub(crate) fn ensure(ok: bool, message: impl Display) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(BenchError::Unexpected(message.to_string()))
    }
}

macro_rules! from_errors {
    ($($t:ty => $what:literal),* $(,)?) => {
        $(
            impl From<$t> for BenchError {
                fn from(e: $t) -> Self {
                    Self::Step { what: $what.to_owned(), source: e.into() }
                }
            }
        )*
    };
}

from_errors!(
    event_store::Error => "the store",
    std::io::Error => "I/O",
    serde_json::Error => "JSON",
    rusqlite::Error => "SQLite",
    tokio_postgres::Error => "PostgreSQL",
    lapin::Error => "RabbitMQ",
    tokio::task::JoinError => "a task",
);
