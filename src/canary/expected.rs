//! What the query API must answer for each signal of a write, field by field: the mapping the
//! README documents (docs/contracts.md for the keys the worker reads), written out here again
//! from what was sent, not taken from the service's code, so that a change to either shows.

use base64::Engine;
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, Exemplar, Metric, NumberDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::plan::{hex, Transport, Write, MARKER};
use crate::model::signal_id::{log_signal_id, point_signal_id, span_signal_id};
use crate::model::time::{at_stored_precision, format_timestamp, parse_timestamp_str};
use crate::model::SignalType;

/// One signal as it must be read back.
#[derive(Debug, Clone)]
pub struct Expected {
    pub transport: Transport,
    pub signal_type: SignalType,
    pub id: Uuid,
    /// Its `canary.signal` attribute (`span.otlp_grpc.root`).
    pub marker: String,
    /// The whole row of `GET /query/traces/{trace_id}`.
    pub row: Value,
}

impl Expected {
    /// What a log line calls it: `span.otlp_grpc.root`.
    pub fn name(&self) -> &str {
        &self.marker
    }
}

/// Every signal of `write`, as the API answers it.
pub fn expected_signals(write: &Write) -> Vec<Expected> {
    let mut out = Vec::new();
    for exports in &write.otlp {
        let transport = exports.transport;
        for resource_spans in &exports.traces.resource_spans {
            let resource = resource_spans.resource.as_ref();
            for scope_spans in &resource_spans.scope_spans {
                for span in &scope_spans.spans {
                    out.push(span_row(transport, span, resource, scope_spans.scope.as_ref()));
                }
            }
        }
        for resource_logs in &exports.logs.resource_logs {
            let resource = resource_logs.resource.as_ref();
            for scope_logs in &resource_logs.scope_logs {
                for record in &scope_logs.log_records {
                    out.push(log_row(transport, record, resource, scope_logs.scope.as_ref()));
                }
            }
        }
        for resource_metrics in &exports.metrics.resource_metrics {
            let resource = resource_metrics.resource.as_ref();
            for scope_metrics in &resource_metrics.scope_metrics {
                for metric in &scope_metrics.metrics {
                    out.extend(point_rows(transport, metric, resource, scope_metrics.scope.as_ref()));
                }
            }
        }
    }
    out.extend(write.legacy.iter().map(|legacy| legacy_row(legacy.signal_type, &legacy.body)));
    out
}

fn time(nanos: u64) -> DateTime<Utc> {
    DateTime::from_timestamp((nanos / 1_000_000_000) as i64, (nanos % 1_000_000_000) as u32)
        .unwrap_or_default()
}

/// A time in the API's format, as the record carried it (nanoseconds kept).
fn text_time(nanos: u64) -> Value {
    json!(format_timestamp(&time(nanos)))
}

/// A row's `timestamp`: the database keeps microseconds.
fn stored_time(nanos: u64) -> String {
    format_timestamp(&at_stored_precision(time(nanos)))
}

/// An attribute value as natural JSON (README, "How OTLP maps onto signals").
fn value_json(value: &AnyValue) -> Value {
    match &value.value {
        None | Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::BytesValue(bytes)) => {
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Some(any_value::Value::ArrayValue(array)) => {
            Value::Array(array.values.iter().map(value_json).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => Value::Object(attributes(&list.values)),
    }
}

fn attributes(list: &[KeyValue]) -> Map<String, Value> {
    list.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, value_json))).collect()
}

fn marker_of(list: &[KeyValue]) -> String {
    match attributes(list).get(MARKER) {
        Some(Value::String(marker)) => marker.clone(),
        _ => String::new(),
    }
}

fn service_of(resource: Option<&Resource>) -> String {
    let attributes = attributes(resource.map_or(&[], |r| &r.attributes[..]));
    attributes.get("service.name").and_then(Value::as_str).unwrap_or("unknown_service").to_owned()
}

/// The `resource` and `scope` every OTLP payload is answered with.
fn shared(
    payload: &mut Map<String, Value>,
    resource: Option<&Resource>,
    scope: Option<&InstrumentationScope>,
) {
    payload.insert("resource".into(), Value::Object(attributes(resource.map_or(&[], |r| &r.attributes[..]))));
    payload.insert(
        "scope".into(),
        json!({
            "name": scope.map_or("", |s| &s.name), "version": scope.map_or("", |s| &s.version),
            "attributes": attributes(scope.map_or(&[], |s| &s.attributes[..])),
        }),
    );
}

