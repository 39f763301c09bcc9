//! The store's metrics, recorded through the [`metrics`] facade: nothing is recorded until the
//! process installs a recorder (`event-store serve` installs a Prometheus one and serves it at
//! `/metrics`; a service of your own installs whichever it uses). The names are the same in
//! every process.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `event_store_append_seconds` | histogram | | the time of each append (one batch, or one multi-stream call) |
//! | `event_store_events_appended_total` | counter | `namespace`, `type` | events stored (retries that store nothing are not counted) |
//! | `event_store_append_conflicts_total` | counter | | appends refused for a version conflict |
//! | `event_store_reads_total` | counter | `kind`: `stream`, `log`, `log_backward`, `query`, `follow`, `tail` | reads started through the facade |
//! | `event_store_http_requests_total` | counter | `method`, `status` | HTTP requests served (`event-store-server`) |
//! | `event_store_http_request_seconds` | histogram | `method` | their duration |
//! | `event_store_live_clients` | gauge | | live-tail (SSE) clients connected |
//! | `event_store_projection_events_applied_total` | counter | `projection` | events a projection's handlers applied |
//! | `event_store_projection_lag_seconds` | gauge | `projection` | the age of the last event applied, when it was applied (its `context.time` to now) |
//! | `event_store_projection_partitions` | gauge | `projection`, `state`: `catching_up`, `live`, `parked` | the partitions this process works on, by state |
//! | `event_store_projection_retries_total` | counter | `projection` | handler failures that were retried |
//! | `event_store_projection_parked_total` | counter | `projection` | partitions parked on an event that keeps failing |
//! | `event_store_projection_store_errors_total` | counter | `projection` | store failures (retried) |
//! | `event_store_relay_published_total` | counter | `exchange` | events the broker confirmed (`event-store-amqp`'s relay; the publish rate is its `rate()`) |
//! | `event_store_relay_nacked_total` | counter | `exchange` | publishes the broker refused (republished from the checkpoint) |
//! | `event_store_relay_lag_seconds` | gauge | `exchange` | the age of the last event published, when the broker confirmed it |
//! | `event_store_relay_reconnects_total` | counter | `exchange` | relay sessions that failed and reconnected |
//! | `event_store_subscriber_delivered_total` | counter | `group` | messages a subscriber received |
//! | `event_store_subscriber_handled_total` | counter | `group` | messages its handler accepted |
//! | `event_store_subscriber_redeliveries_total` | counter | `group` | messages the broker marked as redelivered |
//! | `event_store_subscriber_duplicates_total` | counter | `group` | messages dropped as already processed |
//! | `event_store_subscriber_retries_total` | counter | `group` | handler failures that were retried |
//! | `event_store_subscriber_dead_letters_total` | counter | `group` | messages sent to the dead letters |
//! | `event_store_replica_lag_seconds` | gauge | `replica` | how far a PostgreSQL replica is behind its primary, at its last check |
//! | `event_store_replica_healthy` | gauge | `replica` | 1 while reads go to the replica, 0 while it is skipped (down, lagging, or promoted) |
//! | `event_store_replica_fallbacks_total` | counter | `reason`: `none`, `failed`, `behind`, `wait` | replicas passed over for a read of the log: none was healthy (and past the watermark fence), the one tried failed, the one tried was found short of the fence on its connection (restarted since its last check), or none had what an `After` or `Session` read must see in time |
//!
//! The lags are ages of events (`now − context.time`) when they were applied or published: an
//! import of old events shows as lag while it is worked through, as it should for a consumer.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::backend::Appended;
use crate::error::Error;
use crate::model::RecordedEvent;

/// Records an append that started at `started`.
pub(crate) fn appended(started: Instant, result: Result<&[Appended], &Error>) {
    metrics::histogram!("event_store_append_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(all) => {
            // One increment per namespace and type, not per event.
            let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for a in all.iter().filter(|a| a.stored) {
                for e in &a.events {
                    *counts
                        .entry((e.namespace.as_str(), e.event_type.as_str()))
                        .or_default() += 1;
                }
            }
            for ((namespace, event_type), n) in counts {
                metrics::counter!(
                    "event_store_events_appended_total",
                    "namespace" => namespace.to_owned(),
                    "type" => event_type.to_owned()
                )
                .increment(n);
            }
        }
        Err(Error::Conflict { .. }) => {
            metrics::counter!("event_store_append_conflicts_total").increment(1);
        }
        Err(_) => {}
    }
}

/// Records the start of a read of `kind`.
pub(crate) fn read(kind: &'static str) {
    metrics::counter!("event_store_reads_total", "kind" => kind).increment(1);
}

/// The age of `event` now, in seconds (0 for an event from the future).
pub fn age_seconds(event: &RecordedEvent) -> f64 {
    let age = chrono::Utc::now() - event.context.time;
    age.num_microseconds()
        .map_or(f64::MAX, |us| us.max(0) as f64 / 1e6)
}

/// Records a projection's applied batch.
pub(crate) fn projection_applied(projection: &str, events: &[RecordedEvent]) {
    metrics::counter!("event_store_projection_events_applied_total", "projection" => projection.to_owned())
        .increment(events.len() as u64);
    if let Some(last) = events.last() {
        metrics::gauge!("event_store_projection_lag_seconds", "projection" => projection.to_owned())
            .set(age_seconds(last));
    }
}

/// Counts one of a projection's events: `retries`, `parked` or `store_errors`.
pub(crate) fn projection_count(projection: &str, what: &'static str) {
    let name = match what {
        "retries" => "event_store_projection_retries_total",
        "parked" => "event_store_projection_parked_total",
        _ => "event_store_projection_store_errors_total",
    };
    metrics::counter!(name, "projection" => projection.to_owned()).increment(1);
}

/// A projection partition in `event_store_projection_partitions`, counted under its state while
/// it lives.
pub(crate) struct PartitionGauge {
    projection: String,
    state: Option<&'static str>,
}

impl PartitionGauge {
    /// A partition not counted yet.
    pub(crate) fn new(projection: &str) -> Self {
        Self {
            projection: projection.to_owned(),
            state: None,
        }
    }

    /// Counts the partition under `state` (`catching_up`, `live`, `parked`).
    pub(crate) fn set(&mut self, state: &'static str) {
        if self.state == Some(state) {
            return;
        }
        self.leave();
        metrics::gauge!("event_store_projection_partitions", "projection" => self.projection.clone(), "state" => state)
            .increment(1.0);
        self.state = Some(state);
    }

    fn leave(&mut self) {
        if let Some(old) = self.state.take() {
            metrics::gauge!("event_store_projection_partitions", "projection" => self.projection.clone(), "state" => old)
                .decrement(1.0);
        }
    }
}

impl Drop for PartitionGauge {
    fn drop(&mut self) {
        self.leave();
    }
}

/// A replica's health at its last check (`lag`: `None` when it could not be measured).
pub fn replica(name: &str, lag: Option<std::time::Duration>, healthy: bool) {
    if let Some(lag) = lag {
        metrics::gauge!("event_store_replica_lag_seconds", "replica" => name.to_owned())
            .set(lag.as_secs_f64());
    }
    metrics::gauge!("event_store_replica_healthy", "replica" => name.to_owned()).set(if healthy {
        1.0
    } else {
        0.0
    });
}

/// A read a replica could not serve (`reason`: `none`, `failed`, `behind` or `wait`).
pub fn replica_fallback(reason: &'static str) {
    metrics::counter!("event_store_replica_fallbacks_total", "reason" => reason).increment(1);
}
