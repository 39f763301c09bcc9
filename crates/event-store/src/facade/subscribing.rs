//! Subscribing handlers to the emitter.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;

use crate::backend::{Emitter, Handler, Store, Subscription, SubscriptionSpec};
use crate::error::{BoxError, Result};
use crate::event::Events;
use crate::facade::EventStore;
use crate::model::RecordedEvent;
use crate::query::TypeFilter;

impl<S: Store, C: Send + Sync + 'static, E: Emitter> EventStore<S, C, E> {
    // ---- subscriptions -------------------------------------------------------------------

    /// Subscribes an async handler for `group` to the events of `Ev`. Events of other types the
    /// group receives are acknowledged without calling the handler. Run the returned
    /// [`Subscription`] (e.g. `tokio::spawn(sub.into_future())`); the handler may use the store
    /// (clone it into the closure).
    pub async fn subscribe<Ev, F, Fut>(&self, group: &str, handler: F) -> Result<Subscription>
    where
        Ev: Events,
        F: Fn(Ev, RecordedEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let types = Ev::read_types()
            .into_iter()
            .map(|t| TypeFilter {
                namespace: t.namespace.to_owned(),
                event_type: Some(t.name.to_owned()),
            })
            .collect();
        let handler = Arc::new(handler);
        let erasure = self.inner.erasure.clone();
        let raw: Handler = Arc::new(move |event: RecordedEvent| {
            let handler = Arc::clone(&handler);
            let erasure = erasure.clone();
            async move {
                if !Ev::handles(&event.namespace, &event.event_type) {
                    return Ok(());
                }
                // Personal values opened for the typed event (erased without keys); the raw
                // event handed beside it keeps the sealed form.
                let typed = crate::erasure::decode_opened::<Ev>(erasure.as_deref(), &event)
                    .await
                    .map_err(BoxError::from)?;
                handler(typed, event).await
            }
            .boxed()
        });
        self.inner
            .emitter
            .subscribe(
                SubscriptionSpec {
                    group: group.to_owned(),
                    types,
                },
                raw,
            )
            .await
    }
}
