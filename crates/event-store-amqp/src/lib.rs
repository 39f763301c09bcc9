#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
mod message;
mod metrics;
mod relay;
mod subscriber;
mod topology;

pub use config::{AmqpConfig, LegacyWire, QueueType};
pub use message::{
    HEADER_DEAD_LETTER_GROUP, HEADER_DEAD_LETTER_REASON, HEADER_POSITION, HEADER_REPLAY,
    HEADER_STREAM, HEADER_VERSION, ReplayRequested, header_text,
};
pub use metrics::{RelayMetrics, SubscriberMetrics};
pub use relay::{CHECKPOINT_PREFIX, REFUSED_REPLAY_REQUESTS, Relay};
pub use subscriber::AmqpEmitter;
pub use topology::{
    LEGACY_REPLAY_KEY, MAX_NAME_BYTES, MAX_PARTITIONS, RESERVED_GROUPS, is_refusal,
};
