//! TLS to PostgreSQL: encrypted connections (checked in `pg_stat_ssl`), certificate verification
//! that refuses a certificate it cannot trust, and `sslmode=require` honoured from the URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use event_store::{EventStore, ExpectedVersion, NewEvent};
use event_store_postgres::{PgConfig, PgStore, PgTls};
use serde_json::json;

fn tls_url() -> String {
    let url = common::url();
    if url.contains('?') {
        format!("{url}&sslmode=require")
    } else {
        format!("{url}?sslmode=require")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_connections_and_verification() {
    let Some(t) = common::fresh().await else {
        return;
    };
    let schema = {
        use common::Schema as _;
        t.schema().to_owned()
    };
    // Is TLS enabled on this server at all?
    let admin = common::admin().await;
    let enabled: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    // The local CI server has TLS on; a server given by EVENT_STORE_TEST_PG may not.
    if enabled != "on" && std::env::var_os("EVENT_STORE_TEST_PG").is_some() {
        eprintln!("SKIPPED: the server at EVENT_STORE_TEST_PG does not offer TLS");
        return;
    }
    let offered = if enabled == "on" {
        Ok(())
    } else {
        Err("ssl is off")
    };
    if event_store_testkit::require_service("TLS on the local PostgreSQL", offered).is_none() {
        return;
    }
    // Encryption without verification (a self-signed development certificate).
    let mut config = PgConfig::with_schema(&schema);
    config.tls = PgTls::UnverifiedEncryption;
    config.listen = false;
    let store = PgStore::connect(&common::url(), config).await.unwrap();
    let es = EventStore::from_store(store.clone());
    es.append(
        "tls",
        ExpectedVersion::Any,
        vec![NewEvent::new("tls", "E", json!({"secret": 1}))],
    )
    .await
    .unwrap();
    let client = store.pool().get().await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the pooled connection is encrypted");
    drop(client);

    // Verification against the Mozilla roots refuses a certificate they do not sign.
    let mut config = PgConfig::with_schema(&schema);
    config.tls = PgTls::Verified { ca_file: None };
    let e = PgStore::connect(&common::url(), config).await.unwrap_err();
    assert!(matches!(e, event_store::Error::Backend { .. }), "{e}");
    let chain = format!("{:?}", std::error::Error::source(&e));
    assert!(
        chain.contains("ertificate") || e.to_string().contains("ertificate"),
        "a certificate error: {e} / {chain}"
    );
    // The URL's sslmode=require asks for verified TLS too.
    let e = PgStore::connect(&tls_url(), PgConfig::with_schema(&schema))
        .await
        .unwrap_err();
    assert!(matches!(e, event_store::Error::Backend { .. }), "{e}");
    // TLS required by the URL but disabled in the configuration is a configuration error.
    let mut config = PgConfig::with_schema(&schema);
    config.tls = PgTls::Disabled;
    let e = PgStore::connect(&tls_url(), config).await.unwrap_err();
    assert_eq!(e.field(), Some("url"));
    // A CA file that does not exist is named.
    let mut config = PgConfig::with_schema(&schema);
    config.tls = PgTls::Verified {
        ca_file: Some("/nonexistent/ca.pem".into()),
    };
    let e = PgStore::connect(&common::url(), config).await.unwrap_err();
    assert_eq!(e.field(), Some("ca_file"));
}
