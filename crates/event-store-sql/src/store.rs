//! The store, checkpoints and cache, written once over a [`Driver`]; an adapter binds them to its
//! type with [`impl_store!`](crate::impl_store) and [`impl_cache!`](crate::impl_cache).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use event_store::{
    CacheKey, CachedState, CheckedQuery, CheckpointName, ClosedStream, Direction, Error, Position,
    RecordedEvent, Result, StoreStats, StreamId, TypeCount,
};

use crate::compile::{Dialect, Finality, Param, compile};
use crate::convert::{clamp, limit, position_parts, unsigned};
use crate::driver::{Driver, SqlRow, Statement, required};
use crate::row::EventRow;

/// The most events one stream read returns (a larger limit is cut to it).
pub const MAX_STREAM_PAGE: usize = 100_000;

/// An event in the columns of [`Dialect::COLUMNS`].
pub fn event<D: Driver>(row: &dyn SqlRow) -> Result<RecordedEvent> {
    let b = D::BACKEND;
    let (position, i) = D::Dialect::event_position(b, row)?;
    EventRow {
        position,
        id: row.uuid(i, "id")?,
        stream: required(b, "stream", row.text(i + 1, "stream")?)?,
        version: required(b, "version", row.int(i + 2, "version")?)?,
        namespace: required(b, "namespace", row.text(i + 3, "namespace")?)?,
        event_type: required(b, "event_type", row.text(i + 4, "event_type")?)?,
        data: required(b, "data", row.json(i + 5, "data")?)?,
        context: row.context(i + 6, "context")?,
    }
    .into_recorded(b)
}

/// A position stored in two columns from `index` (checkpoints, cache entries).
pub fn position_columns<D: Driver>(row: &dyn SqlRow, index: usize) -> Result<Position> {
    let b = D::BACKEND;
    let high = required(b, "high", row.int(index, "high")?)?;
    let low = required(b, "low", row.int(index + 1, "low")?)?;
    Ok(Position::from_parts(
        unsigned(b, "high", high)?,
        unsigned(b, "low", low)?,
    ))
}

fn with_limit(mut params: Vec<Param>, n: usize) -> Vec<Param> {
    params.push(Param::Int(limit(n)));
    params
}

/// [`Store::read_stream`](event_store::Store::read_stream): a page bounded by its version
/// window (versions are consecutive), so no plan reads more than a page.
pub async fn read_stream<D: Driver>(
    d: &D,
    stream: &StreamId,
    from: u64,
    direction: Direction,
    n: usize,
) -> Result<Vec<RecordedEvent>> {
    let from = match direction {
        Direction::Forward => from,
        // Start at or below the stream's last version, so the window holds the page.
        Direction::Backward => match stream_version(d, stream).await? {
            Some(last) => from.min(last),
            None => return Ok(Vec::new()),
        },
    };
    let page = d
        .query(stream_page::<D>(stream, from, direction, n), event::<D>)
        .await?;
    if page.is_empty() && direction == Direction::Forward {
        // A closed stream reads as no rows: tell it from an empty page.
        stream_version(d, stream).await?;
    }
    Ok(page)
}

/// [`Store::read_stream_rows`](event_store::Store::read_stream_rows): forward, the page of
/// [`read_stream`] streamed; backward, that page.
pub fn read_stream_rows<'a, D: Driver>(
    d: &'a D,
    stream: &StreamId,
    from: u64,
    direction: Direction,
    n: usize,
) -> impl futures::Stream<Item = Result<RecordedEvent>> + Send + 'a {
    use futures::StreamExt as _;
    match direction {
        Direction::Forward => {
            // A closed stream reads as no rows: after an empty page, tell it from an empty one.
            let seen = Arc::new(AtomicBool::new(false));
            let saw = Arc::clone(&seen);
            let page = stream_page::<D>(stream, from, direction, n);
            let stream = stream.clone();
            let closed = futures::stream::once(async move {
                if seen.load(Ordering::Relaxed) {
                    return None;
                }
                stream_version(d, &stream).await.err().map(Err)
            })
            .filter_map(std::future::ready);
            d.query_stream(page, event::<D>)
                .inspect(move |_| saw.store(true, Ordering::Relaxed))
                .chain(closed)
                .left_stream()
        }
        Direction::Backward => {
            let stream = stream.clone();
            futures::stream::once(async move { read_stream(d, &stream, from, direction, n).await })
                .flat_map(event_store::page_rows)
                .right_stream()
        }
    }
}

