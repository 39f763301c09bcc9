//! What the checks share: patience, a seeded generator, a recording emitter, a guard that
//! keeps a test's resources alive, and small helpers.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use event_store::projection::{
    Generation, LeaseKey, PartitionState, ProjectionName, ProjectionRecord, ProjectionStore,
    Revision,
};
use event_store::{
    AppendBatch, Appended, CheckedQuery, CheckpointName, Checkpoints, Direction, Emitter, Error,
    ExpectedVersion, Handler, NewEvent, Position, RecordedEvent, Result, Store, StoreStats,
    StreamId, Subscription, SubscriptionSpec,
};
use serde_json::Value;
use uuid::Uuid;

/// How long a check waits for something that must happen (a tail to catch up) before failing.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A small deterministic random generator (xorshift64*), so failures replay.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// An emitter that records what it is asked to publish (for checks that nothing is emitted
/// twice).
#[derive(Debug, Clone, Default)]
pub struct RecordingEmitter {
    published: Arc<Mutex<Vec<RecordedEvent>>>,
}

impl RecordingEmitter {
    /// Everything published so far.
    pub fn published(&self) -> Vec<RecordedEvent> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Emitter for RecordingEmitter {
    async fn publish(&self, events: &[RecordedEvent]) -> Result<()> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(events);
        Ok(())
    }

    async fn subscribe(&self, spec: SubscriptionSpec, _handler: Handler) -> Result<Subscription> {
        Ok(Subscription::new(spec.group, async { Ok(()) }))
    }
}

/// A store that keeps something alive as long as any clone of it lives: a temporary directory,
/// a guard that drops a test schema, …; it delegates every [`Store`] method.
#[derive(Debug)]
pub struct Guarded<S, G> {
    /// The store.
    pub store: S,
    /// What lives as long as the store.
    pub guard: Arc<G>,
}

impl<S: Clone, G> Clone for Guarded<S, G> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            guard: Arc::clone(&self.guard),
        }
    }
}

impl<S, G> Guarded<S, G> {
    /// `store`, keeping `guard` alive.
    pub fn new(store: S, guard: G) -> Self {
        Self {
            store,
            guard: Arc::new(guard),
        }
    }
}

impl<S: Checkpoints, G: Send + Sync + 'static> Checkpoints for Guarded<S, G> {
    fn load_checkpoint(
        &self,
        name: &CheckpointName,
    ) -> impl Future<Output = Result<Option<Position>>> + Send {
        self.store.load_checkpoint(name)
    }
    fn save_checkpoint(
        &self,
        name: &CheckpointName,
        position: Position,
    ) -> impl Future<Output = Result<()>> + Send {
        self.store.save_checkpoint(name, position)
    }
    fn checkpoints(&self) -> impl Future<Output = Result<Vec<(CheckpointName, Position)>>> + Send {
        self.store.checkpoints()
    }
}

