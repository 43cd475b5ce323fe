//! The one door every receiver calls with mapped signals. It answers only once the signals are
//! committed (group commit, see [`crate::pipeline`]), so an acknowledgement is a promise that
//! survives a crash; and it answers within `INGEST_TIMEOUT_MS`, so clients get a retryable
//! answer rather than their own timeout.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::warn;

use crate::error::{error_chain, Reject};
use crate::mapping::otlp::Mapped;
use crate::model::time::at_stored_precision;
use crate::model::{Lifecycle, Signal, SignalType};
use crate::pipeline::{Pipeline, SubmitError};
use crate::store::StoreError;
use crate::telemetry::episodes::{Cause, Source};
use crate::telemetry::metrics::{Metrics, RequestCount, Transport};

/// What happened to an accepted request's signals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Newly stored.
    pub stored: u64,
    /// Already stored earlier (a retry): acknowledged, not stored twice.
    pub duplicates: u64,
    /// Older than their type's retention on arrival: acknowledged, not stored (the next
    /// maintenance pass would drop them anyway).
    pub expired: u64,
    /// Records of the request that could not be mapped (OTLP partial success).
    pub rejected: u64,
    /// Why they were rejected, in English, for the client.
    pub rejection_message: Option<String>,
}

/// Why signals could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Refused by the pipeline, or its batch was not committed: nothing was stored.
    #[error("not stored")]
    Pipeline(#[from] SubmitError),
    /// The commit was not confirmed in time; the client should retry (a retry is idempotent,
    /// so a commit that did land is not stored twice).
    #[error("storage did not answer within {0:?}")]
    TimedOut(Duration),
}

impl IngestError {
    /// Whether the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            IngestError::Pipeline(error) => error.is_transient(),
            IngestError::TimedOut(_) => true,
        }
    }
}

/// What the client is told about an ingestion failure: the class, and which of the retryable
/// causes it was, so an operator reading a client's log knows whether to look at load, at the
/// database or at a deploy. Nothing internal is leaked.
pub fn client_message(error: &IngestError) -> &'static str {
    match error {
        IngestError::Pipeline(SubmitError::Saturated) => {
            "ingest queue full (the database is not keeping up), retry later"
        }
        IngestError::Pipeline(SubmitError::ShuttingDown) => "shutting down, retry later",
        IngestError::TimedOut(_) => "storage did not confirm in time (INGEST_TIMEOUT_MS), retry later",
        IngestError::Pipeline(SubmitError::Storage(cause)) if matches!(**cause, StoreError::DiskFull(_)) => {
            DISK_FULL_MESSAGE
        }
        error if error.is_transient() => "storage temporarily unavailable, retry later",
        IngestError::Pipeline(SubmitError::Storage(_)) => "internal error",
    }
}

/// What a client is told while the database's disk is full.
pub const DISK_FULL_MESSAGE: &str = "the database's disk is full, retry later";

/// The cause of a retryable ingest failure.
fn ingest_cause(error: &IngestError) -> Cause {
    match error {
        IngestError::Pipeline(SubmitError::Saturated) => Cause::ingest_queue_full,
        IngestError::Pipeline(SubmitError::ShuttingDown) => Cause::shutting_down,
        IngestError::Pipeline(SubmitError::Storage(cause)) => Cause::from(&**cause),
        IngestError::TimedOut(_) => Cause::database_slow,
    }
}

impl From<&IngestError> for Reject {
    fn from(error: &IngestError) -> Self {
        if error.is_transient() {
            Reject::RetryLater
        } else {
            Reject::Internal
        }
    }
}

/// Hands signals to the pipeline.
#[derive(Clone)]
pub struct Ingest {
    pipeline: Pipeline,
    timeout: Duration,
    lifecycle: Lifecycle,
    metrics: Arc<Metrics>,
}

impl Ingest {
    pub fn new(pipeline: Pipeline, timeout: Duration, lifecycle: Lifecycle, metrics: Arc<Metrics>) -> Ingest {
        Ingest { pipeline, timeout, lifecycle, metrics }
    }

    /// Stores `signals` all-or-nothing, with their incidents and analysis requests, and returns
    /// once they are committed. Signals whose id is already stored count as duplicates and
    /// change nothing. An empty list is a success. Redis is never touched here.
    /// Payloads arrive trimmed to `ATTRIBUTE_COUNT_LIMIT` and `VALUE_LENGTH_LIMIT`: the mappings
    /// apply the limits as they write them.
    pub async fn submit(
        &self,
        transport: Transport,
        signal_type: SignalType,
        signals: Vec<Signal>,
    ) -> Result<Accepted, IngestError> {
        let received = signals.len() as u64;
        let result = self.store(signals).await;
        // A retryable failure repeats for every request while its cause lasts: logged once per
        // episode (a permanent one is logged where it is answered).
        match &result {
            Ok(_) => self.metrics.episodes.recovered(Source::ingest),
            Err(error) if error.is_transient() => {
                self.metrics.episodes.failed(Source::ingest, ingest_cause(error), &error_chain(error))
            }
            Err(_) => {}
        }
        let count = match &result {
            Ok(accepted) => RequestCount {
                received,
                stored: accepted.stored,
                duplicates: accepted.duplicates,
                expired: accepted.expired,
                ..Default::default()
            },
            Err(error) if !error.is_transient() => {
                RequestCount { received, failed: received, ..Default::default() }
            }
            Err(_) => RequestCount { received, retryable: received, ..Default::default() },
        };
        self.metrics.count_request(signal_type, transport, count);
        result
    }

