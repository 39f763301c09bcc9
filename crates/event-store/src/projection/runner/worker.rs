//! A worker: one partition of one generation, read from its checkpoint and applied in batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use std::panic::AssertUnwindSafe;
use tokio::sync::{Notify, watch};

use crate::cursor::LogCursor;
use crate::error::{Error, Result};
use crate::model::{Position, RecordedEvent};
use crate::projection::name::ProjectionName;
use crate::projection::state::{Generation, Parked, PartitionState};
use crate::projection::store::{Lease, ProjectionStore, partition_of};
use crate::projection::target::{ApplyError, Batch, Target, state_before};
use crate::query::CheckedQuery;

use super::{RunnerMetrics, RunnerOptions, bump};

/// What a worker does after a flush.
pub(super) enum Flow {
    Continue,
    Parked,
    Stop,
}

pub(super) struct Worker<S: ProjectionStore, T> {
    pub(super) store: S,
    pub(super) target: Arc<T>,
    pub(super) options: RunnerOptions,
    pub(super) name: ProjectionName,
    pub(super) generation: Generation,
    pub(super) query: CheckedQuery,
    pub(super) partition: u32,
    pub(super) lease: S::Lease,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) opening: super::Opening,
    pub(super) metrics: Arc<RunnerMetrics>,
    pub(super) wake: Arc<Notify>,
    /// This partition in `event_store_projection_partitions`.
    pub(super) gauge: crate::metrics::PartitionGauge,
}

/// Waits for store failures: 100 ms doubling up to 5 s.
pub(super) fn store_backoff(failures: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(5))
}

impl<S: ProjectionStore, T: Target<S>> Worker<S, T> {
    /// Opens (or erases) the sealed personal values of `events` when the runner does. A failure
    /// of the key store is retried with the store's backoff; a value that can never open (it
    /// does not authenticate, or is not a sealed value) is [`Opening::Refused`], so the
    /// partition parks on its event. Nothing is passed on as garbage.
    async fn open(&mut self, events: &mut [RecordedEvent]) -> Opening {
        let super::Opening::Open(erasure) = self.opening.clone() else {
            return Opening::Ready;
        };
        let mut failures = 0;
        for (i, event) in events.iter_mut().enumerate() {
            loop {
                match crate::erasure::open_with(erasure.as_deref(), event).await {
                    Ok(_) => break,
                    Err(e @ Error::Backend { .. }) => {
                        failures += 1;
                        self.store_failed(&e);
                        if self.pause(store_backoff(failures)).await {
                            return Opening::Stop;
                        }
                    }
                    Err(e) => return Opening::Refused(i, e),
                }
            }
        }
        Opening::Ready
    }

    /// Opens the personal values of the batch `pending` (see [`Worker::open`]); `None` when it
    /// is ready to apply. When an event's value can never open, the events before it are
    /// applied and the partition parks on it.
    async fn open_batch(
        &mut self,
        state: &mut PartitionState,
        pending: &mut Vec<RecordedEvent>,
    ) -> Option<Flow> {
        let (i, error) = match self.open(pending).await {
            Opening::Ready => return None,
            Opening::Stop => return Some(Flow::Stop),
            Opening::Refused(i, error) => (i, error),
        };
        let failing = pending[i].clone();
        pending.truncate(i);
        if let Some(before) = pending.last().map(|e| e.position) {
            let events: Arc<[RecordedEvent]> = std::mem::take(pending).into();
            match self.apply(state, before, false, &events).await {
                Flow::Continue => {}
                other => return Some(other),
            }
        }
        Some(self.park(state, &failing, &error, 1).await)
    }

    pub(super) fn stopping(&self) -> bool {
        *self.stop.borrow() || !self.lease.is_held()
    }

    /// Sleeps for `d`, or less when told to stop; returns whether to stop.
    pub(super) async fn pause(&mut self, d: Duration) -> bool {
        if self.stopping() {
            return true;
        }
        tokio::select! {
            _ = self.stop.changed() => {}
            () = tokio::time::sleep(d) => {}
        }
        self.stopping()
    }

