//! Folding aggregates through the cache.

use crate::aggregate::Aggregate;
use crate::backend::{Cache, CacheKey, CachedState, Emitter, Store};
use crate::cursor::PAGE_SIZE;
use crate::error::Result;
use crate::event::Events;
use crate::facade::{EventStore, Folded};
use crate::model::Position;

impl<S: Store, C: Cache, E: Emitter> EventStore<S, C, E> {
    // ---- aggregates ----------------------------------------------------------------------

    /// Folds an aggregate through the cache: the cached state plus the events after its
    /// checkpoint. Always equal to folding the whole query.
    pub async fn aggregate<A: Aggregate>(&self, args: &A::Args) -> Result<A> {
        Ok(self.fold::<A>(args).await?.state)
    }

    /// Like [`EventStore::aggregate`], with the checkpoint and what the fold read.
    pub async fn fold<A: Aggregate>(&self, args: &A::Args) -> Result<Folded<A>> {
        let mut query = A::query(args);
        if query.types().is_empty() {
            query = query.of::<A::Event>();
        }
        let query = query.check()?;
        let key = CacheKey {
            aggregate: A::NAME.to_owned(),
            version: A::VERSION,
            query: query.canonical(),
        };
        let cached = match self.inner.cache.get(&key).await {
            Ok(Some(entry)) => match A::deserialize(&entry.state) {
                Ok(state) => Some((state, entry.checkpoint)),
                Err(e) => {
                    tracing::warn!(aggregate = A::NAME, error = %e, "cached state does not decode; folding from the start");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(aggregate = A::NAME, error = %e, "cache read failed; folding from the start");
                None
            }
        };
        let from_cache = cached.is_some();
        let (mut state, start) = cached.unwrap_or_else(|| (A::default(), Position::START));
        // Only a state folded below the watermark (every earlier event final) may be cached.
        let watermark = self.inner.store.watermark().await?;
        let mut after = start;
        let mut safe: Option<(A, Position)> = None;
        let mut events_read = 0u64;
        loop {
            let page = self
                .inner
                .store
                .read_query(&query, after, PAGE_SIZE)
                .await?;
            let Some(last) = page.last() else { break };
            let last_position = last.position;
            for event in &page {
                if safe.is_none() && event.position >= watermark && after < watermark {
                    safe = Some((state.clone(), after));
                }
                if A::Event::handles(&event.namespace, &event.event_type) {
                    state.apply(&event.decode::<A::Event>()?);
                }
                after = event.position;
            }
            events_read += page.len() as u64;
            if page.len() < PAGE_SIZE {
                break;
            }
            debug_assert!(last_position == after);
        }
        let checkpoint = (after != Position::START).then_some(after);
        let to_cache = match &safe {
            Some((s, p)) => Some((s, *p)),
            None if after < watermark => Some((&state, after)),
            None => None,
        };
        if let Some((s, p)) = to_cache
            && p > start
        {
            self.write_cache(&key, s, p).await;
        }
        Ok(Folded {
            state,
            checkpoint,
            events_read,
            from_cache,
        })
    }

    async fn write_cache<A: Aggregate>(&self, key: &CacheKey, state: &A, checkpoint: Position) {
        let entry = match serde_json::to_value(state) {
            Ok(state) => CachedState { state, checkpoint },
            Err(e) => {
                tracing::warn!(aggregate = A::NAME, error = %e, "state does not encode; not cached");
                return;
            }
        };
        if let Err(e) = self.inner.cache.put(key, entry).await {
            tracing::warn!(aggregate = A::NAME, error = %e, "cache write failed");
        }
    }
}
