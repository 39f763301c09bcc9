//! Opening connections, migrations, and row decoding.

use std::path::Path;

use event_store::{Error, EventContext, Position, RecordedEvent, Result};
use event_store_sql::convert::clamp;
use event_store_sql::{EventRow, Migration, pending};
use rusqlite::{Connection, OpenFlags, Row};

use crate::config::{SqliteConfig, Synchronous};

pub(crate) const BACKEND: &str = "sqlite";

macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../sql/", $file)),
        }
    };
}

/// The migrations, in order. Each is idempotent, and applied versions are recorded in
/// `schema_migrations`.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "events", "001_events.sql"),
    migration!(2, "cache", "002_cache.sql"),
    migration!(3, "checkpoints", "003_checkpoints.sql"),
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
    for m in pending(MIGRATIONS, &applied) {
        tx.execute_batch(m.sql)
            .map_err(|e| sqlite(&format!("migration {} ({})", m.version, m.name), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            rusqlite::params![m.version, m.name],
        )
        .map_err(|e| sqlite("migrate", e))?;
        done.push(m.version);
    }
    tx.commit().map_err(|e| sqlite("migrate", e))?;
    Ok(done)
}

/// An event in the columns of [`COLUMNS`](crate::query::COLUMNS).
pub(crate) fn recorded(row: &Row<'_>) -> Result<RecordedEvent> {
    let id: String = column(row, 1, "id")?;
    let data: String = column(row, 6, "data")?;
    let context: String = column(row, 7, "context")?;
    let bad = |name: &str, e: &dyn std::fmt::Display| {
        Error::backend(BACKEND, format!("reading column `{name}`: {e}"))
    };
    EventRow {
        position: position(column(row, 0, "position")?)?,
        id: id.parse().map_err(|e| bad("id", &e))?,
        stream: column(row, 2, "stream")?,
        version: column(row, 3, "version")?,
        namespace: column(row, 4, "namespace")?,
        event_type: column(row, 5, "event_type")?,
        data: serde_json::from_str(&data).map_err(|e| bad("data", &e))?,
        context: serde_json::from_str::<EventContext>(&context).map_err(|e| bad("context", &e))?,
    }
    .into_recorded(BACKEND)
}

/// Column `index` (named `name` in errors): a type mismatch or an unexpected NULL is an error
/// naming the column, never a panic.
pub(crate) fn column<T: rusqlite::types::FromSql>(
    row: &Row<'_>,
    index: usize,
    name: &str,
) -> Result<T> {
    let value = row
        .get_ref(index)
        .map_err(|e| Error::backend_with(BACKEND, format!("reading column `{name}`: {e}"), e))?;
    T::column_result(value)
        .map_err(|e| Error::backend_with(BACKEND, format!("reading column `{name}`: {e}"), e))
}

/// A log position stored as one integer.
pub(crate) fn position(stored: i64) -> Result<Position> {
    Ok(Position::from_offset(event_store_sql::convert::unsigned(
        BACKEND, "position", stored,
    )?))
}

/// Collects rows decoded by `f`, mapping driver errors with `what`.
pub(crate) fn collect<T>(
    rows: rusqlite::Rows<'_>,
    what: &str,
    f: impl Fn(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut rows = rows;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| sqlite(what, e))? {
        out.push(f(row)?);
    }
    Ok(out)
}

/// A memory position's offset (the high part of a foreign position sorts after every offset).
pub(crate) fn offset(p: Position) -> i64 {
    match p.parts() {
        (0, low) => clamp(low),
        _ => i64::MAX,
    }
}

/// Times as fixed-width RFC 3339 text, so that text order is time order.
pub(crate) fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
