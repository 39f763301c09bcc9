//! What a SQL backend provides: running the store's SQL on its driver.

use std::borrow::Cow;
use std::future::Future;

use futures::{Stream, StreamExt as _};

use event_store::{AppendBatch, Appended, Error, EventContext, MultiAppend, Result};
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::compile::{Dialect, Param};

/// One row of a result, as the generic store code reads it: each getter names the column in its
/// errors, and a type mismatch is an error, never a panic.
pub trait SqlRow {
    /// An integer column (`None`: NULL).
    fn int(&self, index: usize, name: &str) -> Result<Option<i64>>;
    /// A text column (`None`: NULL).
    fn text(&self, index: usize, name: &str) -> Result<Option<String>>;
    /// A JSON column (`None`: NULL): a `json` or `jsonb`, or JSON text.
    fn json(&self, index: usize, name: &str) -> Result<Option<Value>>;
    /// An event context stored as JSON (decoded straight into the struct where the driver can).
    fn context(&self, index: usize, name: &str) -> Result<EventContext>;
    /// A UUID column.
    fn uuid(&self, index: usize, name: &str) -> Result<Uuid>;
}

/// The columns a NULL may not be in: the value, or an error naming the column.
pub(crate) fn required<T>(backend: &'static str, name: &str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| Error::backend(backend, format!("column `{name}` is NULL")))
}

/// A function decoding one row.
pub type Decode<T> = fn(&dyn SqlRow) -> Result<T>;

/// A statement to run: what it does (for errors), its SQL, and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// What the statement does, as errors say it (`read all`, `save checkpoint`, …).
    pub what: &'static str,
    /// The SQL text.
    pub sql: Cow<'static, str>,
    /// The parameters, in placeholder order.
    pub params: Vec<Param>,
    /// In a [`Driver::transaction`]: a statement that must touch a row, or the transaction is
    /// rolled back.
    pub guard: bool,
    /// Where the statement may run when the backend also reads from replicas.
    pub routing: Routing,
}

/// Where a statement may run on a backend that reads from replicas (PostgreSQL's streaming
/// standbys): on the primary only (the default: writes, checkpoints, keys, projections' own
/// state), or on a replica (reads of the log); and which writes reads of the log see. A driver without replicas runs every statement
/// on its one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// Only on the primary.
    #[default]
    Primary,
    /// A read of the log: on a replica when the caller's consistency allows it.
    Replica,
    /// The watermark: on a replica too, but the reads after it must see at least what that
    /// replica had (they go to it, to the primary, or to a replica as far along).
    Watermark,
    /// A write that reads of the log see, other than an append (closing or reopening a
    /// stream): on the primary, and a read that must see this process's writes waits for it.
    LogChange,
}

impl Statement {
    /// A statement.
    pub fn new(what: &'static str, sql: impl Into<Cow<'static, str>>, params: Vec<Param>) -> Self {
        Self {
            what,
            sql: sql.into(),
            params,
            guard: false,
            routing: Routing::Primary,
        }
    }

    /// The same statement as a write that reads of the log see (see [`Routing::LogChange`]).
    #[must_use]
    pub fn changes_log(mut self) -> Self {
        self.routing = Routing::LogChange;
        self
    }

    /// The same statement as a read of the log, which may run on a replica.
    #[must_use]
    pub fn on_replica(mut self) -> Self {
        self.routing = Routing::Replica;
        self
    }

    /// The same statement as a guard of its transaction (see [`Statement::guard`]).
    #[must_use]
    pub fn guarded(mut self) -> Self {
        self.guard = true;
        self
    }
}

