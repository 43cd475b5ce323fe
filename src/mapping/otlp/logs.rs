//! Log records -> `log` signals, each payload written straight from the record, with the canonical keys the analysis worker reads
//! (`level`, `message`, `stack_trace`).

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use std::sync::Arc;

use serde_json::Value;

use super::attributes::{
    any_value_json, attribute_text, service_name, shared_part, write_any, write_attributes,
};
use super::ids::{hex, log_signal_id, valid_id};
use super::{exception_type, finish, first_known_time, limited, time_from_nanos, Mapped};
use crate::mapping::json_out::JsonOut;
use crate::mapping::text::without_nul;
use crate::mapping::{trace_or_correlation_key, MappingOptions};
use crate::model::payload::{keys, Facts, Shared};
use crate::model::time::format_timestamp;
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
    let mut record_bytes = Vec::new();
    for resource_logs in &request.resource_logs {
        let resource = resource_logs.resource.as_ref();
        let service = without_nul(service_name(resource));
        let resource_bytes = resource.map(Message::encode_to_vec).unwrap_or_default();
        for scope_logs in &resource_logs.scope_logs {
            let scope_bytes = scope_logs.scope.as_ref().map(Message::encode_to_vec).unwrap_or_default();
            let shared = shared_part(resource, scope_logs.scope.as_ref(), options.limits);
            for record in &scope_logs.log_records {
                record_bytes.clear();
                // Encoding into a Vec cannot fail.
                let _ = record.encode(&mut record_bytes);
                let signal_id = log_signal_id(&[&resource_bytes, &scope_bytes, &record_bytes]);
                let context = Context { service: &service, shared: &shared, received_at, options };
                mapped.signals.push(log_signal(record, signal_id, &context));
            }
        }
    }
    mapped
}

struct Context<'a> {
    service: &'a str,
    shared: &'a Arc<Shared>,
    received_at: DateTime<Utc>,
    options: &'a MappingOptions,
}

fn log_signal(record: &LogRecord, signal_id: uuid::Uuid, context: &Context) -> Signal {
    // logs.proto: time, else observed time (0 means unknown), else when we received it.
    let known = first_known_time(&[record.time_unix_nano, record.observed_time_unix_nano]);
    let timestamp = known.unwrap_or(context.received_at);
    let trace_id = valid_id(&record.trace_id, 16).then(|| hex(&record.trace_id));
    let limits = context.options.limits;
    let level = level(record);
    let message = message(record);
    let stack_trace = attribute_text(&record.attributes, "exception.stacktrace");

    // Keys holding their default are left out (model::payload::OTLP_DEFAULTS).
    let mut out = JsonOut::new(limits, 384);
    out.begin_object();
    out.field_str(keys::LEVEL, level);
    out.field_str(keys::MESSAGE, &message);
    if let Some(stack_trace) = &stack_trace {
        out.field_str(keys::STACK_TRACE, stack_trace);
    }
    if let Some(body) =
        record.body.as_ref().filter(|b| !matches!(b.value, Some(any_value::Value::StringValue(_))))
    {
        // A structured body is kept as structure too; `message` has its JSON text.
        out.key("body");
        write_any(&mut out, "body", body);
    }
    out.key("severity_number");
    out.i64(i64::from(record.severity_number));
    if !record.severity_text.is_empty() {
        out.field_str("severity_text", &record.severity_text);
    }
    if valid_id(&record.span_id, 8) {
        out.field_str(keys::SPAN_ID, &hex(&record.span_id));
    }
    if !record.event_name.is_empty() {
        out.field_str("event_name", &record.event_name);
    }
    out.key(keys::ATTRIBUTES);
    write_attributes(&mut out, keys::ATTRIBUTES, &record.attributes);
    out.field_str("time_unix_nano", itoa::Buffer::new().format(record.time_unix_nano));
    if let Some(observed) = time_from_nanos(record.observed_time_unix_nano) {
        out.field_str("observed_time", &format_timestamp(&observed));
    }
    if record.flags != 0 {
        out.key("flags");
        out.u64(u64::from(record.flags));
    }
    if record.dropped_attributes_count != 0 {
        out.key("dropped_attributes_count");
        out.u64(u64::from(record.dropped_attributes_count));
    }
    let payload = finish(out, context.shared);
    let facts = Facts {
        level: Some(level.to_owned()),
        text: Some(limited(&message, limits)),
        exception: stack_trace.is_some_and(|s| !s.is_empty()) || has_exception(&record.attributes),
        exception_type: exception_type(&record.attributes, limits),
        ..Facts::default()
    };
    Signal {
        signal_id,
        signal_type: SignalType::Log,
        trace_id: trace_or_correlation_key(trace_id, context.service, timestamp, context.options),
        service_name: context.service.to_owned(),
        timestamp,
        payload,
        facts,
        shared: Some(context.shared.clone()),
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
    attributes.iter().any(|kv| kv.key == keys::EXCEPTION_TYPE || kv.key == keys::EXCEPTION_MESSAGE)
}
