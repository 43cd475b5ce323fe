//! The queue between requests and writers. Bounded in signals, not requests: a request waits
//! at most `enqueue_wait` for room and is otherwise refused (retryable), so memory stays
//! bounded under overload instead of growing with the backlog. Bounded in time too: a request
//! that would wait longer than `max_queue_delay` at the database's recent rate is refused at
//! once, rather than accepted and then timed out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex, Notify, Semaphore};
use tokio::task::JoinSet;

use super::rate::{too_slow, DrainRate};
use super::writer::{run_writer, BatchFailed, Job, JobOutcome, JobResult, Writer};
use crate::incidents::Triage;
use crate::model::Signal;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

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

/// Why the pipeline did not take a request; both are retryable for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("ingest queue full")]
    Saturated,
    #[error("shutting down")]
    ShuttingDown,
}

/// The request side of the pipeline; cheap to clone. When every clone is dropped, the writers
/// write what is queued and stop.
#[derive(Clone)]
pub struct Pipeline {
    jobs: mpsc::UnboundedSender<Job>,
    room: Arc<Semaphore>,
    settings: Arc<PipelineSettings>,
    rate: Arc<DrainRate>,
}

impl Pipeline {
    /// Starts the writers on `tasks`.
    pub fn start(
        store: Store,
        triage: Arc<Triage>,
        settings: PipelineSettings,
        dispatcher: Arc<Notify>,
        metrics: Arc<Metrics>,
        tasks: &mut JoinSet<()>,
    ) -> Pipeline {
        let (jobs, queue) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(queue));
        let settings = Arc::new(settings);
        let rate = Arc::new(DrainRate::default());
        for _ in 0..settings.writers.max(1) {
            tasks.spawn(run_writer(Writer {
                queue: queue.clone(),
                store: store.clone(),
                triage: triage.clone(),
                settings: settings.clone(),
                dispatcher: dispatcher.clone(),
                rate: rate.clone(),
                metrics: metrics.clone(),
            }));
        }
        let room = Arc::new(Semaphore::new(settings.queue_signals as usize));
        Pipeline { jobs, room, settings, rate }
    }

    /// A gauge of the signals accepted and not yet answered; it does not keep the writers alive.
    pub fn depth(&self) -> QueueDepth {
        QueueDepth { room: self.room.clone(), capacity: self.settings.queue_signals as usize }
    }

    /// Queues `signals` and waits for the commit of the batch that carries them.
    /// `Err(Ok(refused))` when there was no room; `Err(Err(failed))` when the batch failed.
    pub async fn submit(&self, signals: Vec<Signal>) -> Result<JobOutcome, Result<Refused, BatchFailed>> {
        let ahead = self.settings.queue_signals as usize - self.room.available_permits();
        let writers = self.settings.writers.max(1);
        if too_slow(&self.rate, writers, ahead, signals.len(), self.settings.max_queue_delay) {
            return Err(Ok(Refused::Saturated));
        }
        // A request larger than the whole queue takes all of it, so it still gets through alone.
        let wanted = (signals.len() as u32).clamp(1, self.settings.queue_signals);
        let permit = match tokio::time::timeout(
            self.settings.enqueue_wait,
            self.room.clone().acquire_many_owned(wanted),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(Ok(Refused::ShuttingDown)),
            Err(_elapsed) => return Err(Ok(Refused::Saturated)),
        };
        let (reply, answer) = oneshot::channel::<JobResult>();
        self.jobs.send(Job { signals, reply, _room: permit }).map_err(|_| Ok(Refused::ShuttingDown))?;
        match answer.await {
            Ok(result) => result.map_err(Err),
            Err(_writer_gone) => Err(Ok(Refused::ShuttingDown)),
        }
    }
}

/// Reads how full the queue is (for `/metrics`).
#[derive(Clone)]
pub struct QueueDepth {
    room: Arc<Semaphore>,
    capacity: usize,
}

impl QueueDepth {
    /// Signals accepted and not yet answered (queued or being written).
    pub fn signals(&self) -> usize {
        self.capacity.saturating_sub(self.room.available_permits())
    }
}
