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
