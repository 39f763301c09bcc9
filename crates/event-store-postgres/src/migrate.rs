//! Versioned, idempotent migrations.

use event_store::Result;

use crate::config::PgConfig;
use crate::error::{pg, pool_error};

/// The migrations, in order: `(version, name, sql)`. Each is idempotent, and applied versions
/// are recorded in `schema_migrations`.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "events", include_str!("../sql/001_events.sql")),
    (2, "append", include_str!("../sql/002_append.sql")),
    (3, "cache", include_str!("../sql/003_cache.sql")),
    (4, "checkpoints", include_str!("../sql/004_checkpoints.sql")),
    (5, "harden", include_str!("../sql/005_harden.sql")),
];

/// Creates the schema and applies the missing migrations in one transaction, under an advisory
/// lock so concurrent callers wait for each other. Returns the versions it applied.
pub(crate) async fn migrate(pool: &deadpool_postgres::Pool, config: &PgConfig) -> Result<Vec<i32>> {
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
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(|e| pg("migrate", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut done = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| pg(&format!("migration {version} ({name})"), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(|e| pg("migrate", e))?;
        done.push(*version);
    }
    tx.commit().await.map_err(|e| pg("migrate", e))?;
    if !done.is_empty() {
        tracing::info!(schema = %config.schema, versions = ?done, "migrated");
    }
    Ok(done)
}
