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

use std::collections::BTreeMap;
use std::time::Instant;

use crate::backend::Appended;
use crate::error::Error;

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
