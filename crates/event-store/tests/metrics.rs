//! The metrics a process records through the `metrics` facade, read back from a Prometheus
//! recorder installed for this test binary alone (a recorder is global to a process).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::time::Duration;

use event_store::projection::{
    AtLeastOnce, Handle, Projection, ProjectionState, RunnerOptions, Scope,
};
use event_store::{
    BoxError, EventStore, ExpectedVersion, NewEvent, Query, RecordedEvent, RetryPolicy, Store as _,
};
use event_store_testkit::prometheus::{install_recorder, value};
use serde_json::json;

/// Fails on events whose data says `"bad": true`.
#[derive(Clone)]
struct Picky;

impl Projection for Picky {
    const NAME: &'static str = "picky";
    fn query(&self) -> Query {
        Query::all().namespace("shop")
    }
}

impl Handle for Picky {
    async fn handle(&self, _: Scope<'_>, event: &RecordedEvent) -> Result<(), BoxError> {
        if event.data["bad"] == json!(true) {
            return Err("picky: a bad event".into());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_and_projections_are_recorded_under_the_documented_names() {
    let handle = install_recorder();
    let es = EventStore::memory();
    for i in 0..5 {
        let e = NewEvent::new("shop", "Placed", json!({"i": i}))
            // An hour old: the projection's lag is the age of what it applies.
            .with_time(chrono::Utc::now() - chrono::Duration::hours(1));
        es.append(&format!("order-{i}"), ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
    }
    let conflict = es
        .append(
            "order-0",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("shop", "Placed", json!({}))],
        )
        .await;
    assert!(conflict.is_err());

    let runner = es
        .runner(AtLeastOnce(Picky))
        .with_options({
            let mut options = RunnerOptions::default();
            options.partitions = 1;
            options.retry = RetryPolicy {
                max_attempts: 2,
                first_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(1),
            };
            options
        })
        .spawn();
    let projections = es.projections();
    let last = es.store().stats().await.unwrap().head.unwrap();
    projections
        .wait_for("picky", last, Duration::from_secs(20))
        .await
        .unwrap();
    let text = handle.render();
    assert_eq!(
        value(
            &text,
            r#"event_store_events_appended_total{namespace="shop",type="Placed"}"#
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "event_store_append_conflicts_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"event_store_projection_events_applied_total{projection="picky"}"#
        ),
        Some(5.0),
        "{text}"
    );
    let lag = value(
        &text,
        r#"event_store_projection_lag_seconds{projection="picky"}"#,
    )
    .unwrap();
    assert!((3590.0..3700.0).contains(&lag), "an hour-old event: {lag}");
    assert_eq!(
        value(
            &text,
            r#"event_store_projection_partitions{projection="picky",state="live"}"#
        ),
        Some(1.0),
        "{text}"
    );

    // A bad event: retried, then its partition parks.
    es.append(
        "order-9",
        ExpectedVersion::Any,
        vec![NewEvent::new("shop", "Placed", json!({"bad": true}))],
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while projections.status("picky").await.unwrap().unwrap().state != ProjectionState::Parked {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the partition never parked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = handle.render();
    assert_eq!(
        value(
            &text,
            r#"event_store_projection_retries_total{projection="picky"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"event_store_projection_parked_total{projection="picky"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"event_store_projection_partitions{projection="picky",state="parked"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"event_store_projection_partitions{projection="picky",state="live"}"#
        ),
        Some(0.0),
        "{text}"
    );
    runner.stop().await.unwrap();
    // A stopped runner works on no partition.
    let text = handle.render();
    assert_eq!(
        value(
            &text,
            r#"event_store_projection_partitions{projection="picky",state="parked"}"#
        ),
        Some(0.0),
        "{text}"
    );
}
