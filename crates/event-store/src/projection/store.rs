//! What a backend provides for projections: their state, and leases across processes.

use std::fmt;
use std::future::Future;

use crate::backend::Store;
use crate::error::Result;
use crate::model::Position;
use crate::projection::name::ProjectionName;
use crate::projection::state::{Generation, PartitionState, ProjectionRecord, Revision};

/// What a lease is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseKind {
    /// The membership of a runner of one version of the projection (slot `slot`): how runners
    /// of the same code count each other to share partitions.
    Member {
        /// The projection version the runner runs.
        version: u32,
        /// The slot.
        slot: u32,
    },
    /// The right to apply events to one partition of one generation.
    Partition {
        /// The generation.
        generation: u64,
        /// The partition.
        partition: u32,
    },
}

/// A lease's key: a projection and what for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    /// The projection.
    pub projection: ProjectionName,
    /// What for.
    pub kind: LeaseKind,
}

impl LeaseKey {
    /// A member slot's key.
    pub fn member(projection: &ProjectionName, version: u32, slot: u32) -> Self {
        Self {
            projection: projection.clone(),
            kind: LeaseKind::Member { version, slot },
        }
    }

    /// A partition's key.
    pub fn partition(projection: &ProjectionName, generation: u64, partition: u32) -> Self {
        Self {
            projection: projection.clone(),
            kind: LeaseKind::Partition {
                generation,
                partition,
            },
        }
    }

    /// The key as text: `orders.v1-member-0`, `orders.g2-p3` (safe in a file name).
    pub fn text(&self) -> String {
        self.to_string()
    }

    /// A stable 64-bit hash of [`LeaseKey::text`] (FNV-1a), for backends whose locks take a
    /// number (PostgreSQL's advisory locks).
    pub fn hash64(&self, namespace: &str) -> i64 {
        let h = fnv1a(fnv1a(FNV_OFFSET, namespace.as_bytes()), b"\0");
        let h = fnv1a(h, self.text().as_bytes());
        i64::from_ne_bytes(h.to_ne_bytes())
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            LeaseKind::Member { version, slot } => {
                write!(f, "{}.v{version}-member-{slot}", self.projection)
            }
            LeaseKind::Partition {
                generation,
                partition,
            } => write!(f, "{}.g{generation}-p{partition}", self.projection),
        }
    }
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `bytes`, from `h`.
pub(crate) fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The partition of a stream among `partitions`: FNV-1a of the stream id's bytes, modulo the
/// count. Stable across versions, processes and platforms (a generation's checkpoints depend on
/// it); every event of a stream is in the same partition, so a stream's order is kept.
pub fn partition_of(stream: &str, partitions: u32) -> u32 {
    let n = u64::from(partitions.max(1));
    // The remainder is below `partitions`, which is a u32.
    u32::try_from(fnv1a(FNV_OFFSET, stream.as_bytes()) % n).unwrap_or(0)
}

/// A held lease. Dropping it releases it.
pub trait Lease: Send + Sync + 'static {
    /// Whether the lease is still held (a PostgreSQL session lock is lost with its connection).
    /// A runner checks before each batch; the check-and-set on the partition's checkpoint
    /// catches the rest ([`Error::Fenced`](crate::Error::Fenced)).
    fn is_held(&self) -> bool;

    /// Releases the lease, returning once others can take it (dropping it releases it too, but
    /// may finish in the background).
    fn release(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        drop(self);
        async {}
    }
}

/// A store that keeps projections: their generations, their partitions' checkpoints, and leases
/// that let one runner at a time work on each partition, across processes.
///
/// # Contract (checked by the kit's projection checks)
/// - [`ProjectionStore::begin_generation`], [`ProjectionStore::switch_generation`] and
///   [`ProjectionStore::save_partition`] are atomic check-and-sets: they change nothing and say
///   so when the record is not what they expect.
/// - A lease is held by one holder at a time, across processes; a holder that dies (its process,
///   its connection) loses it, so another can take it.
pub trait ProjectionStore: Store + Clone {
    /// A held lease.
    type Lease: Lease;

    /// The projection's record (`None`: never started).
    fn projection(
        &self,
        name: &ProjectionName,
    ) -> impl Future<Output = Result<Option<ProjectionRecord>>> + Send;

    /// Every projection's record, by name.
    fn projections(&self) -> impl Future<Output = Result<Vec<ProjectionRecord>>> + Send;

    /// Starts generation `next` with its partitions at the start of the log, if the
    /// projection's generations are still `expected`: as the active one when there is none,
    /// else as the building one (replacing a building one, whose partitions are removed).
    /// Returns whether it was started.
    fn begin_generation(
        &self,
        name: &ProjectionName,
        expected: Revision,
        next: &Generation,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Marks a generation prepared; `false` when it already was (or is gone).
    fn mark_created(
        &self,
        name: &ProjectionName,
        generation: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Saves a partition's state if its checkpoint is still `expected`; otherwise
    /// [`Error::Fenced`](crate::Error::Fenced) (another runner moved it, or the generation is
    /// gone).
    fn save_partition(
        &self,
        name: &ProjectionName,
        state: &PartitionState,
        expected: Position,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Makes the building generation `to` the active one, if the active one is still `from`,
    /// and removes the old one's partitions. Returns whether it switched.
    fn switch_generation(
        &self,
        name: &ProjectionName,
        from: Option<u64>,
        to: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Clears the parked state of the projection's partitions (all of them, or one), so their
    /// runners continue from the event they parked on. Returns how many were parked.
    fn resume(
        &self,
        name: &ProjectionName,
        partition: Option<u32>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Takes the lease `key` if no one holds it.
    fn try_lease(&self, key: &LeaseKey)
    -> impl Future<Output = Result<Option<Self::Lease>>> + Send;

    /// Whether someone (in any process, this one included) holds the lease `key`.
    fn is_leased(&self, key: &LeaseKey) -> impl Future<Output = Result<bool>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable() {
        // These values are part of the stored state's contract (a generation's checkpoints
        // depend on them): FNV-1a 64 of "order-1" is 0xdee4809f34bee86d.
        assert_eq!(fnv1a(FNV_OFFSET, b"order-1"), 0xdee4_809f_34be_e86d);
        assert_eq!(partition_of("order-1", 1), 0);
        assert_eq!(partition_of("order-1", 4), 1);
        assert_eq!(partition_of("order-2", 4), 0);
        assert_eq!(partition_of("customer-42", 4), 2);
        assert_eq!(partition_of("order-1", 7), 5);
        let spread: Vec<u32> = (0..1000)
            .map(|i| partition_of(&format!("order-{i}"), 4))
            .collect();
        for p in 0..4 {
            let n = spread.iter().filter(|&&x| x == p).count();
            assert!((150..350).contains(&n), "partition {p} got {n} of 1000");
        }
        assert_eq!(fnv1a(FNV_OFFSET, b""), FNV_OFFSET);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(partition_of("", 0), 0);
    }

    #[test]
    fn lease_keys_print_as_file_names() {
        let name = ProjectionName::new("orders").unwrap();
        assert_eq!(LeaseKey::member(&name, 1, 2).text(), "orders.v1-member-2");
        assert_eq!(LeaseKey::partition(&name, 3, 1).text(), "orders.g3-p1");
        assert_ne!(
            LeaseKey::member(&name, 1, 0).hash64("a"),
            LeaseKey::member(&name, 1, 0).hash64("b")
        );
    }
}
