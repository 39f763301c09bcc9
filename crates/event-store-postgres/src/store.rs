//! The event log on PostgreSQL.

use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use event_store::{
    AppendBatch, Appended, CheckedQuery, CheckpointName, Checkpoints, Direction, Error,
    EventContext, ExpectedVersion, Position, RecordedEvent, Result, Store, StoreStats, StreamId,
    TypeCount,
};
use event_store_sql::convert::{clamp, limit, position_parts, unsigned};
use event_store_sql::{EventRow, compile};
use tokio::sync::{Notify, watch};
use tokio_postgres::types::{FromSql, Json};
use tokio_postgres::{NoTls, Row};

use crate::config::PgConfig;
use crate::error::{self, BACKEND, pg, pool_error};
use crate::query::{COLUMNS, Postgres, as_sql};
use crate::tls::Connector;

const APPEND: &str = include_str!("../sql/queries/append.sql");
const READ_ALL: &str = include_str!("../sql/queries/read_all.sql");
const READ_FORWARD: &str = include_str!("../sql/queries/read_stream_forward.sql");
const READ_BACKWARD: &str = include_str!("../sql/queries/read_stream_backward.sql");
const STREAM_VERSION: &str = include_str!("../sql/queries/stream_version.sql");
const WATERMARK: &str = include_str!("../sql/queries/watermark.sql");
const READ_ALL_BACKWARD: &str = include_str!("../sql/queries/read_all_backward.sql");
const STATS_COUNTS: &str = include_str!("../sql/queries/stats_counts.sql");
const STATS_TYPES: &str = include_str!("../sql/queries/stats_types.sql");

struct Inner {
    pool: Pool,
    config: PgConfig,
    changes: Arc<watch::Sender<u64>>,
    listener: Option<tokio::task::JoinHandle<()>>,
    notifier: Option<(Arc<Notify>, tokio::task::JoinHandle<()>)>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        if let Some((_, n)) = self.notifier.take() {
            n.abort();
        }
    }
}

