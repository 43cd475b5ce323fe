//! The one door every receiver calls with mapped signals. It answers only once the signals are
//! committed, so an acknowledgement is a promise that survives a crash, and it answers within
//! `INGEST_TIMEOUT_MS`, so clients get a retryable answer rather than their own timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::warn;

use crate::incidents::Triage;
use crate::mapping::otlp::Mapped;
use crate::model::Signal;
use crate::store::{BatchOutcome, Store, StoreError};

/// What happened to an accepted request's signals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Newly stored.
    pub stored: u64,
    /// Already stored earlier (a retry): acknowledged, not stored twice.
    pub duplicates: u64,
    /// Records of the request that could not be mapped (OTLP partial success).
    pub rejected: u64,
    /// Why they were rejected, in English, for the client.
    pub rejection_message: Option<String>,
}

/// Why signals could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Storage is unreachable or overloaded; nothing was stored, the client should retry.
    #[error("storage unavailable, retry later")]
    Unavailable(#[source] StoreError),
    /// Storage did not confirm the commit in time; the client should retry (a retry is
    /// idempotent, so a commit that did land is not stored twice).
    #[error("storage did not answer within {0:?}")]
    TimedOut(Duration),
    /// Storage refused the write for a reason retrying will not fix.
    #[error("storage failed")]
    Failed(#[source] StoreError),
}

impl From<StoreError> for IngestError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => IngestError::Unavailable(error),
            StoreError::Query(_) => IngestError::Failed(error),
        }
    }
}

/// Hands signals to storage, with their incidents and analysis requests.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    triage: Arc<Triage>,
    timeout: Duration,
    /// Wakes the dispatcher when a batch requested analyses.
    dispatcher: Arc<Notify>,
}

impl Ingest {
    pub fn new(store: Store, triage: Arc<Triage>, timeout: Duration, dispatcher: Arc<Notify>) -> Ingest {
        Ingest { store, triage, timeout, dispatcher }
    }

    /// Stores `signals` all-or-nothing, with their incidents and analysis requests, and returns
    /// once they are committed. Signals whose id is already stored count as duplicates and
    /// change nothing. An empty list is a success. Redis is never touched here.
    pub async fn submit(&self, signals: Vec<Signal>) -> Result<Accepted, IngestError> {
        let write = self.store.write_batch(&signals, &self.triage);
        let outcome: BatchOutcome = tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| IngestError::TimedOut(self.timeout))??;
        if outcome.analyses_requested > 0 {
            self.dispatcher.notify_one();
        }
        Ok(Accepted { stored: outcome.inserted, duplicates: outcome.duplicates, ..Accepted::default() })
    }

    /// Stores what an OTLP request mapped to, and carries its rejections into the answer.
    pub async fn submit_mapped(
        &self,
        transport: &'static str,
        mapped: Mapped,
    ) -> Result<Accepted, IngestError> {
        let rejection_message = mapped.error_message();
        if let Some(message) = &rejection_message {
            // The client will not retry a partial success: this line is the only trace of it.
            warn!(transport, rejected = mapped.rejected, reason = %message, "records rejected");
        }
        let rejected = mapped.rejected;
        let accepted = self.submit(mapped.signals).await?;
        Ok(Accepted { rejected, rejection_message, ..accepted })
    }
}
