//! Subscribers: a group's durable queue, competing instances, retries with backoff, dead
//! letters, duplicate dropping and reconnection.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use event_store::{
    Emitter, Error, Event as _, Events as _, Handler, LogCursor, Position, RecordedEvent, Result,
    Store, Subscription, SubscriptionSpec, TypeFilter,
};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};

use crate::config::AmqpConfig;
use crate::message::{ReplayRequested, dead_letter_props, decode, decode_legacy};
use crate::metrics::{SubscriberMetrics, bump, count};
use crate::topology::{
    amqp, binding_keys, close, connect, dead_letter_exchange, declare_dead_letters,
    declare_exchange, declare_group, declare_ordered_group, declare_queue_with, group_args,
    group_queue, is_refusal, legacy_queue, short,
};

/// The AMQP emitter: subscriptions consume a group's queue on RabbitMQ. Publishing is the
/// [`Relay`](crate::Relay)'s job (it publishes from the log), so saves publish nothing here.
#[derive(Clone, Debug)]
pub struct AmqpEmitter {
    config: AmqpConfig,
    metrics: Arc<SubscriberMetrics>,
}

impl AmqpEmitter {
    /// An emitter for `config.exchange`.
    pub fn new(config: AmqpConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            metrics: Arc::default(),
        })
    }

    /// The subscribers' counters (shared by every subscription of this emitter).
    pub fn metrics(&self) -> Arc<SubscriberMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Asks the relay to send `group` the stored events of each of `types` after `since`
    /// (marked as replay): how a group that does not share the store catches up. Subscribe
    /// first, so the group's queue exists.
    pub async fn request_replay(
        &self,
        group: &str,
        types: &[TypeFilter],
        since: Position,
    ) -> Result<()> {
        self.config.check_group(group)?;
        self.config.check_types(types)?;
        if self.config.legacy.is_some() {
            return Err(Error::invalid(
                "legacy",
                "with the original wire format, ask with `request_legacy_replay` (an original \
                 `_eventstore.EventReplayRequested`, answered onto the exchange)",
            ));
        }
        if self.config.partitions > 0 {
            return Err(Error::invalid(
                "partitions",
                "a replay goes to one queue, which would break an ordered group's partitions: \
                 catch an ordered group up with `subscribe_from_store`",
            ));
        }
        let t = ReplayRequested::EVENT_TYPE;
        let key = format!("{}.{}", t.namespace, t.name);
        let mut requests = Vec::with_capacity(types.len());
        for filter in types {
            let event_type = named_type(filter)?;
            let request = ReplayRequested {
                namespace: filter.namespace.clone(),
                type_name: event_type.to_owned(),
                since,
                queue: group_queue(&self.config.exchange, group),
            };
            let body = serde_json::to_vec(&request.encode()?)
                .map_err(|e| Error::codec("encode a replay request", e))?;
            requests.push((key.clone(), body));
        }
        self.publish_requests(requests).await
    }

    /// Publishes the original's replay request for each of `types` (`_eventstore.EventReplayRequested`
    /// with `requested_event_namespace`, `requested_event_type` and `since`): every store that
    /// speaks the original format (an original service's, or a [`Relay`](crate::Relay) with
    /// [`AmqpConfig::legacy`](crate::AmqpConfig::legacy)) re-publishes its events of that type
    /// newer than `since` onto the exchange. Subscribe first, so the queues exist.
    pub async fn request_legacy_replay(
        &self,
        types: &[TypeFilter],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        self.config.check_types(types)?;
        let mut requests = Vec::with_capacity(types.len());
        for t in types {
            let body = serde_json::json!({
                "id": uuid::Uuid::now_v7(),
                "data": {
                    "event_namespace": "_eventstore",
                    "event_type": "EventReplayRequested",
                    "requested_event_namespace": t.namespace,
                    "requested_event_type": named_type(t)?,
                    "since": since.to_rfc3339(),
                },
                "context": {"action": null, "subject": {}, "time": chrono::Utc::now().to_rfc3339()},
            });
            requests.push((
                crate::topology::LEGACY_REPLAY_KEY.to_owned(),
                body.to_string().into_bytes(),
            ));
        }
        self.publish_requests(requests).await
    }

    /// Publishes replay requests (routing key, body) onto the exchange, each confirmed.
    async fn publish_requests(&self, requests: Vec<(String, Vec<u8>)>) -> Result<()> {
        let conn = connect(&self.config).await?;
        let result = async {
            let ch = conn
                .create_channel()
                .await
                .map_err(|e| amqp("opening a channel", e))?;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| amqp("enabling publisher confirms", e))?;
            declare_exchange(&ch, &self.config.exchange).await?;
            for (key, body) in requests {
                let confirm = ch
                    .basic_publish(
                        short("exchange", &self.config.exchange)?,
                        short("routing key", &key)?,
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default()
                            .with_content_type("application/json".into())
                            .with_delivery_mode(2)
                            .with_message_id(uuid::Uuid::now_v7().to_string().into()),
                    )
                    .await
                    .map_err(|e| amqp("publishing a replay request", e))?
                    .await
                    .map_err(|e| amqp("waiting for a confirm", e))?;
                if confirm.is_nack() {
                    return Err(Error::backend(
                        crate::topology::BACKEND,
                        "the broker refused a replay request",
                    ));
                }
            }
            Ok(())
        }
        .await;
        close(&conn, "done").await;
        result
    }

    /// Like [`Emitter::subscribe`], but first catches up from `store`, which the group shares:
    /// once the group's queue is bound, the stored events of its types after `since` go to the
    /// handler, then the queue's (the ones seen in both are dropped as duplicates).
    pub async fn subscribe_from_store<S: Store>(
        &self,
        store: S,
        since: Position,
        spec: SubscriptionSpec,
        handler: Handler,
    ) -> Result<Subscription> {
        self.start(
            spec,
            handler,
            Some((Box::new(store) as Box<dyn CatchUp>, since)),
        )
        .await
    }

    async fn start(
        &self,
        spec: SubscriptionSpec,
        handler: Handler,
        catch_up: Option<(Box<dyn CatchUp>, Position)>,
    ) -> Result<Subscription> {
        self.config.check_group(&spec.group)?;
        self.config.check_types(&spec.types)?;
        let keys = binding_keys(&spec.types);
        // Declare before returning: events are queued from now on.
        let conn = connect(&self.config).await?;
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| amqp("opening a channel", e))?;
        declare(&conn, &ch, &self.config, &spec.group, &spec.types, &keys).await?;
        let worker = Worker {
            config: self.config.clone(),
            metrics: Arc::clone(&self.metrics),
            group: spec.group.clone(),
            types: spec.types,
            keys,
            handler,
            seen: Seen::new(self.config.dedupe_window),
        };
        let group = spec.group;
        Ok(Subscription::new(group, worker.run(conn, catch_up)))
    }
}

