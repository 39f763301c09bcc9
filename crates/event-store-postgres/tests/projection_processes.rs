//! Transactional projections on PostgreSQL, with runner processes killed with SIGKILL and
//! replaced (the kit's ledger scenarios). A test binary of its own (`harness = false`): it
//! starts itself again as the child runners.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use deadpool_postgres::Transaction;
use event_store::projection::{Projection, RunnerHandle, Tables};
use event_store::{BoxError, EventStore, Query, RecordedEvent};
use event_store_postgres::{PgConfig, PgProjection, PgStore, Transactional};
use event_store_testkit::ledger::{
    self, FailOn, LEDGER, LedgerBackend, LedgerRow, Totals, ledger_options, spawn_child,
};
use uuid::Uuid;

use common::{Schema, TestPg};

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

impl<const V: u32> PgProjection for Ledger<V> {
    const TABLES: &'static [&'static str] = &["ledger", "totals"];

    async fn create(&self, tx: &Transaction<'_>, tables: &Tables) -> Result<(), BoxError> {
        let (ledger, totals) = (tables.get("ledger")?, tables.get("totals")?);
        tx.batch_execute(&format!(
            "CREATE TABLE {ledger} (seq bigserial PRIMARY KEY, stream text NOT NULL,
                                    version bigint NOT NULL, amount bigint NOT NULL,
                                    pid bigint NOT NULL, model integer NOT NULL);
             CREATE TABLE {totals} (stream text PRIMARY KEY, events bigint NOT NULL,
                                    total bigint NOT NULL, model integer NOT NULL);"
        ))
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
        event: &RecordedEvent,
    ) -> Result<(), BoxError> {
        self.fail_on.check(event)?;
        let (ledger, totals) = (tables.get("ledger")?, tables.get("totals")?);
        let amount = event.data["amount"].as_i64().ok_or("no amount")?;
        let version = i64::try_from(event.version)?;
        let pid = i64::from(std::process::id());
        let model = i32::try_from(V)?;
        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO {ledger} (stream, version, amount, pid, model) VALUES ($1, $2, $3, $4, $5)"
            ))
            .await?;
        tx.execute(&insert, &[&event.stream, &version, &amount, &pid, &model])
            .await?;
        let upsert = tx
            .prepare_cached(&format!(
                "INSERT INTO {totals} (stream, events, total, model) VALUES ($1, 1, $2, $3)
                 ON CONFLICT (stream) DO UPDATE
                 SET events = {totals}.events + 1, total = {totals}.total + excluded.total"
            ))
            .await?;
        tx.execute(&upsert, &[&event.stream, &amount, &model])
            .await?;
        Ok(())
    }
}

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
        // Both views in one snapshot: a reader that straddles the switch would otherwise see
        // the old model's rows and the new one's totals.
        let mut client = self.store.store.pool().get().await.expect("client");
        let client = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .expect("a read-only snapshot");
        let rows = client
            .query(
                "SELECT stream, version, amount, pid, model FROM ledger ORDER BY seq",
                &[],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| LedgerRow {
                        stream: r.get(0),
                        version: u64::try_from(r.get::<_, i64>(1)).expect("version"),
                        amount: r.get(2),
                        pid: u32::try_from(r.get::<_, i64>(3)).expect("pid"),
                        model: u32::try_from(r.get::<_, i32>(4)).expect("model"),
                    })
                    .collect()
            })
            // Before the first generation is prepared, there is no view yet.
            .unwrap_or_default();
        let totals = client
            .query("SELECT stream, events, total, model FROM totals", &[])
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| Totals {
                        stream: r.get(0),
                        events: r.get(1),
                        total: r.get(2),
                        model: u32::try_from(r.get::<_, i32>(3)).expect("model"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = client.rollback().await;
        (rows, totals)
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
