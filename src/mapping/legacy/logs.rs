//! `POST /ingest/logs` bodies -> log signals.

use serde_json::{Map, Value};

use super::fields::Fields;
use crate::mapping::{trace_or_correlation_key, MappingOptions};
use crate::model::payload::keys;
use crate::model::{Signal, SignalType};
use crate::validation::{FieldError, LocPart};

const LOG_FIELDS: &[&str] =
    &["signal_id", "trace_id", "service_name", "timestamp", "level", "message", "attributes", "stack_trace"];

pub(super) fn log_signal(
    value: &Value,
    loc: Vec<LocPart>,
    options: &MappingOptions,
) -> Result<Signal, Vec<FieldError>> {
    let mut fields = Fields::new(value, loc)?;
    fields.reject_unknown(LOG_FIELDS);
    let signal_id = fields.required_uuid("signal_id");
    let trace_id = fields.optional_identifier("trace_id");
    let service_name = fields.required_identifier("service_name");
    let timestamp = fields.required_timestamp("timestamp");
    let level = fields.required_str("level");
    let message = fields.required_str("message");
    let attributes = fields.optional_object("attributes");
    let stack_trace = fields.optional_str("stack_trace");

    let (true, Some(signal_id), Some(service_name), Some(timestamp), Some(level), Some(message)) =
        (fields.is_clean(), signal_id, service_name, timestamp, level, message)
    else {
        return Err(fields.into_errors());
    };

    let mut payload = Map::new();
    payload.insert(keys::LEVEL.into(), Value::String(canonical_level(&level)));
    payload.insert(keys::MESSAGE.into(), Value::String(message));
    payload.insert(keys::ATTRIBUTES.into(), Value::Object(attributes));
    if let Some(stack_trace) = stack_trace {
        payload.insert(keys::STACK_TRACE.into(), Value::String(stack_trace));
    }
    let (encoded, facts) = super::legacy_payload(SignalType::Log, payload, options);
    Ok(Signal {
        signal_id,
        signal_type: SignalType::Log,
        trace_id: trace_or_correlation_key(trace_id, &service_name, timestamp, options),
        service_name,
        timestamp,
        payload: encoded,
        facts,
        shared: None,
        time_unknown: false,
    })
}

/// Upper-cases a level and folds common aliases onto the five levels the analysis worker knows
/// (`WARN` -> `WARNING`, `FATAL` -> `CRITICAL`); any other level is kept, upper-cased.
pub(crate) fn canonical_level(level: &str) -> String {
    let upper = level.trim().to_ascii_uppercase();
    match upper.as_str() {
        "WARN" => "WARNING".to_owned(),
        "FATAL" => "CRITICAL".to_owned(),
        _ => upper,
    }
}