/// The SQL files every SQL adapter provides in `sql/queries/` (loaded by [`queries!`](crate::queries)), with the
/// parameters and result columns each one takes and gives. Positions are bound as the
/// [`Dialect`]'s position parameters (`(tx, seq)` or one offset) and read back the same way.
///
/// | file | parameters | columns |
/// |---|---|---|
/// | `read_all.sql` | position after, limit | an event (`Dialect::COLUMNS`), final events only, in log order |
/// | `read_all_backward.sql` | position before, limit | an event, final events only, newest first |
/// | `read_stream_forward.sql` | stream, from, limit, bound | an event; versions in `[from, bound)`, ascending |
/// | `read_stream_backward.sql` | stream, from, limit, bound | an event; versions in `(bound, from]`, descending |
/// | `stream_version.sql` | stream | `version` (NULL: no event), `closed` (1: closed, 0: open) |
/// | `streams.sql` | after (text), prefix, limit | the last event of each open stream, in byte order of ids |
/// | `closed_streams.sql` | after (text), prefix, limit | `stream`, `closed_at` (RFC 3339 text), in byte order |
/// | `close_stream.sql` | stream | — (affects 1 row when the stream was open; serialised with appends) |
/// | `reopen_stream.sql` | stream | — (affects 1 row when the stream was closed; serialised with appends) |
/// | `watermark.sql` | — | one integer, turned into a position by `Dialect::watermark` |
/// | `stats_counts.sql` | — | `events`, `streams`, `size` (bytes) |
/// | `stats_types.sql` | — | `namespace`, `event_type`, `count`, ordered by namespace and type |
/// | `checkpoint_load.sql` | name | the two parts of a position |
/// | `checkpoint_save.sql` | name, the two parts of a position | — (an upsert) |
/// | `checkpoint_list.sql` | — | name, the two parts of a position, ordered by name |
/// | `cache_get.sql` | aggregate, version, query, upcasters | state (JSON), the two parts of a position, subjects (a JSON array) |
/// | `cache_put.sql` | aggregate, version, query, upcasters, state (JSON), the two parts, subjects (JSON) | — (never moves an entry back) |
/// | `cache_delete.sql` | aggregate, version, query, upcasters | — |
/// | `cache_forget_subject.sql` | subject | — (removes every entry whose subjects hold it) |
/// | `keys_load.sql` | subject | master, nonce, wrapped (all NULL: forgotten) |
/// | `keys_create.sql` | subject, master, nonce, wrapped | — (nothing when the subject has a row) |
/// | `keys_forget.sql` | subject | — (clears an active key; affects 1 row when it did) |
/// | `keys_tombstone.sql` | subject | — (a row without a key, unless the subject has one) |
/// | `keys_replace.sql` | subject, new master, nonce, wrapped, old master, nonce, wrapped | — (affects 1 row when the old key was there) |
/// | `keys_active.sql` | after (text), limit | subject, master, nonce, wrapped, in byte order |
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct Queries {
    pub read_all: &'static str,
    pub read_all_backward: &'static str,
    pub read_stream_forward: &'static str,
    pub read_stream_backward: &'static str,
    pub stream_version: &'static str,
    pub streams: &'static str,
    pub closed_streams: &'static str,
    pub close_stream: &'static str,
    pub reopen_stream: &'static str,
    pub cache_forget_subject: &'static str,
    pub event_by_id: &'static str,
    pub watermark: &'static str,
    pub stats_counts: &'static str,
    pub stats_types: &'static str,
    pub checkpoint_load: &'static str,
    pub checkpoint_save: &'static str,
    pub checkpoint_list: &'static str,
    pub cache_get: &'static str,
    pub cache_put: &'static str,
    pub cache_delete: &'static str,
    pub keys_load: &'static str,
    pub keys_create: &'static str,
    pub keys_forget: &'static str,
    pub keys_tombstone: &'static str,
    pub keys_replace: &'static str,
    pub keys_active: &'static str,
}

