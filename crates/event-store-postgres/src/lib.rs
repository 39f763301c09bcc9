#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod cache;
#[cfg(feature = "cluster")]
pub mod cluster;
mod config;
mod error;
mod keys;
mod lease;
pub mod legacy;
mod listen;
mod migrate;
mod projection;
mod query;
mod replicas;
mod store;
mod tls;

pub use cache::PgCache;
pub use config::{Indexes, PgConfig};
pub use event_store_sql::{AppliedMigration, MigrationStatus};
pub use keys::PgKeyStore;
pub use lease::PgLease;
pub use migrate::MIGRATIONS;
pub use projection::{PgProjection, Transactional};
pub use replicas::{Consistency, ReplicaStatus, Replicas};
pub use store::PgStore;
pub use tls::PgTls;
