//! The pipeline's settings, read by the batcher and the writers.

use std::time::Duration;

/// Sizes and timings of the pipeline (all settings, see `Config`).
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Writer tasks, each writing one batch at a time (`INGEST_WRITERS`).
    pub writers: usize,
    /// A batch closes at this many signals (`INGEST_BATCH_MAX_SIGNALS`).
    pub batch_max_signals: usize,
    /// …or this long after its first request arrived (`INGEST_BATCH_LINGER_MS`).
    pub linger: Duration,
    /// Signals that may wait in the queue (`INGEST_QUEUE_SIGNALS`).
    pub queue_signals: u32,
    /// How long a request waits for room before it is refused (`INGEST_ENQUEUE_WAIT_MS`).
    pub enqueue_wait: Duration,
    /// A request is refused when the signals ahead of it would take longer than this to write at
    /// the rate the database has been absorbing (a third of `INGEST_TIMEOUT_MS`).
    pub max_queue_delay: Duration,
}
