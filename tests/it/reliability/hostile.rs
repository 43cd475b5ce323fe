//! Hostile input at every door: each class gets a clear 4xx or a documented normalisation
//! (docs/reliability.md), never a 5xx. Gzip bombs are in `otlp_http` and `otlp_grpc`; NUL in
//! legacy JSON in `legacy`; random bytes in `fuzz`.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tonic::Code;

use crate::helpers::{log_body, spawn_app, Row, TestApp};

const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");

fn string(text: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(text.into())) })
}

fn attribute(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue { key: key.to_owned(), value, ..Default::default() }
}

/// One span named `name` with `attributes`, in a trace of its own.
fn span_request(name: &str, attributes: Vec<KeyValue>) -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: uuid::Uuid::new_v4().as_bytes().to_vec(),
        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
        name: name.to_owned(),
        start_time_unix_nano: 1_714_558_830_000_000_000,
        end_time_unix_nano: 1_714_558_830_100_000_000,
        attributes,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// An attribute value nested `depth` arrays deep.
fn nested(depth: usize) -> Option<AnyValue> {
    let mut value = string("bottom");
    for _ in 0..depth {
        value = Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![value.unwrap()] })),
        });
    }
    value
}

async fn post_protobuf(app: &TestApp, path: &str, body: Vec<u8>) -> StatusCode {
    app.post_otlp(path, &[PROTOBUF], body).await.0
}

async fn post_otlp_json(app: &TestApp, path: &str, body: Vec<u8>) -> StatusCode {
    app.post_otlp(path, &[JSON], body).await.0
}

async fn only_row(app: &TestApp) -> Row {
    let rows = app.rows().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().unwrap()
}

fn grpc_traces(app: &TestApp) -> TraceServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc_addr)).unwrap();
    TraceServiceClient::new(channel.connect_lazy())
}

#[tokio::test]
async fn nesting_beyond_the_decoders_depth_limits_is_a_4xx_and_below_them_is_stored() {
    let app = spawn_app().await;
    // prost refuses messages nested over 100 deep; 150 arrays are 300 messages.
    let deep = span_request("deep", vec![attribute("deep", nested(150))]);
    assert_eq!(post_protobuf(&app, "/v1/traces", deep.encode_to_vec()).await, StatusCode::BAD_REQUEST);
    let status = grpc_traces(&app).export(deep).await.expect_err("too deep");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // serde_json refuses JSON nested over 128 deep, for OTLP/JSON and legacy alike.
    let deep_json = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let otlp = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"k","value":{deep_json}}}]}}]}}]}}]}}"#
    );
    assert_eq!(post_otlp_json(&app, "/v1/traces", otlp.into_bytes()).await, StatusCode::BAD_REQUEST);
    let legacy = format!(
        r#"{{"trace_id":"t","service_name":"s","level":"INFO","message":"m","attributes":{{"deep":{deep_json}}}}}"#
    );
    let answer = app.post_raw("/ingest/logs", Some("application/json"), legacy.into_bytes()).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Moderate nesting is stored as it came.
    let moderate = span_request("moderate", vec![attribute("nested", nested(20))]);
    assert_eq!(post_protobuf(&app, "/v1/traces", moderate.encode_to_vec()).await, StatusCode::OK);
    let mut value = &only_row(&app).await.payload["attributes"]["nested"];
    for _ in 0..20 {
        value = &value[0];
    }
    assert_eq!(value, "bottom");
}

