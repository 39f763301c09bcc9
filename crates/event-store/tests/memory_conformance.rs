//! The whole conformance kit against the in-memory adapters.

use event_store::{MemoryCache, MemoryStore};

event_store_testkit::store_conformance_tests!(|| async { Some(MemoryStore::new()) });
event_store_testkit::checkpoint_conformance_tests!(|| async { Some(MemoryStore::new()) });
event_store_testkit::projection_conformance_tests!(|| async { Some(MemoryStore::new()) });
event_store_testkit::cache_conformance_tests!(|| async {
    Some((MemoryStore::new(), MemoryCache::new()))
});

/// The sequential runners run every check on one shared store, as an adapter without the
/// macros would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_on_one_store() {
    let store = MemoryStore::new();
    event_store_testkit::run_store_suite(&store).await;
    event_store_testkit::run_cache_suite(&store, &MemoryCache::new()).await;
    event_store_testkit::checkpoints_round_trip(&store).await;
    event_store_testkit::run_projection_suite(&store).await;
}

/// The key store's contract (crypto-shredding) on the memory key store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_key_store_keeps_the_contract() {
    let keys = event_store::erasure::MemoryKeyStore::new();
    event_store_testkit::key_store_contract(&keys, "").await;
    // A second run beside the first, as in a shared store.
    event_store_testkit::key_store_contract(&keys, "again-").await;
}

/// Forgetting a person: every read path of the memory store shows them erased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_erases_every_read_path() {
    event_store_testkit::forgetting_erases_every_read_path(
        &MemoryStore::new(),
        &MemoryCache::new(),
        &event_store::erasure::MemoryKeyStore::new(),
    )
    .await;
}
