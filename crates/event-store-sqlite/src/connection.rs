//! Opening connections, migrations, and row decoding.

use std::path::Path;

use event_store::{Error, EventContext, Position, RecordedEvent, Result};
use rusqlite::{Connection, OpenFlags, Row};

use crate::config::{SqliteConfig, Synchronous};

pub(crate) const BACKEND: &str = "sqlite";

/// The migrations, in order: `(version, name, sql)`. Each is idempotent, and applied versions
/// are recorded in `schema_migrations`.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "events", include_str!("../sql/001_events.sql")),
    (2, "cache", include_str!("../sql/002_cache.sql")),
    (3, "checkpoints", include_str!("../sql/003_checkpoints.sql")),
];

pub(crate) fn sqlite(what: &str, e: rusqlite::Error) -> Error {
    Error::backend_with(BACKEND, format!("{what}: {e}"), e)
}

pub(crate) fn open(path: &Path, config: &SqliteConfig, write: bool) -> Result<Connection> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| sqlite(&format!("opening {}", path.display()), e))?;
    conn.busy_timeout(config.busy_timeout)
        .map_err(|e| sqlite("setting the busy timeout", e))?;
    let sync = match config.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    if write {
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};"
        ))
        .map_err(|e| sqlite("configuring the database", e))?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Applies the missing migrations in one transaction; returns the versions applied.
pub(crate) fn migrate(conn: &mut Connection) -> Result<Vec<i64>> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sqlite("migrate", e))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         );",
    )
    .map_err(|e| sqlite("migrate", e))?;
    let applied: Vec<i64> = {
        let mut stmt = tx
            .prepare("SELECT version FROM schema_migrations")
            .map_err(|e| sqlite("migrate", e))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| sqlite("migrate", e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| sqlite("migrate", e))?
    };
    let mut done = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| sqlite(&format!("migration {version} ({name})"), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            rusqlite::params![version, name],
        )
        .map_err(|e| sqlite("migrate", e))?;
        done.push(*version);
    }
    tx.commit().map_err(|e| sqlite("migrate", e))?;
    Ok(done)
}

/// Columns: position, id, stream, version, namespace, event_type, data, context.
pub(crate) fn recorded(row: &Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let position: i64 = row.get(0)?;
    let id: String = row.get(1)?;
    let version: i64 = row.get(3)?;
    let data: String = row.get(6)?;
    let context: String = row.get(7)?;
    let bad = |i: usize, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e)
    };
    Ok(RecordedEvent {
        id: id.parse().map_err(|e| bad(1, Box::new(e)))?,
        stream: row.get(2)?,
        version: version.unsigned_abs(),
        position: Position::from_offset(position.unsigned_abs()),
        namespace: row.get(4)?,
        event_type: row.get(5)?,
        data: serde_json::from_str(&data).map_err(|e| bad(6, Box::new(e)))?,
        context: serde_json::from_str::<EventContext>(&context).map_err(|e| bad(7, Box::new(e)))?,
    })
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A memory position's offset (the high part of a foreign position sorts after every offset).
pub(crate) fn offset(p: Position) -> i64 {
    match p.parts() {
        (0, low) => to_i64(low),
        _ => i64::MAX,
    }
}

/// Times as fixed-width RFC 3339 text, so that text order is time order.
pub(crate) fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