    /// The partition's stored state (`None`: gone with its generation).
    pub(super) async fn load(&mut self) -> Option<PartitionState> {
        let mut failures = 0;
        loop {
            match self.store.projection(&self.name).await {
                Ok(record) => {
                    return record.and_then(|r| {
                        r.partition(self.generation.generation, self.partition)
                            .cloned()
                    });
                }
                Err(e) => {
                    failures += 1;
                    self.store_failed(&e);
                    if self.pause(store_backoff(failures)).await {
                        return None;
                    }
                }
            }
        }
    }

    pub(super) fn store_failed(&self, e: &Error) {
        crate::metrics::projection_count(self.name.as_str(), "store_errors");
        bump(&self.metrics.store_errors, 1);
        self.metrics.error(e);
        tracing::warn!(projection = %self.name, generation = self.generation.generation, partition = self.partition, error = %e, "store failed; retrying");
    }

    pub(super) async fn run(self) -> Result<()> {
        let (outcome, lease) = self.work().await;
        lease.release().await;
        outcome
    }

    /// Works on the partition until told to stop, the lease is lost or the partition is taken
    /// over; hands the lease back for release.
    pub(super) async fn work(mut self) -> (Result<()>, S::Lease) {
        let outcome = self.follow_partition().await;
        (outcome, self.lease)
    }

    pub(super) async fn follow_partition(&mut self) -> Result<()> {
        let Some(mut state) = self.load().await else {
            return Ok(());
        };
        let mut changes = self.store.changes();
        loop {
            if self.stopping() {
                return Ok(());
            }
            self.gauge.set(if state.parked.is_some() {
                "parked"
            } else if state.caught_up {
                "live"
            } else {
                "catching_up"
            });
            if state.parked.is_some() {
                // Wait for `resume` (or a reset that replaces the generation).
                if self.pause(self.options.poll_interval).await {
                    return Ok(());
                }
                match self.load().await {
                    Some(s) => state = s,
                    None => return Ok(()),
                }
                if state.parked.is_none() {
                    tracing::info!(projection = %self.name, generation = self.generation.generation, partition = self.partition, "resumed");
                }
                continue;
            }
            match self.follow(&mut state, &mut changes).await {
                Flow::Continue | Flow::Parked => {}
                Flow::Stop => return Ok(()),
            }
        }
    }

