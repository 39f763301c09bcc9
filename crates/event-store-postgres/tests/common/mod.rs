//! Shared test support: a fresh schema per test on the real server, dropped afterwards.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::manual_assert
)]

use std::sync::Arc;

use event_store::{
    AppendBatch, Appended, Direction, Position, Query, RecordedEvent, Result, Store, StreamId,
};
use event_store_postgres::{PgCache, PgConfig, PgStore};
use tokio::sync::watch;

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("EVENT_STORE_TEST_PG").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Drops the test's schema when the last handle goes.
pub struct SchemaGuard {
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // Drop may run inside a runtime: use a thread with its own.
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await;
                }
            });
        });
        let _ = t.join();
    }
}

/// A [`PgStore`] on a schema of its own, dropped with the last clone.
#[derive(Clone)]
pub struct TestPg {
    pub store: PgStore,
    pub guard: Arc<SchemaGuard>,
}

impl TestPg {
    pub fn schema(&self) -> &str {
        &self.guard.schema
    }
}

pub fn unique_schema() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("es_test_{}", &id[20..])
}

/// A fresh, migrated store, or `None` (loudly) when the server is unreachable outside CI.
pub async fn fresh_with(tweak: impl FnOnce(&mut PgConfig)) -> Option<TestPg> {
    let schema = unique_schema();
    let mut config = PgConfig::with_schema(&schema);
    config.pool_size = 24;
    config.application_name = schema.clone();
    config.connect_timeout = std::time::Duration::from_secs(5);
    tweak(&mut config);
    let store = match PgStore::connect(&url(), config).await {
        Ok(s) => s,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL is required in CI (EVENT_STORE_TEST_PG): {e}");
            }
            eprintln!("SKIPPED: PostgreSQL unreachable at EVENT_STORE_TEST_PG ({e})");
            return None;
        }
    };
    let guard = Arc::new(SchemaGuard { schema });
    store.migrate().await.expect("migrate");
    Some(TestPg { store, guard })
}

pub async fn fresh() -> Option<TestPg> {
    fresh_with(|_| {}).await
}

pub async fn fresh_pair() -> Option<(TestPg, PgCache)> {
    let t = fresh().await?;
    let cache = PgCache::new(&t.store);
    Some((t, cache))
}

/// A plain client on the test database.
pub async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

impl Store for TestPg {
    async fn append(&self, batch: AppendBatch) -> Result<Appended> {
        self.store.append(batch).await
    }
    async fn read_stream(
        &self,
        s: &StreamId,
        from: u64,
        d: Direction,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.store.read_stream(s, from, d, n).await
    }
    async fn read_all(&self, after: Position, n: usize) -> Result<Vec<RecordedEvent>> {
        self.store.read_all(after, n).await
    }
    async fn read_all_backward(
        &self,
        before: Option<Position>,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.store.read_all_backward(before, n).await
    }
    async fn stats(&self) -> Result<event_store::StoreStats> {
        self.store.stats().await
    }
    async fn read_query(&self, q: &Query, after: Position, n: usize) -> Result<Vec<RecordedEvent>> {
        self.store.read_query(q, after, n).await
    }
    async fn stream_version(&self, s: &StreamId) -> Result<Option<u64>> {
        self.store.stream_version(s).await
    }
    async fn watermark(&self) -> Result<Position> {
        self.store.watermark().await
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.store.changes()
    }
}

/// Drops a schema made outside [`fresh`] when it goes out of scope.
pub struct SchemaGuardFor(SchemaGuard);

impl SchemaGuardFor {
    pub fn new(schema: &str) -> Self {
        Self(SchemaGuard {
            schema: schema.to_owned(),
        })
    }
}