    async fn store(&self, mut signals: Vec<Signal>) -> Result<Accepted, IngestError> {
        let now = Utc::now();
        let before = signals.len();
        signals.retain(|s| !self.lifecycle.expired_on_arrival(s.signal_type, s.timestamp, now));
        let expired = (before - signals.len()) as u64;
        if signals.is_empty() {
            return Ok(Accepted { expired, ..Accepted::default() });
        }
        for signal in &mut signals {
            signal.timestamp = at_stored_precision(signal.timestamp);
        }
        let outcome = tokio::time::timeout(self.timeout, self.pipeline.submit(signals))
            .await
            .map_err(|_| IngestError::TimedOut(self.timeout))??;
        Ok(Accepted {
            stored: outcome.stored,
            duplicates: outcome.duplicates,
            expired,
            ..Accepted::default()
        })
    }

    /// Stores what an OTLP request mapped to, and carries its rejections into the answer.
    pub async fn submit_mapped(
        &self,
        transport: Transport,
        signal_type: SignalType,
        mapped: Mapped,
    ) -> Result<Accepted, IngestError> {
        let rejection_message = mapped.error_message();
        if let Some(message) = &rejection_message {
            // The client will not retry a partial success: this line is the only trace of it.
            warn!(transport = ?transport, rejected = mapped.rejected, reason = %message, "records rejected");
            let invalid =
                RequestCount { received: mapped.rejected, invalid: mapped.rejected, ..Default::default() };
            self.metrics.count_request(signal_type, transport, invalid);
        }
        let rejected = mapped.rejected;
        let accepted = self.submit(transport, signal_type, mapped.signals).await?;
        // Records past their retention are not stored: the sender is told, as a partial
        // success (it must not retry them), rather than by an empty success.
        let expired = (accepted.expired > 0).then(|| self.expired_message(signal_type, accepted.expired));
        let rejection_message = match (rejection_message, expired) {
            (Some(invalid), Some(expired)) => Some(format!("{invalid}; {expired}")),
            (invalid, expired) => invalid.or(expired),
        };
        Ok(Accepted { rejected: rejected + accepted.expired, rejection_message, ..accepted })
    }

    fn expired_message(&self, signal_type: SignalType, count: u64) -> String {
        let setting = match signal_type {
            SignalType::Trace => "RETENTION_TRACES",
            SignalType::Log => "RETENTION_LOGS",
            SignalType::Metric => "RETENTION_METRICS",
        };
        let keep =
            self.lifecycle.signals.of(signal_type).map_or_else(|| "forever".to_owned(), short_duration);
        format!("{count} older than {setting} ({keep}) on arrival: acknowledged, not stored")
    }
}

/// `7d`, `36h`, `90m`, `45s`: the largest whole unit.
fn short_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s > 0 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s > 0 && s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        s if s > 0 && s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_or_slow_storage_is_retryable() {
        let unreachable: Box<dyn std::error::Error + Send + Sync> = "connection refused".into();
        let down = IngestError::from(SubmitError::Storage(Arc::new(StoreError::Unavailable(unreachable))));
        assert_eq!(Reject::from(&down), Reject::RetryLater);
        assert_eq!(client_message(&down), "storage temporarily unavailable, retry later");
        let full = IngestError::from(SubmitError::Saturated);
        assert_eq!(Reject::from(&full), Reject::RetryLater);
        let slow = IngestError::TimedOut(std::time::Duration::from_secs(3));
        assert_eq!(Reject::from(&slow), Reject::RetryLater);
        assert_eq!(ingest_cause(&slow), Cause::database_slow);
        assert_eq!(ingest_cause(&full), Cause::ingest_queue_full);
        assert_eq!(ingest_cause(&down), Cause::database_unreachable);
    }

    #[test]
    fn retentions_are_named_as_they_are_set() {
        assert_eq!(short_duration(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(short_duration(Duration::from_secs(36 * 3_600)), "36h");
        assert_eq!(short_duration(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(short_duration(Duration::from_secs(61)), "61s");
    }

    #[test]
    fn the_chain_keeps_every_cause() {
        let unreachable: Box<dyn std::error::Error + Send + Sync> = "connection refused".into();
        let down = IngestError::from(SubmitError::Storage(Arc::new(StoreError::Unavailable(unreachable))));
        assert_eq!(
            error_chain(&down),
            "not stored: batch not committed: database unavailable: connection refused"
        );
    }
}
