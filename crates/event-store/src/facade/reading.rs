//! Reading streams, the global log and queries, and following the log live.

use std::collections::VecDeque;
use std::time::Duration;

use futures::future::Either;
use futures::{Stream, StreamExt as _};
use tokio::sync::watch;

use crate::backend::{Publish, Store};
use crate::cursor::{LogCursor, PAGE_SIZE, failed, paged};
use crate::error::Result;
use crate::facade::EventStore;
use crate::model::{Direction, Position, RecordedEvent, StreamId};
use crate::query::{CheckedQuery, Query};

impl<S: Store, C: Send + Sync + 'static, E: Publish> EventStore<S, C, E> {
    // ---- reading -------------------------------------------------------------------------

    /// The store, for a task to own.
    pub(super) fn shared(&self) -> Shared<S, C, E> {
        Shared(self.inner.clone())
    }

    /// The version of a stream's last event (`None`: no such stream).
    pub async fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        self.inner
            .store
            .stream_version(&StreamId::new(stream)?)
            .await
    }

    /// Reads up to `limit` events of a stream forward from version `from`.
    pub async fn read_stream_page(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let id = StreamId::new(stream)?;
        self.inner
            .store
            .read_stream(&id, from, Direction::Forward, limit)
            .await
    }

    /// Streams the events of a stream from version `from` (backward: from `from` down;
    /// `u64::MAX` for the last). Forward, inside a Tokio runtime, the stream is read ahead as
    /// [`read_all`](Self::read_all) reads the log; otherwise a page at a time.
    pub fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        crate::metrics::read("stream");
        let store = self.inner.store.clone();
        match (StreamId::new(stream), tokio::runtime::Handle::try_current()) {
            (Err(e), _) => Either::Left(failed(e)),
            (Ok(id), Ok(runtime)) if direction == Direction::Forward => Either::Right(
                Either::Left(read_ahead(&runtime, self.shared(), Ahead::Stream(id, from))),
            ),
            (Ok(id), _) => Either::Right(Either::Right(paged((id, from), move |(id, from)| {
                let store = store.clone();
                async move {
                    let page = store.read_stream(&id, from, direction, PAGE_SIZE).await?;
                    let next = page
                        .last()
                        .filter(|_| page.len() == PAGE_SIZE)
                        .and_then(|last| direction.after(last.version))
                        .map(|v| (id, v));
                    Ok((page, next))
                }
            }))),
        }
    }

    /// Streams the global log after `after`, up to its current end.
    ///
    /// Inside a Tokio runtime the log is read ahead on a task of its own, through
    /// [`Store::read_all_rows`] (rows decoded as they arrive, [`READ_AHEAD_CHUNK`] per query), into a
    /// buffer of at most [`READ_AHEAD`] events: the next events are fetched and decoded while the
    /// caller handles the current ones, and a slow caller holds back the reading, never the
    /// memory. Outside a runtime it reads a page at a time.
    pub fn read_all(
        &self,
        after: Position,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        crate::metrics::read("log");
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Either::Left(read_ahead(&runtime, self.shared(), Ahead::Log(after))),
            Err(_) => Either::Right(self.log_stream(after, None, false)),
        }
    }

    /// Streams the global log backward, newest first, from before `before` (`None`: from the
    /// end), a page at a time.
    pub fn read_all_backward(
        &self,
        before: Option<Position>,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        crate::metrics::read("log_backward");
        let store = self.inner.store.clone();
        paged(before, move |before| {
            let store = store.clone();
            async move {
                let page = store.read_all_backward(before, PAGE_SIZE).await?;
                let next = page
                    .last()
                    .filter(|_| page.len() == PAGE_SIZE)
                    .map(|last| Some(last.position));
                Ok((page, next))
            }
        })
    }

    /// Streams the events matching `query` after `after`, up to the current end; inside a Tokio
    /// runtime read ahead as [`read_all`](Self::read_all) reads the log.
    pub fn read_committed(
        &self,
        query: Query,
        after: Position,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        crate::metrics::read("query");
        match query.check() {
            Err(e) => Either::Left(failed(e)),
            Ok(query) => Either::Right(self.committed(query, after)),
        }
    }

    /// The committed events matching a checked `query` after `after`: read ahead inside a
    /// Tokio runtime, a page at a time outside one.
    pub(super) fn committed(
        &self,
        query: CheckedQuery,
        after: Position,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Either::Left(read_ahead(
                &runtime,
                self.shared(),
                Ahead::Committed(query, after),
            )),
            Err(_) => {
                let shared = self.shared();
                Either::Right(paged((query, after), move |(query, after)| {
                    let shared = Shared(shared.0.clone());
                    async move {
                        let page = shared.read_committed(&query, after, PAGE_SIZE).await?;
                        let next = page
                            .last()
                            .filter(|_| page.len() == PAGE_SIZE)
                            .map(|last| (query, last.position));
                        Ok((page, next))
                    }
                }))
            }
        }
    }

    /// Streams the *final* events matching `query` after `after`, up to the log's current
    /// end, filtered in the store. This is the read for followers that keep a checkpoint (a read
    /// model, a relay): once it returned an event, no matching event with a lower position can
    /// appear later, so the last position returned is a safe checkpoint. (`read_committed` is
    /// not: it may return an event before a lower one commits.)
    pub fn follow(
        &self,
        after: Position,
        query: Query,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        crate::metrics::read("follow");
        match query.check() {
            Err(e) => Either::Left(failed(e)),
            Ok(q) => Either::Right(self.log_stream(after, Some(q), false)),
        }
    }

    /// Follows the global log live from `after`: every event, in log order, as it becomes final;
    /// with a `filter`, only the matching ones (filtered in the store). Never ends by itself; a
    /// backend error is yielded and the tail goes on after the poll interval, from where it was.
    pub fn tail(
        &self,
        after: Position,
        filter: Option<Query>,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        crate::metrics::read("tail");
        match filter.map(Query::check).transpose() {
            Err(e) => Either::Left(failed(e)),
            Ok(q) => Either::Right(self.log_stream(after, q, true)),
        }
    }

    fn log_stream(
        &self,
        after: Position,
        filter: Option<CheckedQuery>,
        live: bool,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        struct St<S> {
            store: S,
            cursor: LogCursor,
            buf: VecDeque<RecordedEvent>,
            changes: watch::Receiver<u64>,
            live: bool,
            done: bool,
            failed: bool,
            poll: Duration,
        }
        let cursor = LogCursor::new(after);
        let st = St {
            changes: self.inner.store.changes(),
            store: self.inner.store.clone(),
            cursor: match filter {
                Some(q) => cursor.filtered(q),
                None => cursor,
            },
            buf: VecDeque::new(),
            live,
            done: false,
            failed: false,
            poll: self.inner.settings.poll_interval,
        };
        futures::stream::unfold(st, |mut st| async move {
            loop {
                if let Some(e) = st.buf.pop_front() {
                    return Some((Ok(e), st));
                }
                if st.done {
                    return None;
                }
                if std::mem::take(&mut st.failed) {
                    tokio::time::sleep(st.poll).await;
                }
                // Mark the current change as seen *before* reading, so a commit between the
                // read and the wait still wakes the wait.
                st.changes.borrow_and_update();
                match st.cursor.next_page(&st.store).await {
                    Err(e) => {
                        st.failed = true;
                        st.done = !st.live;
                        return Some((Err(e), st));
                    }
                    Ok(page) if page.is_empty() => {
                        if !st.live {
                            return None;
                        }
                        // Wake on a change, or poll; a closed channel means polling only.
                        let waited = tokio::time::timeout(st.poll, st.changes.changed()).await;
                        if matches!(waited, Ok(Err(_))) {
                            tokio::time::sleep(st.poll).await;
                        }
                    }
                    Ok(page) => {
                        if st.cursor.was_short(&page) && !st.live {
                            st.done = true;
                        }
                        st.buf.extend(page);
                    }
                }
            }
        })
    }
}

