use std::time::Duration;

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::*;
use crate::mapping::MappingOptions;

const OPTIONS: MappingOptions = MappingOptions {
    correlation_window: Duration::from_secs(300),
    limits: crate::mapping::limits::ValueLimits::DEFAULT,
};

fn received_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-01T10:20:30Z").unwrap().with_timezone(&Utc)
}

fn record(severity_number: i32, severity_text: &str, exception: bool) -> LogRecord {
    let attributes = if exception {
        vec![KeyValue {
            key: "exception.type".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue("Boom".into())) }),
            ..Default::default()
        }]
    } else {
        vec![]
    };
    LogRecord { severity_number, severity_text: severity_text.into(), attributes, ..Default::default() }
}

#[test]
fn severity_numbers_map_onto_the_workers_five_levels() {
    let expected = [
        (1, "DEBUG"),
        (4, "DEBUG"),
        (5, "DEBUG"),
        (8, "DEBUG"),
        (9, "INFO"),
        (12, "INFO"),
        (13, "WARNING"),
        (16, "WARNING"),
        (17, "ERROR"),
        (20, "ERROR"),
        (21, "CRITICAL"),
        (24, "CRITICAL"),
    ];
    for (number, level) in expected {
        assert_eq!(logs::level(&record(number, "", false)), level, "severity_number {number}");
    }
}

#[test]
fn severity_text_is_used_when_the_number_is_unset_or_out_of_range() {
    for (text, level) in [
        ("WARN", "WARNING"),
        ("fatal", "CRITICAL"),
        ("Err", "ERROR"),
        ("panic", "CRITICAL"),
        ("info", "INFO"),
    ] {
        assert_eq!(logs::level(&record(0, text, false)), level, "{text}");
    }
    assert_eq!(logs::level(&record(99, "error", false)), "ERROR");
}

#[test]
fn no_severity_is_info_unless_the_record_carries_an_exception() {
    assert_eq!(logs::level(&record(0, "", false)), "INFO");
    assert_eq!(logs::level(&record(0, "", true)), "ERROR");
    assert_eq!(logs::level(&record(0, "whatever", true)), "ERROR");
}

fn one_log(record: LogRecord) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
            ..Default::default()
        }],
    }
}

#[test]
fn a_log_without_time_uses_receipt_time_and_keeps_a_stable_id() {
    let request = one_log(record(9, "", false));
    let first = logs_to_signals(&request, received_at(), &OPTIONS);
    let later = logs_to_signals(&request, received_at() + chrono::Duration::seconds(5), &OPTIONS);
    assert_eq!(first.signals[0].timestamp, received_at());
    assert_eq!(first.signals[0].service_name, UNKNOWN_SERVICE);
    assert_eq!(first.signals[0].trace_id, "svc:unknown_service:2024-05-01T10:20:00Z");
    assert_eq!(first.signals[0].signal_id, later.signals[0].signal_id, "a retry maps to the same id");
}

#[test]
fn a_log_with_an_invalid_trace_id_is_kept_under_the_correlation_key() {
    let mut log = record(17, "", false);
    log.trace_id = vec![0; 16];
    log.time_unix_nano = 1_714_558_830_000_000_000;
    let mapped = logs_to_signals(&one_log(log), received_at(), &OPTIONS);
    assert_eq!(mapped.rejected, 0);
    assert!(mapped.signals[0].trace_id.starts_with("svc:"));
}

