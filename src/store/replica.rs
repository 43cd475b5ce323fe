//! Reads of the query API on a streaming replica (`QUERY_DATABASE_URL`), with the primary as
//! the fallback: when the replica cannot be reached, or has not yet replayed the schema this
//! binary migrated the primary to (a first start, a new migration), reads go to the primary
//! (logged once) and the replica is tried again after [`RETRY_AFTER`]. A read is never refused
//! because the replica is away or behind; it may be as stale as the replica's replay lag while
//! it serves.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use tracing::{info, warn};

use super::StoreError;
use crate::error::error_chain;

/// How long reads stay on the primary after the replica failed, before it is tried again (so
/// that a replica that is down costs one connection timeout per interval, not one per read).
const RETRY_AFTER: Duration = Duration::from_secs(5);

pub(super) struct Replica {
    pub pool: Pool,
    /// The newest migration this binary applies: the replica serves once it has it.
    schema_version: i32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Since when reads bypass the replica, while it is away or behind the schema.
    away_since: Option<Instant>,
    /// Seen once: schemas only move forward.
    has_schema: bool,
}

impl State {
    /// Whether reads bypass the replica now: it failed less than [`RETRY_AFTER`] ago.
    fn bypassing(&self) -> bool {
        self.away_since.is_some_and(|t| t.elapsed() < RETRY_AFTER)
    }
}

/// The replica as `/health/ready` and `/metrics` report it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaStatus {
    pub reachable: bool,
    /// Whether queries read from it now (reachable, and it has the schema).
    pub serving: bool,
    /// How far replay is behind what the replica has received (0 when caught up); `None`
    /// when it cannot be asked.
    pub replay_lag_seconds: Option<f64>,
}

/// 0 when replay has caught up with what was received (an idle primary sends nothing, so the
/// time since the last replayed commit alone would grow without any lag); otherwise the time
/// since the last transaction replayed. 0 on a server that is not a standby.
const REPLAY_LAG: &str = "SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN 0
        WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
        ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
    END::float8 AS lag";

/// Why reads bypass the replica.
#[derive(Debug, thiserror::Error)]
enum Away {
    #[error("unreachable")]
    Unreachable(#[source] StoreError),
    #[error("it has not replayed the schema yet (migration {have} of {want})")]
    BehindSchema { have: i32, want: i32 },
}

impl Replica {
    pub fn new(pool: Pool, schema_version: i32) -> Replica {
        Replica { pool, schema_version, state: Mutex::new(State::default()) }
    }

    /// A connection to the replica, or `None` when reads should go to the primary.
    pub async fn client(&self) -> Option<Object> {
        if self.lock().bypassing() {
            return None;
        }
        match self.usable().await {
            Ok(client) => {
                if self.lock().away_since.take().is_some() {
                    info!("query replica serving again: queries read from it");
                }
                Some(client)
            }
            Err(why) => {
                let mut state = self.lock();
                if state.away_since.is_none() {
                    warn!(reason = %error_chain(&why), "query replica not used: queries read from the primary");
                }
                state.away_since = Some(Instant::now());
                None
            }
        }
    }

    /// A connection, once the replica has the schema.
    async fn usable(&self) -> Result<Object, Away> {
        let client = self.pool.get().await.map_err(|why| Away::Unreachable(why.into()))?;
        if !self.lock().has_schema {
            let version = "SELECT coalesce(max(version), 0) AS version FROM schema_migrations";
            // No table yet: the replica has not replayed even the first migration.
            let have: i32 = match client.query_one(version, &[]).await {
                Ok(row) => row.try_get("version").map_err(|why| Away::Unreachable(why.into()))?,
                Err(_) => 0,
            };
            if have < self.schema_version {
                return Err(Away::BehindSchema { have, want: self.schema_version });
            }
            self.lock().has_schema = true;
        }
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it cannot leave the state inconsistent (two plain fields).
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub async fn status(&self, timeout: Duration) -> ReplicaStatus {
        let probe = async {
            let client = self.pool.get().await?;
            let row = client.query_one(REPLAY_LAG, &[]).await?;
            Ok::<f64, StoreError>(row.try_get("lag")?)
        };
        let lag = match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(lag)) => lag.max(0.0),
            _ => return ReplicaStatus { reachable: false, serving: false, replay_lag_seconds: None },
        };
        if !self.lock().has_schema {
            // Learn whether it has the schema now, so the answer does not wait for a query.
            let _ = tokio::time::timeout(timeout, self.usable()).await;
        }
        let state = self.lock();
        let serving = state.has_schema && !state.bypassing();
        ReplicaStatus { reachable: true, serving, replay_lag_seconds: Some(lag) }
    }
}
