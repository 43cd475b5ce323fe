//! Closing pooled connections that nobody used for `DATABASE_POOL_IDLE_SECONDS`.
//!
//! deadpool keeps every connection it ever opened. A burst (a dashboard opened by many people,
//! a stall that queued requests) opens connections up to the pool size, and each then holds a
//! PostgreSQL server process and, on our side, read and write buffers as large as the largest
//! answer it carried (tokio-postgres never shrinks them): measured, four to sixteen connections
//! left about 4–6 MB more resident after the burst. The steady load reuses a few of them every
//! second; the rest are closed here.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Store;

impl Store {
    /// Until `stop`: closes the primary's and the replica's connections unused for longer than
    /// the setting, checking four times per idle period (at most once a second, at least once a
    /// minute). With the setting at 0, only waits for `stop`: returning earlier would read as a
    /// server task that ended.
    pub async fn close_idle_connections(&self, stop: CancellationToken) {
        let Some(idle) = self.pool_idle else { return stop.cancelled().await };
        let mut ticks =
            tokio::time::interval((idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let mut closed = close_idle(&self.pool, idle);
            if let Some(replica) = &self.replica {
                closed += close_idle(&replica.pool, idle);
            }
            if closed > 0 {
                debug!(closed, idle_seconds = idle.as_secs(), "closed idle database connections");
            }
        }
    }
}

/// Drops the idle connections of `pool` last handed out more than `idle` ago; how many.
/// deadpool records when a connection was handed out, not when it came back: one that ran a
/// query longer than `idle` is closed at the first check after its return (with the default of
/// a minute, after a query of a minute), and the next request opens another.
fn close_idle(pool: &Pool, idle: Duration) -> usize {
    pool.retain(|_, use_| use_.last_used() < idle).removed.len()
}
