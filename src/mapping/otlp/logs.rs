//! Log records -> `log` signals with the canonical keys the analysis worker reads
//! (`level`, `message`, `stack_trace`).

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::{json, Map, Value};

use super::attributes::{
    any_value_json, attribute_text, attributes_json, resource_json, scope_json, service_name,
};
use super::ids::{hex, log_signal_id, valid_id};
use super::{first_known_time, nanos_json, time_json, Mapped};
use crate::mapping::text::{map_without_nul, without_nul};
use crate::mapping::{trace_or_correlation_key, MappingOptions};
use crate::model::{Signal, SignalType};

/// One `log` signal per record. A log record is never rejected: an absent or invalid trace id
/// only means "not in a trace" (logs.proto), and such records get the correlation key.
pub fn logs_to_signals(
    request: &ExportLogsServiceRequest,
    received_at: DateTime<Utc>,
    options: &MappingOptions,
) -> Mapped {
    let count = request.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
    let mut mapped = Mapped::with_capacity(count);
    for resource_logs in &request.resource_logs {
        let resource = resource_logs.resource.as_ref();
        let service = without_nul(service_name(resource));
        let resource_bytes = resource.map(Message::encode_to_vec).unwrap_or_default();
        let resource = resource_json(resource);
        for scope_logs in &resource_logs.scope_logs {
            let scope_bytes = scope_logs.scope.as_ref().map(Message::encode_to_vec).unwrap_or_default();
            let scope = scope_json(scope_logs.scope.as_ref());
            for record in &scope_logs.log_records {
                let signal_id = log_signal_id(&[&resource_bytes, &scope_bytes, &record.encode_to_vec()]);
                let context =
                    Context { service: &service, resource: &resource, scope: &scope, received_at, options };
                mapped.signals.push(log_signal(record, signal_id, &context));
            }
        }
    }
    mapped
}

struct Context<'a> {
    service: &'a str,
    resource: &'a Value,
    scope: &'a Value,
    received_at: DateTime<Utc>,
    options: &'a MappingOptions,
}

fn log_signal(record: &LogRecord, signal_id: uuid::Uuid, context: &Context) -> Signal {
    // logs.proto: time, else observed time (0 means unknown), else when we received it.
    let known = first_known_time(&[record.time_unix_nano, record.observed_time_unix_nano]);
    let timestamp = known.unwrap_or(context.received_at);
    let trace_id = valid_id(&record.trace_id, 16).then(|| hex(&record.trace_id));
    let span_id = valid_id(&record.span_id, 8).then(|| hex(&record.span_id));

    let mut payload = Map::new();
    payload.insert("level".into(), json!(level(record)));
    payload.insert("message".into(), json!(message(record)));
    if let Some(stack_trace) = attribute_text(&record.attributes, "exception.stacktrace") {
        payload.insert("stack_trace".into(), json!(stack_trace));
    }
    if let Some(body) =
        record.body.as_ref().filter(|b| !matches!(b.value, Some(any_value::Value::StringValue(_))))
    {
        // A structured body is kept as structure too; `message` has its JSON text.
        payload.insert("body".into(), any_value_json(body));
    }
    payload.insert("severity_number".into(), json!(record.severity_number));
    payload.insert("severity_text".into(), json!(record.severity_text));
    payload.insert("span_id".into(), json!(span_id));
    payload.insert("event_name".into(), json!(record.event_name));
    payload.insert("attributes".into(), Value::Object(attributes_json(&record.attributes)));
    payload.insert("time_unix_nano".into(), nanos_json(record.time_unix_nano));
    payload.insert("observed_time".into(), time_json(record.observed_time_unix_nano));
    payload.insert("flags".into(), json!(record.flags));
    payload.insert("dropped_attributes_count".into(), json!(record.dropped_attributes_count));
    payload.insert("resource".into(), context.resource.clone());
    payload.insert("scope".into(), context.scope.clone());
    Signal {
        signal_id,
        signal_type: SignalType::Log,
        trace_id: trace_or_correlation_key(trace_id, context.service, timestamp, context.options),
        service_name: context.service.to_owned(),
        timestamp,
        payload: map_without_nul(payload),
        time_unknown: known.is_none(),
    }
}

/// The body as text: a string as itself, anything else as its JSON text, none as "".
fn message(record: &LogRecord) -> String {
    match record.body.as_ref().map(any_value_json) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

/// `severity_number` ranges of the logs data model mapped onto the worker's five levels; when
/// it is unset, `severity_text`; when both are, INFO, or ERROR for a record that carries an
/// exception (the data model's advice for erroneous events without a severity).
pub(crate) fn level(record: &LogRecord) -> &'static str {
    match record.severity_number {
        1..=8 => return "DEBUG",
        9..=12 => return "INFO",
        13..=16 => return "WARNING",
        17..=20 => return "ERROR",
        21..=24 => return "CRITICAL",
        _ => {}
    }
    if let Some(level) = level_from_text(&record.severity_text) {
        return level;
    }
    if has_exception(&record.attributes) {
        "ERROR"
    } else {
        "INFO"
    }
}

fn level_from_text(text: &str) -> Option<&'static str> {
    let level = match text.trim().to_ascii_lowercase().as_str() {
        "trace" | "debug" | "finest" | "finer" | "fine" => "DEBUG",
        "info" | "information" | "informational" | "notice" => "INFO",
        "warn" | "warning" => "WARNING",
        "error" | "err" | "severe" => "ERROR",
        "fatal" | "critical" | "crit" | "alert" | "emerg" | "emergency" | "panic" => "CRITICAL",
        _ => return None,
    };
    Some(level)
}

fn has_exception(attributes: &[KeyValue]) -> bool {
    attributes.iter().any(|kv| kv.key == "exception.type" || kv.key == "exception.message")
}
