//! `GET /query/traces/{trace_id}/tree`: a trace as the waterfall view draws it. Pure: built from
//! the trace's stored signals.
//!
//! The spans come as a flat list in depth-first order (children by start time), each with its
//! `depth`, `parent_span_id` and `children` ids, so a waterfall is drawn row by row and no
//! client (nor our serializer) recurses over a deep trace. A span whose parent is not in the
//! trace is a root; spans caught in a parent cycle (malformed input) are roots too.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::model::payload::{keys, Facts};
use crate::model::{SignalType, StoredSignal};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TraceTree {
    pub trace_id: String,
    #[serde(serialize_with = "crate::model::time::serialize_option")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::model::time::serialize_option")]
    pub end_time: Option<DateTime<Utc>>,
    /// From the earliest start to the latest end of its spans (and logs).
    pub duration_ms: f64,
    pub services: Vec<String>,
    pub span_count: usize,
    pub error_count: usize,
    pub root_span_ids: Vec<String>,
    pub spans: Vec<TreeSpan>,
    /// Logs that name no span of this trace.
    pub unattached_logs: Vec<StoredSignal>,
    pub metrics: Vec<StoredSignal>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TreeSpan {
    pub signal_id: Uuid,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub service_name: String,
    #[schema(value_type = Option<String>)]
    pub kind: Value,
    #[schema(value_type = Option<String>)]
    pub status: Value,
    #[schema(value_type = Option<String>)]
    pub status_message: Value,
    /// Status ERROR, or an `exception` event.
    pub error: bool,
    pub depth: usize,
    #[serde(serialize_with = "crate::model::time::serialize")]
    pub start_time: DateTime<Utc>,
    /// Milliseconds from the trace's start: where the bar begins.
    pub start_offset_ms: f64,
    pub duration_ms: f64,
    pub children: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Value,
    /// `null` for a legacy span.
    #[schema(value_type = Option<Vec<Object>>)]
    pub events: Value,
    /// The logs emitted inside this span, oldest first.
    pub logs: Vec<StoredSignal>,
}

pub(super) fn text(payload: &Value, key: &str) -> Option<String> {
    payload.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

fn is_error(span: &StoredSignal) -> bool {
    span.payload
        .as_object()
        .is_some_and(|p| Facts::of_payload(SignalType::Trace, p).is_error(SignalType::Trace))
}

/// How the spans of a trace (sorted by start) hang together.
pub(super) struct SpanGraph {
    /// Each span's id.
    pub ids: Vec<String>,
    /// The position of each span id.
    pub index: HashMap<String, usize>,
    /// The position of each span's parent, when it is in the trace (and not the span itself).
    pub parents: Vec<Option<usize>>,
    /// Each span's children, in start order.
    pub children: Vec<Vec<usize>>,
    /// (position, depth), depth-first: see [`depth_first`].
    pub order: Vec<(usize, usize)>,
}

impl SpanGraph {
    pub fn of(spans: &[StoredSignal]) -> SpanGraph {
        let ids: Vec<String> =
            spans.iter().map(|s| text(&s.payload, keys::SPAN_ID).unwrap_or_default()).collect();
        let index: HashMap<String, usize> = ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        let parents: Vec<Option<usize>> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                text(&s.payload, keys::PARENT_SPAN_ID)
                    .and_then(|p| index.get(&p).copied())
                    .filter(|p| *p != i)
            })
            .collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
        for (child, parent) in parents.iter().enumerate() {
            if let Some(parent) = parent {
                children[*parent].push(child);
            }
        }
        let order = depth_first(&parents, &children);
        SpanGraph { ids, index, parents, children, order }
    }
}

