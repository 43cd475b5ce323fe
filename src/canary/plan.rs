//! What one write sends, derived from the canary's id and the write's time only: one trace
//! across two services, and in it, over each OTLP transport, spans, a log record and a metric
//! point (a gauge, a sum, a histogram: one kind per transport, each with an exemplar in the
//! trace), plus a legacy log, span and metric point. Attributes hold every OTLP value type.
//!
//! A healthy write is INFO and OK throughout and carries no text an analysis keyword matches,
//! so it never queues an analysis; a failing one (`--error-every`) adds a failed root span
//! with an `exception` event.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::{json, Value};

use super::seed::Seed;
use crate::model::SignalType;

/// The attribute naming each signal of a write (`span.otlp_grpc.root`): what pairs a row read
/// back with what was written when even its id came back wrong.
pub const MARKER: &str = "canary.signal";
/// The scope every OTLP record of the canary carries.
pub const SCOPE_NAME: &str = "prodsentinel-canary";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The exception type of a failing write's span.
pub const INJECTED_ERROR: &str = "CanaryInjectedError";
const MILLISECOND: u64 = 1_000_000;

/// How signals travel to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    OtlpGrpc,
    OtlpHttpProtobuf,
    OtlpHttpJson,
    Legacy,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::OtlpGrpc => "otlp_grpc",
            Transport::OtlpHttpProtobuf => "otlp_http_protobuf",
            Transport::OtlpHttpJson => "otlp_http_json",
            Transport::Legacy => "legacy",
        }
    }
}

/// Healthy writes never open an analysis; failing ones must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Failing,
}

/// The three OTLP exports of one transport.
#[derive(Debug, Clone)]
pub struct OtlpExports {
    pub transport: Transport,
    pub traces: ExportTraceServiceRequest,
    pub logs: ExportLogsServiceRequest,
    pub metrics: ExportMetricsServiceRequest,
}

/// One `POST /ingest/*` body.
#[derive(Debug, Clone)]
pub struct LegacyBody {
    pub signal_type: SignalType,
    pub body: Value,
}

impl LegacyBody {
    pub fn path(&self) -> &'static str {
        match self.signal_type {
            SignalType::Log => "/ingest/logs",
            SignalType::Trace => "/ingest/traces",
            SignalType::Metric => "/ingest/metrics",
        }
    }
}

/// Everything one write sends.
#[derive(Debug, Clone)]
pub struct Write {
    /// When it was written (its seed's time), Unix nanoseconds.
    pub at: u64,
    pub health: Health,
    pub trace_id: [u8; 16],
    pub otlp: Vec<OtlpExports>,
    pub legacy: Vec<LegacyBody>,
}

/// The ids of a write's spans, which its logs, exemplars and legacy span refer to.
struct Spans {
    root: [u8; 8],
    client: [u8; 8],
    backend: [u8; 8],
}

struct Builder<'a> {
    seed: Seed,
    at: u64,
    health: Health,
    trace_id: [u8; 16],
    spans: Spans,
    services: &'a [String; 2],
    canary_id: &'a str,
}

impl Write {
    /// The write of canary `canary_id` at `at` (Unix nanoseconds).
    pub fn plan(canary_id: &str, service_name: &str, at: u64, health: Health) -> Write {
        let seed = Seed::new(canary_id, at);
        // The entry service, and the one it calls.
        let services = [service_name.to_owned(), format!("{service_name}-backend")];
        let spans = Spans {
            root: seed.id("span.root"),
            client: seed.id("span.client"),
            backend: seed.id("span.backend"),
        };
        let builder =
            Builder { trace_id: seed.id("trace"), seed, at, health, spans, services: &services, canary_id };
        let otlp = [Transport::OtlpGrpc, Transport::OtlpHttpProtobuf, Transport::OtlpHttpJson]
            .into_iter()
            .map(|transport| builder.exports(transport))
            .collect();
        let legacy = builder.legacy();
        Write { at, health, trace_id: builder.trace_id, otlp, legacy }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn string(value: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) })
}

