//! The SQLite store and aggregate cache, the embedded default (issue 4) for [`event_store`].
//!
//! **Not implemented yet.** This crate reserves its place in the workspace; its adapter lands
//! with the issue named above and will implement the core's backend traits and pass the
//! conformance kit (`event_store::testkit`).

pub use event_store;
