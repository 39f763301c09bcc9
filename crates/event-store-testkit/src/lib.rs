#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
// The kit is test code: a failed expectation is a panic with a message, by design.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::many_single_char_names,
    clippy::too_many_lines,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::match_wild_err_arm
)]

mod aggregates;
mod cache;
mod checkpoints;
mod closing;
mod concurrency;
mod erasure;
mod faults;
#[doc(hidden)]
pub mod fuzz;
mod keys;
pub mod ledger;
mod multi;
mod projections;
pub mod prometheus;
mod reads;
mod service;
mod support;
mod upcasting;
mod writes;

pub use aggregates::{
    AccountEvent, Added, CounterEvent, Deposited, KitAccount, KitCounter, KitCounterV2,
    KitUserTotal, Removed, Withdrawn,
};
pub use cache::{cache_moves_forward, cached_equals_uncached, version_bump_invalidates};
pub use checkpoints::checkpoints_round_trip;
pub use closing::closed_streams_keep_their_events;
pub use concurrency::{concurrent_appenders, mixed_workload, tail_during_appends};
pub use erasure::{EmailBook, forgetting_erases_every_read_path};
pub use faults::{
    FaultyCache, FaultyStore, Method, fold_survives_cache_faults, fold_survives_store_faults,
    tail_survives_failed_reads,
};
pub use keys::{KitAccountProfile, Registered, key_store_contract, register};
pub use multi::{multi_stream_appends, multi_stream_appends_do_not_deadlock};
pub use projections::{
    KitProjection, Recorder, Seen, kit_options, projection_catches_up_and_follows,
    projection_parks_and_resumes, projection_partitions_keep_stream_order, projection_rebuilds,
    projection_runners_share_partitions, projection_store_contract,
};
pub use reads::{
    bad_input, events_are_found_by_id, global_order, paging, queries, read_stream_directions,
    stats_counts, streamed_reads_agree, streams_are_listed,
};
pub use service::{execute_under_contention, follow_never_skips};
pub use support::{Guarded, PATIENCE, RecordingEmitter, Rng, require_service, wait_final};
pub use upcasting::{
    KitOpenings, KitOpeningsPremium, OpenedPremium, OpenedV3,
    changed_upcasters_invalidate_the_cache, upcasting_failures_are_named,
    upcasting_reads_every_version,
};
pub use writes::{
    batch_atomicity, expected_versions, idempotent_emits_once, idempotent_reappend, round_trip,
};

/// The store checks, written once: [`run_store_suite`] and [`store_conformance_tests!`] both
/// expand this list.
#[doc(hidden)]
#[macro_export]
macro_rules! __kit_store_checks {
    ($mode:ident $arg:expr) => {
        $crate::__kit_each!($mode $arg;
            round_trip, batch_atomicity, expected_versions, concurrent_appenders,
            idempotent_reappend, idempotent_emits_once, global_order, paging, stats_counts,
            tail_during_appends, mixed_workload, bad_input, read_stream_directions, queries,
            fold_survives_store_faults, fold_survives_cache_faults, tail_survives_failed_reads,
            execute_under_contention, follow_never_skips, upcasting_reads_every_version,
            multi_stream_appends, multi_stream_appends_do_not_deadlock, streamed_reads_agree,
            streams_are_listed, events_are_found_by_id, closed_streams_keep_their_events);
    };
}

/// The checkpoint checks, written once.
#[doc(hidden)]
#[macro_export]
macro_rules! __kit_checkpoint_checks {
    ($mode:ident $arg:expr) => {
        $crate::__kit_each!($mode $arg; checkpoints_round_trip);
    };
}

/// The projection checks, written once.
#[doc(hidden)]
#[macro_export]
macro_rules! __kit_projection_checks {
    ($mode:ident $arg:expr) => {
        $crate::__kit_each!($mode $arg;
            projection_store_contract, projection_catches_up_and_follows,
            projection_partitions_keep_stream_order, projection_parks_and_resumes,
            projection_rebuilds, projection_runners_share_partitions);
    };
}

/// The cache checks, written once (each takes a store and a cache).
#[doc(hidden)]
#[macro_export]
macro_rules! __kit_cache_checks {
    ($mode:ident $arg:expr) => {
        $crate::__kit_each!($mode $arg;
            cache_moves_forward, cached_equals_uncached, version_bump_invalidates,
            changed_upcasters_invalidate_the_cache, upcasting_failures_are_named);
    };
}

