//! TLS to PostgreSQL with libpq's `sslmode` meanings, through rustls (aws-lc-rs provider) and
//! tokio-postgres-rustls, and the clear words for a handshake that failed.
//!
//! | sslmode | TLS | certificate chain | host name |
//! | --- | --- | --- | --- |
//! | `disable` | never | - | - |
//! | `prefer` | when the server offers it | not checked | not checked |
//! | `require` | always | not checked (checked when a root certificate is given) | not checked |
//! | `verify-ca` | always | must lead to `sslrootcert` | not checked |
//! | `verify-full` | always | must lead to `sslrootcert` | must be named by the certificate |
//!
//! Without a certificate check, the handshake signatures are still verified: the session is
//! encrypted, but to whoever answered.

use super::ConnectError;
use crate::config::SslMode;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How one connection is secured: the mode and the root certificate it checks against.
#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    pub mode: SslMode,
    pub rootcert: Option<PathBuf>,
}

impl Tls {
    /// Whether the server's certificate is checked at all (`require` with a root certificate
    /// is checked like `verify-ca`, as libpq does).
    fn checks_chain(&self) -> bool {
        match self.mode {
            SslMode::Disable | SslMode::Prefer => false,
            SslMode::Require => self.rootcert.is_some(),
            SslMode::VerifyCa | SslMode::VerifyFull => true,
        }
    }

    /// tokio-postgres' own mode: it knows disable, prefer and require; the checks of verify-ca
    /// and verify-full are made by the verifier below.
    pub fn driver_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }

    /// The connector for this mode (for `disable` too: tokio-postgres then never uses it).
    pub fn connector(&self) -> Result<MakeRustlsConnect, ConnectError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = if self.checks_chain() {
            let path = self.rootcert.as_deref().ok_or_else(|| {
                ConnectError::Tls(format!(
                    "sslmode {} needs sslrootcert, the CA certificate (PEM) that signed the server's certificate",
                    self.mode
                ))
            })?;
            let roots = read_roots(path)?;
            let full =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| {
                        ConnectError::Tls(format!("sslrootcert {}: {e}", path.display()))
                    })?;
            if self.mode == SslMode::VerifyFull {
                full
            } else {
                Arc::new(ChainOnly(full))
            }
        } else {
            Arc::new(AnyCertificate(provider.clone()))
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// Clear words for a connection error that TLS caused, or None when TLS played no part.
    /// `host` is the host name connected to.
    pub fn explain(&self, host: &str, e: &tokio_postgres::Error) -> Option<String> {
        let text = source_chain(e)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        if let Some(db) = e.as_db_error() {
            // pg_hba.conf has no entry for a plain session (hostssl only).
            return (db.message().contains("no encryption") && self.mode == SslMode::Disable)
                .then(|| format!(
                    "the server accepts this connection only over TLS ({}), but sslmode is disable: use sslmode=require or verify-full",
                    db.message()
                ));
        }
        if text.contains("server does not support TLS") {
            return Some(format!(
                "the server at {host} does not offer TLS (ssl = off in postgresql.conf), but sslmode is {}: turn ssl on, or use sslmode=prefer",
                self.mode
            ));
        }
        let rustls_error = source_chain(e).find_map(|s| {
            s.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .or_else(|| s.downcast_ref::<rustls::Error>())
        })?;
        let root = self
            .rootcert
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Some(match rustls_error {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => {
                let names = match rustls_error {
                    rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForNameContext { presented, .. },
                    ) => format!(
                        " (it names {})",
                        presented
                            .iter()
                            .map(|n| bare_name(n))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => String::new(),
                };
                format!(
                    "the server's certificate does not match the host name {host}{names} (sslmode verify-full): connect with a name the certificate lists, or use verify-ca to check the chain only"
                )
            }
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => format!(
                "the server's certificate at {host} is not signed by the CA in sslrootcert {root} (certificate verify failed: unknown issuer)"
            ),
            rustls::Error::InvalidCertificate(c) => format!(
                "the server's certificate at {host} was rejected (sslmode {}): {c:?}",
                self.mode
            ),
            other => format!("the TLS handshake with {host} failed: {other}"),
        })
    }
}

/// A name as webpki presents it (`DnsName("db")`, `IpAddress(10.0.0.5)`), without the wrapper.
fn bare_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map(|n| n.trim_matches('"'))
        .unwrap_or(presented)
}

/// The errors behind an error, outermost first.
fn source_chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// The root certificates of a PEM file.
fn read_roots(path: &Path) -> Result<RootCertStore, ConnectError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConnectError::Tls(format!("cannot read sslrootcert {}: {e}", path.display()))
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| {
            ConnectError::Tls(format!("sslrootcert {} is not PEM: {e}", path.display()))
        })?;
        roots.add(cert).map_err(|e| {
            ConnectError::Tls(format!(
                "sslrootcert {} holds a certificate that cannot be a root: {e}",
                path.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(ConnectError::Tls(format!(
            "sslrootcert {} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(roots)
}

/// `prefer` and `require` without a root certificate: any certificate, but a valid handshake.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

/// `verify-ca`: the full check, with a name mismatch forgiven. webpki checks the chain before
/// the name, so a name error means the chain already passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_names_lose_webpkis_wrapper() {
        assert_eq!(bare_name("DnsName(\"db.internal\")"), "db.internal");
        assert_eq!(bare_name("IpAddress(10.0.0.5)"), "10.0.0.5");
        assert_eq!(bare_name("db"), "db");
    }

    #[test]
    fn a_verify_mode_without_a_root_certificate_is_refused_before_connecting() {
        let e = Tls {
            mode: SslMode::VerifyFull,
            rootcert: None,
        }
        .connector()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("needs sslrootcert"), "{e}");
        assert!(
            Tls {
                mode: SslMode::Require,
                rootcert: None
            }
            .connector()
            .is_ok()
        );
    }
}
