//! A trace as Jaeger's v3 API answers it: OTLP JSON (`resourceSpans`, as
//! `ExportTraceServiceRequest` in the protobuf JSON mapping), from a [`TraceView`]. Pure.
//!
//! OTLP has no logs on spans: the trace's log records become events named `log` on their span,
//! so a viewer reading v3 shows them where v1 shows them.

use serde_json::{json, Map, Value};

use super::span_view::{self, TraceView};
use crate::api::trace_tree::text;
use crate::model::payload::keys;
use crate::model::StoredSignal;

/// A JSON value as an OTLP `AnyValue` (64-bit integers as strings, as proto3 JSON writes them).
pub fn any_value(value: &Value) -> Value {
    match value {
        Value::String(s) => json!({"stringValue": s}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n}),
        Value::Null => json!({}),
        Value::Array(values) => {
            json!({"arrayValue": {"values": values.iter().map(any_value).collect::<Vec<_>>()}})
        }
        Value::Object(map) => json!({"kvlistValue": {"values": key_values(map)}}),
    }
}

pub fn key_values(map: &Map<String, Value>) -> Vec<Value> {
    map.iter().map(|(k, v)| json!({"key": k, "value": any_value(v)})).collect()
}

fn kind_number(kind: Option<&str>) -> u8 {
    match kind {
        Some("INTERNAL") => 1,
        Some("SERVER") => 2,
        Some("CLIENT") => 3,
        Some("PRODUCER") => 4,
        Some("CONSUMER") => 5,
        _ => 0,
    }
}

fn status_number(status: Option<&str>) -> u8 {
    match status {
        Some("OK") => 1,
        Some("ERROR") => 2,
        _ => 0,
    }
}

fn log_event(log: &StoredSignal) -> Value {
    let attributes: Map<String, Value> = span_view::log_fields(log).into_iter().collect();
    json!({"timeUnixNano": span_view::log_nanos(log).to_string(), "name": "log", "attributes": key_values(&attributes)})
}

fn span_json(view: &TraceView, position: usize) -> Value {
    let span = &view.spans[position];
    let (start, end) = span_view::span_nanos(span);
    let mut events: Vec<(i64, Value)> = span_view::events(span)
        .iter()
        .map(|event| {
            let at = span_view::event_nanos(event, start);
            let name = event.get(keys::NAME).cloned().unwrap_or(Value::String(String::new()));
            let attributes = key_values(span_view::object(event, keys::ATTRIBUTES));
            (at, json!({"timeUnixNano": at.to_string(), "name": name, "attributes": attributes}))
        })
        .collect();
    events.extend(view.logs[position].iter().map(|log| (span_view::log_nanos(log), log_event(log))));
    events.sort_by_key(|(at, _)| *at);
    let links: Vec<Value> = span_view::links(span)
        .iter()
        .map(|link| {
            json!({
                "traceId": text(link, "trace_id").unwrap_or_default(),
                "spanId": text(link, keys::SPAN_ID).unwrap_or_default(),
                "traceState": text(link, "trace_state").unwrap_or_default(),
                "attributes": key_values(span_view::object(link, keys::ATTRIBUTES)),
            })
        })
        .collect();
    let mut out = json!({
        "traceId": view.trace_id,
        "spanId": view.graph.ids[position],
        "name": span_view::operation(span),
        "kind": kind_number(span_view::kind(span)),
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": end.to_string(),
        "attributes": key_values(span_view::object(&span.payload, keys::ATTRIBUTES)),
        "events": events.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        "links": links,
        "status": {"code": status_number(span_view::status(span)), "message": span_view::status_message(span).unwrap_or_default()},
    });
    if let Some(parent) = text(&span.payload, keys::PARENT_SPAN_ID) {
        out["parentSpanId"] = Value::String(parent);
    }
    if let Some(state) = text(&span.payload, "trace_state").filter(|s| !s.is_empty()) {
        out["traceState"] = Value::String(state);
    }
    if let Some(flags) = span.payload.get("flags").and_then(Value::as_u64) {
        out["flags"] = json!(flags);
    }
    out
}

/// The resource of a span: its stored attributes (OTLP), or just its service (legacy).
fn resource_of(span: &StoredSignal) -> Map<String, Value> {
    let mut resource = span_view::object(&span.payload, "resource").clone();
    resource.entry("service.name").or_insert_with(|| Value::String(span.service_name.clone()));
    resource
}

/// The spans of one scope: the scope's JSON, its spans.
type ScopeGroup = (Value, Vec<Value>);
/// The scopes of one resource.
type ResourceGroup = (Map<String, Value>, Vec<ScopeGroup>);

/// The `resourceSpans` of the traces, spans grouped by resource and then by scope, in the
/// order they first appear.
pub fn resource_spans(views: &[TraceView]) -> Vec<Value> {
    let mut groups: Vec<ResourceGroup> = Vec::new();
    for view in views {
        for &(position, _) in &view.graph.order {
            let span = &view.spans[position];
            let resource = resource_of(span);
            let scope = span.payload.get("scope").cloned().unwrap_or_else(|| json!({}));
            let scope = json!({
                "name": scope.get("name").cloned().unwrap_or(Value::String(String::new())),
                "version": scope.get("version").cloned().unwrap_or(Value::String(String::new())),
                "attributes": key_values(span_view::object(&scope, keys::ATTRIBUTES)),
            });
            let at = match groups.iter().position(|(r, _)| *r == resource) {
                Some(at) => at,
                None => {
                    groups.push((resource, Vec::new()));
                    groups.len() - 1
                }
            };
            let scopes = &mut groups[at].1;
            let spans = match scopes.iter().position(|(s, _)| *s == scope) {
                Some(at) => &mut scopes[at].1,
                None => {
                    scopes.push((scope, Vec::new()));
                    &mut scopes.last_mut().expect("just pushed").1
                }
            };
            spans.push(span_json(view, position));
        }
    }
    groups
        .into_iter()
        .map(|(resource, scopes)| {
            json!({
                "resource": {"attributes": key_values(&resource)},
                "scopeSpans": scopes.into_iter().map(|(scope, spans)| json!({"scope": scope, "spans": spans})).collect::<Vec<_>>(),
            })
        })
        .collect()
}
