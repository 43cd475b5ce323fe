//! Redis, as the analysis worker expects it (docs/contracts.md §2): the dedup lock
//! `SET analysis:triggered:{trace_id} 1 NX EX <ttl>`, then `LPUSH <queue> <envelope>`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

/// The dedup lock's key prefix, shared with the original backend.
pub const LOCK_PREFIX: &str = "analysis:triggered:";

/// Redis could not be used; the caller keeps the request and retries later.
#[derive(Debug, thiserror::Error)]
#[error("redis unavailable")]
pub struct QueueError(#[source] pub redis::RedisError);

/// What happened to one analysis request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// We took the lock and the task message is on the queue.
    Sent,
    /// Another sender holds the lock for this trace: an analysis is already queued.
    LockBusy,
}

/// A lazily connected, self-reconnecting handle on the broker's Redis.
#[derive(Clone)]
pub struct AnalysisQueue {
    connection: ConnectionManager,
    queue: String,
    lock_ttl: Duration,
}

impl AnalysisQueue {
    /// Does not connect: a Redis that is down at start-up must not stop ingestion.
    pub fn new(url: &str, queue: &str, lock_ttl: Duration) -> Result<AnalysisQueue, QueueError> {
        let client = redis::Client::open(url).map_err(QueueError)?;
        // Fail fast while Redis is down: the outbox keeps the request and retries with backoff.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(QueueError)?;
        Ok(AnalysisQueue { connection, queue: queue.to_owned(), lock_ttl })
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Takes the trace's lock and pushes `envelope`; if the push fails the lock is released, so
    /// the retry is not mistaken for a duplicate.
    pub async fn deliver(&self, trace_id: &str, envelope: &str) -> Result<Delivery, QueueError> {
        let mut connection = self.connection.clone();
        let key = format!("{LOCK_PREFIX}{trace_id}");
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::EX(self.lock_ttl.as_secs().max(1)));
        let locked: Option<String> = connection.set_options(&key, 1, options).await.map_err(QueueError)?;
        if locked.is_none() {
            return Ok(Delivery::LockBusy);
        }
        if let Err(why) = connection.lpush::<_, _, i64>(&self.queue, envelope).await {
            let _: Result<i64, _> = connection.del(&key).await;
            return Err(QueueError(why));
        }
        Ok(Delivery::Sent)
    }
}
