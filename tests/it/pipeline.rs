//! Group commit semantics, against the real database (not timed: locks make the order certain).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{log_body, one, spawn_app_with, TestApp};

/// Holds an exclusive lock on `raw_signals` (writers block) until the returned client commits.
async fn block_writes(app: &TestApp) -> tokio_postgres::Client {
    let client = app.db().await;
    client.batch_execute("BEGIN; LOCK TABLE raw_signals IN EXCLUSIVE MODE").await.unwrap();
    client
}

fn post(app: &TestApp, body: Value) -> tokio::task::JoinHandle<(StatusCode, Option<String>)> {
    let (http, url) = (app.http.clone(), app.url("/ingest/logs"));
    tokio::spawn(async move {
        let response = http.post(url).json(&body).send().await.unwrap();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        (response.status(), retry_after)
    })
}

#[tokio::test]
async fn an_acknowledgement_comes_only_after_the_commit() {
    let app = spawn_app_with(&["--ingest-timeout-ms", "20000"]).await;
    let lock = block_writes(&app).await;
    let request = post(&app, log_body("t-ack", "INFO", "waits for the commit"));
    app.wait_for_blocked_writer().await;
    assert!(!request.is_finished(), "answered while its batch could not be written");
    lock.batch_execute("COMMIT").await.unwrap();
    assert_eq!(request.await.unwrap().0, StatusCode::ACCEPTED);
    assert_eq!(app.count_signals().await, 1);
}

/// Makes every insert of a signal from service `poison` fail with `sqlstate`.
async fn poison(app: &TestApp, sqlstate: &str) {
    app.db()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.service_name = 'poison' THEN
                     RAISE EXCEPTION 'poisoned batch' USING ERRCODE = '{sqlstate}';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER poison BEFORE INSERT ON raw_signal_rows FOR EACH ROW EXECUTE FUNCTION poison();"
        ))
        .await
        .unwrap();
}

fn poisoned(trace_id: &str) -> Value {
    let mut body = log_body(trace_id, "INFO", "bad");
    body["service_name"] = json!("poison");
    body
}

/// One writer and a long linger: requests sent together are written as one batch.
const ONE_BATCH: &[&str] = &["--ingest-writers", "1", "--ingest-batch-linger-ms", "400"];

/// One writer whose batch closes when `signals` have arrived (the linger is far longer than any
/// machine's delay in sending them): those requests are one batch, however loaded the machine.
fn batch_of(signals: &str) -> [&str; 6] {
    ["--ingest-writers", "1", "--ingest-batch-max-signals", signals, "--ingest-batch-linger-ms", "5000"]
}

