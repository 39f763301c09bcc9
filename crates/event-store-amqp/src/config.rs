//! Settings shared by the relay and the subscribers.

use std::time::Duration;

use event_store::{Error, Result};

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
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: it is never printed.
        f.debug_struct("AmqpConfig")
            .field("exchange", &self.exchange)
            .field("prefetch", &self.prefetch)
            .field("max_attempts", &self.max_attempts)
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
        }
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
        Ok(())
    }

    /// Checks a subscriber group name (it becomes part of queue names).
    pub(crate) fn check_group(group: &str) -> Result<()> {
        event_store::limits::check_name("group", group)
    }
}
