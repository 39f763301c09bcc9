//! The supervisor: generations, preparation, memberships and partition leases, the switch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::projection::name::ProjectionName;
use crate::projection::state::{Generation, PartitionState, Revision};
use crate::projection::store::{Lease, LeaseKey, ProjectionStore};
use crate::projection::target::{ApplyError, Projection, Target};

use super::worker::Worker;
use super::{MAX_MEMBERS, RunnerMetrics, RunnerOptions, bump};

pub(super) struct WorkerSlot {
    pub(super) stop: watch::Sender<bool>,
}

pub(super) struct Supervisor<S: ProjectionStore, T> {
    pub(super) store: S,
    pub(super) target: Arc<T>,
    pub(super) options: RunnerOptions,
    pub(super) name: ProjectionName,
    pub(super) query: crate::query::Query,
    pub(super) canonical: String,
    pub(super) opening: super::Opening,
    pub(super) metrics: Arc<RunnerMetrics>,
    pub(super) member: Option<S::Lease>,
    pub(super) workers: HashMap<(u64, u32), WorkerSlot>,
    pub(super) tasks: JoinSet<Result<()>>,
    pub(super) task_keys: HashMap<tokio::task::Id, (u64, u32)>,
    pub(super) wake: Arc<Notify>,
    pub(super) idle_warned: bool,
    pub(super) partitions_warned: bool,
}

impl<S: ProjectionStore, T: Target<S>> Supervisor<S, T> {
    /// One round: generations, preparation, membership, leases, the switch.
    pub(super) async fn tick(&mut self) -> Result<()> {
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
    pub(super) fn check_definition(&mut self, newest: &Generation) -> Result<()> {
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
    pub(super) async fn share(&mut self, runnable: &[(Generation, bool)]) -> Result<()> {
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

    pub(super) fn start_worker(&mut self, generation: Generation, partition: u32, lease: S::Lease) {
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
            opening: self.opening.clone(),
            metrics: Arc::clone(&self.metrics),
            wake: Arc::clone(&self.wake),
            gauge: crate::metrics::PartitionGauge::new(self.name.as_str()),
        };
        let task = self.tasks.spawn(worker.run());
        self.task_keys.insert(task.id(), key);
        self.workers.insert(key, WorkerSlot { stop });
        bump(&self.metrics.partitions, 1);
    }

    /// Forgets finished workers (their leases are released).
    pub(super) fn reap(&mut self) {
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
    pub(super) async fn switch_if_ready(
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
    pub(super) async fn shutdown(&mut self) {
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
