//! The runner: catches a projection up from its checkpoints, then follows the log live, in
//! partitions shared among the runners of every process, retrying and parking failures,
//! building new generations beside the active one and switching when they are caught up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use std::panic::AssertUnwindSafe;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::cursor::LogCursor;
use crate::error::{Error, Result};
use crate::facade::RetryPolicy;
use crate::model::{Position, RecordedEvent};
use crate::projection::name::ProjectionName;
use crate::projection::state::{Generation, Parked, PartitionState, Revision};
use crate::projection::store::{Lease, LeaseKey, ProjectionStore, partition_of};
use crate::projection::target::{ApplyError, Batch, Projection, Target, state_before};
use crate::query::CheckedQuery;

/// The most runners of one projection that count each other (member slots).
pub const MAX_MEMBERS: u32 = 64;

/// How a [`Runner`] works. `Default` gives one partition, batches of 500 events or 10 ms, five
/// attempts before parking, and leases checked every second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunnerOptions {
    /// How many partitions the generations this runner starts (the first, and on a version
    /// bump) are built in (by a hash of the stream id; each partition applies its streams'
    /// events in order). Part of a generation: an existing generation keeps its count whatever
    /// the option says; changing it takes a reset (`event-store projections reset NAME
    /// --partitions N`) or a version bump.
    pub partitions: u32,
    /// The most events per batch (one transaction and one checkpoint).
    pub batch_size: usize,
    /// Once caught up, how long a batch waits for more events before it is applied.
    pub batch_time: Duration,
    /// How a failing event is retried before its partition parks.
    pub retry: RetryPolicy,
    /// How often the runner checks leases, generations and whether a rebuild can switch.
    pub lease_interval: Duration,
    /// How often a caught-up partition re-reads when no wake-up arrives (other processes'
    /// appends on SQLite, a lost `LISTEN` connection on PostgreSQL).
    pub poll_interval: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            partitions: 1,
            batch_size: 500,
            batch_time: Duration::from_millis(10),
            retry: RetryPolicy {
                max_attempts: 5,
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
            },
            lease_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
        }
    }
}

impl RunnerOptions {
    /// The same options with `partitions` partitions.
    #[must_use]
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// The same options with batches of at most `events` events, applied after at most `wait`
    /// once caught up.
    #[must_use]
    pub fn batch(mut self, events: usize, wait: Duration) -> Self {
        self.batch_size = events;
        self.batch_time = wait;
        self
    }

    /// The same options with `retry` for failing events.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The same options checking leases every `lease` and re-reading every `poll` when idle.
    #[must_use]
    pub fn intervals(mut self, lease: Duration, poll: Duration) -> Self {
        self.lease_interval = lease;
        self.poll_interval = poll;
        self
    }

    fn check(&self) -> Result<()> {
        if !(1..=1024).contains(&self.partitions) {
            return Err(Error::invalid("partitions", "1 to 1024 partitions"));
        }
        if !(1..=100_000).contains(&self.batch_size) {
            return Err(Error::invalid("batch_size", "1 to 100000 events"));
        }
        if self.retry.max_attempts == 0 {
            return Err(Error::invalid("retry", "at least one attempt"));
        }
        if self.lease_interval.is_zero() || self.poll_interval.is_zero() {
            return Err(Error::invalid("intervals", "intervals are not zero"));
        }
        Ok(())
    }
}

