//! The backend picked at run time from `--url`: one store type over SQLite or PostgreSQL.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use event_store::erasure::{KeyState, KeyStore, WrappedKey};
use event_store::projection::{
    Generation, Lease, LeaseKey, PartitionState, ProjectionName, ProjectionRecord, ProjectionStore,
    Revision,
};
use event_store::{
    AppendBatch, Appended, Cache, CacheKey, CachedState, CheckedQuery, CheckpointName, Checkpoints,
    Direction, EventStore, Position, RecordedEvent, Store, StoreStats, StreamId,
};
use event_store_postgres::{
    Consistency, Indexes, MigrationStatus, PgCache, PgConfig, PgKeyStore, PgLease, PgStore,
    Replicas,
};
use event_store_sqlite::{
    OpenMode, SqliteCache, SqliteConfig, SqliteKeyStore, SqliteLease, SqliteStore,
};

use crate::usage::usage;
use futures::Stream;
use futures::future::Either;
use tokio::sync::watch;

/// The store behind `--url`.
#[derive(Clone, Debug)]
pub(crate) enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Where `--url` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A SQLite file, and what the URL's `?mode=` allows (`None`: what the command needs).
    Sqlite(String, Option<UrlMode>),
    Postgres(String),
}

/// A SQLite URL's `mode` (as sqlx and SQLite spell it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlMode {
    /// `ro`: read only, even for commands that write.
    Ro,
    /// `rw`: the file must exist.
    Rw,
    /// `rwc`: created when missing (what writing commands do anyway).
    Rwc,
}

/// What a command does to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `init`: create or migrate.
    Init,
    /// Appends: a missing SQLite file is created; an existing one must hold a store (migrated
    /// when behind).
    Write,
    /// Writes to a store that must exist (checkpoints, projections' control).
    Update,
    /// Reads only: the store must exist; nothing is created or changed.
    Read,
}

const URL_FORMS: &str = "sqlite://PATH, sqlite:PATH or postgres://USER@HOST/DB";

/// Parses `--url`. Error messages name the scheme, never the whole URL (it may hold a password).
pub(crate) fn parse_url(url: &str) -> Result<Target> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        if path == ":memory:" || path.is_empty() && query.is_some_and(|q| q.contains("memory")) {
            bail!(
                "--url {url}: an in-memory SQLite database would vanish when the command exits; give a file path"
            );
        }
        if path.is_empty() {
            bail!("--url {url} needs a file path, like sqlite://./events.db");
        }
        let mut mode = None;
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            mode = Some(match pair {
                "mode=ro" => UrlMode::Ro,
                "mode=rw" => UrlMode::Rw,
                "mode=rwc" => UrlMode::Rwc,
                other => bail!(
                    "--url: `{other}` is not an option of SQLite URLs here (only mode=ro, mode=rw or mode=rwc)"
                ),
            });
        }
        return Ok(Target::Sqlite(path.to_owned(), mode));
    }
    let Some((scheme, _)) = url.split_once("://") else {
        bail!("--url must look like {URL_FORMS} (for a file, e.g. sqlite://{url})");
    };
    match scheme {
        "postgres" | "postgresql" => Ok(Target::Postgres(url.to_owned())),
        other => bail!("unknown scheme `{other}` in --url: use {URL_FORMS}"),
    }
}

/// The SQLite open mode for a command's `access` under the URL's `mode`.
fn sqlite_mode(path: &str, access: Access, url: Option<UrlMode>) -> OpenMode {
    match (access, url) {
        (_, Some(UrlMode::Ro)) | (Access::Read, _) => OpenMode::ReadOnly,
        (Access::Init | Access::Write, Some(UrlMode::Rw)) | (Access::Update, _) => {
            OpenMode::Existing
        }
        // Appending to a file that exists must not turn an unrelated database into a store.
        (Access::Write, _) if std::path::Path::new(path).exists() => OpenMode::Existing,
        (Access::Init | Access::Write, _) => OpenMode::Create,
    }
}

/// A failure to open the SQLite file at `path`, said once: the adapter's reasons name the path
/// already; a store that is not there gets the way to make one.
fn open_error(path: &str, e: event_store::Error) -> anyhow::Error {
    match e {
        event_store::Error::InvalidInput { reason, .. } if reason.starts_with("no event store") => {
            anyhow::anyhow!("{reason} (run `event-store init` to create one)")
        }
        event_store::Error::InvalidInput { reason, .. } => anyhow::anyhow!("{reason}"),
        e => anyhow::Error::new(e).context(format!("cannot open the SQLite database {path}")),
    }
}

