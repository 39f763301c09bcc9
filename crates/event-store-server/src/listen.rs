//! Serving connections: HTTP/1.1 over TCP or TLS (rustls), with limits on request heads and a
//! graceful shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A server certificate and its key, for HTTPS.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read or holds no PEM item of the kind.
    #[error("cannot read the {what} from {path}: {reason}")]
    File {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, an unsupported key).
    #[error("the certificate and key cannot be used: {0}")]
    Rejected(#[source] rustls::Error),
}

impl Tls {
    /// The certificate chain (PEM, the server's certificate first) and its private key (PEM:
    /// PKCS#8, PKCS#1 or SEC1), with the ring crypto provider; HTTP/1.1 is announced by ALPN.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let file = |what, path: &Path, reason: String| TlsError::File {
            what,
            path: path.display().to_string(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| file("certificate", cert, e.to_string()))?;
        if certs.is_empty() {
            return Err(file("certificate", cert, "no CERTIFICATE in it".to_owned()));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| file("private key", key, e.to_string()))?;
        Self::new(certs, key)
    }

    /// The certificate chain and key, already parsed.
    pub fn new(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rejected)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(TlsError::Rejected)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// The limits on a request's head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    /// Bytes of request line and headers (at least 8 192).
    pub(crate) bytes: usize,
    /// Headers.
    pub(crate) count: usize,
    /// Time to receive a request's head, and a TLS handshake.
    pub(crate) timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then calls `stopping`, stops
/// accepting, lets the connections finish their requests and returns.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    tls: Option<Tls>,
    limits: HeadLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    stopping: impl FnOnce(),
) {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.timeout)
        .max_buf_size(limits.bytes.max(8192))
        .max_headers(limits.count)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait, rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(
            tcp,
            router.clone(),
            tls.clone(),
            http.clone(),
            limits.timeout,
            graceful.watcher(),
        ));
    }
    stopping();
    drop(listener);
    graceful.shutdown().await;
}

async fn connection(
    tcp: TcpStream,
    router: Router,
    tls: Option<Tls>,
    http: http1::Builder,
    handshake_timeout: Duration,
    watcher: Watcher,
) {
    let service = TowerToHyperService::new(router);
    let served = match tls {
        None => {
            watcher
                .watch(http.serve_connection(TokioIo::new(tcp), service))
                .await
        }
        Some(tls) => {
            let stream =
                match tokio::time::timeout(handshake_timeout, tls.acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "a TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("a TLS handshake timed out");
                        return;
                    }
                };
            watcher
                .watch(http.serve_connection(TokioIo::new(stream), service))
                .await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "a connection ended with an error");
    }
}
