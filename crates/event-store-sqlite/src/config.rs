//! Settings.

use std::time::Duration;

/// How durable a commit is (SQLite's `synchronous` pragma, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// A commit survives a process crash and a power loss (the default).
    #[default]
    Full,
    /// A commit survives a process crash; a power loss may roll back the last commits (never
    /// half of one).
    Normal,
}

/// How a [`SqliteStore`](crate::SqliteStore) opens its file.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Most read connections kept open (default 4). Reads beyond it open more, briefly.
    pub readers: usize,
    /// How long a connection waits for a lock held by another process (default 5 s).
    pub busy_timeout: Duration,
    /// Commit durability (default [`Synchronous::Full`]).
    pub synchronous: Synchronous,
    /// Most appends the writer commits in one transaction when they queue up (default 64).
    pub group_commit: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Full,
            group_commit: 64,
        }
    }
}
