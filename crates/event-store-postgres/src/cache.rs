//! The aggregate cache on PostgreSQL.

use event_store::{Cache, CacheKey, CachedState, Error, Result};
use event_store_sql::convert::position_parts;

use crate::error::pg;
use crate::store::{PgStore, column, position_at};

const GET: &str = include_str!("../sql/queries/cache_get.sql");
const PUT: &str = include_str!("../sql/queries/cache_put.sql");

/// Cached aggregate states in the store's schema (table `aggregate_cache`). Cheap to clone.
///
/// A put never replaces an entry with one of an older checkpoint: the upsert compares
/// checkpoints in the same statement, so racing callers cannot move an entry backwards.
#[derive(Clone, Debug)]
pub struct PgCache {
    store: PgStore,
}

impl PgCache {
    /// A cache sharing the store's pool and schema (created by [`PgStore::migrate`]).
    pub fn new(store: &PgStore) -> Self {
        Self {
            store: store.clone(),
        }
    }
}

impl Cache for PgCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedState>> {
        let client = self.store.client("cache get").await?;
        let stmt = client
            .prepare_cached(GET)
            .await
            .map_err(|e| pg("cache get", e))?;
        let version = i32::try_from(key.version)
            .map_err(|_| Error::invalid("version", "aggregate versions fit in 31 bits"))?;
        let row = client
            .query_opt(&stmt, &[&key.aggregate, &version, &key.query])
            .await
            .map_err(|e| pg("cache get", e))?;
        row.map(|r| {
            Ok(CachedState {
                state: column(&r, 0, "state")?,
                checkpoint: position_at(&r, 1)?,
            })
        })
        .transpose()
    }

    async fn put(&self, key: &CacheKey, entry: CachedState) -> Result<()> {
        let client = self.store.client("cache put").await?;
        let stmt = client
            .prepare_cached(PUT)
            .await
            .map_err(|e| pg("cache put", e))?;
        let version = i32::try_from(key.version)
            .map_err(|_| Error::invalid("version", "aggregate versions fit in 31 bits"))?;
        let (tx, seq) = position_parts(entry.checkpoint);
        client
            .execute(
                &stmt,
                &[
                    &key.aggregate,
                    &version,
                    &key.query,
                    &entry.state,
                    &tx,
                    &seq,
                ],
            )
            .await
            .map_err(|e| pg("cache put", e))?;
        Ok(())
    }
}
