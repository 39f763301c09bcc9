//! Shared test support: a fresh schema per test on the real server, dropped afterwards.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::manual_assert
)]

pub mod ledger;

use event_store_postgres::{PgCache, PgConfig, PgStore};
use event_store_testkit::Guarded;

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
pub type TestPg = Guarded<PgStore, SchemaGuard>;

/// The test schema of a store.
pub trait Schema {
    fn schema(&self) -> &str;
}

impl Schema for TestPg {
    fn schema(&self) -> &str {
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
    let store = event_store_testkit::require_service(
        "PostgreSQL (EVENT_STORE_TEST_PG)",
        PgStore::connect(&url(), config).await,
    )?;
    let guard = SchemaGuard { schema };
    store.migrate().await.expect("migrate");
    Some(Guarded::new(store, guard))
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

/// An admin connection whose `search_path` is `schema`: SQL written as the store's own
/// functions see it.
pub async fn admin_in(schema: &str) -> tokio_postgres::Client {
    let client = admin().await;
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .await
        .expect("set search_path");
    client
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

/// Creates a login role and drops it (with its grants) when it goes out of scope.
pub struct RoleGuard {
    pub name: String,
}

impl RoleGuard {
    pub async fn create(admin: &tokio_postgres::Client, name: &str) -> Self {
        admin
            .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
            .await
            .expect("create role");
        Self {
            name: name.to_owned(),
        }
    }

    /// `sql/grants.sql` for this role on `schema`.
    pub fn documented_grants(&self, schema: &str) -> String {
        include_str!("../../sql/grants.sql")
            .replace("event_store.", &format!("\"{schema}\"."))
            .replace("SCHEMA event_store", &format!("SCHEMA \"{schema}\""))
            .replace("app_role", &self.name)
    }

    /// The test URL, connecting as this role.
    pub fn url(&self) -> String {
        url().replacen(
            "postgres://postgres@",
            &format!("postgres://{}@", self.name),
            1,
        )
    }
}

impl Drop for RoleGuard {
    fn drop(&mut self) {
        let role = self.name.clone();
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
                        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}"))
                        .await;
                }
            });
        });
        let _ = t.join();
    }
}