impl<S: Store, G: Send + Sync + 'static> Store for Guarded<S, G> {
    fn append(&self, batch: AppendBatch) -> impl Future<Output = Result<Appended>> + Send {
        self.store.append(batch)
    }
    fn append_many(
        &self,
        batches: event_store::MultiAppend,
    ) -> impl Future<Output = Result<Vec<Appended>>> + Send {
        self.store.append_many(batches)
    }
    fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send {
        self.store.read_stream(stream, from, direction, limit)
    }
    fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send {
        self.store.read_all(after, limit)
    }
    fn read_all_backward(
        &self,
        before: Option<Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send {
        self.store.read_all_backward(before, limit)
    }
    fn stats(&self) -> impl Future<Output = Result<StoreStats>> + Send {
        self.store.stats()
    }
    fn read_final(
        &self,
        query: &CheckedQuery,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send {
        self.store.read_final(query, after, limit)
    }
    fn read_committed(
        &self,
        query: &CheckedQuery,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send {
        self.store.read_committed(query, after, limit)
    }
    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<u64>>> + Send {
        self.store.stream_version(stream)
    }
    fn read_event(
        &self,
        id: uuid::Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>>> + Send {
        self.store.read_event(id)
    }
    fn streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<event_store::StreamInfo>>> + Send {
        self.store.streams(prefix, after, limit)
    }
    fn watermark(&self) -> impl Future<Output = Result<Position>> + Send {
        self.store.watermark()
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.changes()
    }
    fn close_stream(
        &self,
        stream: &StreamId,
        closed: bool,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.store.close_stream(stream, closed)
    }
    fn closed_streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<event_store::ClosedStream>>> + Send {
        self.store.closed_streams(prefix, after, limit)
    }
}

/// Waits until every event up to `position` is final (below the store's watermark), or fails
/// after [`PATIENCE`].
pub async fn wait_final<S: Store>(store: &S, position: Position) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while store.watermark().await.expect("watermark") <= position {
        assert!(
            tokio::time::Instant::now() < deadline,
            "position {position} never became final"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn suffix() -> String {
    let s = Uuid::now_v7().simple().to_string();
    // The last 12 hex digits of a v7 id are random (the first ones are the time).
    s[20..].to_owned()
}

pub(crate) fn sid(s: &str) -> StreamId {
    StreamId::new(s).expect("test stream ids are valid")
}

pub(crate) fn ev(namespace: &str, ty: &str, data: Value) -> NewEvent {
    NewEvent::new(namespace, ty, data)
}

pub(crate) fn batch(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendBatch {
    AppendBatch::new(stream, expected, events).expect("test batches are valid")
}

pub(crate) async fn append<S: Store>(
    store: &S,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<Vec<RecordedEvent>> {
    store
        .append(batch(stream, expected, events))
        .await
        .map(|a| a.events)
}

pub(crate) async fn stream_events<S: Store>(store: &S, stream: &str) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    loop {
        let page = store
            .read_stream(&sid(stream), out.len() as u64, Direction::Forward, 1000)
            .await
            .expect("read_stream");
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            return out;
        }
    }
}

/// Reads the whole global log from `after` (final events), keeping the events that `keep`
/// accepts. The cursor refuses a page at or before its position.
pub(crate) async fn log_after<S: Store>(
    store: &S,
    after: Position,
    page: usize,
    keep: impl Fn(&RecordedEvent) -> bool,
) -> Vec<RecordedEvent> {
    let mut cursor = event_store::LogCursor::with_page(after, page);
    let mut out = Vec::new();
    loop {
        let events = cursor.next_page(store).await.expect("read_all");
        if events.is_empty() {
            return out;
        }
        out.extend(events.into_iter().filter(&keep));
    }
}

/// Waits until the global log, read from `after`, holds `n` events that `keep` accepts (the
/// log only shows events once they are final).
pub(crate) async fn wait_for_log<S: Store>(
    store: &S,
    after: Position,
    n: usize,
    keep: impl Fn(&RecordedEvent) -> bool + Copy,
) -> Vec<RecordedEvent> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = log_after(store, after, 1000, keep).await;
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The position of the last final event now (where a check's own events will come after).
pub(crate) async fn head<S: Store>(store: &S) -> Position {
    event_store::head(store).await.expect("head")
}

pub(crate) fn assert_conflict(
    r: Result<Vec<RecordedEvent>>,
    expected: ExpectedVersion,
    actual: Option<u64>,
) {
    match r {
        Err(Error::Conflict {
            expected: e,
            actual: a,
            ..
        }) => {
            assert_eq!(e, expected, "conflict carries the expected version");
            assert_eq!(a, actual, "conflict carries the actual version");
        }
        other => panic!("expected a conflict ({expected} vs {actual:?}), got {other:?}"),
    }
}

/// What a test does when the service it needs (PostgreSQL, RabbitMQ, …) is unreachable: with
/// `Ok`, the value; with `Err`, it prints `SKIPPED: {service} unreachable (…)` and returns
/// `None` — or panics when the `CI` environment variable is set, where every service must be
/// there.
pub fn require_service<T, E: std::fmt::Display>(
    service: &str,
    reached: std::result::Result<T, E>,
) -> Option<T> {
    match reached {
        Ok(v) => Some(v),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("{service} is required in CI: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: {service} unreachable ({e})");
            None
        }
    }
}

impl<S: ProjectionStore, G: Send + Sync + 'static> ProjectionStore for Guarded<S, G> {
    type Lease = S::Lease;

    fn projection(
        &self,
        name: &ProjectionName,
    ) -> impl Future<Output = Result<Option<ProjectionRecord>>> + Send {
        self.store.projection(name)
    }
    fn projections(&self) -> impl Future<Output = Result<Vec<ProjectionRecord>>> + Send {
        self.store.projections()
    }
    fn begin_generation(
        &self,
        name: &ProjectionName,
        expected: Revision,
        next: &Generation,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.store.begin_generation(name, expected, next)
    }
    fn mark_created(
        &self,
        name: &ProjectionName,
        generation: u64,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.store.mark_created(name, generation)
    }
    fn save_partition(
        &self,
        name: &ProjectionName,
        state: &PartitionState,
        expected: Position,
    ) -> impl Future<Output = Result<()>> + Send {
        self.store.save_partition(name, state, expected)
    }
    fn switch_generation(
        &self,
        name: &ProjectionName,
        from: Option<u64>,
        to: u64,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.store.switch_generation(name, from, to)
    }
    fn resume(
        &self,
        name: &ProjectionName,
        partition: Option<u32>,
    ) -> impl Future<Output = Result<u64>> + Send {
        self.store.resume(name, partition)
    }
    fn try_lease(&self, key: &LeaseKey) -> impl Future<Output = Result<Option<S::Lease>>> + Send {
        self.store.try_lease(key)
    }
    fn is_leased(&self, key: &LeaseKey) -> impl Future<Output = Result<bool>> + Send {
        self.store.is_leased(key)
    }
}
