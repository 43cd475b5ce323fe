//! Spans -> `trace` signals, each payload written straight from the decoded span.

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use std::sync::Arc;

use super::attributes::{service_name, shared_part, write_attributes};
use super::ids::{hex, id_problem, span_signal_id, valid_id};
use super::{exception_type, finish, first_known_time, limited, time_from_nanos, Mapped};
use crate::mapping::json_out::JsonOut;
use crate::mapping::limits::ValueLimits;
use crate::mapping::text::without_nul;
use crate::mapping::MappingOptions;
use crate::model::payload::{keys, Facts, Shared};
use crate::model::time::format_timestamp;
use crate::model::{Signal, SignalType};

/// One `trace` signal per span. A span whose trace id is not 16 bytes, or whose span id is not
/// 8 bytes, or either all zeros, is rejected (the ids are required, trace.proto).
pub fn spans_to_signals(
    request: &ExportTraceServiceRequest,
    received_at: DateTime<Utc>,
    options: &MappingOptions,
) -> Mapped {
    let count = request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
    let mut mapped = Mapped::with_capacity(count);
    for resource_spans in &request.resource_spans {
        let resource = resource_spans.resource.as_ref();
        let service = without_nul(service_name(resource));
        for scope_spans in &resource_spans.scope_spans {
            let shared = shared_part(resource, scope_spans.scope.as_ref(), options.limits);
            for span in &scope_spans.spans {
                match span_signal(span, &service, &shared, received_at, options.limits) {
                    Ok(signal) => mapped.signals.push(signal),
                    Err(why) => mapped.reject(format!("span {:?}: {why}", span.name)),
                }
            }
        }
    }
    mapped
}

fn span_signal(
    span: &OtlpSpan,
    service: &str,
    shared: &Arc<Shared>,
    received_at: DateTime<Utc>,
    limits: ValueLimits,
) -> Result<Signal, String> {
    if let Some(problem) =
        id_problem("trace_id", &span.trace_id, 16).or_else(|| id_problem("span_id", &span.span_id, 8))
    {
        return Err(problem);
    }
    // OTLP time 0 means "unknown": the end time, else the time we received it.
    let known = first_known_time(&[span.start_time_unix_nano, span.end_time_unix_nano]);
    let start = known.unwrap_or(received_at);
    let (status, status_message) = match &span.status {
        Some(status) => (status_name(status.code), status.message.as_str()),
        None => ("UNSET", ""),
    };

    // Keys holding their default are left out, and start_time/end_time when the nanosecond
    // fields give them (model::payload::OTLP_DEFAULTS, api_form).
    let mut out = JsonOut::new(limits, 512);
    out.begin_object();
    out.field_str(keys::SPAN_ID, &hex(&span.span_id));
    if valid_id(&span.parent_span_id, 8) {
        out.field_str(keys::PARENT_SPAN_ID, &hex(&span.parent_span_id));
    }
    out.field_str(keys::NAME, &span.name);
    out.field_str(keys::KIND, kind_name(span.kind));
    if known.is_none() {
        out.field_str("start_time", &format_timestamp(&start));
    }
    out.field_str("start_time_unix_nano", itoa::Buffer::new().format(span.start_time_unix_nano));
    out.field_str("end_time_unix_nano", itoa::Buffer::new().format(span.end_time_unix_nano));
    out.key(keys::DURATION_MS);
    match (span.start_time_unix_nano, span.end_time_unix_nano) {
        (start, end) if start > 0 && end >= start => out.f64((end - start) as f64 / 1_000_000.0),
        _ => out.null(),
    }
    out.field_str(keys::STATUS, status);
    if !status_message.is_empty() {
        out.field_str(keys::STATUS_MESSAGE, status_message);
    }
    out.key(keys::ATTRIBUTES);
    write_attributes(&mut out, keys::ATTRIBUTES, &span.attributes);
    let mut facts = Facts {
        text: Some(limited(&span.name, limits)),
        kind: Some(kind_name(span.kind).to_owned()),
        failed: status == "ERROR",
        ..Facts::default()
    };
    if !span.events.is_empty() {
        out.key(keys::EVENTS);
        out.begin_array();
        for event in &span.events {
            out.begin_object();
            out.field_str(keys::NAME, &event.name);
            out.key("time");
            match time_from_nanos(event.time_unix_nano) {
                Some(time) => out.str(&format_timestamp(&time)),
                None => out.null(),
            }
            out.key(keys::ATTRIBUTES);
            write_attributes(&mut out, keys::ATTRIBUTES, &event.attributes);
            out.end_object();
            if limited(&event.name, limits) == keys::EXCEPTION_EVENT {
                facts.exception = true;
                if facts.exception_type.is_none() {
                    facts.exception_type = exception_type(&event.attributes, limits);
                }
            }
        }
        out.end_array();
    }
    if !span.links.is_empty() {
        out.key("links");
        out.begin_array();
        for link in &span.links {
            out.begin_object();
            out.field_str("trace_id", &hex(&link.trace_id));
            out.field_str(keys::SPAN_ID, &hex(&link.span_id));
            out.field_str("trace_state", &link.trace_state);
            out.key(keys::ATTRIBUTES);
            write_attributes(&mut out, keys::ATTRIBUTES, &link.attributes);
            out.end_object();
        }
        out.end_array();
    }
    if !span.trace_state.is_empty() {
        out.field_str("trace_state", &span.trace_state);
    }
    if span.flags != 0 {
        out.key("flags");
        out.u64(u64::from(span.flags));
    }
    let dropped = [span.dropped_attributes_count, span.dropped_events_count, span.dropped_links_count];
    if dropped != [0, 0, 0] {
        out.key("dropped");
        out.begin_object();
        for (key, count) in ["attributes", "events", "links"].into_iter().zip(dropped) {
            out.key(key);
            out.u64(u64::from(count));
        }
        out.end_object();
    }
    let payload = finish(out, shared);
    Ok(Signal {
        signal_id: span_signal_id(&span.trace_id, &span.span_id),
        signal_type: SignalType::Trace,
        trace_id: hex(&span.trace_id),
        service_name: service.to_owned(),
        timestamp: start,
        payload,
        facts,
        shared: Some(shared.clone()),
        time_unknown: known.is_none(),
    })
}

/// Span kinds by explicit match: an ordinal cast has shifted SERVER to CLIENT elsewhere.
fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "INTERNAL",
        Ok(SpanKind::Server) => "SERVER",
        Ok(SpanKind::Client) => "CLIENT",
        Ok(SpanKind::Producer) => "PRODUCER",
        Ok(SpanKind::Consumer) => "CONSUMER",
        Ok(SpanKind::Unspecified) | Err(_) => "UNSPECIFIED",
    }
}

fn status_name(code: i32) -> &'static str {
    match StatusCode::try_from(code) {
        Ok(StatusCode::Ok) => "OK",
        Ok(StatusCode::Error) => "ERROR",
        Ok(StatusCode::Unset) | Err(_) => "UNSET",
    }
}
