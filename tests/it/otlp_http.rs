//! OTLP/HTTP against the real database: fixtures in both encodings, compression, errors.

use prodsentinel::receivers::otlp_http::RpcStatus;
use prodsentinel::receivers::otlp_json;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{fixture, gzip, spawn_app, spawn_app_with, Row, TestApp};

const JSON: (&str, &str) = ("content-type", "application/json");
const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");

fn json_fixture(path: &str) -> Value {
    serde_json::from_str(&fixture(path)).unwrap()
}

/// The fixture as protobuf, through our JSON decoder (checked against the JSON path below).
fn protobuf_fixture(path: &str) -> Vec<u8> {
    let value = json_fixture(path);
    if path.contains("trace") {
        otlp_json::traces_request(&value).unwrap().encode_to_vec()
    } else if path.contains("log") || path.contains("events") {
        otlp_json::logs_request(&value).unwrap().encode_to_vec()
    } else {
        otlp_json::metrics_request(&value).unwrap().encode_to_vec()
    }
}

async fn post_json(app: &TestApp, path: &str, body: &Value) -> (StatusCode, Value) {
    let (status, headers, bytes) = app.post_otlp(path, &[JSON], body.to_string().into_bytes()).await;
    assert_eq!(headers["content-type"], "application/json", "answer in the request's encoding");
    (status, serde_json::from_slice(&bytes).expect("JSON answer"))
}

fn by_span<'a>(rows: &'a [Row], span_id: &str) -> &'a Row {
    rows.iter().find(|r| r.payload["span_id"] == span_id).unwrap_or_else(|| panic!("span {span_id} stored"))
}

