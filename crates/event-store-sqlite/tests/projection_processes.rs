//! Transactional projections on SQLite, with runner processes killed with SIGKILL and replaced
//! (the kit's ledger scenarios). A test binary of its own (`harness = false`): it starts itself
//! again as the child runners, which share the database file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use event_store::projection::{Projection, RunnerHandle, Tables};
use event_store::{BoxError, EventStore, Query, RecordedEvent};
use event_store_sqlite::{SqliteProjection, SqliteStore, Transactional};
use event_store_testkit::Guarded;
use event_store_testkit::ledger::{
    self, FailOn, LEDGER, LedgerBackend, LedgerRow, Totals, ledger_options, spawn_child,
};
use rusqlite::Connection;
use tempfile::TempDir;
use uuid::Uuid;

/// The ledger read model, version `V`: one row per applied event, and a total per stream.
struct Ledger<const V: u32> {
    fail_on: FailOn,
}

impl<const V: u32> Projection for Ledger<V> {
    const NAME: &'static str = LEDGER;
    const VERSION: u32 = V;

    fn query(&self) -> Query {
        ledger::ledger_query()
    }
}

impl<const V: u32> SqliteProjection for Ledger<V> {
    const TABLES: &'static [&'static str] = &["ledger", "totals"];

    fn create(&self, conn: &Connection, tables: &Tables) -> Result<(), BoxError> {
        let (ledger, totals) = (tables.get("ledger")?, tables.get("totals")?);
        conn.execute_batch(&format!(
            "CREATE TABLE {ledger} (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL,
                                    version INTEGER NOT NULL, amount INTEGER NOT NULL,
                                    pid INTEGER NOT NULL, model INTEGER NOT NULL);
             CREATE TABLE {totals} (stream TEXT PRIMARY KEY, events INTEGER NOT NULL,
                                    total INTEGER NOT NULL, model INTEGER NOT NULL);"
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        conn: &Connection,
        tables: &Tables,
        event: &RecordedEvent,
    ) -> Result<(), BoxError> {
        self.fail_on.check(event)?;
        let (ledger, totals) = (tables.get("ledger")?, tables.get("totals")?);
        let amount = event.data["amount"].as_i64().ok_or("no amount")?;
        let version = i64::try_from(event.version)?;
        conn.prepare_cached(&format!(
            "INSERT INTO {ledger} (stream, version, amount, pid, model) VALUES (?1, ?2, ?3, ?4, ?5)"
        ))?
        .execute(rusqlite::params![
            event.stream,
            version,
            amount,
            std::process::id(),
            V
        ])?;
        conn.prepare_cached(&format!(
            "INSERT INTO {totals} (stream, events, total, model) VALUES (?1, 1, ?2, ?3)
             ON CONFLICT (stream) DO UPDATE
             SET events = {totals}.events + 1, total = {totals}.total + excluded.total"
        ))?
        .execute(rusqlite::params![event.stream, amount, V])?;
        Ok(())
    }
}

struct SqliteLedger {
    store: Guarded<SqliteStore, TempDir>,
    path: PathBuf,
    fail_on: FailOn,
}

impl LedgerBackend for SqliteLedger {
    type Store = Guarded<SqliteStore, TempDir>;

    fn store(&self) -> &Self::Store {
        &self.store
    }

    fn run(&self, version: u32, partitions: u32, fail_on: Option<Uuid>) -> RunnerHandle {
        self.fail_on.set(fail_on);
        let es = EventStore::from_store(self.store.store.clone());
        let fail_on = self.fail_on.clone();
        match version {
            1 => es
                .runner(Transactional::new(Ledger::<1> { fail_on }))
                .with_options(ledger_options(partitions))
                .spawn(),
            _ => es
                .runner(Transactional::new(Ledger::<2> { fail_on }))
                .with_options(ledger_options(partitions))
                .spawn(),
        }
    }

    fn heal(&self) {
        self.fail_on.set(None);
    }

    fn spawn_runner(&self, partitions: u32) -> std::process::Child {
        spawn_child(
            "sqlite-ledger",
            &[
                ("KIT_DB", self.path.display().to_string()),
                ("KIT_PARTITIONS", partitions.to_string()),
            ],
        )
    }

    async fn read(&self) -> (Vec<LedgerRow>, Vec<Totals>) {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open(&path).expect("open");
            conn.busy_timeout(Duration::from_secs(5))
                .expect("busy timeout");
            // Both views in one snapshot (a read transaction): a reader that straddles the
            // switch would otherwise see the old model's rows and the new one's totals.
            conn.execute_batch("BEGIN").expect("begin a read");
            // Before the first generation is prepared, there is no view yet.
            let rows = conn
                .prepare("SELECT stream, version, amount, pid, model FROM ledger ORDER BY seq")
                .and_then(|mut s| {
                    s.query_map([], |r| {
                        Ok(LedgerRow {
                            stream: r.get(0)?,
                            version: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(u64::MAX),
                            amount: r.get(2)?,
                            pid: r.get(3)?,
                            model: r.get(4)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .unwrap_or_default();
            let totals = conn
                .prepare("SELECT stream, events, total, model FROM totals")
                .and_then(|mut s| {
                    s.query_map([], |r| {
                        Ok(Totals {
                            stream: r.get(0)?,
                            events: r.get(1)?,
                            total: r.get(2)?,
                            model: r.get(3)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .unwrap_or_default();
            let _ = conn.execute_batch("COMMIT");
            (rows, totals)
        })
        .await
        .expect("read the ledger")
    }
}

async fn backend() -> SqliteLedger {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).await.expect("open");
    SqliteLedger {
        store: Guarded::new(store, dir),
        path,
        fail_on: FailOn::default(),
    }
}

/// A child runner: runs the ledger until it is killed.
async fn child() {
    let path = std::env::var("KIT_DB").expect("KIT_DB");
    let partitions = std::env::var("KIT_PARTITIONS")
        .expect("KIT_PARTITIONS")
        .parse()
        .expect("partitions");
    let store = SqliteStore::open(&path).await.expect("open");
    let runner = EventStore::from_store(store)
        .runner(Transactional::new(Ledger::<1> {
            fail_on: FailOn::default(),
        }))
        .with_options(ledger_options(partitions))
        .spawn();
    // Until killed (a runner only ends by itself on a refused definition).
    runner.join().await.expect("the child runner ended");
}

fn main() {
    ledger::ledger_main(child(), || async { Some(backend().await) });
}
