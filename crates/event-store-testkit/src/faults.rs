//! Fault injection: a store and a cache that fail (or slow down) chosen calls, and the checks
//! that use them to prove what the facade promises when its backends fail — an aggregate is an
//! error or the whole fold, never a wrong state, and nothing is cached past a failure; a tail
//! survives a failed read and resumes with no gap and no duplicate.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use event_store::{
    AppendBatch, Appended, Cache, CacheKey, CachedState, CheckedQuery, CheckpointName, Checkpoints,
    Direction, Error, EventStore, ExpectedVersion, MemoryCache, NewEvent, NoEmitter, Position,
    RecordedEvent, Result, Store, StoreStats, StreamId,
};
use futures::StreamExt;
use serde_json::json;

use crate::aggregates::{KitCounter, fold_local};
use crate::support::{PATIENCE, suffix};

/// A method of [`Store`] or [`Cache`] that a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// [`Store::append`].
    Append,
    /// [`Store::read_stream`].
    ReadStream,
    /// [`Store::read_all`].
    ReadAll,
    /// [`Store::read_all_backward`].
    ReadAllBackward,
    /// [`Store::stats`].
    Stats,
    /// [`Store::read_final`].
    ReadFinal,
    /// [`Store::read_committed`].
    ReadCommitted,
    /// [`Store::stream_version`].
    StreamVersion,
    /// [`Store::watermark`].
    Watermark,
    /// [`Store::streams`].
    Streams,
    /// [`Store::read_event`].
    ReadEvent,
    /// [`Store::close_stream`].
    CloseStream,
    /// [`Store::closed_streams`].
    ClosedStreams,
    /// [`Cache::get`].
    CacheGet,
    /// [`Cache::forget_subject`].
    CacheForgetSubject,
    /// [`Cache::put`].
    CachePut,
    /// [`Cache::invalidate`].
    CacheInvalidate,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Fail call number `n` (1-based, counted from when the rule was set).
    FailNth(u64),
    /// Fail every call from number `n` on.
    FailFrom(u64),
    /// Wait this long before each call.
    Delay(Duration),
}

#[derive(Debug, Default)]
struct Plan {
    calls: HashMap<Method, u64>,
    rules: HashMap<Method, (Rule, u64)>,
    injected: u64,
}

/// The shared plan of faults of a [`FaultyStore`] or [`FaultyCache`] and its clones.
#[derive(Debug, Clone, Default)]
struct Faults(Arc<Mutex<Plan>>);

impl Faults {
    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, method: Method, rule: Rule) {
        let mut plan = self.plan();
        let now = plan.calls.get(&method).copied().unwrap_or(0);
        plan.rules.insert(method, (rule, now));
    }

    /// Counts a call; `Err` when the plan fails it, else the delay to wait first.
    fn enter(&self, method: Method) -> Result<Option<Duration>> {
        let mut plan = self.plan();
        let n = {
            let c = plan.calls.entry(method).or_insert(0);
            *c += 1;
            *c
        };
        let Some((rule, base)) = plan.rules.get(&method).copied() else {
            return Ok(None);
        };
        let k = n - base;
        let fail = match rule {
            Rule::FailNth(at) => k == at,
            Rule::FailFrom(from) => k >= from,
            Rule::Delay(d) => return Ok(Some(d)),
        };
        if fail {
            plan.injected += 1;
            return Err(Error::backend(
                "faults",
                format!("injected failure of {method:?} (call {k} since the rule was set)"),
            ));
        }
        Ok(None)
    }

    async fn call<T>(&self, method: Method, f: impl Future<Output = Result<T>>) -> Result<T> {
        if let Some(d) = self.enter(method)? {
            tokio::time::sleep(d).await;
        }
        f.await
    }
}

