//! A writer: takes a batch from the queue, writes it in one transaction, answers each request.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, Mutex, Notify};
use tracing::warn;

use super::job::{Job, JobOutcome, SubmitError};
use super::rate::{batch_cap, DrainRate};
use crate::config::PipelineSettings;
use crate::error::error_chain;
use crate::incidents::Triage;
use crate::model::{Signal, SignalKey};
use crate::store::{BatchOutcome, Store, StoreError};
use crate::telemetry::metrics::{AnalysisOutcome, CitusWrite, CitusWriteLabels, Metrics, SeverityLabels};

/// What one writer task works with.
pub(super) struct Writer {
    pub queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    pub store: Store,
    pub triage: Arc<Triage>,
    pub settings: Arc<PipelineSettings>,
    pub dispatcher: Arc<Notify>,
    pub rate: Arc<DrainRate>,
    pub metrics: Arc<Metrics>,
}

pub(super) async fn run_writer(writer: Writer) {
    loop {
        let cap = batch_cap(&writer.rate, writer.settings.batch_max_signals, writer.settings.max_queue_delay);
        let Some(jobs) = next_batch(&writer.queue, cap, writer.settings.linger).await else { return };
        write(&writer, jobs).await;
    }
}

/// Waits for a first job, then gathers more until the batch is full or the linger time is up.
/// Holding the queue lock while gathering lets the other writers write meanwhile.
async fn next_batch(
    queue: &Mutex<mpsc::UnboundedReceiver<Job>>,
    max_signals: usize,
    linger: std::time::Duration,
) -> Option<Vec<Job>> {
    let mut queue = queue.lock().await;
    let first = queue.recv().await?;
    let mut size = first.signals.len();
    let mut jobs = vec![first];
    let deadline = tokio::time::Instant::now() + linger;
    while size < max_signals {
        let next = match queue.try_recv() {
            Ok(job) => job,
            Err(_) => match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) | Err(_) => break,
            },
        };
        size += next.signals.len();
        jobs.push(next);
    }
    Some(jobs)
}

async fn write(writer: &Writer, mut jobs: Vec<Job>) {
    let (store, triage, dispatcher) = (&writer.store, &*writer.triage, &*writer.dispatcher);
    let lengths: Vec<usize> = jobs.iter().map(|j| j.signals.len()).collect();
    let signals: Vec<Signal> = jobs.iter_mut().flat_map(|j| std::mem::take(&mut j.signals)).collect();
    let started = std::time::Instant::now();
    match store.write_batch(&signals, triage).await {
        Ok(outcome) => {
            writer.rate.record(signals.len(), started.elapsed());
            record(&writer.metrics, signals.len(), started.elapsed(), &outcome);
            answer(jobs, &signals, &lengths, &outcome, dispatcher)
        }
        Err(StoreError::Query(error)) if jobs.len() > 1 => {
            // A permanent failure: one request's data is to blame. Write each alone, so the others
            // are not refused with it forever.
            warn!(error = %error_chain(&error), requests = jobs.len(), "batch failed, writing its requests one by one");
            writer.metrics.batch_splits.inc();
            let mut offset = 0;
            for (job, length) in jobs.into_iter().zip(lengths) {
                let own = &signals[offset..offset + length];
                offset += length;
                let started = std::time::Instant::now();
                let result = match store.write_batch(own, triage).await {
                    Ok(outcome) => {
                        record(&writer.metrics, own.len(), started.elapsed(), &outcome);
                        wake_if_needed(&outcome, dispatcher);
                        Ok(JobOutcome { stored: outcome.inserted, duplicates: outcome.duplicates })
                    }
                    Err(error) => Err(SubmitError::Storage(Arc::new(error))),
                };
                let _ = job.reply.send(result);
            }
        }
        Err(error) => {
            // Nothing of the batch was committed: every request gets the same failure.
            let cause = Arc::new(error);
            for job in jobs {
                let _ = job.reply.send(Err(SubmitError::Storage(cause.clone())));
            }
        }
    }
}

fn answer(
    jobs: Vec<Job>,
    signals: &[Signal],
    lengths: &[usize],
    outcome: &BatchOutcome,
    dispatcher: &Notify,
) {
    wake_if_needed(outcome, dispatcher);
    // The first occurrence of a new key in the batch is the one stored.
    let mut new_keys: HashSet<SignalKey> = outcome.inserted_keys.iter().copied().collect();
    let mut offset = 0;
    for (job, length) in jobs.into_iter().zip(lengths) {
        let own = &signals[offset..offset + length];
        offset += length;
        let stored = own.iter().filter(|s| new_keys.remove(&s.key())).count() as u64;
        let _ = job.reply.send(Ok(JobOutcome { stored, duplicates: *length as u64 - stored }));
    }
}

