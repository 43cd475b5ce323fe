//! The PostgreSQL part of the configuration.

use std::time::Duration;

/// Where the database is and how we use it.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Connection settings; tokio-postgres redacts the password in `Debug`.
    pub pg: tokio_postgres::Config,
    pub pool_size: usize,
    /// How long start-up waits for the server to accept connections.
    pub wait: Duration,
    /// How long a request waits for a pooled connection before answering 503.
    pub acquire_timeout: Duration,
}

impl DatabaseConfig {
    /// The database's name (libpq's rule: the user name when the URL names none).
    pub fn dbname(&self) -> String {
        self.pg.get_dbname().or(self.pg.get_user()).unwrap_or("postgres").to_owned()
    }
}

/// Parses a PostgreSQL URL. The original backend's SQLAlchemy form `postgresql+asyncpg://…`
/// (any `+driver`) is accepted and read as `postgresql://…`.
pub(super) fn parse_url(text: &str) -> Result<tokio_postgres::Config, String> {
    let text = text.trim();
    let normalised = match text.split_once("://") {
        Some((scheme, rest)) if scheme.starts_with("postgresql+") || scheme.starts_with("postgres+") => {
            format!("postgresql://{rest}")
        }
        Some(("postgres" | "postgresql", _)) => text.to_owned(),
        _ => return Err("expected a URL such as postgres://user@host:5432/dbname".to_owned()),
    };
    let config: tokio_postgres::Config =
        normalised.parse().map_err(|why| format!("not a valid PostgreSQL URL: {why}"))?;
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err(
            "sslmode=require is not supported yet (no TLS to PostgreSQL); use sslmode=prefer or disable"
                .to_owned(),
        );
    }
    if config.get_hosts().is_empty() {
        return Err("the URL names no host".to_owned());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asyncpg_form_of_the_original_is_accepted() {
        let config = parse_url("postgresql+asyncpg://app:secret@db:5433/prodsentinel").unwrap();
        assert_eq!(config.get_user(), Some("app"));
        assert_eq!(config.get_dbname(), Some("prodsentinel"));
        assert_eq!(config.get_ports(), &[5433]);
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn other_schemes_and_tls_requirements_are_refused() {
        assert!(parse_url("mysql://root@db/x").is_err());
        assert!(parse_url("postgres://u@db/x?sslmode=require").is_err());
        assert!(parse_url("postgres://u@db:notaport/x").is_err());
    }
}
