//! What the two Jaeger answers (v1's Jaeger JSON, v3's OTLP JSON) read from a stored span or
//! log, read one way: the signals of a trace sorted into spans and logs, each log placed on its
//! span, each span's times in nanoseconds, its kind, status and scope.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::api::trace_tree::{text, SpanGraph};
use crate::model::payload::{keys, time_of_nanos, Facts};
use crate::model::time::parse_timestamp_str;
use crate::model::{SignalType, StoredSignal};

/// The spans and logs of one trace (its metric points are left out), ready to map.
pub struct TraceView {
    pub trace_id: String,
    /// Sorted by start.
    pub spans: Vec<StoredSignal>,
    pub graph: SpanGraph,
    /// The logs of each span (by position in `spans`), oldest first.
    pub logs: Vec<Vec<StoredSignal>>,
    /// Spans whose parent is not in the trace: their parent's id.
    pub missing_parents: HashMap<usize, String>,
    /// Log records and no span at all: the logs alone, oldest first.
    pub orphan_logs: Vec<StoredSignal>,
}

impl TraceView {
    /// `None` when the trace has neither a span nor a log.
    pub fn of(trace_id: &str, signals: Vec<StoredSignal>) -> Option<TraceView> {
        let (mut spans, mut logs): (Vec<StoredSignal>, Vec<StoredSignal>) = signals
            .into_iter()
            .filter(|s| match s.signal_type {
                SignalType::Trace => text(&s.payload, keys::SPAN_ID).is_some(),
                SignalType::Log => true,
                SignalType::Metric => false,
            })
            .partition(|s| s.signal_type == SignalType::Trace);
        if spans.is_empty() && logs.is_empty() {
            return None;
        }
        spans.sort_by_key(|s| (s.timestamp, s.id));
        logs.sort_by_key(|l| (l.timestamp, l.id));
        let graph = SpanGraph::of(&spans);
        let missing_parents = spans
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let parent = text(&s.payload, keys::PARENT_SPAN_ID)?;
                (!graph.index.contains_key(&parent)).then_some((i, parent))
            })
            .collect();
        let mut by_span: Vec<Vec<StoredSignal>> = vec![Vec::new(); spans.len()];
        let mut orphan_logs = Vec::new();
        // A log naming no span of the trace goes to the first root (the earliest span without
        // a parent in the trace).
        let root = graph.order.first().map(|(i, _)| *i);
        for log in logs {
            let named = text(&log.payload, keys::SPAN_ID).and_then(|id| graph.index.get(&id).copied());
            match named.or(root) {
                Some(span) => by_span[span].push(log),
                None => orphan_logs.push(log),
            }
        }
        Some(TraceView {
            trace_id: trace_id.to_owned(),
            spans,
            graph,
            logs: by_span,
            missing_parents,
            orphan_logs,
        })
    }
}

/// The OTLP kind a span carries (`SERVER`, …); `None` when unspecified or a legacy span.
pub fn kind(span: &StoredSignal) -> Option<&str> {
    span.payload.get(keys::KIND).and_then(Value::as_str).filter(|k| !k.is_empty() && *k != "UNSPECIFIED")
}

/// `OK` or `ERROR`; `None` when unset.
pub fn status(span: &StoredSignal) -> Option<&str> {
    span.payload.get(keys::STATUS).and_then(Value::as_str).filter(|s| matches!(*s, "OK" | "ERROR"))
}

pub fn status_message(span: &StoredSignal) -> Option<&str> {
    span.payload.get(keys::STATUS_MESSAGE).and_then(Value::as_str).filter(|m| !m.is_empty())
}

/// The span's operation: its name, or the one name given to unnamed spans.
pub fn operation(span: &StoredSignal) -> String {
    Facts { text: text(&span.payload, keys::NAME), ..Facts::default() }.operation().to_owned()
}

fn nanos_of(time: DateTime<Utc>) -> i64 {
    time.timestamp_nanos_opt().unwrap_or(0)
}

fn nanos_field(payload: &Value, key: &str) -> Option<i64> {
    let nanos = payload.get(key)?.as_str()?.parse::<u64>().ok()?;
    time_of_nanos(nanos).map(nanos_of)
}

fn time_field(payload: &Value, key: &str) -> Option<i64> {
    payload.get(key).and_then(Value::as_str).and_then(|t| parse_timestamp_str(t).ok()).map(nanos_of)
}

/// The span's start and end in nanoseconds since the epoch, both known (start > 0, end ≥
/// start): the OTLP nanoseconds, else the stored times, else its time and `duration_ms`.
pub fn span_nanos(span: &StoredSignal) -> (i64, i64) {
    let payload = &span.payload;
    let start = nanos_field(payload, "start_time_unix_nano")
        .or_else(|| time_field(payload, "start_time"))
        .unwrap_or_else(|| nanos_of(span.timestamp))
        .max(1_000);
    let from_duration = || {
        let ms = payload.get(keys::DURATION_MS).and_then(Value::as_f64)?;
        Some(start + (ms * 1_000_000.0).round() as i64)
    };
    let end = nanos_field(payload, "end_time_unix_nano")
        .or_else(|| time_field(payload, "end_time"))
        .or_else(from_duration)
        .unwrap_or(start);
    (start, end.max(start))
}

/// A log's or an event's time in nanoseconds (a log's stored time; an event's own, else the span's start).
pub fn log_nanos(log: &StoredSignal) -> i64 {
    nanos_of(log.timestamp).max(1_000)
}

pub fn event_nanos(event: &Value, span_start: i64) -> i64 {
    time_field(event, "time").unwrap_or(span_start)
}

/// An object field of a payload (attributes, a resource), empty when absent.
pub fn object<'a>(value: &'a Value, key: &str) -> &'a Map<String, Value> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    value.get(key).and_then(Value::as_object).unwrap_or(&EMPTY)
}

/// The span's events (empty for a legacy span).
pub fn events(span: &StoredSignal) -> &[Value] {
    span.payload.get(keys::EVENTS).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The span's links (OTLP only).
pub fn links(span: &StoredSignal) -> &[Value] {
    span.payload.get("links").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// What a log record says, as fields in a fixed order: `level`, `message`, `stack_trace`, then
/// its attributes (the OTLP body, when structured, is in `message` as its JSON text).
pub fn log_fields(log: &StoredSignal) -> Vec<(String, Value)> {
    let mut fields = Vec::new();
    for key in [keys::LEVEL, keys::MESSAGE, keys::STACK_TRACE] {
        if let Some(value) = log.payload.get(key).filter(|v| !v.is_null() && v.as_str() != Some("")) {
            fields.push((key.to_owned(), value.clone()));
        }
    }
    fields.extend(object(&log.payload, keys::ATTRIBUTES).iter().map(|(k, v)| (k.clone(), v.clone())));
    fields
}
