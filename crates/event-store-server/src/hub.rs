//! One tail of the store shared by every live client.
//!
//! A server with a hundred live clients must not read the store a hundred times per event. The
//! hub follows the log once, from the head when the first client came, and broadcasts each final
//! event, already encoded, to every client. A client first subscribes, then catches up from its
//! own position with reads of its own, then takes the broadcast, skipping what it has sent:
//! every event final before it subscribed is in its reads, every event after is broadcast to it,
//! so nothing is missed, and the positions (in log order) drop what both give. A client that
//! falls more than the broadcast's capacity behind is told so by the channel and catches up
//! from the store again.

use std::sync::Arc;

use event_store::{EventStore, Position, RecordedEvent, Store};
use futures::StreamExt as _;
use tokio::sync::{Mutex, broadcast, watch};

/// A final event, encoded once for every client.
pub(crate) struct Item {
    pub(crate) event: RecordedEvent,
    /// The event as JSON (the SSE event's data).
    pub(crate) json: String,
}

impl Item {
    pub(crate) fn new(event: RecordedEvent) -> Arc<Self> {
        let json = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned());
        Arc::new(Self { event, json })
    }

    pub(crate) fn position(&self) -> Position {
        self.event.position
    }
}

/// The broadcast, started by the first client.
#[derive(Default)]
pub(crate) struct Hub {
    sender: Mutex<Option<broadcast::Sender<Arc<Item>>>>,
}

impl Hub {
    /// A receiver of every final event from now on (and possibly a few before: positions sort
    /// them out). The first call starts the shared tail at the head; it ends when `stopping`
    /// turns `true`.
    pub(crate) async fn subscribe<S: Store + Clone>(
        &self,
        es: &EventStore<S>,
        capacity: usize,
        stopping: &watch::Receiver<bool>,
    ) -> event_store::Result<broadcast::Receiver<Arc<Item>>> {
        let mut sender = self.sender.lock().await;
        if let Some(tx) = sender.as_ref() {
            return Ok(tx.subscribe());
        }
        // The head is read before anyone subscribes, so every event after it is broadcast to
        // every receiver; events up to it are in each client's own reads.
        let start = event_store::head(es.store()).await?;
        let (tx, rx) = broadcast::channel(capacity.max(1));
        let tail = es.tail(start, None);
        let mut stopping = stopping.clone();
        let hub = tx.clone();
        tokio::spawn(async move {
            let mut tail = std::pin::pin!(tail);
            loop {
                let next = tokio::select! {
                    _ = stopping.wait_for(|stop| *stop) => break,
                    next = tail.next() => next,
                };
                match next {
                    // No receiver now is not an error: one may subscribe later.
                    Some(Ok(e)) => drop(hub.send(Item::new(e))),
                    // The tail goes on after a failed read; say so in the log only.
                    Some(Err(e)) => tracing::warn!(error = %e, "the live tail's read failed"),
                    None => break,
                }
            }
        });
        *sender = Some(tx);
        Ok(rx)
    }
}
