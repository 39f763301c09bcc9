//! Folding aggregates through the cache.

use std::sync::atomic::Ordering;

use crate::aggregate::Aggregate;
use crate::backend::{CacheKey, Publish, StateCache, Store};
use crate::error::{Error, Result};
use crate::event::Events;
use crate::facade::{EventStore, Folded, Undecodable};
use crate::model::{Position, RecordedEvent, StreamId};
use crate::query::CheckedQuery;
use futures::StreamExt as _;

/// How many times a fold re-reads when its stream grew while it was folding.
const VERSION_ATTEMPTS: u32 = 16;

/// What reading events into a state produced.
struct FoldPass<A> {
    state: A,
    after: Position,
    /// The state and position to cache (every earlier event final), if any.
    safe: Option<(A, Position)>,
    events_read: u64,
    skipped: u64,
    /// The highest version among the events read (a stream's, for one-stream queries).
    max_version: Option<u64>,
    /// Whether a personal value was opened into the state (such a state is never cached, so the
    /// cache holds no personal data and forgetting needs no invalidation).
    personal: bool,
}

impl<S: Store, C: Send + Sync + 'static, E: Publish> EventStore<S, C, E> {
    /// Folds an aggregate through the cache: the cached state plus the events after its
    /// checkpoint. Always equal to folding the whole query.
    pub async fn aggregate<A: Aggregate>(&self, args: &A::Args) -> Result<A>
    where
        C: StateCache<A>,
    {
        Ok(self.fold::<A>(args).await?.state)
    }

    /// Like [`EventStore::aggregate`], with the stream version the state reflects (for an
    /// aggregate of one stream), the checkpoint, and what the fold read and skipped.
    pub async fn fold<A: Aggregate>(&self, args: &A::Args) -> Result<Folded<A>>
    where
        C: StateCache<A>,
    {
        let mut query = A::query(args);
        if query.types().is_empty() {
            query = query.of::<A::Event>();
        }
        let query = query.check()?;
        let key = CacheKey {
            aggregate: A::NAME.to_owned(),
            version: A::VERSION,
            upcasters: A::Event::upcaster_fingerprint(),
            query: query.canonical(),
        };
        let Some(stream) = query.stream_id().map(StreamId::new).transpose()? else {
            return self.fold_once::<A>(&query, &key, None).await;
        };
        // The stream's version first, then the fold: a state that saw no event past that
        // version reflects the stream up to it. A fold that saw a later event read the stream
        // as it grew: read again.
        for _ in 0..VERSION_ATTEMPTS {
            let version = self.inner.store.stream_version(&stream).await?;
            let folded = self.fold_once::<A>(&query, &key, version).await?;
            if folded.stream_version == version {
                return Ok(folded);
            }
        }
        Err(Error::backend(
            "store",
            format!(
                "stream `{stream}` kept growing while folding it ({VERSION_ATTEMPTS} attempts)"
            ),
        ))
    }

    /// One fold; `stream_version` in the result is `version` when no event read was past it,
    /// else the highest version read.
    async fn fold_once<A: Aggregate>(
        &self,
        query: &CheckedQuery,
        key: &CacheKey,
        version: Option<u64>,
    ) -> Result<Folded<A>>
    where
        C: StateCache<A>,
    {
        let cached = self.inner.cache.load(key).await;
        let from_cache = cached.is_some();
        let (state, start) = cached.unwrap_or_else(|| (A::default(), Position::START));
        // Only a state folded below the watermark (every earlier event final) may be cached.
        let watermark = if C::KEEPS {
            Some(self.inner.store.watermark().await?)
        } else {
            None
        };
        let mut read = self.read_into(query, state, start, None, watermark).await?;
        if from_cache && self.sampled() {
            read = self.verified(query, key, read).await?;
        }
        let to_cache = match &read.safe {
            Some((s, p)) => Some((s, *p)),
            None if watermark.is_some_and(|w| read.after < w) => Some((&read.state, read.after)),
            None => None,
        };
        if let Some((s, p)) = to_cache
            && p > start
            && read.skipped == 0
            && !read.personal
        {
            self.inner.cache.keep(key, s, p).await;
        }
        let stream_version = match (read.max_version, version) {
            (Some(seen), Some(v)) if seen > v => Some(seen),
            (Some(seen), None) => Some(seen),
            _ => version,
        };
        Ok(Folded {
            stream_version: query.stream_id().and(stream_version),
            checkpoint: (read.after != Position::START).then_some(read.after),
            state: read.state,
            events_read: read.events_read,
            from_cache,
            skipped: read.skipped,
        })
    }

    /// Whether this cache hit is one verification samples.
    fn sampled(&self) -> bool {
        let every = u64::from(self.inner.settings.verify_every);
        every > 0
            && self
                .inner
                .cache_hits
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(every)
    }

    /// Folds the query again from scratch up to where `read` ended and compares; on a
    /// mismatch, removes the entry and returns the fresh fold.
    async fn verified<A: Aggregate>(
        &self,
        query: &CheckedQuery,
        key: &CacheKey,
        read: FoldPass<A>,
    ) -> Result<FoldPass<A>>
    where
        C: StateCache<A>,
    {
        let fresh = self
            .read_into(query, A::default(), Position::START, Some(read.after), None)
            .await?;
        if C::same(&fresh.state, &read.state) {
            return Ok(read);
        }
        tracing::error!(
            aggregate = A::NAME,
            version = A::VERSION,
            query = %key.query,
            "a cached state differs from the fold of the whole log: the entry is removed (bump \
             Aggregate::VERSION whenever `apply` or the state changes)"
        );
        self.inner.cache.forget(key).await;
        Ok(FoldPass {
            safe: None,
            events_read: read.events_read + fresh.events_read,
            ..fresh
        })
    }

    /// Reads the events of `query` after `start` (up to `until`, if given) into `state`.
    async fn read_into<A: Aggregate>(
        &self,
        query: &CheckedQuery,
        mut state: A,
        start: Position,
        until: Option<Position>,
        watermark: Option<Position>,
    ) -> Result<FoldPass<A>> {
        let mut after = start;
        let mut safe: Option<(A, Position)> = None;
        let (mut events_read, mut skipped, mut max_version) = (0u64, 0u64, None);
        let mut personal = false;
        // Read ahead: the next events are fetched and decoded while these are applied.
        let mut events = std::pin::pin!(self.committed(query.clone(), start));
        while let Some(event) = events.next().await {
            let mut event = event?;
            if until.is_some_and(|u| event.position > u) {
                break;
            }
            if let Some(w) = watermark
                && safe.is_none()
                && event.position >= w
                && after < w
            {
                safe = Some((state.clone(), after));
            }
            if A::Event::handles(&event.namespace, &event.event_type) {
                personal |= self.open(&mut event).await?;
                match event.decode::<A::Event>() {
                    Ok(e) => state.apply(&e),
                    Err(e) => skipped += self.undecodable(&event, e)?,
                }
            }
            max_version = max_version.max(Some(event.version));
            after = event.position;
            events_read += 1;
        }
        Ok(FoldPass {
            state,
            after,
            safe,
            events_read,
            skipped,
            max_version,
            personal,
        })
    }

    /// What to do with an event that did not decode: fail, or skip it (returns 1) and say so.
    fn undecodable(&self, event: &RecordedEvent, e: Error) -> Result<u64> {
        match self.inner.settings.undecodable {
            Undecodable::Fail => Err(e),
            Undecodable::Skip => {
                tracing::error!(
                    event_id = %event.id,
                    stream = %event.stream,
                    version = event.version,
                    namespace = %event.namespace,
                    event_type = %event.event_type,
                    error = %e,
                    "skipped an event that does not decode"
                );
                Ok(1)
            }
        }
    }
}
