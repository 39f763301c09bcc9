//! The event log on SQLite.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use event_store::{
    AppendBatch, Appended, CheckedQuery, CheckpointName, Checkpoints, Direction, Error, Position,
    RecordedEvent, Result, Store, StoreStats, StreamId, TypeCount,
};
use event_store_sql::compile;
use event_store_sql::convert::{clamp, limit, unsigned};
use rusqlite::Connection;
use tokio::sync::watch;

use crate::config::SqliteConfig;
use crate::connection::{BACKEND, collect, column, offset, open, position, recorded, sqlite};
use crate::query::{Sqlite, to_sql};
use crate::writer::{Job, Writer};

const READ_ALL: &str = include_str!("../sql/queries/read_all.sql");
const READ_ALL_BACKWARD: &str = include_str!("../sql/queries/read_all_backward.sql");
const READ_FORWARD: &str = include_str!("../sql/queries/read_stream_forward.sql");
const READ_BACKWARD: &str = include_str!("../sql/queries/read_stream_backward.sql");
const WATERMARK: &str = include_str!("../sql/queries/watermark.sql");
const STATS_COUNTS: &str = include_str!("../sql/queries/stats_counts.sql");
const STATS_TYPES: &str = include_str!("../sql/queries/stats_types.sql");

pub(crate) struct Inner {
    path: PathBuf,
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
    /// Must be called inside a Tokio runtime.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteConfig::default()).await
    }

    /// [`SqliteStore::open`] with settings.
    pub async fn open_with(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let (conn, path) = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || open(&path, &config, true).map(|c| (c, path)))
                .await
                .map_err(|e| Error::backend_with(BACKEND, "opening the database", e))??
        };
        let changes = Arc::new(watch::Sender::new(0u64));
        let writer = Writer::start(conn, config.group_commit, Arc::clone(&changes))?;
        let store = Self {
            inner: Arc::new(Inner {
                path,
                config,
                writer,
                readers: Mutex::new(Vec::new()),
                changes,
            }),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies missing migrations (idempotent; [`SqliteStore::open`] already does). Returns the
    /// versions applied.
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        self.inner.writer.call(Job::Migrate).await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
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
                None => open(&inner.path, &inner.config, false)?,
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

    async fn rows(
        &self,
        what: &'static str,
        sql: &'static str,
        params: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<RecordedEvent>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql).map_err(|e| sqlite(what, e))?;
            let rows = stmt
                .query(rusqlite::params_from_iter(params))
                .map_err(|e| sqlite(what, e))?;
            collect(rows, what, recorded)
        })
        .await
    }
}

fn int(v: i64) -> rusqlite::types::Value {
    rusqlite::types::Value::Integer(v)
}

fn text(v: &str) -> rusqlite::types::Value {
    rusqlite::types::Value::Text(v.to_owned())
}

/// A position stored as `high`, `low` in columns `index` and `index + 1`.
fn position_at(row: &rusqlite::Row<'_>, index: usize) -> Result<Position> {
    event_store_sql::convert::position(
        BACKEND,
        ("high", column(row, index, "high")?),
        ("low", column(row, index + 1, "low")?),
    )
}

impl Checkpoints for SqliteStore {
    async fn load_checkpoint(&self, name: &CheckpointName) -> Result<Option<Position>> {
        let name = name.as_str().to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT high, low FROM checkpoints WHERE name = ?1")
                .map_err(|e| sqlite("load checkpoint", e))?;
            let rows = stmt
                .query([name])
                .map_err(|e| sqlite("load checkpoint", e))?;
            Ok(collect(rows, "load checkpoint", |r| position_at(r, 0))?
                .into_iter()
                .next())
        })
        .await
    }

    async fn save_checkpoint(&self, name: &CheckpointName, at: Position) -> Result<()> {
        let name = name.as_str().to_owned();
        self.inner
            .writer
            .call(|reply| Job::Checkpoint(name, at, reply))
            .await
    }

    async fn checkpoints(&self) -> Result<Vec<(CheckpointName, Position)>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name, high, low FROM checkpoints ORDER BY name")
                .map_err(|e| sqlite("list checkpoints", e))?;
            let rows = stmt.query([]).map_err(|e| sqlite("list checkpoints", e))?;
            collect(rows, "list checkpoints", |r| {
                let name = CheckpointName::new(column::<String>(r, 0, "name")?)?;
                Ok((name, position_at(r, 1)?))
            })
        })
        .await
    }
}

