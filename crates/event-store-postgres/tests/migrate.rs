//! Migrations are versioned, idempotent and safe to run concurrently.
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

use event_store_postgres::{MIGRATIONS, PgConfig, PgStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_versioned() {
    let Some(t) = common::fresh().await else {
        return;
    };
    assert!(
        t.store.migrate().await.unwrap().is_empty(),
        "a second migrate applies nothing"
    );
    let admin = common::admin().await;
    let rows = admin
        .query(
            &format!(
                "SELECT version, name FROM \"{}\".schema_migrations ORDER BY version",
                t.schema()
            ),
            &[],
        )
        .await
        .unwrap();
    let applied: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: Vec<(i32, String)> = MIGRATIONS
        .iter()
        .map(|m| (i32::try_from(m.version).unwrap(), m.name.to_owned()))
        .collect();
    assert_eq!(applied, expected);
    // The status says the same, and that nothing is pending; one migration removed from the
    // record shows as pending.
    let status = t.store.migrations().await.unwrap().unwrap();
    let listed: Vec<(i64, String)> = status
        .applied
        .iter()
        .map(|m| (m.version, m.name.clone()))
        .collect();
    let known: Vec<(i64, String)> = MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_owned()))
        .collect();
    assert_eq!(listed, known);
    assert!(status.pending.is_empty());
    let last = MIGRATIONS.last().unwrap();
    admin
        .execute(
            &format!(
                "DELETE FROM \"{}\".schema_migrations WHERE version = $1",
                t.schema()
            ),
            &[&i32::try_from(last.version).unwrap()],
        )
        .await
        .unwrap();
    let status = t.store.migrations().await.unwrap().unwrap();
    assert_eq!(status.pending, vec![(last.version, last.name)]);
    assert_eq!(t.store.migrate().await.unwrap(), vec![last.version]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_schema_has_no_migration_status() {
    if common::fresh().await.is_none() {
        return;
    }
    let schema = common::unique_schema();
    let _guard = common::SchemaGuardFor::new(&schema);
    let store = PgStore::connect(&common::url(), PgConfig::with_schema(&schema))
        .await
        .unwrap();
    assert!(store.migrations().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_once() {
    let Some(t) = common::fresh().await else {
        return;
    };
    // A second, empty schema migrated by four stores at once.
    let schema = common::unique_schema();
    let _guard = common::SchemaGuardFor::new(&schema);
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(
            PgStore::connect(&common::url(), PgConfig::with_schema(&schema))
                .await
                .unwrap(),
        );
    }
    let tasks: Vec<_> = stores
        .iter()
        .cloned()
        .map(|s| tokio::spawn(async move { s.migrate().await }))
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap().unwrap().len();
    }
    assert_eq!(
        total,
        MIGRATIONS.len(),
        "each migration was applied exactly once"
    );
    drop(t);
}

#[tokio::test]
async fn bad_settings_are_refused_before_connecting() {
    let e = PgStore::connect(&common::url(), PgConfig::with_schema("Bad-Name"))
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("schema"));
    let e = PgStore::connect(
        "postgres://user:s3cret@127.0.0.1:1/x?sslmode=bogus",
        PgConfig::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.field(), Some("url"));
    assert!(
        !e.to_string().contains("s3cret"),
        "the password never appears: {e}"
    );
    let e = PgStore::connect("postgres://user:s3cret@127.0.0.1:1/x", PgConfig::default())
        .await
        .unwrap_err();
    assert!(
        !e.to_string().contains("s3cret"),
        "the password never appears: {e}"
    );
    assert!(matches!(e, event_store::Error::Backend { .. }), "{e}");
}

/// The indexes of the test's schema, by name.
async fn indexes(schema: &str) -> Vec<String> {
    let admin = common::admin().await;
    admin
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = 'events' ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The subject and time indexes exist only when asked for; migrating creates the ones asked
/// for, on a store that has events, and never drops one; queries answer the same either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_indexes_are_created_when_asked_and_never_dropped() {
    use event_store::{EventStore, ExpectedVersion, NewEvent, Position, Query};
    use futures::StreamExt as _;
    use serde_json::json;

    let Some(t) = common::fresh().await else {
        return;
    };
    let core = [
        "events_id",
        "events_position",
        "events_stream_position",
        "events_stream_version",
        "events_type_position",
    ];
    assert_eq!(
        indexes(t.schema()).await,
        core,
        "by default, the core indexes only"
    );

    let es = EventStore::from_store(t.store.clone());
    for i in 0..20 {
        let e = NewEvent::new("ix", "Seen", json!({"i": i})).with_subject("user", i % 3);
        es.append(&format!("ix-{i}"), ExpectedVersion::NoStream, vec![e])
            .await
            .unwrap();
    }
    let query = Query::all()
        .namespace("ix")
        .subject_eq("user", json!(1))
        .since(chrono::Utc::now() - chrono::Duration::hours(1));
    let read = |es: EventStore<PgStore>| {
        let query = query.clone();
        async move {
            es.read_committed(query, Position::START)
                .map(|e| e.unwrap().data["i"].clone())
                .collect::<Vec<_>>()
                .await
        }
    };
    let without = read(es.clone()).await;
    assert_eq!(without, [1, 4, 7, 10, 13, 16, 19].map(|i| json!(i)));

    let mut config = PgConfig::with_schema(t.schema());
    config.indexes.subject = true;
    let subject = PgStore::connect(&common::url(), config.clone())
        .await
        .unwrap();
    subject.migrate().await.unwrap();
    let mut want: Vec<&str> = core.to_vec();
    want.push("events_subject");
    want.sort_unstable();
    assert_eq!(
        indexes(t.schema()).await,
        want,
        "the subject index, asked for"
    );

    config.indexes = event_store_postgres::Indexes::all();
    let both = PgStore::connect(&common::url(), config).await.unwrap();
    both.migrate().await.unwrap();
    want.push("events_time");
    want.sort_unstable();
    assert_eq!(indexes(t.schema()).await, want, "both, asked for");
    assert_eq!(read(EventStore::from_store(both)).await, without);

    t.store.migrate().await.unwrap();
    assert_eq!(
        indexes(t.schema()).await,
        want,
        "migrating without them drops neither"
    );
}
