//! Connections and the names and declarations of exchanges and queues.

use std::time::Duration;

use event_store::{Error, Result, TypeFilter};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::config::AmqpConfig;

pub(crate) const BACKEND: &str = "amqp";

pub(crate) fn amqp(what: &str, e: lapin::Error) -> Error {
    Error::backend_with(BACKEND, format!("{what}: {e}"), e)
}

pub(crate) async fn connect(config: &AmqpConfig) -> Result<Connection> {
    let connect = Connection::connect(&config.url, ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(c)) => Ok(c),
        // lapin's errors name the failure, never the URL's password.
        Ok(Err(e)) => Err(amqp("connecting to the broker", e)),
        Err(_) => Err(Error::backend(
            BACKEND,
            "connecting to the broker timed out",
        )),
    }
}

pub(crate) fn group_queue(exchange: &str, group: &str) -> String {
    format!("{exchange}.{group}")
}

pub(crate) fn dead_letter_exchange(exchange: &str) -> String {
    format!("{exchange}.dead-letter")
}

pub(crate) fn dead_letter_queue(exchange: &str, group: &str) -> String {
    format!("{exchange}.{group}.dead-letter")
}

pub(crate) fn relay_lock_queue(exchange: &str) -> String {
    format!("{exchange}.relay-lock")
}

pub(crate) fn replay_queue(exchange: &str) -> String {
    format!("{exchange}.replay-requests")
}

/// The routing keys a group binds: `ns.type`, `ns.*`, or `#` for everything.
pub(crate) fn binding_keys(types: &[TypeFilter]) -> Vec<String> {
    if types.is_empty() {
        return vec!["#".to_owned()];
    }
    let mut keys: Vec<String> = types
        .iter()
        .map(|t| match &t.event_type {
            Some(ty) => format!("{}.{ty}", t.namespace),
            None => format!("{}.*", t.namespace),
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn durable() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

pub(crate) async fn declare_exchange(ch: &Channel, exchange: &str) -> Result<()> {
    ch.exchange_declare(
        exchange.into(),
        ExchangeKind::Topic,
        durable(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| amqp("declaring the exchange", e))
}

/// Declares a group's queue (bound to `keys`) and its dead letters.
pub(crate) async fn declare_group(
    ch: &Channel,
    exchange: &str,
    group: &str,
    keys: &[String],
) -> Result<String> {
    declare_exchange(ch, exchange).await?;
    let dlx = dead_letter_exchange(exchange);
    declare_exchange(ch, &dlx).await?;
    let queue = group_queue(exchange, group);
    let dlq = dead_letter_queue(exchange, group);
    for q in [&queue, &dlq] {
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp("declaring a queue", e))?;
    }
    ch.queue_bind(
        dlq.as_str().into(),
        dlx.as_str().into(),
        group.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| amqp("binding the dead-letter queue", e))?;
    for key in keys {
        ch.queue_bind(
            queue.as_str().into(),
            exchange.into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp("binding the group's queue", e))?;
    }
    Ok(queue)
}

/// Closes a connection, without waiting for ever: when the broker went away, the close-ok that
/// `close` awaits never comes.
pub(crate) async fn close(conn: &Connection, why: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, why.into())).await;
}