fn attribute(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue { key: key.to_owned(), value, ..Default::default() }
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    attribute(key, string(value))
}

fn any(value: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(value) })
}

impl Builder<'_> {
    fn resource(&self, service: usize) -> Option<Resource> {
        // Nothing of a single write here: the service stores each distinct resource once.
        Some(Resource {
            attributes: vec![
                text("service.name", self.services[service].clone()),
                text("service.version", VERSION),
                text("service.instance.id", self.canary_id),
            ],
            ..Default::default()
        })
    }

    fn scope(&self, transport: Transport) -> Option<InstrumentationScope> {
        Some(InstrumentationScope {
            name: SCOPE_NAME.to_owned(),
            version: VERSION.to_owned(),
            attributes: vec![text("canary.transport", transport.label())],
            ..Default::default()
        })
    }

    /// Attributes of every value type, drawn for `label`, and the marker naming the signal.
    fn every_form(&self, label: &str) -> Vec<KeyValue> {
        let n = |what: &str| self.seed.number(&format!("{label}.{what}"));
        vec![
            text(MARKER, label),
            text("canary.string", format!("v-{}", self.seed.hex(&format!("{label}.string"), 4))),
            attribute("canary.bool", any(any_value::Value::BoolValue(n("bool") % 2 == 0))),
            attribute("canary.int", any(any_value::Value::IntValue(n("int") as i64))),
            // Sixteenths: exact in binary, so every JSON encoder writes back the same number.
            attribute(
                "canary.double",
                any(any_value::Value::DoubleValue((n("double") % (1 << 24)) as f64 / 16.0 - 1e5)),
            ),
            attribute("canary.bytes", any(any_value::Value::BytesValue(self.safe_bytes(label)))),
            attribute(
                "canary.array",
                any(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        string(self.seed.hex(&format!("{label}.array"), 2)).unwrap_or_default(),
                        AnyValue { value: Some(any_value::Value::IntValue((n("array") % 1000) as i64)) },
                        AnyValue { value: Some(any_value::Value::BoolValue(true)) },
                    ],
                })),
            ),
            attribute(
                "canary.kvlist",
                any(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![
                        text("k", self.seed.hex(&format!("{label}.kv"), 3)),
                        attribute("n", any(any_value::Value::DoubleValue(0.5))),
                    ],
                })),
            ),
            attribute("canary.empty", None),
        ]
    }

    /// Bytes whose base64 (stored as text) holds no analysis keyword in any case: the first
    /// draw that qualifies, so the same seed always gives the same bytes.
    fn safe_bytes(&self, label: &str) -> Vec<u8> {
        use base64::Engine;
        (0..)
            .map(|attempt| self.seed.id::<6>(&format!("{label}.bytes.{attempt}")).to_vec())
            .find(|bytes| {
                let text = base64::engine::general_purpose::STANDARD.encode(bytes).to_lowercase();
                !text.contains("fail") && !text.contains("crit")
            })
            .unwrap_or_default()
    }

    /// A time `offset_ms` after the write, with nanoseconds of its own (checked to the digit).
    fn time(&self, label: &str, offset_ms: u64) -> u64 {
        self.at + offset_ms * MILLISECOND + self.seed.number(label) % 1_000
    }

    fn exports(&self, transport: Transport) -> OtlpExports {
        OtlpExports {
            transport,
            traces: self.traces(transport),
            logs: self.logs(transport),
            metrics: self.metrics(transport),
        }
    }

    fn span(
        &self,
        label: String,
        id: [u8; 8],
        parent: Option<[u8; 8]>,
        kind: SpanKind,
        times: (u64, u64),
    ) -> Span {
        Span {
            trace_id: self.trace_id.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: format!("canary {}", label.rsplit('.').next().unwrap_or_default()),
            kind: kind as i32,
            start_time_unix_nano: self.time(&format!("{label}.start"), times.0),
            end_time_unix_nano: self.time(&format!("{label}.end"), times.1),
            attributes: self.every_form(&label),
            status: Some(Status { code: StatusCode::Ok as i32, message: String::new() }),
            ..Default::default()
        }
    }

    fn traces(&self, transport: Transport) -> ExportTraceServiceRequest {
        let t = transport.label();
        let spans = &self.spans;
        let resource_spans = |service: usize, spans: Vec<Span>| ResourceSpans {
            resource: self.resource(service),
            scope_spans: vec![ScopeSpans { scope: self.scope(transport), spans, ..Default::default() }],
            ..Default::default()
        };
        let resource_spans = match transport {
            Transport::OtlpGrpc => {
                let mut root =
                    self.span(format!("span.{t}.root"), spans.root, None, SpanKind::Server, (0, 40));
                root.trace_state = "canary=root".into();
                root.flags = 0x101;
                root.events = vec![Event {
                    time_unix_nano: self.time("event", 10),
                    name: "canary.checkpoint".into(),
                    attributes: vec![attribute("canary.step", any(any_value::Value::IntValue(2)))],
                    ..Default::default()
                }];
                root.links = vec![Link {
                    trace_id: self.seed.id::<16>("link.trace").to_vec(),
                    span_id: self.seed.id::<8>("link.span").to_vec(),
                    trace_state: "canary=link".into(),
                    attributes: vec![text("canary.link", self.seed.hex("link", 4))],
                    ..Default::default()
                }];
                if self.health == Health::Failing {
                    root.status = Some(Status {
                        code: StatusCode::Error as i32,
                        message: "injected by the canary".into(),
                    });
                    root.events.push(Event {
                        time_unix_nano: self.time("exception", 30),
                        name: "exception".into(),
                        attributes: vec![
                            text("exception.type", INJECTED_ERROR),
                            text("exception.message", "an error the canary was told to write"),
                        ],
                        ..Default::default()
                    });
                }
                let client = self.span(
                    format!("span.{t}.client"),
                    spans.client,
                    Some(spans.root),
                    SpanKind::Client,
                    (1, 35),
                );
                let backend = self.span(
                    format!("span.{t}.backend"),
                    spans.backend,
                    Some(spans.client),
                    SpanKind::Server,
                    (2, 30),
                );
                vec![resource_spans(0, vec![root, client]), resource_spans(1, vec![backend])]
            }
            Transport::OtlpHttpProtobuf | Transport::OtlpHttpJson => {
                let (kind, times) = match transport {
                    Transport::OtlpHttpProtobuf => (SpanKind::Internal, (3, 12)),
                    _ => (SpanKind::Producer, (13, 20)),
                };
                let label = format!("span.{t}.step");
                let id = self.seed.id(&label);
                vec![resource_spans(1, vec![self.span(label, id, Some(spans.backend), kind, times)])]
            }
            Transport::Legacy => Vec::new(),
        };
        ExportTraceServiceRequest { resource_spans }
    }

    fn logs(&self, transport: Transport) -> ExportLogsServiceRequest {
        let t = transport.label();
        let label = format!("log.{t}");
        let (service, span, body, offset) = match transport {
            Transport::OtlpGrpc => {
                (0, self.spans.root, string(format!("canary log {}", self.seed.hex(&label, 4))), 5)
            }
            Transport::OtlpHttpProtobuf => (
                1,
                self.spans.backend,
                any(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![
                        text("event", "canary"),
                        attribute(
                            "count",
                            any(any_value::Value::IntValue((self.seed.number(&label) % 100) as i64)),
                        ),
                    ],
                })),
                6,
            ),
            _ => (
                0,
                self.spans.client,
                any(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        string("canary").unwrap_or_default(),
                        AnyValue { value: Some(any_value::Value::DoubleValue(1.25)) },
                    ],
                })),
                7,
            ),
        };
        let record = LogRecord {
            time_unix_nano: self.time(&format!("{label}.time"), offset),
            observed_time_unix_nano: self.time(&format!("{label}.observed"), offset + 1),
            severity_number: 9,
            severity_text: "INFO".into(),
            body,
            attributes: self.every_form(&label),
            flags: 1,
            trace_id: self.trace_id.to_vec(),
            span_id: span.to_vec(),
            event_name: if transport == Transport::OtlpGrpc { "canary.event".into() } else { String::new() },
            ..Default::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: self.resource(service),
                scope_logs: vec![ScopeLogs {
                    scope: self.scope(transport),
                    log_records: vec![record],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn exemplar(&self, label: &str, span: [u8; 8], value: exemplar::Value) -> Exemplar {
        Exemplar {
            filtered_attributes: vec![text(
                "canary.exemplar",
                self.seed.hex(&format!("{label}.exemplar"), 3),
            )],
            time_unix_nano: self.time(&format!("{label}.exemplar.time"), 8),
            span_id: span.to_vec(),
            trace_id: self.trace_id.to_vec(),
            value: Some(value),
        }
    }

    fn metrics(&self, transport: Transport) -> ExportMetricsServiceRequest {
        let t = transport.label();
        let label = format!("metric.{t}");
        let n = self.seed.number(&label);
        let start = self.at.saturating_sub(60_000 * MILLISECOND);
        let time = self.time(&format!("{label}.time"), 9);
        let (service, name, unit, data) = match transport {
            Transport::OtlpGrpc => {
                let point = NumberDataPoint {
                    attributes: self.every_form(&label),
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    exemplars: vec![self.exemplar(&label, self.spans.root, exemplar::Value::AsDouble(7.5))],
                    value: Some(number_data_point::Value::AsDouble((n % 1_000) as f64 / 8.0)),
                    ..Default::default()
                };
                (0, "canary.gauge", "1", metric::Data::Gauge(Gauge { data_points: vec![point] }))
            }
            Transport::OtlpHttpProtobuf => {
                let point = NumberDataPoint {
                    attributes: self.every_form(&label),
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    exemplars: vec![self.exemplar(&label, self.spans.backend, exemplar::Value::AsInt(3))],
                    value: Some(number_data_point::Value::AsInt((n % 1_000_000) as i64)),
                    ..Default::default()
                };
                let sum = Sum {
                    data_points: vec![point],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                };
                (1, "canary.sum", "By", metric::Data::Sum(sum))
            }
            _ => {
                let counts = [n % 5, n % 7, n % 11];
                let point = HistogramDataPoint {
                    attributes: self.every_form(&label),
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count: counts.iter().sum(),
                    sum: Some(counts.iter().sum::<u64>() as f64 * 12.5),
                    bucket_counts: counts.to_vec(),
                    explicit_bounds: vec![10.0, 100.0],
                    exemplars: vec![self.exemplar(
                        &label,
                        self.spans.client,
                        exemplar::Value::AsDouble(42.0),
                    )],
                    min: Some(1.5),
                    max: Some(250.0),
                    ..Default::default()
                };
                let histogram = Histogram {
                    data_points: vec![point],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                };
                (0, "canary.histogram", "ms", metric::Data::Histogram(histogram))
            }
        };
        let metric = Metric {
            name: name.into(),
            description: format!("{name}, written by the canary"),
            unit: unit.into(),
            data: Some(data),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: self.resource(service),
                scope_metrics: vec![ScopeMetrics {
                    scope: self.scope(transport),
                    metrics: vec![metric],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// The legacy bodies: times to the microsecond, which is what the legacy format carries.
    fn legacy(&self) -> Vec<LegacyBody> {
        let micros = |nanos: u64| rfc3339_micros(nanos);
        let uuid =
            |label: &str| uuid::Builder::from_random_bytes(self.seed.id(label)).into_uuid().to_string();
        let trace_id = hex(&self.trace_id);
        let n = self.seed.number("legacy");
        let attributes = |label: &str| {
            json!({
                MARKER: label,
                "canary.number": (n % 10_000) as i64,
                "canary.nested": {"list": [1, self.seed.hex(label, 2), null], "flag": true},
            })
        };
        vec![
            LegacyBody {
                signal_type: SignalType::Log,
                body: json!({
                    "signal_id": uuid("legacy.log"), "trace_id": trace_id, "service_name": self.services[0],
                    "timestamp": micros(self.time("legacy.log", 21)), "level": "INFO",
                    "message": format!("canary legacy log {}", self.seed.hex("legacy.log", 4)),
                    "attributes": attributes("log.legacy"),
                }),
            },
            LegacyBody {
                signal_type: SignalType::Trace,
                body: json!({
                    "signal_id": uuid("legacy.span"), "trace_id": trace_id,
                    "span_id": format!("legacy-{}", self.seed.hex("legacy.span", 4)),
                    "parent_span_id": hex(&self.spans.backend), "service_name": self.services[1],
                    "name": "canary legacy span", "start_time": micros(self.time("legacy.span.start", 22)),
                    "end_time": micros(self.time("legacy.span.end", 25)), "status": "ok",
                    "attributes": attributes("span.legacy"),
                }),
            },
            LegacyBody {
                signal_type: SignalType::Metric,
                body: json!({
                    "signal_id": uuid("legacy.metric"), "trace_id": trace_id, "service_name": self.services[0],
                    "timestamp": micros(self.time("legacy.metric", 26)), "metric_name": "canary.legacy",
                    "value": (n % 4_000) as f64 / 4.0 + 0.25, "unit": "ms",
                    "attributes": attributes("metric.legacy"),
                }),
            },
        ]
    }
}

/// `nanos` (Unix) as RFC 3339 with six fraction digits, cut to the microsecond.
pub fn rfc3339_micros(nanos: u64) -> String {
    let time =
        chrono::DateTime::from_timestamp((nanos / 1_000_000_000) as i64, (nanos % 1_000_000_000) as u32)
            .unwrap_or_default();
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_the_same_whenever_it_is_planned_again() {
        let at = 1_764_000_000_123_456_789;
        let first = Write::plan("c1", "svc", at, Health::Healthy);
        let again = Write::plan("c1", "svc", at, Health::Healthy);
        assert_eq!(first.trace_id, again.trace_id);
        assert_eq!(format!("{:?}", first.otlp), format!("{:?}", again.otlp));
        assert_eq!(first.legacy[0].body, again.legacy[0].body);
        assert_ne!(first.trace_id, Write::plan("c2", "svc", at, Health::Healthy).trace_id);
        assert_eq!(first.otlp.len(), 3);
        assert_eq!(first.legacy.len(), 3);
    }

    #[test]
    fn nothing_a_healthy_write_sends_holds_an_analysis_keyword() {
        for at in 0..200u64 {
            let write = Write::plan(
                "keyword-check",
                "prodsentinel-canary",
                1_764_000_000_000_000_000 + at,
                Health::Healthy,
            );
            let text = format!("{write:?}").to_lowercase();
            assert!(
                !text.contains("fail") && !text.contains("critical") && !text.contains("exception"),
                "{at}"
            );
            assert!(!text.contains("latency"), "the metric rules match *latency*");
        }
        let failing = Write::plan("k", "s", 1, Health::Failing);
        assert!(format!("{failing:?}").contains(INJECTED_ERROR));
    }

    #[test]
    fn legacy_times_are_cut_to_the_microsecond() {
        assert_eq!(rfc3339_micros(1_714_558_830_123_456_789), "2024-05-01T10:20:30.123456Z");
    }
}
