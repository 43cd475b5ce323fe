//! A steady mixed load, as real exporters make it: OTLP/gRPC traces, OTLP/HTTP protobuf logs
//! and legacy JSON logs from concurrent clients. Each request carries its own trace id, so what
//! the database holds can be checked request by request. A client retries a request, unchanged,
//! until it is acknowledged (as the OTLP exporters do), and records every acknowledgement.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

/// Which door a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Grpc,
    OtlpHttp,
    Legacy,
}

/// Signals per legacy request (OTLP requests carry `otlp_batch`, see [`Load::start`]).
const LEGACY_BATCH: usize = 5;

/// Where the server listens (`host:port` each).
#[derive(Debug, Clone)]
pub struct Targets {
    pub api: String,
    pub grpc: String,
    pub http: String,
}

impl From<&crate::process::ServerProcess> for Targets {
    fn from(server: &crate::process::ServerProcess) -> Targets {
        Targets { api: server.api.clone(), grpc: server.grpc.clone(), http: server.http.clone() }
    }
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Every request made: trace id -> signals it carried.
    pub sent: HashMap<String, i64>,
    /// Trace ids of the requests acknowledged (2xx, or gRPC OK, with nothing rejected).
    pub acked: HashSet<String>,
    /// Retryable refusals: 503 or 429 with `Retry-After`, gRPC UNAVAILABLE or RESOURCE_EXHAUSTED.
    pub retryable: u64,
    /// Of those, the ones answered because storage did not confirm in time (the request had
    /// been accepted into the queue).
    pub timed_out: u64,
    /// Retryable refusals by what the server said.
    pub refusals: HashMap<String, u64>,
    /// Requests that got no answer (connection refused or reset, timeout).
    pub transport_errors: u64,
    /// Anything else: a client would drop the data. Each entry says what was answered.
    pub unexpected: Vec<String>,
    /// Requests still unacknowledged when the clients had to stop.
    pub unfinished: Vec<String>,
    /// Acknowledged requests by kind.
    pub acked_by_kind: HashMap<String, u64>,
}

impl Report {
    pub fn merge(&mut self, other: Report) {
        self.sent.extend(other.sent);
        self.acked.extend(other.acked);
        self.retryable += other.retryable;
        self.timed_out += other.timed_out;
        for (said, n) in other.refusals {
            *self.refusals.entry(said).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.unexpected.extend(other.unexpected);
        self.unfinished.extend(other.unfinished);
        for (kind, n) in other.acked_by_kind {
            *self.acked_by_kind.entry(kind).or_default() += n;
        }
    }

    pub fn acked_signals(&self) -> i64 {
        self.acked.iter().map(|t| self.sent[t]).sum()
    }

    /// What the clients saw, in one line for the test's output.
    pub fn summary(&self) -> String {
        format!(
            "{} requests acknowledged ({} signals), {} without answer and retried, {} retryable refusals",
            self.acked.len(),
            self.acked_signals(),
            self.transport_errors,
            self.retryable
        )
    }

    /// Checks that no client met an answer that would make it drop data, that every request
    /// was acknowledged in the end, and that the database holds exactly what was sent (see
    /// [`Report::verify`]). Returns the stored signal count.
    pub async fn verify_all(&self, db: &tokio_postgres::Client) -> i64 {
        assert!(self.unexpected.is_empty(), "answers a client would drop data on: {:?}", self.unexpected);
        assert!(self.unfinished.is_empty(), "requests never acknowledged: {:?}", self.unfinished);
        self.verify(db, true).await
    }

    /// Checks the database against the acknowledgements: every acknowledged request's signals
    /// are stored exactly once; with `all_sent`, so are those of every request made (the
    /// retries filled them in); nothing else is stored. Returns the stored signal count.
    pub async fn verify(&self, db: &tokio_postgres::Client, all_sent: bool) -> i64 {
        let stored = stored_by_trace(db).await;
        assert_whole(&stored, self.acked.iter().map(|t| (t, self.sent[t])));
        for (trace, have) in &stored {
            let sent = self.sent.get(trace).unwrap_or_else(|| panic!("stored trace {trace} was never sent"));
            assert_eq!(have, sent, "trace {trace}: stored {have} of {sent} signals");
        }
        if all_sent {
            let absent: Vec<_> = self.sent.keys().filter(|t| !stored.contains_key(*t)).collect();
            assert!(absent.is_empty(), "requests never stored despite retries: {absent:?}");
        }
        stored.values().sum()
    }
}

/// Signals stored per trace id.
pub async fn stored_by_trace(db: &tokio_postgres::Client) -> HashMap<String, i64> {
    let rows = db
        .query("SELECT trace_id, count(*), count(DISTINCT id) FROM raw_signals GROUP BY trace_id", &[])
        .await
        .unwrap();
    let mut stored = HashMap::new();
    for row in rows {
        let (trace, count, distinct): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(count, distinct, "trace {trace}: a signal stored twice");
        stored.insert(trace, count);
    }
    stored
}

/// Fails unless every acknowledged request's signals are all stored.
pub fn assert_whole<'a>(stored: &HashMap<String, i64>, acked: impl Iterator<Item = (&'a String, i64)>) {
    let mut missing = Vec::new();
    for (trace, sent) in acked {
        let have = stored.get(trace).copied().unwrap_or(0);
        if have != sent {
            missing.push(format!("{trace}: acknowledged {sent} signals, stored {have}"));
        }
    }
    assert!(missing.is_empty(), "{} acknowledged requests not stored whole: {missing:?}", missing.len());
}

