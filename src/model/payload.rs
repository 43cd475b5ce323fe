//! A signal's payload in its two forms: as stored (what the analysis worker reads, CONTRACTS §1)
//! and as the query API answers it. They differ only for OTLP signals:
//!
//! - what the records of one export share (the resource's attributes and the instrumentation
//!   scope) is stored once per distinct value, in `signal_shared`, and re-attached on read;
//! - a field holding its default (`""`, `0`, `null`, `[]`, all-zero counts) is not stored;
//! - a span's `start_time` and `end_time` are not stored when its nanosecond fields give them.
//!
//! [`api_form`] is the one place that turns the first form into the second, and
//! [`OTLP_DEFAULTS`] the one list of what may be left out (the OTLP encoders leave out exactly
//! these; tests/it/api_shapes.rs checks every answer against the form from before). Legacy
//! payloads are stored whole.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::signal::SignalType;
use super::time::format_timestamp;

/// An encoded payload: one JSON object, canonical keys, limits applied, no NUL anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload(String);

impl Payload {
    /// `text` must be one JSON object (the encoders guarantee it; the database checks it again).
    pub fn from_encoded(text: String) -> Payload {
        Payload(text)
    }

    pub fn from_map(map: Map<String, Value>) -> Payload {
        Payload(Value::Object(map).to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The payload as a JSON object (tests, and the slow paths that need a tree).
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::from_str(&self.0) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// What the records of one OTLP export (one resource and one scope) share, encoded once.
/// Identified by its content, so equal resources and scopes are stored once however many
/// exports, instances and days carry them.
#[derive(Debug)]
pub struct Shared {
    pub id: Uuid,
    /// The resource's attributes, a JSON object.
    pub resource: String,
    /// `{name, version, attributes}` of the scope, a JSON object.
    pub scope: String,
    /// What the limits cut from the resource and scope: counted in each record's `truncated`,
    /// as when every payload carried its own copy.
    pub attributes_dropped: u64,
    pub values_truncated: u64,
    lowercase: OnceLock<String>,
}

/// Namespace of the content-addressed ids of shared parts.
const SHARED_NAMESPACE: Uuid = Uuid::from_u128(0x7d1e_52a4_0c3b_4f6e_9a8d_1b2c_3d4e_5f60);

impl PartialEq for Shared {
    fn eq(&self, other: &Shared) -> bool {
        self.id == other.id
    }
}

impl Shared {
    pub fn new(
        resource: String,
        scope: String,
        attributes_dropped: u64,
        values_truncated: u64,
    ) -> Arc<Shared> {
        let mut content = Vec::with_capacity(resource.len() + scope.len() + 8);
        content.extend_from_slice(&(resource.len() as u64).to_le_bytes());
        content.extend_from_slice(resource.as_bytes());
        content.extend_from_slice(scope.as_bytes());
        Arc::new(Shared {
            id: Uuid::new_v5(&SHARED_NAMESPACE, &content),
            resource,
            scope,
            attributes_dropped,
            values_truncated,
            lowercase: OnceLock::new(),
        })
    }

    /// Resource and scope text in lower case, for the analysis keywords (computed once).
    pub fn lowercase_text(&self) -> &str {
        self.lowercase.get_or_init(|| format!("{} {}", self.resource, self.scope).to_lowercase())
    }
}

/// The few typed facts triage and fingerprints read, taken while the payload is encoded so
/// nobody parses it back. [`Facts::of_payload`] reads the same facts from a JSON payload: one
/// meaning, two sources (the mapping tests check they agree).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// A log's level as stored (`ERROR`, …).
    pub level: Option<String>,
    /// A log's message, a span's name, a metric's name.
    pub text: Option<String>,
    /// A span whose status is ERROR.
    pub failed: bool,
    /// A log with a stack trace or exception attributes; a span with an `exception` event.
    pub exception: bool,
    /// The exception's type, when a log attribute or a span's exception event names one.
    pub exception_type: Option<String>,
    /// A metric's value as a number.
    pub value: Option<f64>,
}

impl Facts {
    pub fn of_payload(signal_type: SignalType, payload: &Map<String, Value>) -> Facts {
        let text = |key: &str| payload.get(key).and_then(Value::as_str).map(str::to_owned);
        match signal_type {
            SignalType::Log => {
                let attributes = payload.get("attributes").and_then(Value::as_object);
                let has_stack =
                    payload.get("stack_trace").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
                let has_exception = attributes
                    .is_some_and(|a| a.contains_key("exception.type") || a.contains_key("exception.message"));
                Facts {
                    level: text("level"),
                    text: text("message"),
                    exception: has_stack || has_exception,
                    exception_type: attributes
                        .and_then(|a| a.get("exception.type")?.as_str())
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned),
                    ..Facts::default()
                }
            }
            SignalType::Trace => {
                let events = payload.get("events").and_then(Value::as_array);
                let exceptions = || {
                    events
                        .into_iter()
                        .flatten()
                        .filter(|e| e.get("name").and_then(Value::as_str) == Some("exception"))
                };
                Facts {
                    text: text("name"),
                    failed: payload.get("status").and_then(Value::as_str) == Some("ERROR"),
                    exception: exceptions().next().is_some(),
                    exception_type: exceptions()
                        .find_map(|e| {
                            e.get("attributes")?.get("exception.type")?.as_str().filter(|t| !t.is_empty())
                        })
                        .map(str::to_owned),
                    ..Facts::default()
                }
            }
            SignalType::Metric => Facts {
                text: text("metric_name"),
                value: payload.get("value").and_then(Value::as_f64),
                ..Facts::default()
            },
        }
    }
}

/// A default an OTLP payload leaves out, re-attached on read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Omitted {
    EmptyText,
    Zero,
    Null,
    EmptyList,
    /// An object of counts, all zero.
    ZeroCounts(&'static [&'static str]),
}

