//! Real OpenTelemetry SDKs (Python over gRPC and HTTP/protobuf, Rust over gRPC) exporting to
//! the running service; the stored rows are checked field by field.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{python_with_requirements, spawn_app, Row, TestApp};

#[allow(dead_code)]
#[path = "../../examples/checkout_flow.rs"]
mod checkout_flow;

/// Runs `tests/python/otel_sdk_export.py` and returns the ids it printed.
async fn python_export(protocol: &str, endpoint: String, service: &str) -> Value {
    let python = tokio::task::spawn_blocking(python_with_requirements).await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/otel_sdk_export.py");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python)
            .args([script, protocol, &endpoint, service])
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("the SDK run ends within 120 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the ids line")
}

async fn check_python_rows(app: &TestApp, ids: &Value, service: &str) {
    let rows = app.rows().await;
    let of = |kind: &str| -> Vec<&Row> { rows.iter().filter(|r| r.signal_type == kind).collect() };
    let trace_id = ids["trace_id"].as_str().unwrap();
    assert!(rows.iter().all(|r| r.service_name == service), "service.name of the resource");

    let spans = of("trace");
    assert_eq!(spans.len(), 2);
    let root = spans.iter().find(|r| r.payload["span_id"] == ids["root_span_id"]).expect("root span");
    let child = spans.iter().find(|r| r.payload["span_id"] == ids["child_span_id"]).expect("child span");
    assert_eq!((root.trace_id.as_str(), child.trace_id.as_str()), (trace_id, trace_id));
    assert_eq!(root.payload["kind"], "SERVER");
    assert_eq!(root.payload["status"], "ERROR");
    assert_eq!(root.payload["parent_span_id"], Value::Null);
    assert_eq!(root.payload["attributes"]["order.id"], 17);
    assert_eq!(child.payload["parent_span_id"], ids["root_span_id"]);
    assert_eq!(child.payload["kind"], "CLIENT");
    assert_eq!(child.payload["status"], "ERROR");
    assert_eq!(child.payload["status_message"], "card declined");
    assert!(
        child.payload["duration_ms"].as_f64().unwrap() >= 20.0,
        "slept 20 ms: {}",
        child.payload["duration_ms"]
    );
    let exception = &child.payload["events"][0];
    assert_eq!(exception["name"], "exception");
    assert_eq!(exception["attributes"]["exception.type"], "ValueError");
    assert_eq!(root.payload["resource"]["service.version"], "1.0.0");

    let logs = of("log");
    assert_eq!(logs.len(), 2);
    let error = logs.iter().find(|r| r.payload["level"] == "ERROR").expect("the ERROR log");
    assert_eq!(error.trace_id, trace_id, "logged inside the span");
    assert_eq!(error.payload["span_id"], ids["child_span_id"]);
    assert_eq!(error.payload["message"], "payment failed");
    assert!(error.payload["stack_trace"].as_str().unwrap().contains("ValueError: card declined by issuer"));
    let info = logs.iter().find(|r| r.payload["level"] == "INFO").expect("the INFO log");
    assert!(info.trace_id.starts_with(&format!("svc:{service}:")), "outside a span: {}", info.trace_id);

    let metrics = of("metric");
    let counter = metrics.iter().find(|r| r.payload["metric_name"] == "checkout.requests").expect("counter");
    assert_eq!(counter.payload["kind"], "sum");
    assert_eq!(counter.payload["value"], 3);
    assert_eq!(counter.payload["monotonic"], true);
    assert_eq!(counter.payload["temporality"], "CUMULATIVE");
    assert_eq!(counter.payload["attributes"]["outcome"], "ok");
    let histogram =
        metrics.iter().find(|r| r.payload["metric_name"] == "checkout.duration").expect("histogram");
    assert_eq!(histogram.payload["kind"], "histogram");
    assert_eq!(histogram.payload["count"], 2);
    assert_eq!(histogram.payload["value"], 2620.0);
    assert_eq!(histogram.payload["min"], 120.0);
    assert_eq!(histogram.payload["max"], 2500.0);
    assert_eq!(histogram.payload["unit"], "ms");
}

#[tokio::test]
async fn python_sdk_over_grpc_is_stored_field_by_field() {
    let app = spawn_app().await;
    let ids = python_export("grpc", app.grpc_addr.to_string(), "py-checkout-grpc").await;
    check_python_rows(&app, &ids, "py-checkout-grpc").await;
}

#[tokio::test]
async fn python_sdk_over_http_protobuf_is_stored_field_by_field() {
    let app = spawn_app().await;
    let ids = python_export("http", format!("http://{}", app.http_addr), "py-checkout-http").await;
    check_python_rows(&app, &ids, "py-checkout-http").await;
}

#[tokio::test]
async fn rust_sdk_checkout_example_is_stored_with_its_failures() {
    let app = spawn_app().await;
    let run = checkout_flow::run(&format!("http://{}", app.grpc_addr), 8).await.expect("the example runs");
    assert_eq!((run.ok_traces.len(), run.failed_traces.len()), (6, 2));
    let rows = app.rows().await;

    for trace_id in &run.failed_traces {
        let trace: Vec<&Row> = rows.iter().filter(|r| &r.trace_id == trace_id).collect();
        let services: std::collections::BTreeSet<&str> =
            trace.iter().map(|r| r.service_name.as_str()).collect();
        assert_eq!(services.into_iter().collect::<Vec<_>>(), vec!["gateway", "payment"]);
        let charge = trace.iter().find(|r| r.payload["name"] == "charge card").expect("payment span");
        assert_eq!(charge.payload["status"], "ERROR");
        assert_eq!(charge.payload["events"][0]["attributes"]["exception.type"], "CardDeclined");
        let log = trace.iter().find(|r| r.signal_type == "log").expect("payment ERROR log in the trace");
        assert_eq!(log.payload["level"], "ERROR");
        assert!(log.payload["stack_trace"].as_str().unwrap().contains("payment.rs:42"));
        let root = trace.iter().find(|r| r.payload["name"] == "POST /checkout").unwrap();
        assert_eq!(
            (root.payload["status"].as_str(), root.payload["kind"].as_str()),
            (Some("ERROR"), Some("SERVER"))
        );
    }
    for trace_id in &run.ok_traces {
        let trace: Vec<&Row> = rows.iter().filter(|r| &r.trace_id == trace_id).collect();
        assert_eq!(
            trace.iter().filter(|r| r.signal_type == "trace").count(),
            3,
            "gateway, payment, inventory spans"
        );
        assert!(trace.iter().all(|r| r.payload["status"] != "ERROR"));
        assert_eq!(trace.iter().filter(|r| r.signal_type == "log").count(), 1);
    }
    let counter: f64 = rows
        .iter()
        .filter(|r| r.payload["metric_name"] == "checkout.requests")
        .map(|r| r.payload["value"].as_f64().unwrap())
        .sum();
    assert_eq!(counter, 8.0, "one request counted per order");
}
