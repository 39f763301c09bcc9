//! The traits the adapters implement: [`Store`], [`Checkpoints`], [`Cache`] and [`Emitter`].
//!
//! Every method returns a `Send` future, so the traits work on a multi-threaded runtime without
//! boxing; none is object-safe (`dyn`), on purpose: backends are chosen at compile time. The CLI,
//! which picks one at run time, wraps the two SQL stores in an enum that implements the traits
//! by matching (design.md §7.3). Inputs reach the traits validated: an [`AppendBatch`], a
//! [`StreamId`], a [`CheckedQuery`], a [`CheckpointName`].

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt as _};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::aggregate::Aggregate;
use crate::batch::{AppendBatch, MultiAppend};
use crate::cursor::page_rows;
use crate::error::{BoxError, Result};
use crate::model::{CheckpointName, Direction, Position, RecordedEvent, StreamId};
use crate::query::{CheckedQuery, TypeFilter};

/// What an append stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The batch's events as recorded, in order.
    pub events: Vec<RecordedEvent>,
    /// `false` when every event was already stored with the same content (an idempotent retry):
    /// `events` are then the originals and nothing new was stored or should be emitted.
    pub stored: bool,
}

impl Appended {
    /// The stream's version after the append (the last event's version).
    pub fn last_version(&self) -> Option<u64> {
        self.events.last().map(|e| e.version)
    }

    /// The last event's position.
    pub fn last_position(&self) -> Option<Position> {
        self.events.last().map(|e| e.position)
    }
}

