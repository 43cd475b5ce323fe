//! `POST /ingest/traces` bodies -> trace signals, in both shapes clients send (docs/contracts.md
//! §4): the original's code shape (`timestamp`, `duration_ms`, `status`) and its README shape
//! (`name`, `start_time`, `end_time`). A body with `start_time` is read as the README shape.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{json, Map, Value};

use super::fields::Fields;
use crate::mapping::{trace_or_correlation_key, MappingOptions};
use crate::model::payload::keys;
use crate::model::time::format_timestamp;
use crate::model::{Signal, SignalType};
use crate::validation::{FieldError, LocPart};

const SPAN_FIELDS: &[&str] = &[
    "signal_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "service_name",
    "name",
    "timestamp",
    "duration_ms",
    "status",
    "status_message",
    "start_time",
    "end_time",
    "attributes",
];

struct Timing {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    duration_ms: f64,
}

pub(super) fn span_signal(
    value: &Value,
    loc: Vec<LocPart>,
    options: &MappingOptions,
) -> Result<Signal, Vec<FieldError>> {
    let mut fields = Fields::new(value, loc)?;
    fields.reject_unknown(SPAN_FIELDS);
    let signal_id = fields.required_uuid("signal_id");
    let trace_id = fields.optional_identifier("trace_id");
    let span_id = fields.required_identifier("span_id");
    let parent_span_id = fields.optional_identifier("parent_span_id");
    let service_name = fields.required_identifier("service_name");
    let name = fields.optional_str("name");
    let status_message = fields.optional_str("status_message");
    let attributes = fields.optional_object("attributes");
    let (timing, status) = if fields.has("start_time") {
        let status = fields.optional_str("status").unwrap_or_else(|| "UNSET".to_owned());
        (readme_timing(&mut fields), status)
    } else {
        (code_timing(&mut fields), fields.required_str("status").unwrap_or_default())
    };

    let (true, Some(signal_id), Some(span_id), Some(service_name), Some(timing)) =
        (fields.is_clean(), signal_id, span_id, service_name, timing)
    else {
        return Err(fields.into_errors());
    };

    let mut payload = Map::new();
    payload.insert(keys::SPAN_ID.into(), json!(span_id));
    payload.insert(keys::PARENT_SPAN_ID.into(), json!(parent_span_id));
    payload.insert(keys::NAME.into(), json!(name));
    payload.insert("start_time".into(), json!(format_timestamp(&timing.start)));
    payload.insert("end_time".into(), json!(format_timestamp(&timing.end)));
    payload.insert(keys::DURATION_MS.into(), json!(timing.duration_ms));
    payload.insert(keys::STATUS.into(), json!(canonical_status(&status)));
    if let Some(status_message) = status_message {
        payload.insert(keys::STATUS_MESSAGE.into(), json!(status_message));
    }
    payload.insert(keys::ATTRIBUTES.into(), Value::Object(attributes));
    let (encoded, facts) = super::legacy_payload(SignalType::Trace, payload, options);
    Ok(Signal {
        signal_id,
        signal_type: SignalType::Trace,
        trace_id: trace_or_correlation_key(trace_id, &service_name, timing.start, options),
        service_name,
        timestamp: timing.start,
        payload: encoded,
        facts,
        shared: None,
        time_unknown: false,
    })
}

/// The longest span a legacy client may report, in milliseconds (about 31 years): longer is a
/// unit mistake, refused with the limit named.
pub const MAX_DURATION_MS: f64 = 1e12;

/// Code shape: the span starts at `timestamp` and lasts `duration_ms`.
fn code_timing(fields: &mut Fields) -> Option<Timing> {
    let start = fields.required_timestamp("timestamp");
    let duration_ms = fields.required_number("duration_ms");
    let (start, duration_ms) = (start?, duration_ms?);
    if duration_ms < 0.0 {
        fields.error("duration_ms", "greater_than_equal", "Input should be greater than or equal to 0");
        return None;
    }
    if duration_ms > MAX_DURATION_MS {
        let msg = format!("Input should be less than or equal to {MAX_DURATION_MS}");
        fields.error("duration_ms", "less_than_equal", &msg);
        return None;
    }
    // `as` saturates, so an absurd duration overflows the addition and is refused below.
    let end = start.checked_add_signed(ChronoDuration::microseconds((duration_ms * 1000.0).round() as i64));
    let Some(end) = end else {
        fields.error("duration_ms", "value_error", "Value error, span ends out of range");
        return None;
    };
    Some(Timing { start, end, duration_ms })
}

/// README shape: `start_time` and `end_time`; the duration is derived from them.
fn readme_timing(fields: &mut Fields) -> Option<Timing> {
    let start = fields.required_timestamp("start_time");
    let end = fields.required_timestamp("end_time");
    let (start, end) = (start?, end?);
    // An end before the start (a client's clock stepped back) is kept as sent, with no
    // duration, as an OTLP span's is: the span is stored rather than lost.
    let duration_ms =
        (end - start).max(chrono::TimeDelta::zero()).num_microseconds().map(|us| us as f64 / 1000.0);
    let Some(duration_ms) = duration_ms else {
        fields.error("end_time", "value_error", "Value error, span is too long");
        return None;
    };
    Some(Timing { start, end, duration_ms })
}

/// `ok`, `error` and `unset` in any case become the OTLP names the worker compares against;
/// other statuses are kept as sent.
fn canonical_status(status: &str) -> String {
    let trimmed = status.trim();
    for known in ["OK", "ERROR", "UNSET"] {
        if trimmed.eq_ignore_ascii_case(known) {
            return known.to_owned();
        }
    }
    trimmed.to_owned()
}