fn row(
    signal_type: SignalType,
    id: Uuid,
    trace_id: &str,
    service: &str,
    timestamp: &str,
    payload: Value,
) -> Value {
    json!({
        "id": id.to_string(), "signal_type": signal_type.as_str(), "trace_id": trace_id,
        "service_name": service, "timestamp": timestamp, "payload": payload,
    })
}

fn span_kind(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "INTERNAL",
        Ok(SpanKind::Server) => "SERVER",
        Ok(SpanKind::Client) => "CLIENT",
        Ok(SpanKind::Producer) => "PRODUCER",
        Ok(SpanKind::Consumer) => "CONSUMER",
        _ => "UNSPECIFIED",
    }
}

fn span_row(
    transport: Transport,
    span: &Span,
    resource: Option<&Resource>,
    scope: Option<&InstrumentationScope>,
) -> Expected {
    let (status, status_message) = match &span.status {
        Some(s) if s.code == StatusCode::Error as i32 => ("ERROR", s.message.as_str()),
        Some(s) if s.code == StatusCode::Ok as i32 => ("OK", s.message.as_str()),
        Some(s) => ("UNSET", s.message.as_str()),
        None => ("UNSET", ""),
    };
    let events: Vec<Value> = span
        .events
        .iter()
        .map(|e| json!({"name": e.name, "time": text_time(e.time_unix_nano), "attributes": attributes(&e.attributes)}))
        .collect();
    let links: Vec<Value> = span
        .links
        .iter()
        .map(|l| {
            json!({
                "trace_id": hex(&l.trace_id), "span_id": hex(&l.span_id), "trace_state": l.trace_state,
                "attributes": attributes(&l.attributes),
            })
        })
        .collect();
    let parent = (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id));
    let mut payload = json!({
        "span_id": hex(&span.span_id), "parent_span_id": parent, "name": span.name, "kind": span_kind(span.kind),
        "start_time": text_time(span.start_time_unix_nano), "end_time": text_time(span.end_time_unix_nano),
        "start_time_unix_nano": span.start_time_unix_nano.to_string(),
        "end_time_unix_nano": span.end_time_unix_nano.to_string(),
        "duration_ms": (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1_000_000.0,
        "status": status, "status_message": status_message, "attributes": attributes(&span.attributes),
        "events": events, "links": links, "trace_state": span.trace_state, "flags": span.flags,
        "dropped": {
            "attributes": span.dropped_attributes_count, "events": span.dropped_events_count,
            "links": span.dropped_links_count,
        },
    });
    if let Value::Object(map) = &mut payload {
        shared(map, resource, scope);
    }
    let id = span_signal_id(&span.trace_id, &span.span_id);
    let trace_id = hex(&span.trace_id);
    let service = service_of(resource);
    Expected {
        transport,
        signal_type: SignalType::Trace,
        id,
        marker: marker_of(&span.attributes),
        row: row(
            SignalType::Trace,
            id,
            &trace_id,
            &service,
            &stored_time(span.start_time_unix_nano),
            payload,
        ),
    }
}

fn encoded<M: Message>(message: Option<&M>) -> Vec<u8> {
    message.map(Message::encode_to_vec).unwrap_or_default()
}

fn log_row(
    transport: Transport,
    record: &LogRecord,
    resource: Option<&Resource>,
    scope: Option<&InstrumentationScope>,
) -> Expected {
    let body = record.body.as_ref().map_or(Value::Null, value_json);
    let mut payload = Map::new();
    payload.insert("level".into(), json!("INFO"));
    payload.insert(
        "message".into(),
        match &body {
            Value::String(s) => json!(s),
            Value::Null => json!(""),
            other => json!(other.to_string()),
        },
    );
    if !matches!(body, Value::String(_) | Value::Null) {
        payload.insert("body".into(), body);
    }
    let observed = (record.observed_time_unix_nano != 0).then(|| text_time(record.observed_time_unix_nano));
    for (key, value) in [
        ("severity_number", json!(record.severity_number)),
        ("severity_text", json!(record.severity_text)),
        ("span_id", json!(hex(&record.span_id))),
        ("event_name", json!(record.event_name)),
        ("attributes", Value::Object(attributes(&record.attributes))),
        ("time_unix_nano", json!(record.time_unix_nano.to_string())),
        ("observed_time", json!(observed)),
        ("flags", json!(record.flags)),
        ("dropped_attributes_count", json!(record.dropped_attributes_count)),
    ] {
        payload.insert(key.into(), value);
    }
    shared(&mut payload, resource, scope);
    let id = log_signal_id(&[&encoded(resource), &encoded(scope), &record.encode_to_vec()]);
    Expected {
        transport,
        signal_type: SignalType::Log,
        id,
        marker: marker_of(&record.attributes),
        row: row(
            SignalType::Log,
            id,
            &hex(&record.trace_id),
            &service_of(resource),
            &stored_time(record.time_unix_nano),
            Value::Object(payload),
        ),
    }
}

