#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod cache;
mod config;
mod error;
mod listen;
mod migrate;
mod query;
mod store;
mod tls;

pub use cache::PgCache;
pub use config::PgConfig;
pub use migrate::MIGRATIONS;
pub use store::PgStore;
pub use tls::PgTls;
