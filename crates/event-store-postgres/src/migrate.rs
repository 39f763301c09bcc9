//! Versioned, idempotent migrations.

use event_store::Result;
use event_store_sql::{Migration, pending};

use crate::config::PgConfig;
use crate::error::{pg, pool_error};
use crate::store::column;

/// The migrations, in order. Each is idempotent, and applied versions are recorded in
/// `schema_migrations`.
pub const MIGRATIONS: &[Migration] = &[
    event_store_sql::migration!(1, "events", "001_events.sql"),
    event_store_sql::migration!(2, "append", "002_append.sql"),
    event_store_sql::migration!(3, "cache", "003_cache.sql"),
    event_store_sql::migration!(4, "checkpoints", "004_checkpoints.sql"),
    event_store_sql::migration!(5, "harden", "005_harden.sql"),
    event_store_sql::migration!(6, "projections", "006_projections.sql"),
    event_store_sql::migration!(7, "cache upcasters", "007_cache_upcasters.sql"),
    event_store_sql::migration!(8, "append many", "008_append_many.sql"),
    event_store_sql::migration!(9, "optional indexes", "009_optional_indexes.sql"),
    event_store_sql::migration!(10, "append many, set-based", "010_append_many_sets.sql"),
    event_store_sql::migration!(11, "subject keys", "011_subject_keys.sql"),
    event_store_sql::migration!(12, "closed streams", "012_closed_streams.sql"),
    event_store_sql::migration!(13, "cache subjects", "013_cache_subjects.sql"),
];

/// The optional indexes' SQL (idempotent), created at every migrate when the config asks.
const SUBJECT_INDEX: &str = include_str!("../sql/indexes/subject.sql");
const TIME_INDEX: &str = include_str!("../sql/indexes/time.sql");

/// Creates the schema, applies the missing migrations and creates the optional indexes the
/// config asks for (never dropping one) in one transaction, under an advisory lock so concurrent
/// callers wait for each other. Returns the versions it applied.
pub(crate) async fn migrate(pool: &deadpool_postgres::Pool, config: &PgConfig) -> Result<Vec<i64>> {
    let mut client = pool.get().await.map_err(|e| pool_error("migrate", e))?;
    let tx = client.transaction().await.map_err(|e| pg("migrate", e))?;
    let schema = config.quoted_schema();
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock(hashtextextended('event_store.migrate', 0));
         CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(|e| pg("migrate", e))?;
    let applied = tx
        .query("SELECT version::bigint FROM schema_migrations", &[])
        .await
        .map_err(|e| pg("migrate", e))?
        .iter()
        .map(|r| column(r, 0, "version"))
        .collect::<Result<Vec<i64>>>()?;
    let mut done = Vec::new();
    for m in pending(MIGRATIONS, &applied) {
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| pg(&format!("migration {} ({})", m.version, m.name), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1::bigint, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(|e| pg("migrate", e))?;
        done.push(m.version);
    }
    for (wanted, sql, name) in [
        (config.indexes.subject, SUBJECT_INDEX, "the subject index"),
        (config.indexes.time, TIME_INDEX, "the time index"),
    ] {
        if wanted {
            tx.batch_execute(sql)
                .await
                .map_err(|e| pg(&format!("creating {name}"), e))?;
        }
    }
    tx.commit().await.map_err(|e| pg("migrate", e))?;
    if !done.is_empty() {
        tracing::info!(schema = %config.schema, versions = ?done, "migrated");
    }
    Ok(done)
}
