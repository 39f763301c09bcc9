//! The [`EventStore`] facade: save, aggregate, read, tail and subscribe over one store, one cache
//! and one emitter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::{NoCache, NoEmitter, Publish, Store};
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
    settings: Settings,
    // Cache hits so far (verification samples every n-th).
    cache_hits: AtomicU64,
    // Seals personal fields on append and opens them before decoding (`with_keys`).
    erasure: Option<Arc<dyn crate::erasure::Erasure>>,
}

/// The facade's settings (see the `with_…` methods).
#[derive(Debug, Clone, Copy)]
struct Settings {
    poll_interval: Duration,
    undecodable: Undecodable,
    verify_every: u32,
    retry: RetryPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            undecodable: Undecodable::Fail,
            verify_every: DEFAULT_CACHE_VERIFICATION,
            retry: RetryPolicy::default(),
        }
    }
}

/// Every how many cache hits a fold is verified from scratch by default: every 8th in debug
/// builds, never in release builds.
pub const DEFAULT_CACHE_VERIFICATION: u32 = if cfg!(debug_assertions) { 8 } else { 0 };

/// What a fold does with an event that does not decode into the aggregate's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Undecodable {
    /// The fold fails with [`Error::Decode`](crate::Error::Decode), naming the event (the
    /// default).
    #[default]
    Fail,
    /// The event is skipped, counted in [`Folded::skipped`] and logged at ERROR level with its
    /// id, stream, version and type (quarantine); a fold that skipped anything is not cached.
    Skip,
}

/// How [`EventStore::execute`] retries a decision that lost a race for its stream: up to
/// `max_attempts` in all, waiting a random time (full jitter) up to `first_backoff`, doubled
/// after each attempt, at most `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The longest wait before the second attempt.
    pub first_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 32 attempts, waits from up to 2 ms growing to up to 250 ms.
    fn default() -> Self {
        Self {
            max_attempts: 32,
            first_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(250),
        }
    }
}

impl RetryPolicy {
    /// No retry: the first conflict is returned.
    pub const NEVER: Self = Self {
        max_attempts: 1,
        first_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    };

    /// The wait before attempt `attempt + 1` (after `attempt` attempts): a random time up to
    /// the attempt's bound.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let bound = self
            .first_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random() % nanos)
    }
}

/// A random number, without a dependency: the OS-seeded keys of `RandomState` hashing a counter.
fn random() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// The event store: a [`Store`], a [`Cache`](crate::Cache) and an [`Emitter`](crate::Emitter) behind one handle. Cheap to
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
#[non_exhaustive]
pub struct Folded<A> {
    /// The aggregate.
    pub state: A,
    /// The position of the last event folded in (`None`: no event).
    pub checkpoint: Option<Position>,
    /// For an aggregate of one stream, the stream's version that the state reflects: every
    /// event of the aggregate's types up to it is folded in, and an append expecting it
    /// ([`ExpectedVersion::from`](crate::ExpectedVersion)) fails if anything was appended since.
    /// `None` for no stream yet, and for aggregates over more than one stream.
    pub stream_version: Option<u64>,
    /// How many events this call read (fewer than the aggregate's total when the cache had it).
    pub events_read: u64,
    /// Whether a cache entry was used.
    pub from_cache: bool,
    /// How many events were skipped because they did not decode ([`Undecodable::Skip`]).
    pub skipped: u64,
}

/// An alias for the all-in-memory event store of [`EventStore::memory`] (tests, examples).
pub type MemoryEventStore = EventStore<MemoryStore, MemoryCache, InProcessEmitter>;

