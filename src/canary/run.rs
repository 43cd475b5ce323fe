//! The canary's loop: every `--interval`, one write over every transport; after
//! `--read-delay`, its signals read back until found or `--max-wait`; its incident checked; one
//! earlier write spot-checked. Each check runs as its own task, so a slow read never delays the
//! next write; each ends within its deadline, so the tasks in flight stay few.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, Instant, MissedTickBehavior};
use tracing::warn;

use super::checks::{incident_failures, read_failures, spot_failures, Failure};
use super::client::{read_pause, Client, ReadFailed};
use super::compare::{judge, Finding, Judgement};
use super::expected::{expected_signals, Expected};
use super::metrics::{CanaryMetrics, Check, CheckLabels, WriteFailureLabels, WriteLabels};
use super::plan::{Health, Transport, Write};
use super::report::Tally;
use super::spot::{Due, Lifetimes, SpotChecks};
use crate::config::CanarySettings;
use crate::model::SignalType;

/// What every task of a run shares.
pub struct Canary {
    settings: CanarySettings,
    client: Client,
    metrics: Arc<CanaryMetrics>,
    pub tally: Mutex<Tally>,
    spots: Mutex<SpotChecks>,
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// `lock`, carrying on with the data of a task that panicked (counts are still counts).
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Canary {
    pub fn new(settings: CanarySettings, client: Client, metrics: Arc<CanaryMetrics>) -> Arc<Canary> {
        let lifetimes = Lifetimes {
            retention: settings.retention,
            partition_interval: settings.partition_interval,
            grace: settings.expiry_grace,
        };
        let spots = SpotChecks::new(settings.spot_check_max, settings.spot_check_interval, lifetimes);
        Arc::new(Canary { settings, client, metrics, tally: Mutex::default(), spots: Mutex::new(spots) })
    }

    /// The write time of a write made now (`--time-offset` before now).
    fn write_time(&self) -> u64 {
        now_nanos().saturating_sub(self.settings.time_offset.as_nanos() as u64)
    }

    /// Runs `cycles` cycles (`None`: until `stop` resolves), then waits for their checks.
    pub async fn run(self: &Arc<Canary>, stop: impl std::future::Future<Output = ()>) {
        let mut ticker = tokio::time::interval(self.settings.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut tasks = JoinSet::new();
        let mut cycle = 0u64;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = &mut stop => break,
            }
            cycle += 1;
            let health = match self.settings.error_every {
                Some(n) if cycle.is_multiple_of(n) => Health::Failing,
                _ => Health::Healthy,
            };
            let write =
                Write::plan(&self.settings.id, &self.settings.service_name, self.write_time(), health);
            tasks.spawn(self.clone().write_and_check(write));
            let due = locked(&self.spots).next(self.write_time());
            if let Some(due) = due {
                tasks.spawn(self.clone().spot_check(due));
            }
            while tasks.try_join_next().is_some() {}
            locked(&self.tally).cycles = cycle;
            if self.settings.cycles == Some(cycle) {
                break;
            }
        }
        // Every check ends by its deadline: this wait is bounded.
        while tasks.join_next().await.is_some() {}
    }

    fn record(&self, failures: Vec<Failure>, trace_id: &str) {
        for f in failures {
            self.metrics.failure(f.check, f.kind);
            let (check, kind) = (super::report::check_name(f.check), super::report::kind_name(f.kind));
            warn!(check, kind, signal = %f.signal, trace_id, detail = %f.detail, "canary check failed");
            let line = format!("{check}/{kind} {} in trace {trace_id}: {}", f.signal, f.detail);
            locked(&self.tally).failed(f.check, f.kind, line);
        }
    }

    fn checked(&self, check: Check, n: u64) {
        self.metrics.checks.get_or_create(&CheckLabels { check }).inc_by(n);
        locked(&self.tally).checked(check, n);
    }

    /// Sends every request of `write`, one after the other (a write is a dozen small requests);
    /// returns what was acknowledged, as expected signals.
    async fn send(&self, write: &Write) -> Vec<Expected> {
        let mut acknowledged: Vec<(Transport, SignalType)> = Vec::new();
        let mut outcomes = Vec::new();
        for exports in &write.otlp {
            for signal_type in SignalType::ALL {
                outcomes.push((
                    exports.transport,
                    signal_type,
                    self.client.export(exports, signal_type).await,
                ));
            }
        }
        for body in &write.legacy {
            outcomes.push((Transport::Legacy, body.signal_type, self.client.post_legacy(body).await));
        }
        for (transport, signal_type, outcome) in outcomes {
            match outcome {
                Ok(()) => acknowledged.push((transport, signal_type)),
                Err(refused) => {
                    let labels =
                        WriteFailureLabels { transport: transport.label(), code: refused.code.clone() };
                    self.metrics.write_failures.get_or_create(&labels).inc();
                    warn!(
                        transport = transport.label(), signal_type = signal_type.as_str(), code = %refused.code,
                        detail = %refused.detail, trace_id = %write.trace_id_hex(), "canary write not acknowledged"
                    );
                    let line = format!(
                        "write {}/{} refused ({}): {}",
                        transport.label(),
                        signal_type.as_str(),
                        refused.code,
                        refused.detail
                    );
                    locked(&self.tally).refused(transport.label(), line);
                }
            }
        }
        let expected: Vec<Expected> = expected_signals(write)
            .into_iter()
            .filter(|e| acknowledged.contains(&(e.transport, e.signal_type)))
            .collect();
        for e in &expected {
            let labels = WriteLabels { transport: e.transport.label(), signal_type: e.signal_type.as_str() };
            self.metrics.writes.get_or_create(&labels).inc();
            locked(&self.tally).wrote(e.transport.label(), 1);
        }
        expected
    }

