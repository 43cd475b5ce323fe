//! Schema migrations: the files of `migrations/`, compiled into the binary, applied in order,
//! each once, each in its own transaction, recorded with a SHA-256 checksum. An applied file
//! that was edited afterwards stops start-up, naming the file. A session-level advisory lock
//! makes concurrent instances take turns, so only one of them applies anything.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;
use tracing::{info, warn};

/// One migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The number the file name starts with; the order of application.
    pub version: i32,
    /// The file name, e.g. `0001_signals.sql`.
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration { version: $version, name: $name, sql: include_str!(concat!("../../migrations/", $name)) }
    };
}

/// Every file of `migrations/`, in order. A test checks this list against the directory.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_signals.sql"),
    migration!(2, "0002_incidents.sql"),
    migration!(3, "0003_triage.sql"),
    migration!(4, "0004_incident_trace_key.sql"),
    migration!(5, "0005_incident_list_indexes.sql"),
    migration!(6, "0006_problems.sql"),
    migration!(7, "0007_partitioned_signals.sql"),
    migration!(8, "0008_incident_indexes.sql"),
    migration!(9, "0009_shared_resources.sql"),
    migration!(10, "0010_incident_trigger_when.sql"),
    migration!(11, "0011_evidence.sql"),
    migration!(12, "0012_shared_sweep_and_helpers.sql"),
    migration!(13, "0013_service_activity.sql"),
    migration!(14, "0014_incident_list_indexes_ascending.sql"),
    migration!(15, "0015_partitioned_incidents.sql"),
    migration!(16, "0016_incident_range_deferral.sql"),
    migration!(17, "0017_span_operations_and_dependencies.sql"),
    migration!(18, "0018_sealed_blocks.sql"),
    migration!(19, "0019_batch_clock.sql"),
    migration!(20, "0020_prepared_batches.sql"),
];

/// Brings a database of the original Python backend to the state of migrations 0001 and 0002
/// (which then count as applied): see the file.
const ADOPT_ORIGINAL: &str = include_str!("../../migrations/adopt/original_backend.sql");

/// The migrations a database of the original backend already has the equivalent of.
const ORIGINAL_EQUIVALENT: &[i32] = &[1, 2];

/// Arbitrary but fixed: the key of the advisory lock that serialises migration runs.
const MIGRATION_LOCK_KEY: i64 = 0x7072_6f64_7365_6e74; // "prodsent"

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {name} was edited after it was applied (recorded checksum {recorded}, file now {current}); add a new migration instead")]
    Edited { name: String, recorded: String, current: String },
    #[error("migration {name} failed")]
    Failed {
        name: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("migration bookkeeping failed")]
    Database(#[from] tokio_postgres::Error),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    pub applied: Vec<&'static str>,
    pub already_applied: usize,
    /// The database was the original Python backend's, adopted (see `ADOPT_ORIGINAL`).
    pub adopted_original: bool,
}

/// A database with no migration recorded but a `raw_signals` table was created by the original
/// backend: brings it to the state of migrations 0001 and 0002 and records them, in one
/// transaction. `false`: an empty database, nothing to adopt.
async fn adopt_original(client: &mut Client, migrations: &[Migration]) -> Result<bool, MigrateError> {
    let exists = "SELECT to_regclass(quote_ident(current_schema()) || '.raw_signals') IS NOT NULL";
    if !client.query_one(exists, &[]).await?.try_get::<_, bool>(0)? {
        return Ok(false);
    }
    let failed = |source| MigrateError::Failed { name: "adopt/original_backend.sql".to_owned(), source };
    let transaction = client.transaction().await?;
    transaction.batch_execute(ADOPT_ORIGINAL).await.map_err(failed)?;
    for migration in migrations.iter().filter(|m| ORIGINAL_EQUIVALENT.contains(&m.version)) {
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[&migration.version, &migration.name, &checksum(migration.sql)],
            )
            .await?;
    }
    transaction.commit().await.map_err(failed)?;
    info!("adopted the original backend's database: its tables now follow migrations 0001 and 0002");
    Ok(true)
}

/// Hex SHA-256 of a migration's text.
pub fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies every migration of `migrations` not yet applied, holding the advisory lock.
pub async fn run(client: &mut Client, migrations: &[Migration]) -> Result<MigrationReport, MigrateError> {
    lock(client).await?;
    let result = apply_pending(client, migrations).await;
    unlock(client).await;
    result
}

/// Takes the migration lock: one instance at a time changes the schema.
pub(crate) async fn lock(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY]).await.map(drop)
}

/// Releases it, even after a failure; if this fails too, closing the connection releases it.
pub(crate) async fn unlock(client: &Client) {
    if let Err(why) = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await {
        warn!(error = %why, "could not release the migration lock");
    }
}

/// `(version, name, checksum)` of each applied migration, in version order.
async fn read_applied_rows(client: &Client, sql: &str) -> Result<Vec<(i32, String, String)>, MigrateError> {
    let rows = client.query(sql, &[]).await?;
    let read = |row: &tokio_postgres::Row| {
        Ok((row.try_get("version")?, row.try_get("name")?, row.try_get("checksum")?))
    };
    rows.iter().map(read).collect()
}

async fn apply_pending(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<MigrationReport, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let mut report = MigrationReport::default();
    let read_applied = "SELECT version, name, checksum FROM schema_migrations ORDER BY version";
    let mut applied = read_applied_rows(client, read_applied).await?;
    if applied.is_empty() && adopt_original(client, migrations).await? {
        report.adopted_original = true;
        applied = read_applied_rows(client, read_applied).await?;
    }

    for migration in migrations {
        let current = checksum(migration.sql);
        if let Some((_, _, recorded)) = applied.iter().find(|(v, _, _)| *v == migration.version) {
            if *recorded != current {
                return Err(MigrateError::Edited {
                    name: migration.name.to_owned(),
                    recorded: recorded.clone(),
                    current,
                });
            }
            report.already_applied += 1;
            continue;
        }
        let failed = |source| MigrateError::Failed { name: migration.name.to_owned(), source };
        let transaction = client.transaction().await?;
        transaction.batch_execute(migration.sql).await.map_err(failed)?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[&migration.version, &migration.name, &current],
            )
            .await?;
        transaction.commit().await.map_err(failed)?;
        info!(migration = migration.name, "applied migration");
        report.applied.push(migration.name);
    }
    for (version, name, _) in &applied {
        if !migrations.iter().any(|m| m.version == *version) {
            warn!(migration = %name, version, "database has a migration this binary does not know (newer version deployed?)");
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_list_matches_the_migrations_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, embedded, "add new migration files to MIGRATIONS");
    }

    #[test]
    fn versions_follow_file_names_strictly_increasing() {
        let mut previous = 0;
        for migration in MIGRATIONS {
            let prefix: i32 = migration.name[..4].parse().unwrap();
            assert_eq!(prefix, migration.version, "{}", migration.name);
            assert!(migration.version > previous);
            previous = migration.version;
        }
    }

    #[test]
    fn checksum_changes_with_any_edit() {
        assert_eq!(checksum("SELECT 1;").len(), 64);
        assert_ne!(checksum("SELECT 1;"), checksum("SELECT 1; "));
    }
}