impl<S: Store, C: Send + Sync + 'static, E: Publish> EventStore<S, C, E> {
    /// A store with its cache ([`NoCache`] for none) and emitter ([`NoEmitter`] for none).
    pub fn new(store: S, cache: C, emitter: E) -> Self {
        Self::with_settings(store, cache, emitter, Settings::default(), None)
    }

    fn with_settings(
        store: S,
        cache: C,
        emitter: E,
        settings: Settings,
        erasure: Option<Arc<dyn crate::erasure::Erasure>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                cache,
                emitter,
                publishing: Mutex::new(HashMap::new()),
                settings,
                cache_hits: AtomicU64::new(0),
                erasure,
            }),
        }
    }

    fn rebuild<C2: Send + Sync + 'static, E2: Publish>(
        self,
        cache: C2,
        emitter: E2,
        settings: Settings,
    ) -> EventStore<S, C2, E2>
    where
        S: Clone,
    {
        let erasure = self.inner.erasure.clone();
        EventStore::with_settings(self.inner.store.clone(), cache, emitter, settings, erasure)
    }

    /// The same store with keys for personal data ([`crate::erasure`]): appends seal the
    /// personal fields of events made by [`NewEvent::from_event`](crate::NewEvent::from_event)
    /// with their subject's key, and folds, decisions and typed subscribers open them (or see
    /// `None` once the subject is forgotten). Raw reads, exports and published messages keep
    /// the sealed form. Run [`Keys::check`](crate::erasure::Keys::check) first.
    ///
    /// Without keys, an append of personal values is refused (they are never stored in the
    /// clear), and typed reads see them erased.
    #[must_use]
    pub fn with_keys<K: crate::erasure::KeyStore>(self, keys: crate::erasure::Keys<K>) -> Self
    where
        S: Clone,
        C: Clone,
        E: Clone,
    {
        let inner = &self.inner;
        EventStore::with_settings(
            inner.store.clone(),
            inner.cache.clone(),
            inner.emitter.clone(),
            inner.settings,
            Some(Arc::new(keys)),
        )
    }

    /// Opens the sealed personal values of `event` with their subjects' keys (erased, `null`,
    /// when forgotten or when this store has no keys), before decoding it yourself; returns
    /// whether it held any.
    pub async fn open(&self, event: &mut crate::RecordedEvent) -> crate::Result<bool> {
        Ok(
            crate::erasure::open_with(self.inner.erasure.as_deref(), event)
                .await?
                .sealed,
        )
    }

    /// Decodes `event` as `Ev`, its personal fields opened with their subjects' keys, or `None`
    /// once the subject is forgotten (or when this store has no keys): the typed read of an
    /// event read raw ([`EventStore::read_stream`], [`EventStore::read_all`], …). A sealed
    /// value that fails authentication is [`Error::Unauthentic`](crate::Error::Unauthentic)
    /// naming the event.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> event_store::Result<()> {
    /// use event_store::erasure::{Keys, MasterKey, MemoryKeyStore};
    /// use event_store::{Event, EventStore, ExpectedVersion, NewEvent};
    /// use futures::StreamExt as _;
    ///
    /// #[derive(Event, serde::Serialize, serde::Deserialize)]
    /// #[event(namespace = "accounts", subject = "user")]
    /// struct Registered {
    ///     user: String,
    ///     #[event(personal)]
    ///     email: Option<String>,
    /// }
    ///
    /// let (master, _text) = MasterKey::generate("k1")?;
    /// let keys = Keys::new(MemoryKeyStore::new(), master, vec![]);
    /// keys.check().await?;
    /// let es = EventStore::memory().with_keys(keys);
    /// let ada = Registered { user: "ada".into(), email: Some("ada@example.com".into()) };
    /// es.append("user-ada", ExpectedVersion::NoStream, vec![NewEvent::from_event(&ada)?]).await?;
    ///
    /// let mut read = Box::pin(es.read_stream("user-ada", 0, event_store::Direction::Forward));
    /// let stored = read.next().await.expect("one event")?;
    /// assert!(!stored.data.to_string().contains("ada@"), "stored sealed");
    /// assert_eq!(es.decode::<Registered>(&stored).await?.email.as_deref(), Some("ada@example.com"));
    ///
    /// es.forget("ada", "support ticket 1041").await?;
    /// assert_eq!(es.decode::<Registered>(&stored).await?.email, None, "erased");
    /// # Ok(()) }
    /// ```
    pub async fn decode<Ev: crate::Events>(
        &self,
        event: &crate::RecordedEvent,
    ) -> crate::Result<Ev> {
        crate::erasure::decode_opened(self.inner.erasure.as_deref(), event).await
    }

    /// Forgets a person: destroys the subject's data key, so their personal values are
    /// unreadable from now on on every read path, then appends a
    /// [`SubjectForgotten`](crate::erasure::SubjectForgotten) to
    /// [`FORGOTTEN_STREAM`](crate::erasure::FORGOTTEN_STREAM) naming the subject and `by` (who
    /// asked), with no personal data: the audit, and the signal for projections and other
    /// services to drop their copies. Cached aggregate states that folded their personal values
    /// are removed from the cache. Returns that event. Forgetting again is harmless (it
    /// records `had_key: false`), so a failed audit append can be retried. Without keys, an
    /// error.
    pub async fn forget(&self, subject: &str, by: &str) -> crate::Result<crate::RecordedEvent>
    where
        C: crate::ForgetSubject,
    {
        let Some(erasure) = &self.inner.erasure else {
            return Err(crate::Error::invalid(
                "keys",
                "this event store has no keys (EventStore::with_keys)",
            ));
        };
        if by.trim().is_empty() {
            return Err(crate::Error::invalid("by", "must say who asked"));
        }
        let had_key = erasure.forget(subject).await?;
        // The key first: from now on no state of theirs is sealed again, and a kept one no
        // longer opens; then the kept ones go. A failure here leaves only states nobody can
        // open (each is removed when next loaded), so the erasure is still recorded.
        if let Err(e) = self.inner.cache.forget_subject_states(subject).await {
            tracing::warn!(subject, error = %e, "cached states of a forgotten subject could not be removed now; they no longer open");
        }
        let event = crate::erasure::SubjectForgotten {
            subject: subject.to_owned(),
            by: by.to_owned(),
            had_key,
        };
        self.record_admin(crate::erasure::FORGOTTEN_STREAM, &event, "forget")
            .await
    }

    /// `events` with their personal fields sealed, to build [`AppendBatch`](crate::AppendBatch)es
    /// for [`EventStore::append_many`] ([`EventStore::append`] seals by itself).
    pub async fn seal_events(
        &self,
        mut events: Vec<crate::NewEvent>,
    ) -> crate::Result<Vec<crate::NewEvent>> {
        self.seal(&mut events).await?;
        Ok(events)
    }

    /// Seals the personal fields of `events` (see [`EventStore::with_keys`]).
    pub(crate) async fn seal(&self, events: &mut [crate::NewEvent]) -> crate::Result<()> {
        for (i, event) in events.iter_mut().enumerate() {
            if event.personal.fields.is_empty() {
                continue;
            }
            match &self.inner.erasure {
                Some(erasure) => {
                    // A retry under the same id reuses what is stored (idempotent appends).
                    let previous = match event.id {
                        Some(id) => self.inner.store.read_event(id).await?,
                        None => None,
                    };
                    crate::erasure::seal_event(erasure.as_ref(), i, event, previous.as_ref())
                        .await?;
                }
                None => crate::erasure::check_sealed(i, event)?,
            }
        }
        Ok(())
    }

    fn reconfigure(self, change: impl FnOnce(&mut Settings)) -> Self
    where
        S: Clone,
        C: Clone,
        E: Clone,
    {
        let mut settings = self.inner.settings;
        change(&mut settings);
        let (cache, emitter) = (self.inner.cache.clone(), self.inner.emitter.clone());
        self.rebuild(cache, emitter, settings)
    }

    /// The same store with another cache.
    pub fn with_cache<C2: Send + Sync + 'static>(self, cache: C2) -> EventStore<S, C2, E>
    where
        S: Clone,
        E: Clone,
    {
        let emitter = self.inner.emitter.clone();
        let settings = self.inner.settings;
        self.rebuild(cache, emitter, settings)
    }

    /// The same store with another emitter.
    pub fn with_emitter<E2: Publish>(self, emitter: E2) -> EventStore<S, C, E2>
    where
        S: Clone,
        C: Clone,
    {
        let cache = self.inner.cache.clone();
        let settings = self.inner.settings;
        self.rebuild(cache, emitter, settings)
    }

    /// Sets how often live tails re-read when no change notification arrives (default
    /// [`DEFAULT_POLL_INTERVAL`]).
    #[must_use]
    pub fn with_poll_interval(self, every: Duration) -> Self
    where
        S: Clone,
        C: Clone,
        E: Clone,
    {
        self.reconfigure(|s| s.poll_interval = every)
    }

    /// Sets what folds do with events that do not decode (default [`Undecodable::Fail`]).
    #[must_use]
    pub fn with_undecodable(self, undecodable: Undecodable) -> Self
    where
        S: Clone,
        C: Clone,
        E: Clone,
    {
        self.reconfigure(|s| s.undecodable = undecodable)
    }

    /// Verifies every `every`-th cache hit by folding the aggregate again from scratch, up to
    /// the same event, and comparing (`0`: never; default [`DEFAULT_CACHE_VERIFICATION`]: every
    /// 8th in debug builds). A mismatch — a changed `apply` without a bumped
    /// `Aggregate::VERSION`, a corrupted entry — is logged at ERROR level, the entry is removed,
    /// and the fold returns the state folded from scratch.
    #[must_use]
    pub fn with_cache_verification(self, every: u32) -> Self
    where
        S: Clone,
        C: Clone,
        E: Clone,
    {
        self.reconfigure(|s| s.verify_every = every)
    }

    /// Sets how [`EventStore::execute`] retries decisions that lost a race.
    #[must_use]
    pub fn with_retry(self, retry: RetryPolicy) -> Self
    where
        S: Clone,
        C: Clone,
        E: Clone,
    {
        self.reconfigure(|s| s.retry = retry)
    }

    /// A [`Runner`](crate::projection::Runner) of a projection on this store: catch-up, live,
    /// partitions, parking and rebuilds (see [`projection`](crate::projection)). Its target sees
    /// personal values opened with this store's keys, or `null` once their subject is forgotten
    /// (or without keys), as folds do; [`Runner::new`](crate::projection::Runner::new) hands over
    /// events as stored. A projection that keeps personal values drops its copies on
    /// [`SubjectForgotten`](crate::erasure::SubjectForgotten).
    pub fn runner<T>(&self, target: T) -> crate::projection::Runner<S, T>
    where
        S: crate::projection::ProjectionStore,
        T: crate::projection::Target<S>,
    {
        crate::projection::Runner::new(self.inner.store.clone(), target).with_opening(
            crate::projection::runner::Opening::Open(self.inner.erasure.clone()),
        )
    }

    /// The store's projections: status, reset, resume.
    pub fn projections(&self) -> crate::projection::Projections<S>
    where
        S: crate::projection::ProjectionStore,
    {
        crate::projection::Projections::new(self.inner.store.clone())
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
mod checkpoints;
mod closing;
mod execute;
mod reading;
mod subscribing;
mod writing;

pub use execute::{ExecuteError, ExecuteOptions, Executed};
pub use reading::{READ_AHEAD, READ_AHEAD_CHUNK};
