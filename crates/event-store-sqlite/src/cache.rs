//! The aggregate cache on SQLite.

use event_store::{Cache, CacheKey, CachedState, Position, Result};
use rusqlite::OptionalExtension;

use crate::connection::sqlite;
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
                let row: Option<(String, i64, i64)> = conn
                    .prepare_cached(GET)
                    .and_then(|mut s| {
                        s.query_row(
                            rusqlite::params![key.aggregate, i64::from(key.version), key.query],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .optional()
                    })
                    .map_err(|e| sqlite("cache get", e))?;
                row.map(|(state, high, low)| {
                    Ok(CachedState {
                        state: serde_json::from_str(&state)
                            .map_err(|e| event_store::Error::codec("decode a cached state", e))?,
                        checkpoint: Position::from_parts(high.unsigned_abs(), low.unsigned_abs()),
                    })
                })
                .transpose()
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