macro_rules! fault_controls {
    () => {
        /// Fails the `n`th call of `method` from now (1-based), once.
        pub fn fail_nth(&self, method: Method, n: u64) {
            self.faults.set(method, Rule::FailNth(n.max(1)));
        }

        /// Fails every call of `method` from the `n`th from now on (1-based).
        pub fn fail_from(&self, method: Method, n: u64) {
            self.faults.set(method, Rule::FailFrom(n.max(1)));
        }

        /// Waits `delay` before every call of `method`.
        pub fn delay(&self, method: Method, delay: Duration) {
            self.faults.set(method, Rule::Delay(delay));
        }

        /// Removes every rule (calls go on being counted).
        pub fn heal(&self) {
            self.faults.plan().rules.clear();
        }

        /// How many calls of `method` were made.
        pub fn calls(&self, method: Method) -> u64 {
            self.faults.plan().calls.get(&method).copied().unwrap_or(0)
        }

        /// How many failures were injected.
        pub fn injected(&self) -> u64 {
            self.faults.plan().injected
        }
    };
}

/// A store that delegates to `S` and fails or delays the calls its rules name. Clones share
/// the rules and the counts.
#[derive(Debug, Clone)]
pub struct FaultyStore<S> {
    inner: S,
    faults: Faults,
}

impl<S> FaultyStore<S> {
    /// `inner`, with no fault planned yet.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            faults: Faults::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fault_controls!();
}

impl<S: Store> Store for FaultyStore<S> {
    async fn append(&self, batch: AppendBatch) -> Result<Appended> {
        self.faults
            .call(Method::Append, self.inner.append(batch))
            .await
    }
    async fn append_many(&self, batches: event_store::MultiAppend) -> Result<Vec<Appended>> {
        self.faults
            .call(Method::Append, self.inner.append_many(batches))
            .await
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let read = self.inner.read_stream(stream, from, direction, limit);
        self.faults.call(Method::ReadStream, read).await
    }
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>> {
        let read = self.inner.read_all(after, limit);
        self.faults.call(Method::ReadAll, read).await
    }
    async fn read_all_backward(
        &self,
        before: Option<Position>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let read = self.inner.read_all_backward(before, limit);
        self.faults.call(Method::ReadAllBackward, read).await
    }
    async fn stats(&self) -> Result<StoreStats> {
        self.faults.call(Method::Stats, self.inner.stats()).await
    }
    async fn read_final(
        &self,
        query: &CheckedQuery,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let read = self.inner.read_final(query, after, limit);
        self.faults.call(Method::ReadFinal, read).await
    }
    async fn read_committed(
        &self,
        query: &CheckedQuery,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let read = self.inner.read_committed(query, after, limit);
        self.faults.call(Method::ReadCommitted, read).await
    }
    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>> {
        let read = self.inner.stream_version(stream);
        self.faults.call(Method::StreamVersion, read).await
    }
    async fn read_event(&self, id: uuid::Uuid) -> Result<Option<RecordedEvent>> {
        let read = self.inner.read_event(id);
        self.faults.call(Method::ReadEvent, read).await
    }
    async fn streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<event_store::StreamInfo>> {
        let read = self.inner.streams(prefix, after, limit);
        self.faults.call(Method::Streams, read).await
    }
    async fn watermark(&self) -> Result<Position> {
        self.faults
            .call(Method::Watermark, self.inner.watermark())
            .await
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes()
    }
    async fn close_stream(&self, stream: &StreamId, closed: bool) -> Result<bool> {
        let call = self.inner.close_stream(stream, closed);
        self.faults.call(Method::CloseStream, call).await
    }
    async fn closed_streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<event_store::ClosedStream>> {
        let read = self.inner.closed_streams(prefix, after, limit);
        self.faults.call(Method::ClosedStreams, read).await
    }
}

