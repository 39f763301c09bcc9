//! Crypto-shredding's key store on SQLite.

use crate::store::SqliteStore;

/// Subjects' wrapped data keys in the store's file (table `subject_keys`); a forgotten subject
/// keeps a row without a key. Writes go through the store's writer. The master key that wraps
/// them is never stored here (see `event_store::erasure`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteKeyStore {
    store: SqliteStore,
}

impl SqliteKeyStore {
    /// A key store in the store's file.
    pub fn new(store: &SqliteStore) -> Self {
        Self {
            store: store.clone(),
        }
    }
}

event_store_sql::impl_key_store!(SqliteKeyStore, store);
