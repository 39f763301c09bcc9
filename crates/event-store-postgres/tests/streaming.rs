//! Reading a log of 1 000 000 events streams it in constant memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::match_wild_err_arm,
    clippy::too_many_lines
)]

mod common;

use common::Schema as _;

use event_store::{EventStore, Position};
use futures::StreamExt;

fn resident_bytes() -> u64 {
    // /proc/self/statm: size resident shared … in pages.
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_events_stream_in_constant_memory() {
    const N: i64 = 1_000_000;
    let Some(t) = common::fresh().await else {
        return;
    };
    let admin = common::admin_in(t.schema()).await;
    admin
        .batch_execute(&format!(
            "INSERT INTO events (id, stream, version, namespace, event_type, data, context, time)
             SELECT gen_random_uuid(), 'big-' || (i % 1000), i / 1000, 'bulk', 'Row',
                    jsonb_build_object('i', i, 'pad', repeat('x', 100), 'event_namespace', 'bulk', 'event_type', 'Row'),
                    '{{\"time\": \"2020-01-01T00:00:00Z\"}}'::jsonb, now()
               FROM generate_series(0, {} ) AS i",
            N - 1
        ))
        .await
        .unwrap();
    let es = EventStore::from_store(t.clone());
    let start = resident_bytes();
    let mut peak = start;
    let mut count = 0i64;
    let mut last = Position::START;
    let mut stream = Box::pin(es.read_all(Position::START));
    while let Some(e) = stream.next().await {
        let e = e.unwrap();
        assert!(e.position > last, "log order");
        last = e.position;
        count += 1;
        if count % 50_000 == 0 {
            peak = peak.max(resident_bytes());
        }
    }
    assert_eq!(count, N, "every event is read once");
    let growth = peak.saturating_sub(start);
    // A million events of ~200 bytes of JSON are hundreds of MB; a page is ~512 of them.
    eprintln!(
        "read {count} events; resident set grew by {} MiB",
        growth >> 20
    );
    assert!(
        growth < 64 << 20,
        "reading grew the resident set by {} MiB",
        growth >> 20
    );
}
