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

/// What a dropped partition held: one signal type, or all of them (the table from before
/// partitioning).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum StoredLabel {
    log,
    trace,
    metric,
    mixed,
}

impl From<SignalType> for StoredLabel {
    fn from(t: SignalType) -> Self {
        match t {
            SignalType::Log => StoredLabel::log,
            SignalType::Trace => StoredLabel::trace,
            SignalType::Metric => StoredLabel::metric,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoredLabels {
    pub signal: StoredLabel,
}

/// Why a partition was dropped.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DropReasonLabel {
    /// Past its retention.
    age,
    /// Over RETENTION_MAX_DATABASE_SIZE.
    size,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub signal: StoredLabel,
    pub reason: DropReasonLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: &'static str,
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

/// How a batch reached a Citus cluster (store/citus/parts.rs).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CitusWrite {
    /// Its signals written at the nodes holding their shards.
    at_nodes,
    /// Through the coordinator: CITUS_WRITE_AT_WORKERS=off, or a batch the nodes could not take.
    through_coordinator,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CitusWriteLabels {
    pub written: CitusWrite,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// A Citus node, `host:port`.
    pub node: String,
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
    /// Batches that failed permanently and were written again request by request.
    pub batch_splits: Counter,
    pub queue_signals: Gauge,
    pub pool_connections: Family<PoolLabels, Gauge>,
    pub pool_max: Gauge,
    pub incidents_opened: Family<SeverityLabels, Counter>,
    pub incidents_escalated: Family<SeverityLabels, Counter>,
    pub analysis_requests: Family<OutcomeLabels, Counter>,
    pub outbox_backlog: Gauge,
    pub outbox_oldest_age: Gauge<f64, AtomicU64>,
    /// Only registered with QUERY_DATABASE_URL.
    pub replica_up: Gauge,
    pub replica_lag: Gauge<f64, AtomicU64>,
    pub signals_expired_on_arrival: Family<SignalLabels, Counter>,
    pub partitions_created: Counter,
    pub partitions_dropped: Family<DropLabels, Counter>,
    pub bytes_freed: Family<StoredLabels, Counter>,
    pub oldest_retained: Family<StoredLabels, Gauge<f64, AtomicU64>>,
    pub rows_expired: Family<TableLabels, Counter>,
    pub evidence_signals: Family<StoredLabels, Gauge>,
    pub evidence_bytes: Family<StoredLabels, Gauge>,
    pub database_size: Gauge,
    pub database_size_budget: Gauge,
    pub maintenance_errors: Counter,
    pub maintenance_passes: Counter,
    /// Only on Citus: the signals' shards each node holds.
    pub citus_signal_shards: Family<NodeLabels, Gauge>,
    /// Only on Citus: batches by how they were written.
    pub citus_batches: Family<CitusWriteLabels, Counter>,
    /// The nodes last set in `citus_signal_shards`, to remove those gone from the cluster.
    citus_nodes: std::sync::Mutex<Vec<NodeLabels>>,
    /// Repeated failures, logged once per episode.
    pub episodes: super::episodes::Episodes,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let episodes = super::episodes::Episodes::new(&mut registry);
        let metrics = Metrics {
            signals_received: Family::default(),
            signals_stored: Family::default(),
            signals_duplicate: Family::default(),
            signals_rejected: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            batch_signals: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            batch_write_duration: latency_histogram(),
            batch_splits: Counter::default(),
            queue_signals: Gauge::default(),
            pool_connections: Family::default(),
            pool_max: Gauge::default(),
            incidents_opened: Family::default(),
            incidents_escalated: Family::default(),
            analysis_requests: Family::default(),
            outbox_backlog: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            replica_up: Gauge::default(),
            replica_lag: Gauge::default(),
            signals_expired_on_arrival: Family::default(),
            partitions_created: Counter::default(),
            partitions_dropped: Family::default(),
            bytes_freed: Family::default(),
            oldest_retained: Family::default(),
            rows_expired: Family::default(),
            evidence_signals: Family::default(),
            evidence_bytes: Family::default(),
            database_size: Gauge::default(),
            database_size_budget: Gauge::default(),
            maintenance_errors: Counter::default(),
            maintenance_passes: Counter::default(),
            citus_signal_shards: Family::default(),
            citus_batches: Family::default(),
            citus_nodes: std::sync::Mutex::default(),
            episodes,
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
            "prodsentinel_pipeline_batch_splits",
            "Batches that failed permanently and were written again one request at a time, so \
             that only the request at fault is refused",
            m.batch_splits.clone(),
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
        registry.register(
            "prodsentinel_query_replica_up",
            "1 while queries read from the replica (QUERY_DATABASE_URL), 0 while they read from the primary",
            m.replica_up.clone(),
        );
        registry.register(
            "prodsentinel_query_replica_replay_lag_seconds",
            "How far the query replica's replay is behind what it received (0 when caught up)",
            m.replica_lag.clone(),
        );
        registry.register(
            "prodsentinel_ingest_signals_expired_on_arrival",
            "Signals acknowledged but not stored: already older than their type's retention",
            m.signals_expired_on_arrival.clone(),
        );
        registry.register(
            "prodsentinel_retention_partitions_created",
            "Time partitions of raw_signals created ahead of time",
            m.partitions_created.clone(),
        );
        registry.register(
            "prodsentinel_retention_partitions_dropped",
            "Partitions dropped, by the signal type they held and why: age (past their retention) or size (over RETENTION_MAX_DATABASE_SIZE)",
            m.partitions_dropped.clone(),
        );
        registry.register(
            "prodsentinel_retention_bytes_freed",
            "Disk bytes freed by dropping expired partitions",
            m.bytes_freed.clone(),
        );
        registry.register(
            "prodsentinel_retention_oldest_retained_timestamp_seconds",
            "Unix time of the oldest data still stored, per signal type",
            m.oldest_retained.clone(),
        );
        registry.register(
            "prodsentinel_retention_rows_expired",
            "Rows deleted by the lifecycle rules: incidents, analysis_results, problems, analysis_outbox",
            m.rows_expired.clone(),
        );
        registry.register(
            "prodsentinel_retention_evidence_signals",
            "Signals kept as evidence (of analysed incidents, of problems) after their partition expired",
            m.evidence_signals.clone(),
        );
        registry.register(
            "prodsentinel_retention_evidence_bytes",
            "Disk bytes of the evidence kept after its partition expired",
            m.evidence_bytes.clone(),
        );
        registry.register(
            "prodsentinel_database_size_bytes",
            "The database's size on disk (pg_database_size, WAL excluded), as last measured",
            m.database_size.clone(),
        );
        registry.register(
            "prodsentinel_database_size_budget_bytes",
            "RETENTION_MAX_DATABASE_SIZE (0: no budget)",
            m.database_size_budget.clone(),
        );
        registry.register(
            "prodsentinel_maintenance_errors",
            "Maintenance steps that failed (retried by the next pass)",
            m.maintenance_errors.clone(),
        );
        registry.register(
            "prodsentinel_citus_batches",
            "On Citus, batches written at the nodes holding their shards and batches written through the coordinator (CITUS_WRITE_AT_WORKERS=off, or a batch the nodes could not take: records without a time, a row in a sealed range, a shard moved, a node unreachable; the log says which)",
            m.citus_batches.clone(),
        );
        registry.register(
            "prodsentinel_citus_signal_shards",
            "On Citus, the signals' shards each node holds, read by every maintenance pass: a node holding fewer takes fewer of the writes (a worker added later holds none until shards are moved: README, Running on Citus)",
            m.citus_signal_shards.clone(),
        );
        registry.register(
            "prodsentinel_maintenance_passes",
            "Maintenance passes run (partitions, retention, expiry), failed steps included",
            m.maintenance_passes.clone(),
        );
        Metrics { registry, ..metrics }
    }

    pub fn count_dropped_partition(&self, dropped: &crate::store::partitions::Dropped) {
        let signal = match (dropped.signal_type, dropped.legacy) {
            (Some(signal_type), _) => signal_type.into(),
            (None, true) => StoredLabel::mixed,
            // An empty range partition: no signal left in it.
            (None, false) => return,
        };
        let reason = match dropped.reason {
            crate::store::partitions::DropReason::Age => DropReasonLabel::age,
            crate::store::partitions::DropReason::Size => DropReasonLabel::size,
        };
        self.partitions_dropped.get_or_create(&DropLabels { signal, reason }).inc();
        self.bytes_freed.get_or_create(&StoredLabels { signal }).inc_by(dropped.bytes.max(0) as u64);
    }

    /// Evidence kept in partitions whose noise expired: `(type or None for mixed, signals,
    /// bytes)`, as [`crate::store::Store::evidence_kept`] reads it.
    pub fn set_evidence(&self, kept: &[(Option<crate::model::SignalType>, i64, i64)]) {
        for (signal_type, signals, bytes) in kept {
            let labels = StoredLabels { signal: signal_type.map_or(StoredLabel::mixed, Into::into) };
            self.evidence_signals.get_or_create(&labels).set(*signals);
            self.evidence_bytes.get_or_create(&labels).set(*bytes);
        }
    }

    /// The signals' shards per Citus node, as [`crate::store::Store::signal_shards_by_node`]
    /// reads them; a node gone from the cluster is gone from the gauge. Each node's value is
    /// replaced in place: a scrape meanwhile never misses a node still there.
    pub fn set_citus_shards(&self, shards: &[(String, i64)]) {
        let now: Vec<NodeLabels> = shards.iter().map(|(node, _)| NodeLabels { node: node.clone() }).collect();
        for (labels, (_, count)) in now.iter().zip(shards) {
            self.citus_signal_shards.get_or_create(labels).set(*count);
        }
        // A poisoned lock only means a panic elsewhere while it was held: the list is whole.
        let mut last = self.citus_nodes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for gone in last.iter().filter(|labels| !now.contains(labels)) {
            self.citus_signal_shards.remove(gone);
        }
        *last = now;
    }

    pub fn count_expired_rows(&self, expiry: &crate::store::lifecycle::Expiry) {
        for (table, n) in [
            ("incidents", expiry.incidents),
            ("analysis_results", expiry.analyses),
            ("problems", expiry.problems),
            ("analysis_outbox", expiry.outbox_rows),
            ("signal_shared", expiry.shared),
            ("span_operations", expiry.span_operations),
            ("span_dependencies", expiry.dependencies),
        ] {
            if n > 0 {
                self.rows_expired.get_or_create(&TableLabels { table }).inc_by(n);
            }
        }
    }

    pub fn set_oldest_retained(&self, oldest: &[(SignalType, chrono::DateTime<chrono::Utc>)]) {
        for (signal_type, at) in oldest {
            let labels = StoredLabels { signal: (*signal_type).into() };
            self.oldest_retained.get_or_create(&labels).set(at.timestamp_millis() as f64 / 1000.0);
        }
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
        if outcome.expired > 0 {
            self.signals_expired_on_arrival.get_or_create(&labels).inc_by(outcome.expired);
        }
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
    /// Acknowledged, not stored: older than their type's retention already.
    pub expired: u64,
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

    #[test]
    fn the_shards_gauge_follows_the_nodes_and_forgets_one_removed() {
        let metrics = Metrics::new();
        let nodes = |counts: &[(&str, i64)]| -> Vec<(String, i64)> {
            counts.iter().map(|(node, n)| (node.to_string(), *n)).collect()
        };
        metrics.set_citus_shards(&nodes(&[("w1:5432", 8), ("w2:5432", 0)]));
        let text = metrics.encode();
        assert!(text.contains(r#"prodsentinel_citus_signal_shards{node="w2:5432"} 0"#), "{text}");
        metrics.set_citus_shards(&nodes(&[("w1:5432", 4), ("w3:5432", 4)]));
        let text = metrics.encode();
        for line in [
            r#"prodsentinel_citus_signal_shards{node="w1:5432"} 4"#,
            r#"prodsentinel_citus_signal_shards{node="w3:5432"} 4"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("w2:5432"), "the node removed is gone: {text}");
    }
}
