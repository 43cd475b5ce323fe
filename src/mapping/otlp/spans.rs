//! Spans -> `trace` signals.

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use serde_json::{json, Map, Value};

use super::attributes::{attributes_json, resource_json, scope_json, service_name};
use super::ids::{hex, id_problem, span_signal_id, valid_id};
use super::{first_known_time, nanos_json, time_json, Mapped};
use crate::mapping::text::{map_without_nul, without_nul};
use crate::model::time::format_timestamp;
use crate::model::{Signal, SignalType};

/// One `trace` signal per span. A span whose trace id is not 16 bytes, or whose span id is not
/// 8 bytes, or either all zeros, is rejected (the ids are required, trace.proto).
pub fn spans_to_signals(request: &ExportTraceServiceRequest, received_at: DateTime<Utc>) -> Mapped {
    let count = request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
    let mut mapped = Mapped::with_capacity(count);
    for resource_spans in &request.resource_spans {
        let resource = resource_spans.resource.as_ref();
        let service = without_nul(service_name(resource));
        let resource = resource_json(resource);
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_json(scope_spans.scope.as_ref());
            for span in &scope_spans.spans {
                match span_signal(span, &service, &resource, &scope, received_at) {
                    Ok(signal) => mapped.signals.push(signal),
                    Err(why) => mapped.reject(format!("span {:?}: {why}", span.name)),
                }
            }
        }
    }
    mapped
}

fn span_signal(
    span: &OtlpSpan,
    service: &str,
    resource: &Value,
    scope: &Value,
    received_at: DateTime<Utc>,
) -> Result<Signal, String> {
    if let Some(problem) =
        id_problem("trace_id", &span.trace_id, 16).or_else(|| id_problem("span_id", &span.span_id, 8))
    {
        return Err(problem);
    }
    // OTLP time 0 means "unknown": the end time, else the time we received it.
    let known = first_known_time(&[span.start_time_unix_nano, span.end_time_unix_nano]);
    let start = known.unwrap_or(received_at);
    let duration_ms = match (span.start_time_unix_nano, span.end_time_unix_nano) {
        (start, end) if start > 0 && end >= start => json!((end - start) as f64 / 1_000_000.0),
        _ => Value::Null,
    };
    let (status, status_message) = match &span.status {
        Some(status) => (status_name(status.code), status.message.clone()),
        None => ("UNSET", String::new()),
    };
    let parent = valid_id(&span.parent_span_id, 8).then(|| hex(&span.parent_span_id));

    let mut payload = Map::new();
    payload.insert("span_id".into(), json!(hex(&span.span_id)));
    payload.insert("parent_span_id".into(), json!(parent));
    payload.insert("name".into(), json!(span.name));
    payload.insert("kind".into(), json!(kind_name(span.kind)));
    payload.insert("start_time".into(), json!(format_timestamp(&start)));
    payload.insert("end_time".into(), time_json(span.end_time_unix_nano));
    payload.insert("start_time_unix_nano".into(), nanos_json(span.start_time_unix_nano));
    payload.insert("end_time_unix_nano".into(), nanos_json(span.end_time_unix_nano));
    payload.insert("duration_ms".into(), duration_ms);
    payload.insert("status".into(), json!(status));
    payload.insert("status_message".into(), json!(status_message));
    payload.insert("attributes".into(), Value::Object(attributes_json(&span.attributes)));
    payload.insert(
        "events".into(),
        span.events
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "time": time_json(e.time_unix_nano),
                    "attributes": attributes_json(&e.attributes),
                })
            })
            .collect(),
    );
    payload.insert(
        "links".into(),
        span.links
            .iter()
            .map(|l| {
                json!({
                    "trace_id": hex(&l.trace_id),
                    "span_id": hex(&l.span_id),
                    "trace_state": l.trace_state,
                    "attributes": attributes_json(&l.attributes),
                })
            })
            .collect(),
    );
    payload.insert("trace_state".into(), json!(span.trace_state));
    payload.insert("flags".into(), json!(span.flags));
    payload.insert(
        "dropped".into(),
        json!({
            "attributes": span.dropped_attributes_count,
            "events": span.dropped_events_count,
            "links": span.dropped_links_count,
        }),
    );
    payload.insert("resource".into(), resource.clone());
    payload.insert("scope".into(), scope.clone());
    let payload = map_without_nul(payload);
    Ok(Signal {
        signal_id: span_signal_id(&span.trace_id, &span.span_id),
        signal_type: SignalType::Trace,
        trace_id: hex(&span.trace_id),
        service_name: service.to_owned(),
        timestamp: start,
        payload,
        time_unknown: known.is_none(),
    })
}

/// Span kinds by explicit match: an ordinal cast has shifted SERVER to CLIENT elsewhere.
fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "INTERNAL",
        Ok(SpanKind::Server) => "SERVER",
        Ok(SpanKind::Client) => "CLIENT",
        Ok(SpanKind::Producer) => "PRODUCER",
        Ok(SpanKind::Consumer) => "CONSUMER",
        Ok(SpanKind::Unspecified) | Err(_) => "UNSPECIFIED",
    }
}

fn status_name(code: i32) -> &'static str {
    match StatusCode::try_from(code) {
        Ok(StatusCode::Ok) => "OK",
        Ok(StatusCode::Error) => "ERROR",
        Ok(StatusCode::Unset) | Err(_) => "UNSET",
    }
}