impl<S: Checkpoints> Checkpoints for FaultyStore<S> {
    fn load_checkpoint(
        &self,
        name: &CheckpointName,
    ) -> impl Future<Output = Result<Option<Position>>> + Send {
        self.inner.load_checkpoint(name)
    }
    fn save_checkpoint(
        &self,
        name: &CheckpointName,
        position: Position,
    ) -> impl Future<Output = Result<()>> + Send {
        self.inner.save_checkpoint(name, position)
    }
    fn checkpoints(&self) -> impl Future<Output = Result<Vec<(CheckpointName, Position)>>> + Send {
        self.inner.checkpoints()
    }
}

/// A cache that delegates to `C` and fails or delays the calls its rules name.
#[derive(Debug, Clone)]
pub struct FaultyCache<C> {
    inner: C,
    faults: Faults,
}

impl<C> FaultyCache<C> {
    /// `inner`, with no fault planned yet.
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            faults: Faults::default(),
        }
    }

    /// The wrapped cache.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    fault_controls!();
}

impl<C: Cache> Cache for FaultyCache<C> {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedState>> {
        self.faults
            .call(Method::CacheGet, self.inner.get(key))
            .await
    }
    async fn put(&self, key: &CacheKey, entry: CachedState) -> Result<()> {
        self.faults
            .call(Method::CachePut, self.inner.put(key, entry))
            .await
    }
    async fn invalidate(&self, key: &CacheKey) -> Result<()> {
        self.faults
            .call(Method::CacheInvalidate, self.inner.invalidate(key))
            .await
    }
    async fn forget_subject(&self, subject: &str) -> Result<u64> {
        self.faults
            .call(
                Method::CacheForgetSubject,
                self.inner.forget_subject(subject),
            )
            .await
    }
}

/// Appends `n` kit counter events to `stream` (alternating additions and removals) and returns
/// what the fold of them must be.
async fn seed<S: Store + Clone>(store: &S, stream: &str, n: usize) -> KitCounter {
    let es = EventStore::from_store(store.clone());
    let mut local = Vec::with_capacity(n);
    let mut last = event_store::Position::START;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let events: Vec<NewEvent> = chunk
            .iter()
            .map(|&i| {
                let add = i % 3 != 0;
                let amount = i64::try_from(i % 7 + 1).expect("small");
                local.push((add, amount));
                let ty = if add { "Added" } else { "Removed" };
                NewEvent::new("kit-counter", ty, json!({"n": amount}))
            })
            .collect();
        let appended = es
            .append(stream, ExpectedVersion::Any, events)
            .await
            .expect("seed");
        last = appended.last_position().unwrap_or(last);
    }
    // Caches keep only final states: let the seed become final (other transactions on a busy
    // server hold finality back for a moment).
    crate::support::wait_final(store, last).await;
    fold_local(&local)
}

/// A fold whose store fails on its second page, or on the watermark, is an error, and caches
/// nothing; a fold that is slowed down while events are appended still equals the whole log;
/// after the store heals, the fold (through the cache, and cold) is exact.
pub async fn fold_survives_store_faults<S: Store + Clone>(store: &S) {
    let stream = format!("faults-{}", suffix());
    // More than one read of the fold (it reads ahead, `READ_AHEAD_CHUNK` events at a time).
    let want = seed(store, &stream, event_store::READ_AHEAD_CHUNK + 40).await;
    let faulty = FaultyStore::new(store.clone());
    let cache = MemoryCache::new();
    let es = EventStore::new(faulty.clone(), cache.clone(), NoEmitter);

    faulty.fail_nth(Method::ReadCommitted, 2);
    let failed = es.aggregate::<KitCounter>(&stream).await;
    assert!(
        failed.is_err(),
        "a fold whose second page fails is an error"
    );
    assert!(cache.is_empty(), "nothing is cached past a failure");

    faulty.fail_nth(Method::Watermark, 1);
    assert!(
        es.aggregate::<KitCounter>(&stream).await.is_err(),
        "a fold whose watermark fails is an error"
    );
    assert!(cache.is_empty(), "nothing is cached past a failure");
    assert!(faulty.injected() >= 2);

    faulty.heal();
    let folded = es.fold::<KitCounter>(&stream).await.expect("fold");
    assert_eq!(folded.state, want, "the whole fold after the failures");
    let again = es.fold::<KitCounter>(&stream).await.expect("fold");
    assert!(again.from_cache, "the healed fold was cached");
    assert_eq!(again.state, want);

    // Slow reads while a writer appends: the cached state is still a prefix of the log.
    faulty.delay(Method::ReadCommitted, Duration::from_millis(5));
    let writer = {
        let es = EventStore::from_store(store.clone());
        let stream = stream.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                es.append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new("kit-counter", "Added", json!({"n": i + 1}))],
                )
                .await
                .expect("append");
            }
        })
    };
    let racing = es.aggregate::<KitCounter>(&stream).await.expect("fold");
    writer.await.expect("writer");
    faulty.heal();
    assert!(racing.count >= want.count, "the racing fold saw the seed");
    let whole = EventStore::from_store(store.clone())
        .aggregate::<KitCounter>(&stream)
        .await
        .expect("fold");
    let cached = es.aggregate::<KitCounter>(&stream).await.expect("fold");
    assert_eq!(
        cached, whole,
        "the cache stays invisible after slow, racing folds"
    );
}

