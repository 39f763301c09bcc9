//! TLS to PostgreSQL, through rustls (with the `ring` provider).

use std::path::PathBuf;
use std::sync::Arc;

use event_store::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How connections to PostgreSQL are encrypted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgTls {
    /// As the URL's `sslmode` says: `require` means TLS with the server's certificate verified
    /// against the Mozilla roots (and the host name checked); `disable` and `prefer` (the
    /// default) mean a plain connection.
    #[default]
    FromUrl,
    /// A plain connection (a URL asking for `sslmode=require` is refused).
    Disabled,
    /// TLS; the server's certificate must chain to the Mozilla roots or, when given, to the
    /// certificates of a PEM file (a private CA), and must name the host connected to.
    Verified {
        /// A PEM file of trusted CA certificates, added to the Mozilla roots.
        ca_file: Option<PathBuf>,
    },
    /// TLS without verifying the server's certificate (PostgreSQL's `sslmode=require`): the
    /// traffic is encrypted, but an active attacker could impersonate the server. For
    /// development servers with self-signed certificates only.
    UnverifiedEncryption,
}

/// The connector to use: none (plain) or rustls.
#[derive(Clone)]
pub(crate) enum Connector {
    Plain,
    Tls(MakeRustlsConnect),
}

pub(crate) fn connector(tls: &PgTls, config: &mut tokio_postgres::Config) -> Result<Connector> {
    let mode = match tls {
        PgTls::FromUrl => match config.get_ssl_mode() {
            SslMode::Require => PgTls::Verified { ca_file: None },
            _ => PgTls::Disabled,
        },
        other => other.clone(),
    };
    match mode {
        PgTls::Disabled | PgTls::FromUrl => {
            if config.get_ssl_mode() == SslMode::Require {
                return Err(Error::invalid(
                    "url",
                    "sslmode=require, but TLS is disabled",
                ));
            }
            config.ssl_mode(SslMode::Disable);
            Ok(Connector::Plain)
        }
        PgTls::Verified { ca_file } => {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(path) = ca_file {
                let certs = CertificateDer::pem_file_iter(&path)
                    .and_then(Iterator::collect::<std::result::Result<Vec<_>, _>>)
                    .map_err(|e| {
                        Error::invalid("ca_file", format!("cannot read {}: {e}", path.display()))
                    })?;
                for cert in certs {
                    roots.add(cert).map_err(|e| {
                        Error::invalid("ca_file", format!("{}: {e}", path.display()))
                    })?;
                }
            }
            config.ssl_mode(SslMode::Require);
            let client = builder()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Connector::Tls(MakeRustlsConnect::new(client)))
        }
        PgTls::UnverifiedEncryption => {
            config.ssl_mode(SslMode::Require);
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let client = builder()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Ok(Connector::Tls(MakeRustlsConnect::new(client)))
        }
    }
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::backend_with(crate::error::BACKEND, "setting up TLS", e))
}

/// Accepts any certificate, but still checks the handshake signatures (so the connection is
/// encrypted with the key of the certificate the server showed).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