#[tokio::test]
async fn upstream_fixtures_are_stored_without_loss() {
    let app = spawn_app().await;
    for (path, file) in [
        ("/v1/traces", "otlp/upstream/trace.json"),
        ("/v1/logs", "otlp/upstream/logs.json"),
        ("/v1/logs", "otlp/upstream/events.json"),
        ("/v1/metrics", "otlp/upstream/metrics.json"),
    ] {
        let (status, answer) = post_json(&app, path, &json_fixture(file)).await;
        assert_eq!((status, answer), (StatusCode::OK, json!({})), "{file}");
    }
    let rows = app.rows().await;
    let span = rows.iter().find(|r| r.signal_type == "trace").unwrap();
    assert_eq!(span.trace_id, "5b8efff798038103d269b633813fc60c", "hex ids stored lower-case");
    assert_eq!(span.service_name, "my.service");
    assert_eq!(span.payload["span_id"], "eee19b7ec3c1b174");
    assert_eq!(span.payload["parent_span_id"], "eee19b7ec3c1b173");
    assert_eq!(span.payload["kind"], "SERVER");
    assert_eq!(span.payload["duration_ms"], 1000.0);
    assert_eq!(span.payload["attributes"]["my.span.attr"], "some value");
    assert_eq!(span.payload["scope"]["name"], "my.library");

    let logs: Vec<&Row> = rows.iter().filter(|r| r.signal_type == "log").collect();
    assert_eq!(logs.len(), 2);
    let event =
        logs.iter().find(|r| r.payload["event_name"] == "browser.page_view").expect("the event is stored");
    assert_eq!(event.signal_type, "log");
    let log = logs.iter().find(|r| r.payload["event_name"] == "").unwrap();
    assert_eq!(log.payload["message"], "Example log record");
    assert_eq!(log.payload["level"], "INFO");
    assert_eq!(log.trace_id, "5b8efff798038103d269b633813fc60c");

    let metrics: Vec<&Row> = rows.iter().filter(|r| r.signal_type == "metric").collect();
    let kinds: std::collections::BTreeSet<&str> =
        metrics.iter().map(|r| r.payload["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        vec!["exponential_histogram", "gauge", "histogram", "sum"]
    );
    assert_eq!(metrics.len(), 4, "one row per data point");
}

#[tokio::test]
async fn traces_of_every_form_are_stored_field_by_field() {
    let app = spawn_app().await;
    let (status, answer) = post_json(&app, "/v1/traces", &json_fixture("otlp/traces_all_forms.json")).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({})));
    let rows = app.rows().await;
    assert_eq!(rows.len(), 2);

    let root = by_span(&rows, "b7ad6b7169203331");
    assert_eq!(root.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(root.service_name, "checkout");
    assert_eq!(root.timestamp, "2024-05-01T10:20:30.000000Z");
    let p = &root.payload;
    assert_eq!(p["parent_span_id"], Value::Null);
    assert_eq!(p["name"], "POST /checkout");
    assert_eq!(p["kind"], "SERVER", "enum names are read");
    assert_eq!(p["status"], "ERROR");
    assert_eq!(p["status_message"], "payment declined");
    assert_eq!(p["duration_ms"], 250.0);
    assert_eq!(p["start_time"], "2024-05-01T10:20:30Z");
    assert_eq!(p["end_time"], "2024-05-01T10:20:30.250Z");
    assert_eq!(p["start_time_unix_nano"], "1714558830000000000");
    assert_eq!(
        p["attributes"],
        json!({"http.request.method": "POST", "http.response.status_code": 502, "retry": false})
    );
    assert_eq!(p["events"][0]["name"], "exception");
    assert_eq!(p["events"][0]["attributes"]["exception.type"], "PaymentDeclined");
    assert!(p["events"][0]["attributes"]["exception.stacktrace"].as_str().unwrap().starts_with("Traceback"));
    assert_eq!(p["resource"], json!({"service.name": "checkout", "service.version": "2.3.1"}));
    assert_eq!(p["scope"], json!({"name": "checkout.http", "version": "", "attributes": {}}));

    let child = by_span(&rows, "00f067aa0ba902b7");
    assert_eq!(child.trace_id, root.trace_id, "snake_case keys and lower-case hex read the same");
    assert_eq!(child.payload["parent_span_id"], "b7ad6b7169203331");
    assert_eq!(child.payload["kind"], "CLIENT");
    assert_eq!(child.payload["status"], "OK");
    assert_eq!(child.payload["duration_ms"], 180.0, "int64 as JSON numbers");
    assert_eq!(child.payload["links"][0]["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(child.payload["dropped"]["events"], 2);
}

#[tokio::test]
async fn logs_of_every_form_are_stored_with_the_workers_keys() {
    let app = spawn_app().await;
    let (status, answer) = post_json(&app, "/v1/logs", &json_fixture("otlp/logs_all_forms.json")).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({})));
    let rows = app.rows().await;
    assert_eq!(rows.len(), 3);
    let (error, warning, fatal) = (&rows[0], &rows[1], &rows[2]);

    assert_eq!(error.service_name, "payments");
    assert_eq!(error.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(error.timestamp, "2024-05-01T10:20:30.100000Z");
    assert_eq!(error.payload["level"], "ERROR");
    assert_eq!(error.payload["message"], "card declined");
    assert_eq!(error.payload["stack_trace"], "at charge (pay.js:7)");
    assert_eq!(error.payload["span_id"], "00f067aa0ba902b7");
    assert_eq!(error.payload["severity_number"], 17);

    assert_eq!(warning.payload["level"], "WARNING", "severityNumber given by name");
    assert_eq!(warning.timestamp, "2024-05-01T10:20:30.300000Z", "observed time when time is 0");
    assert_eq!(
        warning.trace_id, "svc:payments:2024-05-01T10:20:00Z",
        "trace-less logs get the correlation key"
    );
    assert_eq!(warning.payload["message"], r#"{"retries":3}"#);
    assert_eq!(warning.payload["body"], json!({"retries": 3}));

    assert_eq!(fatal.payload["level"], "CRITICAL", "severity text when the number is unset");
    assert_eq!(fatal.payload["event_name"], "app.crash");
    assert_eq!(
        fatal.payload["attributes"],
        json!({"payload": "3q2+7w==", "ratio": "NaN", "tags": ["a", 2, null]})
    );
}

#[tokio::test]
async fn metrics_of_every_type_are_stored_one_row_per_point() {
    let app = spawn_app().await;
    let (status, answer) = post_json(&app, "/v1/metrics", &json_fixture("otlp/metrics_all_forms.json")).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({})));
    let rows = app.rows().await;
    assert_eq!(rows.len(), 7);
    let named =
        |name: &str| -> Vec<&Row> { rows.iter().filter(|r| r.payload["metric_name"] == name).collect() };

    let gauge = named("queue.depth");
    assert_eq!(gauge.len(), 3);
    assert_eq!(gauge[0].payload["value"], 12.5);
    assert_eq!(gauge[0].payload["attributes"], json!({"queue": "orders"}));
    assert_eq!(gauge[1].payload["value"], 42, "asInt as a string");
    assert_eq!(gauge[2].payload["value"], Value::Null, "NO_RECORDED_VALUE is null, not 0");
    assert_eq!(gauge[2].payload["no_recorded_value"], true);
    assert_eq!(gauge[0].trace_id, "svc:api:2024-05-01T10:20:00Z");
    assert_eq!(gauge[0].service_name, "api");

    let sum = named("http.server.requests")[0];
    assert_eq!(sum.payload["kind"], "sum");
    assert_eq!(sum.payload["value"], 1234);
    assert_eq!(sum.payload["temporality"], "CUMULATIVE", "temporality given by name");
    assert_eq!(sum.payload["monotonic"], true);
    assert_eq!(sum.trace_id, "0af7651916cd43dd8448eb211c80319c", "the exemplar's trace id");
    assert_eq!(sum.payload["exemplars"][0]["span_id"], "b7ad6b7169203331");

    let histogram = named("http.server.duration")[0];
    assert_eq!(histogram.payload["value"], 2712.5);
    assert_eq!(histogram.payload["count"], 3);
    assert_eq!(histogram.payload["min"], 12.5);
    assert_eq!(histogram.payload["max"], 2500.0);
    assert_eq!(histogram.payload["bucket_counts"], json!([1, 1, 1]));
    assert_eq!(histogram.payload["explicit_bounds"], json!([100.0, 1000.0]));
    assert_eq!(histogram.payload["temporality"], "DELTA");
    assert_eq!(histogram.payload["unit"], "ms");
    assert_eq!(histogram.payload["description"], "request latency");

    let exponential = named("payload.size")[0];
    assert_eq!(exponential.payload["kind"], "exponential_histogram");
    assert_eq!(exponential.payload["value"], 4096.0);
    assert_eq!(exponential.payload["positive"], json!({"offset": 10, "bucket_counts": [2, 1]}));
    assert_eq!(exponential.payload["zero_count"], 1);

    let summary = named("rpc.latency")[0];
    assert_eq!(summary.payload["kind"], "summary");
    assert_eq!(summary.payload["value"], 5.5);
    assert_eq!(summary.payload["count"], 10);
    assert_eq!(
        summary.payload["quantiles"],
        json!([{"quantile": 0.5, "value": 0.4}, {"quantile": 0.99, "value": 1.9}])
    );
}

