//! What a projection is, and where its events go: the [`Target`] a runner drives.

use std::future::Future;
use std::sync::Arc;

use crate::error::{BoxError, Error};
use crate::model::{Position, RecordedEvent};
use crate::projection::name::ProjectionName;
use crate::projection::state::{Generation, PartitionState};
use crate::projection::store::ProjectionStore;
use crate::query::Query;

/// A projection: a read model built from the events a [`Query`] selects.
///
/// Its name identifies it in the store (its checkpoints, its leases, its lines in
/// `event-store projections list`); bumping its version rebuilds it from the start, beside the
/// current model, which it replaces when caught up. How the events are applied is the handler's
/// trait: a transactional one on the store's own database (`event_store_postgres::PgProjection`,
/// `event_store_sqlite::SqliteProjection`), or [`Handle`] for anything else.
pub trait Projection: Send + Sync + 'static {
    /// The projection's name (see [`ProjectionName`] for the rules).
    const NAME: &'static str;
    /// The projection's version: bump it when the handler changes what it builds, and the read
    /// model is rebuilt (blue/green).
    const VERSION: u32 = 1;

    /// The events the projection is built from (default: every event). Filtered in the store.
    fn query(&self) -> Query {
        Query::all()
    }
}

/// Where one batch goes: its projection, generation and partition, and the state to save with it.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    /// The projection.
    pub projection: &'a ProjectionName,
    /// The generation the batch is applied to.
    pub generation: &'a Generation,
    /// The partition's state before the batch: the save is a check-and-set on its checkpoint.
    pub previous: &'a PartitionState,
    /// The partition's state after the batch (its checkpoint is the last position read, which
    /// may be past the last event when other partitions' events followed it).
    pub next: PartitionState,
    /// The batch's events, in log order (only this partition's).
    pub events: &'a [RecordedEvent],
    /// The events read together, which `events` is a part of (from `offset`).
    pub(crate) all: &'a Arc<[RecordedEvent]>,
    pub(crate) offset: usize,
}

/// A batch's events as an owned handle that clones cheaply (for a target that hands them to
/// another thread, as SQLite's writer, without copying them).
#[derive(Debug, Clone)]
pub struct SharedEvents {
    all: Arc<[RecordedEvent]>,
    start: usize,
    end: usize,
}

impl std::ops::Deref for SharedEvents {
    type Target = [RecordedEvent];

    fn deref(&self) -> &[RecordedEvent] {
        self.all.get(self.start..self.end).unwrap_or_default()
    }
}

impl Batch<'_> {
    /// The batch's events as an owned handle, without copying them.
    pub fn shared_events(&self) -> SharedEvents {
        SharedEvents {
            all: Arc::clone(self.all),
            start: self.offset,
            end: self.offset + self.events.len(),
        }
    }

    /// The checkpoint the save expects (the previous state's).
    pub fn expected(&self) -> Position {
        self.previous.checkpoint
    }

    /// The partition's state after only the events before `events[index]` (what a target saves
    /// when it keeps the part of a batch before a failing event).
    pub fn state_before(&self, index: usize) -> PartitionState {
        state_before(self.previous, self.events, index)
    }
}

/// `previous` advanced past `events[..index]`.
pub(crate) fn state_before(
    previous: &PartitionState,
    events: &[RecordedEvent],
    index: usize,
) -> PartitionState {
    let mut state = previous.clone();
    if let Some(last) = index.checked_sub(1).and_then(|i| events.get(i)) {
        state.checkpoint = last.position;
    }
    state.applied = previous.applied + index.min(events.len()) as u64;
    state.parked = None;
    state.updated_at = chrono::Utc::now();
    state
}

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The handler failed on `events[index]`. When `committed`, the events before it were
    /// applied and the partition's checkpoint saved after them; otherwise nothing was.
    #[error("the handler failed: {source}")]
    Handler {
        /// The failing event's index in the batch.
        index: usize,
        /// Whether the events before it were applied and checkpointed.
        committed: bool,
        /// The handler's error.
        #[source]
        source: BoxError,
    },
    /// Preparing or switching a generation failed in the handler's code (retried).
    #[error("preparing or switching a generation failed: {source}")]
    Setup {
        /// The handler's error.
        #[source]
        source: BoxError,
    },
    /// The store failed (retried), or the partition was taken over ([`Error::Fenced`]: the
    /// runner stops working on it).
    #[error(transparent)]
    Store(#[from] Error),
}

