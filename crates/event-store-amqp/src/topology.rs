//! Connections and the names and declarations of exchanges and queues.

use std::time::Duration;

use event_store::{Error, Result, TypeFilter};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::config::AmqpConfig;

pub(crate) const BACKEND: &str = "amqp";

/// The longest name AMQP 0-9-1 allows for an exchange, a queue or a routing key (a "short
/// string"), in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Group names the relay uses for its own queues (`{exchange}.relay-lock`,
/// `{exchange}.replay-requests`), which no subscriber group may take.
pub const RESERVED_GROUPS: &[&str] = &["relay-lock", "replay-requests"];

pub(crate) fn amqp(what: &str, e: lapin::Error) -> Error {
    Error::backend_with(BACKEND, format!("{what}: {e}"), e)
}

/// `name` as an AMQP short string, or an [`Error::InvalidInput`] on `field` when it is longer
/// than [`MAX_NAME_BYTES`] (lapin panics on such a conversion).
pub(crate) fn short(field: &'static str, name: &str) -> Result<ShortString> {
    ShortString::try_new(name).map_err(|_| {
        Error::invalid(
            field,
            format!(
                "`{}…` is {} bytes long; AMQP names are at most {MAX_NAME_BYTES} bytes",
                name.chars().take(40).collect::<String>().escape_debug(),
                name.len()
            ),
        )
    })
}

/// Whether the broker refused an operation in a way that retrying cannot fix: access refused
/// (credentials, permissions, a reserved `amq.` name), not allowed (a virtual host the user may
/// not use), or a failed precondition (an exchange or queue that exists with other settings).
pub fn is_refusal(e: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(lapin) = s.downcast_ref::<lapin::Error>() {
            return lapin_refusal(lapin);
        }
        source = s.source();
    }
    false
}

fn lapin_refusal(e: &lapin::Error) -> bool {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => matches!(
            p.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED | AMQPSoftError::PRECONDITIONFAILED)
                | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
        ),
        lapin::ErrorKind::AuthProviderError(_) => true,
        _ => false,
    }
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

/// Every name derived from `exchange` for `group`, each with what it names.
pub(crate) fn group_names(exchange: &str, group: &str) -> [(&'static str, String); 2] {
    [
        ("queue", group_queue(exchange, group)),
        ("dead-letter queue", dead_letter_queue(exchange, group)),
    ]
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
        short("exchange", exchange)?,
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
    let queue = group_queue(exchange, group);
    declare_dead_letters(ch, exchange, group).await?;
    declare_queue(ch, &queue).await?;
    for key in keys {
        ch.queue_bind(
            short("queue", &queue)?,
            short("exchange", exchange)?,
            short("binding", key)?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp("binding the group's queue", e))?;
    }
    Ok(queue)
}

/// Declares a durable queue.
pub(crate) async fn declare_queue(ch: &Channel, queue: &str) -> Result<()> {
    ch.queue_declare(
        short("queue", queue)?,
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .map(drop)
    .map_err(|e| amqp("declaring a queue", e))
}

/// Declares the dead-letter exchange and the queue `{exchange}.{name}.dead-letter`, bound to it
/// with the routing key `name` (a group, or `replay-requests` for the relay's refusals).
pub(crate) async fn declare_dead_letters(ch: &Channel, exchange: &str, name: &str) -> Result<()> {
    let dlx = dead_letter_exchange(exchange);
    declare_exchange(ch, &dlx).await?;
    let dlq = dead_letter_queue(exchange, name);
    declare_queue(ch, &dlq).await?;
    ch.queue_bind(
        short("queue", &dlq)?,
        short("exchange", &dlx)?,
        short("group", name)?,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| amqp("binding the dead-letter queue", e))
}

/// Closes a connection, without waiting for ever: when the broker went away, the close-ok that
/// `close` awaits never comes.
pub(crate) async fn close(conn: &Connection, why: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, why.into())).await;
}
