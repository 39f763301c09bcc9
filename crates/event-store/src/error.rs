//! The one error type of the core and of every backend trait.

use std::borrow::Cow;

use uuid::Uuid;

use crate::version::ExpectedVersion;

/// A boxed error from a driver, a handler or any other source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the event store.
///
/// The variants are *portable kinds*: every backend maps its own failures onto them, so callers can
/// branch on what happened (retry a [`Error::Conflict`], report an [`Error::InvalidInput`] to a
/// user) without knowing which backend is in use. The driver's own error is kept as the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An append's [`ExpectedVersion`] did not hold; nothing was stored.
    #[error("version conflict on stream `{stream}`: expected {expected}, actual {}", display_actual(*.actual))]
    Conflict {
        /// The stream that was appended to.
        stream: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was refused (`None`: the stream does not exist).
        actual: Option<u64>,
    },

    /// An input was refused before anything was written.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field that was refused, as a path (`stream`, `events[2].data`, `position`, …).
        field: Cow<'static, str>,
        /// Why it was refused.
        reason: String,
    },

    /// An event id is already stored with other content (or in a batch that differs from the one
    /// being appended); nothing was stored.
    #[error("event id {id} is already stored with other content")]
    DuplicateId {
        /// The id that clashed.
        id: Uuid,
    },

    /// The stream is closed ([`Store::close_stream`](crate::Store::close_stream)): it takes no
    /// appends, and reads of it by stream are refused; its events are still in the global log.
    /// Reopening it is an explicit act (`event-store reopen`).
    #[error("stream `{stream}` is closed")]
    StreamClosed {
        /// The closed stream.
        stream: String,
    },

    /// An event's namespace and type are not among those a type of events can decode.
    #[error("unknown event type `{namespace}.{event_type}`")]
    UnknownEventType {
        /// The event's namespace.
        namespace: String,
        /// The event's type.
        event_type: String,
    },

    /// A stored event could not be decoded into the type asked for. It names the event so it can
    /// be found (`event-store read STREAM --from VERSION`), and keeps the cause as source: serde's
    /// error, an [`Error::Upcast`] or an [`Error::FutureVersion`].
    #[error(
        "could not decode event {id} (`{namespace}.{event_type}`, stream `{stream}` version {version}): {source}"
    )]
    Decode {
        /// The event's id.
        id: Uuid,
        /// The event's stream.
        stream: String,
        /// The event's version in its stream.
        version: u64,
        /// The event's namespace.
        namespace: String,
        /// The event's type.
        event_type: String,
        /// Why: serde's error, an [`Error::Upcast`] or an [`Error::FutureVersion`].
        #[source]
        source: BoxError,
    },

    /// An event's schema version is newer than the type decoding it knows: it was written by newer
    /// code. Upcasters only go forward, so the event cannot be read until this code is updated.
    #[error(
        "`{namespace}.{event_type}` version {stored} was written by newer code: this code knows versions 1 to {known}"
    )]
    FutureVersion {
        /// The event's namespace.
        namespace: String,
        /// The event's type.
        event_type: String,
        /// The schema version stored with the event.
        stored: u32,
        /// The newest version the decoding type knows.
        known: u32,
    },

    /// An upcaster could not bring an event from one schema version to the next (or the type's
    /// upcasters are declared wrongly, e.g. with a version missing from the chain).
    #[error("could not upcast `{namespace}.{event_type}` from version {from} to {to}: {reason}")]
    Upcast {
        /// The event's namespace (as stored).
        namespace: String,
        /// The event's type (as stored).
        event_type: String,
        /// The version the failing step starts from.
        from: u32,
        /// The version the failing step produces.
        to: u32,
        /// What went wrong.
        reason: String,
    },

    /// A value could not be encoded to or decoded from JSON.
    #[error("could not {what}")]
    Codec {
        /// What was being encoded or decoded.
        what: Cow<'static, str>,
        /// The underlying serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A projection partition's state moved under a runner: another runner saved it (it holds
    /// the partition now), or the generation was replaced or removed. Nothing was written; the
    /// runner that gets this stops working on the partition.
    #[error(
        "projection `{projection}` generation {generation} partition {partition} was taken over or replaced"
    )]
    Fenced {
        /// The projection.
        projection: String,
        /// The generation.
        generation: u64,
        /// The partition.
        partition: u32,
    },

    /// A sealed value, or a wrapped key, failed authentication: its bytes or what it is bound to
    /// (its subject, type and field) were changed, or the key is not the one that sealed it.
    /// Never garbage: nothing is decrypted.
    #[error("cannot authenticate {what}: it was changed, moved, or sealed with another key")]
    Unauthentic {
        /// What failed (`the personal field data.email of event …`, `the data key of …`).
        what: String,
    },

    /// A backend failed (connection lost, I/O error, constraint the store did not expect, …).
    /// After a failed append the outcome may be unknown; appends are idempotent by event id, so
    /// retrying with the same ids is safe.
    #[error("{backend} backend failed: {message}")]
    Backend {
        /// The backend: `memory`, `postgres`, `sqlite`, `amqp`, ….
        backend: &'static str,
        /// What the backend was doing.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
}

fn display_actual(actual: Option<u64>) -> String {
    match actual {
        Some(v) => format!("version {v}"),
        None => "no stream".to_owned(),
    }
}

impl Error {
    /// An [`Error::InvalidInput`] for `field`.
    pub fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Backend`] without a driver error.
    pub fn backend(backend: &'static str, message: impl Into<String>) -> Self {
        Self::Backend {
            backend,
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::Backend`] wrapping a driver error.
    pub fn backend_with(
        backend: &'static str,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            backend,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An [`Error::Codec`].
    pub fn codec(what: impl Into<Cow<'static, str>>, source: serde_json::Error) -> Self {
        Self::Codec {
            what: what.into(),
            source,
        }
    }

    /// Whether this is an optimistic-concurrency conflict (retrying after re-reading may succeed).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// Whether the input was refused (retrying the same call will fail again).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::InvalidInput { .. })
    }

    /// Whether an event id clashed with a stored event of other content.
    pub fn is_duplicate_id(&self) -> bool {
        matches!(self, Self::DuplicateId { .. })
    }

    /// Whether the stream is closed ([`Error::StreamClosed`]).
    pub fn is_stream_closed(&self) -> bool {
        matches!(self, Self::StreamClosed { .. })
    }

    /// Whether a projection partition was taken over ([`Error::Fenced`]).
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }

    /// The refused field, for [`Error::InvalidInput`].
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidInput { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// The result type of the event store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_both_versions() {
        let e = Error::Conflict {
            stream: "s".into(),
            expected: ExpectedVersion::Exact(3),
            actual: Some(5),
        };
        assert_eq!(
            e.to_string(),
            "version conflict on stream `s`: expected version 3, actual version 5"
        );
        assert!(e.is_conflict());
        let e = Error::Conflict {
            stream: "s".into(),
            expected: ExpectedVersion::StreamExists,
            actual: None,
        };
        assert_eq!(
            e.to_string(),
            "version conflict on stream `s`: expected an existing stream, actual no stream"
        );
    }

    #[test]
    fn invalid_input_names_the_field() {
        let e = Error::invalid("events[1].data", "must be a JSON object");
        assert_eq!(e.field(), Some("events[1].data"));
        assert_eq!(
            e.to_string(),
            "invalid events[1].data: must be a JSON object"
        );
    }
}
