//! The query API (docs/contracts.md §3) against the real database.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{error_locs, spawn_app, spawn_app_with, TestApp};

async fn post_log(app: &TestApp, trace_id: &str, service: &str, level: &str, timestamp: &str) -> String {
    let id = Uuid::new_v4().to_string();
    let body = json!({
        "signal_id": id, "trace_id": trace_id, "service_name": service, "timestamp": timestamp,
        "level": level, "message": format!("{level} at {timestamp}"), "attributes": {}
    });
    let (status, answer) = app.post_json("/ingest/logs", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    id
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn signals_are_listed_newest_first_with_filters_and_paging() {
    let app = spawn_app().await;
    let a = post_log(&app, "t1", "checkout", "INFO", "2024-05-01T10:00:00Z").await;
    let b = post_log(&app, "t1", "payments", "ERROR", "2024-05-01T11:00:00Z").await;
    let c = post_log(&app, "t2", "checkout", "INFO", "2024-05-01T12:00:00Z").await;
    let (status, page) = app.get_json("/query/signals").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&page), vec![c.clone(), b.clone(), a.clone()]);
    assert_eq!(
        (page["total"].clone(), page["limit"].clone(), page["offset"].clone()),
        (json!(3), json!(100), json!(0))
    );
    let item = &page["items"][0];
    let mut keys: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, vec!["id", "payload", "service_name", "signal_type", "timestamp", "trace_id"]);
    assert_eq!(item["timestamp"], "2024-05-01T12:00:00Z");

    assert_eq!(ids(&app.get_json("/query/signals?trace_id=t1").await.1), vec![b.clone(), a.clone()]);
    assert_eq!(
        ids(&app.get_json("/query/signals?service_name=checkout").await.1),
        vec![c.clone(), a.clone()]
    );
    assert_eq!(ids(&app.get_json("/query/signals?signal_type=trace").await.1), Vec::<String>::new());
    let window = "/query/signals?start_time=2024-05-01T10:30:00Z&end_time=2024-05-01T11:30:00%2B00:00";
    assert_eq!(ids(&app.get_json(window).await.1), vec![b.clone()]);
    let (_, paged) = app.get_json("/query/signals?limit=1&offset=1").await;
    assert_eq!(ids(&paged), vec![b]);
    assert_eq!(paged["total"], 3);
    assert_eq!(paged["limit"], 1);
}

#[tokio::test]
async fn bad_query_parameters_are_422_naming_each() {
    let app = spawn_app().await;
    let cases = [
        ("/query/signals?limit=0", vec!["query.limit"]),
        ("/query/signals?limit=1001", vec!["query.limit"]),
        ("/query/signals?limit=ten&offset=-1", vec!["query.limit", "query.offset"]),
        ("/query/signals?signal_type=span", vec!["query.signal_type"]),
        ("/query/signals?start_time=yesterday", vec!["query.start_time"]),
        ("/query/incidents?limit=201", vec!["query.limit"]),
        ("/query/incidents?status=broken&severity=meh", vec!["query.status", "query.severity"]),
        ("/query/incidents/not-a-uuid", vec!["path.incident_id"]),
        ("/query/incidents/not-a-uuid/analysis", vec!["path.incident_id"]),
    ];
    for (path, expected) in cases {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert_eq!(error_locs(&body), expected, "{path}");
    }
    assert_eq!(app.get_json("/query/signals?limit=1000").await.0, StatusCode::OK);
    assert_eq!(app.get_json("/query/incidents?limit=200").await.0, StatusCode::OK);
}