/// The [`Queries`] of the calling crate, from its `sql/queries/` directory.
#[macro_export]
macro_rules! queries {
    () => {
        $crate::Queries {
            read_all: $crate::__query!("read_all"),
            read_all_backward: $crate::__query!("read_all_backward"),
            read_stream_forward: $crate::__query!("read_stream_forward"),
            read_stream_backward: $crate::__query!("read_stream_backward"),
            stream_version: $crate::__query!("stream_version"),
            streams: $crate::__query!("streams"),
            closed_streams: $crate::__query!("closed_streams"),
            close_stream: $crate::__query!("close_stream"),
            reopen_stream: $crate::__query!("reopen_stream"),
            cache_forget_subject: $crate::__query!("cache_forget_subject"),
            event_by_id: $crate::__query!("event_by_id"),
            watermark: $crate::__query!("watermark"),
            stats_counts: $crate::__query!("stats_counts"),
            stats_types: $crate::__query!("stats_types"),
            checkpoint_load: $crate::__query!("checkpoint_load"),
            checkpoint_save: $crate::__query!("checkpoint_save"),
            checkpoint_list: $crate::__query!("checkpoint_list"),
            cache_get: $crate::__query!("cache_get"),
            cache_put: $crate::__query!("cache_put"),
            cache_delete: $crate::__query!("cache_delete"),
            keys_load: $crate::__query!("keys_load"),
            keys_create: $crate::__query!("keys_create"),
            keys_forget: $crate::__query!("keys_forget"),
            keys_tombstone: $crate::__query!("keys_tombstone"),
            keys_replace: $crate::__query!("keys_replace"),
            keys_active: $crate::__query!("keys_active"),
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __query {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/sql/queries/",
            $name,
            ".sql"
        ))
    };
}

/// A numbered migration of the calling crate, from its `sql/` directory:
/// `migration!(1, "events", "001_events.sql")`.
#[macro_export]
macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        $crate::Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/", $file)),
        }
    };
}

/// A SQL backend: what [`impl_store!`](crate::impl_store) needs to implement
/// [`Store`](event_store::Store) and [`Checkpoints`](event_store::Checkpoints) with the generic
/// code of this crate.
pub trait Driver: Send + Sync + 'static {
    /// The backend's name in errors (`postgres`, `sqlite`, …).
    const BACKEND: &'static str;
    /// How the backend's SQL differs.
    type Dialect: Dialect;

    /// The backend's SQL files (`queries!()`).
    const QUERIES: Queries;

    /// Runs a query and decodes each row with `decode`.
    fn query<T: Send + 'static>(
        &self,
        statement: Statement,
        decode: Decode<T>,
    ) -> impl Future<Output = Result<Vec<T>>> + Send;

    /// [`Driver::query`] as a stream: each row is yielded as soon as it is decoded, and an error
    /// is the last item. Drivers that receive rows one by one override it; the default runs
    /// `query`.
    fn query_stream<T: Send + 'static>(
        &self,
        statement: Statement,
        decode: Decode<T>,
    ) -> impl Stream<Item = Result<T>> + Send + '_ {
        futures::stream::once(self.query(statement, decode)).flat_map(event_store::page_rows)
    }

    /// Runs a statement that writes (on the backend's write path); returns the rows it touched.
    fn execute(&self, statement: Statement) -> impl Future<Output = Result<u64>> + Send;

    /// Runs `statements` in order in one transaction (on the backend's write path). A
    /// [guard](Statement::guard) that touches no row rolls the transaction back, and the call
    /// returns `Ok(false)`; otherwise it commits and returns `Ok(true)`.
    fn transaction(&self, statements: Vec<Statement>) -> impl Future<Output = Result<bool>> + Send;

    /// Appends a validated batch (each backend has its own way to do it atomically).
    fn append(&self, batch: AppendBatch) -> impl Future<Output = Result<Appended>> + Send;

    /// Appends to several streams in one transaction, all or nothing, locking the streams in
    /// one global order (see [`Store::append_many`](event_store::Store::append_many)).
    fn append_many(
        &self,
        batches: MultiAppend,
    ) -> impl Future<Output = Result<Vec<Appended>>> + Send;

    /// The backend's change notifications (see [`Store::changes`](event_store::Store::changes)).
    fn changes(&self) -> watch::Receiver<u64>;
}
