#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

// Lets the derives, which name `::event_store`, work inside this crate (the test kit).
#[cfg(feature = "testkit")]
extern crate self as event_store;

mod aggregate;
pub mod backend;
mod error;
mod event;
mod facade;
#[cfg(feature = "testkit")]
#[doc(hidden)]
pub mod fuzz;
pub mod json;
pub mod limits;
pub mod memory;
mod model;
pub mod ndjson;
mod query;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use aggregate::Aggregate;
pub use backend::{
    Appended, Cache, CacheKey, CachedState, Checkpoints, Emitter, Handler, NoCache, NoEmitter,
    Store, StoreStats, Subscription, SubscriptionSpec, TypeCount,
};
pub use error::{BoxError, Error, Result};
pub use event::{Event, EventType, Events, decode_event, encode_event};
#[cfg(feature = "derive")]
pub use event_store_derive::{Event, Events};
pub use facade::{DEFAULT_POLL_INTERVAL, EventStore, Folded, PAGE_SIZE};
pub use limits::{AppendBatch, PendingEvent};
pub use memory::{InProcessEmitter, MemoryCache, MemoryStore};
pub use model::{
    Direction, EventContext, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId,
};
pub use query::{Query, TypeFilter, json_eq};

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
