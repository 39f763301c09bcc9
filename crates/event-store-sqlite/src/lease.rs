//! Projection leases on SQLite: lock files beside the database (`events.db.locks/`), locked
//! with the operating system's advisory file locks (`flock`). A lock lives as long as the open
//! file: when the process dies, the system releases it, and another runner takes the partition.
//! Each lease opens its own file description, so two holders in one process exclude each other
//! too.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use event_store::projection::{Lease, LeaseKey};
use event_store::{Error, Result};

use crate::connection::BACKEND;

/// A projection lease held on SQLite: an open, locked file. Dropping it unlocks.
#[derive(Debug)]
pub struct SqliteLease {
    _file: File,
}

impl Lease for SqliteLease {
    fn is_held(&self) -> bool {
        // A file lock is held until the file is closed.
        true
    }
}

/// The directory of a database's lock files.
pub(crate) fn directory(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".locks");
    db.with_file_name(name)
}

fn path(db: &Path, key: &LeaseKey) -> PathBuf {
    directory(db).join(format!("{}.lock", key.text()))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::backend_with(BACKEND, format!("{what} {}: {e}", path.display()), e)
}

/// Takes the lease `key` of the database at `db`, if no one holds it.
pub(crate) fn try_lease(db: &Path, key: &LeaseKey) -> Result<Option<SqliteLease>> {
    let dir = directory(db);
    std::fs::create_dir_all(&dir).map_err(|e| io("creating the lock directory", &dir, e))?;
    let path = path(db, key);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io("opening the lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(SqliteLease { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(io("locking", &path, e)),
    }
}

/// Whether someone (in any process) holds the lease `key` of the database at `db`.
pub(crate) fn is_leased(db: &Path, key: &LeaseKey) -> Result<bool> {
    let path = path(db, key);
    let file = match OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io("opening the lock file", &path, e)),
    };
    match file.try_lock() {
        // Free: closing the file releases the probe's lock.
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(io("probing", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_store::projection::ProjectionName;

    #[test]
    fn locks_exclude_within_a_process_and_release_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        let key = LeaseKey::partition(&ProjectionName::new("orders").unwrap(), 1, 0);
        assert!(!is_leased(&db, &key).unwrap());
        let lease = try_lease(&db, &key).unwrap().unwrap();
        assert!(is_leased(&db, &key).unwrap());
        assert!(try_lease(&db, &key).unwrap().is_none());
        drop(lease);
        assert!(!is_leased(&db, &key).unwrap());
        assert!(try_lease(&db, &key).unwrap().is_some());
        assert!(directory(&db).join("orders.g1-p0.lock").exists());
    }
}
