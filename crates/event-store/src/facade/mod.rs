//! The [`EventStore`] facade: save, aggregate, read, tail and subscribe over one store, one cache
//! and one emitter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::{Cache, Emitter, NoCache, NoEmitter, Store};
use crate::memory::{InProcessEmitter, MemoryCache, MemoryStore};
use crate::model::Position;

/// How often a live tail re-reads when no change notification arrives (the fallback for
/// backends that cannot notify).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

struct Inner<S, C, E> {
    store: S,
    cache: C,
    emitter: E,
    // Per-stream locks that keep publish order equal to version order when saves to one stream
    // race; only taken when the emitter publishes on save.
    publishing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    poll_interval: Duration,
}

/// The event store: a [`Store`], a [`Cache`] and an [`Emitter`] behind one handle. Cheap to
/// clone; clones share everything.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> event_store::Result<()> {
/// use event_store::{EventStore, NewEvent};
/// use serde_json::json;
///
/// let store = EventStore::memory();
/// store.append("order-1", Default::default(), vec![NewEvent::new("shop", "Placed", json!({"total": 12}))]).await?;
/// let events = store.read_stream_page("order-1", 0, 10).await?;
/// assert_eq!(events[0].data["total"], 12);
/// # Ok(()) }
/// ```
pub struct EventStore<S, C = NoCache, E = NoEmitter> {
    inner: Arc<Inner<S, C, E>>,
}

impl<S, C, E> Clone for EventStore<S, C, E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S, C, E> std::fmt::Debug for EventStore<S, C, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("store", &std::any::type_name::<S>())
            .field("cache", &std::any::type_name::<C>())
            .field("emitter", &std::any::type_name::<E>())
            .finish()
    }
}

impl EventStore<MemoryStore, MemoryCache, InProcessEmitter> {
    /// Everything in memory: a [`MemoryStore`], a [`MemoryCache`] and an [`InProcessEmitter`].
    pub fn memory() -> Self {
        Self::new(
            MemoryStore::new(),
            MemoryCache::new(),
            InProcessEmitter::new(),
        )
    }
}

impl<S: Store> EventStore<S> {
    /// A store with no cache and no emitter; add them with [`EventStore::with_cache`] and
    /// [`EventStore::with_emitter`].
    pub fn from_store(store: S) -> Self {
        Self::new(store, NoCache, NoEmitter)
    }
}

/// A fold's result, with what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded<A> {
    /// The aggregate.
    pub state: A,
    /// The position of the last event folded in (`None`: no event).
    pub checkpoint: Option<Position>,
    /// How many events this call read (fewer than the aggregate's total when the cache had it).
    pub events_read: u64,
    /// Whether a cache entry was used.
    pub from_cache: bool,
}

impl<S: Store, C: Cache, E: Emitter> EventStore<S, C, E> {
    /// A store with its cache and emitter.
    pub fn new(store: S, cache: C, emitter: E) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                cache,
                emitter,
                publishing: Mutex::new(HashMap::new()),
                poll_interval: DEFAULT_POLL_INTERVAL,
            }),
        }
    }

    fn rebuild<C2, E2>(self, cache: C2, emitter: E2) -> EventStore<S, C2, E2>
    where
        S: Clone,
    {
        EventStore {
            inner: Arc::new(Inner {
                store: self.inner.store.clone(),
                cache,
                emitter,
                publishing: Mutex::new(HashMap::new()),
                poll_interval: self.inner.poll_interval,
            }),
        }
    }

    /// The same store with another cache.
    pub fn with_cache<C2: Cache>(self, cache: C2) -> EventStore<S, C2, E>
    where
        S: Clone,
        E: Clone,
    {
        let emitter = self.inner.emitter.clone();
        self.rebuild(cache, emitter)
    }

    /// The same store with another emitter.
    pub fn with_emitter<E2: Emitter>(self, emitter: E2) -> EventStore<S, C, E2>
    where
        S: Clone,
        C: Clone,
    {
        let cache = self.inner.cache.clone();
        self.rebuild(cache, emitter)
    }

    /// Sets how often live tails re-read when no change notification arrives.
    #[must_use]
    pub fn with_poll_interval(self, every: Duration) -> Self
    where
        S: Clone,
        C: Clone,
        E: Clone,
    {
        let (cache, emitter) = (self.inner.cache.clone(), self.inner.emitter.clone());
        let mut out = self.rebuild(cache, emitter);
        if let Some(inner) = Arc::get_mut(&mut out.inner) {
            inner.poll_interval = every;
        }
        out
    }

    /// The store backend.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The cache backend.
    pub fn cache(&self) -> &C {
        &self.inner.cache
    }

    /// The emitter backend.
    pub fn emitter(&self) -> &E {
        &self.inner.emitter
    }
}

mod aggregates;
mod reading;
mod subscribing;
mod writing;
