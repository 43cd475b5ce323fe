//! `GET /metrics` after known traffic: each counter moved by exactly what was sent.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;

use crate::helpers::{grpc_logs_export, log_body, TestApp};

/// Every sample of the exposition, `name{labels}` -> value.
async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    scrape_addr(app.addr).await
}

/// The same for any instance, by its API address.
pub async fn scrape_addr(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    let response = reqwest::get(format!("http://{addr}/metrics")).await.expect("metrics answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample: {line}"));
            (name.to_owned(), value.parse::<f64>().unwrap_or_else(|_| panic!("a number: {line}")))
        })
        .collect()
}

pub fn get(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

/// 4 spans of one trace, and a fifth with a 4-byte trace id (rejected: partial success).
fn spans_with_one_invalid() -> Vec<u8> {
    let mut request: ExportTraceServiceRequest = crate::reliability::load::spans_request("m", &[3; 16], 5, 1);
    request.resource_spans[0].scope_spans[0].spans[4].trace_id = vec![1, 2, 3, 4];
    request.encode_to_vec()
}

#[tokio::test]
async fn counters_move_by_exactly_the_traffic_sent() {
    let app = crate::helpers::spawn_app_dispatching_by_hand(&["--analysis-debounce-seconds", "0"]).await;
    // Legacy: an INFO then an ERROR in one trace (opened LOW, escalated to HIGH), an INFO in
    // another, and the first resent (a duplicate).
    let first = log_body("t-m1", "INFO", "ok");
    for body in [&first, &log_body("t-m1", "ERROR", "boom"), &log_body("t-m2", "INFO", "ok"), &first] {
        assert_eq!(app.post_json("/ingest/logs", body).await.0, StatusCode::ACCEPTED);
    }
    let (status, _, _) = app
        .post_otlp("/v1/traces", &[("content-type", "application/x-protobuf")], spans_with_one_invalid())
        .await;
    assert_eq!(status, StatusCode::OK);
    grpc_logs_export(&app, 2).await.expect("exported");
    assert_eq!(app.get("/query/signals?limit=1").await.status(), StatusCode::OK);
    // The ERROR's analysis request reaches the (test) Redis queue.
    assert_eq!(
        app.dispatch_all().await,
        [prodsentinel::queue::StepOutcome::Dispatched { sent: 1, deduplicated: 0 }]
    );

    let m = scrape(&app).await;
    let expect = [
        (r#"prodsentinel_ingest_signals_received_total{signal="log",transport="legacy"}"#, 4.0),
        (r#"prodsentinel_ingest_signals_stored_total{signal="log",transport="legacy"}"#, 3.0),
        (r#"prodsentinel_ingest_signals_duplicate_total{signal="log",transport="legacy"}"#, 1.0),
        (r#"prodsentinel_ingest_signals_received_total{signal="trace",transport="otlp_http"}"#, 5.0),
        (r#"prodsentinel_ingest_signals_stored_total{signal="trace",transport="otlp_http"}"#, 4.0),
        (
            r#"prodsentinel_ingest_signals_rejected_total{signal="trace",transport="otlp_http",reason="invalid"}"#,
            1.0,
        ),
        (r#"prodsentinel_ingest_signals_received_total{signal="log",transport="otlp_grpc"}"#, 2.0),
        (r#"prodsentinel_ingest_signals_stored_total{signal="log",transport="otlp_grpc"}"#, 2.0),
        (
            r#"prodsentinel_request_duration_seconds_count{endpoint="/ingest/logs",method="POST",status="202"}"#,
            4.0,
        ),
        (
            r#"prodsentinel_request_duration_seconds_count{endpoint="/v1/traces",method="POST",status="200"}"#,
            1.0,
        ),
        (
            r#"prodsentinel_request_duration_seconds_count{endpoint="/opentelemetry.proto.collector.logs.v1.LogsService/Export",method="POST",status="Ok"}"#,
            1.0,
        ),
        (
            r#"prodsentinel_request_duration_seconds_count{endpoint="/query/signals",method="GET",status="200"}"#,
            1.0,
        ),
        // Every signal handed to the writers, duplicates included: 4 + 4 + 2.
        ("prodsentinel_pipeline_batch_signals_sum", 10.0),
        (r#"prodsentinel_incidents_escalated_total{severity="high"}"#, 1.0),
        (r#"prodsentinel_analysis_requests_total{outcome="queued"}"#, 1.0),
        (r#"prodsentinel_analysis_requests_total{outcome="dispatched"}"#, 1.0),
        ("prodsentinel_pipeline_queue_signals", 0.0),
        ("prodsentinel_outbox_backlog", 0.0),
    ];
    let wrong: Vec<String> = expect
        .iter()
        .filter(|(key, want)| get(&m, key) != *want)
        .map(|(key, want)| format!("{key}: want {want}, got {}", get(&m, key)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");

    // Incidents opened, by severity, agree with the table.
    let db = app.db().await;
    for (severity, label) in [("LOW", "low"), ("HIGH", "high")] {
        // Opened at their first severity: t-m1 opened LOW (then escalated), so HIGH opened none.
        let opened: i64 = db
            .query_one(
                "SELECT count(*) FROM incidents WHERE severity = $1::text::incidentseverity",
                &[&severity],
            )
            .await
            .unwrap()
            .get(0);
        let counted = get(&m, &format!(r#"prodsentinel_incidents_opened_total{{severity="{label}"}}"#));
        let escalated_here = if label == "high" { 1.0 } else { -1.0 };
        assert_eq!(counted, opened as f64 - escalated_here, "{label}: incidents opened");
    }
    assert!(get(&m, "prodsentinel_pipeline_batch_write_duration_seconds_count") >= 1.0);
    assert!(get(&m, "prodsentinel_db_pool_max_connections") >= 1.0);
    assert!(m.contains_key(r#"prodsentinel_db_pool_connections{state="idle"}"#));
    assert_eq!(get(&m, "prodsentinel_outbox_oldest_age_seconds"), 0.0);
    let unknown: Value = app.get_json("/query/nothing-here").await.1;
    assert_eq!(unknown["detail"], "Not Found");
    assert!(!scrape(&app).await.keys().any(|k| k.contains("nothing-here")), "unmatched paths add no labels");
}
