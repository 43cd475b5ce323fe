//! A trace as Jaeger's v1 query API answers it (the JSON model of jaeger-ui and Grafana's
//! Jaeger data source), from a [`TraceView`]. Pure.
//!
//! The rules those readers enforce: every span has a start time (they drop one at 0), every
//! `processID` is in `processes` (jaeger-ui crashes otherwise), the parent is `references[0]`,
//! and an error is the tag `error` = `true`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::span_view::{self, TraceView};
use crate::api::trace_tree::text;
use crate::model::payload::keys;
use crate::model::StoredSignal;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Trace {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub spans: Vec<Span>,
    #[schema(value_type = Object)]
    pub processes: BTreeMap<String, Process>,
    pub warnings: Option<Vec<String>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
    pub operation_name: String,
    pub references: Vec<Reference>,
    /// Microseconds since the epoch, never 0.
    pub start_time: i64,
    /// Microseconds.
    pub duration: i64,
    pub tags: Vec<Tag>,
    pub logs: Vec<Log>,
    #[serde(rename = "processID")]
    pub process_id: String,
    pub warnings: Option<Vec<String>>,
    pub flags: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reference {
    #[serde(rename = "refType")]
    pub ref_type: &'static str,
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Tag {
    pub key: String,
    /// `string`, `bool`, `int64`, `float64`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A string, boolean or number, as `type` says.
    #[schema(schema_with = crate::http::schema::any_value_schema)]
    pub value: Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Log {
    /// Microseconds since the epoch.
    pub timestamp: i64,
    pub fields: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub service_name: String,
    pub tags: Vec<Tag>,
}

/// A JSON value as a typed tag: arrays and objects as their JSON text, `null` as `""`.
pub fn tag(key: &str, value: &Value) -> Tag {
    let (kind, value) = match value {
        Value::String(_) => ("string", value.clone()),
        Value::Bool(_) => ("bool", value.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => ("int64", value.clone()),
        Value::Number(_) => ("float64", value.clone()),
        Value::Null => ("string", Value::String(String::new())),
        Value::Array(_) | Value::Object(_) => ("string", Value::String(value.to_string())),
    };
    Tag { key: key.to_owned(), kind, value }
}

fn text_tag(key: &str, value: &str) -> Tag {
    tag(key, &Value::String(value.to_owned()))
}

fn micros(nanos: i64) -> i64 {
    (nanos / 1_000).max(1)
}

/// The span's tags: its attributes, then what OTLP carries beside them, as Jaeger's own OTLP
/// translation names it (`span.kind`, `otel.status_code`, `otel.status_description`, `error`,
/// `otel.scope.name`, `otel.scope.version`, `w3c.tracestate`).
pub fn span_tags(span: &StoredSignal) -> Vec<Tag> {
    let mut tags: Vec<Tag> =
        span_view::object(&span.payload, keys::ATTRIBUTES).iter().map(|(k, v)| tag(k, v)).collect();
    if let Some(kind) = span_view::kind(span) {
        tags.push(text_tag("span.kind", &kind.to_ascii_lowercase()));
    }
    if let Some(status) = span_view::status(span) {
        tags.push(text_tag("otel.status_code", status));
        if status == "ERROR" {
            tags.push(tag("error", &Value::Bool(true)));
        }
    }
    if let Some(message) = span_view::status_message(span) {
        tags.push(text_tag("otel.status_description", message));
    }
    let scope = span.payload.get("scope").unwrap_or(&Value::Null);
    for (field, key) in [("name", "otel.scope.name"), ("version", "otel.scope.version")] {
        if let Some(value) = scope.get(field).and_then(Value::as_str).filter(|v| !v.is_empty()) {
            tags.push(text_tag(key, value));
        }
    }
    if let Some(state) = span.payload.get("trace_state").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        tags.push(text_tag("w3c.tracestate", state));
    }
    tags
}

/// The process of a span or log: its service, and its resource's attributes but the name.
fn process_of(signal: &StoredSignal) -> Process {
    let resource = span_view::object(&signal.payload, "resource");
    let tags =
        resource.iter().filter(|(k, _)| k.as_str() != "service.name").map(|(k, v)| tag(k, v)).collect();
    Process { service_name: signal.service_name.clone(), tags }
}

/// Processes numbered `p1`, `p2`, … in order of first use.
#[derive(Default)]
struct Processes {
    known: Vec<Process>,
}

impl Processes {
    fn id_of(&mut self, signal: &StoredSignal) -> String {
        let process = process_of(signal);
        let at = match self.known.iter().position(|p| *p == process) {
            Some(at) => at,
            None => {
                self.known.push(process);
                self.known.len() - 1
            }
        };
        format!("p{}", at + 1)
    }

    fn into_map(self) -> BTreeMap<String, Process> {
        self.known.into_iter().enumerate().map(|(i, p)| (format!("p{}", i + 1), p)).collect()
    }
}

fn log_of(log: &StoredSignal) -> Log {
    let mut fields = vec![text_tag("event", "log")];
    fields.extend(span_view::log_fields(log).iter().map(|(k, v)| tag(k, v)));
    Log { timestamp: micros(span_view::log_nanos(log)), fields }
}

fn event_log(event: &Value, span_start: i64) -> Log {
    let name = event.get(keys::NAME).and_then(Value::as_str).unwrap_or_default();
    let mut fields = vec![text_tag("event", name)];
    fields.extend(span_view::object(event, keys::ATTRIBUTES).iter().map(|(k, v)| tag(k, v)));
    Log { timestamp: micros(span_view::event_nanos(event, span_start)), fields }
}

fn references(view: &TraceView, position: usize, depth: usize, warnings: &mut Vec<String>) -> Vec<Reference> {
    let span = &view.spans[position];
    let mut references = Vec::new();
    if let Some(parent) = text(&span.payload, keys::PARENT_SPAN_ID) {
        if view.missing_parents.contains_key(&position) {
            warnings
                .push(format!("parent span {parent} is not in the trace (not received yet, or not stored)"));
            references.push(Reference {
                ref_type: "CHILD_OF",
                trace_id: view.trace_id.clone(),
                span_id: parent,
            });
        } else if depth == 0 && view.graph.parents[position].is_some() {
            // A cycle of parents (malformed input): drawn as a root rather than not at all.
            warnings.push(format!("parent span {parent} is one of this span's descendants; shown as a root"));
        } else {
            references.push(Reference {
                ref_type: "CHILD_OF",
                trace_id: view.trace_id.clone(),
                span_id: parent,
            });
        }
    }
    for link in span_view::links(span) {
        let (Some(trace_id), Some(span_id)) = (text(link, "trace_id"), text(link, keys::SPAN_ID)) else {
            continue;
        };
        references.push(Reference { ref_type: "FOLLOWS_FROM", trace_id, span_id });
    }
    references
}

/// The trace in Jaeger's model. Spans come depth-first; logs of the trace are logs of their span
/// beside its events, oldest first. A trace with logs and no span yet gets one placeholder span
/// holding them, with a warning saying so.
pub fn trace(view: &TraceView) -> Trace {
    let mut processes = Processes::default();
    let mut spans = Vec::with_capacity(view.spans.len());
    for &(position, depth) in &view.graph.order {
        let span = &view.spans[position];
        let mut warnings = Vec::new();
        let (start, end) = span_view::span_nanos(span);
        let references = references(view, position, depth, &mut warnings);
        let mut logs: Vec<Log> = span_view::events(span).iter().map(|e| event_log(e, start)).collect();
        logs.extend(view.logs[position].iter().map(log_of));
        logs.sort_by_key(|l| l.timestamp);
        let flags = span.payload.get("flags").and_then(Value::as_u64).unwrap_or(0) & 0xff;
        spans.push(Span {
            trace_id: view.trace_id.clone(),
            span_id: view.graph.ids[position].clone(),
            operation_name: span_view::operation(span),
            references,
            start_time: micros(start),
            duration: (end - start) / 1_000,
            tags: span_tags(span),
            logs,
            process_id: processes.id_of(span),
            warnings: (!warnings.is_empty()).then_some(warnings),
            flags: flags as u32,
        });
    }
    if let (true, Some(first), Some(last)) =
        (spans.is_empty(), view.orphan_logs.first(), view.orphan_logs.last())
    {
        let start = micros(span_view::log_nanos(first));
        spans.push(Span {
            trace_id: view.trace_id.clone(),
            span_id: placeholder_span_id(&view.trace_id),
            operation_name: "(logs without a span)".to_owned(),
            references: Vec::new(),
            start_time: start,
            duration: micros(span_view::log_nanos(last)) - start,
            tags: Vec::new(),
            logs: view.orphan_logs.iter().map(log_of).collect(),
            process_id: processes.id_of(first),
            warnings: Some(vec![format!(
                "no span of this trace has arrived; this placeholder holds its {} log records",
                view.orphan_logs.len()
            )]),
            flags: 0,
        });
    }
    Trace { trace_id: view.trace_id.clone(), spans, processes: processes.into_map(), warnings: None }
}

/// A span id for the placeholder span: the last 16 hex digits of the trace id (never one of the
/// trace's spans: it has none).
pub fn placeholder_span_id(trace_id: &str) -> String {
    let hex: String = trace_id.chars().filter(char::is_ascii_hexdigit).collect();
    format!("{:0>16}", &hex[hex.len().saturating_sub(16)..]).replace("0000000000000000", "0000000000000001")
}
