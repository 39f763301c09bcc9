//! What operators see: a projection's state, position and lag, and the operations on it
//! (reset, resume), from any process.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cursor::LogCursor;
use crate::error::{Error, Result};
use crate::model::Position;
use crate::projection::name::ProjectionName;
use crate::projection::state::{Generation, Parked, ProjectionRecord};
use crate::projection::store::{LeaseKey, ProjectionStore, partition_of};

/// The most events a status reads to count a generation's lag (beyond it, the lag is reported
/// as at least this, with `lag_capped`).
pub const LAG_SCAN_LIMIT: u64 = 100_000;

/// A lag at or above which a caught-up projection counts as catching up again.
pub const CATCHING_UP_LAG: u64 = 1_000;

/// Per partition: matching events after its checkpoint, and the oldest one's time.
#[derive(Debug, Default)]
struct Lag {
    partitions: HashMap<u32, (u64, Option<DateTime<Utc>>)>,
    capped: bool,
}

/// A projection's state, as `event-store projections list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectionState {
    /// Caught up and following the log.
    Running,
    /// Reading its way to the end of the log (never caught up yet, or at least
    /// [`CATCHING_UP_LAG`] events behind).
    CatchingUp,
    /// A new generation is being built beside the active one.
    Rebuilding,
    /// A partition stopped on a failing event: see its `parked`, fix, then resume.
    Parked,
    /// No runner holds any of its partitions.
    Stopped,
}

impl std::fmt::Display for ProjectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::CatchingUp => "catching-up",
            Self::Rebuilding => "rebuilding",
            Self::Parked => "parked",
            Self::Stopped => "stopped",
        })
    }
}

/// One partition's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionStatus {
    /// The partition.
    pub partition: u32,
    /// Every event up to here is applied.
    pub checkpoint: Position,
    /// Events applied in this generation.
    pub applied: u64,
    /// Whether it reached the end of the log once.
    pub caught_up: bool,
    /// Matching events not applied yet.
    pub lag_events: u64,
    /// The age of the oldest event not applied yet, in seconds (0: none).
    pub lag_seconds: f64,
    /// Whether a runner holds it now.
    pub running: bool,
    /// Why it stopped, when it is parked.
    pub parked: Option<Parked>,
    /// When its state was last saved.
    pub updated_at: DateTime<Utc>,
}

/// One generation's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationStatus {
    /// The generation.
    pub generation: u64,
    /// The projection version that builds it.
    pub version: u32,
    /// When it was started.
    pub started_at: DateTime<Utc>,
    /// Matching events not applied yet, over every partition.
    pub lag_events: u64,
    /// Whether the lag count stopped at [`LAG_SCAN_LIMIT`] (the lag is at least that).
    pub lag_capped: bool,
    /// The largest partition lag in seconds.
    pub lag_seconds: f64,
    /// Its partitions.
    pub partitions: Vec<PartitionStatus>,
}

/// A projection's status: what `event-store projections status NAME` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectionStatus {
    /// The projection.
    pub name: ProjectionName,
    /// Its state.
    pub state: ProjectionState,
    /// The generation readers see.
    pub active: Option<GenerationStatus>,
    /// The generation being built, if any.
    pub building: Option<GenerationStatus>,
    /// The last handler error of a parked partition, if any.
    pub last_error: Option<String>,
}

/// The operators' view of a store's projections: list, status, reset, resume. Works from any
/// process (the CLI's `projections` commands), without the projections' code.
#[derive(Debug, Clone)]
pub struct Projections<S> {
    store: S,
}

impl<S: ProjectionStore> Projections<S> {
    /// The projections of `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// Every projection's status, by name.
    pub async fn list(&self) -> Result<Vec<ProjectionStatus>> {
        let mut out = Vec::new();
        for record in self.store.projections().await? {
            out.push(self.status_of(&record).await?);
        }
        Ok(out)
    }

