//! The event log on SQLite.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use event_store::{AppendBatch, Appended, Error, MultiAppend, Result};
use event_store_sql::dialects::Sqlite;
use event_store_sql::{Decode, Driver, Queries, Statement};
use rusqlite::Connection;
use tokio::sync::watch;

use crate::config::{OpenMode, SqliteConfig};
use crate::connection::{
    BACKEND, MIGRATIONS, SqliteRow, check_path, configure_writer, connect, open, open_read_only,
    require_store, sqlite,
};
use crate::query::to_sql;
use crate::writer::{Job, Keep, Writer, execute, work};
use event_store_sql::{AppliedMigration, MigrationStatus};

pub(crate) struct Inner {
    path: PathBuf,
    /// Where read connections open the file: the path, or an immutable URI (read-only mode).
    read_target: PathBuf,
    config: SqliteConfig,
    pub(crate) writer: Writer,
    readers: Mutex<Vec<Connection>>,
    changes: Arc<watch::Sender<u64>>,
}

/// The event store in one SQLite file: the embedded default. Cheap to clone (clones share the
/// connections).
///
/// One writer thread commits appends (several queued ones per transaction); reads run on their
/// own connections on Tokio's blocking pool. WAL mode lets them proceed while the writer writes.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies missing migrations.
    /// Must be called inside a Tokio runtime. [`SqliteStore::open_with`] with
    /// [`OpenMode::Existing`](crate::OpenMode) or [`OpenMode::ReadOnly`](crate::OpenMode)
    /// opens only a file that holds a store already.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteConfig::default()).await
    }

    /// [`SqliteStore::open`] with settings. A path that cannot be what
    /// [`SqliteConfig::mode`] needs (a directory, a missing file or directory, a file that is
    /// not a store, one this process cannot read) is [`Error::InvalidInput`] on `path`, and
    /// nothing is created or changed.
    pub async fn open_with(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let (conn, read_target, path) = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || {
                check_path(&path, config.mode)?;
                match config.mode {
                    OpenMode::Create => {
                        let conn = open(&path, &config, true)?;
                        Ok((Some(conn), path.clone(), path))
                    }
                    OpenMode::Existing => {
                        // Checked before the file is configured (WAL writes its header).
                        let conn = connect(&path, &config, true)?;
                        require_store(&conn, &path, false)?;
                        configure_writer(&conn, &config)?;
                        Ok((Some(conn), path.clone(), path))
                    }
                    OpenMode::ReadOnly => {
                        let target = open_read_only(&path, &config)?;
                        Ok((None, target, path))
                    }
                }
            })
            .await
            .map_err(|e| Error::backend_with(BACKEND, "opening the database", e))??
        };
        let changes = Arc::new(watch::Sender::new(0u64));
        let migrate = conn.is_some();
        let writer = match conn {
            Some(conn) => Writer::start(conn, config.group_commit, Arc::clone(&changes))?,
            None => Writer::read_only(),
        };
        let store = Self {
            inner: Arc::new(Inner {
                path,
                read_target,
                config,
                writer,
                readers: Mutex::new(Vec::new()),
                changes,
            }),
        };
        if migrate {
            store.migrate().await?;
        }
        tracing::debug!(
            path = %store.inner.path.display(),
            mode = ?store.inner.config.mode,
            reads = %store.inner.read_target.display(),
            "opened the SQLite store"
        );
        Ok(store)
    }

    /// Whether the store was opened with [`OpenMode::ReadOnly`]: every write fails.
    pub fn is_read_only(&self) -> bool {
        self.inner.writer.is_read_only()
    }

    /// The migrations applied to the file, in order, with when each was applied, and this
    /// release's migrations not applied yet.
    pub async fn migrations(&self) -> Result<MigrationStatus> {
        self.read(migration_status).await
    }

    /// [`SqliteStore::migrations`] of the store at `path`, read without changing the file, at
    /// any schema version (a store that [`SqliteStore::open`] would migrate, too).
    pub async fn inspect_migrations(path: impl AsRef<Path>) -> Result<MigrationStatus> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || {
            check_path(&path, OpenMode::ReadOnly)?;
            let conn = open(&path, &SqliteConfig::default(), false)?;
            require_store(&conn, &path, false)?;
            migration_status(&conn)
        })
        .await
        .map_err(|e| Error::backend_with(BACKEND, "reading the migrations", e))?
    }

    /// Applies missing migrations (idempotent; [`SqliteStore::open`] already does). Returns the
    /// versions applied. Fails on a store opened read-only.
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        let applied = self.inner.writer.call(Job::Migrate).await?;
        tracing::debug!(path = %self.inner.path.display(), ?applied, "migrated");
        Ok(applied)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the write connection, in the writer's transaction (in a savepoint of its own:
    /// kept or rolled back as `f` says, rolled back when it fails or panics); returns its value
    /// once the transaction committed.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<Keep<T>> + Send + 'static,
    ) -> Result<T> {
        self.inner
            .writer
            .call(|reply| Job::Run(work(f, reply)))
            .await
    }

    /// Runs `f` on a read connection, on the blocking pool.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => open(&inner.read_target, &inner.config, false)?,
            };
            let result = f(&conn);
            let mut readers = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if readers.len() < inner.config.readers {
                readers.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::backend_with(BACKEND, "a read task failed", e))?
    }
}