/// What a runner has done since it started (readable at any time; also logged).
#[derive(Debug, Default)]
pub struct RunnerMetrics {
    /// Events applied.
    pub applied: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Handler failures that were retried.
    pub retries: AtomicU64,
    /// Partitions parked.
    pub parked: AtomicU64,
    /// Store failures (retried).
    pub store_errors: AtomicU64,
    /// Partitions this runner works on now.
    pub partitions: AtomicU64,
    /// Generations switched in by this runner.
    pub switches: AtomicU64,
    /// The age of the last batch's last event when it was applied, in microseconds (the live
    /// lag).
    pub last_lag_micros: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl RunnerMetrics {
    /// The last error the runner met (a store failure, a handler failure), if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn error(&self, e: &dyn std::fmt::Display) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Runs a projection: see the [module docs](crate::projection).
pub struct Runner<S, T> {
    store: S,
    target: Arc<T>,
    options: RunnerOptions,
}

impl<S, T> std::fmt::Debug for Runner<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("target", &std::any::type_name::<T>())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A running [`Runner`]: stop it, or read its metrics. Dropping the handle stops the runner at
/// once (batches in flight are rolled back or, at least once, applied again later).
#[derive(Debug)]
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
    metrics: Arc<RunnerMetrics>,
}

impl RunnerHandle {
    /// Stops the runner after its batches in flight, releasing its leases; returns how it ended.
    pub async fn stop(mut self) -> Result<()> {
        self.stop.send_replace(true);
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| Error::backend_with("projection", "the runner task failed", e))?,
            None => Ok(()),
        }
    }

    /// Waits for the runner to end by itself (a fatal error; it runs until stopped otherwise).
    pub async fn join(mut self) -> Result<()> {
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| Error::backend_with("projection", "the runner task failed", e))?,
            None => Ok(()),
        }
    }

    /// Whether the runner ended (by itself: a fatal error; see [`RunnerHandle::stop`]).
    pub fn is_finished(&self) -> bool {
        self.task
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
    }

    /// The runner's metrics.
    pub fn metrics(&self) -> &RunnerMetrics {
        &self.metrics
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl<S: ProjectionStore, T: Target<S>> Runner<S, T> {
    /// A runner of `target` on `store`, with default options.
    pub fn new(store: S, target: T) -> Self {
        Self {
            store,
            target: Arc::new(target),
            options: RunnerOptions::default(),
        }
    }

    /// The same runner with `options`.
    #[must_use]
    pub fn with_options(mut self, options: RunnerOptions) -> Self {
        self.options = options;
        self
    }

    /// Starts the runner on the Tokio runtime.
    pub fn spawn(self) -> RunnerHandle {
        let (stop, stopped) = watch::channel(false);
        let metrics = Arc::new(RunnerMetrics::default());
        let task = tokio::spawn(self.run_until(stopped, Arc::clone(&metrics)));
        RunnerHandle {
            stop,
            task: Some(task),
            metrics,
        }
    }

    /// Runs until `stop` turns `true` (or its sender is dropped), or a fatal error: a
    /// projection whose name, options or definition are refused.
    pub async fn run_until(
        self,
        mut stop: watch::Receiver<bool>,
        metrics: Arc<RunnerMetrics>,
    ) -> Result<()> {
        self.options.check()?;
        let name = ProjectionName::new(T::Projection::NAME)?;
        let query = self.target.projection().query();
        query.clone().check()?;
        let mut sup = Supervisor {
            store: self.store,
            target: self.target,
            options: self.options,
            name,
            canonical: query.canonical(),
            query,
            metrics,
            member: None,
            workers: HashMap::new(),
            tasks: JoinSet::new(),
            task_keys: HashMap::new(),
            wake: Arc::new(Notify::new()),
            idle_warned: false,
            partitions_warned: false,
        };
        let outcome = loop {
            if *stop.borrow() {
                break Ok(());
            }
            match sup.tick().await {
                Ok(()) => {}
                Err(e) if e.is_invalid_input() => break Err(e),
                Err(e) => {
                    bump(&sup.metrics.store_errors, 1);
                    sup.metrics.error(&e);
                    tracing::warn!(projection = %sup.name, error = %e, "projection runner: store failed; retrying");
                }
            }
            sup.reap();
            let wake = Arc::clone(&sup.wake);
            tokio::select! {
                changed = stop.changed() => if changed.is_err() { break Ok(()) },
                () = tokio::time::sleep(sup.options.lease_interval) => {}
                () = wake.notified() => {}
            }
        };
        sup.shutdown().await;
        outcome
    }
}

struct WorkerSlot {
    stop: watch::Sender<bool>,
}

struct Supervisor<S: ProjectionStore, T> {
    store: S,
    target: Arc<T>,
    options: RunnerOptions,
    name: ProjectionName,
    query: crate::query::Query,
    canonical: String,
    metrics: Arc<RunnerMetrics>,
    member: Option<S::Lease>,
    workers: HashMap<(u64, u32), WorkerSlot>,
    tasks: JoinSet<Result<()>>,
    task_keys: HashMap<tokio::task::Id, (u64, u32)>,
    wake: Arc<Notify>,
    idle_warned: bool,
    partitions_warned: bool,
}

impl<S: ProjectionStore, T: Target<S>> Supervisor<S, T> {
    /// One round: generations, preparation, membership, leases, the switch.
    async fn tick(&mut self) -> Result<()> {
        let version = T::Projection::VERSION;
        let Some(record) = self.store.projection(&self.name).await? else {
            let first = Generation::new(1, version, self.options.partitions, self.query.clone());
            if self
                .store
                .begin_generation(&self.name, Revision::default(), &first)
                .await?
            {
                tracing::info!(projection = %self.name, version, partitions = first.partitions, "projection started");
            }
            self.wake.notify_one();
            return Ok(());
        };
        let Some(newest) = record.newest() else {
            return Err(Error::backend(
                "projection",
                format!("projection `{}` has no generation", self.name),
            ));
        };
        if newest.version < version {
            let next = Generation::new(
                newest.generation + 1,
                version,
                self.options.partitions,
                self.query.clone(),
            );
            if self
                .store
                .begin_generation(&self.name, record.revision(), &next)
                .await?
            {
                tracing::info!(projection = %self.name, from = newest.version, to = version, generation = next.generation, "projection version changed: rebuilding beside the current model");
            }
            self.wake.notify_one();
            return Ok(());
        }
        if newest.version == version {
            self.check_definition(newest)?;
        }
        // The generations this code builds: the active one (kept live during a reset) and the
        // building one, when they are of this version.
        let runnable: Vec<(Generation, bool)> = [(&record.active, true), (&record.building, false)]
            .into_iter()
            .filter_map(|(g, active)| g.as_ref().map(|g| (g.clone(), active)))
            .filter(|(g, _)| g.version == version)
            .collect();
        // Stop the workers of generations that are gone or not ours.
        let keep: Vec<u64> = runnable.iter().map(|(g, _)| g.generation).collect();
        for ((generation, _), slot) in &self.workers {
            if !keep.contains(generation) {
                slot.stop.send_replace(true);
            }
        }
        if runnable.is_empty() {
            if !self.idle_warned {
                tracing::warn!(projection = %self.name, version, newest = newest.version, "a newer version of the projection runs elsewhere; this runner stays idle");
                self.idle_warned = true;
            }
            self.member = None;
            return Ok(());
        }
        for (generation, active) in &runnable {
            if !generation.created {
                match self
                    .target
                    .prepare(&self.store, &self.name, generation, *active)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(projection = %self.name, generation = generation.generation, "generation prepared");
                    }
                    Err(ApplyError::Store(e)) => return Err(e),
                    Err(e) => {
                        self.metrics.error(&e);
                        tracing::error!(projection = %self.name, generation = generation.generation, error = %e, "preparing the generation failed; retrying");
                        return Ok(());
                    }
                }
            }
        }
        self.share(&runnable).await?;
        self.switch_if_ready(&record).await
    }

    /// Refuses to run a generation of this version built from another query (a definition
    /// change takes a version bump). A generation's partition count is part of it: a runner
    /// whose option differs runs the stored count, and says how to change it.
    fn check_definition(&mut self, newest: &Generation) -> Result<()> {
        let version = T::Projection::VERSION;
        if newest.partitions != self.options.partitions && !self.partitions_warned {
            self.partitions_warned = true;
            tracing::warn!(
                projection = %self.name,
                version,
                stored = newest.partitions,
                option = self.options.partitions,
                "the projection is built in {} partitions, which this runner keeps; to use {}, \
                 reset it (`event-store projections reset {} --partitions {}`)",
                newest.partitions,
                self.options.partitions,
                self.name,
                self.options.partitions
            );
        }
        if newest.query.canonical() != self.canonical {
            return Err(Error::invalid(
                "query",
                format!(
                    "projection `{}` version {version} was built from another query: bump its VERSION to rebuild it",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// Takes this runner's share of the partitions (releasing any beyond it).
    async fn share(&mut self, runnable: &[(Generation, bool)]) -> Result<()> {
        if self.member.as_ref().is_none_or(|m| !m.is_held()) {
            self.member = None;
            for slot in 0..MAX_MEMBERS {
                if let Some(lease) = self
                    .store
                    .try_lease(&LeaseKey::member(&self.name, T::Projection::VERSION, slot))
                    .await?
                {
                    self.member = Some(lease);
                    break;
                }
            }
        }
        let mut members = 0usize;
        for slot in 0..MAX_MEMBERS {
            if self
                .store
                .is_leased(&LeaseKey::member(&self.name, T::Projection::VERSION, slot))
                .await?
            {
                members += 1;
            }
        }
        let total: usize = runnable.iter().map(|(g, _)| g.partitions as usize).sum();
        let fair = total.div_ceil(members.max(1));
        let live: Vec<(u64, u32)> = self
            .workers
            .iter()
            .filter(|(_, w)| !*w.stop.borrow())
            .map(|(k, _)| *k)
            .collect();
        if live.len() > fair {
            let mut extra = live;
            extra.sort_unstable();
            for key in extra.iter().skip(fair) {
                if let Some(slot) = self.workers.get(key) {
                    tracing::info!(projection = %self.name, generation = key.0, partition = key.1, "releasing a partition to another runner");
                    slot.stop.send_replace(true);
                }
            }
            return Ok(());
        }
        let mut held = live.len();
        for (generation, _) in runnable {
            for partition in 0..generation.partitions {
                if held >= fair {
                    return Ok(());
                }
                let key = (generation.generation, partition);
                if self.workers.contains_key(&key) {
                    continue;
                }
                let lease_key = LeaseKey::partition(&self.name, generation.generation, partition);
                if let Some(lease) = self.store.try_lease(&lease_key).await? {
                    self.start_worker(generation.clone(), partition, lease);
                    held += 1;
                }
            }
        }
        Ok(())
    }

    fn start_worker(&mut self, generation: Generation, partition: u32, lease: S::Lease) {
        let (stop, stopped) = watch::channel(false);
        let key = (generation.generation, partition);
        let query = match generation.query.clone().check() {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(projection = %self.name, error = %e, "a generation's stored query is refused");
                return;
            }
        };
        tracing::info!(projection = %self.name, generation = key.0, partition, "partition taken");
        let worker = Worker {
            store: self.store.clone(),
            target: Arc::clone(&self.target),
            options: self.options,
            name: self.name.clone(),
            generation,
            query,
            partition,
            lease,
            stop: stopped,
            metrics: Arc::clone(&self.metrics),
            wake: Arc::clone(&self.wake),
        };
        let task = self.tasks.spawn(worker.run());
        self.task_keys.insert(task.id(), key);
        self.workers.insert(key, WorkerSlot { stop });
        bump(&self.metrics.partitions, 1);
    }

    /// Forgets finished workers (their leases are released).
    fn reap(&mut self) {
        while let Some(joined) = self.tasks.try_join_next_with_id() {
            let (key, outcome) = match joined {
                Ok((id, outcome)) => (self.task_keys.remove(&id), outcome),
                Err(e) => (
                    self.task_keys.remove(&e.id()),
                    Err(Error::backend_with(
                        "projection",
                        "a partition worker panicked",
                        e,
                    )),
                ),
            };
            let Some(key) = key else { continue };
            self.workers.remove(&key);
            self.metrics.partitions.fetch_sub(1, Ordering::Relaxed);
            match outcome {
                Ok(()) => {
                    tracing::info!(projection = %self.name, generation = key.0, partition = key.1, "partition released");
                }
                Err(e) => {
                    self.metrics.error(&e);
                    tracing::error!(projection = %self.name, generation = key.0, partition = key.1, error = %e, "partition worker failed");
                }
            }
        }
    }

    /// Switches a caught-up building generation in.
    async fn switch_if_ready(
        &mut self,
        record: &crate::projection::ProjectionRecord,
    ) -> Result<()> {
        let Some(building) = &record.building else {
            return Ok(());
        };
        if building.version != T::Projection::VERSION || !building.created {
            return Ok(());
        }
        let states: Vec<&PartitionState> = record.partitions_of(building.generation).collect();
        let ready = states.len() == building.partitions as usize
            && states.iter().all(|p| p.caught_up && p.parked.is_none());
        if !ready {
            return Ok(());
        }
        match self
            .target
            .switch(&self.store, &self.name, record.active.as_ref(), building)
            .await
        {
            Ok(true) => {
                bump(&self.metrics.switches, 1);
                tracing::info!(projection = %self.name, generation = building.generation, "rebuild caught up: switched readers to the new generation");
                self.wake.notify_one();
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(ApplyError::Store(e)) => Err(e),
            Err(e) => {
                self.metrics.error(&e);
                tracing::error!(projection = %self.name, generation = building.generation, error = %e, "switching generations failed; retrying");
                Ok(())
            }
        }
    }

    /// Stops every worker after its batch in flight and waits for them.
    async fn shutdown(&mut self) {
        for slot in self.workers.values() {
            slot.stop.send_replace(true);
        }
        while let Some(joined) = self.tasks.join_next().await {
            if let Ok(Err(e)) = joined {
                tracing::warn!(projection = %self.name, error = %e, "partition worker ended with an error");
            }
        }
        self.task_keys.clear();
        self.workers.clear();
        self.metrics.partitions.store(0, Ordering::Relaxed);
        if let Some(member) = self.member.take() {
            member.release().await;
        }
    }
}

/// What a worker does after a flush.
enum Flow {
    Continue,
    Parked,
    Stop,
}

struct Worker<S: ProjectionStore, T> {
    store: S,
    target: Arc<T>,
    options: RunnerOptions,
    name: ProjectionName,
    generation: Generation,
    query: CheckedQuery,
    partition: u32,
    lease: S::Lease,
    stop: watch::Receiver<bool>,
    metrics: Arc<RunnerMetrics>,
    wake: Arc<Notify>,
}

/// Waits for store failures: 100 ms doubling up to 5 s.
fn store_backoff(failures: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(5))
}

impl<S: ProjectionStore, T: Target<S>> Worker<S, T> {
    fn stopping(&self) -> bool {
        *self.stop.borrow() || !self.lease.is_held()
    }

    /// Sleeps for `d`, or less when told to stop; returns whether to stop.
    async fn pause(&mut self, d: Duration) -> bool {
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
    async fn load(&mut self) -> Option<PartitionState> {
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

    fn store_failed(&self, e: &Error) {
        bump(&self.metrics.store_errors, 1);
        self.metrics.error(e);
        tracing::warn!(projection = %self.name, generation = self.generation.generation, partition = self.partition, error = %e, "store failed; retrying");
    }

    async fn run(self) -> Result<()> {
        let (outcome, lease) = self.work().await;
        lease.release().await;
        outcome
    }

    /// Works on the partition until told to stop, the lease is lost or the partition is taken
    /// over; hands the lease back for release.
    async fn work(mut self) -> (Result<()>, S::Lease) {
        let outcome = self.follow_partition().await;
        (outcome, self.lease)
    }

    async fn follow_partition(&mut self) -> Result<()> {
        let Some(mut state) = self.load().await else {
            return Ok(());
        };
        let mut changes = self.store.changes();
        loop {
            if self.stopping() {
                return Ok(());
            }
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
    async fn follow(
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
    async fn apply(
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
    async fn run_target(
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
    fn applied(&self, chunk: &[RecordedEvent]) {
        bump(&self.metrics.applied, chunk.len() as u64);
        bump(&self.metrics.batches, 1);
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
    async fn park(
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

/// `state` after `chunk`: its checkpoint is the last event's when more of the batch follows,
/// else the position the batch was read up to.
fn advanced(
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
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// An error and its sources, as one line.
fn error_chain(e: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
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