#[test]
fn spans_with_bad_ids_are_rejected_and_explained() {
    let span = |trace_id: Vec<u8>, span_id: Vec<u8>| Span {
        trace_id,
        span_id,
        name: "s".into(),
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span(vec![1; 16], vec![2; 8]),
                    span(vec![1; 4], vec![2; 8]),
                    span(vec![1; 16], vec![0; 8]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mapped = spans_to_signals(&request, received_at(), &OPTIONS);
    assert_eq!((mapped.signals.len(), mapped.rejected), (1, 2));
    let message = mapped.error_message().unwrap();
    assert!(message.starts_with("2 rejected: "), "{message}");
    assert!(message.contains("trace_id must be 16 bytes, got 4"));
    assert!(message.contains("span_id is all zeros"));
    let signal = &mapped.signals[0];
    assert_eq!(signal.trace_id, "01010101010101010101010101010101");
    assert_eq!(signal.timestamp, received_at(), "start time 0 means unknown");
    assert_eq!(signal.api_payload()["duration_ms"], serde_json::Value::Null);
}

#[test]
fn nothing_rejected_means_no_error_message() {
    assert_eq!(Mapped::default().error_message(), None);
}

fn text_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// The attributes written directly are what the tree and `limits::apply` made of them, within
/// the limits and beyond them (repeated keys, too many entries, long keys and values, nesting).
#[test]
fn attributes_written_directly_equal_the_trimmed_tree() {
    use crate::mapping::json_out::JsonOut;
    use crate::mapping::limits::{apply, ValueLimits};
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    let nested = KeyValue {
        key: "attributes".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![text_kv("b", "x"), text_kv("a", "yyyyyyyyyyyy"), text_kv("c", "z")],
            })),
        }),
        ..Default::default()
    };
    let list = KeyValue {
        key: "list".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(any_value::Value::StringValue("0123456789abc".into())) }],
            })),
        }),
        ..Default::default()
    };
    let cases: Vec<Vec<KeyValue>> = vec![
        vec![text_kv("z", "1"), text_kv("a", "2")],
        vec![text_kv("k", "first"), text_kv("k", "last")],
        (0..10).map(|i| text_kv(&format!("key{}", 9 - i), "v")).collect(),
        vec![
            text_kv("a-very-long-key-indeed", "v"),
            text_kv("ok", "a value longer than ten"),
            text_kv("n\0l", "x\0"),
        ],
        vec![nested, list, text_kv("k", "k"), text_kv("k", "again")],
    ];
    for limits in [ValueLimits::DEFAULT, ValueLimits { attribute_count: 2, value_length: 10 }] {
        for attributes in &cases {
            let mut out = JsonOut::new(limits, 64);
            out.begin_object();
            out.key("attributes");
            attributes::write_attributes(&mut out, "attributes", attributes);
            out.end_object();
            let trimmed = out.trimmed;
            let written: serde_json::Value = serde_json::from_str(&out.finish()).unwrap();
            let mut tree = serde_json::Map::new();
            tree.insert(
                "attributes".into(),
                serde_json::Value::Object(attributes::attributes_json(attributes)),
            );
            let mut tree = crate::mapping::text::map_without_nul(tree);
            let expected = apply(&mut tree, limits);
            tree.remove("truncated");
            assert_eq!(written, serde_json::Value::Object(tree), "{attributes:?} at {limits:?}");
            assert_eq!(trimmed, expected, "{attributes:?} at {limits:?}");
        }
    }
}

/// The facts the mappings take while writing are the facts the payload holds.
#[test]
fn facts_taken_while_writing_agree_with_the_payload() {
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    use opentelemetry_proto::tonic::trace::v1::Status;
    let span = |status: i32, events: Vec<Event>| Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET /x".into(),
        status: Some(Status { code: status, message: String::new() }),
        events,
        start_time_unix_nano: 1_714_558_830_000_000_000,
        ..Default::default()
    };
    let exception = |kind: &str| Event {
        name: "exception".into(),
        attributes: vec![text_kv("exception.type", kind)],
        ..Default::default()
    };
    let spans = [span(0, vec![]), span(2, vec![]), span(1, vec![exception(""), exception("Boom")])];
    for span in spans {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
                ..Default::default()
            }],
        };
        let signal = &spans_to_signals(&request, received_at(), &OPTIONS).signals[0];
        assert_eq!(
            signal.facts,
            crate::model::payload::Facts::of_payload(signal.signal_type, &signal.api_payload())
        );
    }
    let mut with_stack = record(0, "", false);
    with_stack.attributes.push(text_kv("exception.stacktrace", "at x"));
    for log in [record(17, "", true), record(9, "", false), with_stack] {
        let signal = &logs_to_signals(&one_log(log), received_at(), &OPTIONS).signals[0];
        assert_eq!(
            signal.facts,
            crate::model::payload::Facts::of_payload(signal.signal_type, &signal.api_payload())
        );
    }
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    let values = [
        number_data_point::Value::AsDouble(2500.0),
        number_data_point::Value::AsInt(7),
        number_data_point::Value::AsDouble(f64::NAN),
    ];
    for value in values {
        let point = NumberDataPoint {
            time_unix_nano: 1_714_558_830_000_000_000,
            value: Some(value),
            ..Default::default()
        };
        let metric = Metric {
            name: "http.latency".into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: vec![point] })),
            ..Default::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics: vec![metric], ..Default::default() }],
                ..Default::default()
            }],
        };
        let signal = &metrics_to_signals(&request, received_at(), &OPTIONS).signals[0];
        assert_eq!(
            signal.facts,
            crate::model::payload::Facts::of_payload(signal.signal_type, &signal.api_payload())
        );
    }
}
