//! What an append expects of its stream.

use std::fmt;

/// What an append expects of its stream; a mismatch stores nothing and returns
/// [`Error::Conflict`](crate::Error::Conflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExpectedVersion {
    /// No expectation: append at the end, whatever the stream holds.
    #[default]
    Any,
    /// The stream must not exist yet (it has no event).
    NoStream,
    /// The stream must exist (it has at least one event).
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` (`None`: no stream) satisfies this expectation.
    pub fn admits(self, actual: Option<u64>) -> bool {
        match (self, actual) {
            (Self::Any, _) | (Self::NoStream, None) | (Self::StreamExists, Some(_)) => true,
            (Self::Exact(e), Some(a)) => e == a,
            _ => false,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("an existing stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

impl From<Option<u64>> for ExpectedVersion {
    /// A stream's version as an expectation: `None` (no stream) is [`ExpectedVersion::NoStream`],
    /// `Some(n)` is [`ExpectedVersion::Exact`]`(n)` — what a decision made on that state expects.
    fn from(version: Option<u64>) -> Self {
        version.map_or(Self::NoStream, Self::Exact)
    }
}
