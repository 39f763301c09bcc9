//! The kit's ledger read model on PostgreSQL (a transactional projection), shared by the tests
//! that run it.

use deadpool_postgres::Transaction;
use event_store::projection::{Projection, Tables};
use event_store::{BoxError, Query, RecordedEvent};
use event_store_postgres::{PgProjection, PgStore};
use event_store_testkit::ledger::{self, FailOn, LEDGER, LedgerRow, Totals};

/// The ledger read model, version `V`: one row per applied event, and a total per stream.
pub struct Ledger<const V: u32> {
    pub fail_on: FailOn,
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

/// The ledger's rows in applied order and its totals, both views in one snapshot (a reader that
/// straddles a switch would otherwise see the old model's rows and the new one's totals).
pub async fn read_ledger(store: &PgStore) -> (Vec<LedgerRow>, Vec<Totals>) {
    let mut client = store.pool().get().await.expect("client");
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
