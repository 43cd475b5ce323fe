//! OTLP/gRPC with tonic clients generated from the OTLP protos.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prodsentinel::receivers::otlp_json;
use serde_json::{json, Value};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic::Code;

use crate::helpers::{block_connections, fixture, spawn_app, spawn_app_with, TestApp};

fn json_fixture(path: &str) -> Value {
    serde_json::from_str(&fixture(path)).unwrap()
}

async fn channel(app: &TestApp) -> Channel {
    Channel::from_shared(format!("http://{}", app.grpc_addr)).unwrap().connect().await.expect("gRPC connects")
}

#[tokio::test]
async fn all_three_services_store_what_they_receive_compressed_or_not() {
    let app = spawn_app().await;
    let channel = channel(&app).await;
    let traces = otlp_json::traces_request(&json_fixture("otlp/traces_all_forms.json")).unwrap();
    let logs = otlp_json::logs_request(&json_fixture("otlp/logs_all_forms.json")).unwrap();
    let metrics = otlp_json::metrics_request(&json_fixture("otlp/metrics_all_forms.json")).unwrap();

    let response = TraceServiceClient::new(channel.clone())
        .send_compressed(CompressionEncoding::Gzip)
        .export(traces)
        .await
        .expect("gzip accepted");
    assert_eq!(response.into_inner().partial_success, None, "full success leaves partial_success unset");
    LogsServiceClient::new(channel.clone())
        .send_compressed(CompressionEncoding::Zstd)
        .export(logs)
        .await
        .expect("zstd accepted");
    MetricsServiceClient::new(channel).export(metrics).await.expect("uncompressed accepted");

    let rows = app.rows().await;
    assert_eq!(rows.len(), 2 + 3 + 7);
    let root = rows.iter().find(|r| r.payload["span_id"] == "b7ad6b7169203331").unwrap();
    assert_eq!(root.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(root.payload["status"], "ERROR");
    let error_log = rows.iter().find(|r| r.payload["level"] == "ERROR").unwrap();
    assert_eq!(error_log.payload["stack_trace"], "at charge (pay.js:7)");
}

#[tokio::test]
async fn invalid_spans_come_back_as_partial_success() {
    let app = spawn_app().await;
    let request = otlp_json::traces_request(&json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "ok"},
        {"traceId": "", "spanId": "b7ad6b7169203332", "name": "no trace id"}
    ]}]}]}))
    .unwrap();
    let response = TraceServiceClient::new(channel(&app).await).export(request).await.unwrap().into_inner();
    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("trace_id must be 16 bytes, got 0"), "{}", partial.error_message);
    assert_eq!(app.rows().await.len(), 1);
}

#[tokio::test]
async fn an_empty_export_is_ok() {
    let app = spawn_app().await;
    let response =
        TraceServiceClient::new(channel(&app).await).export(ExportTraceServiceRequest::default()).await;
    assert_eq!(response.unwrap().into_inner().partial_success, None);
}

/// A logs request of about `bytes` bytes.
fn big_logs_request(
    bytes: usize,
) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
    let mut request = otlp_json::logs_request(&json_fixture("otlp/upstream/logs.json")).unwrap();
    let record = &mut request.resource_logs[0].scope_logs[0].log_records[0];
    record.body = Some(opentelemetry_proto::tonic::common::v1::AnyValue {
        value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue("x".repeat(bytes))),
    });
    request
}

#[tokio::test]
async fn an_oversized_message_is_resource_exhausted_not_retryable_out_of_range() {
    let app = spawn_app_with(&["--otlp-max-message-bytes", "1MiB"]).await;
    let client = LogsServiceClient::new(channel(&app).await);
    let status = client.clone().export(big_logs_request(2 << 20)).await.expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.metadata().get("grpc-status-details-bin").is_none(), "no RetryInfo: not retried");

    // Compressed under the limit, over it once inflated.
    let status = client
        .clone()
        .send_compressed(CompressionEncoding::Gzip)
        .export(big_logs_request(2 << 20))
        .await
        .expect_err("over the limit once decompressed");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    client.clone().export(big_logs_request(512 << 10)).await.expect("under the limit is fine");
    assert_eq!(app.rows().await.len(), 1);
}

#[tokio::test]
async fn database_outage_is_unavailable_then_recovers() {
    let app = spawn_app().await;
    let request = otlp_json::traces_request(&json_fixture("otlp/traces_all_forms.json")).unwrap();
    let mut client = TraceServiceClient::new(channel(&app).await);
    block_connections(&app, false).await;
    let status = client.export(request.clone()).await.expect_err("database down");
    assert_eq!(status.code(), Code::Unavailable, "retryable, never UNKNOWN or INTERNAL: {status:?}");

    block_connections(&app, true).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match client.export(request.clone()).await {
            Ok(_) => break,
            Err(status) if std::time::Instant::now() < deadline => {
                assert_eq!(status.code(), Code::Unavailable);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(status) => panic!("not recovered: {status:?}"),
        }
    }
    assert_eq!(app.rows().await.len(), 2);
}
