//! The dashboard's richer queries (issue 7): keyset pagination, incident status, evidence,
//! services, the trace tree, and the level / text filters.

use std::collections::HashSet;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{column, log_body, spawn_app, TestApp};

/// A legacy log at `timestamp`.
fn log_at(trace_id: &str, level: &str, message: &str, timestamp: &str) -> Value {
    let mut body = log_body(trace_id, level, message);
    body["timestamp"] = json!(timestamp);
    body
}

async fn post_all(app: &TestApp, bodies: Vec<Value>) {
    for chunk in bodies.chunks(100) {
        let (status, answer) = app.post_json("/ingest/logs", &Value::Array(chunk.to_vec())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
}

/// Every item id of every page of `path` (which has `?`), following `next_cursor`; between
/// pages, `between` runs (new data arriving). Bounded: at most 100 pages.
async fn walk<F, Fut>(app: &TestApp, path: &str, mut between: F) -> Vec<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..100 {
        let url = match &cursor {
            Some(cursor) => format!("{path}&cursor={cursor}"),
            None => path.to_owned(),
        };
        let (status, body) = app.get_json(&url).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        ids.extend(body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
        between(page).await;
    }
    panic!("more than 100 pages");
}

fn assert_same_set(pages: &[String], expected: &HashSet<String>) {
    let unique: HashSet<String> = pages.iter().cloned().collect();
    assert_eq!(unique.len(), pages.len(), "an item repeated across pages");
    assert_eq!(&unique, expected, "items missing or foreign");
}

#[tokio::test]
async fn keyset_pages_of_signals_and_incidents_have_no_gaps_or_repeats_while_data_arrives() {
    let app = spawn_app().await;
    // 250 error logs in 250 traces; five share each timestamp, so ties are broken by id.
    let bodies: Vec<Value> = (0..250)
        .map(|i| log_at(&format!("t-page-{i}"), "ERROR", "boom", &format!("2024-05-01T10:{:02}:00Z", i / 5)))
        .collect();
    post_all(&app, bodies).await;
    let db = app.db().await;
    // One incident as the worker might leave it, without `detected_at`: it sorts last.
    db.execute("UPDATE incidents SET detected_at = NULL WHERE trace_id = 't-page-7'", &[]).await.unwrap();
    let signals: HashSet<String> =
        column(&db, "SELECT id::text FROM raw_signals").await.into_iter().collect();
    let incidents: HashSet<String> =
        column(&db, "SELECT id::text FROM incidents").await.into_iter().collect();

    // New data between pages: newer signals and new incidents, which must not shift the walk.
    let arrive = |page: usize| {
        let app = &app;
        async move {
            let fresh: Vec<Value> = (0..7)
                .map(|i| log_at(&format!("t-new-{page}-{i}"), "ERROR", "late", "2030-01-01T00:00:00Z"))
                .collect();
            post_all(app, fresh).await;
        }
    };
    let pages = walk(&app, "/query/signals?limit=40&service_name=checkout&start_time=2024-01-01T00:00:00Z&end_time=2025-01-01T00:00:00Z", arrive).await;
    assert_same_set(&pages, &signals);
    let pages = walk(&app, "/query/incidents?limit=25", arrive).await;
    let new_incidents: usize =
        app.db().await.query_one("SELECT count(*) FROM incidents", &[]).await.unwrap().get::<_, i64>(0)
            as usize
            - incidents.len();
    assert!(new_incidents > 0, "incidents arrived during the walk");
    let seen: HashSet<String> = pages.iter().cloned().collect();
    assert_eq!(seen.len(), pages.len(), "an incident repeated across pages");
    assert!(incidents.is_subset(&seen), "every incident present when the walk began is on a page");
    assert_eq!(
        pages.last().unwrap(),
        &db.query_one("SELECT id::text FROM incidents WHERE trace_id = 't-page-7'", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "the undated incident comes last"
    );

    // Offset pagination keeps working, with a cursor to continue from.
    let (_, page) = app.get_json("/query/signals?limit=10&offset=10").await;
    assert_eq!((page["limit"].clone(), page["offset"].clone()), (json!(10), json!(10)));
    assert!(page["next_cursor"].is_string());
    let (_, last) = app.get_json("/query/incidents?limit=200&offset=200").await;
    assert!(last["next_cursor"].is_null(), "a page shorter than its limit is the last");
}

#[tokio::test]
async fn a_bad_cursor_is_422_and_an_offset_skips_rows_after_a_cursor() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/query/signals?cursor=not-a-cursor").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["query", "cursor"]));
    post_all(
        &app,
        vec![log_body("t-c", "ERROR", "x"), log_body("t-d", "ERROR", "y"), log_body("t-e", "ERROR", "z")],
    )
    .await;
    let (_, all) = app.get_json("/query/incidents?limit=3").await;
    let (_, page) = app.get_json("/query/incidents?limit=1").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (status, after) = app.get_json(&format!("/query/incidents?cursor={cursor}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after["items"][0]["id"], all["items"][1]["id"]);
    let (status, skipped) = app.get_json(&format!("/query/incidents?cursor={cursor}&offset=1")).await;
    assert_eq!(status, StatusCode::OK, "{skipped}");
    assert_eq!(skipped["offset"], 1);
    assert_eq!(skipped["items"][0]["id"], all["items"][2]["id"], "one more row skipped after the cursor");
    // A cursor without a time (an incident list's last rows) names the end of a signal list.
    let (status, end) = app.get_json("/query/signals?cursor=-_00000000000000000000000000000000").await;
    assert_eq!(status, StatusCode::OK, "{end}");
    assert_eq!(end["items"], json!([]));
}

async fn patch(app: &TestApp, id: &str, body: Value) -> (StatusCode, Value) {
    let response =
        app.http.patch(app.url(&format!("/query/incidents/{id}"))).json(&body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn incident_status_follows_valid_transitions_and_refuses_others_with_409() {
    let app = spawn_app().await;
    post_all(&app, vec![log_body("t-status", "ERROR", "boom")]).await;
    let (_, page) = app.get_json("/query/incidents").await;
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();

    let (status, incident) = patch(&app, &id, json!({"status": "investigating"})).await;
    assert_eq!(
        (status, incident["status"].clone(), incident["resolved_at"].clone()),
        (StatusCode::OK, json!("investigating"), Value::Null)
    );
    let (status, body) = patch(&app, &id, json!({"status": "open"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["detail"], "cannot move an incident from investigating to open; allowed: resolved");
    let (status, same) = patch(&app, &id, json!({"status": "INVESTIGATING"})).await;
    assert_eq!(
        (status, same["status"].clone()),
        (StatusCode::OK, json!("investigating")),
        "same status: no change"
    );

    let (status, resolved) = patch(&app, &id, json!({"status": "resolved"})).await;
    assert_eq!(status, StatusCode::OK);
    let resolved_at = resolved["resolved_at"].as_str().expect("resolving sets resolved_at").to_owned();
    let (_, reopened) = patch(&app, &id, json!({"status": "open"})).await;
    assert_eq!(
        (reopened["status"].clone(), reopened["resolved_at"].clone()),
        (json!("open"), Value::Null),
        "reopening clears resolved_at"
    );
    patch(&app, &id, json!({"status": "resolved"})).await;
    let (status, closed) = patch(&app, &id, json!({"status": "closed"})).await;
    assert_eq!((status, closed["status"].clone()), (StatusCode::OK, json!("closed")));
    assert!(closed["resolved_at"].as_str().unwrap() >= resolved_at.as_str(), "closing keeps resolved_at");
    let (status, body) = patch(&app, &id, json!({"status": "open"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["detail"].as_str().unwrap().contains("closed is final"), "{body}");
    // What the list shows.
    let (_, incident) = app.get_json(&format!("/query/incidents/{id}")).await;
    assert_eq!(incident["status"], "closed");

    let (status, body) = patch(&app, &id, json!({"status": "done"})).await;
    assert_eq!(
        (status, body["detail"][0]["loc"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "status"]))
    );
    let (status, _) = patch(&app, &id, json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = patch(&app, &uuid::Uuid::new_v4().to_string(), json!({"status": "resolved"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn string(text: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(text.to_owned())) })
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: string(service),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// A checkout trace: gateway root (0–100 ms) → payment (10–40 ms, ERROR) → bank (15–25 ms),
/// and gateway → inventory (50–60 ms); a log inside payment and one outside any span.
async fn post_checkout_trace(app: &TestApp, trace: [u8; 16]) {
    let base = 1_714_558_830_000_000_000u64;
    let span = |id: u8, parent: Option<u8>, name: &str, from_ms: u64, to_ms: u64, error: bool| Span {
        trace_id: trace.to_vec(),
        span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: parent.map(|p| vec![0, 0, 0, 0, 0, 0, 0, p]).unwrap_or_default(),
        name: name.to_owned(),
        start_time_unix_nano: base + from_ms * 1_000_000,
        end_time_unix_nano: base + to_ms * 1_000_000,
        status: Some(Status {
            code: if error { status::StatusCode::Error } else { status::StatusCode::Ok } as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    let resource_spans = |service: &str, spans: Vec<Span>| ResourceSpans {
        resource: resource(service),
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        ..Default::default()
    };
    let traces = ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans("gateway", vec![span(1, None, "POST /checkout", 0, 100, false)]),
            resource_spans(
                "payment",
                vec![span(2, Some(1), "charge", 10, 40, true), span(3, Some(2), "bank", 15, 25, false)],
            ),
            resource_spans("inventory", vec![span(4, Some(1), "reserve", 50, 60, false)]),
        ],
    };
    let log = |span: Option<u8>, at_ms: u64, message: &str| LogRecord {
        time_unix_nano: base + at_ms * 1_000_000,
        severity_number: 17,
        trace_id: trace.to_vec(),
        span_id: span.map(|s| vec![0, 0, 0, 0, 0, 0, 0, s]).unwrap_or_default(),
        body: string(message),
        ..Default::default()
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("payment"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![log(Some(2), 30, "card declined"), log(None, 120, "after the fact")],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    for (path, body) in [("/v1/traces", traces.encode_to_vec()), ("/v1/logs", logs.encode_to_vec())] {
        let (status, _, _) = app.post_otlp(path, &[("content-type", "application/x-protobuf")], body).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn the_trace_tree_nests_spans_with_offsets_logs_services_and_errors() {
    let app = spawn_app().await;
    let trace = [0x5b; 16];
    post_checkout_trace(&app, trace).await;
    let trace_id = "5b".repeat(16);
    let (status, tree) = app.get_json(&format!("/query/traces/{trace_id}/tree")).await;
    assert_eq!(status, StatusCode::OK, "{tree}");
    let rows: Vec<(String, u64, f64, f64, bool)> = tree["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["depth"].as_u64().unwrap(),
                s["start_offset_ms"].as_f64().unwrap(),
                s["duration_ms"].as_f64().unwrap(),
                s["error"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("POST /checkout", 0, 0.0, 100.0, false),
        ("charge", 1, 10.0, 30.0, true),
        ("bank", 2, 15.0, 10.0, false),
        ("reserve", 1, 50.0, 10.0, false),
    ];
    let expected: Vec<(String, u64, f64, f64, bool)> =
        expected.iter().map(|(n, d, o, ms, e)| (n.to_string(), *d, *o, *ms, *e)).collect();
    assert_eq!(rows, expected);
    assert_eq!(tree["root_span_ids"], json!(["0000000000000001"]));
    assert_eq!(tree["spans"][0]["children"], json!(["0000000000000002", "0000000000000004"]));
    assert_eq!(tree["spans"][1]["logs"][0]["payload"]["message"], "card declined");
    assert_eq!(tree["unattached_logs"][0]["payload"]["message"], "after the fact");
    assert_eq!(tree["services"], json!(["gateway", "inventory", "payment"]));
    assert_eq!((tree["span_count"].clone(), tree["error_count"].clone()), (json!(4), json!(1)));
    assert_eq!(tree["duration_ms"], 120.0, "from the root's start to the last log");
    assert_eq!(
        app.get(&format!("/query/traces/{}/tree", "0".repeat(32))).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn incident_evidence_lists_the_errors_first() {
    let app = spawn_app().await;
    post_checkout_trace(&app, [0x7c; 16]).await;
    let db = app.db().await;
    let id: uuid::Uuid = db
        .query_one("SELECT id FROM incidents WHERE trace_id = $1", &[&"7c".repeat(16)])
        .await
        .unwrap()
        .get(0);
    let (status, page) = app.get_json(&format!("/query/incidents/{id}/signals?limit=3")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 6, "4 spans and 2 logs");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    // The ERROR span and the two ERROR logs (severity 17), oldest first; then the rest.
    let first: Vec<&str> = items
        .iter()
        .map(|i| i["payload"]["name"].as_str().or(i["payload"]["message"].as_str()).unwrap())
        .collect();
    assert_eq!(first, ["charge", "card declined", "after the fact"], "{page}");
    let (_, rest) = app.get_json(&format!("/query/incidents/{id}/signals?limit=3&offset=3")).await;
    let rest: Vec<&str> =
        rest["items"].as_array().unwrap().iter().map(|i| i["payload"]["name"].as_str().unwrap()).collect();
    assert_eq!(rest, ["POST /checkout", "bank", "reserve"]);
    assert_eq!(
        app.get(&format!("/query/incidents/{}/signals", uuid::Uuid::new_v4())).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn services_show_counts_by_type_errors_and_last_seen_over_a_range() {
    let app = spawn_app().await;
    post_checkout_trace(&app, [0x9a; 16]).await;
    post_all(&app, vec![log_at("t-old", "ERROR", "long ago", "2020-01-01T00:00:00Z")]).await;
    let (status, body) =
        app.get_json("/query/services?start_time=2024-05-01T00:00:00Z&end_time=2024-05-02T00:00:00Z").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["service_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["gateway", "inventory", "payment"], "the 2020 log is outside the range");
    let payment = &items[2];
    assert_eq!(payment["signals"], json!({"log": 2, "trace": 2, "metric": 0, "total": 4}));
    assert_eq!(payment["error_count"], 3, "the ERROR span and two ERROR logs");
    assert_eq!(payment["last_seen"], "2024-05-01T10:20:30.120Z");
    assert_eq!(items[0]["error_count"], 0);
    // A range that ends before it starts holds nothing.
    let (status, empty) =
        app.get_json("/query/services?start_time=2024-05-02T00:00:00Z&end_time=2024-05-01T00:00:00Z").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(empty["items"], json!([]));
}

#[tokio::test]
async fn signals_filter_by_level_and_by_text_in_messages() {
    let app = spawn_app().await;
    post_all(
        &app,
        vec![
            log_body("t-f", "ERROR", "Payment FAILED for order 7"),
            log_body("t-f", "INFO", "payment ok"),
            log_body("t-f", "WARNING", "disk 50% full"),
            log_body("t-f", "INFO", "disk 500 full_"),
        ],
    )
    .await;
    let messages = |path: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app.get_json(path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            let mut found: Vec<String> = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["payload"]["message"].as_str().unwrap().to_owned())
                .collect();
            found.sort();
            found
        }
    };
    assert_eq!(messages("/query/signals?level=error").await, ["Payment FAILED for order 7"]);
    assert_eq!(messages("/query/signals?q=payment").await, ["Payment FAILED for order 7", "payment ok"]);
    assert_eq!(messages("/query/signals?q=50%25").await, ["disk 50% full"], "% is literal");
    assert_eq!(messages("/query/signals?q=full_").await, ["disk 500 full_"], "_ is literal");
    assert_eq!(messages("/query/signals?q=payment&level=INFO").await, ["payment ok"]);
    let (status, body) = app.get_json("/query/signals?level=loud").await;
    assert_eq!(
        (status, body["detail"][0]["loc"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(["query", "level"]))
    );
}
