//! Closing and reopening streams, and recording who did it.

use crate::backend::{Publish, Store};
use crate::closing::{STREAMS_STREAM, SYSTEM_PREFIX, StreamClosed, StreamReopened};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::facade::EventStore;
use crate::model::{NewEvent, RecordedEvent, StreamId};
use crate::version::ExpectedVersion;

impl<S: Store, C: Send + Sync + 'static, E: Publish> EventStore<S, C, E> {
    /// Closes a stream (see [`crate::closing`]): no appends from now on, left out of stream
    /// lists and stream reads, its events still in the global log. Then records
    /// [`StreamClosed`] (who, which stream, whether it was open) in [`STREAMS_STREAM`] and
    /// returns that event. Closing a closed stream changes nothing and records `was_open:
    /// false`, so a failed record can be retried. The store's own streams (`event_store-…`)
    /// cannot be closed.
    pub async fn close_stream(&self, stream: &str, by: &str) -> Result<RecordedEvent> {
        let id = admin_target(stream, by)?;
        let was_open = self.inner.store.close_stream(&id, true).await?;
        let event = StreamClosed {
            stream: stream.to_owned(),
            by: by.to_owned(),
            was_open,
        };
        self.record_admin(STREAMS_STREAM, &event, "close").await
    }

    /// Reopens a closed stream: it takes appends and reads again. Records [`StreamReopened`]
    /// in [`STREAMS_STREAM`] and returns it (`was_closed: false` when it was open).
    pub async fn reopen_stream(&self, stream: &str, by: &str) -> Result<RecordedEvent> {
        let id = admin_target(stream, by)?;
        let was_closed = self.inner.store.close_stream(&id, false).await?;
        let event = StreamReopened {
            stream: stream.to_owned(),
            by: by.to_owned(),
            was_closed,
        };
        self.record_admin(STREAMS_STREAM, &event, "reopen").await
    }

    /// Appends an operator's act (`forget`, `close`, `reopen`) to one of the store's own
    /// streams, with `action` in its context; returns the recorded event.
    pub(crate) async fn record_admin<T: Event>(
        &self,
        stream: &str,
        event: &T,
        action: &str,
    ) -> Result<RecordedEvent> {
        let audit = NewEvent::from_event(event)?.with_action(action);
        let appended = self
            .append(stream, ExpectedVersion::Any, vec![audit])
            .await?;
        appended
            .events
            .into_iter()
            .next()
            .ok_or_else(|| Error::backend("facade", "an append returned no event"))
    }
}

/// The stream an operator's act names, checked; `by` must say who.
fn admin_target(stream: &str, by: &str) -> Result<StreamId> {
    if by.trim().is_empty() {
        return Err(Error::invalid("by", "must say who asked"));
    }
    let id = StreamId::new(stream)?;
    if stream.starts_with(SYSTEM_PREFIX) {
        return Err(Error::invalid(
            "stream",
            format!("`{stream}` is one of the store's own streams, which record operators' acts"),
        ));
    }
    Ok(id)
}
