//! The Jaeger query API under `/jaeger` (issue 22): the shapes Jaeger UI and Grafana read, the
//! mapping of OTLP and legacy signals, search, the service graph, links from incidents.

use std::collections::{BTreeSet, HashMap};

use chrono::{TimeDelta, Utc};
use prodsentinel::store::partitions::Turn;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{post_otlp_json, spawn_app, spawn_app_with, TestApp};

const TRACE: &str = "5b8efff798038103d269b633813fc60c";
const ROOT: &str = "eee19b7ec3c1b174";
const CHILD: &str = "0000000000000b01";
const ORPHAN: &str = "0000000000000c01";
const MISSING_PARENT: &str = "ffffffffffff0001";

/// Nanoseconds `ago` before now, as OTLP JSON writes them.
fn nanos_ago(ago: TimeDelta) -> u64 {
    (Utc::now() - ago).timestamp_nanos_opt().unwrap() as u64
}

fn string(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// A span of OTLP JSON starting at `start` nanoseconds, lasting `ms`.
fn span(trace: &str, id: &str, parent: Option<&str>, name: &str, kind: u8, start: u64, ms: u64) -> Value {
    let mut span = json!({
        "traceId": trace, "spanId": id, "name": name, "kind": kind,
        "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + ms * 1_000_000).to_string(),
    });
    if let Some(parent) = parent {
        span["parentSpanId"] = json!(parent);
    }
    span
}

fn resource_spans(service: &str, extra: &[Value], spans: Vec<Value>) -> Value {
    let mut attributes = vec![string("service.name", service)];
    attributes.extend_from_slice(extra);
    json!({"resource": {"attributes": attributes},
           "scopeSpans": [{"scope": {"name": "io.test.http", "version": "1.2.0"}, "spans": spans}]})
}

/// One trace over two services: a root with attributes of every type, an event and a link; a
/// failing child in another service; a span whose parent never arrived; an error log inside the
/// child and a log naming no span; a metric point of the trace (left out).
async fn send_checkout_trace(app: &TestApp) -> u64 {
    let t0 = nanos_ago(TimeDelta::minutes(2));
    let mut root = span(TRACE, ROOT, None, "POST /checkout", 2, t0, 120);
    root["attributes"] = json!([
        string("http.route", "/checkout"),
        {"key": "cache.hit", "value": {"boolValue": true}},
        {"key": "http.status_code", "value": {"intValue": "500"}},
        {"key": "ratio", "value": {"doubleValue": 0.25}},
        {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}},
        {"key": "map", "value": {"kvlistValue": {"values": [string("k", "v")]}}},
    ]);
    root["events"] = json!([{"timeUnixNano": (t0 + 5_000_000).to_string(), "name": "exception",
                             "attributes": [string("exception.type", "ValueError")]}]);
    root["links"] = json!([{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}]);
    root["status"] = json!({"code": 1});
    let mut child = span(TRACE, CHILD, Some(ROOT), "charge", 3, t0 + 10_000_000, 50);
    child["status"] = json!({"code": 2, "message": "card declined"});
    child["attributes"] = json!([string("payment.provider", "acme")]);
    let orphan = span(TRACE, ORPHAN, Some(MISSING_PARENT), "late work", 1, t0 + 20_000_000, 5);
    let body = json!({"resourceSpans": [
        resource_spans("checkout", &[string("host.name", "web-1")], vec![root, orphan]),
        resource_spans("payments", &[string("host.name", "pay-1")], vec![child]),
    ]});
    post_otlp_json(app, "/v1/traces", &body).await;
    let logs = json!({"resourceLogs": [{"resource": {"attributes": [string("service.name", "payments")]},
    "scopeLogs": [{"logRecords": [
        {"timeUnixNano": (t0 + 30_000_000).to_string(), "severityNumber": 17, "severityText": "ERROR",
         "body": {"stringValue": "charge failed: card declined"}, "traceId": TRACE, "spanId": CHILD,
         "attributes": [string("customer.tier", "gold")]},
        {"timeUnixNano": (t0 + 40_000_000).to_string(), "severityNumber": 9,
         "body": {"stringValue": "request finished"}, "traceId": TRACE},
    ]}]}]});
    post_otlp_json(app, "/v1/logs", &logs).await;
    let (status, _) = app
        .post_json(
            "/ingest/metrics",
            &json!({"signal_id": uuid::Uuid::new_v4(), "trace_id": TRACE, "service_name": "checkout",
                    "timestamp": Utc::now().to_rfc3339(), "metric_name": "latency_ms", "value": 12.0, "unit": "ms"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    t0
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"].as_array().unwrap().iter().find(|t| t["key"] == key)
}

fn spans_by_id(trace: &Value) -> HashMap<String, Value> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["spanID"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

/// What jaeger-ui and Grafana rely on, for every trace of an answer.
fn assert_viewer_rules(trace: &Value) {
    let processes = trace["processes"].as_object().unwrap();
    for span in trace["spans"].as_array().unwrap() {
        assert!(span["startTime"].as_i64().unwrap() > 0, "start time 0: {span}");
        assert!(span["duration"].as_i64().unwrap() >= 0, "{span}");
        let process = span["processID"].as_str().unwrap();
        assert!(processes.contains_key(process), "processID {process} not in processes");
        assert_eq!(span["traceID"], trace["traceID"]);
        for tag in span["tags"].as_array().unwrap() {
            let kind = tag["type"].as_str().unwrap();
            assert!(["string", "bool", "int64", "float64"].contains(&kind), "{tag}");
        }
    }
}

#[tokio::test]
async fn an_otlp_trace_is_drawn_with_its_kinds_statuses_attributes_events_links_and_logs() {
    let app = spawn_app().await;
    let t0 = send_checkout_trace(&app).await;

    let (status, answer) = app.get_json(&format!("/jaeger/api/traces/{TRACE}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["errors"], Value::Null);
    assert_eq!(answer["total"], 1);
    let trace = &answer["data"][0];
    assert_eq!(trace["traceID"], TRACE);
    assert_viewer_rules(trace);
    let spans = spans_by_id(trace);
    assert_eq!(spans.len(), 3, "three spans; the metric point is left out");
    assert_eq!(trace["spans"][0]["spanID"], ROOT, "depth-first from the root");

    let root = &spans[ROOT];
    assert_eq!(root["operationName"], "POST /checkout");
    assert_eq!(root["startTime"], json!(t0 / 1_000));
    assert_eq!(root["duration"], 120_000);
    assert_eq!(
        root["references"],
        json!([{"refType": "FOLLOWS_FROM", "traceID": "0af7651916cd43dd8448eb211c80319c", "spanID": "b7ad6b7169203331"}])
    );
    assert_eq!(tag(root, "http.route").unwrap()["type"], "string");
    assert_eq!(tag(root, "cache.hit").unwrap(), &json!({"key": "cache.hit", "type": "bool", "value": true}));
    assert_eq!(
        tag(root, "http.status_code").unwrap(),
        &json!({"key": "http.status_code", "type": "int64", "value": 500})
    );
    assert_eq!(tag(root, "ratio").unwrap(), &json!({"key": "ratio", "type": "float64", "value": 0.25}));
    assert_eq!(tag(root, "tags").unwrap()["value"], r#"["a",2]"#);
    assert_eq!(tag(root, "map").unwrap()["value"], r#"{"k":"v"}"#);
    assert_eq!(tag(root, "span.kind").unwrap()["value"], "server");
    assert_eq!(tag(root, "otel.status_code").unwrap()["value"], "OK");
    assert_eq!(tag(root, "otel.scope.name").unwrap()["value"], "io.test.http");
    assert_eq!(tag(root, "otel.scope.version").unwrap()["value"], "1.2.0");
    assert!(tag(root, "error").is_none(), "an OK span is no error");
    // The exception event, and the log naming no span, on the root, in time order.
    let root_logs = root["logs"].as_array().unwrap();
    assert_eq!(root_logs.len(), 2, "{root_logs:?}");
    assert_eq!(root_logs[0]["timestamp"], json!((t0 + 5_000_000) / 1_000));
    assert!(root_logs[0]["fields"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "event", "type": "string", "value": "exception"})));
    assert!(root_logs[0]["fields"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "exception.type", "type": "string", "value": "ValueError"})));
    assert!(root_logs[1]["fields"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "message", "type": "string", "value": "request finished"})));

    let child = &spans[CHILD];
    assert_eq!(child["references"][0], json!({"refType": "CHILD_OF", "traceID": TRACE, "spanID": ROOT}));
    assert_eq!(tag(child, "error").unwrap(), &json!({"key": "error", "type": "bool", "value": true}));
    assert_eq!(tag(child, "otel.status_code").unwrap()["value"], "ERROR");
    assert_eq!(tag(child, "otel.status_description").unwrap()["value"], "card declined");
    assert_eq!(tag(child, "span.kind").unwrap()["value"], "client");
    let child_logs = child["logs"].as_array().unwrap();
    assert_eq!(child_logs.len(), 1, "the error log written inside the failing span is beside it");
    let fields = child_logs[0]["fields"].as_array().unwrap();
    for expected in [
        json!({"key": "level", "type": "string", "value": "ERROR"}),
        json!({"key": "message", "type": "string", "value": "charge failed: card declined"}),
        json!({"key": "customer.tier", "type": "string", "value": "gold"}),
    ] {
        assert!(fields.contains(&expected), "{expected} in {fields:?}");
    }

    let orphan = &spans[ORPHAN];
    assert_eq!(
        orphan["references"][0]["spanID"], MISSING_PARENT,
        "the parent that never arrived is still named"
    );
    assert!(orphan["warnings"][0].as_str().unwrap().contains(MISSING_PARENT), "{orphan}");

    // One process per service and resource, the resource's attributes as its tags.
    let processes = trace["processes"].as_object().unwrap();
    let by_service: HashMap<&str, &Value> =
        processes.values().map(|p| (p["serviceName"].as_str().unwrap(), &p["tags"])).collect();
    assert_eq!(processes.len(), 2);
    assert_eq!(by_service["checkout"], &json!([{"key": "host.name", "type": "string", "value": "web-1"}]));
    assert_eq!(by_service["payments"], &json!([{"key": "host.name", "type": "string", "value": "pay-1"}]));
    assert_eq!(processes[root["processID"].as_str().unwrap()]["serviceName"], "checkout");
    assert_eq!(processes[child["processID"].as_str().unwrap()]["serviceName"], "payments");

    // The same trace by a short form of its id, and among several ids with one unknown.
    let (status, padded) = app.get_json("/jaeger/api/traces/00000000000000000000000000000abc").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(padded["errors"][0]["code"], 404);
    assert_eq!(padded["data"], Value::Null);
    let (status, several) = app
        .get_json(&format!("/jaeger/api/traces?traceID={TRACE}&traceID=00000000000000000000000000000abc"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(several["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        several["errors"],
        json!([{"code": 404, "msg": "trace not found", "traceID": "00000000000000000000000000000abc"}])
    );

    // Services and operations.
    let (_, services) = app.get_json("/jaeger/api/services").await;
    assert_eq!(services["data"], json!(["checkout", "payments"]));
    assert_eq!(services["total"], 2);
    let (_, operations) = app.get_json("/jaeger/api/services/checkout/operations").await;
    assert_eq!(operations["data"], json!(["POST /checkout", "late work"]));
    let (_, operations) = app.get_json("/jaeger/api/operations?service=checkout").await;
    assert_eq!(
        operations["data"],
        json!([{"name": "POST /checkout", "spanKind": "server"}, {"name": "late work", "spanKind": "internal"}])
    );
    let (_, servers) = app.get_json("/jaeger/api/operations?service=checkout&spanKind=server").await;
    assert_eq!(servers["data"], json!([{"name": "POST /checkout", "spanKind": "server"}]));
    let (_, none) = app.get_json("/jaeger/api/services/nobody/operations").await;
    assert_eq!(none["data"], json!([]));
    let (status, refused) = app.get_json("/jaeger/api/operations?service=checkout&spanKind=sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["errors"][0]["msg"].as_str().unwrap().contains("'spanKind'"), "{refused}");
}

#[tokio::test]
async fn the_v3_calls_answer_services_operations_and_otlp_json() {
    let app = spawn_app().await;
    let t0 = send_checkout_trace(&app).await;
    let (_, services) = app.get_json("/jaeger/api/v3/services").await;
    assert_eq!(services, json!({"services": ["checkout", "payments"]}));
    let (_, operations) = app.get_json("/jaeger/api/v3/operations?service=payments").await;
    assert_eq!(operations, json!({"operations": [{"name": "charge", "spanKind": "client"}]}));

    let (status, answer) = app.get_json(&format!("/jaeger/api/v3/traces/{TRACE}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let resource_spans = answer["result"]["resourceSpans"].as_array().unwrap();
    assert_eq!(resource_spans.len(), 2, "one per resource");
    let mut spans: HashMap<String, (Value, Value)> = HashMap::new();
    for resource in resource_spans {
        let attributes = resource["resource"]["attributes"].as_array().unwrap();
        assert!(attributes.iter().any(|a| a["key"] == "service.name"), "{resource}");
        for scope in resource["scopeSpans"].as_array().unwrap() {
            assert_eq!(scope["scope"]["name"], "io.test.http");
            for span in scope["spans"].as_array().unwrap() {
                spans.insert(span["spanId"].as_str().unwrap().to_owned(), (span.clone(), resource.clone()));
            }
        }
    }
    let (root, _) = &spans[ROOT];
    assert_eq!(root["kind"], 2);
    assert_eq!(root["status"]["code"], 1);
    assert!(root["attributes"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "http.status_code", "value": {"intValue": "500"}})));
    assert!(root["attributes"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "cache.hit", "value": {"boolValue": true}})));
    assert_eq!(root["links"][0]["spanId"], "b7ad6b7169203331");
    let (child, _) = &spans[CHILD];
    assert_eq!(child["parentSpanId"], ROOT);
    assert_eq!(child["status"], json!({"code": 2, "message": "card declined"}));
    let log = child["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "log")
        .expect("the error log as an event");
    assert!(log["attributes"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "level", "value": {"stringValue": "ERROR"}})));
    assert_eq!(spans[ORPHAN].0["parentSpanId"], MISSING_PARENT);

    let (status, missing) = app.get_json("/jaeger/api/v3/traces/00000000000000000000000000000abc").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["httpCode"], 404);

    let start = (Utc::now() - TimeDelta::hours(1)).to_rfc3339();
    let (status, found) = app
        .http
        .get(app.url("/jaeger/api/v3/traces"))
        .query(&[
            ("query.service_name", "payments"),
            ("query.start_time_min", start.as_str()),
            ("query.attributes", r#"{"payment.provider":"acme"}"#),
        ])
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let found: Value = found.json().await.unwrap();
    let ids: BTreeSet<&str> = found["result"]["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["scopeSpans"].as_array().unwrap())
        .flat_map(|s| s["spans"].as_array().unwrap())
        .map(|s| s["traceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([TRACE]));
    // Jaeger UI's search list: a summary per trace, parameters under their JSON names.
    let (status, listed) = app
        .get_json(&format!(
            "/jaeger/api/v3/trace-summaries?query.serviceName=payments&query.startTimeMin={}",
            urlencode(&start)
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let summary = &listed["summaries"][0];
    assert_eq!(listed["summaries"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(summary["traceId"], TRACE);
    assert_eq!(summary["rootServiceName"], "checkout");
    assert_eq!(summary["rootOperationName"], "POST /checkout");
    assert_eq!(summary["minStartTimeUnixNano"], json!(t0.to_string()));
    assert_eq!(summary["maxEndTimeUnixNano"], json!((t0 + 120_000_000).to_string()));
    assert_eq!(
        (summary["spanCount"].clone(), summary["errorSpanCount"].clone(), summary["orphanSpanCount"].clone()),
        (json!(3), json!(1), json!(1))
    );
    let services: BTreeSet<String> =
        summary["services"].as_array().unwrap().iter().map(|s| s.to_string()).collect();
    assert_eq!(
        services,
        BTreeSet::from([
            json!({"name": "checkout", "spanCount": 2, "errorSpanCount": 0}).to_string(),
            json!({"name": "payments", "spanCount": 1, "errorSpanCount": 1}).to_string(),
        ])
    );
    let (status, refused) = app
        .get_json("/jaeger/api/v3/traces?query.service_name=payments&query.start_time_min=yesterday")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["error"]["message"].as_str().unwrap().contains("query.start_time_min"), "{refused}");
}

#[tokio::test]
async fn a_legacy_trace_is_drawn_from_its_iso_times_attributes_and_logs() {
    let app = spawn_app().await;
    let trace = "legacy-trace-jaeger";
    let start = Utc::now() - TimeDelta::minutes(1);
    let readme_shape = json!({"signal_id": uuid::Uuid::new_v4(), "trace_id": trace, "span_id": "root-1",
        "parent_span_id": null, "service_name": "shop", "name": "GET /cart",
        "start_time": start.to_rfc3339(), "end_time": (start + TimeDelta::milliseconds(250)).to_rfc3339()});
    let code_shape = json!({"signal_id": uuid::Uuid::new_v4(), "trace_id": trace, "span_id": "db-1",
        "parent_span_id": "root-1", "service_name": "inventory", "timestamp": (start + TimeDelta::milliseconds(20)).to_rfc3339(),
        "duration_ms": 80.5, "status": "error", "attributes": {"db.system": "postgresql", "rows": 3}});
    for body in [readme_shape, code_shape] {
        let (status, answer) = app.post_json("/ingest/traces", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let (status, _) = app
        .post_json("/ingest/logs", &crate::helpers::log_body(trace, "ERROR", "inventory query timed out"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let (status, answer) = app.get_json(&format!("/jaeger/api/traces/{trace}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let trace_json = &answer["data"][0];
    assert_viewer_rules(trace_json);
    let spans = spans_by_id(trace_json);
    let root = &spans["root-1"];
    assert_eq!(root["operationName"], "GET /cart");
    assert_eq!(root["startTime"], json!(start.timestamp_micros()));
    assert_eq!(root["duration"], 250_000);
    assert!(root["references"].as_array().unwrap().is_empty());
    assert_eq!(root["logs"].as_array().unwrap().len(), 1, "a legacy log names no span: on the root");
    let db = &spans["db-1"];
    assert_eq!(db["operationName"], "(unnamed)", "the code shape has no name");
    assert_eq!(db["duration"], 80_500);
    assert_eq!(db["references"][0]["spanID"], "root-1");
    assert_eq!(tag(db, "error").unwrap()["value"], true);
    assert_eq!(tag(db, "db.system").unwrap()["value"], "postgresql");
    assert_eq!(tag(db, "rows").unwrap(), &json!({"key": "rows", "type": "int64", "value": 3}));
    assert!(tag(db, "span.kind").is_none(), "a legacy span has no kind");
    let processes = trace_json["processes"].as_object().unwrap();
    let names: BTreeSet<&str> = processes.values().map(|p| p["serviceName"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["inventory", "shop"]));

    let (_, operations) = app.get_json("/jaeger/api/operations?service=inventory").await;
    assert_eq!(operations["data"], json!([{"name": "(unnamed)", "spanKind": ""}]));

    // A trace with logs and no span yet is still a trace: one placeholder span holds them.
    let (status, _) =
        app.post_json("/ingest/logs", &crate::helpers::log_body("logs-only", "INFO", "queued")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, answer) = app.get_json("/jaeger/api/traces/logs-only").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let placeholder = &answer["data"][0]["spans"][0];
    assert_viewer_rules(&answer["data"][0]);
    assert_eq!(placeholder["logs"].as_array().unwrap().len(), 1);
    assert!(placeholder["warnings"][0].as_str().unwrap().contains("no span"), "{placeholder}");
}

/// Three traces of `api` at known times and durations, one per partition hour.
async fn send_search_traces(app: &TestApp) -> [String; 3] {
    let ids = [
        "aaaa0000000000000000000000000001",
        "aaaa0000000000000000000000000002",
        "aaaa0000000000000000000000000003",
    ]
    .map(str::to_owned);
    let specs = [
        (TimeDelta::minutes(5), "GET /a", 30, "eu"),
        (TimeDelta::minutes(70), "GET /b", 700, "us"),
        (TimeDelta::minutes(130), "GET /a", 1500, "us"),
    ];
    for (id, (ago, name, ms, region)) in ids.iter().zip(specs) {
        let mut root = span(id, "1000000000000001", None, name, 2, nanos_ago(ago), ms);
        root["attributes"] = json!([string("region", region)]);
        let body = json!({"resourceSpans": [resource_spans("api", &[string("deployment.environment", if region == "eu" { "prod" } else { "staging" })], vec![root])]});
        post_otlp_json(app, "/v1/traces", &body).await;
    }
    // A log with an attribute only it carries, inside the first trace's span.
    let logs = json!({"resourceLogs": [{"resource": {"attributes": [string("service.name", "api")]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": nanos_ago(TimeDelta::minutes(5)).to_string(), "severityNumber": 17,
            "body": {"stringValue": "boom"}, "traceId": ids[0], "spanId": "1000000000000001",
            "attributes": [string("order.id", "o-17")]}]}]}]});
    post_otlp_json(app, "/v1/logs", &logs).await;
    ids
}

/// The sealed form's parents a scan by time looks into (blocks only of sealed units whose range
/// overlaps, and none is sealed here).
const SEALED_FORM: [&str; 2] = ["raw_signal_sealing", "raw_signal_units"];

async fn search(app: &TestApp, query: &str) -> Vec<String> {
    let (status, answer) = app.get_json(&format!("/jaeger/api/traces?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {answer}");
    for trace in answer["data"].as_array().unwrap() {
        assert_viewer_rules(trace);
    }
    answer["data"].as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn search_filters_alone_and_combined_across_partitions() {
    let app = spawn_app_with(&["--partition-interval", "1h"]).await;
    let ids = send_search_traces(&app).await;
    let [recent, middle, old] = [ids[0].as_str(), ids[1].as_str(), ids[2].as_str()];
    let now = Utc::now();
    let micros = |ago: TimeDelta| (now - ago).timestamp_micros();
    let three_hours = format!("start={}&end={}", micros(TimeDelta::hours(3)), micros(TimeDelta::zero()));

    // Service alone: the default lookback is an hour; the range given reaches all three, newest first.
    assert_eq!(search(&app, "service=api").await, [recent]);
    assert_eq!(search(&app, "service=api&lookback=3h").await, [recent, middle, old]);
    assert_eq!(search(&app, &format!("service=api&{three_hours}")).await, [recent, middle, old]);
    // Bare and empty parameters, as the UI sends them, are absent.
    assert_eq!(
        search(&app, &format!("service=api&{three_hours}&operation&tags=&minDuration=&maxDuration&limit="))
            .await,
        [recent, middle, old]
    );
    // Each filter alone.
    assert_eq!(search(&app, &format!("service=api&{three_hours}&operation=GET%20%2Fa")).await, [recent, old]);
    assert_eq!(search(&app, &format!("service=api&{three_hours}&minDuration=600ms")).await, [middle, old]);
    assert_eq!(search(&app, &format!("service=api&{three_hours}&maxDuration=1s")).await, [recent, middle]);
    assert_eq!(search(&app, &format!("service=api&{three_hours}&limit=2")).await, [recent, middle]);
    let tags = |json: &str| format!("service=api&{three_hours}&tags={}", urlencode(json));
    assert_eq!(search(&app, &tags(r#"{"region":"us"}"#)).await, [middle, old], "a span attribute");
    assert_eq!(
        search(&app, &tags(r#"{"deployment.environment":"prod"}"#)).await,
        [recent],
        "a resource attribute"
    );
    assert_eq!(search(&app, &tags(r#"{"order.id":"o-17"}"#)).await, [recent], "a log attribute");
    assert_eq!(search(&app, &tags(r#"{"span.kind":"server"}"#)).await.len(), 3);
    assert_eq!(
        search(&app, &format!("service=api&{three_hours}&tags=region%3Dus")).await,
        [middle, old],
        "key=value"
    );
    // Combined.
    assert_eq!(
        search(&app, &format!("service=api&{three_hours}&operation=GET%20%2Fa&minDuration=1s")).await,
        [old]
    );
    assert_eq!(search(&app, &format!("{}&operation=GET%20%2Fb", tags(r#"{"region":"us"}"#))).await, [middle]);
    assert!(search(&app, &format!("{}&maxDuration=100ms", tags(r#"{"region":"us"}"#))).await.is_empty());
    // A range of the middle hour only.
    let middle_hour =
        format!("start={}&end={}", micros(TimeDelta::minutes(100)), micros(TimeDelta::minutes(40)));
    assert_eq!(search(&app, &format!("service=api&{middle_hour}")).await, [middle]);
    // An unknown service is an empty answer, not an error; so are empty bounds.
    assert!(search(&app, "service=nobody").await.is_empty());
    assert!(search(&app, &format!("service=api&{three_hours}&minDuration=2s&maxDuration=1s"))
        .await
        .is_empty());
    let reversed = format!("start={}&end={}", micros(TimeDelta::zero()), micros(TimeDelta::hours(3)));
    assert!(search(&app, &format!("service=api&{reversed}")).await.is_empty());
    // No service: every service's spans.
    assert_eq!(search(&app, &format!("{three_hours}&operation=GET%20%2Fb")).await, [middle]);
    // More than the most is the most.
    assert_eq!(search(&app, &format!("service=api&{three_hours}&limit=9999")).await.len(), 3);

    // A bad parameter: 400, the message naming it.
    for (query, name) in [
        ("service=api&minDuration=fast", "minDuration"),
        ("service=api&start=yesterday", "start"),
        ("service=api&limit=-1", "limit"),
        ("service=api&tags=%7Bnope", "tags"),
        ("service=api&tags=%5B1%5D", "tags"),
        ("service=api&limit=%201", "limit"),
        ("service=api&lookback=forever", "lookback"),
    ] {
        let (status, answer) = app.get_json(&format!("/jaeger/api/traces?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert_eq!(answer["data"], Value::Null);
        let message = answer["errors"][0]["msg"].as_str().unwrap();
        assert!(message.contains(name), "{query}: {message}");
    }
}

pub(crate) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn dependencies_count_calls_between_services_in_milliseconds_ranges() {
    let app = spawn_app_with(&["--retention-check-seconds", "3600"]).await;
    let (_, before) = app.get_json("/jaeger/api/dependencies").await;
    assert_eq!(before["data"], json!([]));
    // Three traces in one request: stored atomically, so the pass the service runs at start
    // (racing this test) sees all of them or none.
    let t0 = nanos_ago(TimeDelta::minutes(40));
    let (mut frontend, mut database) = (Vec::new(), Vec::new());
    for n in 0..3u64 {
        let trace = format!("dddd00000000000000000000000000{n:02}");
        let at = t0 + n * 1_000_000;
        frontend.push(span(&trace, "2000000000000001", None, "GET /", 2, at, 100));
        frontend.push(span(
            &trace,
            "2000000000000002",
            Some("2000000000000001"),
            "query",
            3,
            at + 10_000,
            10,
        ));
        database.push(span(
            &trace,
            "2000000000000003",
            Some("2000000000000002"),
            "SELECT",
            2,
            at + 20_000,
            5,
        ));
    }
    let body = json!({"resourceSpans": [resource_spans("frontend", &[], frontend), resource_spans("database", &[], database)]});
    post_otlp_json(&app, "/v1/traces", &body).await;
    let report = app.maintenance.pass_at(Utc::now(), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let now_ms = Utc::now().timestamp_millis();
    let (status, answer) =
        app.get_json(&format!("/jaeger/api/dependencies?endTs={now_ms}&lookback=7200000")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["data"],
        json!([{"parent": "frontend", "child": "database", "callCount": 3}]),
        "calls inside a service are not edges"
    );
    // A range ending before the calls.
    let (_, earlier) =
        app.get_json(&format!("/jaeger/api/dependencies?endTs={}&lookback=600000", now_ms - 3_600_000)).await;
    assert_eq!(earlier["data"], json!([]));
    // Computed once: another pass adds nothing.
    let again = app.maintenance.pass_at(Utc::now(), Turn::Wait).await;
    assert_eq!(again.dependency_buckets, 0);
    let (_, same) = app.get_json(&format!("/jaeger/api/dependencies?endTs={now_ms}&lookback=7200000")).await;
    assert_eq!(same["data"], answer["data"]);
    let (status, refused) = app.get_json("/jaeger/api/dependencies?lookback=a%20week").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["errors"][0]["msg"].as_str().unwrap().contains("'lookback'"));
}

#[tokio::test]
async fn the_jaeger_routes_need_a_query_token_and_answer_cors() {
    let app = spawn_app_with(&[
        "--query-tokens",
        "jaeger-secret-token-0001",
        "--cors-allowed-origins",
        "http://grafana.example.com",
    ])
    .await;
    for path in ["/jaeger/api/services", "/jaeger/api/v3/services", "/jaeger/api/traces/abc"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let response = app
        .http
        .get(app.url("/jaeger/api/services"))
        .bearer_auth("jaeger-secret-token-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/jaeger/api/traces"))
        .header("origin", "http://grafana.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], "http://grafana.example.com");
    let other = app
        .http
        .get(app.url("/jaeger/api/services"))
        .bearer_auth("jaeger-secret-token-0001")
        .header("origin", "http://elsewhere.example.com")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn incidents_link_to_their_trace_when_a_viewer_is_set() {
    let app =
        spawn_app_with(&["--trace-viewer-url", "http://jaeger-ui:16686/trace/{trace_id}?uiEmbed=v0"]).await;
    let (status, _) =
        app.post_json("/ingest/logs", &crate::helpers::log_body("svc:a b", "ERROR", "boom")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, page) = app.get_json("/query/incidents").await;
    let incident = &page["items"][0];
    assert_eq!(incident["trace_url"], "http://jaeger-ui:16686/trace/svc%3Aa%20b?uiEmbed=v0");
    let (_, one) = app.get_json(&format!("/query/incidents/{}", incident["id"].as_str().unwrap())).await;
    assert_eq!(one["trace_url"], incident["trace_url"]);

    let plain = spawn_app().await;
    let (status, _) =
        plain.post_json("/ingest/logs", &crate::helpers::log_body("t-plain", "ERROR", "boom")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, page) = plain.get_json("/query/incidents").await;
    assert!(page["items"][0].as_object().unwrap().get("trace_url").is_none(), "absent without a viewer");
}

/// The tables a plan reads.
fn relations(plan: &Value) -> BTreeSet<String> {
    crate::helpers::plan_relations(plan).into_iter().collect()
}

#[tokio::test]
async fn a_search_reads_only_the_partitions_of_its_range() {
    let app = spawn_app_with(&["--partition-interval", "1h"]).await;
    let now = Utc::now();
    // Hourly partitions from five hours ago to two ahead.
    for hours in [5, 2] {
        let report = app.maintenance.pass_at(now - TimeDelta::hours(hours), Turn::Wait).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }
    let partitions: Vec<(String, chrono::DateTime<Utc>, chrono::DateTime<Utc>)> = app
        .db()
        .await
        .query("SELECT name, starts, ends FROM raw_signal_partitions WHERE starts IS NOT NULL", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(partitions.len() >= 7, "{partitions:?}");
    let of_range = |start, end, kind: &str| -> BTreeSet<String> {
        partitions
            .iter()
            .filter(|(_, s, e)| *s <= end && *e > start)
            .map(|(name, _, _)| format!("{name}_{kind}"))
            .collect()
    };
    let (start, end) = (now - TimeDelta::minutes(100), now - TimeDelta::minutes(40));
    let mut query = prodsentinel::store::TraceQuery {
        service: Some("api".into()),
        operation: Some("GET /a".into()),
        tags: Vec::new(),
        min_duration_ms: Some(1.0),
        max_duration_ms: None,
        start,
        end,
        limit: 20,
    };
    let read = relations(&app.store.explain_search(&query).await.unwrap());
    let spans = of_range(start, end, "trace");
    let allowed: BTreeSet<String> = spans
        .iter()
        .cloned()
        .chain(SEALED_FORM.map(str::to_owned))
        .chain(["raw_signals_default".to_owned(), "signal_shared".to_owned()])
        .collect();
    assert!(read.is_subset(&allowed), "read {read:?}, allowed {allowed:?}");
    assert!(read.iter().any(|r| spans.contains(r)), "the range's span partitions are read: {read:?}");

    // A tag also looks at the logs inside spans: of the range (and the hour after), never more.
    query.tags = vec![prodsentinel::store::TagFilter { key: "order.id".into(), value: "o-17".into() }];
    let read = relations(&app.store.explain_search(&query).await.unwrap());
    let logs = of_range(start, end + TimeDelta::hours(1), "log");
    let allowed: BTreeSet<String> = allowed.into_iter().chain(logs.iter().cloned()).collect();
    assert!(read.is_subset(&allowed), "read {read:?}, allowed {allowed:?}");
    assert!(read.iter().any(|r| logs.contains(r)), "{read:?}");
}
