//! Connections and the names and declarations of exchanges and queues.

use std::time::Duration;

use event_store::{Error, Result, TypeFilter};
use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::config::{AmqpConfig, QueueType};

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

/// The queue of one type in the original wire format: `{store_namespace}-{ns}.{type}`.
pub(crate) fn legacy_queue(store_namespace: &str, namespace: &str, event_type: &str) -> String {
    format!("{store_namespace}-{namespace}.{event_type}")
}

/// The routing key of the original's replay requests.
pub const LEGACY_REPLAY_KEY: &str = "_eventstore.EventReplayRequested";

/// The most partitions an ordered group may have.
pub const MAX_PARTITIONS: u16 = 256;

/// The consistent-hash exchange of an ordered group: it routes by the `stream` header.
pub(crate) fn ordered_exchange(exchange: &str, group: &str) -> String {
    format!("{exchange}.{group}.by-stream")
}

/// Partition `i` of an ordered group's `n`.
pub(crate) fn partition_queue(exchange: &str, group: &str, i: u16, n: u16) -> String {
    format!("{exchange}.{group}.p{i}-of-{n}")
}

/// The queues a group's instances consume: its one queue, or its `partitions` queues.
pub(crate) fn group_queues(exchange: &str, group: &str, partitions: u16) -> Vec<String> {
    if partitions == 0 {
        vec![group_queue(exchange, group)]
    } else {
        (0..partitions)
            .map(|i| partition_queue(exchange, group, i, partitions))
            .collect()
    }
}

/// Every name derived from `exchange` for `group`, each with what it names (for an ordered
/// group, its exchange and its longest partition queue).
pub(crate) fn group_names(
    exchange: &str,
    group: &str,
    partitions: u16,
) -> Vec<(&'static str, String)> {
    let mut names = vec![
        ("queue", group_queue(exchange, group)),
        ("dead-letter queue", dead_letter_queue(exchange, group)),
    ];
    if partitions > 0 {
        names.push(("ordered exchange", ordered_exchange(exchange, group)));
        names.push((
            "partition queue",
            partition_queue(exchange, group, partitions - 1, partitions),
        ));
    }
    names
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
    kind: QueueType,
) -> Result<String> {
    declare_exchange(ch, exchange).await?;
    let queue = group_queue(exchange, group);
    declare_dead_letters(ch, exchange, group, kind).await?;
    declare_queue_with(ch, &queue, group_args(exchange, group, kind)).await?;
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

/// Declares an ordered group: its consistent-hash exchange (hashing the `stream` header) bound
/// to the events' exchange by `keys`, its `partitions` queues (single active consumer) bound to
/// it with equal weights, and its dead letters. Refuses when the group's unordered queue exists:
/// it would keep receiving every event with nobody consuming it.
pub(crate) async fn declare_ordered_group(
    conn: &Connection,
    ch: &Channel,
    exchange: &str,
    group: &str,
    keys: &[String],
    partitions: u16,
    kind: QueueType,
) -> Result<Vec<String>> {
    declare_exchange(ch, exchange).await?;
    let unordered = group_queue(exchange, group);
    if queue_exists(conn, &unordered).await? {
        return Err(Error::invalid(
            "partitions",
            format!(
                "the group `{group}` has an unordered queue `{unordered}`: drain and delete it \
                 before the group uses ordered partitions (or keep `partitions` at 0)"
            ),
        ));
    }
    declare_dead_letters(ch, exchange, group, kind).await?;
    let by_stream = ordered_exchange(exchange, group);
    let mut args = FieldTable::default();
    args.insert(
        "hash-header".into(),
        AMQPValue::LongString(crate::message::HEADER_STREAM.into()),
    );
    ch.exchange_declare(
        short("exchange", &by_stream)?,
        ExchangeKind::Custom("x-consistent-hash".to_owned()),
        durable(),
        args,
    )
    .await
    .map_err(|e| {
        if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if matches!(p.kind(), AMQPErrorKind::Hard(AMQPHardError::COMMANDINVALID))) {
            Error::backend_with(
                BACKEND,
                "the broker has no consistent-hash exchange: enable the \
                 rabbitmq_consistent_hash_exchange plugin for ordered groups",
                e,
            )
        } else {
            amqp("declaring the group's ordered exchange", e)
        }
    })?;
    for key in keys {
        ch.exchange_bind(
            short("exchange", &by_stream)?,
            short("exchange", exchange)?,
            short("binding", key)?,
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp("binding the group's ordered exchange", e))?;
    }
    let queues = group_queues(exchange, group, partitions);
    for queue in &queues {
        let mut args = group_args(exchange, group, kind);
        args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        declare_queue_with(ch, queue, args).await?;
        // The consistent-hash exchange reads a binding's key as the partition's weight.
        ch.queue_bind(
            short("queue", queue)?,
            short("exchange", &by_stream)?,
            "1".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp("binding a partition queue", e))?;
    }
    Ok(queues)
}

