//! Opening connections, migrations, and row decoding.

use std::path::Path;

use event_store::{Error, EventContext, Position, Result};
use event_store_sql::{Migration, SqlRow, pending};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::config::{OpenMode, SqliteConfig, Synchronous};

pub(crate) const BACKEND: &str = "sqlite";

/// The migrations, in order. Each is idempotent, and applied versions are recorded in
/// `schema_migrations`.
pub const MIGRATIONS: &[Migration] = &[
    event_store_sql::migration!(1, "events", "001_events.sql"),
    event_store_sql::migration!(2, "cache", "002_cache.sql"),
    event_store_sql::migration!(3, "checkpoints", "003_checkpoints.sql"),
    event_store_sql::migration!(4, "harden", "004_harden.sql"),
    event_store_sql::migration!(5, "projections", "005_projections.sql"),
    event_store_sql::migration!(6, "cache upcasters", "006_cache_upcasters.sql"),
    event_store_sql::migration!(7, "drop the time index", "007_drop_time_index.sql"),
    event_store_sql::migration!(8, "subject keys", "008_subject_keys.sql"),
    event_store_sql::migration!(9, "closed streams", "009_closed_streams.sql"),
    event_store_sql::migration!(10, "cache subjects", "010_cache_subjects.sql"),
];

pub(crate) fn sqlite(what: &str, e: rusqlite::Error) -> Error {
    Error::backend_with(BACKEND, format!("{what}: {e}"), e)
}

pub(crate) fn open(path: &Path, config: &SqliteConfig, write: bool) -> Result<Connection> {
    let conn = connect(path, config, write)?;
    if write {
        configure_writer(&conn, config)?;
    }
    Ok(conn)
}

/// A connection, not configured for writing yet (nothing written to the file).
pub(crate) fn connect(path: &Path, config: &SqliteConfig, write: bool) -> Result<Connection> {
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
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The write connection's settings: WAL (which writes the file's header), durability, and
/// sub-journals in memory.
pub(crate) fn configure_writer(conn: &Connection, config: &SqliteConfig) -> Result<()> {
    let sync = match config.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    // Every write runs in a savepoint of its own (writer.rs): with the default temp_store,
    // each page it changes is first copied to a sub-journal file. In memory, that copy is
    // cheap (it holds the pages of one write at most; measured: a projection's catch-up
    // over 100 000 events went from about 101 000 to 127 000 events/s, 100-event appends
    // from about 34 000 to 39 000).
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA temp_store = MEMORY;"
    ))
    .map_err(|e| sqlite("configuring the database", e))
}

/// Checks, before SQLite sees it, that `path` can be what `mode` needs: never a directory; an
/// existing file unless the store may create it (in a directory that exists); a file this
/// process can read. Each failure is [`Error::InvalidInput`] on `path`, naming the path once.
pub(crate) fn check_path(path: &Path, mode: OpenMode) -> Result<()> {
    let shown = path.display();
    let invalid = |reason: String| Err(Error::invalid("path", reason));
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => invalid(format!("{shown} is a directory, not a SQLite file")),
        Ok(_) => match std::fs::File::open(path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                invalid(format!("cannot read {shown}: permission denied"))
            }
            Err(e) => invalid(format!("cannot read {shown}: {e}")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match mode {
            OpenMode::Create => match path.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(dir) if !dir.is_dir() => invalid(format!(
                    "cannot create {shown}: the directory {} does not exist",
                    dir.display()
                )),
                _ => Ok(()),
            },
            OpenMode::Existing | OpenMode::ReadOnly => {
                invalid(format!("no event store at {shown}"))
            }
        },
        Err(e) => invalid(format!("cannot read {shown}: {e}")),
    }
}

