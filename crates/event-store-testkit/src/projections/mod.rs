//! The projection checks: catch-up then live with no gap, partitions in stream order, parking
//! and resuming, rebuilds, leases and the store's check-and-sets — on every projection store.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use event_store::projection::{Handle, Projection, RunnerOptions, Scope};
use event_store::{BoxError, ExpectedVersion, Position, Query, RecordedEvent, RetryPolicy, Store};
use serde_json::json;
use uuid::Uuid;

use crate::support::{PATIENCE, batch, ev};

mod contract;
mod runs;

pub use contract::projection_store_contract;
pub use runs::{
    projection_catches_up_and_follows, projection_parks_and_resumes,
    projection_partitions_keep_stream_order, projection_rebuilds,
    projection_runners_share_partitions,
};

/// A projection's identity in a check: its name, version and stream prefix.
pub trait KitProjection: Send + Sync + 'static {
    /// The name.
    const NAME: &'static str;
    /// The version.
    const VERSION: u32 = 1;
    /// The streams it reads (`{PREFIX}{tag}-{n}`).
    const PREFIX: &'static str;
}

/// What a [`Recorder`] saw: every event handled, with its generation and partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The generation.
    pub generation: u64,
    /// The partition.
    pub partition: u32,
    /// The event.
    pub event: RecordedEvent,
}

/// An at-least-once projection that records what it handles, and fails on the events a test
/// says (until told otherwise).
pub struct Recorder<K> {
    seen: Arc<Mutex<Vec<Seen>>>,
    failing: Arc<Mutex<HashSet<Uuid>>>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Recorder<K> {
    fn clone(&self) -> Self {
        Self {
            seen: Arc::clone(&self.seen),
            failing: Arc::clone(&self.failing),
            kind: PhantomData,
        }
    }
}

impl<K> Default for Recorder<K> {
    fn default() -> Self {
        Self {
            seen: Arc::default(),
            failing: Arc::default(),
            kind: PhantomData,
        }
    }
}

impl<K> Recorder<K> {
    /// Everything handled so far whose stream holds `tag`.
    pub fn seen(&self, tag: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|s| s.event.stream.contains(tag))
            .cloned()
            .collect()
    }

    /// Makes the handler fail on `id` (or stop failing on it).
    pub fn fail_on(&self, id: Uuid, fail: bool) {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if fail {
            failing.insert(id);
        } else {
            failing.remove(&id);
        }
    }
}

impl<K: KitProjection> Projection for Recorder<K> {
    const NAME: &'static str = K::NAME;
    const VERSION: u32 = K::VERSION;

    fn query(&self) -> Query {
        Query::stream_prefix(K::PREFIX).event_type("kit", "Projected")
    }
}

impl<K: KitProjection> Handle for Recorder<K> {
    async fn handle(&self, scope: Scope<'_>, event: &RecordedEvent) -> Result<(), BoxError> {
        if self
            .failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&event.id)
        {
            return Err(format!("kit: refusing event {}", event.id).into());
        }
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen {
                generation: scope.generation,
                partition: scope.partition,
                event: event.clone(),
            });
        Ok(())
    }
}

macro_rules! kit_projection {
    ($t:ident, $name:literal, $prefix:literal $(, $version:literal)?) => {
        #[doc = concat!("The identity of the `", $name, "` check projection.")]
        #[derive(Debug)]
        pub(crate) struct $t;
        impl KitProjection for $t {
            const NAME: &'static str = $name;
            const PREFIX: &'static str = $prefix;
            $(const VERSION: u32 = $version;)?
        }
    };
}

kit_projection!(CatchUp, "kit-catch-up", "kp-catchup-");
kit_projection!(Ordered, "kit-ordered", "kp-ordered-");
kit_projection!(Parking, "kit-parking", "kp-parking-");
kit_projection!(RebuildV1, "kit-rebuild", "kp-rebuild-");
kit_projection!(RebuildV2, "kit-rebuild", "kp-rebuild-", 2);
kit_projection!(Shared, "kit-shared", "kp-shared-");
kit_projection!(Resized, "kit-resized", "kp-resized-");

/// Quick options for checks: short intervals, small batches.
pub fn kit_options(partitions: u32) -> RunnerOptions {
    RunnerOptions::default()
        .partitions(partitions)
        .batch(50, Duration::from_millis(5))
        .intervals(Duration::from_millis(50), Duration::from_millis(20))
        .retry(RetryPolicy {
            max_attempts: 3,
            first_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
}

/// Appends `per_stream` events to each of `streams` streams `{prefix}{tag}-{n}`, plus as many
/// events of another type that the projections do not want; returns how many wanted ones, and
/// the last position written (what a reader waits for).
async fn write<S: Store + Clone>(
    store: &S,
    prefix: &str,
    tag: &str,
    streams: usize,
    per_stream: usize,
) -> (usize, Position) {
    let mut last = Position::START;
    for round in 0..per_stream {
        for s in 0..streams {
            let stream = format!("{prefix}{tag}-{s}");
            let events = vec![
                ev("kit", "Projected", json!({"round": round, "stream": s})),
                ev("kit", "Ignored", json!({"round": round})),
            ];
            let appended = store
                .append(batch(&stream, ExpectedVersion::Any, events))
                .await
                .expect("append");
            last = last.max(appended.last_position().unwrap_or(last));
        }
    }
    (streams * per_stream, last)
}

/// Waits until `done` holds, or fails after [`PATIENCE`] saying `what`.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Each event exactly once, and each stream's events in version order.
fn assert_exactly_once_in_order(seen: &[Seen], expected: usize) {
    assert_eq!(seen.len(), expected, "every wanted event, once");
    assert_once_in_order(seen);
}

/// No event twice, and each stream's events in version order.
fn assert_once_in_order(seen: &[Seen]) {
    let mut ids = HashSet::new();
    for s in seen {
        assert!(ids.insert(s.event.id), "event {} applied twice", s.event.id);
    }
    let mut last: HashMap<&str, u64> = HashMap::new();
    for s in seen {
        if let Some(prev) = last.insert(&s.event.stream, s.event.version) {
            assert!(
                s.event.version > prev,
                "stream {} applied version {} after {prev}",
                s.event.stream,
                s.event.version
            );
        }
        assert_eq!(s.event.event_type, "Projected", "only the wanted type");
    }
}
