//! Counters, readable at any time, logged as tracing events and recorded through the `metrics`
//! facade under the names listed in [`event_store::metrics`].

use std::sync::atomic::{AtomicU64, Ordering};

/// What a relay has done since it started.
#[derive(Debug, Default)]
pub struct RelayMetrics {
    /// Events published (each counted again when republished after a failure).
    pub published: AtomicU64,
    /// Publishes the broker confirmed.
    pub confirmed: AtomicU64,
    /// Publishes the broker refused (the relay reconnects and republishes from its checkpoint).
    pub nacked: AtomicU64,
    /// Events sent in answer to replay requests.
    pub replayed: AtomicU64,
    /// Reconnections after a failure.
    pub reconnects: AtomicU64,
}

/// What a subscriber has done since it started.
#[derive(Debug, Default)]
pub struct SubscriberMetrics {
    /// Messages received.
    pub delivered: AtomicU64,
    /// Messages the handler accepted (acknowledged).
    pub handled: AtomicU64,
    /// Messages the broker marked as redelivered.
    pub redeliveries: AtomicU64,
    /// Messages dropped before the handler because their id was processed already.
    pub duplicates: AtomicU64,
    /// Handler calls that failed and were retried.
    pub retries: AtomicU64,
    /// Messages sent to the dead letters.
    pub dead_letters: AtomicU64,
    /// Reconnections after a failure.
    pub reconnects: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Counts `by` in `counter` and in the facade's counter `name`, labelled `key = value`.
pub(crate) fn count(
    counter: &AtomicU64,
    by: u64,
    name: &'static str,
    (key, value): (&'static str, &str),
) {
    bump(counter, by);
    metrics::counter!(name, key => value.to_owned()).increment(by);
}
