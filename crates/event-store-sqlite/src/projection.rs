//! Transactional projections on SQLite: the read model is written in the same transaction as
//! the partition's checkpoint, on the store's writer, so it reflects each event exactly once,
//! whatever crashes.

use std::collections::HashSet;
use std::sync::Arc;

use event_store::projection::{
    ApplyError, Batch, Generation, Projection, ProjectionName, Tables, Target, generation_of,
};
use event_store::{BoxError, RecordedEvent, Result};
use event_store_sql::Statement;
use event_store_sql::projection as sql;
use rusqlite::Connection;

use crate::connection::sqlite;
use crate::query::to_sql;
use crate::store::SqliteStore;
use crate::writer::{Keep, execute};

/// A read model kept in the store's own SQLite database, written in the transaction that saves
/// the projection's checkpoint. Run it with [`Transactional`].
///
/// Declare the model's tables in [`SqliteProjection::TABLES`]; create them in
/// [`SqliteProjection::create`] and write them in [`SqliteProjection::apply`] under the names
/// [`Tables::get`] gives (`orders__g2`): each generation has tables of its own, and readers
/// query views named as declared (`orders`), which point at the active generation's tables and
/// are switched in the same transaction that makes a rebuilt generation active. Tables of
/// generations that are no longer active or being built are dropped.
///
/// Both methods run on the store's writer thread, inside its transaction: keep them to SQL on
/// the connection they are given (no waiting on other work), and never commit or roll back.
pub trait SqliteProjection: Projection {
    /// The read model's tables, as readers name them (SQL identifiers: `a–z 0–9 _`).
    const TABLES: &'static [&'static str];

    /// Creates one generation's tables (and their indexes) under `tables`' names.
    fn create(&self, conn: &Connection, tables: &Tables) -> Result<(), BoxError>;

    /// Applies one event. An error rolls the batch back; the runner retries the event, then
    /// parks the partition on it.
    fn apply(
        &self,
        conn: &Connection,
        tables: &Tables,
        event: &RecordedEvent,
    ) -> Result<(), BoxError>;
}

/// The [`Target`] of a [`SqliteProjection`] on a [`SqliteStore`]: each batch and its checkpoint
/// in one transaction (exactly once).
#[derive(Debug)]
pub struct Transactional<P>(Arc<P>);

impl<P> Transactional<P> {
    /// The target of `projection`.
    pub fn new(projection: P) -> Self {
        Self(Arc::new(projection))
    }

    /// The projection.
    pub fn get(&self) -> &P {
        &self.0
    }
}

impl<P> Clone for Transactional<P> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

fn rows(conn: &Connection, s: &Statement) -> Result<bool> {
    let values: Vec<_> = s.params.iter().map(to_sql).collect();
    let mut stmt = conn.prepare_cached(&s.sql).map_err(|e| sqlite(s.what, e))?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(values))
        .map_err(|e| sqlite(s.what, e))?;
    Ok(rows.next().map_err(|e| sqlite(s.what, e))?.is_some())
}

fn replace_views(conn: &Connection, tables: &Tables) -> Result<()> {
    for (logical, physical) in tables.iter() {
        conn.execute_batch(&format!(
            "DROP VIEW IF EXISTS {logical}; CREATE VIEW {logical} AS SELECT * FROM {physical}"
        ))
        .map_err(|e| sqlite("replace a read model's view", e))?;
    }
    Ok(())
}

fn drop_other_generations(conn: &Connection, logical: &[&str], keep: &HashSet<u64>) -> Result<()> {
    for name in logical {
        let prefix = format!("{name}__g");
        let tables: Vec<String> = {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT name FROM sqlite_master
                      WHERE type = 'table' AND substr(name, 1, length(?1)) = ?1",
                )
                .map_err(|e| sqlite("list a read model's tables", e))?;
            let names = stmt
                .query_map([&prefix], |r| r.get(0))
                .map_err(|e| sqlite("list a read model's tables", e))?;
            names
                .collect::<rusqlite::Result<_>>()
                .map_err(|e| sqlite("list a read model's tables", e))?
        };
        for table in tables {
            if generation_of(name, &table).is_some_and(|g| !keep.contains(&g)) {
                conn.execute_batch(&format!("DROP TABLE IF EXISTS {table}"))
                    .map_err(|e| sqlite("drop an old generation's table", e))?;
                tracing::info!(table, "dropped an old generation's table");
            }
        }
    }
    Ok(())
}

