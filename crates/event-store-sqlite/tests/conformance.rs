//! The whole conformance kit against SQLite, each check on a fresh file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use event_store_sqlite::{SqliteCache, SqliteStore};
use event_store_testkit::Guarded;
use tempfile::TempDir;

/// A store in a temporary directory, removed with the last clone.
async fn fresh() -> Option<Guarded<SqliteStore, TempDir>> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    Some(Guarded::new(store, dir))
}

async fn fresh_pair() -> Option<(Guarded<SqliteStore, TempDir>, SqliteCache)> {
    let t = fresh().await?;
    let cache = SqliteCache::new(&t.store);
    Some((t, cache))
}

event_store_testkit::store_conformance_tests!(fresh);
event_store_testkit::cache_conformance_tests!(fresh_pair);
event_store_testkit::projection_conformance_tests!(fresh);
event_store_testkit::checkpoint_conformance_tests!(fresh);

/// Crypto-shredding's key store keeps the kit's contract in the store's file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_store_keeps_the_contract() {
    let t = fresh().await.unwrap();
    let keys = event_store_sqlite::SqliteKeyStore::new(&t.store);
    event_store_testkit::key_store_contract(&keys, "").await;
    event_store_testkit::key_store_contract(&keys, "again-").await;
}

/// Forgetting a person: every read path of a SQLite store shows them erased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_erases_every_read_path() {
    let t = fresh().await.unwrap();
    let keys = event_store_sqlite::SqliteKeyStore::new(&t.store);
    event_store_testkit::forgetting_erases_every_read_path(
        &t.store,
        &SqliteCache::new(&t.store),
        &keys,
    )
    .await;
}
