//! The canary's OTLP exports as OTLP/JSON (the protobuf JSON mapping with OTLP's exceptions:
//! trace and span ids as hex, 64-bit integers as strings, enums as numbers), for the
//! OTLP/HTTP JSON transport. Every field the canary sets is written, so the service decodes the
//! very message the protobuf transports carry (and derives the same ids from it). Of metrics,
//! the kinds the canary sends: gauges, sums and histograms.

use base64::Engine;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{exemplar, metric, number_data_point, Exemplar, Metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Map, Value};

use super::plan::hex;

fn int(n: impl ToString) -> Value {
    Value::String(n.to_string())
}

pub fn any_value(value: &AnyValue) -> Value {
    match &value.value {
        None => json!({}),
        Some(any_value::Value::StringValue(s)) => json!({"stringValue": s}),
        Some(any_value::Value::BoolValue(b)) => json!({"boolValue": b}),
        Some(any_value::Value::IntValue(i)) => json!({"intValue": int(i)}),
        Some(any_value::Value::DoubleValue(d)) => json!({"doubleValue": d}),
        Some(any_value::Value::BytesValue(bytes)) => {
            json!({"bytesValue": base64::engine::general_purpose::STANDARD.encode(bytes)})
        }
        Some(any_value::Value::ArrayValue(array)) => {
            json!({"arrayValue": {"values": array.values.iter().map(any_value).collect::<Vec<_>>()}})
        }
        Some(any_value::Value::KvlistValue(list)) => {
            json!({"kvlistValue": {"values": attributes(&list.values)}})
        }
        Some(any_value::Value::StringValueStrindex(i)) => json!({"stringValueStrindex": i}),
    }
}

fn attributes(list: &[KeyValue]) -> Vec<Value> {
    list.iter()
        .map(|kv| match &kv.value {
            Some(value) => json!({"key": kv.key, "value": any_value(value)}),
            None => json!({"key": kv.key}),
        })
        .collect()
}

fn resource(resource: Option<&Resource>) -> Value {
    resource.map_or(Value::Null, |r| {
        json!({"attributes": attributes(&r.attributes), "droppedAttributesCount": r.dropped_attributes_count})
    })
}

fn scope(scope: Option<&InstrumentationScope>) -> Value {
    scope.map_or(Value::Null, |s| {
        json!({
            "name": s.name, "version": s.version, "attributes": attributes(&s.attributes),
            "droppedAttributesCount": s.dropped_attributes_count,
        })
    })
}

fn span(span: &Span) -> Value {
    let events: Vec<Value> = span
        .events
        .iter()
        .map(|e| {
            json!({
                "timeUnixNano": int(e.time_unix_nano), "name": e.name, "attributes": attributes(&e.attributes),
                "droppedAttributesCount": e.dropped_attributes_count,
            })
        })
        .collect();
    let links: Vec<Value> = span
        .links
        .iter()
        .map(|l| {
            json!({
                "traceId": hex(&l.trace_id), "spanId": hex(&l.span_id), "traceState": l.trace_state,
                "attributes": attributes(&l.attributes), "droppedAttributesCount": l.dropped_attributes_count,
                "flags": l.flags,
            })
        })
        .collect();
    json!({
        "traceId": hex(&span.trace_id), "spanId": hex(&span.span_id), "traceState": span.trace_state,
        "parentSpanId": hex(&span.parent_span_id), "flags": span.flags, "name": span.name, "kind": span.kind,
        "startTimeUnixNano": int(span.start_time_unix_nano), "endTimeUnixNano": int(span.end_time_unix_nano),
        "attributes": attributes(&span.attributes), "droppedAttributesCount": span.dropped_attributes_count,
        "events": events, "droppedEventsCount": span.dropped_events_count, "links": links,
        "droppedLinksCount": span.dropped_links_count,
        "status": span.status.as_ref().map(|s| json!({"message": s.message, "code": s.code})),
    })
}

pub fn traces(request: &ExportTraceServiceRequest) -> Value {
    let resource_spans: Vec<Value> = request
        .resource_spans
        .iter()
        .map(|r| {
            let scope_spans: Vec<Value> = r
                .scope_spans
                .iter()
                .map(|s| {
                    json!({
                        "scope": scope(s.scope.as_ref()), "spans": s.spans.iter().map(span).collect::<Vec<_>>(),
                        "schemaUrl": s.schema_url,
                    })
                })
                .collect();
            json!({"resource": resource(r.resource.as_ref()), "scopeSpans": scope_spans, "schemaUrl": r.schema_url})
        })
        .collect();
    json!({"resourceSpans": resource_spans})
}

pub fn logs(request: &ExportLogsServiceRequest) -> Value {
    let resource_logs: Vec<Value> = request
        .resource_logs
        .iter()
        .map(|r| {
            let scope_logs: Vec<Value> = r
                .scope_logs
                .iter()
                .map(|s| {
                    let records: Vec<Value> = s
                        .log_records
                        .iter()
                        .map(|l| {
                            json!({
                                "timeUnixNano": int(l.time_unix_nano),
                                "observedTimeUnixNano": int(l.observed_time_unix_nano),
                                "severityNumber": l.severity_number, "severityText": l.severity_text,
                                "body": l.body.as_ref().map(any_value), "attributes": attributes(&l.attributes),
                                "droppedAttributesCount": l.dropped_attributes_count, "flags": l.flags,
                                "traceId": hex(&l.trace_id), "spanId": hex(&l.span_id), "eventName": l.event_name,
                            })
                        })
                        .collect();
                    json!({"scope": scope(s.scope.as_ref()), "logRecords": records, "schemaUrl": s.schema_url})
                })
                .collect();
            json!({"resource": resource(r.resource.as_ref()), "scopeLogs": scope_logs, "schemaUrl": r.schema_url})
        })
        .collect();
    json!({"resourceLogs": resource_logs})
}

