//! The whole conformance kit against the real PostgreSQL server (`EVENT_STORE_TEST_PG`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

event_store_testkit::store_conformance_tests!(common::fresh);
event_store_testkit::cache_conformance_tests!(common::fresh_pair);
event_store_testkit::projection_conformance_tests!(common::fresh);
event_store_testkit::checkpoint_conformance_tests!(common::fresh);

/// Crypto-shredding's key store keeps the kit's contract in the store's schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_store_keeps_the_contract() {
    let Some(t) = common::fresh().await else {
        return;
    };
    let keys = event_store_postgres::PgKeyStore::new(&t.store);
    event_store_testkit::key_store_contract(&keys, "").await;
    event_store_testkit::key_store_contract(&keys, "again-").await;
}

/// Forgetting a person: every read path of a PostgreSQL store shows them erased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_erases_every_read_path() {
    let Some((t, cache)) = common::fresh_pair().await else {
        return;
    };
    let keys = event_store_postgres::PgKeyStore::new(&t.store);
    event_store_testkit::forgetting_erases_every_read_path(&t.store, &cache, &keys).await;
}
