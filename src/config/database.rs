//! The PostgreSQL part of the configuration.

use std::time::Duration;

/// Where the database is and how we use it.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Connection settings; tokio-postgres redacts the password in `Debug`.
    pub pg: tokio_postgres::Config,
    /// `sslmode` and `sslrootcert` of the URL, which tokio-postgres does not read in full.
    pub tls: DatabaseTls,
    pub pool_size: usize,
    /// Pooled connections unused for longer are closed; `None` keeps them.
    pub pool_idle: Option<Duration>,
    /// How long start-up waits for the server to accept connections.
    pub wait: Duration,
    /// How long a request waits for a pooled connection before answering 503.
    pub acquire_timeout: Duration,
    /// Shards of the signals when they are first distributed on a Citus cluster.
    pub citus_shard_count: u32,
    /// On Citus, whether batches are written at the nodes holding their shards (store/citus/parts.rs)
    /// rather than through the coordinator.
    pub citus_write_at_workers: bool,
    /// On Citus, whether the incidents are distributed with the signals when first laid out
    /// (store/citus/incidents.rs) rather than kept on the coordinator.
    pub citus_distribute_incidents: bool,
}

impl DatabaseConfig {
    /// The database's name (libpq's rule: the user name when the URL names none).
    pub fn dbname(&self) -> String {
        self.pg.get_dbname().or(self.pg.get_user()).unwrap_or("postgres").to_owned()
    }
}

/// libpq's `sslmode` values, with libpq's meanings (see `store::tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The certificates the server's is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// No `sslrootcert` and no `~/.postgresql/root.crt`.
    NotGiven,
    /// `sslrootcert=system`: the operating system's roots.
    System,
    /// The PEM file's contents, read at start-up.
    Pem(Vec<u8>),
}

#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseTls {
    pub mode: SslMode,
    pub root_certs: RootCerts,
    /// `sslcert` and `sslkey`: the PEM certificate chain and key this client presents, for a
    /// server that authenticates clients by certificate.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for DatabaseTls {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseTls")
            .field("mode", &self.mode)
            .field("root_certs", &self.root_certs)
            .field("client_certificate", &self.client_identity.is_some())
            .finish()
    }
}

/// Parses a PostgreSQL URL. The original backend's SQLAlchemy form `postgresql+asyncpg://…`
/// (any `+driver`) is accepted and read as `postgresql://…`. `sslmode` (default `prefer`, as
/// libpq) and `sslrootcert` are taken out and returned apart; the root certificate file is
/// read here, so a missing one stops start-up with its path.
pub(super) fn parse_url(text: &str) -> Result<(tokio_postgres::Config, DatabaseTls), String> {
    let text = text.trim();
    let normalised = match text.split_once("://") {
        Some((scheme, rest)) if scheme.starts_with("postgresql+") || scheme.starts_with("postgres+") => {
            format!("postgresql://{rest}")
        }
        Some(("postgres" | "postgresql", _)) => text.to_owned(),
        _ => return Err("expected a URL such as postgres://user@host:5432/dbname".to_owned()),
    };
    let (url, tls) = take_tls_parameters(&normalised)?;
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|why| format!("not a valid PostgreSQL URL: {why}"))?;
    config.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    if config.get_hosts().is_empty() {
        return Err("the URL names no host".to_owned());
    }
    Ok((config, tls))
}