/// The applied and pending migrations, read on `conn`.
fn migration_status(conn: &Connection) -> Result<MigrationStatus> {
    let mut stmt = conn
        .prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        .map_err(|e| sqlite("reading the migrations", e))?;
    let rows: Vec<(i64, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(Iterator::collect)
        .map_err(|e| sqlite("reading the migrations", e))?;
    let mut applied = Vec::with_capacity(rows.len());
    for (version, name, at) in rows {
        let applied_at = chrono::DateTime::parse_from_rfc3339(&at)
            .map_err(|e| {
                Error::backend_with(
                    BACKEND,
                    format!("migration {version} has an unreadable time `{at}`"),
                    e,
                )
            })?
            .to_utc();
        applied.push(AppliedMigration {
            version,
            name,
            applied_at,
        });
    }
    Ok(MigrationStatus::new(MIGRATIONS, applied))
}

impl Driver for SqliteStore {
    const BACKEND: &'static str = BACKEND;
    const QUERIES: Queries = event_store_sql::queries!();
    type Dialect = Sqlite;

    async fn query<T: Send + 'static>(&self, s: Statement, decode: Decode<T>) -> Result<Vec<T>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&s.sql).map_err(|e| sqlite(s.what, e))?;
            let values: Vec<_> = s.params.iter().map(to_sql).collect();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(values))
                .map_err(|e| sqlite(s.what, e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sqlite(s.what, e))? {
                out.push(decode(&SqliteRow(row))?);
            }
            Ok(out)
        })
        .await
    }

    async fn execute(&self, s: Statement) -> Result<u64> {
        self.inner.writer.call(|reply| Job::Execute(s, reply)).await
    }

    async fn transaction(&self, statements: Vec<Statement>) -> Result<bool> {
        self.write(move |conn| {
            for s in &statements {
                if execute(conn, s)? == 0 && s.guard {
                    return Ok(Keep::Rollback(false));
                }
            }
            Ok(Keep::Commit(true))
        })
        .await
    }

    async fn append(&self, batch: AppendBatch) -> Result<Appended> {
        self.inner
            .writer
            .call(|reply| Job::Append(batch, reply))
            .await
    }

    async fn append_many(&self, batches: MultiAppend) -> Result<Vec<Appended>> {
        self.inner
            .writer
            .call(|reply| Job::AppendMany(batches, reply))
            .await
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

impl event_store_sql::projection::ProjectionDriver for SqliteStore {
    const PROJECTION_QUERIES: event_store_sql::projection::ProjectionQueries =
        event_store_sql::projection_queries!();
    type Lease = crate::lease::SqliteLease;

    async fn try_lease(
        &self,
        key: &event_store::projection::LeaseKey,
    ) -> Result<Option<crate::lease::SqliteLease>> {
        let (path, key) = (self.inner.path.clone(), key.clone());
        tokio::task::spawn_blocking(move || crate::lease::try_lease(&path, &key))
            .await
            .map_err(|e| Error::backend_with(BACKEND, "a lease task failed", e))?
    }

    async fn is_leased(&self, key: &event_store::projection::LeaseKey) -> Result<bool> {
        let (path, key) = (self.inner.path.clone(), key.clone());
        tokio::task::spawn_blocking(move || crate::lease::is_leased(&path, &key))
            .await
            .map_err(|e| Error::backend_with(BACKEND, "a lease task failed", e))?
    }
}

event_store_sql::impl_store!(SqliteStore);
event_store_sql::impl_projection_store!(SqliteStore);
