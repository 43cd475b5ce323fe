//! `ExportLogsServiceRequest` from OTLP/JSON.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use serde_json::Value;

use super::common::{any_value, key_values, resource, scope};
use super::reader::{JsonResult, Obj};

pub fn logs_request(body: &Value) -> JsonResult<ExportLogsServiceRequest> {
    let root = Obj::new(body, "$".to_owned())?;
    let mut request = ExportLogsServiceRequest::default();
    for rl in root.objects("resourceLogs")? {
        let mut resource_logs = ResourceLogs {
            resource: resource(&rl)?,
            schema_url: rl.string("schemaUrl")?,
            ..Default::default()
        };
        for sl in rl.objects("scopeLogs")? {
            let log_records = sl.objects("logRecords")?.iter().map(log_record).collect::<JsonResult<_>>()?;
            resource_logs.scope_logs.push(ScopeLogs {
                scope: scope(&sl)?,
                log_records,
                schema_url: sl.string("schemaUrl")?,
            });
        }
        request.resource_logs.push(resource_logs);
    }
    Ok(request)
}

fn log_record(o: &Obj) -> JsonResult<LogRecord> {
    let body = match o.get("body") {
        Some(value) => Some(any_value(value, format!("{}.body", o.path))?),
        None => None,
    };
    Ok(LogRecord {
        time_unix_nano: o.u64("timeUnixNano")?,
        observed_time_unix_nano: o.u64("observedTimeUnixNano")?,
        severity_number: o
            .enumeration("severityNumber", |n| SeverityNumber::from_str_name(n).map(|s| s as i32))?,
        severity_text: o.string("severityText")?,
        body,
        attributes: key_values(o, "attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
        flags: o.u32("flags")?,
        trace_id: o.hex_id("traceId")?,
        span_id: o.hex_id("spanId")?,
        event_name: o.string("eventName")?,
    })
}
