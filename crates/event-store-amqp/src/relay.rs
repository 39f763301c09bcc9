//! The outbox relay: publishes the stored log to the exchange, in log order, moving its stored
//! checkpoint only after the broker confirmed.

use std::sync::Arc;
use std::time::Duration;

use event_store::{
    Checkpoints, Error, Event as _, Events as _, Position, Query, RecordedEvent, Result, Store,
};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use crate::config::AmqpConfig;
use crate::message::{ReplayRequested, encode, routing_key};
use crate::metrics::{RelayMetrics, bump};
use crate::topology::{amqp, close, connect, declare_exchange, relay_lock_queue, replay_queue};

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
        probe.queue_declare(queue.into(), passive, FieldTable::default()),
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
/// The checkpoint, named `amqp-relay:{exchange}`, is kept in the store; it moves only after the
/// broker confirmed every message up to it, so a crash anywhere loses nothing, and a restart
/// republishes from the checkpoint with the same message ids (consumers drop the duplicates).
pub struct Relay<S> {
    store: S,
    config: AmqpConfig,
    metrics: Arc<RelayMetrics>,
}

enum Ended {
    Locked,
    Failed(Error),
}

impl<S: Store + Checkpoints + Clone> Relay<S> {
    /// A relay of `store` to `config.exchange`.
    pub fn new(store: S, config: AmqpConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            store,
            config,
            metrics: Arc::default(),
        })
    }

    /// The name of the relay's checkpoint in the store.
    pub fn checkpoint_name(&self) -> String {
        format!("amqp-relay:{}", self.config.exchange)
    }

    /// The relay's counters.
    pub fn metrics(&self) -> Arc<RelayMetrics> {
        Arc::clone(&self.metrics)
    }

    /// How many final events follow the relay's checkpoint, counting at most `cap`.
    pub async fn lag(&self, cap: usize) -> Result<u64> {
        let mut after = self
            .store
            .load_checkpoint(&self.checkpoint_name())
            .await?
            .unwrap_or(Position::START);
        let mut n = 0usize;
        while n < cap {
            let page = self.store.read_all(after, 1000.min(cap - n)).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            n += page.len();
        }
        Ok(n as u64)
    }

    /// Runs until the task is aborted: connects, takes the lock, publishes, and reconnects after
    /// any failure (with backoff).
    pub async fn run(&self) -> Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.session().await {
                Ended::Locked => {
                    tracing::info!(exchange = %self.config.exchange, "another relay is active; waiting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ended::Failed(e) => {
                    bump(&self.metrics.reconnects, 1);
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
        let declared = ch
            .queue_declare(
                relay_lock_queue(&self.config.exchange).into(),
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
        let requests = self.replay_consumer(conn).await.map_err(Ended::Failed)?;
        let mut requests = Box::pin(requests);
        let name = self.checkpoint_name();
        let mut after = self
            .store
            .load_checkpoint(&name)
            .await
            .map_err(Ended::Failed)?
            .unwrap_or(Position::START);
        let mut changes = self.store.changes();
        tracing::info!(exchange = %self.config.exchange, checkpoint = %after, "relay publishing");
        loop {
            if last_probe.elapsed() >= PROBE_EVERY {
                alive(conn, &lock, &lock_queue)
                    .await
                    .map_err(Ended::Failed)?;
                last_probe = tokio::time::Instant::now();
            }
            changes.borrow_and_update();
            let page = self
                .store
                .read_all(after, self.config.relay_batch)
                .await
                .map_err(Ended::Failed)?;
            if let Some(last) = page.last() {
                let last = last.position;
                while_connected(
                    conn,
                    &lock,
                    &lock_queue,
                    self.publish_confirmed(&ch, &self.config.exchange, None, &page),
                )
                .await
                .map_err(Ended::Failed)?;
                self.store
                    .save_checkpoint(&name, last)
                    .await
                    .map_err(Ended::Failed)?;
                after = last;
                tracing::debug!(events = page.len(), checkpoint = %after, "published");
                continue;
            }
            tokio::select! {
                _ = tokio::time::timeout(self.config.relay_poll, changes.changed()) => {}
                request = requests.next() => match request {
                    Some(Ok(delivery)) => while_connected(conn, &lock, &lock_queue, self.answer(&ch, delivery)).await.map_err(Ended::Failed)?,
                    Some(Err(e)) => return Err(Ended::Failed(amqp("receiving replay requests", e))),
                    None => return Err(Ended::Failed(Error::backend(crate::topology::BACKEND, "the replay-request consumer was cancelled"))),
                },
            }
        }
    }

    /// Publishes `events` (to `exchange` by routing key, or to `queue` directly), then waits for
    /// every confirm; a nack is an error and nothing is counted as done.
    async fn publish_confirmed(
        &self,
        ch: &Channel,
        exchange: &str,
        queue: Option<&str>,
        events: &[RecordedEvent],
    ) -> Result<()> {
        let mut confirms = Vec::with_capacity(events.len());
        for e in events {
            let (body, props) = encode(e, queue.is_some())?;
            let key = queue.map_or_else(|| routing_key(e), str::to_owned);
            let confirm = ch
                .basic_publish(
                    exchange.into(),
                    key.as_str().into(),
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
        bump(&self.metrics.nacked, nacked);
        bump(&self.metrics.confirmed, events.len() as u64 - nacked);
        if nacked > 0 {
            return Err(Error::backend(
                crate::topology::BACKEND,
                format!("the broker refused {nacked} messages"),
            ));
        }
        Ok(())
    }

    async fn replay_consumer(&self, conn: &Connection) -> Result<lapin::Consumer> {
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| amqp("opening a channel", e))?;
        let queue = replay_queue(&self.config.exchange);
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp("declaring the replay-request queue", e))?;
        let t = ReplayRequested::EVENT_TYPE;
        ch.queue_bind(
            queue.as_str().into(),
            self.config.exchange.as_str().into(),
            format!("{}.{}", t.namespace, t.name).as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp("binding the replay-request queue", e))?;
        ch.basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp("consuming replay requests", e))
    }

    /// Answers one replay request: the stored events of its namespace and type after its
    /// checkpoint, sent to its queue, marked as replay.
    async fn answer(&self, ch: &Channel, delivery: lapin::message::Delivery) -> Result<()> {
        let request = serde_json::from_slice::<serde_json::Value>(&delivery.data)
            .ok()
            .and_then(|data| {
                let t = ReplayRequested::EVENT_TYPE;
                ReplayRequested::decode(t.namespace, t.name, &data).ok()
            });
        let Some(request) = request else {
            tracing::warn!("dropping an unreadable replay request");
            return delivery
                .reject(BasicRejectOptions { requeue: false })
                .await
                .map(drop)
                .map_err(|e| amqp("rejecting a replay request", e));
        };
        let query = Query::all().event_type(request.namespace.clone(), request.type_name.clone());
        let mut after = request.since;
        let mut sent = 0u64;
        loop {
            let page = self
                .store
                .read_query(&query, after, self.config.relay_batch)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            self.publish_confirmed(ch, "", Some(&request.queue), &page)
                .await?;
            sent += page.len() as u64;
        }
        bump(&self.metrics.replayed, sent);
        tracing::info!(queue = %request.queue, namespace = %request.namespace, event_type = %request.type_name, since = %request.since, sent, "answered a replay request");
        delivery
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(|e| amqp("acknowledging a replay request", e))
    }
}
