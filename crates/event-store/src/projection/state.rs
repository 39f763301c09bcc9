//! What the store keeps about a projection: its generations and each partition's checkpoint.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{Position, RecordedEvent};
use crate::projection::name::ProjectionName;
use crate::query::Query;

/// One build of a projection's read model: the projection's version, the partition count and
/// the query it was built with. A reset or a version bump starts a new generation, which is
/// built beside the active one and replaces it when caught up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The generation's number (1, 2, …), unique for the projection.
    pub generation: u64,
    /// The projection's version it was built by.
    pub version: u32,
    /// How many partitions it is built in.
    pub partitions: u32,
    /// The events it is built from.
    pub query: Query,
    /// Whether its target was prepared (its tables created).
    pub created: bool,
    /// When it was started.
    pub started_at: DateTime<Utc>,
}

impl Generation {
    /// A new, unprepared generation.
    pub fn new(generation: u64, version: u32, partitions: u32, query: Query) -> Self {
        Self {
            generation,
            version,
            partitions,
            query,
            created: false,
            started_at: Utc::now(),
        }
    }
}

/// Why a partition stopped: the event its handler kept failing on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    /// The event's position.
    pub position: Position,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's stream.
    pub stream: String,
    /// The event's version in its stream.
    pub version: u64,
    /// The handler's last error.
    pub error: String,
    /// How many times the handler was tried.
    pub attempts: u32,
    /// When the partition parked.
    pub at: DateTime<Utc>,
}

impl Parked {
    /// The record of `event` failing `attempts` times with `error`.
    pub fn new(event: &RecordedEvent, error: String, attempts: u32) -> Self {
        Self {
            position: event.position,
            event_id: event.id,
            stream: event.stream.clone(),
            version: event.version,
            error,
            attempts,
            at: Utc::now(),
        }
    }
}

/// One partition of one generation: where it is in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The generation.
    pub generation: u64,
    /// The partition (`0..partitions`).
    pub partition: u32,
    /// Every event up to here is applied.
    pub checkpoint: Position,
    /// Whether the partition has reached the end of the log once (a generation whose every
    /// partition has can replace the active one).
    pub caught_up: bool,
    /// Events applied in this generation.
    pub applied: u64,
    /// Set while the partition is parked on a failing event.
    pub parked: Option<Parked>,
    /// When the state was last saved.
    pub updated_at: DateTime<Utc>,
}

impl PartitionState {
    /// A partition at the start of the log.
    pub fn start(generation: u64, partition: u32) -> Self {
        Self {
            generation,
            partition,
            checkpoint: Position::START,
            caught_up: false,
            applied: 0,
            parked: None,
            updated_at: Utc::now(),
        }
    }
}

/// A projection as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectionRecord {
    /// The projection.
    pub name: ProjectionName,
    /// The generation readers see (`None` before the first is created).
    pub active: Option<Generation>,
    /// The generation being built to replace it, if any.
    pub building: Option<Generation>,
    /// The partitions of both, by generation then partition.
    pub partitions: Vec<PartitionState>,
}

impl ProjectionRecord {
    /// The newest generation: the one being built, else the active one.
    pub fn newest(&self) -> Option<&Generation> {
        self.building.as_ref().or(self.active.as_ref())
    }

    /// The generation numbered `generation`, if it is the active or the building one.
    pub fn generation(&self, generation: u64) -> Option<&Generation> {
        [self.active.as_ref(), self.building.as_ref()]
            .into_iter()
            .flatten()
            .find(|g| g.generation == generation)
    }

    /// One partition's state.
    pub fn partition(&self, generation: u64, partition: u32) -> Option<&PartitionState> {
        self.partitions
            .iter()
            .find(|p| p.generation == generation && p.partition == partition)
    }

    /// The partitions of one generation.
    pub fn partitions_of(&self, generation: u64) -> impl Iterator<Item = &PartitionState> {
        self.partitions
            .iter()
            .filter(move |p| p.generation == generation)
    }

    /// The generation numbers `(active, building)`: what a change of generations expects.
    pub fn revision(&self) -> Revision {
        Revision {
            active: self.active.as_ref().map(|g| g.generation),
            building: self.building.as_ref().map(|g| g.generation),
        }
    }
}

/// Which generations a projection has: the expectation of [`ProjectionStore::begin_generation`](crate::projection::ProjectionStore::begin_generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Revision {
    /// The active generation.
    pub active: Option<u64>,
    /// The generation being built.
    pub building: Option<u64>,
}