impl Omitted {
    fn value(self) -> Value {
        match self {
            Omitted::EmptyText => json!(""),
            Omitted::Zero => json!(0),
            Omitted::Null => Value::Null,
            Omitted::EmptyList => json!([]),
            Omitted::ZeroCounts(keys) => {
                Value::Object(keys.iter().map(|k| ((*k).to_owned(), json!(0))).collect())
            }
        }
    }
}

/// Per signal type, the keys an OTLP payload omits when they hold the default given. None of
/// them is a key the analysis worker reads (CONTRACTS §1).
pub const OTLP_DEFAULTS: [(SignalType, &[(&str, Omitted)]); 3] = [
    (
        SignalType::Trace,
        &[
            ("parent_span_id", Omitted::Null),
            ("status_message", Omitted::EmptyText),
            ("events", Omitted::EmptyList),
            ("links", Omitted::EmptyList),
            ("trace_state", Omitted::EmptyText),
            ("flags", Omitted::Zero),
            ("dropped", Omitted::ZeroCounts(&["attributes", "events", "links"])),
        ],
    ),
    (
        SignalType::Log,
        &[
            ("span_id", Omitted::Null),
            ("severity_text", Omitted::EmptyText),
            ("event_name", Omitted::EmptyText),
            ("observed_time", Omitted::Null),
            ("flags", Omitted::Zero),
            ("dropped_attributes_count", Omitted::Zero),
        ],
    ),
    (
        SignalType::Metric,
        &[("description", Omitted::EmptyText), ("flags", Omitted::Zero), ("exemplars", Omitted::EmptyList)],
    ),
];

pub fn omitted_defaults(signal_type: SignalType) -> &'static [(&'static str, Omitted)] {
    OTLP_DEFAULTS.iter().find(|(t, _)| *t == signal_type).map_or(&[], |(_, keys)| *keys)
}

/// The payload as the API returns it. `shared` is the resource and scope of an OTLP signal
/// (`None` for a legacy one, whose payload is returned as stored).
pub fn api_form(signal_type: SignalType, stored: Value, shared: Option<(Value, Value)>) -> Value {
    let (mut payload, (resource, scope)) = match (stored, shared) {
        (Value::Object(payload), Some(shared)) => (payload, shared),
        (stored, _) => return stored,
    };
    for (key, omitted) in omitted_defaults(signal_type) {
        if !payload.contains_key(*key) {
            payload.insert((*key).to_owned(), omitted.value());
        }
    }
    if signal_type == SignalType::Trace {
        let nanos = |key: &str| {
            payload.get(key).and_then(Value::as_str).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0)
        };
        let (start, end) = (nanos("start_time_unix_nano"), nanos("end_time_unix_nano"));
        if !payload.contains_key("start_time") {
            let known = time_of_nanos(start).or_else(|| time_of_nanos(end));
            payload.insert("start_time".into(), known.map_or(Value::Null, |t| json!(format_timestamp(&t))));
        }
        if !payload.contains_key("end_time") {
            payload.insert(
                "end_time".into(),
                time_of_nanos(end).map_or(Value::Null, |t| json!(format_timestamp(&t))),
            );
        }
    }
    payload.insert("resource".into(), resource);
    payload.insert("scope".into(), scope);
    Value::Object(payload)
}

/// OTLP nanoseconds since the epoch; 0 means "unknown".
pub fn time_of_nanos(nanos: u64) -> Option<DateTime<Utc>> {
    if nanos == 0 {
        return None;
    }
    // u64 nanoseconds reach the year 2554, well inside chrono's range.
    Utc.timestamp_opt((nanos / 1_000_000_000) as i64, (nanos % 1_000_000_000) as u32).single()
}
