//! `ExportTraceServiceRequest` from OTLP/JSON.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::Value;

use super::common::{key_values, resource, scope};
use super::reader::{JsonResult, Obj};

pub fn traces_request(body: &Value) -> JsonResult<ExportTraceServiceRequest> {
    let root = Obj::new(body, "$".to_owned())?;
    let mut request = ExportTraceServiceRequest::default();
    for rs in root.objects("resourceSpans")? {
        let mut resource_spans = ResourceSpans {
            resource: resource(&rs)?,
            schema_url: rs.string("schemaUrl")?,
            ..Default::default()
        };
        for ss in rs.objects("scopeSpans")? {
            let spans = ss.objects("spans")?.iter().map(span).collect::<JsonResult<_>>()?;
            resource_spans.scope_spans.push(ScopeSpans {
                scope: scope(&ss)?,
                spans,
                schema_url: ss.string("schemaUrl")?,
            });
        }
        request.resource_spans.push(resource_spans);
    }
    Ok(request)
}

fn span(o: &Obj) -> JsonResult<Span> {
    let status = match o.object("status")? {
        Some(s) => Some(Status {
            message: s.string("message")?,
            code: s.enumeration("code", |n| StatusCode::from_str_name(n).map(|c| c as i32))?,
        }),
        None => None,
    };
    Ok(Span {
        trace_id: o.hex_id("traceId")?,
        span_id: o.hex_id("spanId")?,
        trace_state: o.string("traceState")?,
        parent_span_id: o.hex_id("parentSpanId")?,
        flags: o.u32("flags")?,
        name: o.string("name")?,
        kind: o.enumeration("kind", |n| SpanKind::from_str_name(n).map(|k| k as i32))?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        end_time_unix_nano: o.u64("endTimeUnixNano")?,
        attributes: key_values(o, "attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
        events: o.objects("events")?.iter().map(event).collect::<JsonResult<_>>()?,
        dropped_events_count: o.u32("droppedEventsCount")?,
        links: o.objects("links")?.iter().map(link).collect::<JsonResult<_>>()?,
        dropped_links_count: o.u32("droppedLinksCount")?,
        status,
    })
}

fn event(o: &Obj) -> JsonResult<Event> {
    Ok(Event {
        time_unix_nano: o.u64("timeUnixNano")?,
        name: o.string("name")?,
        attributes: key_values(o, "attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
    })
}

fn link(o: &Obj) -> JsonResult<Link> {
    Ok(Link {
        trace_id: o.hex_id("traceId")?,
        span_id: o.hex_id("spanId")?,
        trace_state: o.string("traceState")?,
        attributes: key_values(o, "attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
        flags: o.u32("flags")?,
    })
}
