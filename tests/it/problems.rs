//! Storm control across traces (issue 8): a fault failing many requests, each in its own trace,
//! is one problem and one analysis.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use reqwest::StatusCode;
use serde_json::json;

use crate::celery_worker::Worker;
use crate::helpers::{column, spawn_app_with, TestApp};

fn string(text: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(text.to_owned())) })
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.to_owned(), value: string(value), ..Default::default() }
}

/// One service's fault: the span that fails and the exception it raises.
struct Fault {
    service: &'static str,
    span: &'static str,
    exception: &'static str,
}

const FAULTS: [Fault; 2] = [
    Fault { service: "checkout", span: "POST /pay", exception: "CardDeclinedError" },
    Fault { service: "inventory", span: "reserve", exception: "StockTimeoutError" },
];

/// `count` failing requests of `fault`, traces numbered from `first`: each a span with status
/// ERROR recording the exception (as the SDKs' `record_exception` does) and an ERROR log with
/// the exception's attributes. Messages differ by order number and trace, as in real outages.
fn failing_requests(fault: &Fault, first: u32, count: u32) -> (Vec<u8>, Vec<u8>) {
    let base = 1_714_558_830_000_000_000u64;
    let mut spans = Vec::new();
    let mut logs = Vec::new();
    for n in first..first + count {
        let mut trace = [0u8; 16];
        trace[..4].copy_from_slice(&n.to_be_bytes());
        trace[15] = 1;
        let message = format!("{} for order {} (attempt {})", fault.exception, 10_000 + n, n % 3 + 1);
        spans.push(Span {
            trace_id: trace.to_vec(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
            name: fault.span.to_owned(),
            start_time_unix_nano: base + u64::from(n) * 1_000_000,
            end_time_unix_nano: base + u64::from(n) * 1_000_000 + 500_000,
            status: Some(Status { code: status::StatusCode::Error as i32, message: message.clone() }),
            events: vec![Event {
                name: "exception".into(),
                attributes: vec![kv("exception.type", fault.exception), kv("exception.message", &message)],
                ..Default::default()
            }],
            ..Default::default()
        });
        logs.push(LogRecord {
            time_unix_nano: base + u64::from(n) * 1_000_000 + 100_000,
            severity_number: 17,
            trace_id: trace.to_vec(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
            body: string(&message),
            attributes: vec![kv("exception.type", fault.exception), kv("exception.message", &message)],
            ..Default::default()
        });
    }
    let resource =
        Some(Resource { attributes: vec![kv("service.name", fault.service)], ..Default::default() });
    let traces = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource.clone(),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource,
            scope_logs: vec![ScopeLogs { log_records: logs, ..Default::default() }],
            ..Default::default()
        }],
    };
    (traces.encode_to_vec(), logs.encode_to_vec())
}