/// The spans, as (index, depth), depth-first from the roots (`parents[i]` is the index of span
/// `i`'s parent, `children[i]` its children in start order). Whatever is unreachable sits in a
/// parent cycle: its first span (by index) becomes a root, so every span comes once.
pub(super) fn depth_first(parents: &[Option<usize>], children: &[Vec<usize>]) -> Vec<(usize, usize)> {
    let count = parents.len();
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(count);
    let mut seen = HashSet::new();
    let mut roots: Vec<usize> = (0..count).filter(|i| parents[*i].is_none()).collect();
    let mut next_unseen = 0;
    loop {
        for &root in &roots {
            let mut stack = vec![(root, 0usize)];
            while let Some((node, depth)) = stack.pop() {
                if !seen.insert(node) {
                    continue;
                }
                order.push((node, depth));
                stack.extend(children[node].iter().rev().map(|c| (*c, depth + 1)));
            }
        }
        while next_unseen < count && seen.contains(&next_unseen) {
            next_unseen += 1;
        }
        if next_unseen == count {
            return order;
        }
        roots = vec![next_unseen];
    }
}

/// Builds the tree of `trace_id` from its signals (any order).
pub fn build(trace_id: &str, signals: Vec<StoredSignal>) -> TraceTree {
    let mut spans = Vec::new();
    let mut logs = Vec::new();
    let mut metrics = Vec::new();
    for signal in signals {
        match signal.signal_type {
            SignalType::Trace if text(&signal.payload, keys::SPAN_ID).is_some() => spans.push(signal),
            SignalType::Trace | SignalType::Metric => metrics.push(signal),
            SignalType::Log => logs.push(signal),
        }
    }
    spans.sort_by_key(|s| (s.timestamp, s.id));
    logs.sort_by_key(|l| (l.timestamp, l.id));

    let SpanGraph { ids: span_ids, index, children, order, .. } = SpanGraph::of(&spans);
    let root_span_ids: Vec<String> =
        order.iter().filter(|(_, d)| *d == 0).map(|(i, _)| span_ids[*i].clone()).collect();

    let mut logs_by_span: HashMap<String, Vec<StoredSignal>> = HashMap::new();
    let mut unattached_logs = Vec::new();
    for log in logs {
        match text(&log.payload, keys::SPAN_ID).filter(|id| index.contains_key(id.as_str())) {
            Some(span_id) => logs_by_span.entry(span_id).or_default().push(log),
            None => unattached_logs.push(log),
        }
    }

    let start = spans.iter().map(|s| s.timestamp).chain(unattached_logs.iter().map(|l| l.timestamp)).min();
    let ends = spans.iter().map(|s| {
        let duration = s.payload.get(keys::DURATION_MS).and_then(Value::as_f64).unwrap_or(0.0);
        s.timestamp + chrono::Duration::microseconds((duration * 1000.0) as i64)
    });
    let end = ends.chain(unattached_logs.iter().map(|l| l.timestamp)).max();
    let mut services: Vec<String> = spans
        .iter()
        .chain(logs_by_span.values().flatten())
        .chain(&unattached_logs)
        .map(|s| s.service_name.clone())
        .collect();
    services.sort();
    services.dedup();

    let mut slots: Vec<Option<StoredSignal>> = spans.into_iter().map(Some).collect();
    let mut tree_spans = Vec::with_capacity(order.len());
    let mut error_count = 0;
    for (node, depth) in order {
        let Some(span) = slots[node].take() else { continue };
        let error = is_error(&span);
        error_count += usize::from(error);
        let span_id = span_ids[node].clone();
        tree_spans.push(TreeSpan {
            signal_id: span.id,
            logs: logs_by_span.remove(&span_id).unwrap_or_default(),
            parent_span_id: text(&span.payload, keys::PARENT_SPAN_ID),
            name: text(&span.payload, keys::NAME).unwrap_or_default(),
            kind: span.payload.get(keys::KIND).cloned().unwrap_or(Value::Null),
            status: span.payload.get(keys::STATUS).cloned().unwrap_or(Value::Null),
            status_message: span.payload.get(keys::STATUS_MESSAGE).cloned().unwrap_or(Value::Null),
            error,
            depth,
            start_offset_ms: start.map_or(0.0, |start| millis(start, span.timestamp)),
            duration_ms: span.payload.get(keys::DURATION_MS).and_then(Value::as_f64).unwrap_or(0.0),
            children: children[node].iter().map(|c| span_ids[*c].clone()).collect(),
            attributes: span.payload.get(keys::ATTRIBUTES).cloned().unwrap_or(Value::Null),
            events: span.payload.get(keys::EVENTS).cloned().unwrap_or(Value::Null),
            start_time: span.timestamp,
            service_name: span.service_name,
            span_id,
        });
    }
    TraceTree {
        trace_id: trace_id.to_owned(),
        duration_ms: match (start, end) {
            (Some(start), Some(end)) => millis(start, end),
            _ => 0.0,
        },
        start_time: start,
        end_time: end,
        services,
        span_count: tree_spans.len(),
        error_count,
        root_span_ids,
        spans: tree_spans,
        unattached_logs,
        metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_714_558_830_000 + ms).unwrap()
    }

    fn span(id: &str, parent: Option<&str>, start_ms: i64, duration_ms: f64, status: &str) -> StoredSignal {
        StoredSignal {
            id: Uuid::new_v4(),
            signal_type: SignalType::Trace,
            trace_id: "t".into(),
            service_name: format!("svc-{id}"),
            timestamp: at(start_ms),
            payload: json!({"span_id": id, "parent_span_id": parent, "name": format!("op {id}"),
                            "duration_ms": duration_ms, "status": status, "events": []}),
        }
    }

    fn log(span_id: Option<&str>, ms: i64) -> StoredSignal {
        StoredSignal {
            id: Uuid::new_v4(),
            signal_type: SignalType::Log,
            trace_id: "t".into(),
            service_name: "svc-log".into(),
            timestamp: at(ms),
            payload: json!({"span_id": span_id, "level": "ERROR", "message": "boom"}),
        }
    }

    #[test]
    fn spans_come_depth_first_with_offsets_durations_and_their_logs() {
        let signals = vec![
            span("c", Some("a"), 30, 10.0, "OK"),
            log(Some("b"), 15),
            span("a", None, 0, 100.0, "UNSET"),
            span("b", Some("a"), 10, 15.0, "ERROR"),
            span("d", Some("b"), 12, 2.0, "OK"),
            log(None, 120),
            log(Some("zz"), 5),
        ];
        let tree = build("t", signals);
        let order: Vec<(&str, usize)> = tree.spans.iter().map(|s| (s.span_id.as_str(), s.depth)).collect();
        assert_eq!(order, [("a", 0), ("b", 1), ("d", 2), ("c", 1)]);
        assert_eq!(tree.root_span_ids, ["a"]);
        assert_eq!(tree.spans[0].children, ["b", "c"]);
        assert_eq!(tree.spans[1].start_offset_ms, 10.0);
        assert_eq!(tree.spans[1].duration_ms, 15.0);
        assert!(tree.spans[1].error && !tree.spans[0].error);
        assert_eq!(tree.error_count, 1);
        assert_eq!(tree.spans[1].logs.len(), 1, "the log of span b is attached to it");
        assert_eq!(tree.unattached_logs.len(), 2, "no span, and an unknown span");
        assert_eq!(tree.duration_ms, 120.0, "from the first start to the last log");
        assert_eq!(tree.services, ["svc-a", "svc-b", "svc-c", "svc-d", "svc-log"]);
    }

    #[test]
    fn orphans_and_cycles_become_roots_and_nothing_is_lost() {
        let signals = vec![
            span("x", Some("missing"), 0, 1.0, "OK"),
            span("p", Some("q"), 5, 1.0, "OK"),
            span("q", Some("p"), 6, 1.0, "OK"),
            span("s", Some("s"), 7, 1.0, "OK"),
        ];
        let tree = build("t", signals);
        assert_eq!(tree.span_count, 4);
        let roots: HashSet<&str> = tree.root_span_ids.iter().map(String::as_str).collect();
        assert!(roots.contains("x") && roots.contains("s"), "{roots:?}");
        assert!(roots.contains("p") ^ roots.contains("q"), "one of the cycle becomes the root: {roots:?}");
    }

    #[test]
    fn a_deep_chain_is_built_without_recursion() {
        let signals: Vec<StoredSignal> = (0..20_000)
            .map(|i| {
                let parent = (i > 0).then(|| format!("{:016x}", i - 1));
                span(&format!("{i:016x}"), parent.as_deref(), i, 1.0, "OK")
            })
            .collect();
        let tree = build("t", signals);
        assert_eq!(tree.spans.last().unwrap().depth, 19_999);
        assert!(serde_json::to_string(&tree).is_ok());
    }
}
