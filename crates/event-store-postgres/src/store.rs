//! The event log on PostgreSQL.

use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use event_store::{
    AppendBatch, Appended, CheckedQuery, Error, EventContext, ExpectedVersion, MultiAppend,
    Position, Result,
};
use event_store_sql::convert::{clamp, unsigned};
use event_store_sql::dialects::Postgres;
use event_store_sql::{Decode, Dialect as _, Driver, Queries, SqlRow, Statement, compile};
use futures::{Stream, StreamExt as _};
use tokio::sync::{Notify, watch};
use tokio_postgres::types::{FromSql, Json, ToSql};
use tokio_postgres::{NoTls, Row, RowStream};

use crate::config::PgConfig;
use crate::error::{self, BACKEND, pg, pool_error};
use crate::query::as_sql;
use crate::replicas::Consistency;
use crate::tls::Connector;

const APPEND: &str = include_str!("../sql/queries/append.sql");
const LOCK_STREAMS: &str = include_str!("../sql/queries/lock_streams.sql");
const APPEND_MANY: &str = include_str!("../sql/queries/append_many.sql");

struct Inner {
    pool: Pool,
    config: PgConfig,
    changes: Arc<watch::Sender<u64>>,
    listener: Option<tokio::task::JoinHandle<()>>,
    notifier: Option<(Arc<Notify>, tokio::task::JoinHandle<()>)>,
    pub(crate) sessions: crate::lease::Sessions,
    replicas: Option<Arc<crate::replicas::Set>>,
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
    /// This handle's consistency of reads (`None`: the configured default).
    consistency: Option<Consistency>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.config.schema)
            .field("pool", &self.inner.pool.status())
            .field("consistency", &self.consistency())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?…`) with `config`. The
    /// connection is checked once; call [`PgStore::migrate`] to create or update the schema.
    /// Must be called inside a Tokio runtime.
    pub async fn connect(url: &str, config: PgConfig) -> Result<Self> {
        config.validate()?;
        let (pg_config, connector, pool) = pool_for(url, &config)?;
        // Fail early on an unreachable server or bad credentials.
        drop(pool.get().await.map_err(|e| pool_error("connect", e))?);
        let changes = Arc::new(watch::Sender::new(0u64));
        let sessions = crate::lease::Sessions::new(
            pg_config.clone(),
            connector.clone(),
            config.schema.clone(),
        );
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
        let replicas = crate::replicas::Set::start(
            &config.replicas,
            &pool,
            |url| {
                let name = crate::replicas::display_name(url)?;
                let (_, _, pool) = pool_for(url, &config)?;
                Ok((name, pool))
            },
            &changes,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                config,
                changes,
                listener,
                notifier,
                sessions,
                replicas,
            }),
            consistency: None,
        })
    }

    /// This store for reads of `consistency`: a handle sharing the pools, whose reads of the log
    /// go where `consistency` allows ([`Consistency`]). Without replicas every read goes to the
    /// primary whatever the consistency. Writes always go to the primary.
    #[must_use]
    pub fn reading(&self, consistency: Consistency) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            consistency: Some(consistency),
        }
    }

    /// The consistency of this handle's reads.
    pub fn consistency(&self) -> Consistency {
        self.consistency
            .unwrap_or(self.inner.config.replicas.consistency)
    }

    /// The replicas and their health now (empty without replicas).
    pub fn replicas(&self) -> Vec<crate::ReplicaStatus> {
        self.inner
            .replicas
            .as_ref()
            .map(|set| set.status())
            .unwrap_or_default()
    }

    /// Reads of the log that went to the primary because no replica could serve them (0
    /// without replicas).
    pub fn reads_on_primary(&self) -> u64 {
        self.inner.replicas.as_ref().map_or(0, |set| {
            set.primary_reads.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// The replicas, when this handle's read may go to one.
    fn routed(&self, s: &Statement) -> Option<&crate::replicas::Set> {
        match (&self.inner.replicas, s.routing, self.consistency()) {
            (_, event_store_sql::Routing::Primary | event_store_sql::Routing::LogChange, _)
            | (_, _, Consistency::Primary)
            | (None, _, _) => None,
            (Some(set), _, _) => Some(set),
        }
    }

    /// Creates the schema and applies missing migrations (idempotent; concurrent callers wait
    /// for each other). Returns the versions it applied.
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        let applied = crate::migrate::migrate(&self.inner.pool, &self.inner.config).await?;
        self.wrote_other();
        Ok(applied)
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

    /// The migrations applied to the schema, in order, with when each was applied, and this
    /// release's migrations not applied yet (`None`: the schema holds no event store yet).
    pub async fn migrations(&self) -> Result<Option<event_store_sql::MigrationStatus>> {
        if self.schema_version().await?.is_none() {
            return Ok(None);
        }
        let client = self.client("migrations").await?;
        let rows = client
            .query(
                "SELECT version::bigint, name, applied_at FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(|e| pg("migrations", e))?;
        let mut applied = Vec::with_capacity(rows.len());
        for row in &rows {
            applied.push(event_store_sql::AppliedMigration {
                version: column(row, 0, "version")?,
                name: column(row, 1, "name")?,
                applied_at: column(row, 2, "applied_at")?,
            });
        }
        Ok(Some(event_store_sql::MigrationStatus::new(
            crate::migrate::MIGRATIONS,
            applied,
        )))
    }

    /// The connection pool (its connections use the store's schema as `search_path`).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The settings.
    pub fn config(&self) -> &PgConfig {
        &self.inner.config
    }

    /// The plan PostgreSQL chooses for reading `query` (after `after`, a page at a time, every
    /// committed event or only final ones), as `EXPLAIN (FORMAT JSON)` output: to check that a
    /// query is served by an index.
    pub async fn explain(
        &self,
        query: &CheckedQuery,
        after: Position,
        finality: event_store_sql::Finality,
    ) -> Result<serde_json::Value> {
        let compiled = compile::<Postgres>(query, after, event_store::PAGE_SIZE, finality);
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

    /// A statement's rows as a stream, with the pooled connection they arrive on.
    async fn open_rows(
        &self,
        s: &Statement,
    ) -> Result<(deadpool_postgres::Object, Pin<Box<RowStream>>)> {
        match self.routed(s) {
            Some(set) => self.routed_open(set, s).await,
            None => self.open_on_primary(s).await,
        }
    }

    /// [`PgStore::open_rows`] on the primary.
    pub(crate) async fn open_on_primary(
        &self,
        s: &Statement,
    ) -> Result<(deadpool_postgres::Object, Pin<Box<RowStream>>)> {
        let client = self.client(s.what).await?;
        let stmt = client
            .prepare_cached(&s.sql)
            .await
            .map_err(|e| pg(s.what, e))?;
        let rows = client
            .query_raw(&stmt, s.params.iter().map(as_sql))
            .await
            .map_err(|e| pg(s.what, e))?;
        Ok((client, Box::pin(rows)))
    }

    pub(crate) async fn rows(
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

/// The driver's settings and a pool for `url` with the store's settings.
fn pool_for(url: &str, config: &PgConfig) -> Result<(tokio_postgres::Config, Connector, Pool)> {
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
        Connector::Tls(tls) => Manager::from_config(pg_config.clone(), tls.clone(), manager_config),
    };
    let pool = Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.connect_timeout))
        .create_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| Error::backend_with(BACKEND, format!("building the pool: {e}"), e))?;
    Ok((pg_config, connector, pool))
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

/// The columns of events, as `append_events` and `append_events_many` take them.
struct Columns<'a> {
    ids: Vec<uuid::Uuid>,
    namespaces: Vec<&'a str>,
    types: Vec<&'a str>,
    data: Vec<&'a serde_json::Value>,
    /// Serialized straight into the request, with no JSON tree in between.
    contexts: Vec<Json<&'a EventContext>>,
    times: Vec<chrono::DateTime<chrono::Utc>>,
}

impl<'a> Columns<'a> {
    fn of(events: impl Iterator<Item = &'a event_store::PendingEvent>) -> Self {
        let mut c = Self {
            ids: Vec::new(),
            namespaces: Vec::new(),
            types: Vec::new(),
            data: Vec::new(),
            contexts: Vec::new(),
            times: Vec::new(),
        };
        for e in events {
            c.ids.push(e.id);
            c.namespaces.push(&e.namespace);
            c.types.push(&e.event_type);
            c.data.push(&e.data);
            c.contexts.push(Json(&e.context));
            c.times.push(e.context.time);
        }
        c
    }

    /// The columns as parameters, in the order both append functions take them after their own.
    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.ids,
            &self.namespaces,
            &self.types,
            &self.data,
            &self.contexts,
            &self.times,
        ]
    }
}

/// Runs `append_events` for one batch on `client` (a connection or a transaction).
async fn run_append(
    client: &impl deadpool_postgres::GenericClient,
    stmt: &tokio_postgres::Statement,
    batch: &AppendBatch,
) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
    let c = Columns::of(batch.events().iter());
    let stream = batch.stream().as_str();
    let code = expected_code(batch.expected());
    let [ids, namespaces, types, data, contexts, times] = c.params();
    let params: [&(dyn ToSql + Sync); 8] = [
        &stream, &code, ids, namespaces, types, data, contexts, times,
    ];
    client.query(stmt, &params).await
}

impl PgStore {
    /// Appends several batches in one transaction, their streams locked in one order first;
    /// retries the whole transaction on a race.
    async fn append_many_batches(&self, batches: MultiAppend) -> Result<Vec<Appended>> {
        if let Some(out) = self.append_many_fast(&batches).await? {
            self.stored();
            self.wrote(&out);
            return Ok(out);
        }
        let batches = batches.into_batches();
        let streams: Vec<&str> = batches.iter().map(|b| b.stream().as_str()).collect();
        let mut attempt = 1;
        let results = loop {
            let mut client = self.client("append").await?;
            let tx = client.transaction().await.map_err(|e| pg("append", e))?;
            let lock = tx
                .prepare_cached(LOCK_STREAMS)
                .await
                .map_err(|e| pg("append", e))?;
            tx.query(&lock, &[&streams])
                .await
                .map_err(|e| pg("locking the streams", e))?;
            let stmt = tx
                .prepare_cached(APPEND)
                .await
                .map_err(|e| pg("append", e))?;
            // Pipelined: every call is sent before the first answer comes back, and the server
            // runs them in order (after a failure the rest fail too; the first is the cause).
            let answers =
                futures::future::join_all(batches.iter().map(|b| run_append(&tx, &stmt, b))).await;
            let mut results = Vec::with_capacity(batches.len());
            let mut failed = None;
            for (i, answer) in answers.into_iter().enumerate() {
                match answer {
                    Ok(rows) => results.push(rows),
                    Err(e) => {
                        failed = Some((i, e));
                        break;
                    }
                }
            }
            let Some((i, e)) = failed else {
                tx.commit().await.map_err(|e| pg("append", e))?;
                break results;
            };
            drop(tx);
            drop(client);
            let b = &batches[i];
            let stream = b.stream().as_str();
            // The streams are locked in one order: a deadlock here is a bug, never retried
            // away (the kit's crossing-streams check would not see it otherwise).
            if error::deadlock(&e) {
                return Err(pg("append (deadlock)", e));
            }
            if error::retryable(&e) && attempt < APPEND_ATTEMPTS {
                tracing::debug!(stream, attempt, error = %e, "multi-stream append raced; retrying");
                attempt += 1;
                continue;
            }
            return Err(self.append_failed(b, e).await);
        };
        let mut out = Vec::with_capacity(batches.len());
        let mut any = false;
        for (batch, rows) in batches.into_iter().zip(results) {
            let appended = self.finish(batch, &rows).await?;
            any |= appended.stored;
            out.push(appended);
        }
        if any {
            self.stored();
        }
        self.wrote(&out);
        Ok(out)
    }

    /// The whole multi-stream append in one statement (`append_events_many`); `None` when a
    /// batch needs the careful path (an expectation fails or an id is stored: nothing was
    /// written).
    async fn append_many_fast(&self, batches: &MultiAppend) -> Result<Option<Vec<Appended>>> {
        let all = batches.batches();
        let streams: Vec<&str> = all.iter().map(|b| b.stream().as_str()).collect();
        let expected: Vec<i64> = all.iter().map(|b| expected_code(b.expected())).collect();
        let mut of_batch = Vec::with_capacity(batches.len());
        let mut offsets = Vec::with_capacity(batches.len());
        for (i, b) in all.iter().enumerate() {
            let batch = i32::try_from(i + 1).unwrap_or(i32::MAX);
            for j in 0..b.len() {
                of_batch.push(batch);
                offsets.push(i32::try_from(j).unwrap_or(i32::MAX));
            }
        }
        let c = Columns::of(all.iter().flat_map(AppendBatch::events));
        let client = self.client("append").await?;
        let stmt = client
            .prepare_cached(APPEND_MANY)
            .await
            .map_err(|e| pg("append", e))?;
        let [ids, namespaces, types, data, contexts, times] = c.params();
        let params: [&(dyn ToSql + Sync); 10] = [
            &streams, &expected, &of_batch, &offsets, ids, namespaces, types, data, contexts, times,
        ];
        let rows = match client.query(&stmt, &params).await {
            Ok(rows) => rows,
            // Streams are locked in one order: a deadlock is a bug, reported, never retried.
            Err(e) if error::deadlock(&e) => return Err(pg("append (deadlock)", e)),
            Err(e) if error::careful_path(&e) || error::retryable(&e) => return Ok(None),
            Err(e) => return Err(pg("append", e)),
        };
        drop(client);
        let mut at: std::collections::HashMap<uuid::Uuid, (u64, Position)> =
            std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let version = unsigned(BACKEND, "version", column(row, 1, "version")?)?;
            at.insert(column(row, 0, "id")?, (version, position_at(row, 2)?));
        }
        let mut out = Vec::with_capacity(all.len());
        for b in all {
            let mut recorded = Vec::with_capacity(b.len());
            for e in b.events() {
                let (version, position) = at.get(&e.id).copied().ok_or_else(|| {
                    Error::backend(
                        BACKEND,
                        format!("append returned no row for event {}", e.id),
                    )
                })?;
                recorded.push(e.record(b.stream(), version, position));
            }
            out.push(Appended {
                events: recorded,
                stored: true,
            });
        }
        Ok(Some(out))
    }

    /// What one batch's `append_events` rows say: the recorded events, or for an idempotent
    /// retry the events as first stored.
    async fn finish(&self, batch: AppendBatch, rows: &[Row]) -> Result<Appended> {
        let (stream_id, _, events) = batch.into_parts();
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
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
        let mut out = Vec::with_capacity(rows.len());
        let mut stored = true;
        for (row, event) in rows.iter().zip(events) {
            let version = unsigned(BACKEND, "version", column(row, 1, "version")?)?;
            stored = column(row, 4, "stored")?;
            out.push(event.into_record(&stream_id, version, position_at(row, 2)?));
        }
        if !stored {
            return Ok(Appended {
                events: self.originals(&ids).await?,
                stored: false,
            });
        }
        Ok(Appended {
            events: out,
            stored,
        })
    }

    /// Appends a batch through `append_events` (one statement), retrying races.
    async fn append_batch(&self, batch: AppendBatch) -> Result<Appended> {
        let stream = batch.stream().as_str();
        let client = self.client("append").await?;
        let stmt = client
            .prepare_cached(APPEND)
            .await
            .map_err(|e| pg("append", e))?;
        let mut attempt = 1;
        let rows = loop {
            match run_append(&client, &stmt, &batch).await {
                Ok(rows) => break rows,
                Err(e) if error::retryable(&e) && attempt < APPEND_ATTEMPTS => {
                    tracing::debug!(stream, attempt, error = %e, "append raced; retrying");
                    attempt += 1;
                }
                Err(e) => {
                    drop(client);
                    return Err(self.append_failed(&batch, e).await);
                }
            }
        };
        drop(client);
        let appended = self.finish(batch, &rows).await?;
        if appended.stored {
            self.stored();
        }
        self.wrote(std::slice::from_ref(&appended));
        Ok(appended)
    }

    /// What an append's failure means for `batch`, once retrying is over: a race still lost
    /// after every attempt is a conflict with what the stream holds now; the rest is mapped
    /// (a clash is looked up to name the id).
    async fn append_failed(&self, batch: &AppendBatch, e: tokio_postgres::Error) -> Error {
        let (stream, expected) = (batch.stream().as_str(), batch.expected());
        if error::retryable(&e) {
            tracing::warn!(stream, error = %e, "append kept racing");
            return match event_store_sql::store::stream_version(self, batch.stream()).await {
                Ok(actual) => Error::Conflict {
                    stream: stream.to_owned(),
                    expected,
                    actual,
                },
                Err(read) => read,
            };
        }
        match error::append(e, stream, expected) {
            error::AppendError::Mapped(e) => e,
            error::AppendError::Clash(e) => {
                let ids: Vec<uuid::Uuid> = batch.events().iter().map(|e| e.id).collect();
                self.clash(&ids, e).await
            }
        }
    }

    /// Records a write other than an append that reads of the log see (a close, a migration),
    /// for [`Consistency::Session`] reads.
    fn wrote_other(&self) {
        if let Some(set) = &self.inner.replicas {
            set.wrote_other();
        }
    }

    /// Records appends for [`Consistency::Session`] reads.
    fn wrote(&self, appended: &[Appended]) {
        if let Some(set) = &self.inner.replicas {
            for a in appended {
                if let Some(p) = a.last_position() {
                    set.wrote(p);
                }
            }
        }
    }

    /// Tells followers in this process, and through `NOTIFY` other processes, that events were
    /// stored.
    fn stored(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
        if let Some((wake, _)) = &self.inner.notifier {
            wake.notify_one();
        }
    }
}

impl PgStore {
    /// The stored events with these ids, in version order (what an idempotent retry reports).
    async fn originals(&self, ids: &[uuid::Uuid]) -> Result<Vec<event_store::RecordedEvent>> {
        let mut originals = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let sql = format!(
                "SELECT {} FROM events WHERE id = ANY($1)",
                Postgres::COLUMNS
            );
            for row in &self.rows("append", &sql, &[&chunk]).await? {
                originals.push(event_store_sql::store::event::<Self>(&PgRow(row))?);
            }
        }
        originals.sort_by_key(|e| e.version);
        Ok(originals)
    }
}

/// A row as the generic code reads it.
struct PgRow<'a>(&'a Row);

impl SqlRow for PgRow<'_> {
    fn int(&self, index: usize, name: &str) -> Result<Option<i64>> {
        column(self.0, index, name)
    }
    fn text(&self, index: usize, name: &str) -> Result<Option<String>> {
        column(self.0, index, name)
    }
    fn json(&self, index: usize, name: &str) -> Result<Option<serde_json::Value>> {
        column(self.0, index, name)
    }
    fn context(&self, index: usize, name: &str) -> Result<EventContext> {
        // Straight from the column's bytes into the context, with no JSON tree in between.
        let Json(context) = column::<Json<EventContext>>(self.0, index, name)?;
        Ok(context)
    }
    fn uuid(&self, index: usize, name: &str) -> Result<uuid::Uuid> {
        column(self.0, index, name)
    }
}

impl Driver for PgStore {
    const BACKEND: &'static str = BACKEND;
    const QUERIES: Queries = event_store_sql::queries!();
    type Dialect = Postgres;

    async fn query<T: Send + 'static>(&self, s: Statement, decode: Decode<T>) -> Result<Vec<T>> {
        let rows = match self.routed(&s) {
            Some(set) => self.routed_rows(set, &s).await?,
            None => {
                let refs: Vec<_> = s.params.iter().map(as_sql).collect();
                self.rows(s.what, &s.sql, &refs).await?
            }
        };
        rows.iter().map(|r| decode(&PgRow(r))).collect()
    }

    fn query_stream<T: Send + 'static>(
        &self,
        s: Statement,
        decode: Decode<T>,
    ) -> impl Stream<Item = Result<T>> + Send + '_ {
        // Rows are decoded as they arrive, while the connection's task receives the ones after
        // them; the pooled connection is held until the last row (or until the stream is dropped).
        enum Rows {
            Start(Statement),
            Open(&'static str, deadpool_postgres::Object, Pin<Box<RowStream>>),
            Done,
        }
        futures::stream::unfold(Rows::Start(s), move |state| async move {
            let (what, client, mut rows) = match state {
                Rows::Done => return None,
                Rows::Open(what, client, rows) => (what, client, rows),
                Rows::Start(s) => match self.open_rows(&s).await {
                    Ok((client, rows)) => (s.what, client, rows),
                    Err(e) => return Some((Err(e), Rows::Done)),
                },
            };
            // An error, the server's or decoding's, is the stream's last item.
            match rows
                .next()
                .await?
                .map_err(|e| pg(what, e))
                .and_then(|row| decode(&PgRow(&row)))
            {
                Ok(item) => Some((Ok(item), Rows::Open(what, client, rows))),
                Err(e) => Some((Err(e), Rows::Done)),
            }
        })
    }

    async fn execute(&self, s: Statement) -> Result<u64> {
        let client = self.client(s.what).await?;
        let stmt = client
            .prepare_cached(&s.sql)
            .await
            .map_err(|e| pg(s.what, e))?;
        let refs: Vec<_> = s.params.iter().map(as_sql).collect();
        let n = client
            .execute(&stmt, &refs)
            .await
            .map_err(|e| pg(s.what, e))?;
        if s.routing == event_store_sql::Routing::LogChange {
            self.wrote_other();
        }
        Ok(n)
    }

    async fn transaction(&self, statements: Vec<Statement>) -> Result<bool> {
        let what = statements.first().map_or("transaction", |s| s.what);
        let mut client = self.client(what).await?;
        let tx = client.transaction().await.map_err(|e| pg(what, e))?;
        for s in &statements {
            if exec(&tx, s).await? == 0 && s.guard {
                tx.rollback().await.map_err(|e| pg(s.what, e))?;
                return Ok(false);
            }
        }
        tx.commit().await.map_err(|e| pg(what, e))?;
        if statements
            .iter()
            .any(|s| s.routing == event_store_sql::Routing::LogChange)
        {
            self.wrote_other();
        }
        Ok(true)
    }

    async fn append(&self, batch: AppendBatch) -> Result<Appended> {
        self.append_batch(batch).await
    }

    async fn append_many(&self, batches: MultiAppend) -> Result<Vec<Appended>> {
        self.append_many_batches(batches).await
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

/// Runs a statement of the shared SQL layer on a transaction; returns the rows it touched.
pub(crate) async fn exec(tx: &deadpool_postgres::Transaction<'_>, s: &Statement) -> Result<u64> {
    let stmt = tx.prepare_cached(&s.sql).await.map_err(|e| pg(s.what, e))?;
    let refs: Vec<_> = s.params.iter().map(as_sql).collect();
    tx.execute(&stmt, &refs).await.map_err(|e| pg(s.what, e))
}

/// Runs a query of the shared SQL layer on a transaction.
pub(crate) async fn rows_in(
    tx: &deadpool_postgres::Transaction<'_>,
    s: &Statement,
) -> Result<Vec<Row>> {
    let stmt = tx.prepare_cached(&s.sql).await.map_err(|e| pg(s.what, e))?;
    let refs: Vec<_> = s.params.iter().map(as_sql).collect();
    tx.query(&stmt, &refs).await.map_err(|e| pg(s.what, e))
}

impl event_store_sql::projection::ProjectionDriver for PgStore {
    const PROJECTION_QUERIES: event_store_sql::projection::ProjectionQueries =
        event_store_sql::projection_queries!();
    type Lease = crate::lease::PgLease;

    async fn try_lease(
        &self,
        key: &event_store::projection::LeaseKey,
    ) -> Result<Option<crate::lease::PgLease>> {
        self.inner.sessions.try_lease(key).await
    }

    async fn is_leased(&self, key: &event_store::projection::LeaseKey) -> Result<bool> {
        let client = self.client("check a projection lease").await?;
        self.inner.sessions.is_leased(key, &client).await
    }
}

event_store_sql::impl_store!(PgStore);
event_store_sql::impl_projection_store!(PgStore);