impl Emitter for AmqpEmitter {
    const PUBLISHES_ON_SAVE: bool = false;

    async fn publish(&self, _events: &[RecordedEvent]) -> Result<()> {
        // The relay publishes from the log.
        Ok(())
    }

    async fn subscribe(&self, spec: SubscriptionSpec, handler: Handler) -> Result<Subscription> {
        self.start(spec, handler, None).await
    }
}

/// The type a replay request names (a namespace alone cannot be replayed).
fn named_type(filter: &TypeFilter) -> Result<&str> {
    filter
        .event_type
        .as_deref()
        .ok_or_else(|| Error::invalid("types", "a replay request names a namespace and a type"))
}

/// Declares a group's queues (its one queue, its ordered partitions, or with the original wire
/// format one queue per type); returns their names.
async fn declare(
    conn: &Connection,
    ch: &Channel,
    config: &AmqpConfig,
    group: &str,
    types: &[TypeFilter],
    keys: &[String],
) -> Result<Vec<String>> {
    if let Some(legacy) = &config.legacy {
        declare_exchange(ch, &config.exchange).await?;
        declare_dead_letters(ch, &config.exchange, group, config.queue_type).await?;
        let mut queues = Vec::new();
        for t in types {
            let Some(ty) = &t.event_type else { continue };
            let queue = legacy_queue(&legacy.store_namespace, &t.namespace, ty);
            declare_queue_with(
                ch,
                &queue,
                group_args(&config.exchange, group, config.queue_type),
            )
            .await?;
            ch.queue_bind(
                short("queue", &queue)?,
                short("exchange", &config.exchange)?,
                short("binding", &format!("{}.{ty}", t.namespace))?,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| amqp("binding a type's queue", e))?;
            queues.push(queue);
        }
        return Ok(queues);
    }
    if config.partitions == 0 {
        Ok(vec![
            declare_group(ch, &config.exchange, group, keys, config.queue_type).await?,
        ])
    } else {
        declare_ordered_group(
            conn,
            ch,
            &config.exchange,
            group,
            keys,
            config.partitions,
            config.queue_type,
        )
        .await
    }
}

/// The longest a broker operation (declaring the topology, handling one message including its
/// handler's retries) may take before the connection is considered lost.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest an acknowledgement may take before the connection is considered lost.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// `future`, or an error once `limit` has passed.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, future).await.map_err(|_| {
        Error::backend(
            crate::topology::BACKEND,
            format!("{what} timed out after {limit:?}"),
        )
    })?
}

