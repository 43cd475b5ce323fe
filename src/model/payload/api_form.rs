//! The payload as the query API answers it, from the payload as stored.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::model::signal_type::SignalType;
use crate::model::time::format_timestamp;

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
/// them is a key the analysis worker reads (docs/contracts.md §1).
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