/// The statement reading up to `n` events of `stream` from version `from` (backward: `from`
/// is at or below the last version).
fn stream_page<D: Driver>(
    stream: &StreamId,
    from: u64,
    direction: Direction,
    n: usize,
) -> Statement {
    let n = n.min(MAX_STREAM_PAGE);
    let q = &D::QUERIES;
    let from = clamp(from);
    let (sql, bound) = match direction {
        Direction::Forward => (q.read_stream_forward, from.saturating_add(limit(n))),
        Direction::Backward => (q.read_stream_backward, from.saturating_sub(limit(n))),
    };
    let params = vec![
        Param::Text(stream.as_str().to_owned()),
        Param::Int(from),
        Param::Int(limit(n)),
        Param::Int(bound),
    ];
    Statement::new("read stream", sql, params).on_replica()
}

/// [`Store::read_all`](event_store::Store::read_all).
pub async fn read_all<D: Driver>(d: &D, after: Position, n: usize) -> Result<Vec<RecordedEvent>> {
    let params = with_limit(D::Dialect::position_params(after), n);
    let statement = Statement::new("read all", D::QUERIES.read_all, params).on_replica();
    d.query(statement, event::<D>).await
}

/// [`Store::read_all_rows`](event_store::Store::read_all_rows): the page of [`read_all`], streamed.
pub fn read_all_rows<D: Driver>(
    d: &D,
    after: Position,
    n: usize,
) -> impl futures::Stream<Item = Result<RecordedEvent>> + Send + '_ {
    let params = with_limit(D::Dialect::position_params(after), n);
    d.query_stream(
        Statement::new("read all", D::QUERIES.read_all, params).on_replica(),
        event::<D>,
    )
}

/// [`Store::read_all_backward`](event_store::Store::read_all_backward).
pub async fn read_all_backward<D: Driver>(
    d: &D,
    before: Option<Position>,
    n: usize,
) -> Result<Vec<RecordedEvent>> {
    let before = before.unwrap_or(Position::from_parts(u64::MAX, u64::MAX));
    let params = with_limit(D::Dialect::position_params(before), n);
    let statement =
        Statement::new("read all backward", D::QUERIES.read_all_backward, params).on_replica();
    d.query(statement, event::<D>).await
}

/// [`Store::stats`](event_store::Store::stats).
pub async fn stats<D: Driver>(d: &D) -> Result<StoreStats> {
    let b = D::BACKEND;
    let counts = d
        .query(
            Statement::new("stats", D::QUERIES.stats_counts, Vec::new()).on_replica(),
            |r| {
                let count = |i: usize, name: &str| -> Result<u64> {
                    unsigned(
                        D::BACKEND,
                        name,
                        required(D::BACKEND, name, r.int(i, name)?)?,
                    )
                };
                Ok((count(0, "events")?, count(1, "streams")?, count(2, "size")?))
            },
        )
        .await?;
    let (events, streams, size) = counts
        .into_iter()
        .next()
        .ok_or_else(|| event_store::Error::backend(b, "the stats query returned no row"))?;
    let types = d
        .query(
            Statement::new("stats", D::QUERIES.stats_types, Vec::new()).on_replica(),
            |r| {
                let b = D::BACKEND;
                Ok(TypeCount {
                    namespace: required(b, "namespace", r.text(0, "namespace")?)?,
                    event_type: required(b, "event_type", r.text(1, "event_type")?)?,
                    events: unsigned(b, "count", required(b, "count", r.int(2, "count")?)?)?,
                })
            },
        )
        .await?;
    let head = read_all_backward(d, None, 1)
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

/// [`Store::read_final`](event_store::Store::read_final).
pub async fn read_final<D: Driver>(
    d: &D,
    query: &CheckedQuery,
    after: Position,
    n: usize,
) -> Result<Vec<RecordedEvent>> {
    read_matching(d, query, after, n, Finality::Final).await
}

/// [`Store::read_committed`](event_store::Store::read_committed).
pub async fn read_committed<D: Driver>(
    d: &D,
    query: &CheckedQuery,
    after: Position,
    n: usize,
) -> Result<Vec<RecordedEvent>> {
    read_matching(d, query, after, n, Finality::Committed).await
}

/// [`Store::read_committed_rows`](event_store::Store::read_committed_rows): the page of
/// [`read_committed`], streamed when the dialect compiles the whole query to SQL (when it leaves
/// equalities to Rust, the page is read as `read_committed` reads it).
pub fn read_committed_rows<'a, D: Driver>(
    d: &'a D,
    query: &'a CheckedQuery,
    after: Position,
    n: usize,
) -> impl futures::Stream<Item = Result<RecordedEvent>> + Send + 'a {
    use futures::StreamExt as _;
    let compiled = compile::<D::Dialect>(query, after, n, Finality::Committed);
    if compiled.filter_rows {
        futures::stream::once(read_committed(d, query, after, n))
            .flat_map(event_store::page_rows)
            .right_stream()
    } else {
        let statement = Statement::new("read query", compiled.sql, compiled.params).on_replica();
        d.query_stream(statement, event::<D>).left_stream()
    }
}

