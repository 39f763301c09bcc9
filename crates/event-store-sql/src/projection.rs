//! Projections' state, written once over a [`ProjectionDriver`]: records read as one JSON
//! document per projection, generation changes as guarded transactions, partition saves as
//! check-and-sets. An adapter binds them with [`impl_projection_store!`](crate::impl_projection_store).

use std::future::Future;

use chrono::{DateTime, Utc};
use event_store::projection::{
    Generation, LeaseKey, Parked, PartitionState, ProjectionName, ProjectionRecord, Revision,
};
use event_store::{Error, Position, Query, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::compile::{Dialect, Param};
use crate::convert::{clamp, position_parts, unsigned};
use crate::driver::{Driver, Statement, required};

/// The SQL files of projections, in `sql/queries/` (loaded by
/// [`projection_queries!`](crate::projection_queries)).
///
/// | file | parameters | does |
/// |---|---|---|
/// | `projection_records.sql` | name (nullable) | one row per projection (that one, or every one when NULL), by name, column `record`: the projection as JSON (below) |
/// | `projection_ensure.sql` | name | inserts the projection's row if missing |
/// | `projection_begin.sql` | name, generation, expected active, expected building (nullable) | the guard of a new generation (see the file) |
/// | `projection_drop_partitions.sql` | name, generation (nullable) | deletes a generation's partitions |
/// | `projection_drop_generation.sql` | name, generation (nullable) | deletes a generation |
/// | `projection_generation_insert.sql` | name, generation, version, partitions, query (JSON), started at | inserts a generation |
/// | `projection_partitions_insert.sql` | name, generation, count, time | inserts partitions `0..count` at the start |
/// | `projection_mark_created.sql` | name, generation | marks a generation prepared, once |
/// | `projection_save_partition.sql` | name, generation, partition, high, low, caught up, applied, parked (nullable JSON), time, expected high, expected low | a check-and-set of a partition |
/// | `projection_lock_partition.sql` | name, generation, partition, high, low | one row when the checkpoint is still that (locked for the transaction where the backend can) |
/// | `projection_switch.sql` | name, from (nullable), to | the guard of a switch |
/// | `projection_resume.sql` | name, partition (nullable), time | clears parked partitions |
///
/// The record document: `{"name", "active", "building", "generations": [{"generation",
/// "version", "partitions", "query", "created", "started_at"}], "partitions": [{"generation",
/// "partition", "high", "low", "caught_up", "applied", "parked", "updated_at"}]}` (booleans as
/// `true`/`false` or `1`/`0`).
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct ProjectionQueries {
    pub records: &'static str,
    pub ensure: &'static str,
    pub begin: &'static str,
    pub drop_partitions: &'static str,
    pub drop_generation: &'static str,
    pub generation_insert: &'static str,
    pub partitions_insert: &'static str,
    pub mark_created: &'static str,
    pub save_partition: &'static str,
    pub lock_partition: &'static str,
    pub switch: &'static str,
    pub resume: &'static str,
}

/// The [`ProjectionQueries`] of the calling crate, from its `sql/queries/` directory.
#[macro_export]
macro_rules! projection_queries {
    () => {
        $crate::projection::ProjectionQueries {
            records: $crate::__query!("projection_records"),
            ensure: $crate::__query!("projection_ensure"),
            begin: $crate::__query!("projection_begin"),
            drop_partitions: $crate::__query!("projection_drop_partitions"),
            drop_generation: $crate::__query!("projection_drop_generation"),
            generation_insert: $crate::__query!("projection_generation_insert"),
            partitions_insert: $crate::__query!("projection_partitions_insert"),
            mark_created: $crate::__query!("projection_mark_created"),
            save_partition: $crate::__query!("projection_save_partition"),
            lock_partition: $crate::__query!("projection_lock_partition"),
            switch: $crate::__query!("projection_switch"),
            resume: $crate::__query!("projection_resume"),
        }
    };
}

/// A SQL backend that keeps projections: its projection SQL files and its leases.
pub trait ProjectionDriver: Driver {
    /// The backend's projection SQL files (`projection_queries!()`).
    const PROJECTION_QUERIES: ProjectionQueries;
    /// A held lease.
    type Lease: event_store::projection::Lease;

    /// Takes the lease `key` if no one holds it.
    fn try_lease(&self, key: &LeaseKey)
    -> impl Future<Output = Result<Option<Self::Lease>>> + Send;

    /// Whether anyone holds the lease `key`.
    fn is_leased(&self, key: &LeaseKey) -> impl Future<Output = Result<bool>> + Send;
}

/// A boolean as PostgreSQL (`true`) or SQLite (`1`) puts it in JSON.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Int(i64),
}