/// Expands a check list: `run` awaits each check on a store, `run_pair` on a `(store, cache)`,
/// `tests` and `pair_tests` make one `#[tokio::test]` per check from a factory.
#[doc(hidden)]
#[macro_export]
macro_rules! __kit_each {
    (run $store:expr; $($check:ident),* $(,)?) => {
        $( $crate::$check($store).await; )*
    };
    (run_pair $pair:expr; $($check:ident),* $(,)?) => {
        $( $crate::$check($pair.0, $pair.1).await; )*
    };
    (fresh $make:expr; $($check:ident),* $(,)?) => {
        $(
            {
                let store = ($make)().await;
                $crate::$check(&store).await;
                ::std::println!("kit check {}: ok", ::std::stringify!($check));
            }
        )*
    };
    (fresh_pair $make:expr; $($check:ident),* $(,)?) => {
        $(
            {
                let (store, cache) = ($make)().await;
                $crate::$check(&store, &cache).await;
                ::std::println!("kit check {}: ok", ::std::stringify!($check));
            }
        )*
    };
    (tests $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = ($make)().await {
                    $crate::$check(&store).await;
                }
            }
        )*
    };
    (pair_tests $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some((store, cache)) = ($make)().await {
                    $crate::$check(&store, &cache).await;
                }
            }
        )*
    };
}

/// Runs every store check one after the other, each on the store the async `make` returns,
/// printing each as it passes: for a test binary with a harness of its own (one that starts
/// servers once for every check, say).
#[macro_export]
macro_rules! store_conformance_in_sequence {
    ($make:expr) => {
        $crate::__kit_store_checks!(fresh $make);
    };
}

/// [`store_conformance_in_sequence!`] for the cache checks: `make` returns a store and a cache.
#[macro_export]
macro_rules! cache_conformance_in_sequence {
    ($make:expr) => {
        $crate::__kit_cache_checks!(fresh_pair $make);
    };
}

/// [`store_conformance_in_sequence!`] for the projection checks.
#[macro_export]
macro_rules! projection_conformance_in_sequence {
    ($make:expr) => {
        $crate::__kit_projection_checks!(fresh $make);
    };
}

/// Expands to one `#[tokio::test]` per store check, each on a fresh store from `$make` (a
/// closure returning a future of `Option<store>`; `None` skips the test, see
/// [`require_service`]). The test crate needs `tokio` with the `macros` and `rt-multi-thread`
/// features.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::__kit_store_checks!(tests $make);
    };
}

/// Expands to one `#[tokio::test]` per checkpoint check on a store from `$make`.
#[macro_export]
macro_rules! checkpoint_conformance_tests {
    ($make:expr) => {
        $crate::__kit_checkpoint_checks!(tests $make);
    };
}

/// Expands to one `#[tokio::test]` per projection check on a store from `$make`.
#[macro_export]
macro_rules! projection_conformance_tests {
    ($make:expr) => {
        $crate::__kit_projection_checks!(tests $make);
    };
}

/// Expands to one `#[tokio::test]` per cache check, each on a fresh `(store, cache)` pair from
/// `$make` (a closure returning a future of `Option<(store, cache)>`; `None` skips the test).
#[macro_export]
macro_rules! cache_conformance_tests {
    ($make:expr) => {
        $crate::__kit_cache_checks!(pair_tests $make);
    };
}

/// Runs every store check on `store`, in turn (as the tests from [`store_conformance_tests!`]
/// do, one store for all).
pub async fn run_store_suite<S: event_store::Store + Clone>(store: &S) {
    crate::__kit_store_checks!(run store);
}

/// Runs every checkpoint check on `store`, in turn.
pub async fn run_checkpoint_suite<S: event_store::Checkpoints>(store: &S) {
    crate::__kit_checkpoint_checks!(run store);
}

/// Runs every projection check on `store`, in turn.
pub async fn run_projection_suite<S: event_store::projection::ProjectionStore>(store: &S) {
    crate::__kit_projection_checks!(run store);
}

/// Runs every cache check on `store` and `cache`, in turn.
pub async fn run_cache_suite<S, C>(store: &S, cache: &C)
where
    S: event_store::Store + Clone,
    C: event_store::Cache + Clone,
{
    crate::__kit_cache_checks!(run_pair(store, cache));
}