#[tokio::test]
async fn protobuf_and_json_of_the_same_data_store_the_same_rows() {
    let (json_app, protobuf_app) = (spawn_app().await, spawn_app().await);
    for (path, file) in [
        ("/v1/traces", "otlp/traces_all_forms.json"),
        ("/v1/logs", "otlp/logs_all_forms.json"),
        ("/v1/metrics", "otlp/metrics_all_forms.json"),
    ] {
        assert_eq!(post_json(&json_app, path, &json_fixture(file)).await.0, StatusCode::OK);
        let (status, headers, body) = protobuf_app.post_otlp(path, &[PROTOBUF], protobuf_fixture(file)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert!(body.is_empty(), "full success is an empty protobuf message");
    }
    let (a, b) = (json_app.rows().await, protobuf_app.rows().await);
    assert_eq!(a.len(), 12);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.id, &x.trace_id, &x.service_name, &x.timestamp),
            (y.id, &y.trace_id, &y.service_name, &y.timestamp)
        );
        assert_eq!(x.payload, y.payload);
    }
}

#[tokio::test]
async fn compressed_bodies_are_accepted_in_every_supported_encoding() {
    use std::io::Write;
    let app = spawn_app().await;
    let json_body = fixture("otlp/traces_all_forms.json").into_bytes();
    let protobuf_body = protobuf_fixture("otlp/traces_all_forms.json");
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    zlib.write_all(&json_body).unwrap();
    let cases = [
        (JSON, "gzip", gzip(&json_body)),
        (PROTOBUF, "gzip", gzip(&protobuf_body)),
        (PROTOBUF, "zstd", zstd::encode_all(&protobuf_body[..], 3).unwrap()),
        (JSON, "deflate", zlib.finish().unwrap()),
    ];
    for (content_type, encoding, body) in cases {
        let (status, _, answer) =
            app.post_otlp("/v1/traces", &[content_type, ("content-encoding", encoding)], body).await;
        assert_eq!(status, StatusCode::OK, "{encoding}: {}", String::from_utf8_lossy(&answer));
    }
    assert_eq!(app.rows().await.len(), 2, "four deliveries of the same two spans store two rows");
}