fn exemplar_json(e: &Exemplar) -> Value {
    json!({
        "trace_id": hex(&e.trace_id), "span_id": hex(&e.span_id), "time": text_time(e.time_unix_nano),
        "value": match e.value {
            Some(exemplar::Value::AsDouble(d)) => json!(d),
            Some(exemplar::Value::AsInt(i)) => json!(i),
            None => Value::Null,
        },
        "filtered_attributes": attributes(&e.filtered_attributes),
    })
}

fn temporality(value: i32) -> &'static str {
    if value == 1 {
        "DELTA"
    } else {
        "CUMULATIVE"
    }
}

/// What every kind of point shares, and its kind's own fields.
struct Point<'a> {
    /// `kind` and what comes with it (temporality, value type, histogram fields).
    kind_fields: Value,
    value: Value,
    attributes: &'a [KeyValue],
    start: u64,
    at: u64,
    exemplars: &'a [Exemplar],
    flags: u32,
    encoded: Vec<u8>,
}

fn points(metric: &Metric) -> Vec<Point<'_>> {
    let mut out = Vec::new();
    match &metric.data {
        Some(metric::Data::Gauge(gauge)) => {
            out.extend(gauge.data_points.iter().map(|p| number_point(p, json!({"kind": "gauge"}))));
        }
        Some(metric::Data::Sum(sum)) => {
            let kind_fields = json!({
                "kind": "sum", "temporality": temporality(sum.aggregation_temporality), "monotonic": sum.is_monotonic,
            });
            out.extend(sum.data_points.iter().map(|p| number_point(p, kind_fields.clone())));
        }
        Some(metric::Data::Histogram(histogram)) => {
            for p in &histogram.data_points {
                out.push(Point {
                    kind_fields: json!({
                        "kind": "histogram", "temporality": temporality(histogram.aggregation_temporality),
                        "count": p.count, "sum": p.sum, "min": p.min, "max": p.max,
                        "bucket_counts": p.bucket_counts, "explicit_bounds": p.explicit_bounds,
                    }),
                    // A histogram's value is its sum.
                    value: json!(p.sum),
                    attributes: &p.attributes,
                    start: p.start_time_unix_nano,
                    at: p.time_unix_nano,
                    exemplars: &p.exemplars,
                    flags: p.flags,
                    encoded: p.encode_to_vec(),
                });
            }
        }
        // Not among what the canary sends.
        Some(metric::Data::ExponentialHistogram(_) | metric::Data::Summary(_)) | None => {}
    }
    out
}

fn point_rows(
    transport: Transport,
    metric: &Metric,
    resource: Option<&Resource>,
    scope: Option<&InstrumentationScope>,
) -> Vec<Expected> {
    let descriptor = Metric { data: None, ..metric.clone() }.encode_to_vec();
    points(metric)
        .into_iter()
        .map(|point| {
            let mut payload = Map::new();
            payload.insert("metric_name".into(), json!(metric.name));
            payload.insert("value".into(), point.value);
            payload.insert("unit".into(), json!(metric.unit));
            payload.insert("description".into(), json!(metric.description));
            if let Value::Object(fields) = point.kind_fields {
                payload.extend(fields);
            }
            payload.insert("attributes".into(), Value::Object(attributes(point.attributes)));
            payload.insert(
                "start_time".into(),
                if point.start == 0 { Value::Null } else { text_time(point.start) },
            );
            payload.insert("time_unix_nano".into(), json!(point.at.to_string()));
            payload.insert("flags".into(), json!(point.flags));
            payload.insert("no_recorded_value".into(), json!(false));
            payload.insert(
                "exemplars".into(),
                Value::Array(point.exemplars.iter().map(exemplar_json).collect()),
            );
            shared(&mut payload, resource, scope);
            let id = point_signal_id(&[&encoded(resource), &encoded(scope), &descriptor, &point.encoded]);
            // The first exemplar's trace is the point's.
            let trace_id = point.exemplars.first().map(|e| hex(&e.trace_id)).unwrap_or_default();
            let service = service_of(resource);
            Expected {
                transport,
                signal_type: SignalType::Metric,
                id,
                marker: marker_of(point.attributes),
                row: row(
                    SignalType::Metric,
                    id,
                    &trace_id,
                    &service,
                    &stored_time(point.at),
                    Value::Object(payload),
                ),
            }
        })
        .collect()
}

