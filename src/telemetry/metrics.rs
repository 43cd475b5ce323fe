//! Every metric of ours, declared here, exposed at `GET /metrics` (OpenMetrics text, which
//! Prometheus scrapes). Names follow `prodsentinel_<component>_<thing>`, counters end in
//! `_total` (added by the encoder). One instance per running app, so tests can count exactly.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::model::{IncidentSeverity, SignalType};

/// How signals arrived.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as operators write them in queries
pub enum Transport {
    otlp_grpc,
    otlp_http,
    legacy,
}

/// Why signals were not stored.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RejectReason {
    /// Decoded but invalid records (OTLP partial success): never retried.
    invalid,
    /// Refused with a retryable answer: queue full, storage slow or down, shutting down.
    retryable,
    /// A permanent storage failure (500).
    failed,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum SignalLabel {
    log,
    trace,
    metric,
}

impl From<SignalType> for SignalLabel {
    fn from(t: SignalType) -> Self {
        match t {
            SignalType::Log => SignalLabel::log,
            SignalType::Trace => SignalLabel::trace,
            SignalType::Metric => SignalLabel::metric,
        }
    }
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum SeverityLabel {
    low,
    medium,
    high,
    critical,
}

impl From<IncidentSeverity> for SeverityLabel {
    fn from(s: IncidentSeverity) -> Self {
        match s {
            IncidentSeverity::Low => SeverityLabel::low,
            IncidentSeverity::Medium => SeverityLabel::medium,
            IncidentSeverity::High => SeverityLabel::high,
            IncidentSeverity::Critical => SeverityLabel::critical,
        }
    }
}

/// What became of an analysis request.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AnalysisOutcome {
    /// Written to the outbox with the signals that caused it.
    queued,
    /// Pushed to the Celery queue.
    dispatched,
    /// Not pushed: an analysis of the trace was already queued (Redis lock held).
    deduplicated,
    /// Put back in the outbox because Redis was unreachable.
    retried,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabels {
    pub signal: SignalLabel,
    pub transport: Transport,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub signal: SignalLabel,
    pub transport: Transport,
    pub reason: RejectReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template (`/query/incidents/{incident_id}`) or the gRPC method.
    pub endpoint: String,
    pub method: String,
    /// HTTP status, or the gRPC code name.
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    pub severity: SeverityLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: AnalysisOutcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// `in_use` or `idle`.
    pub state: &'static str,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    pub signals_received: Family<SignalLabels, Counter>,
    pub signals_stored: Family<SignalLabels, Counter>,
    pub signals_duplicate: Family<SignalLabels, Counter>,
    pub signals_rejected: Family<RejectLabels, Counter>,
    pub request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub batch_signals: Histogram,
    pub batch_write_duration: Histogram,
    pub queue_signals: Gauge,
    pub pool_connections: Family<PoolLabels, Gauge>,
    pub pool_max: Gauge,
    pub incidents_opened: Family<SeverityLabels, Counter>,
    pub incidents_escalated: Family<SeverityLabels, Counter>,
    pub analysis_requests: Family<OutcomeLabels, Counter>,
    pub outbox_backlog: Gauge,
    pub outbox_oldest_age: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            signals_received: Family::default(),
            signals_stored: Family::default(),
            signals_duplicate: Family::default(),
            signals_rejected: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            batch_signals: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            batch_write_duration: latency_histogram(),
            queue_signals: Gauge::default(),
            pool_connections: Family::default(),
            pool_max: Gauge::default(),
            incidents_opened: Family::default(),
            incidents_escalated: Family::default(),
            analysis_requests: Family::default(),
            outbox_backlog: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            registry: Registry::default(),
        };
        let m = &metrics;
        registry.register(
            "prodsentinel_ingest_signals_received",
            "Signals received in requests that decoded, by signal type and transport",
            m.signals_received.clone(),
        );
        registry.register(
            "prodsentinel_ingest_signals_stored",
            "Signals newly stored (committed)",
            m.signals_stored.clone(),
        );
        registry.register(
            "prodsentinel_ingest_signals_duplicate",
            "Signals acknowledged that were already stored (retries)",
            m.signals_duplicate.clone(),
        );
        registry.register(
            "prodsentinel_ingest_signals_rejected",
            "Signals not stored: invalid records, retryable refusals, storage failures",
            m.signals_rejected.clone(),
        );
        registry.register(
            "prodsentinel_request_duration_seconds",
            "Request latency per endpoint (HTTP route template or gRPC method)",
            m.request_duration.clone(),
        );
        registry.register(
            "prodsentinel_pipeline_batch_signals",
            "Signals per batch written in one transaction",
            m.batch_signals.clone(),
        );
        registry.register(
            "prodsentinel_pipeline_batch_write_duration_seconds",
            "Time to write and commit one batch",
            m.batch_write_duration.clone(),
        );
        registry.register(
            "prodsentinel_pipeline_queue_signals",
            "Signals accepted and not yet answered (queued or being written)",
            m.queue_signals.clone(),
        );
        registry.register(
            "prodsentinel_db_pool_connections",
            "PostgreSQL pool connections by state",
            m.pool_connections.clone(),
        );
        registry.register(
            "prodsentinel_db_pool_max_connections",
            "PostgreSQL pool size limit (DATABASE_POOL_SIZE)",
            m.pool_max.clone(),
        );
        registry.register(
            "prodsentinel_incidents_opened",
            "Incidents created, by their severity when created",
            m.incidents_opened.clone(),
        );
        registry.register(
            "prodsentinel_incidents_escalated",
            "Incidents whose severity was raised, by the new severity",
            m.incidents_escalated.clone(),
        );
        registry.register(
            "prodsentinel_analysis_requests",
            "Analysis requests by outcome: queued (outbox), dispatched (Celery), deduplicated, retried",
            m.analysis_requests.clone(),
        );
        registry.register(
            "prodsentinel_outbox_backlog",
            "Analysis requests waiting in the outbox",
            m.outbox_backlog.clone(),
        );
        registry.register(
            "prodsentinel_outbox_oldest_age_seconds",
            "Age of the oldest analysis request waiting in the outbox (0 when none)",
            m.outbox_oldest_age.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts one request's signals: received, then stored and duplicate, or rejected.
    pub fn count_request(&self, signal: SignalType, transport: Transport, outcome: RequestCount) {
        let labels = SignalLabels { signal: signal.into(), transport };
        let reject = |reason, n: u64| {
            if n > 0 {
                let labels = RejectLabels { signal: signal.into(), transport, reason };
                self.signals_rejected.get_or_create(&labels).inc_by(n);
            }
        };
        self.signals_received.get_or_create(&labels).inc_by(outcome.received);
        self.signals_stored.get_or_create(&labels).inc_by(outcome.stored);
        self.signals_duplicate.get_or_create(&labels).inc_by(outcome.duplicates);
        reject(RejectReason::invalid, outcome.invalid);
        reject(RejectReason::retryable, outcome.retryable);
        reject(RejectReason::failed, outcome.failed);
    }

    pub fn observe_request(&self, endpoint: &str, method: &str, status: &str, seconds: f64) {
        let labels = RequestLabels {
            endpoint: endpoint.to_owned(),
            method: method.to_owned(),
            status: status.to_owned(),
        };
        self.request_duration.get_or_create(&labels).observe(seconds);
    }

    pub fn count_analysis(&self, outcome: AnalysisOutcome, n: u64) {
        if n > 0 {
            self.analysis_requests.get_or_create(&OutcomeLabels { outcome }).inc_by(n);
        }
    }
}

/// One request's signals by fate.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestCount {
    pub received: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub retryable: u64,
    pub failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exposed_with_their_labels_and_total_suffix() {
        let metrics = Metrics::new();
        let count = RequestCount { received: 5, stored: 3, duplicates: 1, invalid: 1, ..Default::default() };
        metrics.count_request(SignalType::Trace, Transport::otlp_grpc, count);
        metrics.observe_request("/query/signals", "GET", "200", 0.004);
        let text = metrics.encode();
        for line in [
            r#"prodsentinel_ingest_signals_received_total{signal="trace",transport="otlp_grpc"} 5"#,
            r#"prodsentinel_ingest_signals_stored_total{signal="trace",transport="otlp_grpc"} 3"#,
            r#"prodsentinel_ingest_signals_duplicate_total{signal="trace",transport="otlp_grpc"} 1"#,
            r#"prodsentinel_ingest_signals_rejected_total{signal="trace",transport="otlp_grpc",reason="invalid"} 1"#,
            r#"prodsentinel_request_duration_seconds_count{endpoint="/query/signals",method="GET",status="200"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
