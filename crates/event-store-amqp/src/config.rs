//! Settings shared by the relay and the subscribers.

use std::time::Duration;

use event_store::{Error, Result, TypeFilter};

use crate::topology::{MAX_NAME_BYTES, MAX_PARTITIONS, RESERVED_GROUPS, group_names};

/// What a virtual host keeps unencoded in a destination: letters, digits and `-_.~`.
const VHOST: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Where the broker is and how the relay and subscribers behave.
#[derive(Clone)]
pub struct AmqpConfig {
    /// The broker, `amqp://USER:PASSWORD@HOST:PORT/VHOST` (`%2f` for the vhost `/`), or
    /// `amqps://…` for TLS.
    pub url: String,
    /// The topic exchange events are published to (durable; created when missing).
    pub exchange: String,
    /// Most unacknowledged messages a subscriber holds at once (default 32).
    pub prefetch: u16,
    /// How many times a handler is called for one message before it is dead-lettered (default 5).
    pub max_attempts: u32,
    /// The first wait between two attempts of a handler, doubled after each (default 50 ms).
    pub retry_backoff: Duration,
    /// The longest wait between two reconnection attempts (default 5 s; starts at 100 ms).
    pub reconnect_max_backoff: Duration,
    /// How many events the relay publishes before waiting for their confirms (default 512).
    pub relay_batch: usize,
    /// How often the relay re-reads the log when nothing wakes it (default 200 ms).
    pub relay_poll: Duration,
    /// How many processed message ids a subscriber remembers to drop redeliveries (default
    /// 100 000).
    pub dedupe_window: usize,
    /// Whether a relay with no checkpoint for its destination yet takes over the checkpoint
    /// that earlier releases kept under `amqp-relay:{exchange}` (default false: it starts from
    /// the beginning of the log). Turn it on once, when upgrading a relay whose broker,
    /// virtual host and exchange are the ones that old checkpoint was published to.
    pub adopt_legacy_checkpoint: bool,
    /// How a group's instances share its events (default 0).
    ///
    /// - `0`: one queue, `{exchange}.{group}`, that every instance consumes — competing
    ///   consumers that spread the load, but two events of one stream may be handled at once by
    ///   two instances, so per-stream order holds only with a single instance.
    /// - `N ≥ 1`: **ordered** — a consistent-hash exchange `{exchange}.{group}.by-stream` routes
    ///   each event by its stream (the `stream` header) to one of `N` partition queues
    ///   `{exchange}.{group}.p{i}-of-{N}`, each with a single active consumer; every instance
    ///   consumes every partition and the broker lets one instance at a time receive from each,
    ///   handing a partition to a waiting instance when its holder dies (its unacknowledged
    ///   messages redelivered first, in order). Per-stream order holds across instances. Needs
    ///   the broker's `rabbitmq_consistent_hash_exchange` plugin. Every instance of a group must
    ///   use the same `N`; changing it leaves the old partition queues to drain and delete.
    pub partitions: u16,
    /// Speak the original event store's wire format (`LEGACY.md`), for a migration where
    /// services still running the old library exchange events with new ones (default `None`).
    pub legacy: Option<LegacyWire>,
    /// The type of the subscriber groups' queues (their queue, ordered partitions, per-type
    /// queues of the original wire format, and dead letters): classic (the default) or quorum,
    /// replicated across a broker cluster's nodes (Raft). A queue keeps the type it was
    /// declared with: every instance of a group must use the same one.
    pub queue_type: QueueType,
}

/// The type of a group's queues ([`AmqpConfig::queue_type`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueType {
    /// RabbitMQ's classic queues: on one node.
    #[default]
    Classic,
    /// Quorum queues: replicated on a majority of a cluster's nodes, surviving the loss of a
    /// minority. Single active consumer (ordered groups) and dead letters work as with
    /// classic queues; the broker also dead-letters a message it stops redelivering (its
    /// delivery limit) into the group's dead-letter queue. Needs RabbitMQ 3.10 or later.
    Quorum,
}

/// The original event store's wire format: the relay publishes each event as `{"id", "data",
/// "context"}` (routing key `ns.type`, as always) and answers the original's
/// `_eventstore.EventReplayRequested` by re-publishing that type's events newer than its `since`
/// onto the exchange; subscribers consume one queue per type, `{store_namespace}-{ns}.{type}`,
/// and read that payload (from the relay, or published by an original service).
///
/// The relay's messages keep their message id and `stream`/`version`/`position` headers: the
/// original ignores them, and new subscribers use them (an original service's messages have
/// none: such an event arrives with an empty stream, version 0 and position 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyWire {
    /// This service's namespace, as the original library named it: the first part of its queues'
    /// names, and of the relay's replay-request queue `{store_namespace}-_eventstore.EventReplayRequested`.
    pub store_namespace: String,
}

impl LegacyWire {
    /// The original wire format for a service named `store_namespace`.
    pub fn new(store_namespace: impl Into<String>) -> Self {
        Self {
            store_namespace: store_namespace.into(),
        }
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: it is never printed.
        f.debug_struct("AmqpConfig")
            .field("exchange", &self.exchange)
            .field("prefetch", &self.prefetch)
            .field("max_attempts", &self.max_attempts)
            .field("partitions", &self.partitions)
            .field("legacy", &self.legacy)
            .field("queue_type", &self.queue_type)
            .finish_non_exhaustive()
    }
}

