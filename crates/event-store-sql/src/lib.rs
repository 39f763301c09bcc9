#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod compile;
pub mod convert;
pub mod dialects;
mod driver;
pub mod keys;
mod migrate;
pub mod projection;
mod row;
pub mod store;

pub use compile::{Compiled, Dialect, Finality, Param, compile, subject_object};
pub use driver::{Decode, Driver, Queries, Routing, SqlRow, Statement};
pub use migrate::{AppliedMigration, Migration, MigrationStatus, pending};
pub use row::EventRow;

#[doc(hidden)]
pub mod __private {
    //! What the macros expand to; not a public API.
    pub use futures::Stream;
    pub use tokio::sync::watch;

    /// A page of events.
    pub type Events = event_store::Result<Vec<event_store::RecordedEvent>>;
    /// Named checkpoints.
    pub type Named = event_store::Result<Vec<(event_store::CheckpointName, event_store::Position)>>;
}
