//! The aggregate cache on PostgreSQL.

use event_store::{Cache, CacheKey, CachedState, Error, Position, Result};

use crate::error::pg;
use crate::query::to_i64;
use crate::store::PgStore;

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
        Ok(row.map(|r| {
            let (tx, seq): (i64, i64) = (r.get(1), r.get(2));
            CachedState {
                state: r.get(0),
                checkpoint: Position::from_parts(tx.unsigned_abs(), seq.unsigned_abs()),
            }
        }))
    }

    async fn put(&self, key: &CacheKey, entry: CachedState) -> Result<()> {
        let client = self.store.client("cache put").await?;
        let stmt = client
            .prepare_cached(PUT)
            .await
            .map_err(|e| pg("cache put", e))?;
        let version = i32::try_from(key.version)
            .map_err(|_| Error::invalid("version", "aggregate versions fit in 31 bits"))?;
        let (tx, seq) = entry.checkpoint.parts();
        client
            .execute(
                &stmt,
                &[
                    &key.aggregate,
                    &version,
                    &key.query,
                    &entry.state,
                    &to_i64(tx),
                    &to_i64(seq),
                ],
            )
            .await
            .map_err(|e| pg("cache put", e))?;
        Ok(())
    }
}
