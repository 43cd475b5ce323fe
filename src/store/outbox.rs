//! The analysis outbox: requests written with the signals that caused them, delivered to Redis
//! by the dispatcher.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};

/// A claimed analysis request.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub trace_id: String,
    pub created_at: DateTime<Utc>,
    /// Delivery attempts, this one included.
    pub attempts: i32,
}

impl Store {
    /// Up to `limit` due pending requests, oldest first, leased to the caller for `lease`: rows
    /// another instance holds are skipped, not waited for.
    pub async fn claim_analyses(&self, limit: i64, lease: Duration) -> Result<Vec<OutboxRow>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE analysis_outbox SET due_at = now() + make_interval(secs => $2), attempts = attempts + 1
                 WHERE id IN (SELECT id FROM analysis_outbox WHERE status = 'pending' AND due_at <= now()
                              ORDER BY due_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, trace_id, created_at, attempts",
                &[&limit, &lease.as_secs_f64()],
            )
            .await?;
        let mut claimed = rows
            .iter()
            .map(|r| Ok(from_columns!(r, OutboxRow { id, trace_id, created_at, attempts })))
            .collect::<Result<Vec<OutboxRow>, StoreError>>()?;
        claimed.sort_by_key(|r| (r.created_at, r.id));
        Ok(claimed)
    }

    pub async fn mark_analysis_sent(&self, id: i64, task_id: Uuid) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE analysis_outbox SET status = 'sent', sent_at = now(), task_id = $2, last_error = NULL WHERE id = $1",
                &[&id, &task_id],
            )
            .await?;
        Ok(())
    }

    pub async fn mark_analysis_deduplicated(&self, id: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE analysis_outbox SET status = 'deduplicated', sent_at = now() WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(())
    }

    /// Puts a claimed request back, due again after `delay`.
    pub async fn retry_analysis_later(
        &self,
        id: i64,
        delay: Duration,
        error: &str,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE analysis_outbox SET due_at = now() + make_interval(secs => $2), last_error = $3 WHERE id = $1",
                &[&id, &delay.as_secs_f64(), &error],
            )
            .await?;
        Ok(())
    }
}

impl Store {
    /// Analysis requests waiting in the outbox, and the age in seconds of the oldest (0 when
    /// none): the backlog an operator watches when Redis or the worker is away.
    pub async fn outbox_backlog(&self) -> Result<(i64, f64), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) AS pending,
                        coalesce(extract(epoch FROM now() - min(created_at))::float8, 0) AS oldest_seconds
                 FROM analysis_outbox WHERE status = 'pending'",
                &[],
            )
            .await?;
        Ok((row.try_get("pending")?, row.try_get("oldest_seconds")?))
    }
}