#[tokio::test]
async fn trace_is_returned_oldest_first_and_unknown_trace_is_empty() {
    let app = spawn_app().await;
    let late = post_log(&app, "tr", "a", "INFO", "2024-05-01T10:00:02Z").await;
    let early = post_log(&app, "tr", "b", "INFO", "2024-05-01T10:00:01Z").await;
    post_log(&app, "other", "b", "INFO", "2024-05-01T10:00:00Z").await;
    let (status, trace) = app.get_json("/query/traces/tr").await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<&str> = trace.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(got, vec![early.as_str(), late.as_str()]);
    assert_eq!(app.get_json("/query/traces/nope").await, (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn trace_query_is_capped_by_its_setting() {
    let app = spawn_app_with(&["--trace-query-max-signals", "2"]).await;
    for second in 0..3 {
        post_log(&app, "capped", "a", "INFO", &format!("2024-05-01T10:00:0{second}Z")).await;
    }
    let (_, trace) = app.get_json("/query/traces/capped").await;
    assert_eq!(trace.as_array().unwrap().len(), 2);
    assert_eq!(trace[0]["timestamp"], "2024-05-01T10:00:00Z");
}

/// Inserts an incident the way the analysis worker's SQLAlchemy models do (upper-case labels).
async fn insert_incident(
    app: &TestApp,
    trace_id: &str,
    status: &str,
    severity: &str,
    detected_at: &str,
) -> Uuid {
    let id = Uuid::new_v4();
    app.db()
        .await
        .execute(
            "INSERT INTO incidents (id, trace_id, status, severity, detected_at, affected_services, error_count)
             VALUES ($1, $2, $3::text::incidentstatus, $4::text::incidentseverity, $5::text::timestamptz, ARRAY['checkout','payments'], 3)",
            &[&id, &trace_id, &status, &severity, &detected_at],
        )
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn incidents_are_listed_newest_first_in_lower_case_with_filters() {
    let app = spawn_app().await;
    let old = insert_incident(&app, "t-old", "RESOLVED", "LOW", "2024-05-01T09:00:00Z").await;
    let new = insert_incident(&app, "t-new", "OPEN", "HIGH", "2024-05-01T10:00:00Z").await;
    let (status, page) = app.get_json("/query/incidents?limit=50&offset=0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&page), vec![new.to_string(), old.to_string()]);
    assert_eq!(
        (page["total"].clone(), page["limit"].clone(), page["offset"].clone()),
        (json!(2), json!(50), json!(0))
    );
    assert_eq!(
        page["items"][0],
        // The dashboard's fields exactly (docs/contracts.md §3), plus `problem_id` (issue 8: added,
        // and null here: this incident was written directly, not from fingerprinted signals).
        json!({
            "id": new.to_string(), "trace_id": "t-new", "status": "open", "severity": "high",
            "detected_at": "2024-05-01T10:00:00Z", "resolved_at": null,
            "affected_services": ["checkout", "payments"], "error_count": 3.0, "problem_id": null
        })
    );
    assert_eq!(ids(&app.get_json("/query/incidents?status=resolved").await.1), vec![old.to_string()]);
    assert_eq!(ids(&app.get_json("/query/incidents?severity=high").await.1), vec![new.to_string()]);
    assert_eq!(app.get_json("/query/incidents?severity=critical").await.1["total"], 0);
    assert_eq!(ids(&app.get_json("/query/incidents?trace_id=t-old").await.1), vec![old.to_string()]);
    assert_eq!(app.get_json("/query/incidents?trace_id=t-none").await.1["total"], 0);
}

#[tokio::test]
async fn one_incident_and_its_latest_analysis_or_404() {
    let app = spawn_app().await;
    let id = insert_incident(&app, "t-a", "INVESTIGATING", "CRITICAL", "2024-05-01T10:00:00Z").await;
    let (status, incident) = app.get_json(&format!("/query/incidents/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(incident["status"], "investigating");
    assert_eq!(incident["severity"], "critical");
    let (status, body) = app.get_json(&format!("/query/incidents/{}", Uuid::new_v4())).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({"detail": "Incident not found"})));

    let (status, _) = app.get_json(&format!("/query/incidents/{id}/analysis")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let evidence = Uuid::new_v4();
    let db = app.db().await;
    for (root_cause, at) in
        [("first guess", "2024-05-01T10:01:00Z"), ("database pool exhausted", "2024-05-01T10:02:00Z")]
    {
        db.execute(
            "INSERT INTO analysis_results (id, incident_id, root_cause, confidence_score, evidence_signals, ai_explanation, generated_at)
             VALUES (gen_random_uuid(), $1, $2, 0.87, ARRAY[$3::uuid], '{\"summary\": \"pool\"}'::json, $4::text::timestamptz)",
            &[&id, &root_cause, &evidence, &at],
        )
        .await
        .unwrap();
    }
    let (status, analysis) = app.get_json(&format!("/query/incidents/{id}/analysis")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(analysis["incident_id"], id.to_string());
    assert_eq!(analysis["root_cause"], "database pool exhausted");
    assert_eq!(analysis["confidence_score"], 0.87);
    assert_eq!(analysis["evidence_signals"], json!([evidence.to_string()]));
    assert_eq!(analysis["ai_explanation"], json!({"summary": "pool"}));
    assert_eq!(analysis["generated_at"], "2024-05-01T10:02:00Z");
}

#[tokio::test]
async fn cors_allows_any_origin_by_default() {
    let app = spawn_app().await;
    let response = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/query/incidents"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn cors_list_allows_only_listed_origins() {
    let app = spawn_app_with(&["--cors-allowed-origins", "https://dash.example.com"]).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/query/signals"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let allowed = preflight("https://dash.example.com").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://dash.example.com");
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // The actual responses carry it too, errors included, so a browser lets the page read them.
    let get = |origin: &'static str| app.http.get(app.url("/query/signals")).header("origin", origin).send();
    let allowed = get("https://dash.example.com").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://dash.example.com");
    let other = get("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let invalid = app
        .http
        .post(app.url("/ingest/logs"))
        .header("origin", "https://dash.example.com")
        .json(&json!({"level": "INFO"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.headers()["access-control-allow-origin"], "https://dash.example.com");
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json_404_and_405() {
    let app = spawn_app().await;
    assert_eq!(app.get_json("/nope").await, (StatusCode::NOT_FOUND, json!({"detail": "Not Found"})));
    let response = app.get("/ingest/logs").await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"detail": "Method Not Allowed"}));
}
