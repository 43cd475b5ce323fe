//! Reads of the query API on a streaming replica (`QUERY_DATABASE_URL`), with the primary as
//! the fallback: when the replica cannot be reached, reads go to the primary (logged once) and
//! the replica is tried again after [`RETRY_AFTER`]. A read is never refused because the
//! replica is away; it may be as stale as the replica's replay lag while it is there.

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
    /// Since when reads bypass the replica, while it is away.
    away_since: Mutex<Option<Instant>>,
}

/// The replica as `/health/ready` and `/metrics` report it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaStatus {
    pub reachable: bool,
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

impl Replica {
    pub fn new(pool: Pool) -> Replica {
        Replica { pool, away_since: Mutex::new(None) }
    }

    /// A connection to the replica, or `None` when reads should go to the primary.
    pub async fn client(&self) -> Option<Object> {
        let skipping =
            self.away_since.lock().ok().and_then(|away| *away).is_some_and(|t| t.elapsed() < RETRY_AFTER);
        if skipping {
            return None;
        }
        match self.pool.get().await {
            Ok(client) => {
                if let Ok(mut away) = self.away_since.lock() {
                    if away.take().is_some() {
                        info!("query replica reachable again: queries read from it");
                    }
                }
                Some(client)
            }
            Err(why) => {
                if let Ok(mut away) = self.away_since.lock() {
                    if away.is_none() {
                        warn!(error = %error_chain(&why), "query replica unavailable: queries read from the primary");
                    }
                    *away = Some(Instant::now());
                }
                None
            }
        }
    }

    pub async fn status(&self, timeout: Duration) -> ReplicaStatus {
        let probe = async {
            let client = self.pool.get().await?;
            let row = client.query_one(REPLAY_LAG, &[]).await?;
            Ok::<f64, StoreError>(row.try_get("lag")?)
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(lag)) => ReplicaStatus { reachable: true, replay_lag_seconds: Some(lag.max(0.0)) },
            _ => ReplicaStatus { reachable: false, replay_lag_seconds: None },
        }
    }
}