/// A store to catch up from, behind a box (the subscription future is not generic).
trait CatchUp: Send + Sync {
    fn next_page<'a>(
        &'a self,
        cursor: &'a mut LogCursor,
    ) -> futures::future::BoxFuture<'a, Result<Vec<RecordedEvent>>>;
}

impl<S: Store> CatchUp for S {
    fn next_page<'a>(
        &'a self,
        cursor: &'a mut LogCursor,
    ) -> futures::future::BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        Box::pin(cursor.next_page(self))
    }
}

/// The ids processed lately, to drop redeliveries before the handler.
struct Seen {
    set: HashSet<uuid::Uuid>,
    order: VecDeque<uuid::Uuid>,
    cap: usize,
}

impl Seen {
    fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn contains(&self, id: &uuid::Uuid) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: uuid::Uuid) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > self.cap
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

struct Worker {
    config: AmqpConfig,
    metrics: Arc<SubscriberMetrics>,
    group: String,
    types: Vec<TypeFilter>,
    keys: Vec<String>,
    handler: Handler,
    seen: Seen,
}

impl Worker {
    async fn run(
        mut self,
        first: Connection,
        catch_up: Option<(Box<dyn CatchUp>, Position)>,
    ) -> Result<()> {
        if let Some((store, since)) = catch_up {
            self.catch_up(store.as_ref(), since).await?;
        }
        let mut conn = Some(first);
        let mut backoff = Duration::from_millis(100);
        loop {
            let c = match conn.take() {
                Some(c) => c,
                None => match connect(&self.config).await {
                    Ok(c) => c,
                    Err(e) if is_refusal(&e) => {
                        tracing::error!(group = %self.group, error = %e, "the broker refused the subscriber");
                        return Err(e);
                    }
                    Err(e) => {
                        tracing::warn!(group = %self.group, error = %e, "cannot reach the broker; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(self.config.reconnect_max_backoff);
                        continue;
                    }
                },
            };
            let outcome = self.consume(&c).await;
            close(&c, "subscriber stopping").await;
            match outcome {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) if is_refusal(&e) => {
                    tracing::error!(group = %self.group, error = %e, "the broker refused the subscriber");
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(group = %self.group, error = %e, "subscription failed; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.reconnect_max_backoff);
                }
            }
            bump(&self.metrics.reconnects, 1);
        }
    }

    async fn catch_up(&mut self, store: &dyn CatchUp, since: Position) -> Result<()> {
        let mut cursor = LogCursor::new(since);
        loop {
            let page = store.next_page(&mut cursor).await?;
            if page.is_empty() {
                return Ok(());
            }
            let mine = |e: &RecordedEvent| {
                TypeFilter::any_matches(&self.types, &e.namespace, &e.event_type)
            };
            for e in page.into_iter().filter(mine) {
                if self.seen.contains(&e.id) {
                    continue;
                }
                let id = e.id;
                match self.call(e).await {
                    Ok(()) => self.seen.insert(id),
                    Err(reason) => {
                        return Err(Error::backend(
                            crate::topology::BACKEND,
                            format!("catching up from the store failed on event {id}: {reason}"),
                        ));
                    }
                }
            }
        }
    }

    /// Calls the handler with retries; `Err` carries the last failure once attempts run out.
    async fn call(&self, event: RecordedEvent) -> std::result::Result<(), String> {
        let mut wait = self.config.retry_backoff;
        let mut last = String::new();
        for attempt in 1..=self.config.max_attempts {
            match (self.handler)(event.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            if attempt < self.config.max_attempts {
                count(
                    &self.metrics.retries,
                    1,
                    "event_store_subscriber_retries_total",
                    ("group", &self.group),
                );
                tracing::debug!(group = %self.group, event_id = %event.id, attempt, error = %last, "handler failed; retrying");
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
        }
        Err(last)
    }

    async fn consume(&mut self, conn: &Connection) -> Result<()> {
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| amqp("opening a channel", e))?;
        let queues = within(
            OPERATION_TIMEOUT,
            "declaring the group's queues",
            declare(
                conn,
                &ch,
                &self.config,
                &self.group,
                &self.types,
                &self.keys,
            ),
        )
        .await?;
        ch.basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| amqp("setting the prefetch", e))?;
        let dead = conn
            .create_channel()
            .await
            .map_err(|e| amqp("opening a channel", e))?;
        dead.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| amqp("enabling publisher confirms", e))?;
        // Every instance consumes every queue. Of an ordered group's partitions, the broker
        // delivers each to one consumer at a time (the first registered): starting at a random
        // partition spreads them when instances start together.
        let start = if queues.len() > 1 {
            usize::try_from(uuid::Uuid::now_v7().as_u128() % queues.len() as u128).unwrap_or(0)
        } else {
            0
        };
        let mut consumers = Vec::with_capacity(queues.len());
        for queue in queues.iter().cycle().skip(start).take(queues.len()) {
            let consumer = ch
                .basic_consume(
                    short("queue", queue)?,
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| amqp("consuming", e))?;
            consumers.push(consumer);
        }
        let probe = queues.first().cloned().unwrap_or_default();
        let mut consumer = futures::stream::select_all(consumers);
        loop {
            // The consumer does not always end when the broker goes away (seen after a broker
            // shutdown): an idle connection is probed every few seconds.
            let next = tokio::select! {
                next = consumer.next() => next,
                () = tokio::time::sleep(crate::relay::PROBE_EVERY) => {
                    crate::relay::alive(conn, &ch, &probe).await?;
                    continue;
                }
            };
            let Some(delivery) = next else {
                return Err(Error::backend(
                    crate::topology::BACKEND,
                    "the consumer was cancelled",
                ));
            };
            let delivery = delivery.map_err(|e| amqp("receiving", e))?;
            within(
                OPERATION_TIMEOUT,
                "handling a message",
                self.handle(&dead, delivery),
            )
            .await?;
        }
    }