/// The event store on PostgreSQL. Cheap to clone (clones share the pool).
///
/// See the [crate docs](crate) for the schema and the guarantees.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.config.schema)
            .field("pool", &self.inner.pool.status())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?…`) with `config`. The
    /// connection is checked once; call [`PgStore::migrate`] to create or update the schema.
    /// Must be called inside a Tokio runtime.
    pub async fn connect(url: &str, config: PgConfig) -> Result<Self> {
        config.validate()?;
        let mut pg_config = tokio_postgres::Config::from_str(url).map_err(|e| {
            // The driver's parse errors never echo the URL (which may hold a password).
            Error::invalid("url", format!("not a PostgreSQL connection string: {e}"))
        })?;
        pg_config
            .application_name(&config.application_name)
            .connect_timeout(config.connect_timeout)
            // The schema first and temporary tables never (they cannot shadow the store's), and
            // the isolation the append needs (its stream lock must be taken before its snapshot),
            // whatever the database's or the role's defaults.
            .options(format!(
                "-c search_path={},pg_temp -c default_transaction_isolation=read\\ committed",
                config.quoted_schema()
            ));
        let connector = crate::tls::connector(&config.tls, &mut pg_config)?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &connector {
            Connector::Plain => Manager::from_config(pg_config.clone(), NoTls, manager_config),
            Connector::Tls(tls) => {
                Manager::from_config(pg_config.clone(), tls.clone(), manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| Error::backend_with(BACKEND, format!("building the pool: {e}"), e))?;
        // Fail early on an unreachable server or bad credentials.
        drop(pool.get().await.map_err(|e| pool_error("connect", e))?);
        let changes = Arc::new(watch::Sender::new(0u64));
        let listener = config.listen.then(|| {
            tokio::spawn(crate::listen::run(
                pg_config,
                connector,
                config.channel(),
                Arc::clone(&changes),
            ))
        });
        let notifier = config.notify.then(|| {
            let wake = Arc::new(Notify::new());
            let task = tokio::spawn(crate::listen::notify(
                pool.clone(),
                config.channel(),
                Arc::clone(&wake),
            ));
            (wake, task)
        });
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                config,
                changes,
                listener,
                notifier,
            }),
        })
    }

    /// Creates the schema and applies missing migrations (idempotent; concurrent callers wait
    /// for each other). Returns the versions it applied.
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        crate::migrate::migrate(&self.inner.pool, &self.inner.config).await
    }

    /// The latest migration applied to the schema (`None`: the schema holds no event store yet;
    /// run [`PgStore::migrate`]).
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        let client = self.client("schema version").await?;
        let row = client
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .await
            .map_err(|e| pg("schema version", e))?;
        if !column::<bool>(&row, 0, "exists")? {
            return Ok(None);
        }
        let row = client
            .query_one("SELECT max(version)::bigint FROM schema_migrations", &[])
            .await
            .map_err(|e| pg("schema version", e))?;
        column(&row, 0, "version")
    }

    /// The connection pool (its connections use the store's schema as `search_path`).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The settings.
    pub fn config(&self) -> &PgConfig {
        &self.inner.config
    }

    /// The plan PostgreSQL chooses for reading `query` (after `after`, a page at a time), as
    /// `EXPLAIN (FORMAT JSON)` output: to check that a query is served by an index.
    pub async fn explain(
        &self,
        query: &CheckedQuery,
        after: Position,
    ) -> Result<serde_json::Value> {
        let compiled = compile::<Postgres>(query, after, event_store::PAGE_SIZE);
        let refs: Vec<_> = compiled.params.iter().map(as_sql).collect();
        let sql = format!("EXPLAIN (FORMAT JSON) {}", compiled.sql);
        let rows = self.rows("explain", &sql, &refs).await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::backend(BACKEND, "EXPLAIN returned no row"))?;
        column(row, 0, "QUERY PLAN")
    }

    pub(crate) async fn client(&self, what: &str) -> Result<deadpool_postgres::Object> {
        self.inner.pool.get().await.map_err(|e| pool_error(what, e))
    }

    async fn rows(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let client = self.client(what).await?;
        let stmt = client.prepare_cached(sql).await.map_err(|e| pg(what, e))?;
        client.query(&stmt, params).await.map_err(|e| pg(what, e))
    }
}

/// How many times an append that raced (a serialization failure, a deadlock, a version taken
/// under a stale snapshot) is tried before it is reported as a conflict.
const APPEND_ATTEMPTS: u32 = 5;

fn expected_code(e: ExpectedVersion) -> i64 {
    match e {
        ExpectedVersion::Any => -1,
        ExpectedVersion::NoStream => -2,
        ExpectedVersion::StreamExists => -3,
        ExpectedVersion::Exact(v) => clamp(v),
    }
}

impl PgStore {
    /// The error for a batch one of whose ids another append stored meanwhile: which id, looked
    /// up, as [`Error::DuplicateId`].
    async fn clash(&self, ids: &[uuid::Uuid], cause: tokio_postgres::Error) -> Error {
        let found = self
            .rows(
                "append",
                "SELECT id FROM events WHERE id = ANY($1) LIMIT 1",
                &[&ids],
            )
            .await
            .and_then(|rows| rows.first().map(|r| column(r, 0, "id")).transpose());
        match found {
            Ok(Some(id)) => Error::DuplicateId { id },
            Ok(None) | Err(_) => pg("append", cause),
        }
    }
}

/// Column `index` (named `name` in errors) of a row: a type mismatch or a NULL where none is
/// expected is an error naming the column, never a panic.
pub(crate) fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize, name: &str) -> Result<T> {
    row.try_get(index)
        .map_err(|e| Error::backend_with(BACKEND, format!("reading column `{name}`: {e}"), e))
}

/// The position in columns `index` (`tx`) and `index + 1` (`seq`).
pub(crate) fn position_at(row: &Row, index: usize) -> Result<Position> {
    event_store_sql::convert::position(
        BACKEND,
        ("tx", column(row, index, "tx")?),
        ("seq", column(row, index + 1, "seq")?),
    )
}

/// An event in the columns of [`COLUMNS`].
fn recorded(row: &Row) -> Result<RecordedEvent> {
    // Straight from the column's bytes into the context, with no JSON tree in between.
    let Json(context): Json<EventContext> = column(row, 8, "context")?;
    EventRow {
        position: position_at(row, 0)?,
        id: column(row, 2, "id")?,
        stream: column(row, 3, "stream")?,
        version: column(row, 4, "version")?,
        namespace: column(row, 5, "namespace")?,
        event_type: column(row, 6, "event_type")?,
        data: column(row, 7, "data")?,
        context,
    }
    .into_recorded(BACKEND)
}

fn all(rows: &[Row]) -> Result<Vec<RecordedEvent>> {
    rows.iter().map(recorded).collect()
}

const CHECKPOINT_LOAD: &str = include_str!("../sql/queries/checkpoint_load.sql");
const CHECKPOINT_SAVE: &str = include_str!("../sql/queries/checkpoint_save.sql");
const CHECKPOINT_LIST: &str = include_str!("../sql/queries/checkpoint_list.sql");

impl Checkpoints for PgStore {
    async fn load_checkpoint(&self, name: &CheckpointName) -> Result<Option<Position>> {
        let rows = self
            .rows("load checkpoint", CHECKPOINT_LOAD, &[&name.as_str()])
            .await?;
        rows.first().map(|r| position_at(r, 0)).transpose()
    }

    async fn save_checkpoint(&self, name: &CheckpointName, at: Position) -> Result<()> {
        let (tx, seq) = position_parts(at);
        self.rows(
            "save checkpoint",
            CHECKPOINT_SAVE,
            &[&name.as_str(), &tx, &seq],
        )
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<(CheckpointName, Position)>> {
        let rows = self.rows("list checkpoints", CHECKPOINT_LIST, &[]).await?;
        rows.iter()
            .map(|r| {
                let name = CheckpointName::new(column::<String>(r, 0, "name")?)?;
                Ok((name, position_at(r, 1)?))
            })
            .collect()
    }
}

impl Store for PgStore {
    async fn append(&self, batch: AppendBatch) -> Result<Appended> {
        let (stream_id, expected, events) = batch.into_parts();
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
        let namespaces: Vec<&str> = events.iter().map(|e| e.namespace.as_str()).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let data: Vec<&serde_json::Value> = events.iter().map(|e| &e.data).collect();
        // Serialized straight into the request, with no JSON tree in between.
        let contexts: Vec<Json<&EventContext>> = events.iter().map(|e| Json(&e.context)).collect();
        let times: Vec<_> = events.iter().map(|e| e.context.time).collect();
        let stream = stream_id.as_str();
        let client = self.client("append").await?;
        let stmt = client
            .prepare_cached(APPEND)
            .await
            .map_err(|e| pg("append", e))?;
        let code = expected_code(expected);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &stream,
            &code,
            &ids,
            &namespaces,
            &types,
            &data,
            &contexts,
            &times,
        ];
        let mut attempt = 1;
        let rows = loop {
            match client.query(&stmt, &params).await {
                Ok(rows) => break rows,
                Err(e) if error::retryable(&e) && attempt < APPEND_ATTEMPTS => {
                    tracing::debug!(stream, attempt, error = %e, "append raced; retrying");
                    attempt += 1;
                }
                Err(e) if error::retryable(&e) => {
                    // Still racing after every attempt: report what the stream holds now.
                    tracing::warn!(stream, attempts = attempt, error = %e, "append kept racing");
                    drop(client);
                    let actual = self.stream_version(&stream_id).await?;
                    return Err(Error::Conflict {
                        stream: stream.to_owned(),
                        expected,
                        actual,
                    });
                }
                Err(e) => match error::append(e, stream, expected) {
                    error::AppendError::Mapped(e) => return Err(e),
                    error::AppendError::Clash(e) => {
                        drop(client);
                        return Err(self.clash(&ids, e).await);
                    }
                },
            }
        };
        drop(client);
        drop((namespaces, types, data, contexts));
        if rows.len() != events.len() {
            return Err(Error::backend(
                BACKEND,
                format!(
                    "append returned {} rows for {} events",
                    rows.len(),
                    events.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut stored = true;
        for (row, event) in rows.iter().zip(events) {
            let version = unsigned(BACKEND, "version", column(row, 1, "version")?)?;
            stored = column(row, 4, "stored")?;
            out.push(event.into_record(&stream_id, version, position_at(row, 2)?));
        }
        if !stored {
            // An idempotent retry: report the events as first stored.
            let mut originals = Vec::with_capacity(out.len());
            for chunk in ids.chunks(1000) {
                let rows = self
                    .rows(
                        "append",
                        &format!("SELECT {COLUMNS} FROM events WHERE id = ANY($1)"),
                        &[&chunk],
                    )
                    .await?;
                originals.extend(all(&rows)?);
            }
            originals.sort_by_key(|e| e.version);
            return Ok(Appended {
                events: originals,
                stored: false,
            });
        }
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
        if let Some((wake, _)) = &self.inner.notifier {
            wake.notify_one();
        }
        Ok(Appended {
            events: out,
            stored,
        })
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let n = n.min(100_000);
        let (sql, from, bound) = match direction {
            Direction::Forward => {
                let from = clamp(from);
                (READ_FORWARD, from, from.saturating_add(limit(n)))
            }
            Direction::Backward => {
                // Start at or below the stream's last version, so the window holds the page.
                let from = match self.stream_version(stream).await? {
                    Some(last) => clamp(from.min(last)),
                    None => return Ok(Vec::new()),
                };
                (READ_BACKWARD, from, from.saturating_sub(limit(n)))
            }
        };
        let rows = self
            .rows(
                "read stream",
                sql,
                &[&stream.as_str(), &from, &limit(n), &bound],
            )
            .await?;
        all(&rows)
    }

    async fn read_all(&self, after: Position, n: usize) -> Result<Vec<RecordedEvent>> {
        let (tx, seq) = position_parts(after);
        let rows = self
            .rows("read all", READ_ALL, &[&tx, &seq, &limit(n)])
            .await?;
        all(&rows)
    }

    async fn read_all_backward(
        &self,
        before: Option<Position>,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let (tx, seq) = before.map_or((i64::MAX, i64::MAX), position_parts);
        let rows = self
            .rows(
                "read all backward",
                READ_ALL_BACKWARD,
                &[&tx, &seq, &limit(n)],
            )
            .await?;
        all(&rows)
    }

    async fn stats(&self) -> Result<StoreStats> {
        let counts = self.rows("stats", STATS_COUNTS, &[]).await?;
        let row = counts
            .first()
            .ok_or_else(|| Error::backend(BACKEND, "the stats query returned no row"))?;
        let count = |i: usize, name: &str| -> Result<u64> {
            unsigned(BACKEND, name, column(row, i, name)?)
        };
        let (events, streams, size) =
            (count(0, "events")?, count(1, "streams")?, count(2, "size")?);
        let types = self
            .rows("stats", STATS_TYPES, &[])
            .await?
            .iter()
            .map(|r| {
                Ok(TypeCount {
                    namespace: column(r, 0, "namespace")?,
                    event_type: column(r, 1, "event_type")?,
                    events: unsigned(BACKEND, "count", column(r, 2, "count")?)?,
                })
            })
            .collect::<Result<_>>()?;
        let head = self
            .read_all_backward(None, 1)
            .await?
            .first()
            .map(|e| e.position);
        Ok(StoreStats {
            events,
            streams,
            types,
            size_bytes: Some(size),
            head,
        })
    }

    async fn read_query(
        &self,
        query: &CheckedQuery,
        after: Position,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let compiled = compile::<Postgres>(query, after, n);
        let refs: Vec<_> = compiled.params.iter().map(as_sql).collect();
        let rows = self.rows("read query", &compiled.sql, &refs).await?;
        all(&rows)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>> {
        let rows = self
            .rows("stream version", STREAM_VERSION, &[&stream.as_str()])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        column::<Option<i64>>(row, 0, "version")?
            .map(|v| unsigned(BACKEND, "version", v))
            .transpose()
    }

    async fn watermark(&self) -> Result<Position> {
        let rows = self.rows("watermark", WATERMARK, &[]).await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::backend(BACKEND, "the watermark query returned no row"))?;
        let xmin = unsigned(BACKEND, "xmin", column(row, 0, "xmin")?)?;
        Ok(Position::from_parts(xmin, 0))
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}
