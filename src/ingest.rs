//! The one door every receiver calls with mapped signals. It answers only once the signals are
//! committed, so an acknowledgement is a promise that survives a crash.

use crate::model::Signal;
use crate::store::{InsertOutcome, Store, StoreError};

/// What happened to an accepted request's signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Newly stored.
    pub stored: u64,
    /// Already stored earlier (a retry): acknowledged, not stored twice.
    pub duplicates: u64,
}

/// Why signals could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Storage is unreachable or overloaded; nothing was stored, the client should retry.
    #[error("storage unavailable, retry later")]
    Unavailable(#[source] StoreError),
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

/// Hands signals to storage.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
}

impl Ingest {
    pub fn new(store: Store) -> Ingest {
        Ingest { store }
    }

    /// Stores `signals` all-or-nothing and returns once they are committed. Signals whose id is
    /// already stored count as duplicates and are not an error. An empty list is a success.
    pub async fn submit(&self, signals: Vec<Signal>) -> Result<Accepted, IngestError> {
        let InsertOutcome { inserted, duplicates } = self.store.insert_signals(&signals).await?;
        Ok(Accepted {
            stored: inserted,
            duplicates,
        })
    }
}
