//! Projections in memory: the [`MemoryStore`]'s records and leases (one process).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::memory::{MemoryStore, lock};
use crate::model::Position;
use crate::projection::name::ProjectionName;
use crate::projection::state::{Generation, PartitionState, ProjectionRecord, Revision};
use crate::projection::store::{Lease, LeaseKey, ProjectionStore};

/// The projection state of a memory store.
#[derive(Debug, Default)]
pub(crate) struct MemoryProjections {
    records: Mutex<BTreeMap<ProjectionName, ProjectionRecord>>,
    leases: Arc<Mutex<HashSet<LeaseKey>>>,
}

/// A lease on a [`MemoryStore`]: released when dropped.
#[derive(Debug)]
pub struct MemoryLease {
    leases: Arc<Mutex<HashSet<LeaseKey>>>,
    key: LeaseKey,
}

impl Lease for MemoryLease {
    fn is_held(&self) -> bool {
        true
    }
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        lock(&self.leases).remove(&self.key);
    }
}

fn fenced(name: &ProjectionName, state: &PartitionState) -> Error {
    Error::Fenced {
        projection: name.to_string(),
        generation: state.generation,
        partition: state.partition,
    }
}

impl ProjectionStore for MemoryStore {
    type Lease = MemoryLease;

    async fn projection(&self, name: &ProjectionName) -> Result<Option<ProjectionRecord>> {
        Ok(lock(&self.inner.projections.records).get(name).cloned())
    }

    async fn projections(&self) -> Result<Vec<ProjectionRecord>> {
        Ok(lock(&self.inner.projections.records)
            .values()
            .cloned()
            .collect())
    }

    async fn begin_generation(
        &self,
        name: &ProjectionName,
        expected: Revision,
        next: &Generation,
    ) -> Result<bool> {
        let mut records = lock(&self.inner.projections.records);
        let record = records
            .entry(name.clone())
            .or_insert_with(|| ProjectionRecord {
                name: name.clone(),
                active: None,
                building: None,
                partitions: Vec::new(),
            });
        if record.revision() != expected
            || [&record.active, &record.building]
                .into_iter()
                .flatten()
                .any(|g| g.generation >= next.generation)
        {
            if record.active.is_none() && record.building.is_none() {
                records.remove(name);
            }
            return Ok(false);
        }
        let mut next = next.clone();
        next.created = false;
        if let Some(old) = record.building.take() {
            record.partitions.retain(|p| p.generation != old.generation);
        }
        record
            .partitions
            .extend((0..next.partitions).map(|p| PartitionState::start(next.generation, p)));
        if record.active.is_none() {
            record.active = Some(next);
        } else {
            record.building = Some(next);
        }
        Ok(true)
    }

    async fn mark_created(&self, name: &ProjectionName, generation: u64) -> Result<bool> {
        let mut records = lock(&self.inner.projections.records);
        let Some(record) = records.get_mut(name) else {
            return Ok(false);
        };
        for g in [&mut record.active, &mut record.building]
            .into_iter()
            .flatten()
        {
            if g.generation == generation && !g.created {
                g.created = true;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn save_partition(
        &self,
        name: &ProjectionName,
        state: &PartitionState,
        expected: Position,
    ) -> Result<()> {
        let mut records = lock(&self.inner.projections.records);
        let slot = records.get_mut(name).and_then(|r| {
            r.partitions
                .iter_mut()
                .find(|p| p.generation == state.generation && p.partition == state.partition)
        });
        match slot {
            Some(p) if p.checkpoint == expected => {
                *p = state.clone();
                Ok(())
            }
            _ => Err(fenced(name, state)),
        }
    }

    async fn switch_generation(
        &self,
        name: &ProjectionName,
        from: Option<u64>,
        to: u64,
    ) -> Result<bool> {
        let mut records = lock(&self.inner.projections.records);
        let Some(record) = records.get_mut(name) else {
            return Ok(false);
        };
        let matches = record.active.as_ref().map(|g| g.generation) == from
            && record.building.as_ref().is_some_and(|g| g.generation == to);
        if !matches {
            return Ok(false);
        }
        record.active = record.building.take();
        if let Some(old) = from {
            record.partitions.retain(|p| p.generation != old);
        }
        Ok(true)
    }

    async fn resume(&self, name: &ProjectionName, partition: Option<u32>) -> Result<u64> {
        let mut records = lock(&self.inner.projections.records);
        let Some(record) = records.get_mut(name) else {
            return Ok(0);
        };
        let mut n = 0;
        for p in &mut record.partitions {
            if partition.is_none_or(|x| x == p.partition) && p.parked.take().is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn try_lease(&self, key: &LeaseKey) -> Result<Option<MemoryLease>> {
        let leases = &self.inner.projections.leases;
        Ok(lock(leases).insert(key.clone()).then(|| MemoryLease {
            leases: Arc::clone(leases),
            key: key.clone(),
        }))
    }

    async fn is_leased(&self, key: &LeaseKey) -> Result<bool> {
        Ok(lock(&self.inner.projections.leases).contains(key))
    }
}
