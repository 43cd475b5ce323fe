//! `POST /ingest/*` against the real database.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_locs, log_body, spawn_app, spawn_app_with};

#[tokio::test]
async fn log_is_stored_with_canonical_payload_and_answered_202() {
    let app = spawn_app().await;
    let body = log_body("trace-1", "error", "payment failed");
    let (status, answer) = app.post_json("/ingest/logs", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer, json!({"status": "accepted"}));

    let row = app
        .db()
        .await
        .query_one(
            r#"SELECT id::text, signal_type::text, trace_id, service_name, "timestamp"::text, payload FROM raw_signals"#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), body["signal_id"].as_str().unwrap());
    assert_eq!(row.get::<_, String>(1), "log");
    assert_eq!(row.get::<_, String>(2), "trace-1");
    assert_eq!(row.get::<_, String>(3), "checkout");
    assert_eq!(row.get::<_, String>(4), "2024-05-01 10:20:30.123456+00");
    assert_eq!(
        row.get::<_, Value>(5),
        json!({"level": "ERROR", "message": "payment failed", "attributes": {"order_id": 42}})
    );
}

#[tokio::test]
async fn same_signal_id_twice_is_stored_once_and_both_get_202() {
    let app = spawn_app().await;
    let body = log_body("trace-dup", "INFO", "hello");
    for _ in 0..2 {
        let (status, _) = app.post_json("/ingest/logs", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    assert_eq!(app.count_signals().await, 1);
}

#[tokio::test]
async fn both_trace_shapes_are_stored_with_canonical_keys() {
    let app = spawn_app().await;
    let code_shape = json!({
        "signal_id": uuid::Uuid::new_v4().to_string(), "trace_id": "t-shapes", "span_id": "root",
        "parent_span_id": null, "service_name": "api", "timestamp": "2024-05-01T10:20:30+00:00",
        "duration_ms": 120.5, "status": "OK", "attributes": {"http.route": "/checkout"}
    });
    let readme_shape = json!({
        "signal_id": uuid::Uuid::new_v4().to_string(), "trace_id": "t-shapes", "span_id": "child",
        "parent_span_id": "root", "service_name": "payments", "name": "AUTHORIZE_PAYMENT",
        "start_time": "2024-05-01T10:20:30.010+00:00", "end_time": "2024-05-01T10:20:30.110+00:00"
    });
    for body in [&code_shape, &readme_shape] {
        let (status, answer) = app.post_json("/ingest/traces", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let (_, trace) = app.get_json("/query/traces/t-shapes").await;
    let spans = trace.as_array().unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0]["signal_type"], "trace");
    assert_eq!(spans[0]["payload"]["span_id"], "root");
    assert_eq!(spans[0]["payload"]["duration_ms"], 120.5);
    assert_eq!(spans[0]["payload"]["status"], "OK");
    assert_eq!(spans[1]["payload"]["span_id"], "child");
    assert_eq!(spans[1]["payload"]["parent_span_id"], "root");
    assert_eq!(spans[1]["payload"]["duration_ms"], 100.0);
    assert_eq!(spans[1]["payload"]["name"], "AUTHORIZE_PAYMENT");
    assert_eq!(spans[1]["timestamp"], "2024-05-01T10:20:30.010Z");
}

#[tokio::test]
async fn both_metric_shapes_are_stored_and_a_readme_resend_is_stored_once() {
    let app = spawn_app().await;
    let code_shape = json!({
        "signal_id": uuid::Uuid::new_v4().to_string(), "trace_id": "t-metric", "service_name": "api",
        "timestamp": "2024-05-01T10:20:30Z", "metric_name": "http_latency_ms", "value": 2300, "unit": "ms"
    });
    let readme_shape = json!({"name": "cpu_usage", "value": 0.93, "service_name": "api", "timestamp": "2024-05-01T10:21:00Z"});
    for body in [&code_shape, &readme_shape, &readme_shape] {
        let (status, answer) = app.post_json("/ingest/metrics", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    assert_eq!(app.count_signals().await, 2);
    let (_, page) = app.get_json("/query/signals?signal_type=metric").await;
    let items = page["items"].as_array().unwrap();
    let readme = items.iter().find(|s| s["payload"]["metric_name"] == "cpu_usage").unwrap();
    assert_eq!(readme["trace_id"], "svc:api:2024-05-01T10:20:00Z");
    assert_eq!(readme["payload"]["value"], 0.93);
    let code = items.iter().find(|s| s["payload"]["metric_name"] == "http_latency_ms").unwrap();
    assert_eq!(code["payload"]["unit"], "ms");
    assert_eq!(code["trace_id"], "t-metric");
}

#[tokio::test]
async fn log_without_trace_id_is_stored_under_the_correlation_key() {
    let app = spawn_app_with(&["--correlation-window-seconds", "60"]).await;
    let mut body = log_body("", "ERROR", "disk full");
    body.as_object_mut().unwrap().remove("trace_id");
    let (status, _) = app.post_json("/ingest/logs", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, trace) = app.get_json("/query/traces/svc:checkout:2024-05-01T10:20:00Z").await;
    assert_eq!(trace.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn validation_errors_are_422_in_fastapi_shape_naming_each_field() {
    let app = spawn_app().await;
    let mut body = log_body("t", "INFO", "m");
    body.as_object_mut().unwrap().remove("level");
    body["timestamp"] = json!(true);
    body["colour"] = json!("blue");
    let (status, answer) = app.post_json("/ingest/logs", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut locs = error_locs(&answer);
    locs.sort();
    assert_eq!(locs, vec!["body.colour", "body.level", "body.timestamp"]);
    for error in answer["detail"].as_array().unwrap() {
        assert!(error["msg"].is_string() && error["type"].is_string(), "{error}");
    }
    assert_eq!(app.count_signals().await, 0);
}

#[tokio::test]
async fn bulk_array_is_stored_whole_or_refused_naming_the_bad_index() {
    let app = spawn_app().await;
    let good: Vec<Value> = (0..3).map(|i| log_body("bulk", "INFO", &format!("m{i}"))).collect();
    let (status, _) = app.post_json("/ingest/logs", &Value::Array(good.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.count_signals().await, 3);

    let mut bad = log_body("bulk", "INFO", "x");
    bad["signal_id"] = json!("nope");
    let mixed = json!([log_body("bulk", "INFO", "y"), bad, log_body("bulk", "INFO", "z")]);
    let (status, answer) = app.post_json("/ingest/logs", &mixed).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_locs(&answer), vec!["body.1.signal_id"]);
    assert_eq!(app.count_signals().await, 3, "nothing of the refused bulk is stored");
}

#[tokio::test]
async fn body_over_max_body_bytes_is_413() {
    let app = spawn_app_with(&["--max-body-bytes", "2KiB"]).await;
    let body = log_body("big", "INFO", &"x".repeat(4096));
    let response =
        app.post_raw("/ingest/logs", Some("application/json"), body.to_string().into_bytes()).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["detail"].as_str().unwrap().contains("MAX_BODY_BYTES"));
    let small = log_body("big", "INFO", "fits");
    assert_eq!(app.post_json("/ingest/logs", &small).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn json_body_is_read_under_form_or_missing_content_type_and_others_get_415() {
    let app = spawn_app().await;
    // What `curl -X POST …/ingest/logs -d '{…}'` sends.
    let form = app
        .post_raw(
            "/ingest/logs",
            Some("application/x-www-form-urlencoded"),
            log_body("ct", "INFO", "a").to_string().into(),
        )
        .await;
    assert_eq!(form.status(), StatusCode::ACCEPTED);
    let none = app.post_raw("/ingest/logs", None, log_body("ct", "INFO", "b").to_string().into()).await;
    assert_eq!(none.status(), StatusCode::ACCEPTED);
    let text = app
        .post_raw("/ingest/logs", Some("text/plain"), log_body("ct", "INFO", "c").to_string().into())
        .await;
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let answer: Value = text.json().await.unwrap();
    assert!(answer["detail"].as_str().unwrap().contains("text/plain"));
    assert_eq!(app.count_signals().await, 2);
}

#[tokio::test]
async fn malformed_json_is_422_not_500() {
    let app = spawn_app().await;
    for raw in [&b"{not json"[..], b"", b"\xff\xfe", b"[1, 2"] {
        let response = app.post_raw("/ingest/traces", Some("application/json"), raw.to_vec()).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["detail"][0]["type"], "json_invalid");
    }
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let response = app.post_raw("/ingest/logs", Some("application/json"), deep.into_bytes()).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn nul_characters_never_cause_a_500() {
    let app = spawn_app().await;
    let mut body = log_body("nul", "ERROR", "before\u{0}after");
    body["attributes"] = json!({"key\u{0}": ["v\u{0}", {"deep\u{0}": "x"}]});
    let (status, answer) = app.post_json("/ingest/logs", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (_, trace) = app.get_json("/query/traces/nul").await;
    assert_eq!(trace[0]["payload"]["message"], "before\u{FFFD}after");
    assert_eq!(
        trace[0]["payload"]["attributes"],
        json!({"key\u{FFFD}": ["v\u{FFFD}", {"deep\u{FFFD}": "x"}]})
    );

    let mut bad_id = log_body("nul\u{0}", "ERROR", "m");
    bad_id["service_name"] = json!("svc\u{0}");
    let (status, answer) = app.post_json("/ingest/logs", &bad_id).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut locs = error_locs(&answer);
    locs.sort();
    assert_eq!(locs, vec!["body.service_name", "body.trace_id"]);
}

/// What the original's simulated checkout services send: Python `datetime.isoformat()` with
/// `+00:00`, uuid4 signal ids, levels INFO/ERROR, a small attributes dict.
#[tokio::test]
async fn replay_of_the_simulated_services_is_accepted_in_full() {
    let app = spawn_app().await;
    let trace_id = uuid::Uuid::new_v4().to_string();
    let steps = [
        ("api-gateway", "INFO", "received checkout"),
        ("payments", "ERROR", "card declined"),
        ("api-gateway", "ERROR", "checkout failed"),
    ];
    for (i, (service, level, message)) in steps.iter().enumerate() {
        let body = json!({
            "signal_id": uuid::Uuid::new_v4().to_string(),
            "trace_id": trace_id,
            "service_name": service,
            "timestamp": format!("2024-05-01T10:20:3{i}.{:06}+00:00", 123 * (i + 1)),
            "level": level,
            "message": message,
            "attributes": {"user_id": "u-17", "amount": 49.99}
        });
        let (status, answer) = app.post_json("/ingest/logs", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let (_, trace) = app.get_json(&format!("/query/traces/{trace_id}")).await;
    let messages: Vec<&str> =
        trace.as_array().unwrap().iter().map(|s| s["payload"]["message"].as_str().unwrap()).collect();
    assert_eq!(messages, vec!["received checkout", "card declined", "checkout failed"]);
}

/// `examples/replay_legacy.py` (standard-library Python, as the simulated services) against a
/// running app: every request 202, every duplicate stored once.
#[tokio::test]
async fn python_replay_of_the_simulated_services_is_stored_once_each() {
    let app = spawn_app().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/replay_legacy.py");
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new("python3")
            .args([script, "--url", &app.url(""), "--checkouts", "8"])
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("replay finishes within 120 s")
    .expect("python3 is installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let counts: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(counts["accepted"], counts["sent"]);
    let unique = counts["unique_signals"].as_i64().unwrap();
    assert_eq!(unique, 8 * 4);
    assert_eq!(app.count_signals().await, unique);
    let (_, errors) = app.get_json("/query/signals?limit=1000").await;
    let error_logs =
        errors["items"].as_array().unwrap().iter().filter(|s| s["payload"]["level"] == "ERROR").count();
    assert_eq!(error_logs, 2, "25% of 8 checkouts fail");
}
