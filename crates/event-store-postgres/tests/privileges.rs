//! The adapter works under a least-privilege role holding only the documented grants
//! (`sql/grants.sql`), and that role cannot update or delete events.
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

use event_store::{EventStore, ExpectedVersion, NewEvent};
use event_store_postgres::{PgCache, PgConfig, PgStore};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_grants_are_enough_and_events_stay_immutable() {
    let Some(t) = common::fresh().await else {
        return;
    };
    let admin = common::admin().await;
    let role = format!("{}_app", t.schema());
    let grants = include_str!("../sql/grants.sql")
        .replace("event_store.", &format!("\"{}\".", t.schema()))
        .replace("SCHEMA event_store", &format!("SCHEMA \"{}\"", t.schema()))
        .replace("app_role", &role);
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN; {grants}"))
        .await
        .unwrap();

    let url = common::url();
    let url = url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    let mut config = PgConfig::with_schema(t.schema());
    config.pool_size = 4;
    let outcome = async move {
        let store = PgStore::connect(&url, config).await.unwrap();
        let es = EventStore::new(store.clone(), PgCache::new(&store), event_store::NoEmitter);
        event_store_testkit::round_trip(&store).await;
        event_store_testkit::expected_versions(&store).await;
        // Both paths of a multi-stream append: the one statement and the per-batch one.
        event_store_testkit::multi_stream_appends(&store).await;
        event_store_testkit::cached_equals_uncached(&store, &PgCache::new(&store)).await;
        event_store_testkit::checkpoints_round_trip(&store).await;
        event_store_testkit::key_store_contract(&event_store_postgres::PgKeyStore::new(&store), "")
            .await;
        es.append(
            "s",
            ExpectedVersion::Any,
            vec![NewEvent::new("priv", "E", json!({}))],
        )
        .await
        .unwrap();
        let client = store.pool().get().await.unwrap();
        for sql in [
            "UPDATE events SET data = '{}'",
            "DELETE FROM events",
            "TRUNCATE events",
            // Around append_events: a position before every checkpoint, a version gap.
            "INSERT INTO events (tx, id, stream, version, namespace, event_type, data, context, time) \
             VALUES (5, gen_random_uuid(), 'around', 0, 'priv', 'E', '{}', '{}', now())",
            "INSERT INTO events (id, stream, version, namespace, event_type, data, context, time) \
             VALUES (gen_random_uuid(), 's', 7, 'priv', 'E', '{}', '{}', now())",
        ] {
            let e = client.batch_execute(sql).await.expect_err(sql);
            assert_eq!(
                e.code(),
                Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
                "{sql}: {e}"
            );
        }
    };
    let result = tokio::spawn(outcome).await;
    admin
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