/// Where the store is, from the global options.
#[derive(Debug, Clone)]
pub(crate) struct StoreUrl {
    pub(crate) url: String,
    pub(crate) schema: String,
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// The PostgreSQL replicas to read from (`--replica`).
    pub(crate) replicas: Replicas,
}

/// The replicas of `--replica`, `--consistency` and `--max-replica-lag`.
pub(crate) fn replicas(
    urls: &[String],
    consistency: crate::cli::ConsistencyArg,
    max_lag: Duration,
) -> Result<Replicas> {
    use crate::cli::ConsistencyArg as C;
    let mut out = Replicas {
        max_lag,
        consistency: match consistency {
            C::Eventual => Consistency::Eventual,
            C::Session => Consistency::Session,
            C::Primary => Consistency::Primary,
        },
        ..Replicas::default()
    };
    for url in urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
        match parse_url(url) {
            Ok(Target::Postgres(url)) => out.urls.push(url),
            Ok(Target::Sqlite(..)) => {
                return Err(usage(
                    "--replica takes PostgreSQL URLs (postgres://USER@HOST/DB): SQLite has no replicas",
                ));
            }
            Err(e) => return Err(usage(format!("--replica: {e}"))),
        }
    }
    Ok(out)
}

impl StoreUrl {
    /// Opens the store for what a command does to it.
    pub(crate) async fn open(&self, access: Access) -> Result<AnyStore> {
        AnyStore::open(self, access, Indexes::default()).await
    }

    /// Opens the store, creating or migrating it with the optional `indexes` (PostgreSQL only).
    pub(crate) async fn init(&self, indexes: Indexes) -> Result<AnyStore> {
        AnyStore::open(self, Access::Init, indexes).await
    }

    /// The applied and pending migrations of the store, read without changing it, whatever
    /// its schema version.
    pub(crate) async fn migrations(&self) -> Result<MigrationStatus> {
        match parse_url(&self.url)? {
            Target::Sqlite(path, _) => match SqliteStore::inspect_migrations(&path).await {
                Ok(status) => Ok(status),
                Err(e) => Err(open_error(&path, e)),
            },
            Target::Postgres(_) => {
                let AnyStore::Postgres(store) = self.open(Access::Read).await? else {
                    bail!("a PostgreSQL URL opened another backend");
                };
                store.migrations().await?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "the PostgreSQL schema `{}` holds no event store yet (run `event-store init` to create one)",
                        self.schema
                    )
                })
            }
        }
    }

    /// The facade over the store, with the polling interval its backend needs.
    pub(crate) async fn facade(&self, access: Access) -> Result<EventStore<AnyStore>> {
        let store = self.open(access).await?;
        let every = store.poll_interval();
        Ok(EventStore::from_store(store).with_poll_interval(every))
    }
}

impl AnyStore {
    /// Opens the store for `access` (see [`Access`]): only `init` creates a PostgreSQL schema
    /// or migrates one.
    pub(crate) async fn open(at: &StoreUrl, access: Access, indexes: Indexes) -> Result<Self> {
        let schema = at.schema.as_str();
        match parse_url(&at.url)? {
            Target::Sqlite(..) if !at.replicas.urls.is_empty() => Err(usage(
                "--replica is a PostgreSQL setting: a SQLite store has no replicas",
            )),
            Target::Sqlite(..) if indexes != Indexes::default() => Err(usage(
                "--index is a PostgreSQL setting: SQLite filters subjects and time ranges while walking the log",
            )),
            Target::Sqlite(path, url_mode) => {
                let config = SqliteConfig {
                    mode: sqlite_mode(&path, access, url_mode),
                    ..SqliteConfig::default()
                };
                match SqliteStore::open_with(&path, config).await {
                    Ok(store) => Ok(Self::Sqlite(store)),
                    Err(e) => Err(open_error(&path, e)),
                }
            }
            Target::Postgres(url) => {
                let mut config = PgConfig::with_schema(schema);
                config.pool_size = 8;
                "event-store-cli".clone_into(&mut config.application_name);
                config.connect_timeout = Duration::from_secs(5);
                config.indexes = indexes;
                config.replicas = at.replicas.clone();
                if let Some(ca_file) = at.ca_file.clone() {
                    config.tls = event_store_postgres::PgTls::Verified {
                        ca_file: Some(ca_file),
                    };
                }
                let store = PgStore::connect(&url, config)
                    .await
                    .context("cannot connect to PostgreSQL")?;
                if access == Access::Init {
                    store.migrate().await.context("cannot migrate the schema")?;
                } else if store.schema_version().await?.is_none() {
                    bail!(
                        "the PostgreSQL schema `{schema}` holds no event store yet (run `event-store init` to create one)"
                    );
                }
                Ok(Self::Postgres(store))
            }
        }
    }

