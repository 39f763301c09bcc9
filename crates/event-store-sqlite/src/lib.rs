#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod cache;
mod config;
mod connection;
mod keys;
mod lease;
mod projection;
mod query;
mod store;
mod writer;

pub use cache::SqliteCache;
pub use config::{OpenMode, SqliteConfig, Synchronous};
pub use connection::MIGRATIONS;
pub use event_store_sql::{AppliedMigration, MigrationStatus};
pub use keys::SqliteKeyStore;
pub use lease::SqliteLease;
pub use projection::{SqliteProjection, Transactional};
pub use store::SqliteStore;
