//! The aggregate cache on SQLite.

use crate::store::SqliteStore;

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

event_store_sql::impl_cache!(SqliteCache, store);
