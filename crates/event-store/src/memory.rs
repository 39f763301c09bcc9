//! In-memory adapters: a [`MemoryStore`], a [`MemoryCache`] and an in-process
//! [`InProcessEmitter`]. They keep every invariant of the other backends, under concurrent
//! callers too, and are the reference the conformance kit is written against.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::backend::{
    Appended, Cache, CacheKey, CachedState, Checkpoints, ClosedStream, Emitter, Handler, Store,
    StoreStats, StreamInfo, Subscription, SubscriptionSpec, TypeCount,
};
use crate::batch::{AppendBatch, MultiAppend};
use crate::error::{Error, Result};
use crate::model::{CheckpointName, Direction, Position, RecordedEvent, StreamId};
use crate::query::{CheckedQuery, TypeFilter};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below checks before it mutates, so a panic cannot leave the data
    // half-changed: a poisoned lock is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Log {
    events: Vec<RecordedEvent>,
    streams: HashMap<String, Vec<usize>>,
    ids: HashMap<Uuid, usize>,
    /// Closed streams and when they were closed.
    closed: HashMap<String, chrono::DateTime<chrono::Utc>>,
}

impl Log {
    fn refuse_closed(&self, stream: &StreamId) -> Result<()> {
        if self.closed.contains_key(stream.as_str()) {
            return Err(Error::StreamClosed {
                stream: stream.as_str().to_owned(),
            });
        }
        Ok(())
    }
}

pub(crate) struct MemoryInner {
    log: RwLock<Log>,
    checkpoints: Mutex<HashMap<CheckpointName, Position>>,
    changes: watch::Sender<u64>,
    pub(crate) projections: crate::projection::memory::MemoryProjections,
}

/// An event log in memory. Cheap to clone (clones share the log).
///
/// Positions are `1, 2, 3, …` in commit order; every committed event is final.
#[derive(Clone)]
pub struct MemoryStore {
    pub(crate) inner: Arc<MemoryInner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("events", &self.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                log: RwLock::new(Log::default()),
                checkpoints: Mutex::new(HashMap::new()),
                changes: watch::Sender::new(0),
                projections: crate::projection::memory::MemoryProjections::default(),
            }),
        }
    }

    /// The number of stored events.
    pub fn len(&self) -> usize {
        self.read().events.len()
    }

    /// Whether the store holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Log> {
        self.inner
            .log
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Log> {
        self.inner
            .log
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn append_now(&self, batch: &AppendBatch) -> Result<Appended> {
        let mut log = self.write();
        let plan = Self::plan(&log, batch)?;
        let appended = Self::apply(&mut log, batch, plan);
        drop(log);
        if appended.stored {
            self.inner.changes.send_modify(|n| *n += 1);
        }
        Ok(appended)
    }

    /// Every batch or none, in order (a later batch sees the earlier ones); a refused batch
    /// undoes the ones before it. One lock: no deadlock.
    fn append_many_now(&self, batches: &MultiAppend) -> Result<Vec<Appended>> {
        let mut log = self.write();
        let before = log.events.len();
        let mut out = Vec::with_capacity(batches.batches().len());
        for b in batches.batches() {
            match Self::plan(&log, b) {
                Ok(plan) => out.push(Self::apply(&mut log, b, plan)),
                Err(e) => {
                    Self::truncate(&mut log, before);
                    return Err(e);
                }
            }
        }
        drop(log);
        if out.iter().any(|a| a.stored) {
            self.inner.changes.send_modify(|n| *n += 1);
        }
        Ok(out)
    }

    /// Removes the events from index `len` on (a multi-stream append that was refused).
    fn truncate(log: &mut Log, len: usize) {
        for e in log.events.drain(len..).collect::<Vec<_>>() {
            log.ids.remove(&e.id);
            if let Some(indexes) = log.streams.get_mut(&e.stream) {
                indexes.retain(|&i| i < len);
                if indexes.is_empty() {
                    log.streams.remove(&e.stream);
                }
            }
        }
    }

    /// What appending `batch` would do: `Err(originals)` for an idempotent retry, `Ok(version)`
    /// of its first event for a new append.
    fn plan(
        log: &Log,
        batch: &AppendBatch,
    ) -> Result<std::result::Result<u64, Vec<RecordedEvent>>> {
        let stored = batch
            .events()
            .iter()
            .map(|e| log.ids.get(&e.id).map(|&i| log.events[i].clone()))
            .collect();
        if let Some(originals) = batch.check_stored(stored)? {
            return Ok(Err(originals));
        }
        log.refuse_closed(batch.stream())?;
        let actual = log
            .streams
            .get(batch.stream().as_str())
            .map(|v| v.len() as u64 - 1);
        Ok(Ok(batch.check_expected(actual)?))
    }

    fn apply(
        log: &mut Log,
        batch: &AppendBatch,
        plan: std::result::Result<u64, Vec<RecordedEvent>>,
    ) -> Appended {
        let stream = batch.stream();
        let first_version = match plan {
            Ok(v) => v,
            Err(originals) => {
                return Appended {
                    events: originals,
                    stored: false,
                };
            }
        };
        let mut recorded = Vec::with_capacity(batch.len());
        for (i, e) in batch.events().iter().enumerate() {
            let index = log.events.len();
            let r = e.record(
                stream,
                first_version + i as u64,
                Position::from_offset(index as u64 + 1),
            );
            log.ids.insert(r.id, index);
            log.streams.entry(r.stream.clone()).or_default().push(index);
            log.events.push(r.clone());
            recorded.push(r);
        }
        Appended {
            events: recorded,
            stored: true,
        }
    }
}

