//! Reading streams, the global log and queries, and following the log live.

use std::collections::VecDeque;
use std::time::Duration;

use futures::Stream;
use futures::future::Either;
use tokio::sync::watch;

use crate::backend::{Publish, Store};
use crate::cursor::{LogCursor, PAGE_SIZE, failed, paged};
use crate::error::Result;
use crate::facade::EventStore;
use crate::model::{Direction, Position, RecordedEvent, StreamId};
use crate::query::{CheckedQuery, Query};

impl<S: Store, C: Send + Sync + 'static, E: Publish> EventStore<S, C, E> {
    // ---- reading -------------------------------------------------------------------------

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
    /// `u64::MAX` for the last), a page at a time.
    pub fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        let store = self.inner.store.clone();
        match StreamId::new(stream) {
            Err(e) => Either::Left(failed(e)),
            Ok(id) => Either::Right(paged((id, from), move |(id, from)| {
                let store = store.clone();
                async move {
                    let page = store.read_stream(&id, from, direction, PAGE_SIZE).await?;
                    let next = page
                        .last()
                        .filter(|_| page.len() == PAGE_SIZE)
                        .and_then(|last| match direction {
                            Direction::Forward => last.version.checked_add(1),
                            Direction::Backward => last.version.checked_sub(1),
                        })
                        .map(|v| (id, v));
                    Ok((page, next))
                }
            })),
        }
    }

    /// Streams the global log after `after`, up to its current end, a page at a time.
    pub fn read_all(
        &self,
        after: Position,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        self.log_stream(after, None, false)
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

    /// Streams the events matching `query` after `after`, up to the current end.
    pub fn read_committed(
        &self,
        query: Query,
        after: Position,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static
    where
        S: Clone,
    {
        let store = self.inner.store.clone();
        match query.check() {
            Err(e) => Either::Left(failed(e)),
            Ok(query) => Either::Right(paged((query, after), move |(query, after)| {
                let store = store.clone();
                async move {
                    let page = store.read_committed(&query, after, PAGE_SIZE).await?;
                    let next = page
                        .last()
                        .filter(|_| page.len() == PAGE_SIZE)
                        .map(|last| (query, last.position));
                    Ok((page, next))
                }
            })),
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