#[tokio::test]
async fn huge_attribute_counts_and_a_10_mb_string_are_trimmed_and_counted() {
    let app = spawn_app().await;
    // 10,000 attributes and one 10 MB value (its key sorts first, so it is among those kept).
    let mut attributes: Vec<KeyValue> =
        (0..10_000).map(|i| attribute(&format!("attr.{i:05}"), string("v"))).collect();
    attributes.push(attribute("0.big", string("x".repeat(10 << 20))));
    let request = span_request("huge", attributes);
    assert_eq!(post_protobuf(&app, "/v1/traces", request.encode_to_vec()).await, StatusCode::OK);
    let payload = only_row(&app).await.payload;
    assert_eq!(payload["attributes"].as_object().unwrap().len(), 128);
    assert_eq!(payload["attributes"]["0.big"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(
        payload["truncated"],
        json!({"attributes_dropped": 10_001 - 128, "values_truncated": 1,
               "attribute_count_limit": 128, "value_length_limit": 65_536})
    );

    // A 10 MB log body over gRPC: stored, cut to the limit.
    let record = LogRecord { body: string("y".repeat(10 << 20)), severity_number: 17, ..Default::default() };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
            ..Default::default()
        }],
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc_addr)).unwrap();
    LogsServiceClient::new(channel.connect_lazy()).export(logs).await.expect("stored");
    let rows = app.rows().await;
    let log = rows.iter().find(|r| r.signal_type == "log").unwrap();
    assert_eq!(log.payload["message"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(log.payload["truncated"]["values_truncated"], 1);

    // Legacy: 1,000 attributes and a 1 MB message are trimmed the same way; 10 MB is over
    // MAX_BODY_BYTES (4 MiB) and refused whole.
    let attributes: serde_json::Map<String, Value> =
        (0..1000).map(|i| (format!("a{i:04}"), json!(i))).collect();
    let mut body = log_body("t-legacy-huge", "INFO", &"m".repeat(1 << 20));
    body["attributes"] = Value::Object(attributes);
    let (status, answer) = app.post_json("/ingest/logs", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let rows = app.rows().await;
    let legacy = rows.iter().find(|r| r.trace_id == "t-legacy-huge").unwrap();
    assert_eq!(legacy.payload["attributes"].as_object().unwrap().len(), 128);
    assert_eq!(legacy.payload["message"].as_str().unwrap().len(), 64 * 1024);
    let (status, _) = app.post_json("/ingest/logs", &log_body("t", "INFO", &"m".repeat(10 << 20))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn invalid_utf8_is_a_4xx_at_every_door() {
    let app = spawn_app().await;
    // A protobuf string field holding bytes that are not UTF-8.
    let mut body = span_request("XXXX", vec![]).encode_to_vec();
    let at = body.windows(4).position(|w| w == b"XXXX").unwrap();
    body[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    assert_eq!(post_protobuf(&app, "/v1/traces", body.clone()).await, StatusCode::BAD_REQUEST);
    let decoded = ExportTraceServiceRequest::decode(body.as_slice());
    assert!(decoded.is_err(), "prost itself refuses it, so gRPC does too");

    let json_body = [
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":""#.as_slice(),
        &[0xff, 0xfe],
        br#""}]}]}]}"#,
    ]
    .concat();
    assert_eq!(post_otlp_json(&app, "/v1/traces", json_body).await, StatusCode::BAD_REQUEST);
    let legacy = [
        br#"{"trace_id":"t","service_name":"s","level":"INFO","message":""#.as_slice(),
        &[0xff, 0xfe],
        b"\"}",
    ]
    .concat();
    let answer = app.post_raw("/ingest/logs", Some("application/json"), legacy).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.rows().await.len(), 0);
}

#[tokio::test]
async fn nul_characters_in_otlp_names_keys_and_values_become_replacement_characters() {
    let app = spawn_app().await;
    let request = span_request("a\0b", vec![attribute("k\0", string("v\0"))]);
    assert_eq!(post_protobuf(&app, "/v1/traces", request.encode_to_vec()).await, StatusCode::OK);
    let payload = only_row(&app).await.payload;
    assert_eq!(payload["name"], "a\u{fffd}b");
    assert_eq!(payload["attributes"]["k\u{fffd}"], "v\u{fffd}");
}

#[tokio::test]
async fn timestamps_out_of_range_are_422_in_legacy_and_kept_exact_in_otlp() {
    let app = spawn_app().await;
    let out_of_range = [
        json!("0000-01-01T00:00:00Z"),
        json!("10000-01-01T00:00:00Z"),
        json!("-0001-01-01T00:00:00Z"),
        json!(-62_135_596_801_000i64), // milliseconds (Pydantic's reading): a second before year 1
        json!(1e19),                   // nanoseconds past i64, read as milliseconds: year 316889355
        json!("not a time"),
    ];
    for timestamp in out_of_range {
        let mut body = log_body("t", "INFO", "m");
        body["timestamp"] = timestamp.clone();
        let (status, answer) = app.post_json("/ingest/logs", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{timestamp}: {answer}");
        assert_eq!(answer["detail"][0]["loc"], json!(["body", "timestamp"]), "{answer}");
    }
    // A negative Unix time is before 1970, as Pydantic reads it: valid.
    let mut body = log_body("t-1969", "INFO", "m");
    body["timestamp"] = json!(-1);
    assert_eq!(app.post_json("/ingest/logs", &body).await.0, StatusCode::ACCEPTED);
    let (_, page) = app.get_json("/query/signals?trace_id=t-1969").await;
    assert_eq!(page["items"][0]["timestamp"], "1969-12-31T23:59:59Z", "{page}");

    // OTLP times are unsigned nanoseconds: the largest, past i64, is year 2554, stored as such
    // with the exact original in `start_time_unix_nano`.
    let mut request = span_request("far future", vec![]);
    let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
    (span.start_time_unix_nano, span.end_time_unix_nano) = (u64::MAX, u64::MAX);
    assert_eq!(post_protobuf(&app, "/v1/traces", request.encode_to_vec()).await, StatusCode::OK);
    let rows = app.rows().await;
    let row = rows.iter().find(|r| r.signal_type == "trace").unwrap();
    assert!(row.timestamp.starts_with("2554-07-21"), "{}", row.timestamp);
    assert_eq!(row.payload["start_time_unix_nano"], u64::MAX.to_string());

    // OTLP/JSON: a negative time, or one past u64, is not a fixed64.
    for time in ["\"-1\"", "\"18446744073709551616\"", "-1"] {
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","startTimeUnixNano":{time}}}]}}]}}]}}"#
        );
        assert_eq!(
            post_otlp_json(&app, "/v1/traces", body.into_bytes()).await,
            StatusCode::BAD_REQUEST,
            "{time}"
        );
    }
}

#[tokio::test]
async fn nan_and_infinity_are_refused_in_json_and_stored_as_proto3_strings_from_otlp() {
    let app = spawn_app().await;
    let metric = |value: &str| {
        format!(r#"{{"name":"cpu","service_name":"s","timestamp":"2024-05-01T10:21:00Z","value":{value}}}"#)
    };
    for value in ["NaN", "Infinity", "-Infinity", "1e999"] {
        let answer =
            app.post_raw("/ingest/metrics", Some("application/json"), metric(value).into_bytes()).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{value}");
        let detail: Value = answer.json().await.unwrap();
        assert_eq!(detail["detail"][0]["type"], "json_invalid", "{value}: {detail}");
    }
    // The same body with a finite value is fine: the refusals above were for the number alone.
    let answer = app.post_raw("/ingest/metrics", Some("application/json"), metric("0.5").into_bytes()).await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);

    let point = |value: f64| NumberDataPoint {
        time_unix_nano: 1_714_558_830_000_000_000 + value.to_bits() % 1000,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    };
    let metric = Metric {
        name: "ratio".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![point(f64::NAN), point(f64::INFINITY), point(f64::NEG_INFINITY)],
        })),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics { metrics: vec![metric], ..Default::default() }],
            ..Default::default()
        }],
    };
    assert_eq!(post_protobuf(&app, "/v1/metrics", request.encode_to_vec()).await, StatusCode::OK);
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"ratio.json","gauge":{"dataPoints":[{"timeUnixNano":"1","asDouble":"NaN"}]}}]}]}]}"#;
    assert_eq!(post_otlp_json(&app, "/v1/metrics", body.into()).await, StatusCode::OK);
    let mut values: Vec<String> = app
        .rows()
        .await
        .iter()
        .filter(|r| r.payload["metric_name"] != "cpu")
        .map(|r| r.payload["value"].as_str().unwrap_or("a number").to_owned())
        .collect();
    values.sort();
    assert_eq!(values, ["-Infinity", "Infinity", "NaN", "NaN"]);
}

#[tokio::test]
async fn duplicate_keys_keep_the_last_value() {
    let app = spawn_app().await;
    // `level` twice: INFO first, ERROR last.
    let legacy = log_body("t-dup", "INFO", "m").to_string();
    let legacy = format!(r#"{},"level":"ERROR"}}"#, legacy.strip_suffix('}').unwrap());
    let answer = app.post_raw("/ingest/logs", Some("application/json"), legacy.into()).await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let request = span_request("dup", vec![attribute("k", string("first")), attribute("k", string("last"))]);
    assert_eq!(post_protobuf(&app, "/v1/traces", request.encode_to_vec()).await, StatusCode::OK);
    let rows = app.rows().await;
    let log = rows.iter().find(|r| r.trace_id == "t-dup").unwrap();
    assert_eq!(log.payload["level"], "ERROR");
    let span = rows.iter().find(|r| r.signal_type == "trace").unwrap();
    assert_eq!(span.payload["attributes"]["k"], "last");
}
