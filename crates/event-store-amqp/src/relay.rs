//! The outbox relay: publishes the stored log to the exchange, in log order, moving its stored
//! checkpoint only after the broker confirmed.

use std::sync::Arc;
use std::time::Duration;

use event_store::{
    CheckpointName, Checkpoints, Error, Event as _, Events as _, LogCursor, Position, Query,
    RecordedEvent, Result, Store,
};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};

use crate::config::AmqpConfig;
use crate::message::{
    ReplayRequested, dead_letter_props, decode_legacy_replay, encode, routing_key,
};
use crate::metrics::{RelayMetrics, bump, count};
use crate::topology::{
    LEGACY_REPLAY_KEY, MAX_NAME_BYTES, amqp, close, connect, dead_letter_exchange,
    declare_dead_letters, declare_exchange, declare_queue, is_refusal, relay_lock_queue,
    replay_queue, short,
};

/// The routing key (and dead-letter group) under which the relay sets aside replay requests it
/// refused, in the queue `{exchange}.replay-requests.dead-letter`.
pub const REFUSED_REPLAY_REQUESTS: &str = "replay-requests";

/// Runs `future` while the connection is alive. The broker can vanish without any pending
/// operation or even the connection's state hearing of it (seen after a broker shutdown), so
/// every few seconds a cheap round trip on `probe` (a passive declaration of `queue`) must come
/// back in time.
pub(crate) async fn while_connected<T>(
    conn: &Connection,
    probe: &Channel,
    queue: &str,
    future: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let mut future = std::pin::pin!(future);
    loop {
        tokio::select! {
            out = &mut future => return out,
            () = tokio::time::sleep(PROBE_EVERY) => alive(conn, probe, queue).await?,
        }
    }
}

/// How often an idle or waiting connection is probed.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(3);

/// Whether the broker still answers on this connection.
pub(crate) async fn alive(conn: &Connection, probe: &Channel, queue: &str) -> Result<()> {
    let lost = || {
        Error::backend(
            crate::topology::BACKEND,
            "the connection to the broker was lost",
        )
    };
    if !(conn.status().connected() && probe.status().connected()) {
        return Err(lost());
    }
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match tokio::time::timeout(
        Duration::from_secs(5),
        probe.queue_declare(short("queue", queue)?, passive, FieldTable::default()),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(amqp("probing the connection", e)),
        Err(_) => Err(lost()),
    }
}

/// How long the relay waits for a publisher confirm before reconnecting.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);

/// Publishes a store's log to an exchange. Run one per exchange; extra ones wait (the first
/// holds an exclusive lock queue on the broker) and take over when it goes.
///
/// The checkpoint, named `amqp-relay:{host}:{port}/{vhost}/{exchange}` (see
/// [`AmqpConfig::destination`]), is kept in the store: each destination has its own, so relaying
/// one store to two brokers or virtual hosts delivers everything to both. It moves only after
/// the broker confirmed every message up to it, so a crash anywhere loses nothing, and a restart
/// republishes from the checkpoint with the same message ids (consumers drop the duplicates).
pub struct Relay<S> {
    store: S,
    config: AmqpConfig,
    checkpoint: CheckpointName,
    metrics: Arc<RelayMetrics>,
}

enum Ended {
    Locked,
    Failed(Error),
}

/// The prefix of every relay checkpoint's name.
pub const CHECKPOINT_PREFIX: &str = "amqp-relay:";

impl<S: Store + Checkpoints + Clone> Relay<S> {
    /// A relay of `store` to `config.exchange`.
    pub fn new(store: S, config: AmqpConfig) -> Result<Self> {
        config.validate()?;
        let checkpoint = format!("{CHECKPOINT_PREFIX}{}", config.destination()?);
        let checkpoint = CheckpointName::new(checkpoint).map_err(|_| {
            Error::invalid(
                "amqp",
                format!(
                    "the relay's checkpoint name (`{CHECKPOINT_PREFIX}HOST:PORT/VHOST/EXCHANGE`) \
                     must be at most {} bytes",
                    event_store::limits::MAX_CHECKPOINT_NAME_BYTES
                ),
            )
        })?;
        Ok(Self {
            store,
            config,
            checkpoint,
            metrics: Arc::default(),
        })
    }

    /// The name of the relay's checkpoint in the store: `amqp-relay:` and the destination.
    pub fn checkpoint_name(&self) -> &CheckpointName {
        &self.checkpoint
    }