impl Flag {
    fn get(&self) -> bool {
        match self {
            Self::Bool(b) => *b,
            Self::Int(i) => *i != 0,
        }
    }
}

#[derive(Deserialize)]
struct RecordDoc {
    name: String,
    active: Option<i64>,
    building: Option<i64>,
    generations: Vec<GenerationDoc>,
    partitions: Vec<PartitionDoc>,
}

#[derive(Deserialize)]
struct GenerationDoc {
    generation: i64,
    version: i64,
    partitions: i64,
    query: Value,
    created: Flag,
    started_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct PartitionDoc {
    generation: i64,
    partition: i64,
    high: i64,
    low: i64,
    caught_up: Flag,
    applied: i64,
    parked: Option<Value>,
    updated_at: DateTime<Utc>,
}

fn number<T: TryFrom<i64>>(backend: &'static str, field: &str, v: i64) -> Result<T> {
    T::try_from(v).map_err(|_| {
        Error::backend(
            backend,
            format!("projection field `{field}` holds {v}, out of range"),
        )
    })
}

/// A projection record from its JSON document.
pub fn record_from_json(backend: &'static str, doc: Value) -> Result<ProjectionRecord> {
    let doc: RecordDoc =
        serde_json::from_value(doc).map_err(|e| Error::codec("decode a projection record", e))?;
    let name = ProjectionName::new(doc.name)?;
    let mut generations = Vec::with_capacity(doc.generations.len());
    for g in doc.generations {
        let query: Query = serde_json::from_value(g.query)
            .map_err(|e| Error::codec("decode a projection's query", e))?;
        generations.push(Generation {
            generation: number(backend, "generation", g.generation)?,
            version: number(backend, "version", g.version)?,
            partitions: number(backend, "partitions", g.partitions)?,
            query,
            created: g.created.get(),
            started_at: g.started_at,
        });
    }
    let pick = |n: Option<i64>| -> Result<Option<Generation>> {
        let Some(n) = n else { return Ok(None) };
        let n: u64 = number(backend, "generation", n)?;
        generations
            .iter()
            .find(|g| g.generation == n)
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                Error::backend(
                    backend,
                    format!("projection `{name}` names generation {n}, which is not stored"),
                )
            })
    };
    let (active, building) = (pick(doc.active)?, pick(doc.building)?);
    let mut partitions = Vec::with_capacity(doc.partitions.len());
    for p in doc.partitions {
        let parked: Option<Parked> = p
            .parked
            .filter(|v| !v.is_null())
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| Error::codec("decode a parked partition", e))?;
        partitions.push(PartitionState {
            generation: number(backend, "generation", p.generation)?,
            partition: number(backend, "partition", p.partition)?,
            checkpoint: Position::from_parts(
                unsigned(backend, "high", p.high)?,
                unsigned(backend, "low", p.low)?,
            ),
            caught_up: p.caught_up.get(),
            applied: unsigned(backend, "applied", p.applied)?,
            parked,
            updated_at: p.updated_at,
        });
    }
    Ok(ProjectionRecord {
        name,
        active,
        building,
        partitions,
    })
}

fn text(s: &ProjectionName) -> Param {
    Param::Text(s.as_str().to_owned())
}

fn opt(n: Option<u64>) -> Param {
    Param::OptInt(n.map(clamp))
}

fn record_column<D: Driver>(row: &dyn crate::SqlRow) -> Result<Value> {
    required(D::BACKEND, "record", row.json(0, "record")?)
}

