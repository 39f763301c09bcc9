//! Transactional projections on PostgreSQL: the read model is written in the same transaction
//! as the partition's checkpoint, so it reflects each event exactly once, whatever crashes.

use std::collections::HashSet;
use std::future::Future;

use deadpool_postgres::Transaction;
use event_store::projection::{
    ApplyError, Batch, Generation, Projection, ProjectionName, Tables, Target, generation_of,
};
use event_store::{BoxError, RecordedEvent, Result};
use event_store_sql::projection as sql;

use crate::error::pg;
use crate::store::{PgStore, exec, rows_in};

/// A read model kept in the store's own PostgreSQL database, written in the transaction that
/// saves the projection's checkpoint. Run it with [`Transactional`].
///
/// Declare the model's tables in [`PgProjection::TABLES`]; create them in
/// [`PgProjection::create`] and write them in [`PgProjection::apply`] under the names
/// [`Tables::get`] gives (`orders__g2`): each generation has tables of its own, and readers query
/// views named as declared (`orders`), which point at the active generation's tables and are
/// switched in the same transaction that makes a rebuilt generation active. Tables of
/// generations that are no longer active or being built are dropped.
///
/// ```no_run
/// use event_store::projection::{Projection, Tables};
/// use event_store::{BoxError, Query, RecordedEvent};
/// use event_store_postgres::PgProjection;
/// use deadpool_postgres::Transaction;
///
/// struct OrdersPerCustomer;
///
/// impl Projection for OrdersPerCustomer {
///     const NAME: &'static str = "orders-per-customer";
///     fn query(&self) -> Query {
///         Query::all().event_type("shop", "OrderPlaced")
///     }
/// }
///
/// impl PgProjection for OrdersPerCustomer {
///     const TABLES: &'static [&'static str] = &["orders_per_customer"];
///
///     async fn create(&self, tx: &Transaction<'_>, tables: &Tables) -> Result<(), BoxError> {
///         let t = tables.get("orders_per_customer")?;
///         tx.batch_execute(&format!(
///             "CREATE TABLE {t} (customer text PRIMARY KEY, orders bigint NOT NULL)"
///         ))
///         .await?;
///         Ok(())
///     }
///
///     async fn apply(
///         &self,
///         tx: &Transaction<'_>,
///         tables: &Tables,
///         event: &RecordedEvent,
///     ) -> Result<(), BoxError> {
///         let t = tables.get("orders_per_customer")?;
///         let customer = event.data["customer"].as_str().ok_or("no customer")?;
///         let sql = format!(
///             "INSERT INTO {t} (customer, orders) VALUES ($1, 1)
///              ON CONFLICT (customer) DO UPDATE SET orders = {t}.orders + 1"
///         );
///         tx.execute(&tx.prepare_cached(&sql).await?, &[&customer]).await?;
///         Ok(())
///     }
/// }
/// ```
pub trait PgProjection: Projection {
    /// The read model's tables, as readers name them (SQL identifiers: `a–z 0–9 _`).
    const TABLES: &'static [&'static str];

    /// Creates one generation's tables (and their indexes) under `tables`' names.
    fn create(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Applies one event. An error rolls the batch back; the runner retries the event, then
    /// parks the partition on it.
    fn apply(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
        event: &RecordedEvent,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// The [`Target`] of a [`PgProjection`] on a [`PgStore`]: each batch and its checkpoint in one
/// transaction (exactly once).
#[derive(Debug, Clone, Default)]
pub struct Transactional<P>(P);

impl<P> Transactional<P> {
    /// The target of `projection`.
    pub fn new(projection: P) -> Self {
        Self(projection)
    }

    /// The projection.
    pub fn get(&self) -> &P {
        &self.0
    }
}

fn setup(source: impl Into<BoxError>) -> ApplyError {
    ApplyError::Setup {
        source: source.into(),
    }
}

/// Points the views of `tables`' logical names at its physical tables.
async fn replace_views(tx: &Transaction<'_>, tables: &Tables) -> Result<()> {
    for (logical, physical) in tables.iter() {
        tx.batch_execute(&format!(
            "DROP VIEW IF EXISTS {logical}; CREATE VIEW {logical} AS SELECT * FROM {physical}"
        ))
        .await
        .map_err(|e| pg("replace a read model's view", e))?;
    }
    Ok(())
}

/// Drops the tables of the projection's generations other than `keep`.
async fn drop_other_generations(
    tx: &Transaction<'_>,
    logical: &[&str],
    keep: &HashSet<u64>,
) -> Result<()> {
    for name in logical {
        let rows = tx
            .query(
                "SELECT tablename::text FROM pg_tables
                  WHERE schemaname = current_schema() AND starts_with(tablename, $1::text)",
                &[&format!("{name}__g")],
            )
            .await
            .map_err(|e| pg("list a read model's tables", e))?;
        for row in rows {
            let table: String = row
                .try_get(0)
                .map_err(|e| pg("list a read model's tables", e))?;
            if generation_of(name, &table).is_some_and(|g| !keep.contains(&g)) {
                tx.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                    .await
                    .map_err(|e| pg("drop an old generation's table", e))?;
                tracing::info!(table, "dropped an old generation's table");
            }
        }
    }
    Ok(())
}

/// The active and building generations, with the projection's row locked for the transaction.
async fn lock_generations(tx: &Transaction<'_>, name: &ProjectionName) -> Result<HashSet<u64>> {
    let rows = tx
        .query(
            "SELECT active, building FROM projections WHERE name = $1::text FOR UPDATE",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| pg("lock a projection", e))?;
    let mut keep = HashSet::new();
    for row in rows {
        for i in 0..2 {
            let g: Option<i64> = row.try_get(i).map_err(|e| pg("lock a projection", e))?;
            keep.extend(g.and_then(|g| u64::try_from(g).ok()));
        }
    }
    Ok(keep)
}

impl<P: PgProjection> Target<PgStore> for Transactional<P> {
    type Projection = P;

    fn projection(&self) -> &P {
        &self.0
    }

    async fn prepare(
        &self,
        store: &PgStore,
        name: &ProjectionName,
        generation: &Generation,
        active: bool,
    ) -> Result<(), ApplyError> {
        let tables = Tables::new(P::TABLES, generation.generation)?;
        let mut client = store.client("prepare a generation").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg("prepare a generation", e))?;
        let keep = lock_generations(&tx, name).await?;
        if exec(
            &tx,
            &sql::mark_created_statement::<PgStore>(name, generation.generation),
        )
        .await?
            == 0
        {
            // Another runner prepared it (or it is gone).
            return Ok(());
        }
        drop_other_generations(&tx, P::TABLES, &keep).await?;
        self.0.create(&tx, &tables).await.map_err(setup)?;
        if active {
            replace_views(&tx, &tables).await?;
        }
        tx.commit()
            .await
            .map_err(|e| pg("prepare a generation", e))?;
        Ok(())
    }

    async fn apply(&self, store: &PgStore, batch: Batch<'_>) -> Result<(), ApplyError> {
        let generation = batch.generation.generation;
        let tables = Tables::new(P::TABLES, generation)?;
        let mut client = store.client("apply a batch").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg("apply a batch", e))?;
        let lock = sql::lock_partition_statement::<PgStore>(
            batch.projection,
            generation,
            batch.next.partition,
            batch.expected(),
        );
        if rows_in(&tx, &lock).await?.is_empty() {
            return Err(sql::fenced(batch.projection, &batch.next).into());
        }
        for (index, event) in batch.events.iter().enumerate() {
            if let Err(source) = self.0.apply(&tx, &tables, event).await {
                // Dropping the transaction rolls it back.
                return Err(ApplyError::Handler {
                    index,
                    committed: false,
                    source,
                });
            }
        }
        let save = sql::save_partition_statement::<PgStore>(
            batch.projection,
            &batch.next,
            batch.expected(),
        )?;
        if exec(&tx, &save).await? == 0 {
            return Err(sql::fenced(batch.projection, &batch.next).into());
        }
        tx.commit().await.map_err(|e| pg("commit a batch", e))?;
        Ok(())
    }

    async fn switch(
        &self,
        store: &PgStore,
        name: &ProjectionName,
        from: Option<&Generation>,
        to: &Generation,
    ) -> Result<bool, ApplyError> {
        let tables = Tables::new(P::TABLES, to.generation)?;
        let mut client = store.client("switch generations").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg("switch generations", e))?;
        lock_generations(&tx, name).await?;
        for s in sql::switch_statements::<PgStore>(name, from.map(|g| g.generation), to.generation)
        {
            if exec(&tx, &s).await? == 0 && s.guard {
                return Ok(false);
            }
        }
        replace_views(&tx, &tables).await?;
        drop_other_generations(&tx, P::TABLES, &HashSet::from([to.generation])).await?;
        tx.commit().await.map_err(|e| pg("switch generations", e))?;
        Ok(true)
    }
}
