//! The signals the benchmark sends and writes: realistic sizes (~440-byte payloads).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::{json, Value};
use uuid::Uuid;

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..Default::default()
    }
}

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![kv("service.name", service), kv("service.version", "1.4.2")],
        ..Default::default()
    }
}

pub fn scope() -> InstrumentationScope {
    InstrumentationScope { name: "bench".into(), version: "1.0.0".into(), ..Default::default() }
}

/// `count` spans: traces of 8 spans, fresh random ids, 5 attributes each.
pub fn spans(service: &str, count: usize) -> ExportTraceServiceRequest {
    let start = now_nanos();
    let mut trace_id = Uuid::new_v4().as_bytes().to_vec();
    let spans = (0..count)
        .map(|i| {
            if i % 8 == 0 {
                trace_id = Uuid::new_v4().as_bytes().to_vec();
            }
            Span {
                trace_id: trace_id.clone(),
                span_id: Uuid::new_v4().as_bytes()[..8].to_vec(),
                name: "GET /api/v1/orders/{id}".into(),
                kind: 2,
                start_time_unix_nano: start + i as u64 * 1000,
                end_time_unix_nano: start + i as u64 * 1000 + 12_345_678,
                attributes: vec![
                    kv("http.request.method", "GET"),
                    kv("http.route", "/api/v1/orders/{id}"),
                    kv("url.full", "https://shop.example.com/api/v1/orders/8c1f"),
                    kv("server.address", "orders-7d9f8b6c5-x2k4q"),
                    kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
                ],
                status: Some(Status { code: 1, message: String::new() }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(service)),
            scope_spans: vec![ScopeSpans { scope: Some(scope()), spans, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
}

/// `count` INFO log records in fresh traces.
pub fn logs(service: &str, count: usize) -> ExportLogsServiceRequest {
    let now = now_nanos();
    let log_records = (0..count)
        .map(|i| LogRecord {
            time_unix_nano: now + i as u64,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "order {i} reserved 3 items in warehouse eu-west-1"
                ))),
            }),
            attributes: vec![kv("order.id", &Uuid::new_v4().to_string()), kv("warehouse", "eu-west-1")],
            trace_id: Uuid::new_v4().as_bytes().to_vec(),
            span_id: Uuid::new_v4().as_bytes()[..8].to_vec(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(service)),
            scope_logs: vec![ScopeLogs { scope: Some(scope()), log_records, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
}

/// `count` gauge points of one metric, four series (a `queue` attribute each).
pub fn points(service: &str, count: usize) -> ExportMetricsServiceRequest {
    let now = now_nanos();
    let data_points = (0..count)
        .map(|i| NumberDataPoint {
            time_unix_nano: now + i as u64,
            attributes: vec![kv("queue", &format!("orders-{}", i % 4)), kv("region", "eu-west-1")],
            value: Some(number_data_point::Value::AsInt((i % 97) as i64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(service)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    unit: "{message}".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// One legacy `/ingest/logs` body.
pub fn legacy_log(service: &str, trace_id: &str, level: &str) -> Value {
    json!({
        "signal_id": Uuid::new_v4().to_string(),
        "trace_id": trace_id,
        "service_name": service,
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "level": level,
        "message": "checkout step completed for order 8c1f2a in 42 ms (cart 3 items, total 49.99 EUR)",
        "attributes": {"user_id": "u-17", "order_id": "8c1f2a", "amount": 49.99, "currency": "EUR", "region": "eu-west-1"}
    })
}

/// A raw_signals-shaped payload (~440 bytes), as the ceiling writes it.
pub fn raw_payload(i: u64) -> Value {
    json!({
        "level": "INFO",
        "message": format!("checkout step completed for order {i} in 42 ms (cart 3 items, total 49.99 EUR)"),
        "attributes": {
            "user_id": "u-17", "order_id": i.to_string(), "amount": 49.99, "currency": "EUR",
            "region": "eu-west-1", "host": "checkout-7d9f8b6c5-x2k4q", "http.route": "/api/v1/checkout",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
        }
    })
}

/// An export of spans as OTLP/JSON (hex ids, int64 as strings), as SDKs send it over HTTP.
pub fn spans_json(request: &ExportTraceServiceRequest) -> Vec<u8> {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let attributes = |kvs: &[KeyValue]| -> Value {
        kvs.iter()
            .map(|kv| {
                let text = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    _ => String::new(),
                };
                json!({"key": kv.key, "value": {"stringValue": text}})
            })
            .collect()
    };
    let resource_spans: Vec<Value> = request
        .resource_spans
        .iter()
        .map(|r| {
            json!({
                "resource": {"attributes": attributes(r.resource.as_ref().map_or(&[][..], |r| &r.attributes))},
                "scopeSpans": r.scope_spans.iter().map(|s| json!({
                    "scope": s.scope.as_ref().map(|s| json!({"name": s.name, "version": s.version})),
                    "spans": s.spans.iter().map(|span| json!({
                        "traceId": hex(&span.trace_id),
                        "spanId": hex(&span.span_id),
                        "name": span.name,
                        "kind": span.kind,
                        "startTimeUnixNano": span.start_time_unix_nano.to_string(),
                        "endTimeUnixNano": span.end_time_unix_nano.to_string(),
                        "attributes": attributes(&span.attributes),
                        "status": {"code": span.status.as_ref().map_or(0, |s| s.code)},
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_vec(&json!({"resourceSpans": resource_spans})).unwrap_or_default()
}