#[tokio::test]
async fn the_same_export_twice_stores_each_record_once() {
    let app = spawn_app().await;
    for _ in 0..2 {
        for (path, file) in [
            ("/v1/traces", "otlp/traces_all_forms.json"),
            ("/v1/logs", "otlp/logs_all_forms.json"),
            ("/v1/metrics", "otlp/metrics_all_forms.json"),
        ] {
            assert_eq!(post_json(&app, path, &json_fixture(file)).await.0, StatusCode::OK);
        }
    }
    assert_eq!(app.rows().await.len(), 2 + 3 + 7);
}

#[tokio::test]
async fn media_types_match_case_insensitively_and_others_get_415() {
    let app = spawn_app().await;
    let body = json_fixture("otlp/upstream/trace.json").to_string().into_bytes();
    for content_type in ["application/json; charset=utf-8", "APPLICATION/JSON"] {
        let (status, _, _) =
            app.post_otlp("/v1/traces", &[("content-type", content_type)], body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{content_type}");
    }
    let protobuf = protobuf_fixture("otlp/upstream/trace.json");
    let (status, _, _) =
        app.post_otlp("/v1/traces", &[("content-type", "application/x-protobuf; proto=x")], protobuf).await;
    assert_eq!(status, StatusCode::OK);

    for headers in [vec![("content-type", "text/plain")], vec![]] {
        let (status, response_headers, answer) = app.post_otlp("/v1/traces", &headers, body.clone()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(response_headers["content-type"], "application/x-protobuf");
        let rpc = RpcStatus::decode(&answer[..]).expect("a google.rpc.Status body");
        assert!(rpc.message.contains("unsupported media type"), "{}", rpc.message);
    }
}

#[tokio::test]
async fn undecodable_bodies_are_400_with_a_status_in_the_requests_encoding() {
    let app = spawn_app().await;
    let (status, headers, body) = app.post_otlp("/v1/traces", &[PROTOBUF], vec![0xff, 0xff, 0xff]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/x-protobuf");
    let rpc = RpcStatus::decode(&body[..]).unwrap();
    assert_eq!(rpc.code, 3);
    assert!(rpc.message.contains("invalid protobuf"), "{}", rpc.message);

    let base64_id = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "W47/95gDgQPSabYzgT/GDA==", "spanId": "EEE19B7EC3C1B174"}]}]}]});
    let (status, answer) = post_json(&app, "/v1/traces", &base64_id).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["code"], 3);
    assert!(
        answer["message"].as_str().unwrap().contains("$.resourceSpans[0].scopeSpans[0].spans[0].traceId"),
        "{answer}"
    );

    let bad_value = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "m", "gauge": {"dataPoints": [{"asInt": "abc"}]}}]}]}]});
    let (status, answer) = post_json(&app, "/v1/metrics", &bad_value).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "never a silently empty point: {answer}");

    let (status, headers, body) =
        app.post_otlp("/v1/logs", &[JSON, ("content-encoding", "gzip")], b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/json");
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert!(answer["message"].as_str().unwrap().starts_with("gzip"), "{answer}");

    let (status, _, _) = app.post_otlp("/v1/logs", &[JSON, ("content-encoding", "br")], b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(app.rows().await.len(), 0);
}

#[tokio::test]
async fn a_gzip_bomb_is_413_and_a_normal_8_mib_batch_is_accepted() {
    let app = spawn_app_with(&["--otlp-max-message-bytes", "16MiB"]).await;
    let bomb = gzip(&vec![b' '; 64 << 20]);
    let (status, headers, body) =
        app.post_otlp("/v1/logs", &[JSON, ("content-encoding", "gzip")], bomb).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["content-type"], "application/json");
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["code"], 8);

    // ~8 MiB of protobuf: 4000 log records with 2 KiB bodies.
    let mut request = otlp_json::logs_request(&json_fixture("otlp/upstream/logs.json")).unwrap();
    let records = &mut request.resource_logs[0].scope_logs[0].log_records;
    let template = records[0].clone();
    records.clear();
    for i in 0..4000u64 {
        let mut record = template.clone();
        record.time_unix_nano = 1_714_558_830_000_000_000 + i;
        record.body = Some(opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                "x".repeat(2048),
            )),
        });
        records.push(record);
    }
    let body = request.encode_to_vec();
    assert!(body.len() > 8 << 20, "{} bytes", body.len());
    let (status, _, _) = app.post_otlp("/v1/logs", &[PROTOBUF], body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.rows().await.len(), 4000);
}

