//! The [`EventStore`] facade: save, aggregate, read, tail and subscribe over one store, one cache
//! and one emitter.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::Either;
use futures::{FutureExt, Stream};
use tokio::sync::watch;

use crate::aggregate::Aggregate;
use crate::backend::{
    Appended, Cache, CacheKey, CachedState, Emitter, Handler, NoCache, NoEmitter, Store,
    Subscription, SubscriptionSpec,
};
use crate::batch::AppendBatch;
use crate::cursor::{LogCursor, PAGE_SIZE, failed, paged};
use crate::error::{BoxError, Error, Result};
use crate::event::Events;
use crate::memory::{InProcessEmitter, MemoryCache, MemoryStore};
use crate::model::{Direction, NewEvent, Position, RecordedEvent, StreamId};
use crate::query::{Query, TypeFilter};
use crate::version::ExpectedVersion;

/// How often a live tail re-reads when no change notification arrives (the fallback for
/// backends that cannot notify).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

struct Inner<S, C, E> {
    store: S,
    cache: C,
    emitter: E,
    // Per-stream locks that keep publish order equal to version order when saves to one stream
    // race; only taken when the emitter publishes on save.
    publishing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    poll_interval: Duration,
}

/// The event store: a [`Store`], a [`Cache`] and an [`Emitter`] behind one handle. Cheap to
/// clone; clones share everything.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> event_store::Result<()> {
/// use event_store::{EventStore, NewEvent};
/// use serde_json::json;
///
/// let store = EventStore::memory();
/// store.append("order-1", Default::default(), vec![NewEvent::new("shop", "Placed", json!({"total": 12}))]).await?;
/// let events = store.read_stream_page("order-1", 0, 10).await?;
/// assert_eq!(events[0].data["total"], 12);
/// # Ok(()) }
/// ```
pub struct EventStore<S, C = NoCache, E = NoEmitter> {
    inner: Arc<Inner<S, C, E>>,
}

impl<S, C, E> Clone for EventStore<S, C, E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S, C, E> std::fmt::Debug for EventStore<S, C, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("store", &std::any::type_name::<S>())
            .field("cache", &std::any::type_name::<C>())
            .field("emitter", &std::any::type_name::<E>())
            .finish()
    }
}

impl EventStore<MemoryStore, MemoryCache, InProcessEmitter> {
    /// Everything in memory: a [`MemoryStore`], a [`MemoryCache`] and an [`InProcessEmitter`].
    pub fn memory() -> Self {
        Self::new(
            MemoryStore::new(),
            MemoryCache::new(),
            InProcessEmitter::new(),
        )
    }
}

impl<S: Store> EventStore<S> {
    /// A store with no cache and no emitter; add them with [`EventStore::with_cache`] and
    /// [`EventStore::with_emitter`].
    pub fn from_store(store: S) -> Self {
        Self::new(store, NoCache, NoEmitter)
    }
}

/// A fold's result, with what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded<A> {
    /// The aggregate.
    pub state: A,
    /// The position of the last event folded in (`None`: no event).
    pub checkpoint: Option<Position>,
    /// How many events this call read (fewer than the aggregate's total when the cache had it).
    pub events_read: u64,
    /// Whether a cache entry was used.
    pub from_cache: bool,
}

