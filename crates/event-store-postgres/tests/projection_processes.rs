//! Transactional projections on PostgreSQL, with runner processes killed with SIGKILL and
//! replaced (the kit's ledger scenarios). A test binary of its own (`harness = false`): it
//! starts itself again as the child runners.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use event_store::EventStore;
use event_store::projection::RunnerHandle;
use event_store_postgres::{PgConfig, PgStore, Transactional};
use event_store_testkit::ledger::{
    self, FailOn, LedgerBackend, LedgerRow, Totals, ledger_options, spawn_child,
};
use uuid::Uuid;

use common::ledger::{Ledger, read_ledger};
use common::{Schema, TestPg};

struct PgLedger {
    store: TestPg,
    fail_on: FailOn,
}

impl LedgerBackend for PgLedger {
    type Store = TestPg;

    fn store(&self) -> &TestPg {
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
            "pg-ledger",
            &[
                ("EVENT_STORE_TEST_PG", common::url()),
                ("KIT_SCHEMA", self.store.schema().to_owned()),
                ("KIT_PARTITIONS", partitions.to_string()),
            ],
        )
    }

    async fn read(&self) -> (Vec<LedgerRow>, Vec<Totals>) {
        read_ledger(&self.store.store).await
    }
}

async fn backend() -> Option<PgLedger> {
    Some(PgLedger {
        store: common::fresh().await?,
        fail_on: FailOn::default(),
    })
}

/// A child runner: runs the ledger until it is killed.
async fn child() {
    let schema = std::env::var("KIT_SCHEMA").expect("KIT_SCHEMA");
    let partitions = std::env::var("KIT_PARTITIONS")
        .expect("KIT_PARTITIONS")
        .parse()
        .expect("partitions");
    let mut config = PgConfig::with_schema(&schema);
    config.pool_size = 8;
    let store = PgStore::connect(&common::url(), config)
        .await
        .expect("connect");
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
    ledger::ledger_main(child(), backend);
}