#[tokio::test]
async fn invalid_records_are_partial_success_with_counts_and_a_message() {
    let app = spawn_app().await;
    let span = |trace_id: &str, span_id: &str| json!({"traceId": trace_id, "spanId": span_id, "name": "s", "startTimeUnixNano": "1714558830000000000"});
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        span("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
        span("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203332"),
        span("deadbeef", "b7ad6b7169203333"),
        span("0af7651916cd43dd8448eb211c80319c", "0000000000000000"),
        span("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203334"),
    ]}]}]});
    let (status, answer) = post_json(&app, "/v1/traces", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "2");
    let message = answer["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("trace_id must be 16 bytes, got 4") && message.contains("span_id is all zeros"),
        "{message}"
    );
    assert_eq!(app.rows().await.len(), 3);

    let metrics = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "no.data"},
        {"name": "bad.sum", "sum": {"dataPoints": [{"asInt": 1}, {"asInt": 2}]}},
        {"name": "no.value", "gauge": {"dataPoints": [{"timeUnixNano": "1"}, {"asDouble": 1.0, "timeUnixNano": "2"}]}}
    ]}]}]});
    let (status, headers, bytes) = app
        .post_otlp("/v1/metrics", &[PROTOBUF], otlp_json::metrics_request(&metrics).unwrap().encode_to_vec())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-protobuf");
    let response =
        opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse::decode(&bytes[..])
            .unwrap();
    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 4, "{}", partial.error_message);
    assert!(partial.error_message.contains("has no data"));
    assert!(partial.error_message.contains("aggregation temporality is unspecified"));
    assert!(partial.error_message.contains("no value"));
    assert_eq!(app.rows().await.len(), 4);
}

#[tokio::test]
async fn empty_requests_are_success() {
    let app = spawn_app().await;
    for body in [json!({}), json!({"resourceSpans": []}), json!({"resourceSpans": [{"scopeSpans": []}]})] {
        assert_eq!(post_json(&app, "/v1/traces", &body).await, (StatusCode::OK, json!({})));
    }
    let (status, _, answer) = app.post_otlp("/v1/metrics", &[PROTOBUF], Vec::new()).await;
    assert_eq!((status, answer.len()), (StatusCode::OK, 0));
}

#[tokio::test]
async fn wrong_method_is_405_with_allow_and_unknown_path_is_404() {
    let app = spawn_app().await;
    let response = app.http.get(format!("http://{}/v1/traces", app.http_addr)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    let rpc = RpcStatus::decode(&response.bytes().await.unwrap()[..]).unwrap();
    assert!(rpc.message.contains("POST"));
    let (status, _, body) = app.post_otlp("/v1development/profiles", &[PROTOBUF], Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(RpcStatus::decode(&body[..]).is_ok());
}

#[tokio::test]
async fn cors_is_off_by_default_and_configurable() {
    let off = spawn_app().await;
    let preflight = |app: &TestApp| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("http://{}/v1/traces", app.http_addr))
            .header("origin", "https://shop.example.com")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    assert!(preflight(&off).await.unwrap().headers().get("access-control-allow-origin").is_none());

    let on = spawn_app_with(&["--otlp-http-cors-allowed-origins", "https://shop.example.com"]).await;
    let response = preflight(&on).await.unwrap();
    assert!(response.status().is_success());
    assert_eq!(response.headers()["access-control-allow-origin"], "https://shop.example.com");
    let post = on
        .http
        .post(format!("http://{}/v1/traces", on.http_addr))
        .header("origin", "https://shop.example.com")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::OK);
    assert_eq!(
        post.headers()["access-control-allow-origin"],
        "https://shop.example.com",
        "the POST answer carries CORS too"
    );
}

#[tokio::test]
async fn database_outage_is_503_with_retry_after_then_recovers() {
    let app = spawn_app().await;
    crate::helpers::block_connections(&app, false).await;
    let body = fixture("otlp/traces_all_forms.json").into_bytes();
    let (status, headers, answer) = app.post_otlp("/v1/traces", &[JSON], body.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "retryable, never 500");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["content-type"], "application/json");
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["code"], 14);

    crate::helpers::block_connections(&app, true).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let (status, _, _) = app.post_otlp("/v1/traces", &[JSON], body.clone()).await;
        if status == StatusCode::OK || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status, StatusCode::OK, "the client's retry succeeds once the database is back");
    assert_eq!(app.rows().await.len(), 2);
}
