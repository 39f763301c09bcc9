//! Saving: typed events, raw batches, and publishing what was stored in version order.

use std::sync::{Arc, PoisonError};

use crate::backend::{Appended, Publish, Store};
use crate::batch::{AppendBatch, MultiAppend};
use crate::error::{Error, Result};
use crate::event::Events;
use crate::facade::EventStore;
use crate::model::{EventContext, NewEvent, RecordedEvent};
use crate::version::ExpectedVersion;

impl<S: Store, C: Send + Sync + 'static, E: Publish> EventStore<S, C, E> {
    // ---- writing -------------------------------------------------------------------------

    /// Saves one typed event at the end of `stream`, whatever its version
    /// ([`ExpectedVersion::Any`]). To decide on the current state first, use
    /// [`EventStore::execute`].
    pub async fn save<Ev: Events>(&self, stream: &str, event: &Ev) -> Result<RecordedEvent> {
        self.save_expecting(stream, ExpectedVersion::Any, event)
            .await
    }

    /// Saves one typed event, expecting `expected` of the stream.
    pub async fn save_expecting<Ev: Events>(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        event: &Ev,
    ) -> Result<RecordedEvent> {
        let saved = self
            .save_all_with(stream, expected, std::slice::from_ref(event), None)
            .await?;
        saved
            .into_iter()
            .next()
            .ok_or_else(|| Error::backend("store", "an append of one event returned none"))
    }

    /// Saves typed events atomically (all or none) at the end of `stream`, whatever its
    /// version ([`ExpectedVersion::Any`]).
    pub async fn save_all<Ev: Events>(
        &self,
        stream: &str,
        events: &[Ev],
    ) -> Result<Vec<RecordedEvent>> {
        self.save_all_with(stream, ExpectedVersion::Any, events, None)
            .await
    }

    /// Saves typed events atomically, expecting `expected` of the stream.
    pub async fn save_all_expecting<Ev: Events>(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[Ev],
    ) -> Result<Vec<RecordedEvent>> {
        self.save_all_with(stream, expected, events, None).await
    }

    /// Saves typed events atomically, expecting `expected` of the stream, each with `context`
    /// (action, subject, correlation and causation ids, metadata; `None`: a fresh context). The
    /// time is the context's, or now.
    pub async fn save_all_with<Ev: Events>(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[Ev],
        context: Option<&EventContext>,
    ) -> Result<Vec<RecordedEvent>> {
        let events = events
            .iter()
            .map(|e| {
                let new = NewEvent::from_event(e)?;
                Ok(match context {
                    Some(c) => new.with_context(c.clone()),
                    None => new,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.append(stream, expected, events).await?.events)
    }

    /// Appends raw events atomically (all or none), expecting `expected` of the stream, then
    /// publishes what was stored. Validation happens before anything is written (see
    /// [`crate::limits`]).
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<Appended> {
        self.seal(&mut events).await?;
        let batch = AppendBatch::new(stream, expected, events)?;
        let started = std::time::Instant::now();
        let result = self.append_batch(stream, batch).await;
        crate::metrics::appended(started, result.as_ref().map(std::slice::from_ref));
        result
    }

    async fn append_batch(&self, stream: &str, batch: AppendBatch) -> Result<Appended> {
        if !E::ON_SAVE {
            return self.inner.store.append(batch).await;
        }
        let gate = self.publish_gate(stream);
        let guard = gate.lock().await;
        let appended = self.inner.store.append(batch).await;
        let result = match appended {
            Ok(a) if a.stored => match self.inner.emitter.publish_saved(&a.events).await {
                Ok(()) => Ok(a),
                Err(e) => {
                    tracing::warn!(stream, error = %e, "stored, but publishing failed");
                    Err(e)
                }
            },
            other => other,
        };
        drop(guard);
        self.release_gate(stream, gate);
        result
    }

    /// Appends to several streams atomically (see [`MultiAppend`]): every batch or none, each
    /// against its own expected version; then publishes what was stored. Results are in batch
    /// order.
    pub async fn append_many(&self, batches: Vec<AppendBatch>) -> Result<Vec<Appended>> {
        let batches = MultiAppend::new(batches)?;
        let started = std::time::Instant::now();
        let result = self.append_batches(batches).await;
        crate::metrics::appended(started, result.as_ref().map(Vec::as_slice));
        result
    }

    async fn append_batches(&self, batches: MultiAppend) -> Result<Vec<Appended>> {
        if !E::ON_SAVE {
            return self.inner.store.append_many(batches).await;
        }
        // The streams' publish gates, taken in one order (no deadlock with another such call).
        let mut streams: Vec<String> = batches
            .batches()
            .iter()
            .map(|b| b.stream().to_string())
            .collect();
        streams.sort();
        let gates: Vec<_> = streams.iter().map(|s| self.publish_gate(s)).collect();
        let mut guards = Vec::with_capacity(gates.len());
        for g in &gates {
            guards.push(g.lock().await);
        }
        let result = match self.inner.store.append_many(batches).await {
            Ok(all) => {
                let mut published = Ok(());
                for a in all.iter().filter(|a| a.stored) {
                    if let Err(e) = self.inner.emitter.publish_saved(&a.events).await {
                        tracing::warn!(error = %e, "stored, but publishing failed");
                        published = Err(e);
                        break;
                    }
                }
                published.map(|()| all)
            }
            Err(e) => Err(e),
        };
        drop(guards);
        for (stream, gate) in streams.iter().zip(gates) {
            self.release_gate(stream, gate);
        }
        result
    }

    fn publish_gate(&self, stream: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self
            .inner
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(gates.entry(stream.to_owned()).or_default())
    }

    fn release_gate(&self, stream: &str, gate: Arc<tokio::sync::Mutex<()>>) {
        let mut gates = self
            .inner
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(gate);
        if gates.get(stream).is_some_and(|g| Arc::strong_count(g) == 1) {
            gates.remove(stream);
        }
    }
}