impl<S: Store, C: Cache, E: Emitter> EventStore<S, C, E> {
    /// A store with its cache and emitter.
    pub fn new(store: S, cache: C, emitter: E) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                cache,
                emitter,
                publishing: Mutex::new(HashMap::new()),
                poll_interval: DEFAULT_POLL_INTERVAL,
            }),
        }
    }

    fn rebuild<C2, E2>(self, cache: C2, emitter: E2) -> EventStore<S, C2, E2>
    where
        S: Clone,
    {
        EventStore {
            inner: Arc::new(Inner {
                store: self.inner.store.clone(),
                cache,
                emitter,
                publishing: Mutex::new(HashMap::new()),
                poll_interval: self.inner.poll_interval,
            }),
        }
    }

    /// The same store with another cache.
    pub fn with_cache<C2: Cache>(self, cache: C2) -> EventStore<S, C2, E>
    where
        S: Clone,
        E: Clone,
    {
        let emitter = self.inner.emitter.clone();
        self.rebuild(cache, emitter)
    }

    /// The same store with another emitter.
    pub fn with_emitter<E2: Emitter>(self, emitter: E2) -> EventStore<S, C, E2>
    where
        S: Clone,
        C: Clone,
    {
        let cache = self.inner.cache.clone();
        self.rebuild(cache, emitter)
    }

    /// Sets how often live tails re-read when no change notification arrives.
    #[must_use]
    pub fn with_poll_interval(self, every: Duration) -> Self
    where
        S: Clone,
        C: Clone,
        E: Clone,
    {
        let (cache, emitter) = (self.inner.cache.clone(), self.inner.emitter.clone());
        let mut out = self.rebuild(cache, emitter);
        if let Some(inner) = Arc::get_mut(&mut out.inner) {
            inner.poll_interval = every;
        }
        out
    }

    /// The store backend.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The cache backend.
    pub fn cache(&self) -> &C {
        &self.inner.cache
    }

    /// The emitter backend.
    pub fn emitter(&self) -> &E {
        &self.inner.emitter
    }

    // ---- writing -------------------------------------------------------------------------

    /// Saves one typed event at the end of `stream`, whatever its version.
    pub async fn save<Ev: Events>(&self, stream: &str, event: &Ev) -> Result<RecordedEvent> {
        self.save_expecting(stream, ExpectedVersion::Any, event)
            .await
    }

    /// Saves one typed event, expecting `expected` of the stream.
    pub async fn save_expecting<Ev: Events>(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        event: &Ev,
    ) -> Result<RecordedEvent> {
        let appended = self
            .append(stream, expected, vec![NewEvent::from_event(event)?])
            .await?;
        appended
            .events
            .into_iter()
            .next()
            .ok_or_else(|| Error::backend("store", "an append of one event returned none"))
    }

    /// Saves typed events atomically (all or none), expecting `expected` of the stream.
    pub async fn save_all<Ev: Events>(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[Ev],
    ) -> Result<Vec<RecordedEvent>> {
        let events = events
            .iter()
            .map(NewEvent::from_event)
            .collect::<Result<Vec<_>>>()?;
        Ok(self.append(stream, expected, events).await?.events)
    }

    /// Appends raw events atomically (all or none), expecting `expected` of the stream, then
    /// publishes what was stored. Validation happens before anything is written (see
    /// [`crate::limits`]).
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended> {
        let batch = AppendBatch::new(stream, expected, events)?;
        if !E::PUBLISHES_ON_SAVE {
            return self.inner.store.append(batch).await;
        }
        let gate = self.publish_gate(stream);
        let guard = gate.lock().await;
        let appended = self.inner.store.append(batch).await;
        let result = match appended {
            Ok(a) if a.stored => match self.inner.emitter.publish(&a.events).await {
                Ok(()) => Ok(a),
                Err(e) => {
                    tracing::warn!(stream, error = %e, "stored, but publishing failed");
                    Err(e)
                }
            },
            other => other,
        };
        drop(guard);
        self.release_gate(stream, gate);
        result
    }

    fn publish_gate(&self, stream: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self
            .inner
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(gates.entry(stream.to_owned()).or_default())
    }

    fn release_gate(&self, stream: &str, gate: Arc<tokio::sync::Mutex<()>>) {
        let mut gates = self
            .inner
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(gate);
        if gates.get(stream).is_some_and(|g| Arc::strong_count(g) == 1) {
            gates.remove(stream);
        }
    }

    // ---- aggregates ----------------------------------------------------------------------

    /// Folds an aggregate through the cache: the cached state plus the events after its
    /// checkpoint. Always equal to folding the whole query.
    pub async fn aggregate<A: Aggregate>(&self, args: &A::Args) -> Result<A> {
        Ok(self.fold::<A>(args).await?.state)
    }

    /// Like [`EventStore::aggregate`], with the checkpoint and what the fold read.
    pub async fn fold<A: Aggregate>(&self, args: &A::Args) -> Result<Folded<A>> {
        let mut query = A::query(args);
        if query.types().is_empty() {
            query = query.of::<A::Event>();
        }
        let query = query.check()?;
        let key = CacheKey {
            aggregate: A::NAME.to_owned(),
            version: A::VERSION,
            query: query.canonical(),
        };
        let cached = match self.inner.cache.get(&key).await {
            Ok(Some(entry)) => match A::deserialize(&entry.state) {
                Ok(state) => Some((state, entry.checkpoint)),
                Err(e) => {
                    tracing::warn!(aggregate = A::NAME, error = %e, "cached state does not decode; folding from the start");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(aggregate = A::NAME, error = %e, "cache read failed; folding from the start");
                None
            }
        };
        let from_cache = cached.is_some();
        let (mut state, start) = cached.unwrap_or_else(|| (A::default(), Position::START));
        // Only a state folded below the watermark (every earlier event final) may be cached.
        let watermark = self.inner.store.watermark().await?;
        let mut after = start;
        let mut safe: Option<(A, Position)> = None;
        let mut events_read = 0u64;
        loop {
            let page = self
                .inner
                .store
                .read_query(&query, after, PAGE_SIZE)
                .await?;
            let Some(last) = page.last() else { break };
            let last_position = last.position;
            for event in &page {
                if safe.is_none() && event.position >= watermark && after < watermark {
                    safe = Some((state.clone(), after));
                }
                if A::Event::handles(&event.namespace, &event.event_type) {
                    state.apply(&event.decode::<A::Event>()?);
                }
                after = event.position;
            }
            events_read += page.len() as u64;
            if page.len() < PAGE_SIZE {
                break;
            }
            debug_assert!(last_position == after);
        }
        let checkpoint = (after != Position::START).then_some(after);
        let to_cache = match &safe {
            Some((s, p)) => Some((s, *p)),
            None if after < watermark => Some((&state, after)),
            None => None,
        };
        if let Some((s, p)) = to_cache
            && p > start
        {
            self.write_cache(&key, s, p).await;
        }
        Ok(Folded {
            state,
            checkpoint,
            events_read,
            from_cache,
        })
    }

    async fn write_cache<A: Aggregate>(&self, key: &CacheKey, state: &A, checkpoint: Position) {
        let entry = match serde_json::to_value(state) {
            Ok(state) => CachedState { state, checkpoint },
            Err(e) => {
                tracing::warn!(aggregate = A::NAME, error = %e, "state does not encode; not cached");
                return;
            }
        };
        if let Err(e) = self.inner.cache.put(key, entry).await {
            tracing::warn!(aggregate = A::NAME, error = %e, "cache write failed");
        }
    }

    // ---- reading -------------------------------------------------------------------------

    /// The version of a stream's last event (`None`: no such stream).
    pub async fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        self.inner
            .store
            .stream_version(&StreamId::new(stream)?)
            .await
    }

    /// Reads up to `limit` events of a stream forward from version `from`.
    pub async fn read_stream_page(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let id = StreamId::new(stream)?;
        self.inner
            .store
            .read_stream(&id, from, Direction::Forward, limit)
            .await
    }

    /// Streams the events of a stream from version `from` (backward: from `from` down;
    /// `u64::MAX` for the last), a page at a time.
    pub fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        let store = self.inner.store.clone();
        match StreamId::new(stream) {
            Err(e) => Either::Left(failed(e)),
            Ok(id) => Either::Right(paged((id, from), move |(id, from)| {
                let store = store.clone();
                async move {
                    let page = store.read_stream(&id, from, direction, PAGE_SIZE).await?;
                    let next = page
                        .last()
                        .filter(|_| page.len() == PAGE_SIZE)
                        .and_then(|last| match direction {
                            Direction::Forward => last.version.checked_add(1),
                            Direction::Backward => last.version.checked_sub(1),
                        })
                        .map(|v| (id, v));
                    Ok((page, next))
                }
            })),
        }
    }

    /// Streams the global log after `after`, up to its current end, a page at a time.
    pub fn read_all(
        &self,
        after: Position,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        self.log_stream(after, None, false)
    }

    /// Streams the global log backward, newest first, from before `before` (`None`: from the
    /// end), a page at a time.
    pub fn read_all_backward(
        &self,
        before: Option<Position>,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        let store = self.inner.store.clone();
        paged(before, move |before| {
            let store = store.clone();
            async move {
                let page = store.read_all_backward(before, PAGE_SIZE).await?;
                let next = page
                    .last()
                    .filter(|_| page.len() == PAGE_SIZE)
                    .map(|last| Some(last.position));
                Ok((page, next))
            }
        })
    }

    /// Streams the events matching `query` after `after`, up to the current end.
    pub fn read_query(
        &self,
        query: Query,
        after: Position,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        let store = self.inner.store.clone();
        match query.check() {
            Err(e) => Either::Left(failed(e)),
            Ok(query) => Either::Right(paged((query, after), move |(query, after)| {
                let store = store.clone();
                async move {
                    let page = store.read_query(&query, after, PAGE_SIZE).await?;
                    let next = page
                        .last()
                        .filter(|_| page.len() == PAGE_SIZE)
                        .map(|last| (query, last.position));
                    Ok((page, next))
                }
            })),
        }
    }

    /// Follows the global log live from `after`: every event, in log order, as it becomes final;
    /// with a `filter`, only the matching ones. Never ends by itself; a backend error is yielded
    /// and the tail goes on after the poll interval.
    pub fn tail(
        &self,
        after: Position,
        filter: Option<Query>,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        self.log_stream(after, filter, true)
    }

    fn log_stream(
        &self,
        after: Position,
        filter: Option<Query>,
        live: bool,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        struct St<S> {
            store: S,
            cursor: LogCursor,
            filter: Option<Query>,
            buf: VecDeque<RecordedEvent>,
            changes: watch::Receiver<u64>,
            live: bool,
            done: bool,
            failed: bool,
            poll: Duration,
        }
        let st = St {
            changes: self.inner.store.changes(),
            store: self.inner.store.clone(),
            cursor: LogCursor::new(after),
            filter,
            buf: VecDeque::new(),
            live,
            done: false,
            failed: false,
            poll: self.inner.poll_interval,
        };
        futures::stream::unfold(st, |mut st| async move {
            loop {
                if let Some(e) = st.buf.pop_front() {
                    return Some((Ok(e), st));
                }
                if st.done {
                    return None;
                }
                if std::mem::take(&mut st.failed) {
                    tokio::time::sleep(st.poll).await;
                }
                // Mark the current change as seen *before* reading, so a commit between the
                // read and the wait still wakes the wait.
                st.changes.borrow_and_update();
                match st.cursor.next_page(&st.store).await {
                    Err(e) => {
                        st.failed = true;
                        st.done = !st.live;
                        return Some((Err(e), st));
                    }
                    Ok(page) if page.is_empty() => {
                        if !st.live {
                            return None;
                        }
                        // Wake on a change, or poll; a closed channel means polling only.
                        let waited = tokio::time::timeout(st.poll, st.changes.changed()).await;
                        if matches!(waited, Ok(Err(_))) {
                            tokio::time::sleep(st.poll).await;
                        }
                    }
                    Ok(page) => {
                        if st.cursor.was_short(&page) && !st.live {
                            st.done = true;
                        }
                        match &st.filter {
                            Some(q) => st.buf.extend(page.into_iter().filter(|e| q.matches(e))),
                            None => st.buf.extend(page),
                        }
                    }
                }
            }
        })
    }

    // ---- subscriptions -------------------------------------------------------------------

    /// Subscribes an async handler for `group` to the events of `Ev`. Events of other types the
    /// group receives are acknowledged without calling the handler. Run the returned
    /// [`Subscription`] (e.g. `tokio::spawn(sub.into_future())`); the handler may use the store
    /// (clone it into the closure).
    pub async fn subscribe<Ev, F, Fut>(&self, group: &str, handler: F) -> Result<Subscription>
    where
        Ev: Events,
        F: Fn(Ev, RecordedEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let types = Ev::event_types()
            .iter()
            .map(|t| TypeFilter {
                namespace: t.namespace.to_owned(),
                event_type: Some(t.name.to_owned()),
            })
            .collect();
        let handler = Arc::new(handler);
        let raw: Handler = Arc::new(move |event: RecordedEvent| {
            let handler = Arc::clone(&handler);
            async move {
                if !Ev::handles(&event.namespace, &event.event_type) {
                    return Ok(());
                }
                let typed = event.decode::<Ev>().map_err(BoxError::from)?;
                handler(typed, event).await
            }
            .boxed()
        });
        self.inner
            .emitter
            .subscribe(
                SubscriptionSpec {
                    group: group.to_owned(),
                    types,
                },
                raw,
            )
            .await
    }
}