/// Events matching `query` after `after`. When the dialect leaves `subject` and `data`
/// equalities to Rust, candidates are read in chunks until `n` match.
async fn read_matching<D: Driver>(
    d: &D,
    query: &CheckedQuery,
    after: Position,
    n: usize,
    finality: Finality,
) -> Result<Vec<RecordedEvent>> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let probe = compile::<D::Dialect>(query, cursor, n, finality);
        let chunk = if probe.filter_rows { n.max(256) } else { n };
        let compiled = compile::<D::Dialect>(query, cursor, chunk, finality);
        let statement = Statement::new("read query", compiled.sql, compiled.params).on_replica();
        let rows = d.query(statement, event::<D>).await?;
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
}

/// [`Store::stream_version`](event_store::Store::stream_version).
/// A closed stream is [`Error::StreamClosed`].
pub async fn stream_version<D: Driver>(d: &D, stream: &StreamId) -> Result<Option<u64>> {
    let params = vec![Param::Text(stream.as_str().to_owned())];
    let statement =
        Statement::new("stream version", D::QUERIES.stream_version, params).on_replica();
    let rows = d
        .query(statement, |r| {
            Ok((r.int(0, "version")?, r.int(1, "closed")?))
        })
        .await?;
    let (version, closed) = rows.into_iter().next().unwrap_or((None, None));
    if closed.unwrap_or(0) != 0 {
        return Err(Error::StreamClosed {
            stream: stream.as_str().to_owned(),
        });
    }
    version
        .map(|v| unsigned(D::BACKEND, "version", v))
        .transpose()
}

/// [`Store::close_stream`](event_store::Store::close_stream): the adapter's
/// `close_stream.sql` or `reopen_stream.sql`, which take the stream's append lock.
pub async fn close_stream<D: Driver>(d: &D, stream: &StreamId, closed: bool) -> Result<bool> {
    let (what, sql) = if closed {
        ("close stream", D::QUERIES.close_stream)
    } else {
        ("reopen stream", D::QUERIES.reopen_stream)
    };
    let params = vec![Param::Text(stream.as_str().to_owned())];
    Ok(d.execute(Statement::new(what, sql, params).changes_log())
        .await?
        > 0)
}

/// [`Store::closed_streams`](event_store::Store::closed_streams).
pub async fn closed_streams<D: Driver>(
    d: &D,
    prefix: &str,
    after: Option<&StreamId>,
    n: usize,
) -> Result<Vec<ClosedStream>> {
    let params = vec![
        Param::Text(after.map_or_else(String::new, |a| a.as_str().to_owned())),
        Param::Text(prefix.to_owned()),
        Param::Int(limit(n)),
    ];
    let statement =
        Statement::new("closed streams", D::QUERIES.closed_streams, params).on_replica();
    d.query(statement, |r| {
        let stream = required(D::BACKEND, "stream", r.text(0, "stream")?)?;
        let at = required(D::BACKEND, "closed_at", r.text(1, "closed_at")?)?;
        let closed_at = chrono::DateTime::parse_from_rfc3339(&at)
            .map_err(|e| Error::backend_with(D::BACKEND, format!("reading `closed_at` {at:?}"), e))?
            .with_timezone(&chrono::Utc);
        Ok(ClosedStream { stream, closed_at })
    })
    .await
}

