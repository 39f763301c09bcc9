//! Projections: read models kept up to date from the log, durably, in order, in parallel, and
//! rebuilt without readers ever seeing half a model.
//!
//! A [`Projection`] names itself, versions itself and says which events it wants (a
//! [`Query`](crate::Query)); its handler says where they go:
//!
//! - **Transactional** (`event_store_postgres::PgProjection`,
//!   `event_store_sqlite::SqliteProjection`): the handler writes the read model in a transaction
//!   on the store's own database, and the partition's checkpoint is saved in the same
//!   transaction, so after any crash the model reflects each event **exactly once**.
//! - **At least once** ([`Handle`], run as [`AtLeastOnce`]): anything else. The checkpoint is
//!   saved after the handler; after a crash the events since it are handled again, with their
//!   id and position to de-duplicate by.
//!
//! A [`Runner`] drives one projection: it catches up from the stored checkpoints (or the start),
//! then follows the log live on the store's wake-ups with no gap between the two (it reads
//! final events only, so its checkpoint never skips a late commit). Work comes in batches of at
//! most `batch_size` events, committed with their checkpoint; once caught up, a batch waits at
//! most `batch_time` for more events.
//!
//! **Partitions.** Events are split into partitions by a hash of their stream id
//! ([`partition_of`]): each partition applies its events in log order, so a stream's events are
//! always applied in order, and partitions proceed independently. Each partition is worked on
//! by one runner at a time across every process, under a lease ([`ProjectionStore::try_lease`]:
//! a PostgreSQL advisory lock held by a session, a lock file on SQLite); runners count each
//! other and share the partitions, and when one dies its partitions are taken by the others.
//! Every save is a check-and-set on the partition's checkpoint, so a runner that lost its lease
//! without knowing it cannot apply anything twice.
//!
//! **Failures.** A failing event is retried with backoff ([`RunnerOptions::retry`]); when it
//! keeps failing, its partition **parks**: the event's position, id and error are saved in the
//! partition's state and shown by the status, nothing after it is applied, and other partitions
//! go on. [`Projections::resume`] (`event-store projections resume NAME`) continues from that
//! event after a fix. Nothing is ever skipped silently.
//!
//! **Generations.** A version bump, or [`Projections::reset`], starts a new generation built
//! beside the active one (into tables of its own, for SQL read models); readers keep seeing the
//! active one until every partition of the new one has caught up, and then see the new one,
//! switched in one transaction (blue/green). During a reset the active generation is kept up to
//! date too.
//!
//! **Status.** [`Projections::status`] gives each generation's partitions with their checkpoint,
//! lag in events and seconds, and whether they run or are parked; [`RunnerHandle::metrics`]
//! counts what a runner did; both are logged as `tracing` events.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> event_store::Result<()> {
//! use std::sync::{Arc, Mutex};
//! use event_store::{BoxError, EventStore, NewEvent, Query, RecordedEvent};
//! use event_store::projection::{AtLeastOnce, Handle, Projection, Scope};
//! use serde_json::json;
//!
//! /// Counts orders per customer, in memory (a real one would write a table).
//! #[derive(Clone, Default)]
//! struct OrdersPerCustomer(Arc<Mutex<std::collections::HashMap<String, u64>>>);
//!
//! impl Projection for OrdersPerCustomer {
//!     const NAME: &'static str = "orders-per-customer";
//!     fn query(&self) -> Query {
//!         Query::all().event_type("shop", "OrderPlaced")
//!     }
//! }
//!
//! impl Handle for OrdersPerCustomer {
//!     async fn handle(&self, _: Scope<'_>, event: &RecordedEvent) -> Result<(), BoxError> {
//!         let customer = event.data["customer"].as_str().ok_or("no customer")?.to_owned();
//!         *self.0.lock().unwrap().entry(customer).or_default() += 1;
//!         Ok(())
//!     }
//! }
//!
//! let store = EventStore::memory();
//! let mut last = event_store::Position::START;
//! for (order, customer) in [("order-1", "ada"), ("order-2", "bob"), ("order-3", "ada")] {
//!     let placed = NewEvent::new("shop", "OrderPlaced", json!({"customer": customer}));
//!     let saved = store.append(order, Default::default(), vec![placed]).await?;
//!     last = saved.last_position().unwrap_or(last);
//! }
//! let model = OrdersPerCustomer::default();
//! let runner = store.runner(AtLeastOnce(model.clone())).spawn();
//!
//! // Read your writes: wait until the model has applied everything up to the last save.
//! let projections = store.projections();
//! projections.wait_for("orders-per-customer", last, std::time::Duration::from_secs(5)).await?;
//! assert_eq!(model.0.lock().unwrap()["ada"], 2);
//!
//! let status = projections.status("orders-per-customer").await?.expect("it has run");
//! assert_eq!(status.active.expect("one generation").lag_events, 0);
//! runner.stop().await?;
//! # Ok(()) }
//! ```

pub(crate) mod memory;
mod name;
pub(crate) mod runner;
mod state;
mod status;
mod store;
mod target;

pub use memory::MemoryLease;
pub use name::{
    MAX_PROJECTION_NAME_BYTES, MAX_TABLE_NAME_BYTES, ProjectionName, Tables, generation_of,
    physical,
};
pub use runner::{MAX_MEMBERS, Runner, RunnerHandle, RunnerMetrics, RunnerOptions};
pub use state::{Generation, Parked, PartitionState, ProjectionRecord, Revision};
pub use status::{
    CATCHING_UP_LAG, GenerationStatus, LAG_SCAN_LIMIT, PartitionStatus, ProjectionState,
    ProjectionStatus, Projections,
};
pub use store::{Lease, LeaseKey, LeaseKind, ProjectionStore, partition_of};
pub use target::{ApplyError, AtLeastOnce, Batch, Handle, Projection, Scope, SharedEvents, Target};
