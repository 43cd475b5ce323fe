use prost::Message;
use serde_json::{json, Value};

use super::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/otlp/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn upstream_trace_fixture_decodes_to_the_documented_bytes() {
    let request = traces_request(&fixture("upstream/trace.json")).unwrap();
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        span.trace_id,
        [0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c]
    );
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.kind, 2);
}

#[test]
fn every_upstream_metric_keeps_its_data() {
    let request = metrics_request(&fixture("upstream/metrics.json")).unwrap();
    let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 4);
    assert!(metrics.iter().all(|m| m.data.is_some()));
}

#[test]
fn aliases_names_and_nulls_decode_like_the_canonical_form() {
    let canonical = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
        "kind": 2, "status": {"code": 2}, "startTimeUnixNano": "1714558830000000000"
    }]}]}]});
    let variant = json!({"resource_spans": [{"resource": null, "scope_spans": [{"scope": null, "spans": [{
        "trace_id": "0AF7651916CD43DD8448EB211C80319C", "span_id": "B7AD6B7169203331",
        "kind": "SPAN_KIND_SERVER", "status": {"code": "STATUS_CODE_ERROR"},
        "start_time_unix_nano": 1714558830000000000u64, "parentSpanId": null, "future": {"x": 1}
    }]}]}], "alsoUnknown": [1]});
    assert_eq!(
        traces_request(&canonical).unwrap().encode_to_vec(),
        traces_request(&variant).unwrap().encode_to_vec()
    );
}

#[test]
fn a_metric_value_that_does_not_parse_is_an_error_not_an_empty_point() {
    let body = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "m", "sum": {"aggregationTemporality": 2, "dataPoints": [{"asDouble": "fast"}]}}]}]}]});
    let error = metrics_request(&body).unwrap_err();
    assert_eq!(error.path, "$.resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0].asDouble");
}

#[test]
fn empty_documents_are_empty_requests() {
    assert_eq!(logs_request(&json!({})).unwrap().resource_logs.len(), 0);
    assert!(traces_request(&json!([])).is_err(), "a top-level array is not a request");
}