    /// The checkpoint to start from: the destination's own; when it has none and
    /// [`AmqpConfig::adopt_legacy_checkpoint`] is on, the one kept under the exchange's name
    /// alone by earlier releases (saved under the new name at once).
    async fn start_checkpoint(&self) -> Result<Position> {
        if let Some(at) = self.store.load_checkpoint(&self.checkpoint).await? {
            return Ok(at);
        }
        let legacy = CheckpointName::new(format!("{CHECKPOINT_PREFIX}{}", self.config.exchange))?;
        match self.store.load_checkpoint(&legacy).await? {
            Some(at) if self.config.adopt_legacy_checkpoint => {
                tracing::warn!(from = %legacy, to = %self.checkpoint, checkpoint = %at, "adopting the legacy relay checkpoint");
                self.store.save_checkpoint(&self.checkpoint, at).await?;
                Ok(at)
            }
            Some(at) => {
                tracing::warn!(legacy = %legacy, checkpoint = %at, destination = %self.checkpoint, "a checkpoint of an earlier release exists but names no broker or virtual host; publishing from the start (set adopt_legacy_checkpoint to take it over)");
                Ok(Position::START)
            }
            None => Ok(Position::START),
        }
    }

    /// The relay's counters.
    pub fn metrics(&self) -> Arc<RelayMetrics> {
        Arc::clone(&self.metrics)
    }

    /// How many final events follow the relay's checkpoint, counting at most `cap`.
    pub async fn lag(&self, cap: u64) -> Result<u64> {
        let after = self
            .store
            .load_checkpoint(&self.checkpoint)
            .await?
            .unwrap_or(Position::START);
        event_store::lag(&self.store, after, cap).await
    }

    /// Runs until the task is aborted: connects, takes the lock, publishes, and reconnects after
    /// any failure (with backoff). Returns only when the broker refuses what retrying cannot
    /// fix (see [`crate::is_refusal`]: bad credentials, missing permissions, an exchange that
    /// exists with another type).
    pub async fn run(&self) -> Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.session().await {
                Ended::Locked => {
                    tracing::info!(exchange = %self.config.exchange, "another relay is active; waiting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ended::Failed(e) if is_refusal(&e) => {
                    tracing::error!(exchange = %self.config.exchange, error = %e, "the broker refused the relay");
                    return Err(e);
                }
                Ended::Failed(e) => {
                    count(
                        &self.metrics.reconnects,
                        1,
                        "event_store_relay_reconnects_total",
                        ("exchange", &self.config.exchange),
                    );
                    tracing::warn!(exchange = %self.config.exchange, error = %e, ?backoff, "relay failed; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.reconnect_max_backoff);
                }
            }
        }
    }