/// Clients running in the background.
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Every acknowledgement so far: trace id -> signals; readable while the load runs.
    acked: Arc<std::sync::Mutex<HashMap<String, i64>>>,
    clients: Vec<JoinHandle<Report>>,
    give_up: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Load {
    /// Starts `per_kind` clients of each kind in `kinds` against `targets`; OTLP requests carry
    /// `otlp_batch` spans or log records each.
    pub fn start(targets: &Targets, kinds: &[Kind], per_kind: usize, otlp_batch: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let give_up = Arc::new(std::sync::Mutex::new(None));
        let acked = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let mut clients = Vec::new();
        for &kind in kinds {
            for n in 0..per_kind {
                let client = Client {
                    kind,
                    batch: if kind == Kind::Legacy { LEGACY_BATCH } else { otlp_batch },
                    targets: targets.clone(),
                    http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
                    grpc: grpc_client(&targets.grpc),
                    stop: stop.clone(),
                    give_up: give_up.clone(),
                    acked: acked.clone(),
                    name: format!("{kind:?}-{n}"),
                };
                clients.push(tokio::spawn(client.run()));
            }
        }
        Load { stop, acked, clients, give_up }
    }

    /// The acknowledgements given so far (trace id -> signals).
    pub fn acked_so_far(&self) -> HashMap<String, i64> {
        self.acked.lock().unwrap().clone()
    }

    /// Stops making new requests; each client keeps retrying its current one until it is
    /// acknowledged or `patience` has passed. Returns what they all saw.
    pub async fn finish(self, patience: Duration) -> Report {
        *self.give_up.lock().unwrap() = Some(Instant::now() + patience);
        self.stop.store(true, Ordering::Release);
        let mut report = Report::default();
        for client in self.clients {
            report.merge(client.await.unwrap());
        }
        report
    }
}

fn grpc_client(addr: &str) -> TraceServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    TraceServiceClient::new(channel)
}

/// How one attempt went.
enum Outcome {
    Acked,
    /// With what the server said.
    Retryable(String),
    TimedOut,
    NoAnswer,
    Unexpected(String),
}

struct Client {
    kind: Kind,
    batch: usize,
    targets: Targets,
    http: reqwest::Client,
    grpc: TraceServiceClient<Channel>,
    stop: Arc<AtomicBool>,
    give_up: Arc<std::sync::Mutex<Option<Instant>>>,
    acked: Arc<std::sync::Mutex<HashMap<String, i64>>>,
    name: String,
}