/// An event log: the store adapter's trait.
///
/// # Contract (checked by [`testkit`](crate#conformance-kit))
/// - An append stores all of its events or none, with consecutive versions from the stream's
///   next version, after checking the batch's [`ExpectedVersion`](crate::ExpectedVersion) against
///   the stream atomically (a mismatch is [`Error::Conflict`](crate::Error::Conflict) with the actual version).
/// - An append whose events' ids are all stored with the same content returns the originals
///   with `stored: false`; any other clash of ids is [`Error::DuplicateId`](crate::Error::DuplicateId).
/// - Positions grow in commit order of each stream: a stream's versions and positions agree.
/// - [`Store::read_all`] returns only *final* events: once it has returned an event, no event
///   with a lower position can appear later. It never skips an event, however writers interleave.
pub trait Store: Send + Sync + 'static {
    /// Appends a validated batch to one stream.
    fn append(&self, batch: AppendBatch) -> impl Future<Output = Result<Appended>> + Send;

    /// Appends to several streams atomically: every batch (each checked against its own
    /// expected version, each an idempotent retry when all its ids are stored with the same
    /// content) or none; the results are in batch order. Streams are locked in one global order
    /// (no deadlock between two such appends).
    fn append_many(
        &self,
        batches: MultiAppend,
    ) -> impl Future<Output = Result<Vec<Appended>>> + Send;

    /// Reads up to `limit` events of a stream: forward, the versions from `from` up; backward,
    /// the versions from `from` down (`u64::MAX`: from the last).
    fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send;

    /// [`Store::read_stream`] as a stream: the same events, yielded as the backend decodes
    /// them (see [`Store::read_all_rows`]). The default reads one page with `read_stream`.
    fn read_stream_rows<'a>(
        &'a self,
        stream: &'a StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'a {
        futures::stream::once(self.read_stream(stream, from, direction, limit)).flat_map(page_rows)
    }

    /// Reads up to `limit` events of the global log after `after`, in position order, returning
    /// only final events (see the trait docs).
    fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send;

    /// [`Store::read_all`] as a stream: the same events, yielded as the backend decodes them,
    /// so a caller handles the first ones while the rest are still arriving. Backends that can
    /// stream rows override it (PostgreSQL); the default reads one page with `read_all`. The
    /// stream ends after `limit` events or at the end of the final events, like the page would;
    /// an error ends it after it is yielded.
    fn read_all_rows(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + '_ {
        futures::stream::once(self.read_all(after, limit)).flat_map(page_rows)
    }

    /// Reads up to `limit` final events of the global log before `before` (`None`: from the
    /// end), newest first.
    fn read_all_backward(
        &self,
        before: Option<Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send;

    /// Counts for `event-store stats`: events, streams, events per type, size, head.
    fn stats(&self) -> impl Future<Output = Result<StoreStats>> + Send;

    /// Reads up to `limit` *final* events matching `query` after `after`, in position order: the
    /// filtered form of [`Store::read_all`], executed in the store. Once it returned an event, no
    /// matching event with a lower position can appear later, so a follower may keep the last
    /// position it returned as its checkpoint (design.md §4.5).
    fn read_final(
        &self,
        query: &CheckedQuery,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send;

    /// Reads up to `limit` *committed* events matching `query` after `after`, in position order.
    ///
    /// **Not for checkpoints.** Unlike [`Store::read_final`], this includes committed events
    /// that are not final yet (so an aggregate sees every write that came before it): an event
    /// whose transaction commits later may have a lower position than one this returned, and a
    /// follower that kept the last position as its checkpoint would skip it for ever. Callers
    /// that keep a checkpoint keep one below [`Store::watermark`], or use `read_final`.
    fn read_committed(
        &self,
        query: &CheckedQuery,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send;

    /// [`Store::read_committed`] as a stream: the same events, yielded as the backend decodes
    /// them (see [`Store::read_all_rows`]). The default reads one page with `read_committed`.
    fn read_committed_rows<'a>(
        &'a self,
        query: &'a CheckedQuery,
        after: Position,
        limit: usize,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'a {
        futures::stream::once(self.read_committed(query, after, limit)).flat_map(page_rows)
    }

    /// The version of a stream's last event (`None`: no such stream).
    fn stream_version(&self, stream: &StreamId)
    -> impl Future<Output = Result<Option<u64>>> + Send;

    /// The event with this id (`None`: no such event), committed, final or not.
    fn read_event(
        &self,
        id: uuid::Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>>> + Send;

    /// Streams whose ids start with `prefix` (`""`: every stream), in the byte order of their
    /// ids, after `after` (exclusive: the last id of the previous page; `None`: from the
    /// first), at most `limit`, each with its event count and last event.
    fn streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StreamInfo>>> + Send;

    /// A position below which every event is final: no event with a lower position can be
    /// committed after this call returns.
    fn watermark(&self) -> impl Future<Output = Result<Position>> + Send;

    /// A receiver that changes after appends commit, for live tails to wake on. Backends that
    /// cannot notify return one that never changes; tails then poll.
    fn changes(&self) -> watch::Receiver<u64>;

    /// Closes a stream (`closed: true`) or reopens it (`false`); returns whether its state
    /// changed. Nothing is deleted: a closed stream takes no appends
    /// ([`Error::StreamClosed`](crate::Error::StreamClosed), unless every event of the append is
    /// already stored: an idempotent retry still returns the originals), is left out of
    /// [`Store::streams`], and [`Store::read_stream`] and [`Store::stream_version`] refuse it
    /// with `StreamClosed`; its events stay in the global log ([`Store::read_all`], queries,
    /// [`Store::read_event`]) for projections and subscribers. Serialised with appends: an
    /// append either commits before the close or is refused. A stream need not have events to
    /// be closed (closing reserves its id).
    fn close_stream(
        &self,
        stream: &StreamId,
        closed: bool,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The closed streams whose ids start with `prefix`, in the byte order of their ids, after
    /// `after` (exclusive), at most `limit`.
    fn closed_streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ClosedStream>>> + Send;
}

/// A closed stream, as [`Store::closed_streams`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClosedStream {
    /// The stream's id.
    pub stream: String,
    /// When it was closed.
    pub closed_at: chrono::DateTime<chrono::Utc>,
}

/// Named checkpoints kept in the store itself, so a process that follows the log (an outbox
/// relay, a projection) resumes where it stopped, with the same durability as the events.
pub trait Checkpoints: Send + Sync + 'static {
    /// The checkpoint saved under `name`, if any.
    fn load_checkpoint(
        &self,
        name: &CheckpointName,
    ) -> impl Future<Output = Result<Option<Position>>> + Send;

    /// Saves `position` under `name` (replacing the previous one).
    fn save_checkpoint(
        &self,
        name: &CheckpointName,
        position: Position,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Every saved checkpoint, by name.
    fn checkpoints(&self) -> impl Future<Output = Result<Vec<(CheckpointName, Position)>>> + Send;
}

/// What a store holds (see [`Store::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreStats {
    /// How many events.
    pub events: u64,
    /// How many streams.
    pub streams: u64,
    /// Events per namespace and type, sorted by namespace then type.
    pub types: Vec<TypeCount>,
    /// Bytes on disk (tables and indexes), where the backend can tell.
    pub size_bytes: Option<u64>,
    /// The position of the last final event.
    pub head: Option<Position>,
}

/// A stream as [`Store::streams`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamInfo {
    /// The stream's id.
    pub stream: String,
    /// How many events it holds (its last version + 1: versions are consecutive from 0).
    pub events: u64,
    /// Its last event's version.
    pub last_version: u64,
    /// Its last event's position in the global log.
    pub last_position: Position,
    /// Its last event's time.
    pub last_time: chrono::DateTime<chrono::Utc>,
}