    async fn handle(&mut self, dead: &Channel, delivery: lapin::message::Delivery) -> Result<()> {
        count(
            &self.metrics.delivered,
            1,
            "event_store_subscriber_delivered_total",
            ("group", &self.group),
        );
        if delivery.redelivered {
            count(
                &self.metrics.redeliveries,
                1,
                "event_store_subscriber_redeliveries_total",
                ("group", &self.group),
            );
        }
        // An ack on a connection the broker reset may never complete (seen during a broker
        // restart): bounded, so the subscription reconnects and the message is redelivered (and
        // dropped as a duplicate if it was handled).
        let ack = |d: &lapin::message::Delivery| {
            let acker = d.acker.clone();
            within(ACK_TIMEOUT, "acknowledging", async move {
                acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map(drop)
                    .map_err(|e| amqp("acknowledging", e))
            })
        };
        let decoded = if self.config.legacy.is_some() {
            decode_legacy(&delivery.data, &delivery.properties)
        } else {
            decode(&delivery.data)
        };
        let event = match decoded {
            Ok(e) => e,
            Err(reason) => {
                self.dead_letter(dead, &delivery, &format!("unparsable: {reason}"))
                    .await?;
                return ack(&delivery).await;
            }
        };
        if self.seen.contains(&event.id) {
            count(
                &self.metrics.duplicates,
                1,
                "event_store_subscriber_duplicates_total",
                ("group", &self.group),
            );
            return ack(&delivery).await;
        }
        let id = event.id;
        match self.call(event).await {
            Ok(()) => {
                self.seen.insert(id);
                count(
                    &self.metrics.handled,
                    1,
                    "event_store_subscriber_handled_total",
                    ("group", &self.group),
                );
            }
            Err(reason) => self.dead_letter(dead, &delivery, &reason).await?,
        }
        ack(&delivery).await
    }

    /// Sends a message to the group's dead letters (confirmed) with the reason in a header.
    async fn dead_letter(
        &self,
        ch: &Channel,
        delivery: &lapin::message::Delivery,
        reason: &str,
    ) -> Result<()> {
        let props = dead_letter_props(&delivery.properties, &self.group, reason);
        let exchange = short("exchange", &dead_letter_exchange(&self.config.exchange))?;
        let group = short("group", &self.group)?;
        // Bounded like an ack: a confirm on a reset connection may never come.
        let confirm = within(ACK_TIMEOUT, "dead-lettering", async {
            ch.basic_publish(
                exchange,
                group,
                BasicPublishOptions::default(),
                &delivery.data,
                props,
            )
            .await
            .map_err(|e| amqp("dead-lettering", e))?
            .await
            .map_err(|e| amqp("waiting for a confirm", e))
        })
        .await?;
        if confirm.is_nack() {
            return Err(Error::backend(
                crate::topology::BACKEND,
                "the broker refused a dead letter",
            ));
        }
        count(
            &self.metrics.dead_letters,
            1,
            "event_store_subscriber_dead_letters_total",
            ("group", &self.group),
        );
        tracing::warn!(group = %self.group, %reason, "dead-lettered a message");
        Ok(())
    }
}
