//! The API on a real socket: HTTPS with a certificate and key, the limits on request heads,
//! and the shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use event_store::{EventStore, MemoryStore};
use event_store_server::{Api, ServerConfig, Tls, TlsError};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Starts the API with `config` on a free port; returns its address, the sender that stops it
/// and its task.
async fn start(config: ServerConfig) -> (String, oneshot::Sender<()>, JoinHandle<()>) {
    let api = Api::new(EventStore::from_store(MemoryStore::new()), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(api.serve(listener, async move {
        let _ = stopped.await;
    }));
    (address, stop, task)
}

/// Sends `request` and reads the whole answer (the request asks to close the connection).
async fn exchange<C: AsyncRead + AsyncWrite + Unpin>(mut conn: C, request: &[u8]) -> String {
    conn.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    // A server that closes without a word gives an empty answer (or a reset: the same here).
    let _ = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut answer))
        .await
        .expect("the server answers or closes");
    String::from_utf8_lossy(&answer).into_owned()
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, issued.cert.pem()).unwrap();
    std::fs::write(&key_file, issued.signing_key.serialize_pem()).unwrap();
    let tls = Tls::from_pem_files(&cert_file, &key_file).unwrap();
    let (address, stop, task) = start(ServerConfig {
        tls: Some(tls),
        ..ServerConfig::default()
    })
    .await;

    // A client that trusts the certificate gets its answer over TLS.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(issued.cert.der().to_vec()))
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(&address).await.unwrap();
    let conn = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let answer = exchange(conn, HEALTH).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"status":"live"}"#), "{answer}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let answer = exchange(TcpStream::connect(&address).await.unwrap(), HEALTH).await;
    assert!(!answer.contains("HTTP/1.1 200"), "{answer}");

    stop.send(()).unwrap();
    task.await.unwrap();

    // Files that cannot be used are named; a key that is not the certificate's is refused.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, other.signing_key.serialize_pem()).unwrap();
    match Tls::from_pem_files(&cert_file, &other_key) {
        Err(TlsError::Rejected(_)) => {}
        other => panic!("a key of another certificate: {other:?}"),
    }
    let missing = dir.path().join("missing.pem");
    let e = Tls::from_pem_files(&missing, &key_file).unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::File {
                what: "certificate",
                ..
            }
        ) && e.to_string().contains("missing.pem"),
        "{e}"
    );
    // A key file given as the certificate holds no certificate.
    let e = Tls::from_pem_files(&key_file, &key_file).unwrap_err();
    assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    let e = Tls::from_pem_files(&cert_file, &cert_file).unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::File {
                what: "private key",
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_are_limited_in_size_count_and_time() {
    let (address, stop, task) = start(ServerConfig {
        header_limit: 16 * 1024,
        max_headers: 20,
        header_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let connect = || TcpStream::connect(&address);

    // Within the limits: answered.
    let answer = exchange(connect().await.unwrap(), HEALTH).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // One header of 32 KiB: refused with 431, the rest unread.
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let answer = exchange(connect().await.unwrap(), big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // 30 small headers: more than 20.
    let mut many = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_owned();
    for i in 0..30 {
        writeln!(many, "X-H{i}: {i}\r").unwrap();
    }
    many.push_str("\r\n");
    let answer = exchange(connect().await.unwrap(), many.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A head that never ends: the connection is closed (after the head timeout) rather than
    // held open.
    let answer = exchange(connect().await.unwrap(), b"GET /health HTTP/1.1\r\nHost: l").await;
    assert!(!answer.contains("200"), "{answer}");

    // The server still answers, and stops when told.
    let answer = exchange(connect().await.unwrap(), HEALTH).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.send(()).unwrap();
    task.await.unwrap();
    assert!(
        connect().await.is_err(),
        "no connection is accepted after the shutdown"
    );
}