    async fn session(&self) -> Ended {
        let conn = match connect(&self.config).await {
            Ok(c) => c,
            Err(e) => return Ended::Failed(e),
        };
        let outcome = self.publish_loop(&conn).await;
        close(&conn, "relay stopping").await;
        match outcome {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn lock(&self, conn: &Connection) -> std::result::Result<Channel, Ended> {
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| Ended::Failed(amqp("opening a channel", e)))?;
        let queue =
            short("queue", &relay_lock_queue(&self.config.exchange)).map_err(Ended::Failed)?;
        let declared = ch
            .queue_declare(
                queue,
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(_) => Ok(ch),
            // RESOURCE_LOCKED: another connection holds the exclusive queue.
            Err(e)
                if e.to_string().contains("RESOURCE_LOCKED") || e.to_string().contains("405") =>
            {
                Err(Ended::Locked)
            }
            Err(e) => Err(Ended::Failed(amqp("taking the relay lock", e))),
        }
    }

    async fn publish_loop(
        &self,
        conn: &Connection,
    ) -> std::result::Result<std::convert::Infallible, Ended> {
        let lock = self.lock(conn).await?;
        let lock_queue = relay_lock_queue(&self.config.exchange);
        let mut last_probe = tokio::time::Instant::now();
        let failed = |what: &'static str| move |e: lapin::Error| Ended::Failed(amqp(what, e));
        let ch = conn
            .create_channel()
            .await
            .map_err(failed("opening a channel"))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(failed("enabling publisher confirms"))?;
        declare_exchange(&ch, &self.config.exchange)
            .await
            .map_err(Ended::Failed)?;
        let native = self.replay_consumer(conn).await.map_err(Ended::Failed)?;
        let legacy = match &self.config.legacy {
            Some(wire) => Some(
                self.legacy_replay_consumer(conn, &wire.store_namespace)
                    .await
                    .map_err(Ended::Failed)?,
            ),
            None => None,
        };
        let mut requests = Box::pin(futures::stream::select(
            native.map(|d| (false, d)),
            futures::stream::iter(legacy).flatten().map(|d| (true, d)),
        ));
        let name = self.checkpoint.clone();
        let start = self.start_checkpoint().await.map_err(Ended::Failed)?;
        let mut cursor = LogCursor::with_page(start, self.config.relay_batch);
        let mut changes = self.store.changes();
        tracing::info!(exchange = %self.config.exchange, checkpoint = %start, "relay publishing");
        loop {
            if last_probe.elapsed() >= PROBE_EVERY {
                alive(conn, &lock, &lock_queue)
                    .await
                    .map_err(Ended::Failed)?;
                last_probe = tokio::time::Instant::now();
            }
            changes.borrow_and_update();
            // The cursor moves on read; the stored checkpoint only after the confirms (a failure
            // ends the session, and the next one starts from the stored checkpoint).
            let page = cursor.next_page(&self.store).await.map_err(Ended::Failed)?;
            if !page.is_empty() {
                while_connected(
                    conn,
                    &lock,
                    &lock_queue,
                    self.publish_confirmed(&ch, &self.config.exchange, None, false, &page),
                )
                .await
                .map_err(Ended::Failed)?;
                self.store
                    .save_checkpoint(&name, cursor.position())
                    .await
                    .map_err(Ended::Failed)?;
                tracing::debug!(events = page.len(), checkpoint = %cursor.position(), "published");
                continue;
            }
            tokio::select! {
                _ = tokio::time::timeout(self.config.relay_poll, changes.changed()) => {}
                request = requests.next() => match request {
                    Some((false, Ok(delivery))) => while_connected(conn, &lock, &lock_queue, self.answer(conn, &ch, delivery)).await.map_err(Ended::Failed)?,
                    Some((true, Ok(delivery))) => while_connected(conn, &lock, &lock_queue, self.answer_legacy(&ch, delivery)).await.map_err(Ended::Failed)?,
                    Some((_, Err(e))) => return Err(Ended::Failed(amqp("receiving replay requests", e))),
                    None => return Err(Ended::Failed(Error::backend(crate::topology::BACKEND, "the replay-request consumer was cancelled"))),
                },
            }
        }
    }

    /// Publishes `events` (to `exchange` by routing key, or to `queue` directly), marked as
    /// replay when `replay`, then waits for every confirm; a nack is an error and nothing is
    /// counted as done.
    async fn publish_confirmed(
        &self,
        ch: &Channel,
        exchange: &str,
        queue: Option<&str>,
        replay: bool,
        events: &[RecordedEvent],
    ) -> Result<()> {
        let mut confirms = Vec::with_capacity(events.len());
        let exchange = short("exchange", exchange)?;
        for e in events {
            let (body, props) = encode(e, replay, self.config.legacy.is_some())?;
            let key = queue.map_or_else(|| routing_key(e), str::to_owned);
            let confirm = ch
                .basic_publish(
                    exchange.clone(),
                    short("routing key", &key)?,
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
                .map_err(|err| amqp("publishing", err))?;
            confirms.push(confirm);
        }
        bump(&self.metrics.published, events.len() as u64);
        let mut nacked = 0;
        for c in confirms {
            // A broker that went away without a word must not hold the relay for ever.
            let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, c)
                .await
                .map_err(|_| {
                    Error::backend(
                        crate::topology::BACKEND,
                        "no confirm from the broker in time",
                    )
                })?
                .map_err(|err| amqp("waiting for a confirm", err))?;
            if confirmation.is_nack() {
                nacked += 1;
            }
        }
        let label = ("exchange", self.config.exchange.as_str());
        count(
            &self.metrics.nacked,
            nacked,
            "event_store_relay_nacked_total",
            label,
        );
        count(
            &self.metrics.confirmed,
            events.len() as u64 - nacked,
            "event_store_relay_published_total",
            label,
        );
        if nacked == 0
            && !replay
            && let Some(last) = events.last()
        {
            metrics::gauge!("event_store_relay_lag_seconds", "exchange" => self.config.exchange.clone())
                .set(event_store::metrics::age_seconds(last));
        }
        if nacked > 0 {
            return Err(Error::backend(
                crate::topology::BACKEND,
                format!("the broker refused {nacked} messages"),
            ));
        }
        Ok(())
    }

    async fn replay_consumer(&self, conn: &Connection) -> Result<lapin::Consumer> {
        let t = ReplayRequested::EVENT_TYPE;
        self.request_consumer(
            conn,
            &replay_queue(&self.config.exchange),
            &format!("{}.{}", t.namespace, t.name),
        )
        .await
    }

    /// Consumes the original's replay requests: the durable queue
    /// `{store_namespace}-_eventstore.EventReplayRequested`, bound as an original store's was.
    async fn legacy_replay_consumer(
        &self,
        conn: &Connection,
        store_namespace: &str,
    ) -> Result<lapin::Consumer> {
        let queue = format!("{store_namespace}-{LEGACY_REPLAY_KEY}");
        self.request_consumer(conn, &queue, LEGACY_REPLAY_KEY).await
    }

    /// Consumes replay requests from the durable `queue`, bound to the exchange by `key`; refused
    /// requests go to `{exchange}.replay-requests.dead-letter`.
    async fn request_consumer(
        &self,
        conn: &Connection,
        queue: &str,
        key: &str,
    ) -> Result<lapin::Consumer> {
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| amqp("opening a channel", e))?;
        declare_queue(&ch, queue).await?;
        declare_dead_letters(
            &ch,
            &self.config.exchange,
            REFUSED_REPLAY_REQUESTS,
            crate::QueueType::Classic,
        )
        .await?;
        ch.queue_bind(
            short("queue", queue)?,
            short("exchange", &self.config.exchange)?,
            short("routing key", key)?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp("binding a replay-request queue", e))?;
        ch.basic_consume(
            short("queue", queue)?,
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp("consuming replay requests", e))
    }

