//! Deciding on the current state and saving the decision, in one call.

use std::fmt;

use crate::aggregate::Aggregate;
use crate::backend::{Publish, StateCache, Store};
use crate::error::{Error, Result};
use crate::event::Events;
use crate::facade::{EventStore, RetryPolicy};
use crate::model::{EventContext, NewEvent, RecordedEvent};
use crate::version::ExpectedVersion;

/// Options of [`EventStore::execute_with`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ExecuteOptions {
    /// The context of the events the decision saves (action, subject, correlation, causation,
    /// metadata; the time is stamped at each attempt). Default: a fresh context.
    pub context: Option<EventContext>,
    /// How lost races are retried; default: the event store's (see
    /// [`EventStore::with_retry`]).
    pub retry: Option<RetryPolicy>,
}

impl ExecuteOptions {
    /// Options with this context for the saved events.
    #[must_use]
    pub fn context(mut self, context: EventContext) -> Self {
        self.context = Some(context);
        self
    }

    /// Options with this retry policy.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }
}

/// What [`EventStore::execute`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Executed<A> {
    /// The aggregate after the saved events (the state the decision was made on when it decided
    /// nothing).
    pub state: A,
    /// The stream's version after the save.
    pub version: Option<u64>,
    /// The saved events (none when the decision decided nothing).
    pub events: Vec<RecordedEvent>,
    /// How many times the state was loaded and the decision made (1 without a race).
    pub attempts: u32,
}

/// Why [`EventStore::execute`] saved nothing: the decision's own error, untouched, or the
/// store's (including [`Error::Conflict`] once every retry lost its race).
#[derive(Debug)]
pub enum ExecuteError<R> {
    /// The decision refused the command.
    Rejected(R),
    /// Loading or saving failed.
    Store(Error),
}

impl<R> ExecuteError<R> {
    /// The decision's error, if that is what this is.
    pub fn rejected(&self) -> Option<&R> {
        match self {
            Self::Rejected(r) => Some(r),
            Self::Store(_) => None,
        }
    }

    /// The store's error, if that is what this is.
    pub fn store_error(&self) -> Option<&Error> {
        match self {
            Self::Rejected(_) => None,
            Self::Store(e) => Some(e),
        }
    }
}

impl<R> From<Error> for ExecuteError<R> {
    fn from(e: Error) -> Self {
        Self::Store(e)
    }
}

impl<R: fmt::Display> fmt::Display for ExecuteError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => write!(f, "rejected: {r}"),
            Self::Store(e) => e.fmt(f),
        }
    }
}

impl<R: std::error::Error + 'static> std::error::Error for ExecuteError<R> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Rejected(r) => Some(r),
            Self::Store(e) => Some(e),
        }
    }
}

impl<S: Store, C: Send + Sync + 'static, E: Publish> EventStore<S, C, E> {
    /// Decides on an aggregate's current state and saves the decision: loads the state and the
    /// stream's version together (see [`Folded::stream_version`](crate::Folded)), calls
    /// `decide`, and appends what it returned expecting that version. When another writer got
    /// there first, the state is loaded again and the decision made again (never the old
    /// decision saved on a new version), with jittered backoff, up to the retry policy's
    /// attempts. The aggregate's query must name one stream (the stream the events go to).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use event_store::{Aggregate, Event, EventStore, ExecuteError, Query};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Event, Serialize, Deserialize)]
    /// #[event(namespace = "bank")]
    /// struct Withdrawn { amount: u64 }
    ///
    /// #[derive(Default, Clone, Debug, Serialize, Deserialize)]
    /// struct Account { withdrawn: u64 }
    ///
    /// impl Aggregate for Account {
    ///     const NAME: &'static str = "account";
    ///     type Event = Withdrawn;
    ///     type Args = str;
    ///     fn query(id: &str) -> Query { Query::stream(id) }
    ///     fn apply(&mut self, e: &Withdrawn) { self.withdrawn += e.amount }
    /// }
    ///
    /// let es = EventStore::memory();
    /// let limit = 100;
    /// let withdraw = |amount: u64| move |a: &Account| {
    ///     if a.withdrawn + amount > limit { Err("over the limit") } else { Ok(vec![Withdrawn { amount }]) }
    /// };
    /// let done = es.execute("acc-1", withdraw(60)).await.unwrap();
    /// assert_eq!((done.state.withdrawn, done.version), (60, Some(0)));
    /// let refused = es.execute("acc-1", withdraw(60)).await.unwrap_err();
    /// assert_eq!(refused.rejected(), Some(&"over the limit"));
    /// # }
    /// ```
    pub async fn execute<A, Ev, R, D>(
        &self,
        args: &A::Args,
        decide: D,
    ) -> Result<Executed<A>, ExecuteError<R>>
    where
        A: Aggregate,
        C: StateCache<A>,
        Ev: Events,
        D: FnMut(&A) -> Result<Vec<Ev>, R>,
    {
        self.execute_with(args, &ExecuteOptions::default(), decide)
            .await
    }

    /// [`EventStore::execute`] with options: the context of the saved events, a retry policy.
    pub async fn execute_with<A, Ev, R, D>(
        &self,
        args: &A::Args,
        options: &ExecuteOptions,
        mut decide: D,
    ) -> Result<Executed<A>, ExecuteError<R>>
    where
        A: Aggregate,
        C: StateCache<A>,
        Ev: Events,
        D: FnMut(&A) -> Result<Vec<Ev>, R>,
    {
        let stream = A::query(args)
            .stream_id()
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::invalid(
                    "query",
                    format!(
                        "`{}` folds more than one stream; execute needs an aggregate of one stream",
                        A::NAME
                    ),
                )
            })?;
        let retry = options.retry.unwrap_or(self.inner.settings.retry);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let folded = self.fold::<A>(args).await?;
            let decided = decide(&folded.state).map_err(ExecuteError::Rejected)?;
            if decided.is_empty() {
                return Ok(Executed {
                    state: folded.state,
                    version: folded.stream_version,
                    events: Vec::new(),
                    attempts: attempt,
                });
            }
            let events = decided
                .iter()
                .map(|e| {
                    let new = NewEvent::from_event(e)?;
                    Ok(match &options.context {
                        Some(c) => new.with_context(EventContext {
                            time: chrono::Utc::now(),
                            ..c.clone()
                        }),
                        None => new,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let expected = ExpectedVersion::from(folded.stream_version);
            match self.append(&stream, expected, events).await {
                Ok(appended) => {
                    let mut state = folded.state;
                    for e in &appended.events {
                        if A::Event::handles(&e.namespace, &e.event_type) {
                            if crate::erasure::has_sealed(&e.data) {
                                let mut e = e.clone();
                                self.open(&mut e).await?;
                                state.apply(&e.decode::<A::Event>()?);
                            } else {
                                state.apply(&e.decode::<A::Event>()?);
                            }
                        }
                    }
                    return Ok(Executed {
                        state,
                        version: appended.last_version(),
                        events: appended.events,
                        attempts: attempt,
                    });
                }
                Err(e) if e.is_conflict() && attempt < retry.max_attempts => {
                    tracing::debug!(stream, attempt, "a decision lost its race; deciding again");
                    tokio::time::sleep(retry.backoff(attempt)).await;
                }
                Err(e) => return Err(ExecuteError::Store(e)),
            }
        }
    }
}