impl Client {
    async fn run(mut self) -> Report {
        let mut report = Report::default();
        let mut n = 0;
        while !self.stop.load(Ordering::Acquire) {
            n += 1;
            let trace = uuid::Uuid::new_v4().simple().to_string();
            report.sent.insert(trace.clone(), self.batch as i64);
            let request = self.request(&trace, n);
            loop {
                match self.send(&request).await {
                    Outcome::Acked => {
                        report.acked.insert(trace.clone());
                        self.acked.lock().unwrap().insert(trace.clone(), self.batch as i64);
                        *report.acked_by_kind.entry(format!("{:?}", self.kind)).or_default() += 1;
                        break;
                    }
                    Outcome::Retryable(said) => {
                        report.retryable += 1;
                        *report.refusals.entry(said).or_default() += 1;
                    }
                    Outcome::TimedOut => {
                        report.retryable += 1;
                        report.timed_out += 1;
                    }
                    Outcome::NoAnswer => report.transport_errors += 1,
                    Outcome::Unexpected(what) => report.unexpected.push(format!("{}: {what}", self.name)),
                }
                let gave_up = self.give_up.lock().unwrap().is_some_and(|at| Instant::now() > at);
                if gave_up {
                    report.unfinished.push(trace.clone());
                    break;
                }
                // A real exporter backs off; a short pause keeps the pressure on.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        report
    }

    fn request(&self, trace: &str, n: usize) -> Vec<u8> {
        let trace_bytes = hex_bytes(trace);
        let count = self.batch;
        match self.kind {
            Kind::Grpc => spans_request(&self.name, &trace_bytes, count, n).encode_to_vec(),
            Kind::OtlpHttp => logs_request(&self.name, &trace_bytes, count, n).encode_to_vec(),
            Kind::Legacy => {
                let logs: Vec<Value> = (0..count)
                    .map(|i| {
                        json!({
                            "signal_id": uuid::Uuid::new_v4().to_string(),
                            "trace_id": trace,
                            "service_name": "load-legacy",
                            "timestamp": chrono::Utc::now().to_rfc3339(),
                            // Every tenth request carries an error: incidents are written too.
                            "level": if n.is_multiple_of(10) && i == 0 { "ERROR" } else { "INFO" },
                            "message": format!("{} request {n} log {i}", self.name),
                            "attributes": {"request": n, "i": i},
                        })
                    })
                    .collect();
                serde_json::to_vec(&logs).unwrap()
            }
        }
    }

    async fn send(&mut self, body: &[u8]) -> Outcome {
        match self.kind {
            Kind::Grpc => {
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                match self.grpc.export(request).await {
                    Ok(answer) => match answer.into_inner().partial_success {
                        Some(partial) if partial.rejected_spans > 0 => {
                            Outcome::Unexpected(format!("partial success {partial:?}"))
                        }
                        _ => Outcome::Acked,
                    },
                    Err(status) => grpc_outcome(&status),
                }
            }
            Kind::OtlpHttp => {
                let url = format!("http://{}/v1/logs", self.targets.http);
                let answer =
                    self.http.post(url).header("content-type", "application/x-protobuf").body(body.to_vec());
                http_outcome(answer.send().await, |bytes| {
                    let decoded = ExportLogsServiceResponse::decode(bytes).map_err(|e| e.to_string())?;
                    match decoded.partial_success {
                        Some(partial) if partial.rejected_log_records > 0 => {
                            Err(format!("partial success {partial:?}"))
                        }
                        _ => Ok(()),
                    }
                })
                .await
            }
            Kind::Legacy => {
                let url = format!("http://{}/ingest/logs", self.targets.api);
                let answer =
                    self.http.post(url).header("content-type", "application/json").body(body.to_vec());
                http_outcome(answer.send().await, |_| Ok(())).await
            }
        }
    }
}

/// How the server words a request it accepted but could not confirm in time.
const TIMED_OUT: &str = "did not confirm in time";

fn grpc_outcome(status: &tonic::Status) -> Outcome {
    use tonic::Code;
    match status.code() {
        Code::Unavailable if status.message().contains(TIMED_OUT) => Outcome::TimedOut,
        Code::Unavailable | Code::ResourceExhausted => {
            Outcome::Retryable(format!("gRPC {:?}: {}", status.code(), status.message()))
        }
        // Made here, from a transport error, not sent by the server: the connection broke under
        // the call (a killed server), or the stream was refused by the server's GOAWAY as it
        // shut down, which tonic reports as INTERNAL ("h2 protocol error", reason NO_ERROR)
        // where the gRPC spec and grpc-go treat it as not processed, to be retried. Either way
        // no answer was given. A status the server sent carries no source.
        _ if std::error::Error::source(status).is_some() => Outcome::NoAnswer,
        code => Outcome::Unexpected(format!("gRPC {code:?}: {}", status.message())),
    }
}

async fn http_outcome(
    answer: reqwest::Result<reqwest::Response>,
    check_body: impl FnOnce(&[u8]) -> Result<(), String>,
) -> Outcome {
    let response = match answer {
        Ok(response) => response,
        Err(_) => return Outcome::NoAnswer,
    };
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let Ok(body) = response.bytes().await else { return Outcome::NoAnswer };
    match status.as_u16() {
        200 | 202 => match check_body(&body) {
            Ok(()) => Outcome::Acked,
            Err(why) => Outcome::Unexpected(why),
        },
        503 if retry_after && String::from_utf8_lossy(&body).contains(TIMED_OUT) => Outcome::TimedOut,
        503 | 429 if retry_after => {
            Outcome::Retryable(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))
        }
        code => Outcome::Unexpected(format!(
            "HTTP {code} (Retry-After: {retry_after}): {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// ~1 KB of attribute, the size of a typical span's attributes.
fn padding() -> KeyValue {
    KeyValue {
        key: "http.request.header.user_agent".into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue("x".repeat(1000))) }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(service.into())) }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// `count` spans of one trace; every tenth request has an ERROR span.
pub fn spans_request(client: &str, trace: &[u8], count: usize, n: usize) -> ExportTraceServiceRequest {
    let start = now_nanos();
    let spans = (0..count)
        .map(|i| Span {
            trace_id: trace.to_vec(),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: format!("{client} op {i}"),
            attributes: vec![padding()],
            start_time_unix_nano: start,
            end_time_unix_nano: start + 1_000_000,
            status: Some(Status {
                code: if n.is_multiple_of(10) && i == 0 {
                    status::StatusCode::Error
                } else {
                    status::StatusCode::Ok
                } as i32,
                message: String::new(),
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("load-grpc"),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// `count` log records of one trace, each with its own body (so its own signal id).
pub fn logs_request(client: &str, trace: &[u8], count: usize, n: usize) -> ExportLogsServiceRequest {
    let time = now_nanos();
    let log_records = (0..count)
        .map(|i| LogRecord {
            time_unix_nano: time,
            severity_number: 9,
            trace_id: trace.to_vec(),
            attributes: vec![padding()],
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("{client} request {n} log {i}"))),
            }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("load-http"),
            scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

#[test]
fn a_status_the_server_sent_is_told_from_a_transport_failure() {
    // From the server's trailers: no source. INTERNAL from the server would drop data.
    assert!(matches!(grpc_outcome(&tonic::Status::internal("internal error")), Outcome::Unexpected(_)));
    assert!(matches!(grpc_outcome(&tonic::Status::unavailable("retry later")), Outcome::Retryable(_)));
    // Made by the client from a broken connection: not an answer, retried.
    let broken =
        tonic::Status::from_error(Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
    assert!(matches!(grpc_outcome(&broken), Outcome::NoAnswer), "{broken:?}");
}