    /// Answers one of the original's replay requests as an original store did: its events of
    /// that namespace and type newer than `since`, re-published onto the exchange with their
    /// routing key (so every queue bound to the type receives them), marked as replay. A request
    /// that cannot be read is set aside in `{exchange}.replay-requests.dead-letter`.
    async fn answer_legacy(&self, ch: &Channel, delivery: lapin::message::Delivery) -> Result<()> {
        let checked = decode_legacy_replay(&delivery.data).and_then(|r| {
            event_store::limits::check_name("namespace", &r.namespace)
                .and_then(|()| event_store::limits::check_name("type", &r.event_type))
                .map_err(|e| e.to_string())
                .map(|()| r)
        });
        let request = match checked {
            Ok(r) => r,
            Err(reason) => return self.refuse_and_ack(ch, delivery, &reason).await,
        };
        // "Newer than since": the store keeps times to the microsecond.
        let query = Query::all()
            .event_type(request.namespace.clone(), request.event_type.clone())
            .since(request.since + chrono::TimeDelta::microseconds(1));
        let sent = self.replay(ch, query, Position::START, None).await?;
        tracing::info!(namespace = %request.namespace, event_type = %request.event_type, since = %request.since, sent, "answered an original replay request");
        ack(&delivery).await
    }

    /// Answers one replay request: the stored events of its namespace and type after its
    /// checkpoint, sent to its queue, marked as replay. A request is untrusted input: one that
    /// does not decode, names an invalid namespace, type or queue, or a queue that does not exist
    /// is set aside in `{exchange}.replay-requests.dead-letter` with the reason, and acknowledged.
    async fn answer(
        &self,
        conn: &Connection,
        ch: &Channel,
        delivery: lapin::message::Delivery,
    ) -> Result<()> {
        let request = match self.check_request(conn, &delivery.data).await? {
            Ok(request) => request,
            Err(reason) => return self.refuse_and_ack(ch, delivery, &reason).await,
        };
        let query = Query::all().event_type(request.namespace.clone(), request.type_name.clone());
        let sent = self
            .replay(ch, query, request.since, Some(&request.queue))
            .await?;
        tracing::info!(queue = %request.queue, namespace = %request.namespace, event_type = %request.type_name, since = %request.since, sent, "answered a replay request");
        ack(&delivery).await
    }

    /// Sends the stored events `query` matches after `since`, marked as replay, to `queue` (or
    /// onto the exchange by routing key); returns how many. Final events only, filtered in the
    /// store: a replay never leaves out an event that commits behind it.
    async fn replay(
        &self,
        ch: &Channel,
        query: Query,
        since: Position,
        queue: Option<&str>,
    ) -> Result<u64> {
        let mut cursor =
            LogCursor::with_page(since, self.config.relay_batch).filtered(query.check()?);
        let exchange = if queue.is_some() {
            ""
        } else {
            self.config.exchange.as_str()
        };
        let mut sent = 0u64;
        loop {
            let page = cursor.next_page(&self.store).await?;
            if page.is_empty() {
                break;
            }
            self.publish_confirmed(ch, exchange, queue, true, &page)
                .await?;
            sent += page.len() as u64;
        }
        bump(&self.metrics.replayed, sent);
        Ok(sent)
    }

