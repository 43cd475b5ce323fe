//! Health and readiness, including a database that goes away and comes back.

use std::time::{Duration, Instant};

use prodsentinel::App;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{block_connections, log_body, spawn_app, test_config, TestApp, TestDb};

#[tokio::test]
async fn healthy_app_reports_connected_live_and_ready() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/ingest/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((body["status"].clone(), body["database"].clone()), (json!("healthy"), json!("connected")));
    assert_eq!(app.get_json("/health/live").await, (StatusCode::OK, json!({"status": "alive"})));
    let (status, body) = app.get_json("/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["migrations"], "applied");
}

/// Polls `path` until it answers `want` or 10 s pass.
async fn eventually(app: &TestApp, path: &str, want: StatusCode) -> StatusCode {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = app.get(path).await.status();
        if status == want || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn database_outage_gives_503s_with_retry_after_and_recovers_by_itself() {
    let app = spawn_app().await;
    assert_eq!(app.get("/ingest/health").await.status(), StatusCode::OK);

    block_connections(&app, false).await;
    let (status, body) = app.get_json("/ingest/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        (body["status"].clone(), body["database"].clone()),
        (json!("unhealthy"), json!("disconnected"))
    );
    assert_eq!(app.get("/health/ready").await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);

    let response =
        app.http.post(app.url("/ingest/logs")).json(&log_body("outage", "ERROR", "x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(app.get("/query/signals").await.status(), StatusCode::SERVICE_UNAVAILABLE);

    block_connections(&app, true).await;
    assert_eq!(eventually(&app, "/ingest/health", StatusCode::OK).await, StatusCode::OK);
    assert_eq!(eventually(&app, "/health/ready", StatusCode::OK).await, StatusCode::OK);
    let (status, _) = app.post_json("/ingest/logs", &log_body("outage", "ERROR", "after")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn start_up_gives_up_on_an_unreachable_database_after_the_wait() {
    let db = TestDb::new();
    let mut config = test_config(&db, &["--database-wait-seconds", "1"]);
    // Nothing listens on port 1.
    config.database.pg.port(1);
    let started = Instant::now();
    let error = match App::build(config).await {
        Ok(_) => panic!("start-up must fail without a database"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("DATABASE_WAIT_SECONDS"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(8), "gave up in {:?}", started.elapsed());
}

#[tokio::test]
async fn stop_finishes_cleanly_and_closes_the_listener() {
    let app = spawn_app().await;
    let addr = app.addr;
    assert_eq!(app.get("/health/ready").await.status(), StatusCode::OK);
    app.stop().await.expect("clean stop");
    // Stopped: the listener is closed.
    assert!(reqwest::get(format!("http://{addr}/health/live")).await.is_err());
}
