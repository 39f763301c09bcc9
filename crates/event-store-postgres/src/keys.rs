//! Crypto-shredding's key store on PostgreSQL.

use crate::store::PgStore;

/// Subjects' wrapped data keys in the store's schema (table `subject_keys`, created by
/// [`PgStore::migrate`]); a forgotten subject keeps a row without a key. The master key that
/// wraps them is never stored here (see `event_store::erasure`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct PgKeyStore {
    store: PgStore,
}

impl PgKeyStore {
    /// A key store sharing the store's pool and schema.
    pub fn new(store: &PgStore) -> Self {
        Self {
            store: store.clone(),
        }
    }
}

event_store_sql::impl_key_store!(PgKeyStore, store);