    /// Sets a refused request aside with `reason`, then acknowledges it.
    async fn refuse_and_ack(
        &self,
        ch: &Channel,
        delivery: lapin::message::Delivery,
        reason: &str,
    ) -> Result<()> {
        tracing::warn!(%reason, "refusing a replay request");
        self.refuse(ch, &delivery.data, &delivery.properties, reason)
            .await?;
        ack(&delivery).await
    }

    /// The request in `body`, or (inner `Err`) why it is refused for good. The outer `Err` is a
    /// failure to check (the broker went away), after which the request is tried again.
    async fn check_request(
        &self,
        conn: &Connection,
        body: &[u8],
    ) -> Result<std::result::Result<ReplayRequested, String>> {
        let t = ReplayRequested::EVENT_TYPE;
        let request = match serde_json::from_slice::<serde_json::Value>(body)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|data| {
                ReplayRequested::decode(t.namespace, t.name, &data)
                    .map_err(|e| format!("not a replay request: {}", source_text(&e)))
            }) {
            Ok(r) => r,
            Err(reason) => return Ok(Err(reason)),
        };
        let checked = event_store::limits::check_name("namespace", &request.namespace)
            .and_then(|()| event_store::limits::check_name("type", &request.type_name));
        if let Err(e) = checked {
            return Ok(Err(e.to_string()));
        }
        if let Err(reason) = check_queue_name(&request.queue) {
            return Ok(Err(reason));
        }
        // A passive declaration on a channel of its own: the broker closes the channel when the
        // queue does not exist.
        let probe = conn
            .create_channel()
            .await
            .map_err(|e| amqp("opening a channel", e))?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let exists = probe
            .queue_declare(
                short("queue", &request.queue)?,
                passive,
                FieldTable::default(),
            )
            .await;
        match exists {
            Ok(_) => {
                let _ = probe.close(200, "done".into()).await;
                Ok(Ok(request))
            }
            Err(e) if e.is_amqp_soft_error() => Ok(Err(format!(
                "the queue `{}` cannot receive a replay: {e}",
                request.queue
            ))),
            Err(e) => Err(amqp("checking a replay request's queue", e)),
        }
    }

    /// Sets a refused request aside in the relay's dead letters, with the reason (confirmed).
    async fn refuse(
        &self,
        ch: &Channel,
        body: &[u8],
        props: &BasicProperties,
        reason: &str,
    ) -> Result<()> {
        let props = dead_letter_props(props, REFUSED_REPLAY_REQUESTS, reason);
        let confirm = ch
            .basic_publish(
                short("exchange", &dead_letter_exchange(&self.config.exchange))?,
                REFUSED_REPLAY_REQUESTS.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .map_err(|e| amqp("setting a replay request aside", e))?
            .await
            .map_err(|e| amqp("waiting for a confirm", e))?;
        if confirm.is_nack() {
            return Err(Error::backend(
                crate::topology::BACKEND,
                "the broker refused to keep a refused replay request",
            ));
        }
        Ok(())
    }
}

/// Acknowledges a replay request.
async fn ack(delivery: &lapin::message::Delivery) -> Result<()> {
    delivery
        .ack(BasicAckOptions::default())
        .await
        .map(drop)
        .map_err(|e| amqp("acknowledging a replay request", e))
}

/// The error's message with its causes (a codec error's serde message is its source).
fn source_text(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A queue a replay may be sent to: 1 to 255 bytes, no control character, not reserved.
fn check_queue_name(queue: &str) -> std::result::Result<(), String> {
    if queue.is_empty() || queue.len() > MAX_NAME_BYTES {
        return Err(format!(
            "the queue name is {} bytes; AMQP queue names are 1 to {MAX_NAME_BYTES}",
            queue.len()
        ));
    }
    if queue.chars().any(char::is_control) {
        return Err("the queue name holds a control character".to_owned());
    }
    if queue.starts_with("amq.") {
        return Err(format!(
            "`{queue}`: names starting with `amq.` are the broker's"
        ));
    }
    Ok(())
}
