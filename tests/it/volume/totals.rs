//! `total` is counted exactly up to QUERY_EXACT_TOTAL_LIMIT and estimated beyond, and says
//! which; it stays a number, as the dashboard prints it.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{log_body, spawn_app_with, TestApp};

async fn send_logs(app: &TestApp, trace: &str, n: usize) {
    let bodies: Vec<Value> = (0..n).map(|i| log_body(trace, "INFO", &format!("log {i}"))).collect();
    let (status, answer) = app.post_json("/ingest/logs", &json!(bodies)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

async fn total(app: &TestApp, path: &str) -> (i64, bool) {
    let (status, page) = app.get_json(path).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    (page["total"].as_i64().expect("total is a number"), page["total_exact"].as_bool().expect("total_exact"))
}

#[tokio::test]
async fn totals_are_exact_up_to_the_limit_and_a_flagged_estimate_beyond_it() {
    let app = spawn_app_with(&["--query-exact-total-limit", "20"]).await;
    send_logs(&app, "t-a", 20).await;
    assert_eq!(total(&app, "/query/signals?limit=10").await, (20, true), "at the limit: exact");
    send_logs(&app, "t-b", 1).await;
    let (beyond, exact) = total(&app, "/query/signals?limit=10").await;
    assert!(!exact, "one beyond the limit: an estimate");
    assert!(beyond > 20, "never below the limit + 1: {beyond}");
    // A filter matching fewer rows than the limit is exact again, and so is an empty result.
    assert_eq!(total(&app, "/query/signals?trace_id=t-b").await, (1, true));
    assert_eq!(total(&app, "/query/signals?trace_id=t-none").await, (0, true));
    assert_eq!(total(&app, "/query/signals?trace_id=t-a&limit=5").await, (20, true));

    // Incidents: one per trace.
    for i in 0..20 {
        send_logs(&app, &format!("t-incident-{i}"), 1).await;
    }
    let (incidents, exact) = total(&app, "/query/incidents?limit=5").await;
    assert!(!exact && incidents > 20, "22 incidents: {incidents}");
    assert_eq!(total(&app, "/query/incidents?severity=high").await, (0, true));
}

#[tokio::test]
async fn with_the_default_limit_totals_of_small_lists_are_exact() {
    let app = spawn_app_with(&[]).await;
    send_logs(&app, "t-small", 3).await;
    assert_eq!(total(&app, "/query/signals?limit=1").await, (3, true));
    assert_eq!(total(&app, "/query/incidents").await, (1, true));
}