fn exemplars(list: &[Exemplar]) -> Vec<Value> {
    list.iter()
        .map(|e| {
            let mut out = Map::new();
            out.insert("filteredAttributes".into(), json!(attributes(&e.filtered_attributes)));
            out.insert("timeUnixNano".into(), int(e.time_unix_nano));
            out.insert("spanId".into(), json!(hex(&e.span_id)));
            out.insert("traceId".into(), json!(hex(&e.trace_id)));
            match e.value {
                Some(exemplar::Value::AsDouble(d)) => out.insert("asDouble".into(), json!(d)),
                Some(exemplar::Value::AsInt(i)) => out.insert("asInt".into(), int(i)),
                None => None,
            };
            Value::Object(out)
        })
        .collect()
}

fn metric(m: &Metric) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(m.name));
    out.insert("description".into(), json!(m.description));
    out.insert("unit".into(), json!(m.unit));
    let number_points = |points: &[opentelemetry_proto::tonic::metrics::v1::NumberDataPoint]| -> Vec<Value> {
        points
            .iter()
            .map(|p| {
                let mut point = Map::new();
                point.insert("attributes".into(), json!(attributes(&p.attributes)));
                point.insert("startTimeUnixNano".into(), int(p.start_time_unix_nano));
                point.insert("timeUnixNano".into(), int(p.time_unix_nano));
                match p.value {
                    Some(number_data_point::Value::AsDouble(d)) => point.insert("asDouble".into(), json!(d)),
                    Some(number_data_point::Value::AsInt(i)) => point.insert("asInt".into(), int(i)),
                    None => None,
                };
                point.insert("exemplars".into(), json!(exemplars(&p.exemplars)));
                point.insert("flags".into(), json!(p.flags));
                Value::Object(point)
            })
            .collect()
    };
    match &m.data {
        Some(metric::Data::Gauge(gauge)) => {
            out.insert("gauge".into(), json!({"dataPoints": number_points(&gauge.data_points)}));
        }
        Some(metric::Data::Sum(sum)) => {
            out.insert(
                "sum".into(),
                json!({
                    "dataPoints": number_points(&sum.data_points),
                    "aggregationTemporality": sum.aggregation_temporality, "isMonotonic": sum.is_monotonic,
                }),
            );
        }
        Some(metric::Data::Histogram(histogram)) => {
            let points: Vec<Value> = histogram
                .data_points
                .iter()
                .map(|p| {
                    json!({
                        "attributes": attributes(&p.attributes), "startTimeUnixNano": int(p.start_time_unix_nano),
                        "timeUnixNano": int(p.time_unix_nano), "count": int(p.count), "sum": p.sum,
                        "bucketCounts": p.bucket_counts.iter().map(int).collect::<Vec<_>>(),
                        "explicitBounds": p.explicit_bounds, "exemplars": exemplars(&p.exemplars),
                        "flags": p.flags, "min": p.min, "max": p.max,
                    })
                })
                .collect();
            out.insert(
                "histogram".into(),
                json!({"dataPoints": points, "aggregationTemporality": histogram.aggregation_temporality}),
            );
        }
        // Not among what the canary sends.
        Some(metric::Data::ExponentialHistogram(_) | metric::Data::Summary(_)) | None => {}
    }
    Value::Object(out)
}

pub fn metrics(request: &ExportMetricsServiceRequest) -> Value {
    let resource_metrics: Vec<Value> = request
        .resource_metrics
        .iter()
        .map(|r| {
            let scope_metrics: Vec<Value> = r
                .scope_metrics
                .iter()
                .map(|s| {
                    json!({
                        "scope": scope(s.scope.as_ref()), "metrics": s.metrics.iter().map(metric).collect::<Vec<_>>(),
                        "schemaUrl": s.schema_url,
                    })
                })
                .collect();
            json!({"resource": resource(r.resource.as_ref()), "scopeMetrics": scope_metrics, "schemaUrl": r.schema_url})
        })
        .collect();
    json!({"resourceMetrics": resource_metrics})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_decodes_to_the_message_the_protobuf_transports_carry() {
        use crate::canary::plan::{Health, Write};
        let write = Write::plan("json-check", "svc", 1_764_000_000_123_456_789, Health::Failing);
        for exports in &write.otlp {
            // The service's own decoder: a test may reach across the layers the canary may not.
            use crate::receivers::otlp_json::{logs_request, metrics_request, traces_request};
            assert_eq!(traces_request(&traces(&exports.traces)).expect("decodes"), exports.traces);
            assert_eq!(logs_request(&logs(&exports.logs)).expect("decodes"), exports.logs);
            assert_eq!(metrics_request(&metrics(&exports.metrics)).expect("decodes"), exports.metrics);
        }
    }
}
