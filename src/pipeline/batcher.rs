//! The queue between requests and writers. Bounded in signals, not requests: a request waits
//! at most `enqueue_wait` for room and is otherwise refused (retryable), so memory stays
//! bounded under overload instead of growing with the backlog. Bounded in time too: a request
//! that would wait longer than `max_queue_delay` at the database's recent rate is refused at
//! once, rather than accepted and then timed out.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex, Notify, Semaphore};
use tokio::task::JoinSet;

use super::job::{Job, JobOutcome, JobResult, SubmitError};
use super::rate::{too_slow, DrainRate};
use super::writer::{run_writer, Writer};
use crate::config::PipelineSettings;
use crate::incidents::Triage;
use crate::model::Signal;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

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
    pub async fn submit(&self, signals: Vec<Signal>) -> Result<JobOutcome, SubmitError> {
        let ahead = self.settings.queue_signals as usize - self.room.available_permits();
        let writers = self.settings.writers.max(1);
        if too_slow(&self.rate, writers, ahead, signals.len(), self.settings.max_queue_delay) {
            return Err(SubmitError::Saturated);
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
            Ok(Err(_closed)) => return Err(SubmitError::ShuttingDown),
            Err(_elapsed) => return Err(SubmitError::Saturated),
        };
        let (reply, answer) = oneshot::channel::<JobResult>();
        self.jobs.send(Job { signals, reply, _room: permit }).map_err(|_| SubmitError::ShuttingDown)?;
        match answer.await {
            Ok(result) => result,
            Err(_writer_gone) => Err(SubmitError::ShuttingDown),
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