/// A cache that fails to read or to write never changes what a fold returns.
pub async fn fold_survives_cache_faults<S: Store + Clone>(store: &S) {
    let stream = format!("cache-faults-{}", suffix());
    let want = seed(store, &stream, 300).await;
    let cache = FaultyCache::new(MemoryCache::new());
    let es = EventStore::new(store.clone(), cache.clone(), NoEmitter);

    cache.fail_from(Method::CachePut, 1);
    assert_eq!(
        es.aggregate::<KitCounter>(&stream).await.expect("fold"),
        want
    );
    assert!(cache.inner().is_empty(), "a failed put leaves nothing");

    cache.heal();
    assert_eq!(
        es.aggregate::<KitCounter>(&stream).await.expect("fold"),
        want
    );
    assert_eq!(cache.inner().len(), 1, "the healed put is cached");

    cache.fail_from(Method::CacheGet, 1);
    let folded = es.fold::<KitCounter>(&stream).await.expect("fold");
    assert!(!folded.from_cache, "a failed get folds from the start");
    assert_eq!(folded.state, want);
    assert!(cache.injected() >= 2);
}

/// A live tail whose store fails a read yields the error, then resumes where it was: every event
/// appended meanwhile arrives once, in log order.
pub async fn tail_survives_failed_reads<S: Store + Clone>(store: &S) {
    let stream = format!("tail-faults-{}", suffix());
    let start = event_store::head(store).await.expect("head");
    let faulty = FaultyStore::new(store.clone());
    let es = EventStore::from_store(faulty.clone()).with_poll_interval(Duration::from_millis(20));
    let mut tail = Box::pin(es.tail(start, Some(event_store::Query::stream(&stream))));
    let writer = {
        let es = EventStore::from_store(store.clone());
        let stream = stream.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                es.append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new("kit", "Tick", json!({"i": i}))],
                )
                .await
                .expect("append");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // A filtered tail reads final events through `read_final` (filtered in the store).
    faulty.fail_nth(Method::ReadFinal, 3);
    let mut got = Vec::new();
    let mut errors = 0;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < 30 {
        let next = tokio::time::timeout_at(deadline, tail.next())
            .await
            .expect("the tail keeps delivering");
        match next {
            Some(Ok(e)) => got.push(e),
            Some(Err(_)) => errors += 1,
            None => panic!("a live tail never ends"),
        }
        if errors == 1 && got.len() == 10 {
            // A second failure later on, in the middle of the run.
            faulty.fail_nth(Method::ReadFinal, 2);
        }
    }
    writer.await.expect("writer");
    assert!(errors >= 1, "the injected failure reached the caller");
    let versions: Vec<u64> = got.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (0..30).collect::<Vec<u64>>(),
        "no gap and no duplicate after failed reads"
    );
}