/// A gauge's or a sum's point: `kind_fields` and the type of its value.
fn number_point(p: &NumberDataPoint, mut kind_fields: Value) -> Point<'_> {
    let (value, value_type) = number(p.value);
    kind_fields["value_type"] = json!(value_type);
    Point {
        kind_fields,
        value,
        attributes: &p.attributes,
        start: p.start_time_unix_nano,
        at: p.time_unix_nano,
        exemplars: &p.exemplars,
        flags: p.flags,
        encoded: p.encode_to_vec(),
    }
}

fn number(value: Option<number_data_point::Value>) -> (Value, &'static str) {
    match value {
        Some(number_data_point::Value::AsDouble(d)) => (json!(d), "double"),
        Some(number_data_point::Value::AsInt(i)) => (json!(i), "int"),
        None => (Value::Null, ""),
    }
}

/// A legacy body's row: the payload as the README's legacy table says it is stored.
fn legacy_row(signal_type: SignalType, body: &Value) -> Expected {
    let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or_default();
    let at = |key: &str| parse_timestamp_str(text(key)).map(|t| format_timestamp(&t)).unwrap_or_default();
    let attributes = body.get("attributes").cloned().unwrap_or_else(|| json!({}));
    let (payload, timestamp) = match signal_type {
        SignalType::Log => (
            json!({"level": text("level"), "message": text("message"), "attributes": attributes}),
            at("timestamp"),
        ),
        SignalType::Trace => {
            let (start, end) =
                (parse_timestamp_str(text("start_time")), parse_timestamp_str(text("end_time")));
            let duration = match (start, end) {
                (Ok(start), Ok(end)) => (end - start).num_microseconds().map_or(0.0, |us| us as f64 / 1000.0),
                _ => 0.0,
            };
            let payload = json!({
                "span_id": text("span_id"), "parent_span_id": body.get("parent_span_id"), "name": text("name"),
                "start_time": at("start_time"), "end_time": at("end_time"), "duration_ms": duration,
                "status": text("status").to_ascii_uppercase(), "attributes": attributes,
            });
            (payload, at("start_time"))
        }
        SignalType::Metric => (
            json!({
                "metric_name": text("metric_name"), "value": body.get("value").and_then(Value::as_f64),
                "unit": text("unit"), "attributes": attributes,
            }),
            at("timestamp"),
        ),
    };
    let id = text("signal_id").parse().unwrap_or_default();
    let marker =
        body.pointer(&format!("/attributes/{MARKER}")).and_then(Value::as_str).unwrap_or_default().to_owned();
    Expected {
        transport: Transport::Legacy,
        signal_type,
        id,
        marker,
        row: row(signal_type, id, text("trace_id"), text("service_name"), &timestamp, payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::plan::Health;

    #[test]
    fn every_signal_of_a_write_is_expected_once_with_a_distinct_id_and_marker() {
        let write = Write::plan("c1", "svc", 1_764_000_000_123_456_789, Health::Healthy);
        let expected = expected_signals(&write);
        assert_eq!(expected.len(), 14, "5 spans, 3 logs, 3 points, 3 legacy signals");
        let ids: std::collections::HashSet<_> = expected.iter().map(|e| e.id).collect();
        let markers: std::collections::HashSet<_> = expected.iter().map(|e| e.marker.clone()).collect();
        assert_eq!((ids.len(), markers.len()), (14, 14));
        assert!(expected.iter().all(|e| e.row["trace_id"] == write.trace_id_hex()), "one trace");
        let span = expected.iter().find(|e| e.marker == "span.otlp_grpc.root").expect("the root");
        assert_eq!(span.row["payload"]["kind"], "SERVER");
        assert_eq!(span.row["payload"]["parent_span_id"], Value::Null);
        assert_eq!(span.row["payload"]["attributes"]["canary.empty"], Value::Null);
    }
}
