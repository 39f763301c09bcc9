//! The log holds only what `append_events` writes, whoever connects and however their session is
//! set up: the table refuses rows validation would refuse and positions set by hand (even from
//! the owner; roles other than the owner cannot insert at all, see `privileges.rs`), the function
//! cannot be redirected by a caller's `search_path`, appends stay correct when the database or
//! role defaults to `repeatable read`, and upgrading moves roles that could insert (the grants
//! of earlier releases) onto the function.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines,
    clippy::format_push_string
)]

mod common;

use common::Schema as _;

use event_store::{EventStore, ExpectedVersion, NewEvent, Store as _};
use event_store_postgres::{MIGRATIONS, PgConfig, PgStore};
use serde_json::json;
use tokio_postgres::error::SqlState;

const APPEND_SQL: &str = "SELECT * FROM {schema}.append_events('s', -1, ARRAY[gen_random_uuid()], \
     ARRAY['ns'], ARRAY['T'], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], ARRAY[now()])";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_refuses_what_validation_refuses_even_from_the_owner() {
    let Some(t) = common::fresh().await else {
        return;
    };
    let schema = t.schema().to_owned();
    let admin = common::admin_in(&schema).await;
    EventStore::from_store(t.store.clone())
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("shop", "Placed", json!({}))],
        )
        .await
        .unwrap();
    let insert = |tx: &str, stream: &str, version: i64, namespace: &str| {
        format!(
            "INSERT INTO events ({}id, stream, version, namespace, event_type, data, context, time) \
             VALUES ({}gen_random_uuid(), '{stream}', {version}, '{namespace}', 'T', '{{}}', '{{}}', now())",
            if tx.is_empty() { "" } else { "tx, " },
            if tx.is_empty() {
                String::new()
            } else {
                format!("{tx}, ")
            },
        )
    };
    for (what, sql) in [
        ("a position set by hand", insert("5", "other", 0, "shop")),
        (
            "a namespace with a space",
            insert("", "x", 0, "bad namespace!"),
        ),
        ("a stream with a space", insert("", "a b", 0, "shop")),
        (
            "a stream with a zero-width space",
            insert("", "order-1\u{200b}", 0, "shop"),
        ),
        ("an empty stream", insert("", "", 0, "shop")),
        (
            "an update",
            "UPDATE events SET data = '{\"x\": 1}'".to_owned(),
        ),
        ("a delete", "DELETE FROM events".to_owned()),
        ("a truncate", "TRUNCATE events".to_owned()),
    ] {
        let e = admin.batch_execute(&sql).await.expect_err(what);
        assert!(
            matches!(
                e.code(),
                Some(
                    &SqlState::CHECK_VIOLATION
                        | &SqlState::INSUFFICIENT_PRIVILEGE
                        | &SqlState::UNTRANSLATABLE_CHARACTER
                )
            ),
            "{what}: {e:?}"
        );
    }
    // What the append function writes passes every rule.
    let n: i64 = admin
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_search_path_cannot_redirect_the_append() {
    let Some(t) = common::fresh().await else {
        return;
    };
    let admin = common::admin().await;
    let schema = t.schema().to_owned();
    let shadow = format!("{schema}_shadow");
    let _guard = common::SchemaGuardFor::new(&shadow);
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{shadow}\";
             CREATE TABLE \"{shadow}\".events (LIKE \"{schema}\".events);
             CREATE TEMP TABLE events (LIKE \"{schema}\".events);
             SET search_path TO \"{shadow}\", \"{schema}\";"
        ))
        .await
        .unwrap();
    admin
        .batch_execute(&APPEND_SQL.replace("{schema}", &format!("\"{schema}\"")))
        .await
        .unwrap();
    let count = |table: String| {
        let admin = &admin;
        async move {
            admin
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        count(format!("\"{shadow}\".events")).await,
        0,
        "not the shadow table"
    );
    assert_eq!(
        count("pg_temp.events".to_owned()).await,
        0,
        "not a temporary table"
    );
    assert_eq!(
        count(format!("\"{schema}\".events")).await,
        1,
        "the store's table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeatable_read_by_default_does_not_break_concurrent_appends() {
    let Some(t) = common::fresh().await else {
        return;
    };
    let admin = common::admin().await;
    let schema = t.schema().to_owned();
    let role = common::RoleGuard::create(&admin, &format!("{schema}_rr")).await;
    admin
        .batch_execute(&format!(
            "ALTER ROLE {} SET default_transaction_isolation = 'repeatable read'; {}",
            role.name,
            role.documented_grants(&schema)
        ))
        .await
        .unwrap();
    let url = role.url();
    let outcome = tokio::spawn(async move {
        let mut config = PgConfig::with_schema(&schema);
        config.pool_size = 8;
        let store = PgStore::connect(&url, config).await.unwrap();
        // 8 writers, 4 shared streams, no expectation: every append must land.
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let es = EventStore::from_store(store.clone());
                tokio::spawn(async move {
                    for i in 0..50 {
                        es.append(
                            &format!("shared-{}", i % 4),
                            ExpectedVersion::Any,
                            vec![NewEvent::new("rr", "E", json!({"w": w, "i": i}))],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("writer {w}, append {i}: {e}"));
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let mut stored = 0;
        for s in 0..4 {
            let id = event_store::StreamId::new(format!("shared-{s}")).unwrap();
            stored += store
                .stream_version(&id)
                .await
                .unwrap()
                .map_or(0, |v| v + 1);
        }
        assert_eq!(stored, 8 * 50, "every append landed, each once");
        event_store_testkit::concurrent_appenders(&store).await;
    })
    .await;
    drop(role);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_moves_roles_that_could_insert_onto_the_function() {
    if common::fresh().await.is_none() {
        return;
    }
    let admin = common::admin().await;
    let schema = common::unique_schema();
    let _guard = common::SchemaGuardFor::new(&schema);
    let guard = common::RoleGuard::create(&admin, &format!("{schema}_old")).await;
    let role = guard.name.clone();
    // The schema as the previous release left it: migrations 1-4, and its documented grants.
    let mut setup = format!(
        "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\";
         CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                         applied_at timestamptz NOT NULL DEFAULT now());"
    );
    for m in MIGRATIONS.iter().filter(|m| m.version <= 4) {
        setup.push_str(m.sql);
        setup.push_str(&format!(
            ";\nINSERT INTO schema_migrations (version, name) VALUES ({}, '{}');\n",
            m.version, m.name
        ));
    }
    setup.push_str(&format!(
        "GRANT USAGE ON SCHEMA \"{schema}\" TO {role};
         GRANT SELECT, INSERT ON events TO {role};
         GRANT SELECT, INSERT, UPDATE ON aggregate_cache, checkpoints TO {role};"
    ));
    admin.batch_execute(&setup).await.unwrap();

    let store = PgStore::connect(&common::url(), PgConfig::with_schema(&schema))
        .await
        .unwrap();
    let newer: Vec<_> = MIGRATIONS
        .iter()
        .map(|m| m.version)
        .filter(|v| *v > 4)
        .collect();
    assert_eq!(
        store.migrate().await.unwrap(),
        newer,
        "the upgrade applies every migration after the fourth"
    );
    let can = |privilege: &str| {
        let admin = &admin;
        let (role, schema) = (role.clone(), schema.clone());
        let privilege = privilege.to_owned();
        async move {
            let sql = if privilege == "EXECUTE" {
                format!(
                    "SELECT has_function_privilege('{role}', '\"{schema}\".append_events(text, bigint, uuid[], text[], text[], jsonb[], jsonb[], timestamptz[])', 'EXECUTE')"
                )
            } else {
                format!(
                    "SELECT has_table_privilege('{role}', '\"{schema}\".events', '{privilege}')"
                )
            };
            admin.query_one(&sql, &[]).await.unwrap().get::<_, bool>(0)
        }
    };
    assert!(!can("INSERT").await, "the old writer lost INSERT");
    assert!(can("SELECT").await, "and kept SELECT");
    assert!(can("EXECUTE").await, "and appends through the function");
    let public: bool = admin
        .query_one(
            &format!(
                "SELECT has_function_privilege('public', '\"{schema}\".append_events(text, bigint, uuid[], text[], text[], jsonb[], jsonb[], timestamptz[])', 'EXECUTE')"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public, "PUBLIC may not append");
    drop(store);
    drop(guard);
}