    /// Reads from the partition's checkpoint and applies batches until it parks or stops.
    pub(super) async fn follow(
        &mut self,
        state: &mut PartitionState,
        changes: &mut watch::Receiver<u64>,
    ) -> Flow {
        let size = self.options.batch_size;
        let mut cursor = LogCursor::with_page(state.checkpoint, size).filtered(self.query.clone());
        let mut pending: Vec<RecordedEvent> = Vec::new();
        let mut pending_since: Option<Instant> = None;
        let mut passed = 0usize;
        let mut saved_at = Instant::now();
        let mut failures = 0u32;
        // While catching up, the next page is read while the batch before it is applied.
        let store = self.store.clone();
        let mut prefetched: Option<Result<Vec<RecordedEvent>>> = None;
        loop {
            if self.stopping() {
                return Flow::Stop;
            }
            changes.borrow_and_update();
            let read = match prefetched.take() {
                Some(read) => read,
                None => cursor.next_page(&store).await,
            };
            let page = match read {
                Ok(page) => {
                    failures = 0;
                    page
                }
                Err(e) => {
                    failures += 1;
                    self.store_failed(&e);
                    if self.pause(store_backoff(failures)).await {
                        return Flow::Stop;
                    }
                    continue;
                }
            };
            let at_end = cursor.was_short(&page);
            let read = page.len();
            let partitions = self.generation.partitions;
            pending.extend(
                page.into_iter()
                    .filter(|e| partition_of(&e.stream, partitions) == self.partition),
            );
            passed += read;
            if !pending.is_empty() && pending_since.is_none() {
                pending_since = Some(Instant::now());
            }
            let upto = cursor.position();
            let waited = pending_since.is_some_and(|t| t.elapsed() >= self.options.batch_time);
            let flush = pending.len() >= size
                || (at_end && !pending.is_empty() && waited)
                || (at_end && !state.caught_up)
                || (pending.is_empty()
                    && upto > state.checkpoint
                    && (passed >= size.saturating_mul(8)
                        || (at_end && saved_at.elapsed() >= self.options.lease_interval)));
            if flush {
                if let Some(flow) = self.open_batch(state, &mut pending).await {
                    return flow;
                }
                let first_catch_up = at_end && !state.caught_up;
                let events: Arc<[RecordedEvent]> = std::mem::take(&mut pending).into();
                let flow = if at_end {
                    self.apply(state, upto, at_end, &events).await
                } else {
                    let (flow, next) = tokio::join!(
                        self.apply(state, upto, at_end, &events),
                        cursor.next_page(&store)
                    );
                    prefetched = Some(next);
                    flow
                };
                match flow {
                    Flow::Continue => {}
                    other => return other,
                }
                pending_since = None;
                passed = 0;
                saved_at = Instant::now();
                if first_catch_up {
                    self.gauge.set("live");
                    tracing::info!(projection = %self.name, generation = self.generation.generation, partition = self.partition, "caught up");
                    self.wake.notify_one();
                }
                if !at_end {
                    continue;
                }
            } else if !at_end {
                continue;
            }
            // At the end of the log: wait for a wake-up, the batch's time, or the poll interval.
            let wait = match pending_since {
                Some(t) => self.options.batch_time.saturating_sub(t.elapsed()),
                None => self.options.poll_interval,
            };
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    tokio::time::sleep(wait).await;
                },
                () = tokio::time::sleep(wait) => {}
                _ = self.stop.changed() => {}
            }
        }
    }

    /// Applies `events` (read up to `upto`), splitting around a failing event: the events
    /// before it are applied, it is retried, and the partition parks when it keeps failing.
    pub(super) async fn apply(
        &mut self,
        state: &mut PartitionState,
        upto: Position,
        at_end: bool,
        all: &Arc<[RecordedEvent]>,
    ) -> Flow {
        let mut events: &[RecordedEvent] = all;
        let mut attempts = 0u32;
        let mut failures = 0u32;
        // After a handler failure, the rest of the batch is applied one event at a time, so the
        // failing event is found even when the handler cannot say which it was (a panic).
        let mut single = false;
        let mut cut: Option<usize> = None;
        loop {
            if self.stopping() {
                return Flow::Stop;
            }
            let n = match cut {
                Some(c) => c,
                None if single => 1.min(events.len()),
                None => events.len(),
            };
            let whole = n == events.len();
            let chunk = &events[..n];
            let next = advanced(state, chunk, upto, whole, at_end);
            let offset = all.len() - events.len();
            match self
                .run_target(state, next.clone(), chunk, all, offset)
                .await
            {
                Ok(()) => {
                    *state = next;
                    self.applied(chunk);
                    events = &events[n..];
                    cut = None;
                    attempts = 0;
                    failures = 0;
                    if whole {
                        return Flow::Continue;
                    }
                }
                Err(ApplyError::Store(e)) if e.is_fenced() => {
                    tracing::info!(projection = %self.name, generation = self.generation.generation, partition = self.partition, "partition taken over or generation replaced; stopping");
                    return Flow::Stop;
                }
                Err(ApplyError::Handler {
                    index,
                    committed,
                    source,
                }) if index < n => {
                    single = true;
                    if index > 0 {
                        if committed {
                            *state = state_before(state, chunk, index);
                            bump(&self.metrics.applied, index as u64);
                            crate::metrics::projection_applied(self.name.as_str(), &chunk[..index]);
                            events = &events[index..];
                        } else {
                            // Apply the events before the failing one first.
                            cut = Some(index);
                            continue;
                        }
                    }
                    cut = None;
                    attempts += 1;
                    bump(&self.metrics.retries, 1);
                    crate::metrics::projection_count(self.name.as_str(), "retries");
                    self.metrics.error(&source);
                    let Some(failing) = events.first() else {
                        return Flow::Continue;
                    };
                    if attempts >= self.options.retry.max_attempts {
                        return self.park(state, failing, &*source, attempts).await;
                    }
                    tracing::warn!(projection = %self.name, generation = self.generation.generation, partition = self.partition, event = %failing.id, stream = %failing.stream, version = failing.version, attempt = attempts, error = %error_chain(&*source), "handler failed; retrying");
                    if self.pause(self.options.retry.backoff(attempts)).await {
                        return Flow::Stop;
                    }
                }
                Err(e) => {
                    // A store failure, or a failure no event can be blamed for (a flush):
                    // retry the same batch.
                    failures += 1;
                    bump(&self.metrics.store_errors, 1);
                    crate::metrics::projection_count(self.name.as_str(), "store_errors");
                    self.metrics.error(&e);
                    tracing::warn!(projection = %self.name, generation = self.generation.generation, partition = self.partition, error = %e, "batch failed; retrying");
                    if self.pause(store_backoff(failures)).await {
                        return Flow::Stop;
                    }
                }
            }
        }
    }

    /// Hands one batch to the target; a panic is the handler failing (its first event is then
    /// retried alone, and the batch is applied one event at a time).
    pub(super) async fn run_target(
        &self,
        previous: &PartitionState,
        next: PartitionState,
        events: &[RecordedEvent],
        all: &Arc<[RecordedEvent]>,
        offset: usize,
    ) -> Result<(), ApplyError> {
        let batch = Batch {
            projection: &self.name,
            generation: &self.generation,
            previous,
            next,
            events,
            all,
            offset,
        };
        AssertUnwindSafe(self.target.apply(&self.store, batch))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(ApplyError::Handler {
                    index: 0,
                    committed: false,
                    source: format!("the handler panicked: {}", panic_text(&*panic)).into(),
                })
            })
    }

    /// Counts an applied batch.
    pub(super) fn applied(&self, chunk: &[RecordedEvent]) {
        bump(&self.metrics.applied, chunk.len() as u64);
        bump(&self.metrics.batches, 1);
        crate::metrics::projection_applied(self.name.as_str(), chunk);
        if let Some(last) = chunk.last() {
            let age = chrono::Utc::now() - last.context.time;
            let micros = age.num_microseconds().unwrap_or(i64::MAX).max(0);
            self.metrics
                .last_lag_micros
                .store(u64::try_from(micros).unwrap_or(0), Ordering::Relaxed);
            tracing::debug!(projection = %self.name, generation = self.generation.generation, partition = self.partition, events = chunk.len(), checkpoint = %last.position, "batch applied");
        }
    }

    /// Parks the partition on `failing`.
    pub(super) async fn park(
        &mut self,
        state: &mut PartitionState,
        failing: &RecordedEvent,
        error: &(dyn std::error::Error + Send + Sync + 'static),
        attempts: u32,
    ) -> Flow {
        let mut parked = state.clone();
        parked.parked = Some(Parked::new(failing, error_chain(error), attempts));
        parked.updated_at = chrono::Utc::now();
        let mut failures = 0;
        loop {
            match self
                .store
                .save_partition(&self.name, &parked, state.checkpoint)
                .await
            {
                Ok(()) => {
                    *state = parked;
                    bump(&self.metrics.parked, 1);
                    crate::metrics::projection_count(self.name.as_str(), "parked");
                    self.gauge.set("parked");
                    tracing::error!(projection = %self.name, generation = self.generation.generation, partition = self.partition, event = %failing.id, stream = %failing.stream, version = failing.version, position = %failing.position, attempts, error = %error_chain(error), "handler keeps failing: partition parked (`event-store projections resume` after a fix)");
                    return Flow::Parked;
                }
                Err(e) if e.is_fenced() => return Flow::Stop,
                Err(e) => {
                    failures += 1;
                    self.store_failed(&e);
                    if self.pause(store_backoff(failures)).await {
                        return Flow::Stop;
                    }
                }
            }
        }
    }
}

/// What opening a batch's personal values came to.
enum Opening {
    /// Every value opened or erased.
    Ready,
    /// The runner stopped while the key store was failing.
    Stop,
    /// The `usize`-th event holds a value that can never open.
    Refused(usize, Error),
}

/// `state` after `chunk`: its checkpoint is the last event's when more of the batch follows,
/// else the position the batch was read up to.
pub(super) fn advanced(
    state: &PartitionState,
    chunk: &[RecordedEvent],
    upto: Position,
    whole: bool,
    at_end: bool,
) -> PartitionState {
    let mut next = state.clone();
    next.checkpoint = match chunk.last() {
        Some(last) if !whole => last.position,
        _ => upto.max(state.checkpoint),
    };
    next.applied = state.applied + chunk.len() as u64;
    next.caught_up = state.caught_up || (whole && at_end);
    next.parked = None;
    next.updated_at = chrono::Utc::now();
    next
}

/// A panic's message.
pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// An error and its sources, as one line.
pub(super) fn error_chain(e: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