    /// How often tails re-read when nothing wakes them (SQLite has no cross-process
    /// notifications).
    pub(crate) fn poll_interval(&self) -> Duration {
        match self {
            Self::Sqlite(_) => Duration::from_millis(100),
            Self::Postgres(_) => Duration::from_millis(500),
        }
    }

    /// Migrates (idempotent); returns what was applied, as text.
    pub(crate) async fn migrate(&self) -> Result<String> {
        Ok(match self {
            Self::Sqlite(s) => {
                s.migrate().await?;
                format!("SQLite database {} is ready", s.path().display())
            }
            Self::Postgres(s) => {
                s.migrate().await?;
                let version = s.schema_version().await?.unwrap_or_default();
                format!(
                    "PostgreSQL schema `{}` is ready (migration {version})",
                    s.config().schema
                )
            }
        })
    }

    /// `position` when this backend can have made it: SQLite's are plain numbers, so a
    /// `high:low` one (PostgreSQL's form) given to `flag` is a usage mistake.
    pub(crate) fn check_position(&self, position: Position, flag: &str) -> Result<Position> {
        match self {
            Self::Sqlite(_) if position.parts().0 != 0 => Err(usage(format!(
                "{flag} {position} is a PostgreSQL checkpoint; SQLite's are plain numbers (like 42)"
            ))),
            _ => Ok(position),
        }
    }
}

/// `$e` on whichever backend `$self` (an `AnyStore`, or another enum of the two) holds.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        each!(AnyStore, $self, $s => $e)
    };
    ($any:ident, $self:ident, $s:ident => $e:expr) => {
        match $self {
            $any::Sqlite($s) => $e,
            $any::Postgres($s) => $e,
        }
    };
}

impl Checkpoints for AnyStore {
    async fn load_checkpoint(
        &self,
        name: &CheckpointName,
    ) -> event_store::Result<Option<Position>> {
        each!(self, s => s.load_checkpoint(name).await)
    }
    async fn save_checkpoint(
        &self,
        name: &CheckpointName,
        position: Position,
    ) -> event_store::Result<()> {
        each!(self, s => s.save_checkpoint(name, position).await)
    }
    async fn checkpoints(&self) -> event_store::Result<Vec<(CheckpointName, Position)>> {
        each!(self, s => s.checkpoints().await)
    }
}