/// Checks that the database holds an event store (its `events` and `schema_migrations` tables);
/// with `current`, at this release's schema, neither older nor newer. Returns the schema
/// version.
pub(crate) fn require_store(conn: &Connection, path: &Path, current: bool) -> Result<i64> {
    let shown = path.display();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
             AND name IN ('events', 'schema_migrations')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => {
                Error::invalid("path", format!("{shown} is not a SQLite database"))
            }
            _ => sqlite(&format!("reading {shown}"), e),
        })?;
    if tables < 2 {
        return Err(Error::invalid(
            "path",
            format!("{shown} is a SQLite database without the event store's tables"),
        ));
    }
    let version: i64 = conn
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(|e| sqlite(&format!("reading {shown}"), e))?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if current && version < known {
        return Err(Error::invalid(
            "path",
            format!(
                "the event store at {shown} is at schema {version} and this release reads schema \
                 {known}: migrate it first (open it for writing, e.g. `event-store init`)"
            ),
        ));
    }
    if version > known {
        return Err(Error::invalid(
            "path",
            format!(
                "the event store at {shown} is at schema {version}, newer than this release \
                 knows ({known}): use a newer release"
            ),
        ));
    }
    Ok(version)
}

/// Opens `path` for reading only and checks it holds a current event store; returns where the
/// readers open it: the path, or, when SQLite cannot open the write-ahead log's index beside it
/// (a directory this process may not write) and no log is there, the file as immutable.
pub(crate) fn open_read_only(path: &Path, config: &SqliteConfig) -> Result<std::path::PathBuf> {
    let first = open(path, config, false).and_then(|c| require_store(&c, path, true));
    match first {
        Ok(_) => Ok(path.to_path_buf()),
        Err(Error::InvalidInput { field, reason }) => Err(Error::InvalidInput { field, reason }),
        Err(e) => {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            if Path::new(&wal).exists() {
                return Err(e);
            }
            let Some(uri) = immutable_uri(path) else {
                return Err(e);
            };
            let conn = open(&uri, config, false).map_err(|_| e)?;
            require_store(&conn, path, true)?;
            Ok(uri)
        }
    }
}

/// `file:PATH?immutable=1`, the path percent-encoded where a URI needs it.
fn immutable_uri(path: &Path) -> Option<std::path::PathBuf> {
    let text = path.to_str()?;
    let mut uri = String::from("file:");
    for c in text.chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Some(uri.into())
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

/// A row as the generic code reads it.
pub(crate) struct SqliteRow<'a, 'r>(pub(crate) &'a rusqlite::Row<'r>);

impl SqliteRow<'_, '_> {
    fn value(&self, index: usize, name: &str) -> Result<rusqlite::types::ValueRef<'_>> {
        self.0
            .get_ref(index)
            .map_err(|e| Error::backend_with(BACKEND, format!("reading column `{name}`: {e}"), e))
    }

    fn mismatch(name: &str, e: impl std::fmt::Display) -> Error {
        Error::backend(BACKEND, format!("reading column `{name}`: {e}"))
    }

    fn json_text<T: serde::de::DeserializeOwned>(
        &self,
        index: usize,
        name: &str,
    ) -> Result<Option<T>> {
        match self.value(index, name)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => serde_json::from_slice(t)
                .map(Some)
                .map_err(|e| Self::mismatch(name, e)),
            other => Err(Self::mismatch(
                name,
                format!("{:?} is not JSON text", other.data_type()),
            )),
        }
    }
}

impl SqlRow for SqliteRow<'_, '_> {
    fn int(&self, index: usize, name: &str) -> Result<Option<i64>> {
        match self.value(index, name)? {
            ValueRef::Null => Ok(None),
            v => v.as_i64().map(Some).map_err(|e| Self::mismatch(name, e)),
        }
    }
    fn text(&self, index: usize, name: &str) -> Result<Option<String>> {
        match self.value(index, name)? {
            ValueRef::Null => Ok(None),
            v => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .map_err(|e| Self::mismatch(name, e)),
        }
    }
    fn json(&self, index: usize, name: &str) -> Result<Option<serde_json::Value>> {
        self.json_text(index, name)
    }
    fn context(&self, index: usize, name: &str) -> Result<EventContext> {
        self.json_text(index, name)?
            .ok_or_else(|| Self::mismatch(name, "NULL"))
    }
    fn uuid(&self, index: usize, name: &str) -> Result<uuid::Uuid> {
        let text = self
            .text(index, name)?
            .ok_or_else(|| Self::mismatch(name, "NULL"))?;
        text.parse().map_err(|e| Self::mismatch(name, e))
    }
}

/// A log position stored as one integer.
pub(crate) fn position(stored: i64) -> Result<Position> {
    Ok(Position::from_offset(event_store_sql::convert::unsigned(
        BACKEND, "position", stored,
    )?))
}
