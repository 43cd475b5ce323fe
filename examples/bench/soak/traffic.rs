//! The soak's load: every 100 ms a tenth of the rate, spread over every transport (OTLP/gRPC
//! spans, OTLP/HTTP protobuf logs, OTLP/HTTP JSON metric points, legacy JSON logs), with a
//! share of traces that fail; probes that check evidence outlives its retention and noise does
//! not; and the dashboard's polls.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::sample::{lock, Shared};
use crate::workload::{kv, legacy_log, logs, now_nanos};
use crate::BoxError;

/// One trace in this many carries a failed span (an incident that asks for an analysis).
const FAILING_TRACE_EVERY: u64 = 50;
/// One legacy log in this many is an ERROR.
const ERROR_LOG_EVERY: u64 = 100;
/// Requests in flight at most; beyond, the pacing waits (and the rate shows it).
const IN_FLIGHT: usize = 32;
/// Between two rounds of the dashboard's polls: about four dashboards open. Every 2 s (the
/// runs up to a7d391d) a quarter held ~450 samples per query, so its p99 was the 5th-worst
/// answer and one coincidence with a maintenance pass moved the quarter's ratio by 30 % while
/// the medians moved by 7 %; 1,800 make it the 18th.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Between two probes of evidence and noise.
const PROBE_EVERY: Duration = Duration::from_secs(30);

pub struct Endpoints {
    pub api: SocketAddr,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

/// The share of each tick per transport: spans, OTLP logs, points, legacy logs.
const SHARES: [u32; 4] = [40, 25, 20, 15];

/// `count` spans in traces of 8; trace `n` (counted across calls) fails when `n` is a multiple
/// of [`FAILING_TRACE_EVERY`]. Returns the export and the id of its last trace.
fn spans(service: &str, count: usize, traces: &mut u64) -> (ExportTraceServiceRequest, String) {
    let start = now_nanos();
    let mut trace_id = Vec::new();
    let mut failing = false;
    let spans = (0..count)
        .map(|i| {
            if i % 8 == 0 {
                trace_id = Uuid::new_v4().as_bytes().to_vec();
                *traces += 1;
                failing = (*traces).is_multiple_of(FAILING_TRACE_EVERY);
            }
            let code = if failing && i % 8 == 7 { 2 } else { 1 };
            Span {
                trace_id: trace_id.clone(),
                span_id: Uuid::new_v4().as_bytes()[..8].to_vec(),
                name: "GET /api/v1/orders/{id}".into(),
                kind: 2,
                start_time_unix_nano: start + i as u64 * 1000,
                end_time_unix_nano: start + i as u64 * 1000 + 12_345_678,
                attributes: vec![kv("http.request.method", "GET"), kv("http.route", "/api/v1/orders/{id}")],
                status: Some(Status {
                    code,
                    message: if code == 2 { "upstream timed out".into() } else { String::new() },
                }),
                ..Default::default()
            }
        })
        .collect();
    let last = trace_id.iter().map(|b| format!("{b:02x}")).collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            schema_url: String::new(),
        }],
    };
    (request, last)
}

/// `count` gauge points as OTLP/JSON.
fn points(service: &str, count: usize) -> Vec<u8> {
    let now = now_nanos();
    let points: Vec<Value> = (0..count)
        .map(|i| {
            json!({"timeUnixNano": (now + i as u64).to_string(), "asInt": (i % 40).to_string(),
                   "attributes": [{"key": "queue", "value": {"stringValue": format!("q{}", i % 4)}}]})
        })
        .collect();
    let body = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeMetrics": [{"scope": {"name": "soak"}, "metrics": [
            {"name": "queue.depth", "unit": "1", "gauge": {"dataPoints": points}}]}]}]});
    serde_json::to_vec(&body).unwrap_or_default()
}

