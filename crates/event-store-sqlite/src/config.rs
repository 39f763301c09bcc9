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

/// What opening a file may do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenMode {
    /// Create the file when it does not exist, and apply missing migrations (the default: zero
    /// set-up).
    #[default]
    Create,
    /// The file must hold an event store already; missing migrations are applied. A missing
    /// file, or a SQLite database without the store's tables, is [`Error::InvalidInput`]
    /// (field `path`), and the file is left as it was.
    ///
    /// [`Error::InvalidInput`]: event_store::Error::InvalidInput
    Existing,
    /// The file must hold an event store at this release's schema; nothing is ever written:
    /// no writer connection is opened, and appends, checkpoints and cache writes fail. Reads
    /// work on a file the process may not write (mode 444, another user's), as long as SQLite
    /// can read it: when its write-ahead log is absent and cannot be created, the file is read
    /// as immutable.
    ReadOnly,
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
    /// Whether the file may be created, migrated or written (default [`OpenMode::Create`]).
    pub mode: OpenMode,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Full,
            group_commit: 64,
            mode: OpenMode::Create,
        }
    }
}