#[tokio::test]
async fn a_failed_batch_fails_every_request_in_it_retryably_and_stores_none() {
    let app = spawn_app_with(&batch_of("5")).await;
    poison(&app, "40001").await; // serialization_failure: transient
    let good: Vec<Value> = (0..4).map(|i| log_body(&format!("t-{i}"), "ERROR", "fine")).collect();
    let mut requests: Vec<_> = good.iter().map(|body| post(&app, body.clone())).collect();
    requests.push(post(&app, poisoned("t-poison")));
    for request in requests {
        let (status, retry_after) = request.await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    assert_eq!(app.count_signals().await, 0, "nothing of the failed batch is stored");
    assert_eq!(app.outbox().await, [], "nor its incidents' analysis requests");
    let incidents: i64 = one(&app.db().await, "SELECT count(*) FROM incidents").await;
    assert_eq!(incidents, 0);

    // The clients' retries, without the poison, go through.
    let retries: Vec<_> = good.into_iter().map(|body| post(&app, body)).collect();
    for retry in retries {
        assert_eq!(retry.await.unwrap().0, StatusCode::ACCEPTED);
    }
    assert_eq!(app.count_signals().await, 4);
    assert_eq!(batch_splits(&app).await, 0.0, "a transient failure is not split: retried whole");
}

#[tokio::test]
async fn a_permanent_failure_is_isolated_to_the_request_that_caused_it() {
    let app = spawn_app_with(&batch_of("4")).await;
    poison(&app, "P0001").await; // raise_exception: not transient
    let bad = post(&app, poisoned("t-poison"));
    let good: Vec<_> = (0..3).map(|i| post(&app, log_body(&format!("t-{i}"), "INFO", "fine"))).collect();
    assert_eq!(bad.await.unwrap().0, StatusCode::INTERNAL_SERVER_ERROR);
    for request in good {
        assert_eq!(request.await.unwrap().0, StatusCode::ACCEPTED);
    }
    assert_eq!(app.count_signals().await, 3);
    assert_eq!(batch_splits(&app).await, 1.0, "the four were one batch, written again one by one");
}

async fn batch_splits(app: &TestApp) -> f64 {
    let metrics = crate::metrics::scrape_addr(app.addr).await;
    metrics.get("prodsentinel_pipeline_batch_splits_total").copied().unwrap_or_default()
}

#[tokio::test]
async fn duplicates_inside_one_batch_and_across_batches_are_stored_once() {
    let app = spawn_app_with(ONE_BATCH).await;
    let same = log_body("t-dup", "ERROR", "once");
    let other = log_body("t-dup", "ERROR", "twice");
    let requests: Vec<_> = [same.clone(), same.clone(), json!([same.clone(), other.clone()])]
        .into_iter()
        .map(|b| post(&app, b))
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().0, StatusCode::ACCEPTED);
    }
    assert_eq!(post(&app, json!([same, other])).await.unwrap().0, StatusCode::ACCEPTED);
    assert_eq!(app.count_signals().await, 2);
    let count: f64 = one(&app.db().await, "SELECT error_count FROM incidents WHERE trace_id = 't-dup'").await;
    assert_eq!(count, 2.0, "each signal counted once");
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_with_a_retryable_answer() {
    let app = spawn_app_with(&[
        "--ingest-writers",
        "1",
        "--ingest-queue-signals",
        "3",
        "--ingest-enqueue-wait-ms",
        "50",
        "--ingest-timeout-ms",
        "20000",
    ])
    .await;
    let lock = block_writes(&app).await;
    let first = post(
        &app,
        json!([log_body("t-q", "INFO", "a"), log_body("t-q", "INFO", "b"), log_body("t-q", "INFO", "c")]),
    );
    app.wait_for_blocked_writer().await;
    assert!(!first.is_finished());
    // The queue holds three signals, all waiting for the blocked writer: no room for a fourth.
    let (status, retry_after) = post(&app, log_body("t-q", "INFO", "d")).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("1"));
    let grpc = crate::helpers::grpc_logs_export(&app, 1).await;
    assert_eq!(grpc.expect_err("refused").code(), tonic::Code::Unavailable);

    lock.batch_execute("COMMIT").await.unwrap();
    assert_eq!(first.await.unwrap().0, StatusCode::ACCEPTED);
    assert_eq!(
        post(&app, log_body("t-q", "INFO", "d")).await.unwrap().0,
        StatusCode::ACCEPTED,
        "the retry succeeds"
    );
    assert_eq!(app.count_signals().await, 4);
}

#[tokio::test]
async fn otlp_exports_beyond_the_concurrency_limit_wait_undecoded() {
    // A one-signal queue: an export that got past the limit while the first waits for the
    // blocked writer would be refused with 503 after 50 ms.
    let app = spawn_app_with(&[
        "--otlp-max-concurrent-exports",
        "1",
        "--ingest-queue-signals",
        "1",
        "--ingest-enqueue-wait-ms",
        "50",
        "--ingest-timeout-ms",
        "20000",
    ])
    .await;
    let lock = block_writes(&app).await;
    let export = |trace: &'static str| {
        let (http, url) = (app.http.clone(), format!("http://{}/v1/logs", app.http_addr));
        let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"timeUnixNano": "1714558830000000000", "severityNumber": 9, "body": {"stringValue": trace}}
        ]}]}]});
        tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let first = export("first");
    app.wait_for_blocked_writer().await;
    let second = export("second");
    // Let in, the second would be refused 50 ms after reaching the full queue: give it ten
    // times that (this can only miss a fault, never fail a correct server).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!first.is_finished() && !second.is_finished(), "the second waits instead of being refused");
    lock.batch_execute("COMMIT").await.unwrap();
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(second.await.unwrap(), StatusCode::OK);
    assert_eq!(app.count_signals().await, 2);
}
