//! The background task that moves analysis requests from the outbox to Redis.
//!
//! Each step claims due rows (`FOR UPDATE SKIP LOCKED`, leased by pushing `due_at` ahead, so
//! several instances share the work and a crash only delays a row), then for each takes the
//! per-trace lock and pushes the Celery message, and marks the row `sent`, or `deduplicated`
//! when the lock was already held. While Redis is unreachable, rows are put back with
//! exponential backoff; nothing is dropped. A push that landed before a crash is not sent
//! again: the retry finds the lock held.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use uuid::Uuid;

use super::celery::{analyze_trace_envelope, TaskMessage};
use super::redis_queue::{AnalysisQueue, Delivery};
use crate::store::{Store, StoreError};
use crate::telemetry::episodes::{Cause, Source};
use crate::telemetry::metrics::{AnalysisOutcome, Metrics};

/// How the dispatcher paces itself.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// The task's `eta` is the request's creation time plus this (`ANALYSIS_DEBOUNCE_SECONDS`).
    pub debounce: Duration,
    /// Pause between polls when nothing is due (`DISPATCH_INTERVAL_MS`); new requests wake it.
    pub interval: Duration,
    /// Longest wait before retrying a row Redis refused (`DISPATCH_MAX_BACKOFF_MS`).
    pub max_backoff: Duration,
    /// Rows claimed per step.
    pub batch: i64,
    /// `headers.origin` of the messages.
    pub origin: String,
}

/// What one step did; tests step the dispatcher by hand and look at this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Dispatched {
        sent: usize,
        deduplicated: usize,
    },
    NothingDue,
    /// Redis refused or did not answer; `reason` is its error (never the URL or password).
    QueueUnavailable {
        postponed: usize,
        reason: String,
    },
}

/// A claimed row not handed to Redis is leased for this long, in case we crash.
const LEASE: Duration = Duration::from_secs(30);

pub struct Dispatcher {
    store: Store,
    queue: AnalysisQueue,
    settings: DispatchSettings,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        queue: AnalysisQueue,
        settings: DispatchSettings,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Dispatcher {
        Dispatcher { store, queue, settings, wake, metrics }
    }

    /// Claims and delivers one batch of due requests.
    pub async fn step(&self) -> Result<StepOutcome, StoreError> {
        let rows = self.store.claim_analyses(self.settings.batch, LEASE).await?;
        if rows.is_empty() {
            return Ok(StepOutcome::NothingDue);
        }
        let (mut sent, mut deduplicated) = (0, 0);
        for (index, row) in rows.iter().enumerate() {
            let task_id = Uuid::new_v4();
            let eta = row.created_at + self.settings.debounce;
            let envelope = analyze_trace_envelope(&TaskMessage {
                trace_id: &row.trace_id,
                task_id,
                delivery_tag: Uuid::new_v4(),
                eta: Some(eta),
                queue: self.queue.queue(),
                origin: &self.settings.origin,
            });
            match self.queue.deliver(&row.trace_id, &envelope).await {
                Ok(Delivery::Sent) => {
                    self.store.mark_analysis_sent(row.id, task_id).await?;
                    self.metrics.count_analysis(AnalysisOutcome::dispatched, 1);
                    sent += 1;
                }
                Ok(Delivery::LockBusy) => {
                    self.store.mark_analysis_deduplicated(row.id).await?;
                    self.metrics.count_analysis(AnalysisOutcome::deduplicated, 1);
                    deduplicated += 1;
                }
                Err(why) => {
                    let reason = crate::error::error_chain(&why);
                    for pending in &rows[index..] {
                        let wait = backoff(pending.attempts, self.settings.max_backoff);
                        self.store.retry_analysis_later(pending.id, wait, &reason).await?;
                    }
                    self.metrics.count_analysis(AnalysisOutcome::retried, (rows.len() - index) as u64);
                    return Ok(StepOutcome::QueueUnavailable { postponed: rows.len() - index, reason });
                }
            }
        }
        Ok(StepOutcome::Dispatched { sent, deduplicated })
    }

    /// Steps until `stop` is cancelled; a step in progress is finished first.
    pub async fn run(self, stop: CancellationToken) {
        let episodes = &self.metrics.episodes;
        loop {
            let pause = match self.step().await {
                Ok(StepOutcome::Dispatched { .. }) => {
                    episodes.recovered(Source::outbox);
                    episodes.recovered(Source::analysis_queue);
                    Duration::ZERO
                }
                Ok(StepOutcome::NothingDue) => {
                    episodes.recovered(Source::outbox);
                    self.settings.interval
                }
                Ok(StepOutcome::QueueUnavailable { reason, .. }) => {
                    episodes.recovered(Source::outbox);
                    // The reason tells a wrong password or TLS setting from a Redis that is
                    // down; the requests wait in the outbox.
                    episodes.failed(Source::analysis_queue, Cause::redis_unreachable, &reason);
                    self.settings.interval
                }
                Err(why) => {
                    episodes.failed(Source::outbox, Cause::from(&why), &crate::error::error_chain(&why));
                    self.settings.interval
                }
            };
            if stop.is_cancelled() {
                break;
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// How long a row Redis refused waits after its `attempts`-th try: 0.5 s doubling per attempt,
/// capped at `max`.
fn backoff(attempts: i32, max: Duration) -> Duration {
    let doublings = attempts.clamp(1, 16) as u32 - 1;
    (Duration::from_millis(500) * 2u32.pow(doublings)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_the_cap() {
        let max = Duration::from_secs(30);
        let waits: Vec<u64> = (1..=8).map(|a| backoff(a, max).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(backoff(0, max), Duration::from_millis(500), "a row not yet tried");
        assert_eq!(backoff(i32::MAX, max), max, "no overflow however many attempts");
        assert_eq!(backoff(1, Duration::from_millis(300)), Duration::from_millis(300));
    }
}