/// Batch size and write time, incidents opened and escalated, analyses queued.
fn record(metrics: &Metrics, signals: usize, took: std::time::Duration, outcome: &BatchOutcome) {
    metrics.batch_signals.observe(signals as f64);
    metrics.batch_write_duration.observe(took.as_secs_f64());
    for severity in &outcome.opened_severities {
        metrics.incidents_opened.get_or_create(&SeverityLabels { severity: (*severity).into() }).inc();
    }
    for severity in &outcome.escalated_severities {
        metrics.incidents_escalated.get_or_create(&SeverityLabels { severity: (*severity).into() }).inc();
    }
    metrics.count_analysis(AnalysisOutcome::queued, outcome.analyses_requested);
    if let Some(at_nodes) = outcome.at_nodes {
        let written = if at_nodes { CitusWrite::at_nodes } else { CitusWrite::through_coordinator };
        metrics.citus_batches.get_or_create(&CitusWriteLabels { written }).inc();
    }
}

fn wake_if_needed(outcome: &BatchOutcome, dispatcher: &Notify) {
    if outcome.analyses_requested > 0 {
        dispatcher.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::{oneshot, Semaphore};

    use super::*;
    use crate::model::payload::{Facts, Payload};
    use crate::model::SignalType;

    fn job(signals: usize, room: &Arc<Semaphore>) -> Job {
        let signal = Signal {
            signal_id: uuid::Uuid::new_v4(),
            signal_type: SignalType::Log,
            trace_id: "t".into(),
            service_name: "s".into(),
            timestamp: chrono::Utc::now(),
            payload: Payload::from_encoded("{}".into()),
            facts: Facts::default(),
            shared: None,
            time_unknown: false,
        };
        let (reply, _answer) = oneshot::channel();
        let permit = room.clone().try_acquire_owned().expect("room for the test's jobs");
        Job { signals: vec![signal; signals], reply, _room: permit }
    }

    fn sizes(jobs: &[Job]) -> Vec<usize> {
        jobs.iter().map(|j| j.signals.len()).collect()
    }

    // Paused time: the linger is measured on Tokio's clock, which only moves when every task
    // waits, so these run in microseconds and cannot be thrown off by a loaded machine.
    #[tokio::test(start_paused = true)]
    async fn a_batch_gathers_what_arrives_within_the_linger_and_no_more() {
        let room = Arc::new(Semaphore::new(100));
        let (jobs, queue) = mpsc::unbounded_channel();
        let queue = Mutex::new(queue);
        let linger = Duration::from_millis(400);
        jobs.send(job(1, &room)).unwrap();
        let late = {
            let (jobs, room) = (jobs.clone(), room.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(399)).await;
                jobs.send(job(2, &room)).unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
                jobs.send(job(3, &room)).unwrap();
            })
        };
        let started = tokio::time::Instant::now();
        let batch = next_batch(&queue, 100, linger).await.expect("a batch");
        assert_eq!(sizes(&batch), [1, 2], "the job 1 ms after the linger waits for the next batch");
        assert_eq!(started.elapsed(), linger, "closed when the linger ran out");
        late.await.unwrap();
        let next = next_batch(&queue, 100, linger).await.expect("the next batch");
        assert_eq!(sizes(&next), [3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_closes_at_once_without_waiting_for_the_linger() {
        let room = Arc::new(Semaphore::new(100));
        let (jobs, queue) = mpsc::unbounded_channel();
        let queue = Mutex::new(queue);
        for size in [3, 3, 3] {
            jobs.send(job(size, &room)).unwrap();
        }
        let started = tokio::time::Instant::now();
        let batch = next_batch(&queue, 5, Duration::from_secs(60)).await.expect("a batch");
        assert_eq!(sizes(&batch), [3, 3], "closed once it reached five signals");
        assert_eq!(started.elapsed(), Duration::ZERO);
        drop(jobs);
        assert_eq!(sizes(&next_batch(&queue, 5, Duration::from_secs(60)).await.unwrap()), [3]);
        assert!(next_batch(&queue, 5, Duration::from_secs(60)).await.is_none(), "no more requests: stop");
    }
}
