//! The runner: catches a projection up from its checkpoints, then follows the log live, in
//! partitions shared among the runners of every process, retrying and parking failures,
//! building new generations beside the active one and switching when they are caught up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::facade::RetryPolicy;
use crate::projection::name::ProjectionName;
use crate::projection::store::ProjectionStore;
use crate::projection::target::{Projection, Target};

mod supervisor;
mod worker;

use supervisor::Supervisor;

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

    pub(super) fn error(&self, e: &dyn std::fmt::Display) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
    }
}

pub(super) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Runs a projection: see the [module docs](crate::projection).
pub struct Runner<S, T> {
    store: S,
    target: Arc<T>,
    options: RunnerOptions,
    opening: Opening,
}

/// What a runner does with sealed personal values before its target sees an event.
#[derive(Clone, Default)]
pub(crate) enum Opening {
    /// Nothing: the target gets the events as stored (sealed values sealed).
    #[default]
    Raw,
    /// Opens them with the keys, or erases them (`null`) once forgotten or without keys, as
    /// every typed read path of the facade does ([`EventStore::runner`](crate::EventStore::runner)).
    Open(Option<Arc<dyn crate::erasure::Erasure>>),
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
            opening: Opening::Raw,
        }
    }

    /// The same runner, opening sealed personal values as `opening` says.
    #[must_use]
    pub(crate) fn with_opening(mut self, opening: Opening) -> Self {
        self.opening = opening;
        self
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
            opening: self.opening,
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