/// [`ProjectionStore::projection`](event_store::projection::ProjectionStore::projection).
pub async fn projection<D: ProjectionDriver>(
    d: &D,
    name: &ProjectionName,
) -> Result<Option<ProjectionRecord>> {
    Ok(records(d, Some(name)).await?.into_iter().next())
}

/// [`ProjectionStore::projections`](event_store::projection::ProjectionStore::projections).
pub async fn projections<D: ProjectionDriver>(d: &D) -> Result<Vec<ProjectionRecord>> {
    records(d, None).await
}

/// The record of `name`, or of every projection.
async fn records<D: ProjectionDriver>(
    d: &D,
    name: Option<&ProjectionName>,
) -> Result<Vec<ProjectionRecord>> {
    let statement = Statement::new(
        "load projections",
        D::PROJECTION_QUERIES.records,
        vec![Param::OptText(name.map(|n| n.as_str().to_owned()))],
    );
    let docs = d.query(statement, record_column::<D>).await?;
    docs.into_iter()
        .map(|doc| record_from_json(D::BACKEND, doc))
        .collect()
}

/// The statements of a new generation (see
/// [`ProjectionStore::begin_generation`](event_store::projection::ProjectionStore::begin_generation)).
pub fn begin_statements<D: ProjectionDriver>(
    name: &ProjectionName,
    expected: Revision,
    next: &Generation,
) -> Result<Vec<Statement>> {
    let q = &D::PROJECTION_QUERIES;
    let query = serde_json::to_value(&next.query)
        .map_err(|e| Error::codec("encode a projection's query", e))?;
    let g = clamp(next.generation);
    Ok(vec![
        Statement::new("start a projection", q.ensure, vec![text(name)]),
        Statement::new(
            "start a generation",
            q.begin,
            vec![
                text(name),
                Param::Int(g),
                opt(expected.active),
                opt(expected.building),
            ],
        )
        .guarded(),
        // A building generation that the new one replaces.
        Statement::new(
            "drop a generation's partitions",
            q.drop_partitions,
            vec![text(name), opt(expected.building)],
        ),
        Statement::new(
            "drop a generation",
            q.drop_generation,
            vec![text(name), opt(expected.building)],
        ),
        Statement::new(
            "insert a generation",
            q.generation_insert,
            vec![
                text(name),
                Param::Int(g),
                Param::Int(i64::from(next.version)),
                Param::Int(i64::from(next.partitions)),
                Param::Json(query),
                D::Dialect::time(next.started_at),
            ],
        ),
        Statement::new(
            "insert partitions",
            q.partitions_insert,
            vec![
                text(name),
                Param::Int(g),
                Param::Int(i64::from(next.partitions)),
                D::Dialect::time(next.started_at),
            ],
        ),
    ])
}

/// [`ProjectionStore::begin_generation`](event_store::projection::ProjectionStore::begin_generation).
pub async fn begin_generation<D: ProjectionDriver>(
    d: &D,
    name: &ProjectionName,
    expected: Revision,
    next: &Generation,
) -> Result<bool> {
    d.transaction(begin_statements::<D>(name, expected, next)?)
        .await
}

/// The statement that marks a generation prepared (touches one row, once).
pub fn mark_created_statement<D: ProjectionDriver>(
    name: &ProjectionName,
    generation: u64,
) -> Statement {
    Statement::new(
        "mark a generation prepared",
        D::PROJECTION_QUERIES.mark_created,
        vec![text(name), Param::Int(clamp(generation))],
    )
}

/// [`ProjectionStore::mark_created`](event_store::projection::ProjectionStore::mark_created).
pub async fn mark_created<D: ProjectionDriver>(
    d: &D,
    name: &ProjectionName,
    generation: u64,
) -> Result<bool> {
    Ok(d.execute(mark_created_statement::<D>(name, generation))
        .await?
        > 0)
}

