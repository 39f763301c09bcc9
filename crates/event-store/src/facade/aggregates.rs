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
    /// The subjects whose personal values were opened into the state (such a state is cached
    /// only sealed, see [`crate::erasure`]), in byte order.
    subjects: std::collections::BTreeSet<String>,
    /// Whether a personal value was erased (forgotten, or no keys): such a state depends on who
    /// folded it, and is never cached.
    erased: bool,
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
        let cached = self.cached::<A>(key).await;
        let from_cache = cached.is_some();
        let (state, start, mut subjects) =
            cached.unwrap_or_else(|| (A::default(), Position::START, Vec::new()));
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
            && !read.erased
        {
            // The cached state still holds what it folded; a state kept earlier (the safe one)
            // is sealed for every subject read, at worst more than it folded.
            subjects.extend(read.subjects.iter().cloned());
            subjects.sort_unstable();
            subjects.dedup();
            self.keep::<A>(key, s, p, subjects).await;
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

    /// The cached state of `key`, its checkpoint and the subjects it folded, opened with this
    /// store's keys when it holds personal values. An entry that no longer opens (a subject was
    /// forgotten, or this store has no keys) is of no use: it is removed (unless without keys),
    /// and the fold starts from scratch.
    async fn cached<A: Aggregate>(&self, key: &CacheKey) -> Option<(A, Position, Vec<String>)>
    where
        C: StateCache<A>,
    {
        let entry = self.inner.cache.entry(key).await?;
        if entry.subjects.is_empty() {
            return C::decode(entry.state).map(|s| (s, entry.checkpoint, Vec::new()));
        }
        let erasure = self.inner.erasure.as_deref()?;
        let opened = crate::erasure::open_state(
            erasure,
            key,
            entry.checkpoint,
            &entry.subjects,
            &entry.state,
        )
        .await;
        match opened {
            Ok(Some(state)) => C::decode(state).map(|s| (s, entry.checkpoint, entry.subjects)),
            Ok(None) => {
                self.inner.cache.forget(key).await;
                None
            }
            Err(e) => {
                tracing::warn!(aggregate = A::NAME, error = %e, "a cached state does not open; it is removed");
                self.inner.cache.forget(key).await;
                None
            }
        }
    }

    /// Keeps `state`, folded up to `checkpoint`: sealed for `subjects` when it folded personal
    /// values (not kept without keys, beyond [`MAX_STATE_SUBJECTS`](crate::erasure::MAX_STATE_SUBJECTS)
    /// subjects, or once one of them is forgotten).
    async fn keep<A: Aggregate>(
        &self,
        key: &CacheKey,
        state: &A,
        checkpoint: Position,
        subjects: Vec<String>,
    ) where
        C: StateCache<A>,
    {
        let Some(value) = C::encode(state) else {
            return;
        };
        if subjects.is_empty() {
            return self
                .inner
                .cache
                .keep(key, crate::CachedState::new(value, checkpoint))
                .await;
        }
        let Some(erasure) = self.inner.erasure.as_deref() else {
            return;
        };
        if subjects.len() > crate::erasure::MAX_STATE_SUBJECTS {
            return;
        }
        match crate::erasure::seal_state(erasure, key, checkpoint, &subjects, &value).await {
            Ok(Some(sealed)) => {
                let entry = crate::CachedState {
                    state: sealed,
                    checkpoint,
                    subjects,
                };
                self.inner.cache.keep(key, entry).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(aggregate = A::NAME, error = %e, "a personal state could not be sealed; not cached");
            }
        }
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
        let mut subjects = std::collections::BTreeSet::new();
        let mut erased = false;
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
                let opened =
                    crate::erasure::open_with(self.inner.erasure.as_deref(), &mut event).await?;
                subjects.extend(opened.subjects);
                erased |= opened.erased;
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
            subjects,
            erased,
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
