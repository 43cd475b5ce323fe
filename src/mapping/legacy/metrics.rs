//! `POST /ingest/metrics` bodies -> metric signals, in both shapes clients send (docs/contracts.md
//! §4): the code shape (`signal_id`, `trace_id`, `metric_name`, `unit`) and the README shape
//! (`name`, `value`, `service_name`, `timestamp` only). A missing `signal_id` is derived from the
//! content, so a resend is stored once; a missing `trace_id` gets the correlation key.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::fields::Fields;
use crate::mapping::{trace_or_correlation_key, MappingOptions};
use crate::model::payload::keys;
use crate::model::time::format_timestamp;
use crate::model::{Signal, SignalType};
use crate::validation::{FieldError, LocPart};

const METRIC_FIELDS: &[&str] = &[
    "signal_id",
    "trace_id",
    "service_name",
    "timestamp",
    "metric_name",
    "name",
    "value",
    "unit",
    "attributes",
];

/// Namespace of the version-5 UUIDs derived for metrics sent without a `signal_id`.
const DERIVED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_4a3c_9b0e_4c59_a4f2_2b7e_5c1d_8e90);

pub(super) fn metric_signal(
    value: &Value,
    loc: Vec<LocPart>,
    options: &MappingOptions,
) -> Result<Signal, Vec<FieldError>> {
    let mut fields = Fields::new(value, loc)?;
    fields.reject_unknown(METRIC_FIELDS);
    let signal_id = fields.optional_uuid("signal_id");
    let trace_id = fields.optional_identifier("trace_id");
    let service_name = fields.required_identifier("service_name");
    let timestamp = fields.required_timestamp("timestamp");
    let metric_name = match (fields.has("metric_name"), fields.has("name")) {
        (true, true) => {
            let msg = "Value error, give either metric_name or name, not both";
            fields.error("name", "value_error", msg);
            None
        }
        (false, true) => fields.required_str("name"),
        _ => fields.required_str("metric_name"),
    };
    let number = fields.required_number("value");
    let unit = fields.optional_str("unit");
    let attributes = fields.optional_object("attributes");

    let (true, Some(service_name), Some(timestamp), Some(metric_name), Some(number)) =
        (fields.is_clean(), service_name, timestamp, metric_name, number)
    else {
        return Err(fields.into_errors());
    };

    let mut payload = Map::new();
    payload.insert(keys::METRIC_NAME.into(), json!(metric_name));
    payload.insert(keys::VALUE.into(), json!(number));
    payload.insert("unit".into(), json!(unit));
    payload.insert(keys::ATTRIBUTES.into(), Value::Object(attributes));
    let signal_id = signal_id
        .unwrap_or_else(|| derived_signal_id(&service_name, trace_id.as_deref(), &timestamp, &payload));
    let (encoded, facts) = super::legacy_payload(SignalType::Metric, payload, options);
    Ok(Signal {
        signal_id,
        signal_type: SignalType::Metric,
        trace_id: trace_or_correlation_key(trace_id, &service_name, timestamp, options),
        service_name,
        timestamp,
        payload: encoded,
        facts,
        shared: None,
        time_unknown: false,
    })
}

/// A UUID that depends only on what the client sent, so the same point sent twice is one row.
fn derived_signal_id(
    service_name: &str,
    trace_id: Option<&str>,
    timestamp: &chrono::DateTime<chrono::Utc>,
    payload: &Map<String, Value>,
) -> Uuid {
    // serde_json's Map is ordered by key, so this text is canonical for equal content.
    let canonical = json!([service_name, trace_id, format_timestamp(timestamp), payload]);
    Uuid::new_v5(&DERIVED_ID_NAMESPACE, canonical.to_string().as_bytes())
}
