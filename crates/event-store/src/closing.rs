//! Closing streams: a soft delete that removes nothing.
//!
//! A closed stream takes no appends ([`Error::StreamClosed`](crate::Error::StreamClosed)), is
//! left out of [`Store::streams`](crate::Store::streams), and reads of it by stream
//! ([`Store::read_stream`](crate::Store::read_stream),
//! [`Store::stream_version`](crate::Store::stream_version)) are refused with `StreamClosed`. Its
//! events stay in the global log, so projections, subscribers, the relay and queries (folds over
//! a query, `read --include-closed`) still see them. Reopening is an explicit act.
//!
//! [`EventStore::close_stream`](crate::EventStore::close_stream) and
//! [`EventStore::reopen_stream`](crate::EventStore::reopen_stream) record each act in
//! [`STREAMS_STREAM`]: who, which stream, when (the event's time).

use serde::{Deserialize, Serialize};

/// The stream that records closing and reopening streams.
pub const STREAMS_STREAM: &str = "event_store-streams";

/// The prefix of the store's own streams ([`STREAMS_STREAM`],
/// [`FORGOTTEN_STREAM`](crate::erasure::FORGOTTEN_STREAM)): they cannot be closed, since they
/// record what operators do.
pub const SYSTEM_PREFIX: &str = "event_store-";

/// Recorded in [`STREAMS_STREAM`] when a stream is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamClosed {
    /// The stream closed.
    pub stream: String,
    /// Who closed it (an operator, a service, a ticket).
    pub by: String,
    /// Whether it was open (`false`: it was closed already, and this records a repeated act).
    pub was_open: bool,
}

impl crate::Event for StreamClosed {
    const NAMESPACE: &'static str = "event_store";
    const TYPE: &'static str = "StreamClosed";
}

/// Recorded in [`STREAMS_STREAM`] when a closed stream is reopened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamReopened {
    /// The stream reopened.
    pub stream: String,
    /// Who reopened it.
    pub by: String,
    /// Whether it was closed (`false`: it was open already).
    pub was_closed: bool,
}

impl crate::Event for StreamReopened {
    const NAMESPACE: &'static str = "event_store";
    const TYPE: &'static str = "StreamReopened";
}