/// Where a projection's events go, for one kind of store: what a [`Runner`](crate::projection::Runner)
/// drives. The adapters implement it for transactional handlers; [`AtLeastOnce`] implements it
/// for every store.
pub trait Target<S: ProjectionStore>: Send + Sync + 'static {
    /// The projection.
    type Projection: Projection;

    /// The projection.
    fn projection(&self) -> &Self::Projection;

    /// Prepares a generation before its first batch (creates its tables), and marks it prepared
    /// ([`ProjectionStore::mark_created`]), once across runners. `active`: readers see this
    /// generation at once (the first one).
    fn prepare(
        &self,
        store: &S,
        projection: &ProjectionName,
        generation: &Generation,
        active: bool,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;

    /// Applies a batch and saves `batch.next` as the partition's state (a check-and-set on
    /// `batch.expected`); transactional targets do both in one transaction.
    fn apply(
        &self,
        store: &S,
        batch: Batch<'_>,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;

    /// Makes the caught-up building generation `to` the one readers see, replacing `from`
    /// ([`ProjectionStore::switch_generation`]); returns whether it switched (`false`: another
    /// runner did).
    fn switch(
        &self,
        store: &S,
        projection: &ProjectionName,
        from: Option<&Generation>,
        to: &Generation,
    ) -> impl Future<Output = Result<bool, ApplyError>> + Send;
}

/// Which generation and partition an at-least-once handler is called for.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The projection.
    pub projection: &'a ProjectionName,
    /// The generation (a handler that keeps generations apart, to switch blue/green, writes
    /// this one's).
    pub generation: u64,
    /// The partition.
    pub partition: u32,
}

/// An at-least-once handler: for read models kept anywhere but the store's own database
/// (another database, a search index, an HTTP service). Run it with [`AtLeastOnce`].
///
/// The partition's checkpoint is saved after [`Handle::flush`] succeeds, so after a crash the
/// events since the last checkpoint are handled again: de-duplicate by the event's
/// [`id`](RecordedEvent::id) or [`position`](RecordedEvent::position) (positions grow within a
/// partition), or make the writes idempotent.
pub trait Handle: Projection {
    /// Handles one event.
    fn handle(
        &self,
        scope: Scope<'_>,
        event: &RecordedEvent,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Called after each batch's events, before its checkpoint is saved: a handler that buffers
    /// writes sends them here. An error retries the whole batch.
    fn flush(&self, scope: Scope<'_>) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = scope;
        async { Ok(()) }
    }

    /// Called once before a generation's first event (create an index, a table, …).
    fn prepare(
        &self,
        projection: &ProjectionName,
        generation: u64,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (projection, generation);
        async { Ok(()) }
    }

    /// Called when generation `to` replaces `from` (point readers at it, drop the old one).
    fn switch(
        &self,
        projection: &ProjectionName,
        from: Option<u64>,
        to: u64,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (projection, from, to);
        async { Ok(()) }
    }
}

/// The [`Target`] of an at-least-once [`Handle`]r, on any [`ProjectionStore`]: each event is
/// handled, then the batch flushed, then the checkpoint saved.
#[derive(Debug, Clone, Default)]
pub struct AtLeastOnce<H>(pub H);

impl<S: ProjectionStore, H: Handle> Target<S> for AtLeastOnce<H> {
    type Projection = H;

    fn projection(&self) -> &H {
        &self.0
    }

    async fn prepare(
        &self,
        store: &S,
        projection: &ProjectionName,
        generation: &Generation,
        active: bool,
    ) -> Result<(), ApplyError> {
        self.0
            .prepare(projection, generation.generation)
            .await
            .map_err(|source| ApplyError::Setup { source })?;
        if active {
            self.0
                .switch(projection, None, generation.generation)
                .await
                .map_err(|source| ApplyError::Setup { source })?;
        }
        store
            .mark_created(projection, generation.generation)
            .await?;
        Ok(())
    }

    async fn apply(&self, store: &S, batch: Batch<'_>) -> Result<(), ApplyError> {
        let scope = Scope {
            projection: batch.projection,
            generation: batch.generation.generation,
            partition: batch.next.partition,
        };
        for (index, event) in batch.events.iter().enumerate() {
            if let Err(source) = self.0.handle(scope, event).await {
                // Keep what was handled: checkpoint after the events before the failing one.
                let committed = index > 0
                    && self.0.flush(scope).await.is_ok()
                    && store
                        .save_partition(
                            batch.projection,
                            &batch.state_before(index),
                            batch.expected(),
                        )
                        .await
                        .is_ok();
                return Err(ApplyError::Handler {
                    index,
                    committed,
                    source,
                });
            }
        }
        self.0
            .flush(scope)
            .await
            .map_err(|source| ApplyError::Handler {
                index: batch.events.len().saturating_sub(1),
                committed: false,
                source,
            })?;
        store
            .save_partition(batch.projection, &batch.next, batch.expected())
            .await?;
        Ok(())
    }

    async fn switch(
        &self,
        store: &S,
        projection: &ProjectionName,
        from: Option<&Generation>,
        to: &Generation,
    ) -> Result<bool, ApplyError> {
        let from = from.map(|g| g.generation);
        self.0
            .switch(projection, from, to.generation)
            .await
            .map_err(|source| ApplyError::Setup { source })?;
        Ok(store
            .switch_generation(projection, from, to.generation)
            .await?)
    }
}
