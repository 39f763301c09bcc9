//! Reading page by page: the one "read a page, move the cursor" loop behind the facade's
//! streams, the CLI's reads and exports, the relay, and every lag count.

use std::collections::VecDeque;
use std::future::Future;

use futures::Stream;

use crate::backend::Store;
use crate::error::{Error, Result};
use crate::model::{Position, RecordedEvent};
use crate::query::CheckedQuery;

/// How many events one backend call reads.
pub const PAGE_SIZE: usize = 512;

/// A place in the global log that moves forward a page at a time, over final events only
/// ([`Store::read_all`], or [`Store::read_final`] with a filter): after a page has been
/// handled, [`LogCursor::position`] is a checkpoint to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct LogCursor {
    after: Position,
    page: usize,
    filter: Option<CheckedQuery>,
}

impl LogCursor {
    /// A cursor after `after`, reading [`PAGE_SIZE`] events at a time.
    pub fn new(after: Position) -> Self {
        Self::with_page(after, PAGE_SIZE)
    }

    /// A cursor after `after`, reading `page` events at a time (at least 1).
    pub fn with_page(after: Position, page: usize) -> Self {
        Self {
            after,
            page: page.max(1),
            filter: None,
        }
    }

    /// The same cursor, reading only the events `filter` matches (filtered in the store).
    #[must_use]
    pub fn filtered(mut self, filter: CheckedQuery) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The position of the last event read (where the next page starts after).
    pub fn position(&self) -> Position {
        self.after
    }

    /// The next page of final events, moving the cursor past it; empty when the log holds
    /// nothing newer yet.
    pub async fn next_page<S: Store>(&mut self, store: &S) -> Result<Vec<RecordedEvent>> {
        let page = match &self.filter {
            Some(q) => store.read_final(q, self.after, self.page).await?,
            None => store.read_all(self.after, self.page).await?,
        };
        if let Some(last) = page.last() {
            if last.position <= self.after {
                return Err(Error::backend(
                    "store",
                    format!(
                        "read_all after {} returned an event at {}",
                        self.after, last.position
                    ),
                ));
            }
            self.after = last.position;
        }
        Ok(page)
    }

    /// Whether the last page was shorter than a full one (the log's end was reached then).
    pub fn was_short(&self, page: &[RecordedEvent]) -> bool {
        page.len() < self.page
    }
}

/// How many final events follow `after`, counting at most `cap` (a follower's lag).
pub async fn lag<S: Store>(store: &S, after: Position, cap: u64) -> Result<u64> {
    let mut cursor = LogCursor::with_page(after, 1000);
    let mut n = 0u64;
    while n < cap {
        let page = cursor.next_page(store).await?;
        if page.is_empty() {
            break;
        }
        n += page.len() as u64;
    }
    Ok(n.min(cap))
}

/// The position of the last final event (`Position::START` for an empty log).
pub async fn head<S: Store>(store: &S) -> Result<Position> {
    Ok(store
        .read_all_backward(None, 1)
        .await?
        .first()
        .map_or(Position::START, |e| e.position))
}

/// Items read a page at a time from `start`: `fetch(cursor)` reads a page and says where the
/// following one starts (`None`: that page was the last). An error ends the stream after it is
/// yielded.
pub(crate) fn paged<C, T, F, Fut>(start: C, fetch: F) -> impl Stream<Item = Result<T>> + Send
where
    C: Send,
    T: Send,
    F: FnMut(C) -> Fut + Send,
    Fut: Future<Output = Result<(Vec<T>, Option<C>)>> + Send,
{
    struct St<C, T, F> {
        cursor: Option<C>,
        buf: VecDeque<T>,
        fetch: F,
    }
    let st = St {
        cursor: Some(start),
        buf: VecDeque::new(),
        fetch,
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(item) = st.buf.pop_front() {
                return Some((Ok(item), st));
            }
            let cursor = st.cursor.take()?;
            match (st.fetch)(cursor).await {
                Err(e) => return Some((Err(e), st)),
                Ok((page, next)) => {
                    st.cursor = next;
                    st.buf.extend(page);
                }
            }
        }
    })
}

/// A page read in one call, as a stream of its items: each item in order, or the call's error
/// as the only item. The default `Store::*_rows` methods read a page and stream it this way;
/// adapters that read a page where they cannot stream rows do the same.
pub fn page_rows<T: Send>(page: Result<Vec<T>>) -> impl Stream<Item = Result<T>> + Send {
    use futures::StreamExt as _;
    match page {
        Ok(items) => futures::stream::iter(items).map(Ok).left_stream(),
        Err(e) => futures::stream::once(std::future::ready(Err(e))).right_stream(),
    }
}

/// One error as a stream, for a reading method whose input was refused.
pub(crate) fn failed<T: Send>(e: Error) -> impl Stream<Item = Result<T>> + Send {
    futures::stream::once(async move { Err(e) })
}
