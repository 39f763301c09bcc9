#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod aggregate;
mod backend;
mod batch;
pub mod closing;
mod cursor;
pub mod erasure;
mod error;
mod event;
mod facade;
#[doc = include_str!("guide.md")]
pub mod guide {}
pub mod json;
pub mod legacy;
pub mod limits;
mod memory;
pub mod metrics;
mod model;
pub mod ndjson;
pub mod projection;
mod query;
pub mod upcast;
mod version;

pub use aggregate::Aggregate;
pub use backend::{
    Appended, Cache, CacheKey, CachedState, Checkpoints, ClosedStream, Emitter, ForgetSubject,
    Handler, NoCache, NoEmitter, Publish, StateCache, Store, StoreStats, StreamInfo, Subscription,
    SubscriptionSpec, TypeCount,
};
pub use batch::{AppendBatch, MultiAppend, PendingEvent};
pub use cursor::{LogCursor, PAGE_SIZE, head, lag, page_rows};
pub use error::{BoxError, Error, Result};
pub use event::{Event, EventType, Events, decode_event, encode_event};
#[cfg(feature = "derive")]
pub use event_store_derive::{Event, Events};
pub use facade::{
    DEFAULT_CACHE_VERIFICATION, DEFAULT_POLL_INTERVAL, EventStore, ExecuteError, ExecuteOptions,
    Executed, Folded, MemoryEventStore, READ_AHEAD, READ_AHEAD_CHUNK, RetryPolicy, Undecodable,
};
pub use memory::{DeadLetter, InProcessEmitter, MemoryCache, MemoryStore};
pub use model::{
    CheckpointName, Direction, EventContext, NewEvent, Position, RecordedEvent, StreamId,
};
pub use query::{CheckedQuery, Query, TypeFilter, json_eq};
pub use uuid::Uuid;
pub use version::ExpectedVersion;

#[doc(hidden)]
pub mod __private {
    //! Items the derive macros expand to; not a public API.
    pub use serde_json::Value;

    use crate::EventType;

    const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Whether no two entries share a namespace and type (checked at compile time).
    pub const fn distinct(types: &[EventType]) -> bool {
        let mut i = 0;
        while i < types.len() {
            let mut j = i + 1;
            while j < types.len() {
                if same(types[i].namespace, types[j].namespace)
                    && same(types[i].name, types[j].name)
                {
                    return false;
                }
                j += 1;
            }
            i += 1;
        }
        true
    }
}