/// How many events the facade's forward reads ([`EventStore::read_all`], forward
/// [`EventStore::read_stream`], [`EventStore::read_committed`], and aggregate folds) read ahead of
/// their caller, at most.
pub const READ_AHEAD: usize = 1024;

/// How many events those reads ask the store for at a time ([`Store::read_all_rows`],
/// [`Store::read_stream_rows`], [`Store::read_committed_rows`]).
pub const READ_AHEAD_CHUNK: usize = 4096;

/// Events go through the channel in slices of this many, so the reader and the caller wake
/// each other once per slice rather than once per event.
const SLICE: usize = 128;

/// The facade's store, owned by a task whatever the store's type.
pub(super) struct Shared<S, C, E>(pub(super) std::sync::Arc<super::Inner<S, C, E>>);

impl<S, C, E> std::ops::Deref for Shared<S, C, E> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.0.store
    }
}

/// Where a read ahead is: after a position of the log, at a version of one stream, or after a
/// position among the events a query matches.
#[derive(Clone)]
pub(super) enum Ahead {
    /// The log after a position.
    Log(Position),
    /// A stream from a version.
    Stream(StreamId, u64),
    /// The committed events matching a query after a position.
    Committed(CheckedQuery, Position),
}

impl Ahead {
    /// Moves past `e`, or says why `e` cannot come next.
    fn advance(&mut self, e: &RecordedEvent) -> Result<()> {
        match self {
            Ahead::Log(after) | Ahead::Committed(_, after) if e.position > *after => {
                *after = e.position;
            }
            Ahead::Stream(id, from) if e.stream == id.as_str() && e.version == *from => {
                *from = e.version.saturating_add(1);
            }
            Ahead::Log(after) | Ahead::Committed(_, after) => {
                return Err(crate::Error::backend(
                    "store",
                    format!("a read after {after} returned an event at {}", e.position),
                ));
            }
            Ahead::Stream(id, from) => {
                return Err(crate::Error::backend(
                    "store",
                    format!(
                        "reading {id} from version {from} returned {} version {}",
                        e.stream, e.version
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The log, a stream or a query, read forward from `from` on a task of `runtime` into a bounded
/// channel.
pub(super) fn read_ahead<S, H>(
    runtime: &tokio::runtime::Handle,
    store: H,
    from: Ahead,
) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static + use<S, H>
where
    S: Store,
    H: std::ops::Deref<Target = S> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Result<RecordedEvent>>>(READ_AHEAD / SLICE);
    runtime.spawn(async move {
        let store = &*store;
        let mut at = from;
        let mut slice = Vec::with_capacity(SLICE);
        loop {
            let mut read = 0;
            let start = at.clone();
            let mut rows = std::pin::pin!(match &start {
                Ahead::Log(after) => {
                    Either::Left(Either::Left(store.read_all_rows(*after, READ_AHEAD_CHUNK)))
                }
                Ahead::Stream(id, from) => Either::Left(Either::Right(store.read_stream_rows(
                    id,
                    *from,
                    Direction::Forward,
                    READ_AHEAD_CHUNK,
                ))),
                Ahead::Committed(query, after) => {
                    Either::Right(store.read_committed_rows(query, *after, READ_AHEAD_CHUNK))
                }
            });
            while let Some(row) = rows.next().await {
                let row = row.and_then(|e| at.advance(&e).map(|()| e));
                let failed = row.is_err();
                read += 1;
                slice.push(row);
                if failed {
                    // The error is the stream's last item.
                    let _ = tx.send(slice).await;
                    return;
                }
                if slice.len() == SLICE
                    && tx
                        .send(std::mem::replace(&mut slice, Vec::with_capacity(SLICE)))
                        .await
                        .is_err()
                {
                    return; // The caller dropped the stream.
                }
            }
            if read < READ_AHEAD_CHUNK {
                break;
            }
        }
        if !slice.is_empty() {
            let _ = tx.send(slice).await;
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        let slice = rx.recv().await?;
        Some((futures::stream::iter(slice), rx))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;
    use futures::executor::block_on;

    use crate::{Direction, EventStore, ExpectedVersion, MemoryStore, NewEvent, Position};

    /// Outside a Tokio runtime nothing can read ahead: the log and a stream are read a page at a
    /// time, with the same result.
    #[test]
    fn without_a_runtime_reads_page_by_page() {
        let es = EventStore::from_store(MemoryStore::new());
        let n = crate::PAGE_SIZE * 2 + 7;
        for i in 0..n {
            let event = NewEvent::new("t", "E", serde_json::json!({"i": i}));
            block_on(es.append("s", ExpectedVersion::Any, vec![event])).expect("append");
        }
        let log: Vec<u64> = block_on(
            es.read_all(Position::START)
                .map(|e| e.expect("read").version)
                .collect(),
        );
        assert_eq!(log, (0..n as u64).collect::<Vec<_>>());
        let stream: Vec<u64> = block_on(
            es.read_stream("s", 5, Direction::Forward)
                .map(|e| e.expect("read").version)
                .collect(),
        );
        assert_eq!(stream, (5..n as u64).collect::<Vec<_>>());
    }
}