fn offset(p: Position) -> usize {
    // Memory positions have a zero high part; a foreign position (high part set) sorts after
    // every memory position.
    match p.parts() {
        (0, low) => usize::try_from(low).unwrap_or(usize::MAX),
        _ => usize::MAX,
    }
}

impl Store for MemoryStore {
    async fn append(&self, batch: AppendBatch) -> Result<Appended> {
        self.append_now(&batch)
    }

    async fn append_many(&self, batches: MultiAppend) -> Result<Vec<Appended>> {
        self.append_many_now(&batches)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let log = self.read();
        log.refuse_closed(stream)?;
        let Some(indexes) = log.streams.get(stream.as_str()) else {
            return Ok(Vec::new());
        };
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        let picked: Vec<RecordedEvent> = match direction {
            Direction::Forward => indexes
                .iter()
                .skip(from)
                .take(limit)
                .map(|&i| log.events[i].clone())
                .collect(),
            Direction::Backward => {
                let end = from.saturating_add(1).min(indexes.len());
                indexes[..end]
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|&i| log.events[i].clone())
                    .collect()
            }
        };
        Ok(picked)
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>> {
        let log = self.read();
        let start = offset(after).min(log.events.len());
        Ok(log.events[start..].iter().take(limit).cloned().collect())
    }

