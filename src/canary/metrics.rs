//! The canary's own metrics, served on `--metrics-addr` in Prometheus' text format, and the
//! totals its report is made of. Every label takes a value from a fixed set, so the series
//! stay few however long it runs.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// What a check looked at.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as operators write them in queries
pub enum Check {
    /// Every signal of a write, read back by its trace.
    read,
    /// The incident of a write's trace.
    incident,
    /// An earlier write, read again (retention).
    spot,
}

/// How a check failed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Kind {
    /// Not readable within `--max-wait` (or an incident that never appeared).
    missing,
    /// Readable, but not at the first read.
    late,
    /// A field differs from what was written.
    incorrect,
    /// Stored more than once.
    duplicate,
    /// A row in the canary's trace that it never wrote.
    unexpected,
    /// Gone before the retention the canary was told.
    expired_early,
    /// Still there well after that retention and one partition interval.
    expired_late,
    /// No read answered within `--max-wait`.
    request_failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub transport: &'static str,
    pub signal_type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteFailureLabels {
    pub transport: &'static str,
    /// A gRPC status name, an HTTP status, `partial_success`, `timeout` or `connect`.
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub check: Check,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckFailureLabels {
    pub check: Check,
    pub kind: Kind,
}

/// Every metric of the canary. Cheap to share.
pub struct CanaryMetrics {
    registry: Registry,
    pub writes: Family<WriteLabels, Counter>,
    pub write_failures: Family<WriteFailureLabels, Counter>,
    pub checks: Family<CheckLabels, Counter>,
    pub check_failures: Family<CheckFailureLabels, Counter>,
    pub readable_seconds: Histogram,
    pub spot_samples: Gauge,
}

impl CanaryMetrics {
    pub fn new() -> Arc<CanaryMetrics> {
        let mut registry = Registry::with_prefix("prodsentinel_canary");
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "writes",
            "Signals written and acknowledged, by transport and signal type",
            writes.clone(),
        );
        let write_failures = Family::<WriteFailureLabels, Counter>::default();
        registry.register(
            "write_failures",
            "Requests not acknowledged (their signals are not expected), by transport and answer",
            write_failures.clone(),
        );
        let checks = Family::<CheckLabels, Counter>::default();
        registry.register("checks", "Signals (or incidents) checked", checks.clone());
        let check_failures = Family::<CheckFailureLabels, Counter>::default();
        registry.register("check_failures", "Checks that failed, by check and kind", check_failures.clone());
        let readable_seconds = Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]);
        registry.register(
            "readable_delay_seconds",
            "From a write's acknowledgement to the read that found its signal",
            readable_seconds.clone(),
        );
        let spot_samples = Gauge::default();
        registry.register("spot_check_samples", "Earlier writes kept for spot checks", spot_samples.clone());
        Arc::new(CanaryMetrics {
            registry,
            writes,
            write_failures,
            checks,
            check_failures,
            readable_seconds,
            spot_samples,
        })
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    pub fn failure(&self, check: Check, kind: Kind) {
        self.check_failures.get_or_create(&CheckFailureLabels { check, kind }).inc();
    }
}

/// Serves `GET /metrics` on `addr` until `stop`; returns the address bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<CanaryMetrics>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    use axum::http::header;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let router = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                ([(header::CONTENT_TYPE, content_type)], metrics.encode())
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
    });
    Ok(bound)
}