/// The check-and-set that saves a partition's state (touches no row when fenced).
pub fn save_partition_statement<D: ProjectionDriver>(
    name: &ProjectionName,
    state: &PartitionState,
    expected: Position,
) -> Result<Statement> {
    let (high, low) = position_parts(state.checkpoint);
    let (expected_high, expected_low) = position_parts(expected);
    let parked = state
        .parked
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| Error::codec("encode a parked partition", e))?;
    Ok(Statement::new(
        "save a projection partition",
        D::PROJECTION_QUERIES.save_partition,
        vec![
            text(name),
            Param::Int(clamp(state.generation)),
            Param::Int(i64::from(state.partition)),
            Param::Int(high),
            Param::Int(low),
            Param::Bool(state.caught_up),
            Param::Int(clamp(state.applied)),
            Param::OptJson(parked),
            D::Dialect::time(state.updated_at),
            Param::Int(expected_high),
            Param::Int(expected_low),
        ],
    ))
}

/// The query that checks (and, where the backend can, locks) a partition's checkpoint before a
/// transactional batch: one row when it is still `expected`.
pub fn lock_partition_statement<D: ProjectionDriver>(
    name: &ProjectionName,
    generation: u64,
    partition: u32,
    expected: Position,
) -> Statement {
    let (high, low) = position_parts(expected);
    Statement::new(
        "lock a projection partition",
        D::PROJECTION_QUERIES.lock_partition,
        vec![
            text(name),
            Param::Int(clamp(generation)),
            Param::Int(i64::from(partition)),
            Param::Int(high),
            Param::Int(low),
        ],
    )
}

/// The error of a save that found the partition moved or gone.
pub fn fenced(name: &ProjectionName, state: &PartitionState) -> Error {
    Error::Fenced {
        projection: name.to_string(),
        generation: state.generation,
        partition: state.partition,
    }
}

/// [`ProjectionStore::save_partition`](event_store::projection::ProjectionStore::save_partition).
pub async fn save_partition<D: ProjectionDriver>(
    d: &D,
    name: &ProjectionName,
    state: &PartitionState,
    expected: Position,
) -> Result<()> {
    let touched = d
        .execute(save_partition_statement::<D>(name, state, expected)?)
        .await?;
    if touched == 0 {
        return Err(fenced(name, state));
    }
    Ok(())
}

/// The statements of a switch (see
/// [`ProjectionStore::switch_generation`](event_store::projection::ProjectionStore::switch_generation)).
pub fn switch_statements<D: ProjectionDriver>(
    name: &ProjectionName,
    from: Option<u64>,
    to: u64,
) -> Vec<Statement> {
    let q = &D::PROJECTION_QUERIES;
    vec![
        Statement::new(
            "switch generations",
            q.switch,
            vec![text(name), opt(from), Param::Int(clamp(to))],
        )
        .guarded(),
        Statement::new(
            "drop a generation's partitions",
            q.drop_partitions,
            vec![text(name), opt(from)],
        ),
        Statement::new(
            "drop a generation",
            q.drop_generation,
            vec![text(name), opt(from)],
        ),
    ]
}

/// [`ProjectionStore::switch_generation`](event_store::projection::ProjectionStore::switch_generation).
pub async fn switch_generation<D: ProjectionDriver>(
    d: &D,
    name: &ProjectionName,
    from: Option<u64>,
    to: u64,
) -> Result<bool> {
    d.transaction(switch_statements::<D>(name, from, to)).await
}

/// [`ProjectionStore::resume`](event_store::projection::ProjectionStore::resume).
pub async fn resume<D: ProjectionDriver>(
    d: &D,
    name: &ProjectionName,
    partition: Option<u32>,
) -> Result<u64> {
    d.execute(Statement::new(
        "resume a projection",
        D::PROJECTION_QUERIES.resume,
        vec![
            text(name),
            Param::OptInt(partition.map(i64::from)),
            D::Dialect::time(Utc::now()),
        ],
    ))
    .await
}

