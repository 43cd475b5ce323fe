//! What passes between a request and the writer that stores it: the batcher queues jobs, the
//! writers answer them. Both import this module; neither imports the other's types.

use std::sync::Arc;

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::model::Signal;
use crate::store::StoreError;

/// What one request's signals became, once committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobOutcome {
    pub stored: u64,
    /// Already stored, by an earlier request or earlier in the same batch.
    pub duplicates: u64,
}

/// Why a request's signals were not stored. Nothing of the request is stored in any case.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// No room in the queue, or the database too slow to drain it in time.
    #[error("ingest queue full")]
    Saturated,
    #[error("shutting down")]
    ShuttingDown,
    /// The batch carrying the request was not committed. Shared: every request of a batch
    /// gets the same cause.
    #[error("batch not committed")]
    Storage(#[source] Arc<StoreError>),
}

impl SubmitError {
    /// Whether the same request may succeed later (everything but a statement that failed).
    pub fn is_transient(&self) -> bool {
        match self {
            SubmitError::Saturated | SubmitError::ShuttingDown => true,
            SubmitError::Storage(cause) => cause.is_transient(),
        }
    }
}

pub(super) type JobResult = Result<JobOutcome, SubmitError>;

/// One request waiting for its batch.
pub(super) struct Job {
    pub signals: Vec<Signal>,
    pub reply: oneshot::Sender<JobResult>,
    /// Room in the queue, given back when the job is answered (dropped).
    pub _room: OwnedSemaphorePermit,
}