impl Store for AnyStore {
    async fn append(&self, batch: AppendBatch) -> event_store::Result<Appended> {
        each!(self, s => s.append(batch).await)
    }
    async fn append_many(
        &self,
        batches: event_store::MultiAppend,
    ) -> event_store::Result<Vec<Appended>> {
        each!(self, s => s.append_many(batches).await)
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> event_store::Result<Vec<RecordedEvent>> {
        each!(self, s => s.read_stream(stream, from, direction, limit).await)
    }
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> event_store::Result<Vec<RecordedEvent>> {
        each!(self, s => s.read_all(after, limit).await)
    }
    fn read_stream_rows<'a>(
        &'a self,
        stream: &'a StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> impl Stream<Item = event_store::Result<RecordedEvent>> + Send + 'a {
        match self {
            Self::Sqlite(s) => Either::Left(s.read_stream_rows(stream, from, direction, limit)),
            Self::Postgres(s) => Either::Right(s.read_stream_rows(stream, from, direction, limit)),
        }
    }
    fn read_committed_rows<'a>(
        &'a self,
        query: &'a CheckedQuery,
        after: Position,
        limit: usize,
    ) -> impl Stream<Item = event_store::Result<RecordedEvent>> + Send + 'a {
        match self {
            Self::Sqlite(s) => Either::Left(s.read_committed_rows(query, after, limit)),
            Self::Postgres(s) => Either::Right(s.read_committed_rows(query, after, limit)),
        }
    }
    fn read_all_rows(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Stream<Item = event_store::Result<RecordedEvent>> + Send + '_ {
        match self {
            Self::Sqlite(s) => Either::Left(s.read_all_rows(after, limit)),
            Self::Postgres(s) => Either::Right(s.read_all_rows(after, limit)),
        }
    }
    async fn read_all_backward(
        &self,
        before: Option<Position>,
        limit: usize,
    ) -> event_store::Result<Vec<RecordedEvent>> {
        each!(self, s => s.read_all_backward(before, limit).await)
    }
    async fn stats(&self) -> event_store::Result<StoreStats> {
        each!(self, s => s.stats().await)
    }
    async fn read_final(
        &self,
        query: &CheckedQuery,
        after: Position,
        limit: usize,
    ) -> event_store::Result<Vec<RecordedEvent>> {
        each!(self, s => s.read_final(query, after, limit).await)
    }
    async fn read_committed(
        &self,
        query: &CheckedQuery,
        after: Position,
        limit: usize,
    ) -> event_store::Result<Vec<RecordedEvent>> {
        each!(self, s => s.read_committed(query, after, limit).await)
    }
    async fn stream_version(&self, stream: &StreamId) -> event_store::Result<Option<u64>> {
        each!(self, s => s.stream_version(stream).await)
    }
    async fn read_event(&self, id: uuid::Uuid) -> event_store::Result<Option<RecordedEvent>> {
        each!(self, s => s.read_event(id).await)
    }
    async fn streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> event_store::Result<Vec<event_store::StreamInfo>> {
        each!(self, s => s.streams(prefix, after, limit).await)
    }
    async fn watermark(&self) -> event_store::Result<Position> {
        each!(self, s => s.watermark().await)
    }
    fn changes(&self) -> watch::Receiver<u64> {
        each!(self, s => s.changes())
    }
    async fn close_stream(&self, stream: &StreamId, closed: bool) -> event_store::Result<bool> {
        each!(self, s => s.close_stream(stream, closed).await)
    }
    async fn closed_streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> event_store::Result<Vec<event_store::ClosedStream>> {
        each!(self, s => s.closed_streams(prefix, after, limit).await)
    }
}

/// The key store in the store behind `--url` (crypto-shredding's wrapped data keys).
#[derive(Clone, Debug)]
pub(crate) enum AnyKeyStore {
    Sqlite(SqliteKeyStore),
    Postgres(PgKeyStore),
}

impl AnyKeyStore {
    pub(crate) fn of(store: &AnyStore) -> Self {
        match store {
            AnyStore::Sqlite(s) => Self::Sqlite(SqliteKeyStore::new(s)),
            AnyStore::Postgres(s) => Self::Postgres(PgKeyStore::new(s)),
        }
    }
}

impl KeyStore for AnyKeyStore {
    async fn load(&self, subject: &str) -> event_store::Result<Option<KeyState>> {
        each!(AnyKeyStore, self, k => k.load(subject).await)
    }
    async fn create(&self, subject: &str, key: WrappedKey) -> event_store::Result<KeyState> {
        each!(AnyKeyStore, self, k => k.create(subject, key).await)
    }
    async fn forget(&self, subject: &str) -> event_store::Result<bool> {
        each!(AnyKeyStore, self, k => k.forget(subject).await)
    }
    async fn replace(
        &self,
        subject: &str,
        old: &WrappedKey,
        new: WrappedKey,
    ) -> event_store::Result<bool> {
        each!(AnyKeyStore, self, k => k.replace(subject, old, new).await)
    }
    async fn active(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> event_store::Result<Vec<(String, WrappedKey)>> {
        each!(AnyKeyStore, self, k => k.active(after, limit).await)
    }
}

/// The aggregate cache in the store behind `--url` (a forget removes the cached states that
/// folded the subject's personal values).
#[derive(Clone, Debug)]
pub(crate) enum AnyCache {
    Sqlite(SqliteCache),
    Postgres(PgCache),
}

impl AnyCache {
    pub(crate) fn of(store: &AnyStore) -> Self {
        match store {
            AnyStore::Sqlite(s) => Self::Sqlite(SqliteCache::new(s)),
            AnyStore::Postgres(s) => Self::Postgres(PgCache::new(s)),
        }
    }
}

impl Cache for AnyCache {
    async fn get(&self, key: &CacheKey) -> event_store::Result<Option<CachedState>> {
        each!(AnyCache, self, c => c.get(key).await)
    }
    async fn put(&self, key: &CacheKey, entry: CachedState) -> event_store::Result<()> {
        each!(AnyCache, self, c => c.put(key, entry).await)
    }
    async fn invalidate(&self, key: &CacheKey) -> event_store::Result<()> {
        each!(AnyCache, self, c => c.invalidate(key).await)
    }
    async fn forget_subject(&self, subject: &str) -> event_store::Result<u64> {
        each!(AnyCache, self, c => c.forget_subject(subject).await)
    }
}

/// A projection lease of either backend.
#[derive(Debug)]
pub(crate) enum AnyLease {
    Sqlite(SqliteLease),
    Postgres(PgLease),
}

impl Lease for AnyLease {
    fn is_held(&self) -> bool {
        match self {
            Self::Sqlite(l) => l.is_held(),
            Self::Postgres(l) => l.is_held(),
        }
    }