impl StreamInfo {
    /// The entry of the stream whose last event is `last`.
    pub fn of_last(last: &RecordedEvent) -> Self {
        Self {
            stream: last.stream.clone(),
            events: last.version.saturating_add(1),
            last_version: last.version,
            last_position: last.position,
            last_time: last.context.time,
        }
    }
}

/// How many events of one namespace and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TypeCount {
    /// The namespace.
    pub namespace: String,
    /// The type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// How many.
    pub events: u64,
}

/// The key of a cached aggregate: its name, its version (bumped when its fold changes), the
/// fingerprint of its events' upcasters and the canonical text of its query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CacheKey {
    /// The aggregate's name.
    pub aggregate: String,
    /// The aggregate's version.
    pub version: u32,
    /// The fingerprint of the schema versions and upcasters of the aggregate's event types
    /// ([`Events::upcaster_fingerprint`](crate::Events::upcaster_fingerprint); 0 when none): a
    /// state folded under other upcasters is another entry.
    #[serde(default)]
    pub upcasters: u64,
    /// The canonical query (see [`Query::canonical`](crate::Query::canonical)).
    pub query: String,
}

/// A cached aggregate state and the checkpoint of the last event folded into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedState {
    /// The state, as JSON: sealed when `subjects` is not empty.
    pub state: Value,
    /// The position of the last event folded into `state`.
    pub checkpoint: Position,
    /// The subjects whose personal values the state folded, in byte order (see
    /// [`crate::erasure`]): the state is then stored sealed so that it opens only while every
    /// one of them has a key, and [`Cache::forget_subject`] removes it when one is forgotten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
}

impl CachedState {
    /// A state with no personal values, folded up to `checkpoint`.
    pub fn new(state: Value, checkpoint: Position) -> Self {
        Self {
            state,
            checkpoint,
            subjects: Vec::new(),
        }
    }
}

/// An aggregate cache: the cache adapter's trait.
///
/// # Contract
/// [`Cache::put`] never replaces an entry with one of a lower checkpoint, even when concurrent
/// callers race: the entry only moves forward. [`Cache::invalidate`] removes an entry (the
/// facade does when verification finds it wrong). [`Cache::forget_subject`] removes every
/// entry whose [`CachedState::subjects`] name the subject, and returns how many.
pub trait Cache: Send + Sync + 'static {
    /// The entry for `key`, if any.
    fn get(&self, key: &CacheKey) -> impl Future<Output = Result<Option<CachedState>>> + Send;

    /// Stores `entry` for `key`, unless the stored entry's checkpoint is later.
    fn put(&self, key: &CacheKey, entry: CachedState) -> impl Future<Output = Result<()>> + Send;

    /// Removes the entry for `key`, if any.
    fn invalidate(&self, key: &CacheKey) -> impl Future<Output = Result<()>> + Send;

    /// Removes every entry that folded personal values of `subject`; returns how many
    /// ([`EventStore::forget`](crate::EventStore::forget) calls it).
    fn forget_subject(&self, subject: &str) -> impl Future<Output = Result<u64>> + Send;
}