/// An HTTP answer or its absence, counted.
fn count_answer(window: &Shared, answer: Result<reqwest::StatusCode, reqwest::Error>, signals: u64) {
    let mut w = lock(window);
    match answer {
        Ok(status) if status.is_success() => w.acked += signals,
        Ok(status) => {
            w.refused += 1;
            if status.is_server_error() {
                w.server_errors += 1;
            }
        }
        Err(_) => w.transport_errors += 1,
    }
}

/// The load, until `stop`. `recent` holds the id of a trace sent a moment ago (for the polls).
pub async fn load(
    endpoints: Arc<Endpoints>,
    rate: u32,
    window: Shared,
    recent: Arc<Mutex<String>>,
    stop: CancellationToken,
) -> Result<(), BoxError> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(IN_FLIGHT).build()?;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", endpoints.grpc))?.connect().await?;
    let grpc = TraceServiceClient::new(channel);
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let per_tick = rate as f64 / 10.0;
    let sizes: Vec<usize> =
        SHARES.iter().map(|s| ((per_tick * *s as f64 / 100.0).round() as usize).max(1)).collect();
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut traces, mut legacy_logs) = (0u64, 0u64);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        for (kind, &size) in sizes.iter().enumerate() {
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let (window, http) = (window.clone(), http.clone());
            let service = format!("soak-svc-{}", kind + traces as usize % 5);
            match kind {
                0 => {
                    let (request, last) = spans(&service, size, &mut traces);
                    *recent.lock().unwrap_or_else(|p| p.into_inner()) = last;
                    let mut grpc = grpc.clone();
                    tokio::spawn(async move {
                        let answer = grpc.export(request).await;
                        let mut w = lock(&window);
                        match answer {
                            Ok(reply) => {
                                let rejected =
                                    reply.into_inner().partial_success.map_or(0, |p| p.rejected_spans);
                                w.acked += size as u64 - rejected as u64;
                            }
                            Err(status) => {
                                w.refused += 1;
                                if matches!(
                                    status.code(),
                                    tonic::Code::Unavailable | tonic::Code::Internal | tonic::Code::Unknown
                                ) {
                                    w.server_errors += 1;
                                }
                            }
                        }
                        drop(permit);
                    });
                }
                1 => {
                    let body = logs(&service, size).encode_to_vec();
                    let url = format!("http://{}/v1/logs", endpoints.http);
                    tokio::spawn(async move {
                        let answer = http
                            .post(url)
                            .header("content-type", "application/x-protobuf")
                            .body(body)
                            .send()
                            .await;
                        count_answer(&window, answer.map(|r| r.status()), size as u64);
                        drop(permit);
                    });
                }
                2 => {
                    let body = points(&service, size);
                    let url = format!("http://{}/v1/metrics", endpoints.http);
                    tokio::spawn(async move {
                        let answer =
                            http.post(url).header("content-type", "application/json").body(body).send().await;
                        count_answer(&window, answer.map(|r| r.status()), size as u64);
                        drop(permit);
                    });
                }
                _ => {
                    let bodies: Vec<Value> = (0..size)
                        .map(|_| {
                            legacy_logs += 1;
                            let level =
                                if legacy_logs.is_multiple_of(ERROR_LOG_EVERY) { "ERROR" } else { "INFO" };
                            legacy_log(&service, &Uuid::new_v4().simple().to_string(), level)
                        })
                        .collect();
                    let url = format!("http://{}/ingest/logs", endpoints.api);
                    tokio::spawn(async move {
                        let answer = http.post(url).json(&bodies).send().await;
                        count_answer(&window, answer.map(|r| r.status()), size as u64);
                        drop(permit);
                    });
                }
            }
        }
    }
    // What is in flight is awaited: every acknowledgement counted.
    let _ = permits.acquire_many(IN_FLIGHT as u32).await;
    Ok(())
}