    async fn write_and_check(self: Arc<Canary>, write: Write) {
        let expected = self.send(&write).await;
        let acknowledged = Instant::now();
        let deadline = acknowledged + self.settings.read_delay + self.settings.max_wait;
        sleep_until(acknowledged + self.settings.read_delay).await;
        let trace_id = write.trace_id_hex();
        let (judgement, late, read_error) =
            self.read_until_found(&trace_id, &expected, acknowledged, deadline).await;
        self.checked(Check::read, expected.len() as u64);
        let failures = read_failures(
            &expected,
            judgement.as_ref(),
            &late,
            self.settings.max_wait,
            read_error.as_deref(),
        );
        let intact = failures.is_empty() && expected.len() == expected_signals(&write).len();
        self.record(failures, &trace_id);

        let incidents = self.read_incidents(&trace_id, write.health, deadline).await;
        self.checked(Check::incident, 1);
        match incidents {
            Ok(incidents) => self.record(incident_failures(write.health, &incidents), &trace_id),
            Err(ReadFailed(why)) => self.record(
                vec![Failure {
                    check: Check::incident,
                    kind: super::metrics::Kind::request_failed,
                    signal: "incident".into(),
                    detail: why,
                }],
                &trace_id,
            ),
        }
        // Only a write read back whole is worth reading again: a failure is reported once.
        if intact && write.health == Health::Healthy {
            let mut spots = locked(&self.spots);
            spots.offer(write.at);
            self.metrics.spot_samples.set(spots.samples() as i64);
        }
    }

    /// Reads the trace until every expected signal is found or `deadline`: the last judgement
    /// (`None` if no read was answered), which signals were found only after the first read,
    /// and the last read error.
    async fn read_until_found(
        &self,
        trace_id: &str,
        expected: &[Expected],
        acknowledged: Instant,
        deadline: Instant,
    ) -> (Option<Judgement>, Vec<bool>, Option<String>) {
        let mut found = vec![false; expected.len()];
        let mut late = vec![false; expected.len()];
        let (mut reads, mut last, mut error) = (0u32, None, None);
        let pause = read_pause(self.settings.max_wait);
        loop {
            match self.client.trace(trace_id).await {
                Ok(rows) => {
                    reads += 1;
                    let judgement = judge(expected, &rows);
                    for (i, finding) in judgement.findings.iter().enumerate() {
                        if *finding != Finding::Missing && !found[i] {
                            found[i] = true;
                            late[i] = reads > 1;
                            let delay = acknowledged.elapsed();
                            self.metrics.readable_seconds.observe(delay.as_secs_f64());
                            locked(&self.tally).readable_after(delay);
                        }
                    }
                    let complete = found.iter().all(|f| *f);
                    last = Some(judgement);
                    if complete {
                        break;
                    }
                }
                Err(ReadFailed(why)) => error = Some(why),
            }
            if Instant::now() + pause >= deadline {
                break;
            }
            sleep(pause).await;
        }
        (last, late, error)
    }

    /// The incidents of the trace; for a failing write, read again until one appears or
    /// `deadline` (a replica may lag).
    async fn read_incidents(
        &self,
        trace_id: &str,
        health: Health,
        deadline: Instant,
    ) -> Result<Vec<serde_json::Value>, ReadFailed> {
        let pause = read_pause(self.settings.max_wait);
        loop {
            let read = self.client.incidents(trace_id).await;
            let settled = match &read {
                Ok(items) => health == Health::Healthy || !items.is_empty(),
                Err(_) => false,
            };
            if settled || Instant::now() + pause >= deadline {
                return read;
            }
            sleep(pause).await;
        }
    }

    async fn spot_check(self: Arc<Canary>, due: Due) {
        let write = Write::plan(&self.settings.id, &self.settings.service_name, due.at, Health::Healthy);
        let expected = expected_signals(&write);
        let trace_id = write.trace_id_hex();
        let deadline = Instant::now() + self.settings.max_wait;
        let pause = read_pause(self.settings.max_wait);
        let read = loop {
            match self.client.trace(&trace_id).await {
                Ok(rows) => break Ok(rows),
                Err(why) if Instant::now() + pause >= deadline => break Err(why),
                Err(_) => sleep(pause).await,
            }
        };
        self.checked(Check::spot, expected.len() as u64);
        let age = Duration::from_nanos(self.write_time().saturating_sub(due.at));
        let lifetimes = locked(&self.spots).lifetimes();
        let failures = match read {
            Ok(rows) => spot_failures(&expected, &judge(&expected, &rows), age, &lifetimes),
            Err(ReadFailed(why)) => vec![Failure {
                check: Check::spot,
                kind: super::metrics::Kind::request_failed,
                signal: "trace".into(),
                detail: why,
            }],
        };
        self.record(failures, &trace_id);
        self.metrics.spot_samples.set(locked(&self.spots).samples() as i64);
    }
}