impl Store for SqliteStore {
    async fn append(&self, batch: AppendBatch) -> Result<Appended> {
        self.inner
            .writer
            .call(|reply| Job::Append(batch, reply))
            .await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let sql = match direction {
            Direction::Forward => READ_FORWARD,
            Direction::Backward => READ_BACKWARD,
        };
        self.rows(
            "read stream",
            sql,
            vec![text(stream.as_str()), int(clamp(from)), int(limit(n))],
        )
        .await
    }

    async fn read_all(&self, after: Position, n: usize) -> Result<Vec<RecordedEvent>> {
        self.rows(
            "read all",
            READ_ALL,
            vec![int(offset(after)), int(limit(n))],
        )
        .await
    }

    async fn read_all_backward(
        &self,
        before: Option<Position>,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let before = before.map_or(i64::MAX, offset);
        self.rows(
            "read all backward",
            READ_ALL_BACKWARD,
            vec![int(before), int(limit(n))],
        )
        .await
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.read(|conn| {
            let mut stmt = conn.prepare(STATS_COUNTS).map_err(|e| sqlite("stats", e))?;
            let rows = stmt.query([]).map_err(|e| sqlite("stats", e))?;
            let counts = collect(rows, "stats", |r| {
                let count = |i: usize, name: &str| -> Result<u64> {
                    unsigned(BACKEND, name, column(r, i, name)?)
                };
                let head = column::<Option<i64>>(r, 2, "head")?
                    .map(position)
                    .transpose()?;
                Ok((
                    count(0, "events")?,
                    count(1, "streams")?,
                    head,
                    count(3, "size")?,
                ))
            })?;
            let (events, streams, head, size) = counts
                .into_iter()
                .next()
                .ok_or_else(|| Error::backend(BACKEND, "the stats query returned no row"))?;
            let mut stmt = conn.prepare(STATS_TYPES).map_err(|e| sqlite("stats", e))?;
            let rows = stmt.query([]).map_err(|e| sqlite("stats", e))?;
            let types = collect(rows, "stats", |r| {
                Ok(TypeCount {
                    namespace: column(r, 0, "namespace")?,
                    event_type: column(r, 1, "event_type")?,
                    events: unsigned(BACKEND, "count", column(r, 2, "count")?)?,
                })
            })?;
            Ok(StoreStats {
                events,
                streams,
                types,
                size_bytes: Some(size),
                head,
            })
        })
        .await
    }

    async fn read_query(
        &self,
        query: &CheckedQuery,
        after: Position,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let query = query.clone();
        self.read(move |conn| {
            let mut out = Vec::new();
            let mut cursor = after;
            // With field filters left to Rust, candidates are read in chunks until `n` match.
            let probe = compile::<Sqlite>(&query, cursor, n);
            let chunk = if probe.filter_rows { n.max(256) } else { n };
            loop {
                let compiled = compile::<Sqlite>(&query, cursor, chunk);
                let mut stmt = conn
                    .prepare_cached(&compiled.sql)
                    .map_err(|e| sqlite("read query", e))?;
                let params: Vec<_> = compiled.params.iter().map(to_sql).collect();
                let rows = stmt
                    .query(rusqlite::params_from_iter(params))
                    .map_err(|e| sqlite("read query", e))?;
                let rows = collect(rows, "read query", recorded)?;
                let exhausted = rows.len() < chunk;
                if let Some(last) = rows.last() {
                    cursor = last.position;
                }
                for e in rows {
                    if out.len() < n && (!compiled.filter_rows || query.matches(&e)) {
                        out.push(e);
                    }
                }
                if exhausted || out.len() >= n {
                    return Ok(out);
                }
            }
        })
        .await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>> {
        let stream = stream.as_str().to_owned();
        self.read(move |conn| crate::writer::stream_version(conn, &stream))
            .await
    }

    async fn watermark(&self) -> Result<Position> {
        self.read(|conn| {
            let w: i64 = conn
                .query_row(WATERMARK, [], |r| r.get(0))
                .map_err(|e| sqlite("watermark", e))?;
            position(w)
        })
        .await
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}