    async fn read_all_backward(
        &self,
        before: Option<Position>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let log = self.read();
        // Positions are offsets + 1: the events before position p are log.events[..p - 1].
        let end = before.map_or(log.events.len(), |p| {
            offset(p).saturating_sub(1).min(log.events.len())
        });
        Ok(log.events[..end]
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn stats(&self) -> Result<StoreStats> {
        let log = self.read();
        let mut types = std::collections::BTreeMap::<(String, String), u64>::new();
        for e in &log.events {
            *types
                .entry((e.namespace.clone(), e.event_type.clone()))
                .or_default() += 1;
        }
        Ok(StoreStats {
            events: log.events.len() as u64,
            streams: log.streams.len() as u64,
            types: types
                .into_iter()
                .map(|((namespace, event_type), events)| TypeCount {
                    namespace,
                    event_type,
                    events,
                })
                .collect(),
            size_bytes: None,
            head: log.events.last().map(|e| e.position),
        })
    }

    async fn read_final(
        &self,
        query: &CheckedQuery,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        // One writer at a time: every committed event is final.
        self.read_committed(query, after, limit).await
    }

    async fn read_committed(
        &self,
        query: &CheckedQuery,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let log = self.read();
        let start = offset(after).min(log.events.len());
        let out = if let Some(stream) = query.stream_id() {
            let Some(indexes) = log.streams.get(stream) else {
                return Ok(Vec::new());
            };
            let first = indexes.partition_point(|&i| i < start);
            indexes[first..]
                .iter()
                .map(|&i| &log.events[i])
                .filter(|e| query.matches(e))
                .take(limit)
                .cloned()
                .collect()
        } else {
            log.events[start..]
                .iter()
                .filter(|e| query.matches(e))
                .take(limit)
                .cloned()
                .collect()
        };
        Ok(out)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>> {
        let log = self.read();
        log.refuse_closed(stream)?;
        Ok(log.streams.get(stream.as_str()).map(|v| v.len() as u64 - 1))
    }

    async fn read_event(&self, id: Uuid) -> Result<Option<RecordedEvent>> {
        let log = self.read();
        Ok(log.ids.get(&id).map(|&i| log.events[i].clone()))
    }

    async fn streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamInfo>> {
        let log = self.read();
        let mut picked: Vec<(&String, &Vec<usize>)> = log
            .streams
            .iter()
            .filter(|(id, _)| {
                id.starts_with(prefix)
                    && after.is_none_or(|a| id.as_str() > a.as_str())
                    && !log.closed.contains_key(id.as_str())
            })
            .collect();
        picked.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Ok(picked
            .into_iter()
            .take(limit)
            .filter_map(|(_, indexes)| indexes.last().map(|&i| StreamInfo::of_last(&log.events[i])))
            .collect())
    }

    async fn close_stream(&self, stream: &StreamId, closed: bool) -> Result<bool> {
        let mut log = self.write();
        Ok(if closed {
            match log.closed.entry(stream.as_str().to_owned()) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(chrono::Utc::now());
                    true
                }
            }
        } else {
            log.closed.remove(stream.as_str()).is_some()
        })
    }

    async fn closed_streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<ClosedStream>> {
        let log = self.read();
        let mut picked: Vec<ClosedStream> = log
            .closed
            .iter()
            .filter(|(id, _)| {
                id.starts_with(prefix) && after.is_none_or(|a| id.as_str() > a.as_str())
            })
            .map(|(id, at)| ClosedStream {
                stream: id.clone(),
                closed_at: *at,
            })
            .collect();
        picked.sort_unstable_by(|a, b| a.stream.cmp(&b.stream));
        picked.truncate(limit);
        Ok(picked)
    }

    async fn watermark(&self) -> Result<Position> {
        Ok(Position::from_offset(self.read().events.len() as u64 + 1))
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

impl Checkpoints for MemoryStore {
    async fn load_checkpoint(&self, name: &CheckpointName) -> Result<Option<Position>> {
        Ok(lock(&self.inner.checkpoints).get(name).copied())
    }

    async fn save_checkpoint(&self, name: &CheckpointName, position: Position) -> Result<()> {
        lock(&self.inner.checkpoints).insert(name.clone(), position);
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<(CheckpointName, Position)>> {
        let mut all: Vec<(CheckpointName, Position)> = lock(&self.inner.checkpoints)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        all.sort();
        Ok(all)
    }
}

/// An aggregate cache in memory. Cheap to clone (clones share the entries).
#[derive(Debug, Clone, Default)]
pub struct MemoryCache {
    entries: Arc<Mutex<HashMap<CacheKey, CachedState>>>,
}

impl MemoryCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Cache for MemoryCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedState>> {
        Ok(lock(&self.entries).get(key).cloned())
    }

    async fn invalidate(&self, key: &CacheKey) -> Result<()> {
        lock(&self.entries).remove(key);
        Ok(())
    }

    async fn put(&self, key: &CacheKey, entry: CachedState) -> Result<()> {
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some(old) if old.checkpoint > entry.checkpoint => {}
            _ => {
                entries.insert(key.clone(), entry);
            }
        }
        Ok(())
    }

    async fn forget_subject(&self, subject: &str) -> Result<u64> {
        let mut entries = lock(&self.entries);
        let before = entries.len();
        entries.retain(|_, e| !e.subjects.iter().any(|s| s == subject));
        Ok((before - entries.len()) as u64)
    }
}

/// An event that a group's handler kept failing on.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The group whose handler failed.
    pub group: String,
    /// The event.
    pub event: RecordedEvent,
    /// The last error the handler returned.
    pub reason: String,
    /// How many times the handler was called.
    pub attempts: u32,
}

struct Group {
    types: Vec<TypeFilter>,
    tx: mpsc::UnboundedSender<RecordedEvent>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<RecordedEvent>>>,
}

/// Delivers events to subscribers in the same process.
///
/// A group owns one queue that receives every published event of the types its subscriptions
/// handle, from the moment the group's first subscription is made; the group's subscriptions
/// compete for the queue's events (one handler call per event). A failing handler is retried with
/// exponential backoff; after the last attempt the event is kept in [`Self::dead_letters`] and the
/// subscription moves on.
#[derive(Clone)]
pub struct InProcessEmitter {
    groups: Arc<Mutex<HashMap<String, Group>>>,
    dead: Arc<Mutex<Vec<DeadLetter>>>,
    max_attempts: u32,
    backoff: Duration,
}

impl Default for InProcessEmitter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for InProcessEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessEmitter")
            .field("groups", &lock(&self.groups).len())
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl InProcessEmitter {
    /// An emitter that tries a handler 5 times, waiting 10 ms, 20 ms, 40 ms and 80 ms between
    /// attempts.
    pub fn new() -> Self {
        Self {
            groups: Arc::default(),
            dead: Arc::default(),
            max_attempts: 5,
            backoff: Duration::from_millis(10),
        }
    }

    /// Sets how many times a handler is called for one event (at least 1) and the first wait
    /// between attempts (doubled after each).
    #[must_use]
    pub fn with_retry(mut self, max_attempts: u32, first_backoff: Duration) -> Self {
        self.max_attempts = max_attempts.max(1);
        self.backoff = first_backoff;
        self
    }

    /// The events that handlers failed on for good, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.dead).clone()
    }
}

