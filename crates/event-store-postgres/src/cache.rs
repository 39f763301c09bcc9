//! The aggregate cache on PostgreSQL.

use crate::store::PgStore;

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

event_store_sql::impl_cache!(PgCache, store);
