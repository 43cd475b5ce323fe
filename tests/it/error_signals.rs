//! One definition of an error signal (`model::payload::Facts::is_error`), four readers: the
//! severity rules, the fingerprints that make problems, the trace tree's `error` flag and the
//! store's SQL (the services' error counts and the evidence order). For every kind of error
//! signal and its near misses, sent over OTLP and the legacy endpoints, each reader must give
//! the same answer.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource { attributes: vec![text("service.name", service)], ..Default::default() })
}

/// What a case sends, besides the INFO log every case's trace starts with.
enum Sent {
    OtlpLog { severity: i32, attributes: Vec<KeyValue> },
    OtlpSpan { status: i32, events: Vec<Event> },
    Legacy { path: &'static str, body: Value },
}

struct Case {
    name: &'static str,
    error: bool,
    sent: Sent,
}

fn exception(attributes: Vec<KeyValue>) -> Event {
    Event { name: "exception".into(), attributes, ..Default::default() }
}

fn cases() -> Vec<Case> {
    use Sent::*;
    let log = |severity, attributes| OtlpLog { severity, attributes };
    let span = |status, events| OtlpSpan { status, events };
    vec![
        Case { name: "otlp-log-error", error: true, sent: log(17, vec![]) },
        Case { name: "otlp-log-fatal", error: true, sent: log(21, vec![]) },
        Case {
            name: "otlp-log-error-with-exception",
            error: true,
            sent: log(17, vec![text("exception.type", "TimeoutError")]),
        },
        Case {
            name: "otlp-log-warn-stack",
            error: false,
            sent: log(13, vec![text("exception.stacktrace", "at x")]),
        },
        Case { name: "otlp-log-info", error: false, sent: log(9, vec![]) },
        Case { name: "otlp-span-failed", error: true, sent: span(2, vec![]) },
        Case {
            name: "otlp-span-ok-typed-exception",
            error: true,
            sent: span(1, vec![exception(vec![text("exception.type", "CardDeclined")])]),
        },
        // Counted by the tree and not by the SQL before the definition was shared.
        Case { name: "otlp-span-unset-exception", error: true, sent: span(0, vec![exception(vec![])]) },
        Case {
            name: "otlp-span-other-event",
            error: false,
            sent: span(0, vec![Event { name: "retry".into(), ..Default::default() }]),
        },
        Case { name: "otlp-span-ok", error: false, sent: span(1, vec![]) },
        Case {
            name: "legacy-log-critical",
            error: true,
            sent: Legacy { path: "/ingest/logs", body: json!({"level": "critical", "message": "disk gone"}) },
        },
        Case {
            name: "legacy-log-warning",
            error: false,
            sent: Legacy { path: "/ingest/logs", body: json!({"level": "warning", "message": "slow disk"}) },
        },
        Case {
            name: "legacy-span-error",
            error: true,
            sent: Legacy {
                path: "/ingest/traces",
                body: json!({"span_id": "s1", "name": "POST /pay", "duration_ms": 3, "status": "ERROR"}),
            },
        },
        Case {
            name: "legacy-span-ok",
            error: false,
            sent: Legacy {
                path: "/ingest/traces",
                body: json!({"span_id": "s1", "name": "POST /pay", "duration_ms": 3, "status": "OK"}),
            },
        },
    ]
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn rfc3339(nanos: u64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos as i64).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

async fn post_otlp(app: &TestApp, path: &str, body: Vec<u8>) {
    let (status, _, answer) = app.post_otlp(path, &[("content-type", "application/x-protobuf")], body).await;
    assert_eq!(status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&answer));
}

/// Sends one case in a trace of its own, under a service of its own: an INFO log first, then
/// the signal of the case one second later.
async fn send(app: &TestApp, index: usize, case: &Case, at: u64) -> String {
    let trace_bytes = [index as u8 + 1; 16];
    let trace_id: String = trace_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let (status, answer) = app
        .post_json(
            "/ingest/logs",
            &json!({"signal_id": uuid::Uuid::new_v4(), "trace_id": trace_id, "service_name": case.name, "timestamp": rfc3339(at),
                    "level": "INFO", "message": "request received"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let later = at + 1_000_000_000;
    match &case.sent {
        Sent::OtlpLog { severity, attributes } => {
            let record = LogRecord {
                time_unix_nano: later,
                severity_number: *severity,
                body: Some(AnyValue { value: Some(any_value::Value::StringValue("the case".into())) }),
                attributes: attributes.clone(),
                trace_id: trace_bytes.to_vec(),
                span_id: vec![7; 8],
                ..Default::default()
            };
            let request = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: resource(case.name),
                    scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
                    ..Default::default()
                }],
            };
            post_otlp(app, "/v1/logs", request.encode_to_vec()).await;
        }
        Sent::OtlpSpan { status, events } => {
            let span = Span {
                trace_id: trace_bytes.to_vec(),
                span_id: vec![7; 8],
                name: "GET /cart".into(),
                kind: 2,
                start_time_unix_nano: later,
                end_time_unix_nano: later + 5_000_000,
                events: events.iter().map(|e| Event { time_unix_nano: later + 1, ..e.clone() }).collect(),
                status: Some(Status { message: String::new(), code: *status }),
                ..Default::default()
            };
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: resource(case.name),
                    scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
                    ..Default::default()
                }],
            };
            post_otlp(app, "/v1/traces", request.encode_to_vec()).await;
        }
        Sent::Legacy { path, body } => {
            let mut body = body.clone();
            body["signal_id"] = json!(uuid::Uuid::new_v4());
            body["trace_id"] = json!(trace_id);
            body["service_name"] = json!(case.name);
            body["timestamp"] = json!(rfc3339(later));
            let (status, answer) = app.post_json(path, &body).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{path}: {answer}");
        }
    }
    trace_id
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get_json(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

#[tokio::test]
async fn rules_fingerprints_the_tree_and_the_sql_agree_on_every_kind_of_error_signal() {
    let app = spawn_app().await;
    let cases = cases();
    let start = now_nanos() - 60_000_000_000;
    let mut traces = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        traces.push(send(&app, index, case, start + index as u64 * 2_000_000_000).await);
    }

    let services = get(
        &app,
        &format!(
            "/query/services?start_time={}&end_time={}",
            rfc3339(start - 1),
            rfc3339(now_nanos() + 60_000_000_000)
        ),
    )
    .await;
    let services = services["items"].as_array().expect("a list of services").clone();
    let mut disagreements = Vec::new();
    for (case, trace_id) in cases.iter().zip(&traces) {
        let mut answers = Vec::new();

        // The SQL, in the services' error counts.
        let summary = services.iter().find(|s| s["service_name"] == case.name).expect("the case's service");
        answers.push((
            "sql: services error_count",
            summary["error_count"].as_i64() == Some(1),
            summary["error_count"].clone(),
        ));

        // The SQL again, in the evidence order: errors first, then oldest first.
        let incidents = get(&app, &format!("/query/incidents?service={}", case.name)).await;
        let incident = &incidents["items"][0];
        let evidence =
            get(&app, &format!("/query/incidents/{}/signals", incident["id"].as_str().unwrap())).await;
        let first = &evidence["items"][0]["payload"];
        let case_first = first["message"] != "request received";
        answers.push(("sql: evidence order", case_first, first.clone()));

        // The rules: an error signal raises its incident to HIGH at least.
        let severity = incident["severity"].as_str().unwrap_or_default().to_owned();
        if case.error {
            answers.push((
                "rules: severity",
                matches!(severity.as_str(), "high" | "critical"),
                json!(severity),
            ));
        }

        // The fingerprints: an error signal, and only one, is grouped into a problem.
        let problems = get(&app, &format!("/query/problems?service={}", case.name)).await;
        answers.push(("fingerprint: problem", problems["total"] == 1, problems["total"].clone()));

        // The trace tree's flag, for spans.
        if matches!(case.sent, Sent::OtlpSpan { .. }) || case.name.starts_with("legacy-span") {
            let tree = get(&app, &format!("/query/traces/{trace_id}/tree")).await;
            answers.push((
                "tree: error flag",
                tree["spans"][0]["error"] == true,
                tree["spans"][0]["error"].clone(),
            ));
            answers.push(("tree: error count", tree["error_count"] == 1, tree["error_count"].clone()));
        }

        for (reader, said_error, shown) in answers {
            if said_error != case.error {
                disagreements.push(format!("{}: {reader} says error={said_error} ({shown})", case.name));
            }
        }
    }
    assert!(disagreements.is_empty(), "readers disagree with the definition:\n{}", disagreements.join("\n"));
    app.stop().await.unwrap();
}
