//! `append_events_many`'s one-statement path, called directly: versions worked out in batch
//! order (a stream's later batches after its earlier ones), every expectation checked where the
//! batch lands, and `ES425` (nothing written) whenever a batch needs the careful path. Through
//! the store, the careful path would hide a fast path that refused too much.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Schema as _;

/// Calls `append_events_many` with one event per `(stream, expected)` batch of `sizes`; the
/// versions it returned, or the SQLSTATE it raised.
async fn call(
    admin: &tokio_postgres::Client,
    batches: &[(&str, i64, usize)],
) -> Result<Vec<(String, i64)>, String> {
    let streams: Vec<&str> = batches.iter().map(|b| b.0).collect();
    let expected: Vec<i64> = batches.iter().map(|b| b.1).collect();
    let (mut of, mut offsets) = (Vec::new(), Vec::new());
    for (i, b) in batches.iter().enumerate() {
        for j in 0..b.2 {
            of.push(i32::try_from(i + 1).unwrap());
            offsets.push(i32::try_from(j).unwrap());
        }
    }
    let n = of.len();
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::now_v7()).collect();
    let data = serde_json::json!({"event_namespace": "n", "event_type": "T"});
    let context = serde_json::json!({"time": "2026-01-01T00:00:00Z"});
    let now = chrono::Utc::now();
    let rows = admin
        .query(
            "SELECT e.id, e.version FROM append_events_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) AS e",
            &[
                &streams,
                &expected,
                &of,
                &offsets,
                &ids,
                &vec!["n"; n],
                &vec!["T"; n],
                &vec![data; n],
                &vec![context; n],
                &vec![now; n],
            ],
        )
        .await
        .map_err(|e| e.code().map_or(e.to_string(), |c| c.code().to_owned()))?;
    let version: std::collections::HashMap<uuid::Uuid, i64> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(of
        .iter()
        .zip(&ids)
        .map(|(b, id)| {
            (
                batches[usize::try_from(*b).unwrap() - 1].0.to_owned(),
                version[id],
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_statement_path_places_batches_and_checks_expectations() {
    let Some(t) = common::fresh().await else {
        return;
    };
    let admin = common::admin_in(t.schema()).await;
    // -1 any, -2 no stream, -3 stream exists, n: exactly version n.
    let got = call(
        &admin,
        &[("a", -2, 2), ("b", -1, 1), ("a", 1, 1), ("c", -2, 1)],
    )
    .await
    .unwrap();
    let want = [("a", 0), ("a", 1), ("b", 0), ("a", 2), ("c", 0)];
    assert_eq!(
        got,
        want.map(|(s, v)| (s.to_owned(), v)),
        "a stream's later batch follows its earlier one"
    );
    let ok = call(&admin, &[("a", 2, 1), ("b", -3, 2), ("a", 3, 1)])
        .await
        .unwrap();
    assert_eq!(ok.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [3, 1, 2, 4]);
    let count = || async {
        admin
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = count().await;
    for refused in [
        vec![("a", 3, 1)],                // a is at version 4
        vec![("d", -3, 1)],               // d does not exist
        vec![("b", -2, 1)],               // b exists
        vec![("e", -2, 1), ("e", -2, 1)], // e exists once the first batch is placed
        vec![("f", -1, 1), ("a", 9, 1)],  // one refused batch refuses all
    ] {
        assert_eq!(
            call(&admin, &refused).await,
            Err("ES425".to_owned()),
            "{refused:?} takes the careful path"
        );
    }
    assert_eq!(count().await, before, "a refused call writes nothing");
}
