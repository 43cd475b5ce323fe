//! Start-up before the pool exists: wait for the server, then create our database if needed.

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use tracing::{info, warn};

use super::tls::{is_certificate_refusal, pg_tls, PgTls};
use crate::config::DatabaseConfig;

/// Connects to `pg` once, driving the connection on a background task.
pub(crate) async fn connect(
    pg: &tokio_postgres::Config,
    tls: &PgTls,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = pg.connect(tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(why) = connection.await {
            warn!(error = %why, "database connection closed with an error");
        }
    });
    Ok(client)
}

/// The server-wide database every installation has, for checks done before ours exists.
fn maintenance_config(config: &DatabaseConfig) -> tokio_postgres::Config {
    let mut pg = config.pg.clone();
    pg.dbname("postgres");
    pg.connect_timeout(Duration::from_secs(5));
    pg
}

/// Waits until the server accepts connections, retrying with backoff (100 ms doubling to 2 s)
/// and logging each failure, for at most `config.wait`. Returns a connection to the server's
/// `postgres` database.
pub async fn wait_for_server(config: &DatabaseConfig) -> anyhow::Result<Client> {
    let pg = maintenance_config(config);
    let tls = pg_tls(&config.tls)?;
    let deadline = Instant::now() + config.wait;
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        match connect(&pg, &tls).await {
            Ok(client) => return Ok(client),
            // A certificate the settings refuse will be refused again: say so now, once.
            Err(why) if is_certificate_refusal(&why) => {
                let host = match config.pg.get_hosts().first() {
                    Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
                    _ => String::new(),
                };
                return Err(anyhow::Error::new(why).context(format!(
                    "the database's TLS certificate is not accepted (sslmode={}, host {host})",
                    config.tls.mode.as_str()
                )));
            }
            Err(why) if Instant::now() + delay < deadline => {
                warn!(attempt, error = %why, retry_in_ms = delay.as_millis() as u64, "waiting for database");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                attempt += 1;
            }
            Err(why) => {
                return Err(anyhow::Error::new(why).context(format!(
                    "database not reachable after {attempt} attempts in {:?} (DATABASE_WAIT_SECONDS)",
                    config.wait
                )))
            }
        }
    }
}

/// Creates the configured database when it does not exist. Safe when several instances race:
/// the loser sees "already exists" and carries on.
pub async fn ensure_database(server: &Client, config: &DatabaseConfig) -> anyhow::Result<()> {
    let name = config.dbname();
    let exists = server.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some();
    if exists {
        return Ok(());
    }
    let statement = format!("CREATE DATABASE {}", quote_identifier(&name));
    match server.batch_execute(&statement).await {
        Ok(()) => {
            info!(database = %name, "created database");
            Ok(())
        }
        Err(why)
            if why.code() == Some(&SqlState::DUPLICATE_DATABASE)
                || why.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
        {
            Ok(())
        }
        Err(why) => Err(anyhow::Error::new(why).context(format!("cannot create database {name:?}"))),
    }
}

/// `"name"` with embedded quotes doubled: safe for any database name in DDL.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_safely() {
        assert_eq!(quote_identifier("prodsentinel"), "\"prodsentinel\"");
        assert_eq!(quote_identifier("a\"; DROP"), "\"a\"\"; DROP\"");
    }
}
