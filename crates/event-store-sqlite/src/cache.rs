//! The aggregate cache on SQLite.

use event_store::{Cache, CacheKey, CachedState, Result};

use crate::connection::{BACKEND, collect, column, sqlite};
use crate::store::SqliteStore;
use crate::writer::Job;

const GET: &str = include_str!("../sql/queries/cache_get.sql");

/// Cached aggregate states in the store's file (table `aggregate_cache`). Cheap to clone.
///
/// Puts go through the store's writer; a put never replaces an entry with one of an older
/// checkpoint.
#[derive(Clone, Debug)]
pub struct SqliteCache {
    store: SqliteStore,
}

impl SqliteCache {
    /// A cache in the store's file.
    pub fn new(store: &SqliteStore) -> Self {
        Self {
            store: store.clone(),
        }
    }
}

impl Cache for SqliteCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedState>> {
        let key = key.clone();
        self.store
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(GET)
                    .map_err(|e| sqlite("cache get", e))?;
                let rows = stmt
                    .query(rusqlite::params![
                        key.aggregate,
                        i64::from(key.version),
                        key.query
                    ])
                    .map_err(|e| sqlite("cache get", e))?;
                let entries = collect(rows, "cache get", |r| {
                    let state: String = column(r, 0, "state")?;
                    Ok(CachedState {
                        state: serde_json::from_str(&state)
                            .map_err(|e| event_store::Error::codec("decode a cached state", e))?,
                        checkpoint: event_store_sql::convert::position(
                            BACKEND,
                            ("high", column(r, 1, "high")?),
                            ("low", column(r, 2, "low")?),
                        )?,
                    })
                })?;
                Ok(entries.into_iter().next())
            })
            .await
    }

    async fn put(&self, key: &CacheKey, entry: CachedState) -> Result<()> {
        let key = key.clone();
        self.store
            .inner
            .writer
            .call(|reply| Job::CachePut(key, entry, reply))
            .await
    }
}
