//! TLS to PostgreSQL through rustls, with libpq's `sslmode` meanings:
//!
//! - `disable`: never; `prefer` (the default): when the server offers it, else plain, the
//!   certificate not checked;
//! - `require`: always, the certificate not checked, unless `sslrootcert` is given: then it is
//!   checked as for `verify-ca` (libpq does the same when a root certificate exists);
//! - `verify-ca`: always, the chain checked against `sslrootcert` (a PEM file, `system` for the
//!   operating system's roots, by default `~/.postgresql/root.crt` as libpq);
//! - `verify-full`: as `verify-ca`, and the certificate must name the host connected to (the
//!   URL's host, also when `hostaddr` gives the address).
//!
//! With `sslcert` and `sslkey`, the client presents that certificate (servers that
//! authenticate by certificate).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::config::{DatabaseTls, RootCerts, SslMode};

/// Makes the TLS session of each new connection; cheap to clone.
#[derive(Clone)]
pub struct PgTls {
    config: Arc<ClientConfig>,
}

/// Why the TLS settings cannot be used (a bad `sslrootcert`, `sslcert` or `sslkey`).
#[derive(Debug, thiserror::Error)]
#[error("DATABASE_URL {0}")]
pub struct PgTlsError(String);

impl PgTls {
    pub fn new(tls: &DatabaseTls) -> Result<PgTls, PgTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|why| PgTlsError(why.to_string()))?;
        let roots = || -> Result<Arc<RootCertStore>, PgTlsError> {
            let mut store = RootCertStore::empty();
            match &tls.root_certs {
                RootCerts::Pem(pem) => {
                    for cert in CertificateDer::pem_slice_iter(pem) {
                        let cert = cert.map_err(|why| {
                            PgTlsError(format!("sslrootcert: not a PEM certificate: {why}"))
                        })?;
                        store
                            .add(cert)
                            .map_err(|why| PgTlsError(format!("sslrootcert: unusable certificate: {why}")))?;
                    }
                }
                RootCerts::System | RootCerts::NotGiven => {
                    store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                }
            }
            if store.is_empty() {
                return Err(PgTlsError("sslrootcert: holds no certificate".into()));
            }
            Ok(Arc::new(store))
        };
        let checked = |names: bool| -> Result<Verifier, PgTlsError> {
            let chain = WebPkiServerVerifier::builder_with_provider(roots()?, provider.clone())
                .build()
                .map_err(|why| PgTlsError(why.to_string()))?;
            Ok(Verifier { provider: provider.clone(), chain: Some(chain), names })
        };
        let verifier = match (tls.mode, &tls.root_certs) {
            // With disable, tokio-postgres never starts a handshake; the connector is only asked for.
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, RootCerts::NotGiven) => {
                Verifier { provider: provider.clone(), chain: None, names: false }
            }
            (SslMode::Require | SslMode::VerifyCa, _) => checked(false)?,
            (SslMode::VerifyFull, _) => checked(true)?,
        };
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
        Ok(PgTls { config: Arc::new(config) })
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<PgTlsConnect> {
        let config = self.config.clone();
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("not a host name: {host:?}")))?;
        Ok(PgTlsConnect { config, name })
    }
}

pub struct PgTlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { Ok(PgTlsStream(connector.connect(self.name, stream).await?)) })
    }
}

/// A TLS session to the server.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding, as libpq's channel_binding=prefer falls back to.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// What is checked of the server's certificate. The handshake's signatures are checked in
/// every case.
#[derive(Debug)]
struct Verifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// `None`: nothing (`prefer`, `require` without a root certificate: encrypted, the server
    /// not authenticated, libpq's meaning). `Some`: the chain, and the name with `names`.
    chain: Option<Arc<WebPkiServerVerifier>>,
    names: bool,
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
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
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