/// What [`EventStore::forget`](crate::EventStore::forget) asks of the facade's cache: removing
/// the states that folded a subject's personal values. Every [`Cache`] does; [`NoCache`] keeps
/// nothing.
pub trait ForgetSubject: Send + Sync + 'static {
    /// Removes every kept state that folded personal values of `subject`; returns how many.
    fn forget_subject_states(&self, subject: &str) -> impl Future<Output = Result<u64>> + Send;
}

impl ForgetSubject for NoCache {
    async fn forget_subject_states(&self, _subject: &str) -> Result<u64> {
        Ok(0)
    }
}

impl<C: Cache> ForgetSubject for C {
    fn forget_subject_states(&self, subject: &str) -> impl Future<Output = Result<u64>> + Send {
        self.forget_subject(subject)
    }
}

/// No cache: every aggregate folds the whole query. Aggregates need not be serializable.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

/// How the facade keeps an aggregate's state between folds: every [`Cache`] keeps aggregates
/// that serialize (`Serialize + DeserializeOwned`, as JSON); [`NoCache`] keeps none and takes
/// every aggregate. A failing cache is logged and bypassed, never trusted (design.md §4.6).
/// The facade seals states that folded personal values before keeping them, and opens them
/// after loading.
#[diagnostic::on_unimplemented(
    message = "the cache `{Self}` cannot keep the aggregate `{A}`",
    label = "an aggregate is cached as JSON",
    note = "derive `Serialize` and `Deserialize` for `{A}`, or use an event store without a cache (`NoCache`)"
)]
pub trait StateCache<A: Aggregate>: ForgetSubject {
    /// Whether states are kept at all (when not, a fold skips the work of choosing what to keep).
    const KEEPS: bool;

    /// The kept entry for `key`, if any (a failing cache is logged and has none).
    fn entry(&self, key: &CacheKey) -> impl Future<Output = Option<CachedState>> + Send;

    /// Keeps `entry` for `key` (a failing cache is logged).
    fn keep(&self, key: &CacheKey, entry: CachedState) -> impl Future<Output = ()> + Send;

    /// Removes the entry for `key`.
    fn forget(&self, key: &CacheKey) -> impl Future<Output = ()> + Send;

    /// `state` as JSON, if it encodes (a failure is logged).
    fn encode(state: &A) -> Option<Value>;

    /// A state from its JSON, if it decodes (a failure is logged).
    fn decode(state: Value) -> Option<A>;

    /// Whether two states are the same (for the facade's cache verification).
    fn same(a: &A, b: &A) -> bool;
}

impl<A: Aggregate> StateCache<A> for NoCache {
    const KEEPS: bool = false;

    async fn entry(&self, _key: &CacheKey) -> Option<CachedState> {
        None
    }

    async fn keep(&self, _key: &CacheKey, _entry: CachedState) {}

    async fn forget(&self, _key: &CacheKey) {}

    fn encode(_state: &A) -> Option<Value> {
        None
    }

    fn decode(_state: Value) -> Option<A> {
        None
    }

    fn same(_a: &A, _b: &A) -> bool {
        true
    }
}

