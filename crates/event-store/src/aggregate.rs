//! Aggregates: state folded from events.

use crate::event::Events;
use crate::query::Query;

/// State derived from events: a fold of [`Aggregate::apply`] over the events of a query, starting
/// from `Default::default()`.
///
/// With a cache, the [`EventStore`](crate::EventStore) facade keeps the state (as JSON: the
/// aggregate must then be `Serialize + DeserializeOwned`) with the checkpoint of the last folded
/// event, so the next fold only reads the newer events. Bump [`Aggregate::VERSION`] whenever
/// `apply` or the state's shape changes: it is part of the cache key, so older entries are
/// ignored. (Forgetting to bump it is caught by cache verification, which re-folds a sample of
/// cache hits from scratch: on by default in debug builds, see
/// [`EventStore::with_cache_verification`](crate::EventStore::with_cache_verification).)
///
/// Events the query returns but [`Aggregate::Event`] does not handle are skipped; when the
/// query names no types, it is narrowed to the types of `Aggregate::Event`.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The aggregate's name (part of the cache key).
    const NAME: &'static str;
    /// The fold's version (part of the cache key).
    const VERSION: u32 = 1;
    /// The events it folds.
    type Event: Events;
    /// What identifies one instance (a stream id, a user id, …).
    type Args: ?Sized + Sync;

    /// The events to fold for `args`.
    fn query(args: &Self::Args) -> Query;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);
}