/// The dashboard's polls, one round every [`POLL_EVERY`], each timed.
pub async fn polls(
    endpoints: Arc<Endpoints>,
    window: Shared,
    recent: Arc<Mutex<String>>,
    stop: CancellationToken,
) -> Result<(), BoxError> {
    let http = reqwest::Client::new();
    let base = format!("http://{}", endpoints.api);
    let mut rounds = tokio::time::interval(POLL_EVERY);
    // A round slower than the interval (a stall) is not followed by a burst of catch-up rounds.
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = rounds.tick() => {}
        }
        let trace = recent.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let queries: [(&'static str, String); 7] = [
            ("incidents", "/query/incidents?limit=50".to_owned()),
            ("incidents_high", "/query/incidents?severity=high&limit=50".to_owned()),
            ("problems", "/query/problems?limit=50".to_owned()),
            ("services", "/query/services".to_owned()),
            ("signals", "/query/signals?limit=100".to_owned()),
            ("trace", format!("/query/traces/{trace}")),
            ("trace_tree", format!("/query/traces/{trace}/tree")),
        ];
        for (name, path) in queries {
            let started = Instant::now();
            let answer = http.get(format!("{base}{path}")).send().await;
            let answer = match answer {
                Ok(response) => {
                    let status = response.status();
                    response.bytes().await.map(|_| status)
                }
                Err(why) => Err(why),
            };
            let micros = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
            let mut w = lock(&window);
            match answer {
                // A trace sent a moment ago may not be stored yet: 404 is an answer.
                Ok(status) if status.is_success() || status == reqwest::StatusCode::NOT_FOUND => {
                    w.polls.entry(name).or_default().push(micros);
                }
                Ok(status) => {
                    if status.is_server_error() {
                        w.server_errors += 1;
                    }
                }
                Err(_) => w.transport_errors += 1,
            }
        }
    }
}

/// A probe: an analysed trace (INFO, ERROR, INFO) and a healthy one (three INFO), sent at once.
struct Probe {
    sent: Instant,
    analysed: String,
    healthy: String,
}

/// Sends a probe every [`PROBE_EVERY`] and reads each once `check_after` old (past its logs'
/// retention, within its incident's): the analysed trace must be whole, the healthy one gone.
pub async fn probes(
    endpoints: Arc<Endpoints>,
    window: Shared,
    check_after: Duration,
    stop: CancellationToken,
) -> Result<(), BoxError> {
    let http = reqwest::Client::new();
    let base = format!("http://{}", endpoints.api);
    let mut pending: VecDeque<Probe> = VecDeque::new();
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    let mut n = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        n += 1;
        let probe = Probe {
            sent: Instant::now(),
            analysed: format!("soak-evidence-{n}-{}", Uuid::new_v4().simple()),
            healthy: format!("soak-healthy-{n}-{}", Uuid::new_v4().simple()),
        };
        let mut bodies = Vec::new();
        for level in ["INFO", "ERROR", "INFO"] {
            bodies.push(legacy_log("soak-probe", &probe.analysed, level));
        }
        for _ in 0..3 {
            bodies.push(legacy_log("soak-probe", &probe.healthy, "INFO"));
        }
        let answer = http.post(format!("{base}/ingest/logs")).json(&bodies).send().await;
        let accepted = answer.as_ref().is_ok_and(|r| r.status().is_success());
        count_answer(&window, answer.map(|r| r.status()), 6);
        if accepted {
            pending.push_back(probe);
        }
        while pending.front().is_some_and(|p| p.sent.elapsed() >= check_after) {
            let Some(probe) = pending.pop_front() else { break };
            let count = |trace: String| {
                let http = http.clone();
                let url = format!("{base}/query/traces/{trace}");
                async move {
                    let response = http.get(url).send().await.ok()?;
                    if response.status() == reqwest::StatusCode::NOT_FOUND {
                        return Some(0);
                    }
                    let body: Value = response.json().await.ok()?;
                    body.as_array().map(Vec::len)
                }
            };
            let (analysed, healthy) = (count(probe.analysed).await, count(probe.healthy).await);
            let mut w = lock(&window);
            match analysed {
                Some(3) => w.evidence_whole += 1,
                _ => w.evidence_incomplete += 1,
            }
            match healthy {
                Some(0) => w.noise_gone += 1,
                _ => w.noise_left += 1,
            }
        }
    }
}