impl Emitter for InProcessEmitter {
    async fn publish(&self, events: &[RecordedEvent]) -> Result<()> {
        let groups = lock(&self.groups);
        for g in groups.values() {
            for e in events
                .iter()
                .filter(|e| TypeFilter::any_matches(&g.types, &e.namespace, &e.event_type))
            {
                // The receiver lives as long as the group entry: sending cannot fail.
                let _ = g.tx.send(e.clone());
            }
        }
        Ok(())
    }

    async fn subscribe(&self, spec: SubscriptionSpec, handler: Handler) -> Result<Subscription> {
        crate::limits::check_name("group", &spec.group)?;
        for t in &spec.types {
            crate::limits::check_name("types.namespace", &t.namespace)?;
        }
        let rx = {
            let mut groups = lock(&self.groups);
            let group = groups.entry(spec.group.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                Group {
                    types: Vec::new(),
                    tx,
                    rx: Arc::new(tokio::sync::Mutex::new(rx)),
                }
            });
            // The group receives the union of its subscriptions' types; empty types mean
            // every event, and stay so once any subscription asked for everything.
            let first = Arc::strong_count(&group.rx) == 1;
            if spec.types.is_empty() {
                group.types.clear();
            } else if first || !group.types.is_empty() {
                group.types.extend(spec.types.iter().cloned());
            }
            Arc::clone(&group.rx)
        };
        let dead = Arc::clone(&self.dead);
        let (max_attempts, backoff) = (self.max_attempts, self.backoff);
        let group = spec.group;
        let run = {
            let group = group.clone();
            async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(event) = next else { return Ok(()) };
                    deliver(&group, &handler, event, max_attempts, backoff, &dead).await;
                }
            }
        };
        Ok(Subscription::new(group, run))
    }
}

async fn deliver(
    group: &str,
    handler: &Handler,
    event: RecordedEvent,
    max_attempts: u32,
    backoff: Duration,
    dead: &Mutex<Vec<DeadLetter>>,
) {
    let mut wait = backoff;
    for attempt in 1..=max_attempts {
        let outcome = std::panic::AssertUnwindSafe(handler(event.clone()))
            .catch_unwind()
            .await;
        let reason = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the handler panicked".to_owned(),
        };
        if attempt == max_attempts {
            tracing::warn!(group, event_id = %event.id, %reason, attempts = attempt, "dead-lettered");
            lock(dead).push(DeadLetter {
                group: group.to_owned(),
                event,
                reason,
                attempts: attempt,
            });
            return;
        }
        tracing::debug!(group, event_id = %event.id, %reason, attempt, "handler failed; retrying");
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(2);
    }
}