impl AmqpConfig {
    /// The defaults for a broker and an exchange.
    pub fn new(url: impl Into<String>, exchange: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            exchange: exchange.into(),
            prefetch: 32,
            max_attempts: 5,
            retry_backoff: Duration::from_millis(50),
            reconnect_max_backoff: Duration::from_secs(5),
            relay_batch: 512,
            relay_poll: Duration::from_millis(200),
            dedupe_window: 100_000,
            adopt_legacy_checkpoint: false,
            partitions: 0,
            legacy: None,
            queue_type: QueueType::Classic,
        }
    }

    /// Where the events go, as `HOST:PORT/VHOST/EXCHANGE` (the virtual host percent-encoded, as
    /// in the URL): what a relay's checkpoint is kept for. No credentials.
    pub fn destination(&self) -> Result<String> {
        // The parser's messages name the problem, never the URL (which may hold a password).
        let url = url::Url::parse(&self.url)
            .map_err(|e| Error::invalid("amqp", format!("not an AMQP URL: {e}")))?;
        let default_port = if url.scheme() == "amqps" { 5671 } else { 5672 };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::invalid("amqp", "the AMQP URL names no host"))?;
        let vhost = match url.path() {
            "" | "/" => "/".to_owned(),
            path => percent_encoding::percent_decode_str(&path[1..])
                .decode_utf8()
                .map_err(|_| Error::invalid("amqp", "the virtual host is not UTF-8"))?
                .into_owned(),
        };
        let vhost = percent_encoding::utf8_percent_encode(&vhost, VHOST).to_string();
        Ok(format!(
            "{}:{}/{vhost}/{}",
            host.to_ascii_lowercase(),
            url.port().unwrap_or(default_port),
            self.exchange
        ))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 200
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        };
        if !name_ok(&self.exchange) {
            return Err(Error::invalid(
                "exchange",
                "exchange names are 1 to 200 of A-Z a-z 0-9 _ - . :",
            ));
        }
        if self.exchange.starts_with("amq.") {
            return Err(Error::invalid(
                "exchange",
                format!(
                    "`{}`: names starting with `amq.` are reserved by the broker",
                    self.exchange
                ),
            ));
        }
        if !(self.url.starts_with("amqp://") || self.url.starts_with("amqps://")) {
            return Err(Error::invalid(
                "amqp",
                "the broker URL starts with amqp:// or amqps://",
            ));
        }
        if self.prefetch == 0 || self.max_attempts == 0 || self.relay_batch == 0 {
            return Err(Error::invalid(
                "amqp",
                "prefetch, max_attempts and relay_batch are at least 1",
            ));
        }
        if let Some(legacy) = &self.legacy {
            event_store::limits::check_name("legacy.store_namespace", &legacy.store_namespace)?;
            if self.partitions > 0 {
                return Err(Error::invalid(
                    "partitions",
                    "the original wire format has one queue per type: no ordered partitions",
                ));
            }
        }
        if self.partitions > MAX_PARTITIONS {
            return Err(Error::invalid(
                "partitions",
                format!(
                    "{} partitions: a group has at most {MAX_PARTITIONS}",
                    self.partitions
                ),
            ));
        }
        Ok(())
    }

    /// Checks a subscriber group name: a namespace-like name (`A–Z a–z 0–9 _ -`), not one the
    /// relay uses, whose queue names (`{exchange}.{group}`, `{exchange}.{group}.dead-letter`)
    /// fit in an AMQP name.
    pub(crate) fn check_group(&self, group: &str) -> Result<()> {
        event_store::limits::check_name("group", group)?;
        if RESERVED_GROUPS.contains(&group) {
            return Err(Error::invalid(
                "group",
                format!("`{group}` is a name the relay uses for its own queue"),
            ));
        }
        for (what, name) in group_names(&self.exchange, group, self.partitions) {
            if name.len() > MAX_NAME_BYTES {
                return Err(Error::invalid(
                    "group",
                    format!(
                        "the group's {what} (`{{exchange}}.{group}…`) would be {} bytes long; \
                         AMQP names are at most {MAX_NAME_BYTES} (use a shorter exchange or group)",
                        name.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks the types a subscription binds (each becomes a routing key; with the original wire
    /// format, each also names a queue, so each needs a type).
    pub(crate) fn check_types(&self, types: &[TypeFilter]) -> Result<()> {
        if let Some(legacy) = &self.legacy {
            if types.is_empty() {
                return Err(Error::invalid(
                    "types",
                    "the original wire format has one queue per type: name the types",
                ));
            }
            for t in types {
                let Some(ty) = &t.event_type else {
                    return Err(Error::invalid(
                        "types",
                        format!(
                            "`{}`: the original wire format has one queue per type, not per namespace",
                            t.namespace
                        ),
                    ));
                };
                let queue =
                    crate::topology::legacy_queue(&legacy.store_namespace, &t.namespace, ty);
                if queue.len() > MAX_NAME_BYTES {
                    return Err(Error::invalid(
                        "types",
                        format!("the queue `{queue}` is longer than {MAX_NAME_BYTES} bytes"),
                    ));
                }
            }
        }
        Self::check_type_names(types)
    }

    fn check_type_names(types: &[TypeFilter]) -> Result<()> {
        for t in types {
            event_store::limits::check_name("types.namespace", &t.namespace)?;
            if let Some(ty) = &t.event_type {
                event_store::limits::check_name("types.type", ty)?;
            }
        }
        Ok(())
    }
}
