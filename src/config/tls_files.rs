//! The listeners' certificate and key (`TLS_CERT_FILE`, `TLS_KEY_FILE`): read and checked at
//! start-up, so a bad path or PEM stops the process with one line naming the setting.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS setting that cannot be used: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting}: {reason}")]
pub struct TlsSettingError {
    pub setting: &'static str,
    pub reason: String,
}

/// The certificate chain and key, read and checked.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsFiles {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles").field("cert_pem_bytes", &self.cert_pem.len()).finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Both paths empty: no TLS. Both set: read and check them. One alone is an error.
    pub fn from_settings(cert_path: &str, key_path: &str) -> Result<Option<TlsFiles>, TlsSettingError> {
        let invalid = |setting: &'static str, reason: String| TlsSettingError { setting, reason };
        match (cert_path.trim(), key_path.trim()) {
            ("", "") => Ok(None),
            (_, "") => Err(invalid("TLS_KEY_FILE", "required when TLS_CERT_FILE is set".into())),
            ("", _) => Err(invalid("TLS_CERT_FILE", "required when TLS_KEY_FILE is set".into())),
            (cert, key) => {
                let read = |setting, path: &str| {
                    std::fs::read(path).map_err(|why| invalid(setting, format!("cannot read {path}: {why}")))
                };
                let files =
                    TlsFiles { cert_pem: read("TLS_CERT_FILE", cert)?, key_pem: read("TLS_KEY_FILE", key)? };
                files.server_config(Vec::new()).map_err(|(setting, reason)| invalid(setting, reason))?;
                Ok(Some(files))
            }
        }
    }

    /// A rustls configuration offering `alpn` protocols; on error, which setting is at fault.
    pub fn server_config(&self, alpn: Vec<Vec<u8>>) -> Result<ServerConfig, (&'static str, String)> {
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| ("TLS_CERT_FILE", format!("not a PEM certificate chain: {why}")))?;
        if chain.is_empty() {
            return Err(("TLS_CERT_FILE", "holds no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|why| ("TLS_KEY_FILE", format!("not a PEM private key: {why}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|why| ("TLS_CERT_FILE", why.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|why| ("TLS_KEY_FILE", format!("does not match the certificate: {why}")))?;
        config.alpn_protocols = alpn;
        Ok(config)
    }

    /// tonic's TLS settings for the OTLP/gRPC listener.
    pub fn grpc_config(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        tonic::transport::ServerTlsConfig::new().identity(identity)
    }
}