/// The URL without `sslmode`, `sslrootcert`, `sslcert` and `sslkey`, and what they say.
fn take_tls_parameters(text: &str) -> Result<(String, DatabaseTls), String> {
    let Some((base, query)) = text.split_once('?') else {
        return Ok((
            text.to_owned(),
            DatabaseTls { mode: SslMode::Prefer, root_certs: default_root_certs(), client_identity: None },
        ));
    };
    let (mut mode, mut root_file, mut cert_file, mut key_file) = (SslMode::Prefer, None, None, None);
    let mut kept = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "sslmode" => {
                mode = SslMode::parse(&value).ok_or_else(|| {
                    format!("sslmode={value} is not one of disable, prefer, require, verify-ca, verify-full")
                })?;
            }
            "sslrootcert" => root_file = Some(value.into_owned()),
            "sslcert" => cert_file = Some(value.into_owned()),
            "sslkey" => key_file = Some(value.into_owned()),
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    let root_certs = match root_file.as_deref() {
        None => default_root_certs(),
        Some("system") => RootCerts::System,
        Some(path) => RootCerts::Pem(
            std::fs::read(path).map_err(|why| format!("sslrootcert {path}: cannot read it: {why}"))?,
        ),
    };
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_certs == RootCerts::NotGiven {
        return Err(format!(
            "sslmode={} needs sslrootcert: a PEM file of the CA, or sslrootcert=system",
            mode.as_str()
        ));
    }
    let read = |what: &str, path: &str| {
        std::fs::read(path).map_err(|why| format!("{what} {path}: cannot read it: {why}"))
    };
    let client_identity = match (cert_file, key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((read("sslcert", &cert)?, read("sslkey", &key)?)),
        (Some(_), None) => return Err("sslcert needs sslkey (the certificate's private key)".into()),
        (None, Some(_)) => return Err("sslkey needs sslcert".into()),
    };
    let mut url = base.to_owned();
    if !kept.is_empty() {
        url.push('?');
        url.push_str(&url::form_urlencoded::Serializer::new(String::new()).extend_pairs(kept).finish());
    }
    Ok((url, DatabaseTls { mode, root_certs, client_identity }))
}

/// libpq's default root certificate, `~/.postgresql/root.crt`, when it exists.
fn default_root_certs() -> RootCerts {
    let path = std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".postgresql/root.crt"));
    match path.and_then(|path| std::fs::read(path).ok()) {
        Some(pem) => RootCerts::Pem(pem),
        None => RootCerts::NotGiven,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asyncpg_form_of_the_original_is_accepted() {
        let (config, _) = parse_url("postgresql+asyncpg://app:secret@db:5433/prodsentinel").unwrap();
        assert_eq!(config.get_user(), Some("app"));
        assert_eq!(config.get_dbname(), Some("prodsentinel"));
        assert_eq!(config.get_ports(), &[5433]);
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn other_schemes_and_bad_values_are_refused() {
        assert!(parse_url("mysql://root@db/x").is_err());
        assert!(parse_url("postgres://u@db:notaport/x").is_err());
        let unknown = parse_url("postgres://u@db/x?sslmode=verify").unwrap_err();
        assert!(unknown.contains("sslmode=verify is not one of"), "{unknown}");
        let missing =
            parse_url("postgres://u@db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").unwrap_err();
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
    }

    #[test]
    fn every_sslmode_is_read_and_the_rest_of_the_url_kept() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
        for (mode, expected, driver) in [
            ("disable", SslMode::Disable, tokio_postgres::config::SslMode::Disable),
            ("prefer", SslMode::Prefer, tokio_postgres::config::SslMode::Prefer),
            ("require", SslMode::Require, tokio_postgres::config::SslMode::Require),
            ("verify-ca", SslMode::VerifyCa, tokio_postgres::config::SslMode::Require),
            ("verify-full", SslMode::VerifyFull, tokio_postgres::config::SslMode::Require),
        ] {
            let url = format!("postgres://u@db.example/x?application_name=ps&sslmode={mode}&sslrootcert={ca}&hostaddr=10.0.0.1");
            let (config, tls) = parse_url(&url).unwrap();
            assert_eq!((tls.mode, config.get_ssl_mode()), (expected, driver), "{mode}");
            assert!(matches!(tls.root_certs, RootCerts::Pem(_)));
            assert_eq!(config.get_application_name(), Some("ps"));
            assert_eq!(config.get_hostaddrs().len(), 1, "hostaddr kept");
        }
        let (_, tls) = parse_url("postgres://u@db/x?sslmode=verify-full&sslrootcert=system").unwrap();
        assert_eq!(tls.root_certs, RootCerts::System);
        assert_eq!(parse_url("postgres://u@db/x").unwrap().1.mode, SslMode::Prefer, "libpq's default");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
        let (_, tls) =
            parse_url(&format!("postgres://u@db/x?sslcert={dir}/cert.pem&sslkey={dir}/key.pem")).unwrap();
        let (cert, key) = tls.client_identity.clone().expect("a client identity");
        assert!(!cert.is_empty() && !key.is_empty());
        assert!(!format!("{tls:?}").contains("PRIVATE"), "the key is never printed: {tls:?}");
    }
}