    /// One projection's status (`None`: never started).
    pub async fn status(&self, name: &str) -> Result<Option<ProjectionStatus>> {
        let name = ProjectionName::new(name)?;
        match self.store.projection(&name).await? {
            Some(record) => Ok(Some(self.status_of(&record).await?)),
            None => Ok(None),
        }
    }

    /// Rebuilds a projection from the start of the log: starts a new generation (with
    /// `partitions` partitions, or as many as now) beside the active one, which readers keep
    /// seeing — and which its runners keep up to date — until the new one is caught up and
    /// replaces it. Runners of the projection's current version pick it up within their lease
    /// interval. Returns the new generation.
    pub async fn reset(&self, name: &str, partitions: Option<u32>) -> Result<Generation> {
        let name = ProjectionName::new(name)?;
        if partitions.is_some_and(|p| !(1..=1024).contains(&p)) {
            return Err(Error::invalid("partitions", "1 to 1024 partitions"));
        }
        for _ in 0..8 {
            let record = self.known(&name).await?;
            let Some(newest) = record.newest() else {
                return Err(Error::invalid(
                    "projection",
                    format!("projection `{name}` has no generation to reset"),
                ));
            };
            let next = Generation::new(
                newest.generation + 1,
                newest.version,
                partitions.unwrap_or(newest.partitions),
                newest.query.clone(),
            );
            if self
                .store
                .begin_generation(&name, record.revision(), &next)
                .await?
            {
                tracing::info!(projection = %name, generation = next.generation, "projection reset: rebuilding");
                return Ok(next);
            }
        }
        Err(Error::backend(
            "projection",
            format!("projection `{name}` kept changing during the reset; try again"),
        ))
    }

    /// Resumes a projection's parked partitions (all, or one): their runners apply the event
    /// they parked on again, then go on. Returns how many were parked.
    pub async fn resume(&self, name: &str, partition: Option<u32>) -> Result<u64> {
        let name = ProjectionName::new(name)?;
        self.known(&name).await?;
        self.store.resume(&name, partition).await
    }