/// 1,000 failing requests, 500 per fault, exported by 10 concurrent exporters per signal type.
async fn outage(app: &TestApp) {
    let mut exports = Vec::new();
    for (index, fault) in FAULTS.iter().enumerate() {
        for chunk in 0..5u32 {
            let first = index as u32 * 500 + chunk * 100;
            let (traces, logs) = failing_requests(fault, first, 100);
            exports.push(("/v1/traces", traces));
            exports.push(("/v1/logs", logs));
        }
    }
    let sends = exports.into_iter().map(|(path, body)| async move {
        let (status, _, _) = app.post_otlp(path, &[("content-type", "application/x-protobuf")], body).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    });
    futures_util::future::join_all(sends).await;
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.db().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_thousand_failing_traces_of_two_faults_are_two_problems_and_at_most_two_analyses() {
    let app = crate::helpers::spawn_app_dispatching_by_hand(&["--analysis-debounce-seconds", "0"]).await;
    let worker = Worker::start(&app.redis.url()).await;
    outage(&app).await;

    assert_eq!(count(&app, "SELECT count(*) FROM incidents").await, 1000);
    assert_eq!(count(&app, "SELECT count(*) FROM problems").await, 2);
    assert_eq!(
        count(&app, "SELECT count(*) FROM (SELECT incident_id FROM incident_problems GROUP BY incident_id HAVING count(*) = 1) one").await,
        1000,
        "every incident is linked to exactly one problem"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM analysis_outbox").await,
        2,
        "one analysis request per problem"
    );

    // Every request in the outbox, and nothing else, goes to the worker's queue.
    let runs = worker.run_what_is_dispatched(&app, 2).await;
    worker.assert_healthy();
    assert_eq!(runs.len(), 2, "one analyze_trace per problem: {runs:?}");
    let db = app.db().await;
    let representatives: Vec<String> =
        column(&db, "SELECT representative_trace_id FROM problems ORDER BY title").await;
    let mut ran: Vec<String> = runs.iter().map(|r| r["trace_id"].as_str().unwrap().to_owned()).collect();
    ran.sort();
    let mut expected = representatives.clone();
    expected.sort();
    assert_eq!(ran, expected, "analyze_trace(representative trace) for each problem");

    // What the dashboard sees.
    let (status, page) = app.get_json("/query/problems").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 2);
    let mut titles: Vec<(String, i64, serde_json::Value)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["title"].as_str().unwrap().to_owned(),
                p["trace_count"].as_i64().unwrap(),
                p["services"].clone(),
            )
        })
        .collect();
    titles.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        titles,
        [
            ("checkout: CardDeclinedError".to_owned(), 500, json!(["checkout"])),
            ("inventory: StockTimeoutError".to_owned(), 500, json!(["inventory"]))
        ]
    );
    let checkout =
        page["items"].as_array().unwrap().iter().find(|p| p["services"] == json!(["checkout"])).unwrap();
    assert_eq!(checkout["signal_count"], 1000, "a span and a log per request");
    assert_eq!(checkout["severity"], "high");
    let id = checkout["id"].as_str().unwrap();
    let (_, detail) = app.get_json(&format!("/query/problems/{id}")).await;
    assert_eq!(detail["incidents"].as_array().unwrap().len(), 100, "a sample of its incidents");
    assert!(detail["sample_signals"].as_array().unwrap().iter().all(|s| s["service_name"] == "checkout"));
    assert_eq!(detail["sample_signals"][0]["trace_id"], detail["representative_trace_id"]);
    let (_, incidents) = app.get_json(&format!("/query/incidents?problem={id}&limit=200")).await;
    assert_eq!(incidents["total"], 500);
    assert!(incidents["items"].as_array().unwrap().iter().all(|i| i["problem_id"] == id));
    let (_, filtered) = app.get_json("/query/problems?service=inventory&severity=high").await;
    assert_eq!(filtered["total"], 1);
    assert_eq!(
        app.get(&format!("/query/problems/{}", uuid::Uuid::new_v4())).await.status(),
        StatusCode::NOT_FOUND
    );
    let (status, _) = app.get_json("/query/incidents?problem=not-a-uuid").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    worker.stop().await;
}

#[tokio::test]
async fn after_the_window_a_problem_asks_again_and_with_grouping_off_every_trace_does() {
    // A zero window: every batch that brings a wanting trace may claim the problem again.
    let app = spawn_app_with(&["--problem-analysis-window-seconds", "0"]).await;
    let (traces, logs) = failing_requests(&FAULTS[0], 0, 3);
    for (path, body) in [("/v1/traces", traces), ("/v1/logs", logs)] {
        let (status, _, _) = app.post_otlp(path, &[("content-type", "application/x-protobuf")], body).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (traces, _) = failing_requests(&FAULTS[0], 10, 3);
    app.post_otlp("/v1/traces", &[("content-type", "application/x-protobuf")], traces).await;
    assert_eq!(count(&app, "SELECT count(*) FROM problems").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM analysis_outbox").await, 2, "one per batch that wanted one");

    let per_trace = spawn_app_with(&["--problem-grouping", "false"]).await;
    let (traces, _) = failing_requests(&FAULTS[1], 0, 5);
    per_trace.post_otlp("/v1/traces", &[("content-type", "application/x-protobuf")], traces).await;
    assert_eq!(count(&per_trace, "SELECT count(*) FROM analysis_outbox").await, 5, "one per trace");
    assert_eq!(
        count(&per_trace, "SELECT count(*) FROM problems").await,
        0,
        "grouping off: no problems at all"
    );
}