/// [`Store::read_event`](event_store::Store::read_event).
pub async fn read_event<D: Driver>(d: &D, id: uuid::Uuid) -> Result<Option<RecordedEvent>> {
    let params = vec![Param::Text(id.to_string())];
    let rows = d
        .query(
            Statement::new("event by id", D::QUERIES.event_by_id, params).on_replica(),
            event::<D>,
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// [`Store::streams`](event_store::Store::streams): the query's rows are each listed stream's
/// last event.
pub async fn streams<D: Driver>(
    d: &D,
    prefix: &str,
    after: Option<&StreamId>,
    n: usize,
) -> Result<Vec<event_store::StreamInfo>> {
    // Stream ids are never empty, so every id is after "".
    let params = vec![
        Param::Text(after.map_or_else(String::new, |a| a.as_str().to_owned())),
        Param::Text(prefix.to_owned()),
        Param::Int(limit(n)),
    ];
    let last = d
        .query(
            Statement::new("streams", D::QUERIES.streams, params).on_replica(),
            event::<D>,
        )
        .await?;
    Ok(last.iter().map(event_store::StreamInfo::of_last).collect())
}

/// [`Store::watermark`](event_store::Store::watermark).
pub async fn watermark<D: Driver>(d: &D) -> Result<Position> {
    let rows = d
        .query(
            Statement {
                routing: crate::Routing::Watermark,
                ..Statement::new("watermark", D::QUERIES.watermark, Vec::new())
            },
            |r| required(D::BACKEND, "watermark", r.int(0, "watermark")?),
        )
        .await?;
    let value = rows.into_iter().next().ok_or_else(|| {
        event_store::Error::backend(D::BACKEND, "the watermark query returned no row")
    })?;
    D::Dialect::watermark(D::BACKEND, value)
}

/// [`Checkpoints::load_checkpoint`](event_store::Checkpoints::load_checkpoint).
pub async fn load_checkpoint<D: Driver>(d: &D, name: &CheckpointName) -> Result<Option<Position>> {
    let params = vec![Param::Text(name.as_str().to_owned())];
    let statement = Statement::new("load checkpoint", D::QUERIES.checkpoint_load, params);
    let rows = d.query(statement, |r| position_columns::<D>(r, 0)).await?;
    Ok(rows.into_iter().next())
}

/// [`Checkpoints::save_checkpoint`](event_store::Checkpoints::save_checkpoint).
pub async fn save_checkpoint<D: Driver>(d: &D, name: &CheckpointName, at: Position) -> Result<()> {
    let (high, low) = position_parts(at);
    let params = vec![
        Param::Text(name.as_str().to_owned()),
        Param::Int(high),
        Param::Int(low),
    ];
    let statement = Statement::new("save checkpoint", D::QUERIES.checkpoint_save, params);
    d.execute(statement).await.map(drop)
}

/// [`Checkpoints::checkpoints`](event_store::Checkpoints::checkpoints).
pub async fn checkpoints<D: Driver>(d: &D) -> Result<Vec<(CheckpointName, Position)>> {
    let statement = Statement::new("list checkpoints", D::QUERIES.checkpoint_list, Vec::new());
    d.query(statement, |r| {
        let name = required(D::BACKEND, "name", r.text(0, "name")?)?;
        Ok((CheckpointName::new(name)?, position_columns::<D>(r, 1)?))
    })
    .await
}

/// [`Cache::get`](event_store::Cache::get).
pub async fn cache_get<D: Driver>(d: &D, key: &CacheKey) -> Result<Option<CachedState>> {
    let params = vec![
        Param::Text(key.aggregate.clone()),
        Param::Int(i64::from(key.version)),
        Param::Text(key.query.clone()),
        Param::Int(key.upcasters.cast_signed()),
    ];
    let rows = d
        .query(
            Statement::new("cache get", D::QUERIES.cache_get, params),
            |r| {
                let subjects = required(D::BACKEND, "subjects", r.json(3, "subjects")?)?;
                let subjects = serde_json::from_value(subjects).map_err(|e| {
                    Error::backend_with(D::BACKEND, "reading a cached state's `subjects`", e)
                })?;
                Ok(CachedState {
                    state: required(D::BACKEND, "state", r.json(0, "state")?)?,
                    checkpoint: position_columns::<D>(r, 1)?,
                    subjects,
                })
            },
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// [`Cache::put`](event_store::Cache::put): the SQL never moves an entry backwards.
pub async fn cache_put<D: Driver>(d: &D, key: &CacheKey, entry: CachedState) -> Result<()> {
    let (high, low) = position_parts(entry.checkpoint);
    let params = vec![
        Param::Text(key.aggregate.clone()),
        Param::Int(i64::from(key.version)),
        Param::Text(key.query.clone()),
        Param::Int(key.upcasters.cast_signed()),
        Param::Json(entry.state),
        Param::Int(high),
        Param::Int(low),
        Param::Json(serde_json::Value::from(entry.subjects)),
    ];
    d.execute(Statement::new("cache put", D::QUERIES.cache_put, params))
        .await
        .map(drop)
}

/// [`Cache::invalidate`](event_store::Cache::invalidate).
pub async fn cache_delete<D: Driver>(d: &D, key: &CacheKey) -> Result<()> {
    let params = vec![
        Param::Text(key.aggregate.clone()),
        Param::Int(i64::from(key.version)),
        Param::Text(key.query.clone()),
        Param::Int(key.upcasters.cast_signed()),
    ];
    d.execute(Statement::new(
        "cache invalidate",
        D::QUERIES.cache_delete,
        params,
    ))
    .await
    .map(drop)
}

/// [`Cache::forget_subject`](event_store::Cache::forget_subject).
pub async fn cache_forget_subject<D: Driver>(d: &D, subject: &str) -> Result<u64> {
    let params = vec![Param::Text(subject.to_owned())];
    d.execute(Statement::new(
        "cache forget subject",
        D::QUERIES.cache_forget_subject,
        params,
    ))
    .await
}

/// Implements [`Store`](event_store::Store) and [`Checkpoints`](event_store::Checkpoints) for a
/// type that implements [`Driver`], with the generic code of this crate. (The orphan rule
/// forbids a blanket implementation; this is the one line an adapter writes instead.)
#[macro_export]
macro_rules! impl_store {
    ($t:ty) => {
        impl ::event_store::Store for $t {
            fn append(
                &self,
                batch: ::event_store::AppendBatch,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<::event_store::Appended>>
            + Send {
                $crate::Driver::append(self, batch)
            }
            fn append_many(
                &self,
                batches: ::event_store::MultiAppend,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<::std::vec::Vec<::event_store::Appended>>,
            > + Send {
                $crate::Driver::append_many(self, batches)
            }
            fn read_stream(
                &self,
                stream: &::event_store::StreamId,
                from: u64,
                direction: ::event_store::Direction,
                limit: usize,
            ) -> impl ::std::future::Future<Output = $crate::__private::Events> + Send {
                $crate::store::read_stream(self, stream, from, direction, limit)
            }
            fn read_all(
                &self,
                after: ::event_store::Position,
                limit: usize,
            ) -> impl ::std::future::Future<Output = $crate::__private::Events> + Send {
                $crate::store::read_all(self, after, limit)
            }
            fn read_stream_rows<'a>(
                &'a self,
                stream: &'a ::event_store::StreamId,
                from: u64,
                direction: ::event_store::Direction,
                limit: usize,
            ) -> impl $crate::__private::Stream<
                Item = ::event_store::Result<::event_store::RecordedEvent>,
            > + Send + 'a {
                $crate::store::read_stream_rows(self, stream, from, direction, limit)
            }
            fn read_all_rows(
                &self,
                after: ::event_store::Position,
                limit: usize,
            ) -> impl $crate::__private::Stream<
                Item = ::event_store::Result<::event_store::RecordedEvent>,
            > + Send + '_ {
                $crate::store::read_all_rows(self, after, limit)
            }
            fn read_all_backward(
                &self,
                before: ::std::option::Option<::event_store::Position>,
                limit: usize,
            ) -> impl ::std::future::Future<Output = $crate::__private::Events> + Send {
                $crate::store::read_all_backward(self, before, limit)
            }
            fn stats(
                &self,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<::event_store::StoreStats>>
            + Send {
                $crate::store::stats(self)
            }
            fn read_event(
                &self,
                id: ::uuid::Uuid,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<::std::option::Option<::event_store::RecordedEvent>>,
            > + Send {
                $crate::store::read_event(self, id)
            }
            fn streams(
                &self,
                prefix: &str,
                after: ::std::option::Option<&::event_store::StreamId>,
                limit: usize,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<::std::vec::Vec<::event_store::StreamInfo>>,
            > + Send {
                $crate::store::streams(self, prefix, after, limit)
            }
            fn read_final(
                &self,
                query: &::event_store::CheckedQuery,
                after: ::event_store::Position,
                limit: usize,
            ) -> impl ::std::future::Future<Output = $crate::__private::Events> + Send {
                $crate::store::read_final(self, query, after, limit)
            }
            fn read_committed(
                &self,
                query: &::event_store::CheckedQuery,
                after: ::event_store::Position,
                limit: usize,
            ) -> impl ::std::future::Future<Output = $crate::__private::Events> + Send {
                $crate::store::read_committed(self, query, after, limit)
            }
            fn read_committed_rows<'a>(
                &'a self,
                query: &'a ::event_store::CheckedQuery,
                after: ::event_store::Position,
                limit: usize,
            ) -> impl $crate::__private::Stream<
                Item = ::event_store::Result<::event_store::RecordedEvent>,
            > + Send + 'a {
                $crate::store::read_committed_rows(self, query, after, limit)
            }
            fn stream_version(
                &self,
                stream: &::event_store::StreamId,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<::std::option::Option<u64>>>
            + Send {
                $crate::store::stream_version(self, stream)
            }
            fn watermark(
                &self,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<::event_store::Position>>
            + Send {
                $crate::store::watermark(self)
            }
            fn changes(&self) -> $crate::__private::watch::Receiver<u64> {
                $crate::Driver::changes(self)
            }
            fn close_stream(
                &self,
                stream: &::event_store::StreamId,
                closed: bool,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<bool>> + Send {
                $crate::store::close_stream(self, stream, closed)
            }
            fn closed_streams(
                &self,
                prefix: &str,
                after: ::std::option::Option<&::event_store::StreamId>,
                limit: usize,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<::std::vec::Vec<::event_store::ClosedStream>>,
            > + Send {
                $crate::store::closed_streams(self, prefix, after, limit)
            }
        }

        impl ::event_store::Checkpoints for $t {
            fn load_checkpoint(
                &self,
                name: &::event_store::CheckpointName,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<::std::option::Option<::event_store::Position>>,
            > + Send {
                $crate::store::load_checkpoint(self, name)
            }
            fn save_checkpoint(
                &self,
                name: &::event_store::CheckpointName,
                position: ::event_store::Position,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<()>> + Send {
                $crate::store::save_checkpoint(self, name, position)
            }
            fn checkpoints(
                &self,
            ) -> impl ::std::future::Future<Output = $crate::__private::Named> + Send {
                $crate::store::checkpoints(self)
            }
        }
    };
}

/// Implements [`Cache`](event_store::Cache) for a type whose field `$field` is a [`Driver`].
#[macro_export]
macro_rules! impl_cache {
    ($t:ty, $field:ident) => {
        impl ::event_store::Cache for $t {
            fn get(
                &self,
                key: &::event_store::CacheKey,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<::std::option::Option<::event_store::CachedState>>,
            > + Send {
                $crate::store::cache_get(&self.$field, key)
            }
            fn put(
                &self,
                key: &::event_store::CacheKey,
                entry: ::event_store::CachedState,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<()>> + Send {
                $crate::store::cache_put(&self.$field, key, entry)
            }
            fn invalidate(
                &self,
                key: &::event_store::CacheKey,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<()>> + Send {
                $crate::store::cache_delete(&self.$field, key)
            }
            fn forget_subject(
                &self,
                subject: &str,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<u64>> + Send {
                $crate::store::cache_forget_subject(&self.$field, subject)
            }
        }
    };
}
