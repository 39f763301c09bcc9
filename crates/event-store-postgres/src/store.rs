//! The event log on PostgreSQL.

use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use event_store::{
    AppendBatch, Appended, Checkpoints, Direction, Error, EventContext, ExpectedVersion, Position,
    Query, RecordedEvent, Result, Store, StoreStats, StreamId, TypeCount,
};
use tokio::sync::{Notify, watch};
use tokio_postgres::types::Json;
use tokio_postgres::{NoTls, Row};

use crate::config::PgConfig;
use crate::error::{self, BACKEND, pg, pool_error};
use crate::query::{COLUMNS, compile, to_i64};
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
    pub async fn migrate(&self) -> Result<Vec<i32>> {
        crate::migrate::migrate(&self.inner.pool, &self.inner.config).await
    }

    /// The latest migration applied to the schema (`None`: the schema holds no event store yet;
    /// run [`PgStore::migrate`]).
    pub async fn schema_version(&self) -> Result<Option<i32>> {
        let client = self.client("schema version").await?;
        let exists: bool = client
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .await
            .map_err(|e| pg("schema version", e))?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let row = client
            .query_one("SELECT max(version) FROM schema_migrations", &[])
            .await
            .map_err(|e| pg("schema version", e))?;
        Ok(row.get(0))
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
    pub async fn explain(&self, query: &Query, after: Position) -> Result<serde_json::Value> {
        query.validate()?;
        let (sql, params) = compile(query, after, event_store::PAGE_SIZE);
        let refs: Vec<_> = params.iter().map(crate::query::Param::as_sql).collect();
        let rows = self
            .rows("explain", &format!("EXPLAIN (FORMAT JSON) {sql}"), &refs)
            .await?;
        rows.first()
            .map(|r| r.get(0))
            .ok_or_else(|| Error::backend(BACKEND, "EXPLAIN returned no row"))
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
        ExpectedVersion::Exact(v) => to_i64(v),
    }
}

fn position(tx: i64, seq: i64) -> Position {
    Position::from_parts(tx.unsigned_abs(), seq.unsigned_abs())
}

fn recorded(row: &Row) -> Result<RecordedEvent> {
    // Straight from the column's bytes into the context, with no JSON tree in between.
    let Json(context): Json<EventContext> = row.try_get(8).map_err(|e| pg("decoding a row", e))?;
    let version: i64 = row.try_get(4).map_err(|e| pg("decoding a row", e))?;
    Ok(RecordedEvent {
        position: position(
            row.try_get(0).map_err(|e| pg("decoding a row", e))?,
            row.try_get(1).map_err(|e| pg("decoding a row", e))?,
        ),
        id: row.try_get(2).map_err(|e| pg("decoding a row", e))?,
        stream: row.try_get(3).map_err(|e| pg("decoding a row", e))?,
        version: version.unsigned_abs(),
        namespace: row.try_get(5).map_err(|e| pg("decoding a row", e))?,
        event_type: row.try_get(6).map_err(|e| pg("decoding a row", e))?,
        data: row.try_get(7).map_err(|e| pg("decoding a row", e))?,
        context,
    })
}

fn all(rows: &[Row]) -> Result<Vec<RecordedEvent>> {
    rows.iter().map(recorded).collect()
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

const CHECKPOINT_LOAD: &str = include_str!("../sql/queries/checkpoint_load.sql");
const CHECKPOINT_SAVE: &str = include_str!("../sql/queries/checkpoint_save.sql");
const CHECKPOINT_LIST: &str = include_str!("../sql/queries/checkpoint_list.sql");

impl Checkpoints for PgStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>> {
        let rows = self
            .rows("load checkpoint", CHECKPOINT_LOAD, &[&name])
            .await?;
        Ok(rows.first().map(|r| position(r.get(0), r.get(1))))
    }

    async fn save_checkpoint(&self, name: &str, at: Position) -> Result<()> {
        event_store::limits::check_checkpoint_name(name)?;
        let (tx, seq) = at.parts();
        self.rows(
            "save checkpoint",
            CHECKPOINT_SAVE,
            &[&name, &to_i64(tx), &to_i64(seq)],
        )
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<(String, Position)>> {
        let rows = self.rows("list checkpoints", CHECKPOINT_LIST, &[]).await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), position(r.get(1), r.get(2))))
            .collect())
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
                Err(e) => return Err(error::append(e, stream, expected)),
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
            let version: i64 = row.get(1);
            stored = row.get(4);
            out.push(event.into_record(
                &stream_id,
                version.unsigned_abs(),
                position(row.get(2), row.get(3)),
            ));
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
                let from = to_i64(from);
                (READ_FORWARD, from, from.saturating_add(limit(n)))
            }
            Direction::Backward => {
                // Start at or below the stream's last version, so the window holds the page.
                let from = match self.stream_version(stream).await? {
                    Some(last) => to_i64(from.min(last)),
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
        let (tx, seq) = after.parts();
        let rows = self
            .rows(
                "read all",
                READ_ALL,
                &[&to_i64(tx), &to_i64(seq), &limit(n)],
            )
            .await?;
        all(&rows)
    }

    async fn read_all_backward(
        &self,
        before: Option<Position>,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let (tx, seq) = before.map_or((i64::MAX, i64::MAX), |p| {
            let (tx, seq) = p.parts();
            (to_i64(tx), to_i64(seq))
        });
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
        let (events, streams, size): (i64, i64, i64) = counts
            .first()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .ok_or_else(|| Error::backend(BACKEND, "the stats query returned no row"))?;
        let types = self
            .rows("stats", STATS_TYPES, &[])
            .await?
            .iter()
            .map(|r| TypeCount {
                namespace: r.get(0),
                event_type: r.get(1),
                events: r.get::<_, i64>(2).unsigned_abs(),
            })
            .collect();
        let head = self
            .read_all_backward(None, 1)
            .await?
            .first()
            .map(|e| e.position);
        Ok(StoreStats {
            events: events.unsigned_abs(),
            streams: streams.unsigned_abs(),
            types,
            size_bytes: Some(size.unsigned_abs()),
            head,
        })
    }

    async fn read_query(
        &self,
        query: &Query,
        after: Position,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        query.validate()?;
        let (sql, params) = compile(query, after, n);
        let refs: Vec<_> = params.iter().map(crate::query::Param::as_sql).collect();
        let rows = self.rows("read query", &sql, &refs).await?;
        all(&rows)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>> {
        let rows = self
            .rows("stream version", STREAM_VERSION, &[&stream.as_str()])
            .await?;
        let v: Option<i64> = rows.first().and_then(|r| r.get(0));
        Ok(v.map(i64::unsigned_abs))
    }

    async fn watermark(&self) -> Result<Position> {
        let rows = self.rows("watermark", WATERMARK, &[]).await?;
        let xmin: i64 = rows
            .first()
            .map(|r| r.get(0))
            .ok_or_else(|| Error::backend(BACKEND, "the watermark query returned no row"))?;
        Ok(Position::from_parts(xmin.unsigned_abs(), 0))
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}