impl<A, C> StateCache<A> for C
where
    A: Aggregate + Serialize + DeserializeOwned,
    C: Cache,
{
    const KEEPS: bool = true;

    async fn entry(&self, key: &CacheKey) -> Option<CachedState> {
        match self.get(key).await {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(aggregate = A::NAME, error = %e, "cache read failed; folding from the start");
                None
            }
        }
    }

    async fn keep(&self, key: &CacheKey, entry: CachedState) {
        if let Err(e) = self.put(key, entry).await {
            tracing::warn!(aggregate = A::NAME, error = %e, "cache write failed");
        }
    }

    async fn forget(&self, key: &CacheKey) {
        if let Err(e) = self.invalidate(key).await {
            tracing::error!(aggregate = A::NAME, error = %e, "a wrong cache entry could not be removed");
        }
    }

    fn encode(state: &A) -> Option<Value> {
        serde_json::to_value(state)
            .map_err(|e| tracing::warn!(aggregate = A::NAME, error = %e, "state does not encode; not cached"))
            .ok()
    }

    fn decode(state: Value) -> Option<A> {
        A::deserialize(state)
            .map_err(|e| tracing::warn!(aggregate = A::NAME, error = %e, "cached state does not decode; folding from the start"))
            .ok()
    }

    fn same(a: &A, b: &A) -> bool {
        match (serde_json::to_value(a), serde_json::to_value(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

/// An async handler of delivered events: `Ok` acknowledges, `Err` asks for a retry.
pub type Handler =
    Arc<dyn Fn(RecordedEvent) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;

/// What a subscription asks for: a group and the event types it handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// The group (a service name). Instances of a group share its events; each group receives
    /// every matching event.
    pub group: String,
    /// The types the group handles (empty: every event).
    pub types: Vec<TypeFilter>,
}

/// A running subscription: a future that delivers events to the handler until it fails for
/// good or the emitter closes. Events are queued from the moment [`Emitter::subscribe`] returns;
/// run it with `tokio::spawn(subscription.into_future())`, and abort the task to stop it.
#[must_use = "a subscription does nothing until it is run"]
pub struct Subscription {
    group: String,
    run: BoxFuture<'static, Result<()>>,
}

impl Subscription {
    /// A subscription of `group` driven by `run`.
    pub fn new(
        group: impl Into<String>,
        run: impl Future<Output = Result<()>> + Send + 'static,
    ) -> Self {
        Self {
            group: group.into(),
            run: Box::pin(run),
        }
    }

    /// The subscription's group.
    pub fn group(&self) -> &str {
        &self.group
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl IntoFuture for Subscription {
    type Output = Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<()>> + Send + 'static>>;

    fn into_future(self) -> Self::IntoFuture {
        self.run
    }
}

/// Delivers recorded events to subscribers: the emitter adapter's trait.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an emitter: this event store cannot subscribe",
    note = "build the event store with an emitter (`EventStore::memory()`, or `.with_emitter(…)`)"
)]
pub trait Emitter: Send + Sync + 'static {
    /// Whether the [`EventStore`](crate::EventStore) facade hands each save's events to
    /// [`Emitter::publish`]. Emitters that publish from the log themselves (an outbox relay) set
    /// it to `false`.
    const PUBLISHES_ON_SAVE: bool = true;

    /// Publishes newly stored events. The facade calls it after each append that stored
    /// something, in each stream's version order.
    fn publish(&self, events: &[RecordedEvent]) -> impl Future<Output = Result<()>> + Send;

    /// Subscribes `handler` for a group.
    fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: Handler,
    ) -> impl Future<Output = Result<Subscription>> + Send;
}

/// No emitter: saves publish nothing, and an event store without an emitter has no
/// `subscribe` (a compile error, not a run-time one).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEmitter;

/// What saving needs of an emitter: every [`Emitter`] publishes what is stored (when it
/// publishes on save); [`NoEmitter`] publishes nothing.
pub trait Publish: Send + Sync + 'static {
    /// Whether the facade hands each save's events to [`Publish::publish_saved`].
    const ON_SAVE: bool;

    /// Publishes newly stored events.
    fn publish_saved(&self, events: &[RecordedEvent]) -> impl Future<Output = Result<()>> + Send;
}

impl<E: Emitter> Publish for E {
    const ON_SAVE: bool = E::PUBLISHES_ON_SAVE;

    fn publish_saved(&self, events: &[RecordedEvent]) -> impl Future<Output = Result<()>> + Send {
        self.publish(events)
    }
}

impl Publish for NoEmitter {
    const ON_SAVE: bool = false;

    async fn publish_saved(&self, _events: &[RecordedEvent]) -> Result<()> {
        Ok(())
    }
}