    async fn release(self) {
        match self {
            Self::Sqlite(l) => l.release().await,
            Self::Postgres(l) => l.release().await,
        }
    }
}

impl ProjectionStore for AnyStore {
    type Lease = AnyLease;

    async fn projection(
        &self,
        name: &ProjectionName,
    ) -> event_store::Result<Option<ProjectionRecord>> {
        each!(self, s => s.projection(name).await)
    }
    async fn projections(&self) -> event_store::Result<Vec<ProjectionRecord>> {
        each!(self, s => s.projections().await)
    }
    async fn begin_generation(
        &self,
        name: &ProjectionName,
        expected: Revision,
        next: &Generation,
    ) -> event_store::Result<bool> {
        each!(self, s => s.begin_generation(name, expected, next).await)
    }
    async fn mark_created(
        &self,
        name: &ProjectionName,
        generation: u64,
    ) -> event_store::Result<bool> {
        each!(self, s => s.mark_created(name, generation).await)
    }
    async fn save_partition(
        &self,
        name: &ProjectionName,
        state: &PartitionState,
        expected: Position,
    ) -> event_store::Result<()> {
        each!(self, s => s.save_partition(name, state, expected).await)
    }
    async fn switch_generation(
        &self,
        name: &ProjectionName,
        from: Option<u64>,
        to: u64,
    ) -> event_store::Result<bool> {
        each!(self, s => s.switch_generation(name, from, to).await)
    }
    async fn resume(
        &self,
        name: &ProjectionName,
        partition: Option<u32>,
    ) -> event_store::Result<u64> {
        each!(self, s => s.resume(name, partition).await)
    }
    async fn try_lease(&self, key: &LeaseKey) -> event_store::Result<Option<AnyLease>> {
        Ok(match self {
            Self::Sqlite(s) => s.try_lease(key).await?.map(AnyLease::Sqlite),
            Self::Postgres(s) => s.try_lease(key).await?.map(AnyLease::Postgres),
        })
    }
    async fn is_leased(&self, key: &LeaseKey) -> event_store::Result<bool> {
        each!(self, s => s.is_leased(key).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("sqlite://./events.db").unwrap(),
            Target::Sqlite("./events.db".into(), None)
        );
        assert_eq!(
            parse_url("sqlite:///tmp/x.db").unwrap(),
            Target::Sqlite("/tmp/x.db".into(), None)
        );
        // The forms sqlx users bring.
        assert_eq!(
            parse_url("sqlite:events.db").unwrap(),
            Target::Sqlite("events.db".into(), None)
        );
        assert_eq!(
            parse_url("sqlite://events.db?mode=ro").unwrap(),
            Target::Sqlite("events.db".into(), Some(UrlMode::Ro))
        );
        assert_eq!(
            parse_url("sqlite:events.db?mode=rwc").unwrap(),
            Target::Sqlite("events.db".into(), Some(UrlMode::Rwc))
        );
        let e = parse_url("sqlite://x.db?cache=shared")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`cache=shared` is not an option"), "{e}");
        assert!(parse_url("sqlite::memory:").is_err());
        assert!(parse_url("sqlite:").is_err());
        assert!(matches!(
            parse_url("postgres://u@h/db").unwrap(),
            Target::Postgres(_)
        ));
        assert!(matches!(
            parse_url("postgresql://u@h/db").unwrap(),
            Target::Postgres(_)
        ));
        let e = parse_url("mysql://root:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown scheme `mysql`") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(parse_url("events.db").is_err());
        assert!(parse_url("sqlite://").is_err());
    }
}
