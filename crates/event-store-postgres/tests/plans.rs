//! On a log of 100 000 events, the hot queries are index scans (checked with EXPLAIN).
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

use chrono::{TimeZone, Utc};
use event_store::{Position, Query};
use event_store_postgres::Indexes;
use event_store_sql::Finality;
use serde_json::{Value, json};

fn plan_text(plan: &Value) -> String {
    plan.to_string()
}

/// No sequential scan, and one of `indexes` (`|`-separated) is used.
fn assert_indexed(what: &str, plan: &Value, indexes: &str) {
    let text = plan_text(plan);
    assert!(
        !text.contains("\"Seq Scan\""),
        "{what} uses a sequential scan: {text}"
    );
    assert!(
        indexes
            .split('|')
            .any(|i| text.contains(&format!("\"Index Name\":\"{i}\""))),
        "{what} uses none of {indexes}: {text}"
    );
}

async fn explain_sql(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Value {
    let rows = client
        .query(&format!("EXPLAIN (FORMAT JSON) {sql}"), params)
        .await
        .unwrap();
    rows[0].get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_queries_use_indexes_on_100k_events() {
    // With the optional indexes, so the subject and time queries can show they use them.
    let Some(t) = common::fresh_with(|c| c.indexes = Indexes::all()).await else {
        return;
    };
    let admin = common::admin_in(t.schema()).await;
    // 100 000 events in 100 transactions: 2 000 streams of 50, 10 namespaces × 5 types, 100
    // subjects, an hour apart.
    for batch in 0..100 {
        admin
            .execute(
                "INSERT INTO events (id, stream, version, namespace, event_type, data, context, time)
                 SELECT gen_random_uuid(),
                        'stream-' || (i % 2000),
                        i / 2000,
                        'ns' || (i % 10),
                        'Type' || (i % 5),
                        jsonb_build_object('n', i, 'event_namespace', 'ns' || (i % 10), 'event_type', 'Type' || (i % 5)),
                        jsonb_build_object('time', '2020-01-01T00:00:00Z', 'subject', jsonb_build_object('user', i % 100)),
                        timestamptz '2020-01-01' + i * interval '1 hour'
                   FROM generate_series($1::int * 1000, $1::int * 1000 + 999) AS i",
                &[&batch],
            )
            .await
            .unwrap();
    }
    admin.batch_execute("ANALYZE events").await.unwrap();
    let count: i64 = admin
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 100_000);

    let mid: (i64, i64) = {
        let r = admin
            .query_one(
                "SELECT tx, seq FROM events ORDER BY tx, seq OFFSET 50000 LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    let after = Position::from_parts(mid.0.unsigned_abs(), mid.1.unsigned_abs());

    let read_all = include_str!("../sql/queries/read_all.sql");
    assert_indexed(
        "read_all",
        &explain_sql(&admin, read_all, &[&mid.0, &mid.1, &512i64]).await,
        "events_position",
    );
    let backward_log = include_str!("../sql/queries/read_all_backward.sql");
    assert_indexed(
        "read_all backward",
        &explain_sql(&admin, backward_log, &[&mid.0, &mid.1, &512i64]).await,
        "events_position",
    );
    let forward = include_str!("../sql/queries/read_stream_forward.sql");
    assert_indexed(
        "read stream",
        &explain_sql(&admin, forward, &[&"stream-7", &0i64, &512i64, &512i64]).await,
        "events_stream_version|events_stream_position",
    );
    let backward = include_str!("../sql/queries/read_stream_backward.sql");
    assert_indexed(
        "read stream backward",
        &explain_sql(&admin, backward, &[&"stream-7", &49i64, &512i64, &-1i64]).await,
        "events_stream_version|events_stream_position",
    );
    let version = include_str!("../sql/queries/stream_version.sql");
    assert_indexed(
        "stream version",
        &explain_sql(&admin, version, &[&"stream-7"]).await,
        "events_stream_version|events_stream_position",
    );
    assert_indexed(
        "lookup by id",
        &explain_sql(
            &admin,
            "SELECT * FROM events WHERE id = ANY($1)",
            &[&vec![uuid::Uuid::now_v7()]],
        )
        .await,
        "events_id",
    );

    let typed = [
        (
            "a stream (aggregate)",
            Query::stream("stream-7").namespace("ns7"),
            Position::START,
            "events_stream_position|events_stream_version",
        ),
        (
            "a stream from a checkpoint",
            Query::stream("stream-7").namespace("ns7"),
            after,
            "events_stream_position|events_stream_version",
        ),
        (
            "a namespace and type",
            Query::all().event_type("ns3", "Type3"),
            after,
            "events_type_position",
        ),
        (
            "a subject",
            Query::all().namespace("ns1").subject_eq("user", json!(42)),
            Position::START,
            "events_subject",
        ),
        (
            "a time range",
            Query::all()
                .since(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap())
                .until(Utc.with_ymd_and_hms(2025, 1, 2, 0, 0, 0).unwrap()),
            Position::START,
            "events_time",
        ),
    ];
    for (what, q, after, index) in typed {
        let q = q.check().unwrap();
        for finality in [Finality::Committed, Finality::Final] {
            let plan = t.store.explain(&q, after, finality).await.unwrap();
            assert_indexed(what, &plan, index);
        }
    }
}