/// Implements [`ProjectionStore`](event_store::projection::ProjectionStore) for a type that
/// implements [`ProjectionDriver`] (and [`Store`](event_store::Store), with
/// [`impl_store!`](crate::impl_store)).
#[macro_export]
macro_rules! impl_projection_store {
    ($t:ty) => {
        impl ::event_store::projection::ProjectionStore for $t {
            type Lease = <$t as $crate::projection::ProjectionDriver>::Lease;

            fn projection(
                &self,
                name: &::event_store::projection::ProjectionName,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<
                    ::std::option::Option<::event_store::projection::ProjectionRecord>,
                >,
            > + Send {
                $crate::projection::projection(self, name)
            }
            fn projections(
                &self,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<
                    ::std::vec::Vec<::event_store::projection::ProjectionRecord>,
                >,
            > + Send {
                $crate::projection::projections(self)
            }
            fn begin_generation(
                &self,
                name: &::event_store::projection::ProjectionName,
                expected: ::event_store::projection::Revision,
                next: &::event_store::projection::Generation,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<bool>> + Send {
                $crate::projection::begin_generation(self, name, expected, next)
            }
            fn mark_created(
                &self,
                name: &::event_store::projection::ProjectionName,
                generation: u64,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<bool>> + Send {
                $crate::projection::mark_created(self, name, generation)
            }
            fn save_partition(
                &self,
                name: &::event_store::projection::ProjectionName,
                state: &::event_store::projection::PartitionState,
                expected: ::event_store::Position,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<()>> + Send {
                $crate::projection::save_partition(self, name, state, expected)
            }
            fn switch_generation(
                &self,
                name: &::event_store::projection::ProjectionName,
                from: ::std::option::Option<u64>,
                to: u64,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<bool>> + Send {
                $crate::projection::switch_generation(self, name, from, to)
            }
            fn resume(
                &self,
                name: &::event_store::projection::ProjectionName,
                partition: ::std::option::Option<u32>,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<u64>> + Send {
                $crate::projection::resume(self, name, partition)
            }
            fn try_lease(
                &self,
                key: &::event_store::projection::LeaseKey,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<::std::option::Option<Self::Lease>>,
            > + Send {
                $crate::projection::ProjectionDriver::try_lease(self, key)
            }
            fn is_leased(
                &self,
                key: &::event_store::projection::LeaseKey,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<bool>> + Send {
                $crate::projection::ProjectionDriver::is_leased(self, key)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_decode_from_both_dialects_documents() {
        for (created, caught_up, time) in [
            (
                json!(true),
                json!(false),
                "2026-11-28T00:52:10.123456+00:00",
            ),
            (json!(1), json!(0), "2026-11-28T00:52:10.123456Z"),
        ] {
            let doc = json!({
                "name": "orders",
                "active": 1,
                "building": null,
                "generations": [{"generation": 1, "version": 3, "partitions": 2,
                                 "query": {"prefix": "order-"}, "created": created,
                                 "started_at": time}],
                "partitions": [
                    {"generation": 1, "partition": 0, "high": 7, "low": 2, "caught_up": caught_up,
                     "applied": 10, "parked": null, "updated_at": time},
                    {"generation": 1, "partition": 1, "high": 0, "low": 0, "caught_up": caught_up,
                     "applied": 0, "updated_at": time,
                     "parked": {"position": "7:3", "event_id": "0190a0a0-0000-7000-8000-000000000000",
                                "stream": "order-1", "version": 4, "error": "boom",
                                "attempts": 5, "at": time}}
                ]
            });
            let r = record_from_json("sql", doc).unwrap();
            assert_eq!(r.name.as_str(), "orders");
            let active = r.active.as_ref().unwrap();
            assert_eq!(
                (active.generation, active.version, active.partitions),
                (1, 3, 2)
            );
            assert!(active.created);
            assert_eq!(active.query, Query::stream_prefix("order-"));
            assert!(r.building.is_none());
            assert_eq!(r.partitions[0].checkpoint, Position::from_parts(7, 2));
            assert!(!r.partitions[0].caught_up);
            assert!(r.partitions[0].parked.is_none());
            let parked = r.partitions[1].parked.as_ref().unwrap();
            assert_eq!(
                (parked.position, parked.attempts),
                (Position::from_parts(7, 3), 5)
            );
        }
    }

    #[test]
    fn records_naming_missing_generations_are_errors() {
        let doc = json!({"name": "x", "active": 2, "building": null,
                         "generations": [], "partitions": []});
        let e = record_from_json("sql", doc).unwrap_err();
        assert!(e.to_string().contains("generation 2"), "{e}");
        let doc = json!({"name": "x", "active": -1, "building": null,
                         "generations": [], "partitions": []});
        assert!(record_from_json("sql", doc).is_err());
    }
}
