//! TLS to PostgreSQL with libpq's `sslmode` meanings. The session, and SCRAM's channel binding
//! (`tls-server-end-point`: the server's certificate hashed into the authentication, so that a
//! man in the middle holding another valid certificate fails it), come from
//! tokio-postgres-rustls; what is checked of the server's certificate is ours
//! ([`super::certificate`]), because libpq's rules are not webpki's:
//!
//! - `disable`: never; `prefer` (the default): when the server offers it, else plain;
//!   `require`: always. In these the certificate authenticates nothing, so no property of it
//!   (X.509 version, dates, extensions) stops the connection; only the handshake's signature is
//!   checked against the key it carries;
//! - `require` with `sslrootcert` given is `verify-ca`, as libpq does when a root certificate
//!   exists;
//! - `verify-ca`: the chain to `sslrootcert` (a PEM file, `system` for the operating system's
//!   roots, by default `~/.postgresql/root.crt` as libpq), or the server's certificate is
//!   self-issued, is itself one of `sslrootcert`'s and is within its dates (OpenSSL finds it as
//!   its own issuer; the self-signed certificate the PostgreSQL manual tells users to make is a
//!   CA, which webpki refuses as a server's);
//! - `verify-full`: as `verify-ca`, and the certificate names the host the URL names, matched
//!   as libpq matches it.
//!
//! With `sslcert` and `sslkey`, the client presents that certificate (servers that
//! authenticate by certificate). `channel_binding` (disable, prefer, require) is read by
//! tokio-postgres from the URL, with libpq's meanings.

use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::certificate::{self, Parsed};
use crate::config::{DatabaseTls, RootCerts, SslMode};

/// Makes the TLS session of each new connection; cheap to clone.
pub type PgTls = tokio_postgres_rustls::MakeRustlsConnect;

/// Why the TLS settings cannot be used (a bad `sslrootcert`, `sslcert` or `sslkey`).
#[derive(Debug, thiserror::Error)]
#[error("DATABASE_URL {0}")]
pub struct PgTlsError(String);

/// The connector for `tls`'s settings.
pub fn pg_tls(tls: &DatabaseTls) -> Result<PgTls, PgTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|why| PgTlsError(why.to_string()))?;
    let check = match (tls.mode, &tls.root_certs) {
        // With disable, tokio-postgres never starts a handshake; the connector is only asked for.
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, RootCerts::NotGiven) => Check::Nothing,
        (SslMode::Require | SslMode::VerifyCa, roots) => {
            Check::Chain(Anchors::new(roots, &provider)?, Names::Ignored)
        }
        (SslMode::VerifyFull, roots) => Check::Chain(Anchors::new(roots, &provider)?, Names::Checked),
    };
    let verifier = Verifier { provider, check };
    let builder = builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier));
    let config = match &tls.client_identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|why| PgTlsError(format!("sslcert: not a PEM certificate chain: {why}")))?;
            if chain.is_empty() {
                return Err(PgTlsError("sslcert: holds no certificate".into()));
            }
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|why| PgTlsError(format!("sslkey: not a PEM private key: {why}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|why| PgTlsError(format!("sslkey: does not match sslcert: {why}")))?
        }
    };
    Ok(PgTls::new(config))
}

/// What is checked of the server's certificate. The handshake's signature is checked in every
/// case, with the key the certificate carries.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    check: Check,
}

#[derive(Debug)]
enum Check {
    /// `prefer`, `require` without a root certificate: encrypted, the server not authenticated
    /// (libpq's meaning).
    Nothing,
    Chain(Anchors, Names),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    Ignored,
    Checked,
}

/// The `sslrootcert` certificates: as webpki's trust anchors, and as they were given (a server
/// certificate that is one of them is trusted as itself, as OpenSSL does).
#[derive(Debug)]
struct Anchors {
    /// `None` when webpki can take none of them as an anchor (all of version 1, say).
    chain: Option<Arc<WebPkiServerVerifier>>,
    given: Vec<CertificateDer<'static>>,
}

impl Anchors {
    fn new(roots: &RootCerts, provider: &Arc<CryptoProvider>) -> Result<Anchors, PgTlsError> {
        let given: Vec<CertificateDer<'static>> = match roots {
            RootCerts::Pem(pem) => CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|why| PgTlsError(format!("sslrootcert: not a PEM certificate: {why}")))?,
            RootCerts::System | RootCerts::NotGiven => rustls_native_certs::load_native_certs().certs,
        };
        if given.is_empty() {
            return Err(PgTlsError("sslrootcert: holds no certificate".into()));
        }
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(given.iter().cloned());
        let chain = match store.is_empty() {
            true => None,
            false => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|why| PgTlsError(why.to_string()))?,
            ),
        };
        Ok(Anchors { chain, given })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Check::Chain(anchors, names) = &self.check else { return Ok(ServerCertVerified::assertion()) };
        let parsed = Parsed::from_der(end_entity)?;
        if parsed.is_self_issued()
            && anchors.given.iter().any(|anchor| anchor.as_ref() == end_entity.as_ref())
        {
            // Trusted as itself, as OpenSSL trusts a self-issued certificate found in the
            // store; it still checks its dates.
            parsed.check_dates(now)?;
        } else {
            let Some(chain) = &anchors.chain else {
                return Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
            };
            match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                // The chain is checked before the name: the name is ours to check, below.
                Ok(_)
                | Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) => {}
                Err(other) => return Err(other),
            }
        }
        if *names == Names::Checked {
            parsed.check_host(server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        certificate::verify_tls12_signature(message, cert, dss, &self.provider)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        certificate::verify_tls13_signature(message, cert, dss, &self.provider)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether `error` is a certificate the settings refuse: permanent, unlike an unreachable server.
pub fn is_certificate_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(rustls::Error::InvalidCertificate(_)) = cause.downcast_ref::<rustls::Error>() {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if io.get_ref().is_some_and(|inner| {
                matches!(inner.downcast_ref::<rustls::Error>(), Some(rustls::Error::InvalidCertificate(_)))
            }) {
                return true;
            }
        }
        source = cause.source();
    }
    false
}