fn generations(conn: &Connection, name: &ProjectionName) -> Result<HashSet<u64>> {
    let mut stmt = conn
        .prepare_cached("SELECT active, building FROM projections WHERE name = ?1")
        .map_err(|e| sqlite("read a projection", e))?;
    let mut rows = stmt
        .query([name.as_str()])
        .map_err(|e| sqlite("read a projection", e))?;
    let mut keep = HashSet::new();
    if let Some(row) = rows.next().map_err(|e| sqlite("read a projection", e))? {
        for i in 0..2 {
            let g: Option<i64> = row.get(i).map_err(|e| sqlite("read a projection", e))?;
            keep.extend(g.and_then(|g| u64::try_from(g).ok()));
        }
    }
    Ok(keep)
}

fn panicked(panic: &(dyn std::any::Any + Send)) -> BoxError {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    format!("the handler panicked: {text}").into()
}

impl<P: SqliteProjection> Target<SqliteStore> for Transactional<P> {
    type Projection = P;

    fn projection(&self) -> &P {
        &self.0
    }

    async fn prepare(
        &self,
        store: &SqliteStore,
        name: &ProjectionName,
        generation: &Generation,
        active: bool,
    ) -> Result<(), ApplyError> {
        let tables = Tables::new(P::TABLES, generation.generation)?;
        let mark = sql::mark_created_statement::<SqliteStore>(name, generation.generation);
        let (projection, name) = (Arc::clone(&self.0), name.clone());
        store
            .write(move |conn| {
                if execute(conn, &mark)? == 0 {
                    // Another runner prepared it (or it is gone).
                    return Ok(Keep::Rollback(Ok(())));
                }
                drop_other_generations(conn, P::TABLES, &generations(conn, &name)?)?;
                let created = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    projection.create(conn, &tables)
                }))
                .unwrap_or_else(|panic| Err(panicked(&*panic)));
                if let Err(source) = created {
                    return Ok(Keep::Rollback(Err(ApplyError::Setup { source })));
                }
                if active {
                    replace_views(conn, &tables)?;
                }
                Ok(Keep::Commit(Ok(())))
            })
            .await?
    }

    async fn apply(&self, store: &SqliteStore, batch: Batch<'_>) -> Result<(), ApplyError> {
        let tables = Tables::new(P::TABLES, batch.generation.generation)?;
        let lock = sql::lock_partition_statement::<SqliteStore>(
            batch.projection,
            batch.generation.generation,
            batch.next.partition,
            batch.expected(),
        );
        let save = sql::save_partition_statement::<SqliteStore>(
            batch.projection,
            &batch.next,
            batch.expected(),
        )?;
        let fenced = sql::fenced(batch.projection, &batch.next);
        let events = batch.shared_events();
        let projection = Arc::clone(&self.0);
        store
            .write(move |conn| {
                if !rows(conn, &lock)? {
                    return Ok(Keep::Rollback(Err(ApplyError::Store(fenced))));
                }
                for (index, event) in events.iter().enumerate() {
                    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        projection.apply(conn, &tables, event)
                    }))
                    .unwrap_or_else(|panic| Err(panicked(&*panic)));
                    if let Err(source) = applied {
                        return Ok(Keep::Rollback(Err(ApplyError::Handler {
                            index,
                            committed: false,
                            source,
                        })));
                    }
                }
                if execute(conn, &save)? == 0 {
                    return Ok(Keep::Rollback(Err(ApplyError::Store(fenced))));
                }
                Ok(Keep::Commit(Ok(())))
            })
            .await?
    }

    async fn switch(
        &self,
        store: &SqliteStore,
        name: &ProjectionName,
        from: Option<&Generation>,
        to: &Generation,
    ) -> Result<bool, ApplyError> {
        let tables = Tables::new(P::TABLES, to.generation)?;
        let statements =
            sql::switch_statements::<SqliteStore>(name, from.map(|g| g.generation), to.generation);
        let keep = HashSet::from([to.generation]);
        Ok(store
            .write(move |conn| {
                for s in &statements {
                    if execute(conn, s)? == 0 && s.guard {
                        return Ok(Keep::Rollback(false));
                    }
                }
                replace_views(conn, &tables)?;
                drop_other_generations(conn, P::TABLES, &keep)?;
                Ok(Keep::Commit(true))
            })
            .await?)
    }
}