    /// Waits until the projection's active generation has applied every event it wants up to
    /// `position` (read-your-writes for a read model: save, then wait for the save's
    /// position), or fails after `timeout`.
    pub async fn wait_for(
        &self,
        name: &str,
        position: Position,
        timeout: std::time::Duration,
    ) -> Result<()> {
        let name = ProjectionName::new(name)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = std::time::Duration::from_millis(2);
        loop {
            // Only final events are applied: wait until every event up to `position` is.
            if position < self.store.watermark().await?
                && let Some(record) = self.store.projection(&name).await?
                && let Some(active) = &record.active
                && !self.behind(&record, active, Some(position), true).await?.0
            {
                return Ok(());
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(Error::backend(
                    "projection",
                    format!(
                        "projection `{name}` did not reach position {position} within {timeout:?}"
                    ),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(50));
        }
    }

    /// Whether any partition of `generation` has a matching event after its checkpoint (up to
    /// `upto`), and each partition's count and oldest time (a scan of at most
    /// [`LAG_SCAN_LIMIT`] events). With `first`, the scan stops at the first such event (a
    /// waiter needs only to know whether there is one).
    async fn behind(
        &self,
        record: &ProjectionRecord,
        generation: &Generation,
        upto: Option<Position>,
        first: bool,
    ) -> Result<(bool, Lag)> {
        let states: Vec<_> = record.partitions_of(generation.generation).collect();
        if let Some(upto) = upto
            && states.len() == generation.partitions as usize
            && states.iter().all(|p| p.checkpoint >= upto)
        {
            return Ok((false, Lag::default()));
        }
        // One scan from the lowest checkpoint, each event counted for its partition.
        let from = states
            .iter()
            .map(|p| p.checkpoint)
            .min()
            .unwrap_or(Position::START);
        let checkpoints: HashMap<u32, Position> =
            states.iter().map(|p| (p.partition, p.checkpoint)).collect();
        let mut lag = Lag::default();
        let mut scanned = 0u64;
        let query = generation.query.clone().check()?;
        let mut cursor = LogCursor::with_page(from, 1000).filtered(query);
        'scan: loop {
            let page = cursor.next_page(&self.store).await?;
            if page.is_empty() {
                break;
            }
            for event in &page {
                if upto.is_some_and(|u| event.position > u) {
                    break 'scan;
                }
                scanned += 1;
                if scanned > LAG_SCAN_LIMIT {
                    lag.capped = true;
                    break 'scan;
                }
                let p = partition_of(&event.stream, generation.partitions);
                if checkpoints.get(&p).is_some_and(|c| event.position > *c) {
                    let entry = lag.partitions.entry(p).or_insert((0, None));
                    entry.0 += 1;
                    entry.1.get_or_insert(event.context.time);
                    if first {
                        break 'scan;
                    }
                }
            }
        }
        Ok((!lag.partitions.is_empty() || lag.capped, lag))
    }

    async fn known(&self, name: &ProjectionName) -> Result<ProjectionRecord> {
        self.store.projection(name).await?.ok_or_else(|| {
            Error::invalid(
                "projection",
                format!("no projection named `{name}` has run on this store"),
            )
        })
    }

    async fn status_of(&self, record: &ProjectionRecord) -> Result<ProjectionStatus> {
        let active = match &record.active {
            Some(g) => Some(self.generation_status(record, g).await?),
            None => None,
        };
        let building = match &record.building {
            Some(g) => Some(self.generation_status(record, g).await?),
            None => None,
        };
        let all = || {
            active
                .iter()
                .chain(building.iter())
                .flat_map(|g| &g.partitions)
        };
        let parked = all().find_map(|p| p.parked.as_ref());
        let state = if parked.is_some() {
            ProjectionState::Parked
        } else if !all().any(|p| p.running) {
            ProjectionState::Stopped
        } else if building.is_some() {
            ProjectionState::Rebuilding
        } else if active.as_ref().is_some_and(|g| {
            g.lag_events >= CATCHING_UP_LAG || g.partitions.iter().any(|p| !p.caught_up)
        }) {
            ProjectionState::CatchingUp
        } else {
            ProjectionState::Running
        };
        Ok(ProjectionStatus {
            name: record.name.clone(),
            state,
            last_error: parked.map(|p| p.error.clone()),
            active,
            building,
        })
    }

    async fn generation_status(
        &self,
        record: &ProjectionRecord,
        generation: &Generation,
    ) -> Result<GenerationStatus> {
        let states: Vec<_> = record.partitions_of(generation.generation).collect();
        let (_, lag) = self.behind(record, generation, None, false).await?;
        let now = Utc::now();
        let mut partitions = Vec::with_capacity(states.len());
        for state in states {
            let (lag_events, oldest) = lag
                .partitions
                .get(&state.partition)
                .copied()
                .unwrap_or((0, None));
            let running = self
                .store
                .is_leased(&LeaseKey::partition(
                    &record.name,
                    generation.generation,
                    state.partition,
                ))
                .await?;
            partitions.push(PartitionStatus {
                partition: state.partition,
                checkpoint: state.checkpoint,
                applied: state.applied,
                caught_up: state.caught_up,
                lag_events,
                lag_seconds: oldest
                    .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
                running,
                parked: state.parked.clone(),
                updated_at: state.updated_at,
            });
        }
        Ok(GenerationStatus {
            generation: generation.generation,
            version: generation.version,
            started_at: generation.started_at,
            lag_events: partitions.iter().map(|p| p.lag_events).sum(),
            lag_capped: lag.capped,
            lag_seconds: partitions.iter().map(|p| p.lag_seconds).fold(0.0, f64::max),
            partitions,
        })
    }
}
