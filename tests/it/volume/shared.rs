//! `signal_shared` does not grow without bound: a resource and scope no stored signal can refer
//! to any more are swept; evidence keeps the ones it refers to.

use chrono::{DateTime, Utc};
use prodsentinel::store::partitions::Turn;
use prodsentinel::App;
use reqwest::StatusCode;
use serde_json::json;

use super::{days, A_DAY};
use crate::helpers::{one, spawn_app_dispatching_by_hand, test_config, TestApp};

/// One OTLP/JSON log of `service` in `trace` at `at`.
async fn otlp_log(app: &TestApp, service: &str, trace: &str, severity: i32, at: DateTime<Utc>) {
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [{"scope": {"name": "shared-test"}, "logRecords": [{
            "timeUnixNano": at.timestamp_nanos_opt().unwrap().to_string(), "severityNumber": severity,
            "traceId": trace, "body": {"stringValue": format!("{service} says hello")}}]}]}]});
    let (status, _, answer) = app
        .post_otlp("/v1/logs", &[("content-type", "application/json")], body.to_string().into_bytes())
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn resources_no_stored_signal_refers_to_are_swept_and_evidence_keeps_its_own() {
    let app = spawn_app_dispatching_by_hand(&[]).await;
    let db = app.db().await;
    let old = Utc::now() - days(3);
    assert!(app.maintenance.pass_at(old, Turn::Wait).await.errors.is_empty());
    let (healthy, analysed) = ("5b8efff798038103d269b633813fc60c", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1");
    otlp_log(&app, "svc-healthy", healthy, 9, old).await;
    otlp_log(&app, "svc-analysed", analysed, 17, old).await;
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM signal_shared").await, 2);

    // Days later, with a day of retention: the healthy log and its partition are long gone, so
    // is every use of its resource; the analysed trace's log is evidence.
    let redis = app.redis.url();
    let args: Vec<&str> = ["--redis-url", &redis].into_iter().chain(A_DAY).collect();
    let later = App::build(test_config(&app.db, &args)).await.expect("starts");
    let report = later.maintenance().pass_at(Utc::now() + days(5), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.expired_rows.shared, 1, "{report:?}");
    let left: Vec<String> =
        crate::helpers::column(&db, "SELECT resource->>'service.name' FROM signal_shared").await;
    assert_eq!(left, ["svc-analysed"]);
    let (_, trace) = app.get_json(&format!("/query/traces/{analysed}")).await;
    assert_eq!(trace[0]["payload"]["resource"]["service.name"], "svc-analysed", "{trace}");
    // A resource used again is simply stored again.
    otlp_log(&app, "svc-healthy", healthy, 9, Utc::now()).await;
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM signal_shared").await, 2);
}