/// Whether `queue` exists (a passive declaration on a channel of its own, which the broker
/// closes when it does not).
pub(crate) async fn queue_exists(conn: &Connection, queue: &str) -> Result<bool> {
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| amqp("opening a channel", e))?;
    let found = ch
        .queue_declare(
            short("queue", queue)?,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match found {
        Ok(_) => {
            let _ = ch.close(200, "checked".into()).await;
            Ok(true)
        }
        Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))) => {
            Ok(false)
        }
        Err(e) => Err(amqp("checking whether a queue exists", e)),
    }
}

/// Declares a durable classic queue.
pub(crate) async fn declare_queue(ch: &Channel, queue: &str) -> Result<()> {
    declare_queue_with(ch, queue, FieldTable::default()).await
}

/// The arguments of a group's queues of `kind`. A quorum queue also names the group's dead
/// letters as its dead-letter exchange (at least once): a message the broker stops redelivering
/// (RabbitMQ 4 limits a quorum queue's redeliveries to 20 by default) lands there, not nowhere.
pub(crate) fn group_args(exchange: &str, group: &str, kind: QueueType) -> FieldTable {
    let mut args = type_args(kind);
    if kind == QueueType::Quorum {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dead_letter_exchange(exchange).into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(group.into()),
        );
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        // At-least-once dead-lettering needs publishers refused rather than messages dropped
        // at a length limit (none is set here).
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
    }
    args
}

/// The arguments that make a queue of `kind` (none for a classic queue).
fn type_args(kind: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    if kind == QueueType::Quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    args
}

/// Declares a durable queue with `args`. A queue that exists with other arguments (another
/// type) is refused by the broker: the error says what to do.
pub(crate) async fn declare_queue_with(ch: &Channel, queue: &str, args: FieldTable) -> Result<()> {
    let quorum = args.inner().contains_key("x-queue-type");
    ch.queue_declare(
        short("queue", queue)?,
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await
    .map(drop)
    .map_err(|e| {
        if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))) {
            let (asked, other) = if quorum { ("quorum", "classic") } else { ("classic", "quorum") };
            Error::backend_with(
                BACKEND,
                format!(
                    "the queue `{queue}` exists with other settings (a {other} queue?) and cannot \
                     become a {asked} queue: drain and delete it, or keep its queue type"
                ),
                e,
            )
        } else {
            amqp("declaring a queue", e)
        }
    })
}

/// Declares the dead-letter exchange and the queue `{exchange}.{name}.dead-letter`, bound to it
/// with the routing key `name` (a group, or `replay-requests` for the relay's refusals).
pub(crate) async fn declare_dead_letters(
    ch: &Channel,
    exchange: &str,
    name: &str,
    kind: QueueType,
) -> Result<()> {
    let dlx = dead_letter_exchange(exchange);
    declare_exchange(ch, &dlx).await?;
    let dlq = dead_letter_queue(exchange, name);
    declare_queue_with(ch, &dlq, type_args(kind)).await?;
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
