//! The same export or legacy body sent twice is stored once and counted once in its incident,
//! whichever partition it lands in, and also when its records carry no time at all.

use chrono::Utc;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use reqwest::StatusCode;

use super::{day_partition, days, log_at, placed};
use crate::helpers::{spawn_app_with, TestApp};
use crate::reliability::load::spans_request;

async fn error_count(app: &TestApp, trace_id: &str) -> f64 {
    app.db()
        .await
        .query_one("SELECT error_count FROM incidents WHERE trace_id = $1", &[&trace_id])
        .await
        .unwrap()
        .get(0)
}

/// Four spans of `trace`, started `age` ago, as OTLP protobuf.
fn spans_started(trace: [u8; 16], age: chrono::Duration) -> Vec<u8> {
    let mut request = spans_request("idem", &trace, 4, 1);
    let shift = age.num_nanoseconds().unwrap() as u64;
    for span in &mut request.resource_spans[0].scope_spans[0].spans {
        span.start_time_unix_nano -= shift;
        span.end_time_unix_nano -= shift;
    }
    request.encode_to_vec()
}

#[tokio::test]
async fn the_same_export_or_legacy_body_twice_is_stored_once_recent_and_days_old() {
    let app = spawn_app_with(&[]).await;
    let db = app.db().await;
    let now = Utc::now();
    for (trace, age) in [("t-recent", days(0)), ("t-old", days(5))] {
        let body = log_at(trace, "ERROR", now - age);
        for _ in 0..2 {
            assert_eq!(app.post_json("/ingest/logs", &body).await.0, StatusCode::ACCEPTED);
        }
        assert_eq!(placed(&db, trace).await.len(), 1, "{trace}: one row");
        assert_eq!(error_count(&app, trace).await, 1.0, "{trace}: counted once");
    }
    // Five days ago has no partition (start-up makes today and ahead): the default holds it,
    // with the same duplicate check.
    assert_eq!(placed(&db, "t-old").await, ["raw_signals_default"]);
    assert_eq!(placed(&db, "t-recent").await, [day_partition(now, "log")]);

    for (trace, age) in [([7u8; 16], days(0)), ([8u8; 16], days(5))] {
        let export = spans_started(trace, age);
        for _ in 0..2 {
            let (status, _, _) = app
                .post_otlp("/v1/traces", &[("content-type", "application/x-protobuf")], export.clone())
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        let hex: String = trace.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(placed(&db, &hex).await.len(), 4, "four spans, each stored once");
        assert_eq!(error_count(&app, &hex).await, 4.0);
    }
}

/// Log records without a time or an observed time: stamped with their receipt time.
pub(super) fn timeless_logs(trace: [u8; 16]) -> ExportLogsServiceRequest {
    let log_records = (0..3)
        .map(|i| LogRecord {
            severity_number: 17,
            trace_id: trace.to_vec(),
            body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(format!(
                    "no time {i}"
                ))),
            }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn records_without_a_time_are_stored_once_however_often_and_concurrently_they_are_sent() {
    let app = spawn_app_with(&[]).await;
    let db = app.db().await;
    let trace = [9u8; 16];
    let hex: String = trace.iter().map(|b| format!("{b:02x}")).collect();
    let request = timeless_logs(trace);
    let connect = || LogsServiceClient::connect(format!("http://{}", app.grpc_addr));
    let mut client = connect().await.unwrap();
    client.export(request.clone()).await.expect("first export");
    // The retry arrives later (another receipt time) and twice at once, over two connections.
    let (mut a, mut b) = (connect().await.unwrap(), connect().await.unwrap());
    let (first, second) = tokio::join!(a.export(request.clone()), b.export(request.clone()));
    first.expect("retry a");
    second.expect("retry b");
    client.export(request).await.expect("one more");
    let rows = db
        .query(
            r#"SELECT time_unknown, "timestamp" >= now() - interval '1 minute' FROM raw_signals WHERE trace_id = $1"#,
            &[&hex],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "three records, each stored once");
    assert!(rows.iter().all(|r| r.get::<_, bool>(0) && r.get::<_, bool>(1)), "flagged, stamped on receipt");
    assert_eq!(error_count(&app, &hex).await, 3.0, "counted once each");
}
