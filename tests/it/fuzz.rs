//! Property tests over hostile input (bounded case counts, part of the normal suite): no
//! decoder, mapping or parser panics, whatever it is given.

use std::time::Duration;

use chrono::Utc;
use proptest::prelude::*;
use prost::Message;
use serde_json::{Map, Value};

use prodsentinel::incidents::Rules;
use prodsentinel::mapping::legacy::{signals_from_json, LegacyKind};
use prodsentinel::mapping::otlp::{logs_to_signals, metrics_to_signals, spans_to_signals};
use prodsentinel::mapping::MappingOptions;
use prodsentinel::receivers::otlp_json::{logs_request, metrics_request, traces_request};

const OPTIONS: MappingOptions = MappingOptions {
    correlation_window: Duration::from_secs(300),
    limits: prodsentinel::mapping::limits::ValueLimits::DEFAULT,
};

/// Keys OTLP/JSON and legacy bodies use, so that generated objects reach deep into the decoders.
const KEYS: &[&str] = &[
    "resourceSpans",
    "resourceLogs",
    "resourceMetrics",
    "resource",
    "attributes",
    "key",
    "value",
    "scopeSpans",
    "scopeLogs",
    "scopeMetrics",
    "scope",
    "spans",
    "logRecords",
    "metrics",
    "traceId",
    "spanId",
    "parentSpanId",
    "name",
    "kind",
    "status",
    "code",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "timeUnixNano",
    "events",
    "links",
    "body",
    "severityNumber",
    "stringValue",
    "intValue",
    "doubleValue",
    "bytesValue",
    "arrayValue",
    "kvlistValue",
    "values",
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
    "dataPoints",
    "asInt",
    "asDouble",
    "count",
    "bucketCounts",
    "explicitBounds",
    "exemplars",
    "aggregationTemporality",
    "quantileValues",
    "signal_id",
    "trace_id",
    "service_name",
    "timestamp",
    "level",
    "message",
    "span_id",
    "duration_ms",
    "start_time",
    "end_time",
    "metric_name",
    "unit",
    "flags",
    "positive",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("NaN".to_owned()),
            Just("0AF7651916CD43DD8448EB211C80319C".to_owned()),
            Just("b7ad6b7169203331".to_owned()),
            Just("SPAN_KIND_SERVER".to_owned()),
            Just("1714558830000000000".to_owned()),
            Just("2024-05-01T10:20:30+00:00".to_owned()),
            Just("6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f".to_owned()),
            ".{0,24}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|entries| {
                Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn legacy_mapping_never_panics(body in json_value()) {
        for kind in [LegacyKind::Logs, LegacyKind::Traces, LegacyKind::Metrics] {
            let _ = signals_from_json(kind, &body, &OPTIONS);
        }
    }

    #[test]
    fn otlp_json_decoding_and_mapping_never_panic(body in json_value()) {
        if let Ok(request) = traces_request(&body) {
            let _ = spans_to_signals(&request, Utc::now(), &OPTIONS);
        }
        if let Ok(request) = logs_request(&body) {
            let _ = logs_to_signals(&request, Utc::now(), &OPTIONS);
        }
        if let Ok(request) = metrics_request(&body) {
            let _ = metrics_to_signals(&request, Utc::now(), &OPTIONS);
        }
    }

    #[test]
    fn otlp_protobuf_decoding_and_mapping_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        use opentelemetry_proto::tonic::collector::{logs, metrics, trace};
        if let Ok(request) = trace::v1::ExportTraceServiceRequest::decode(&bytes[..]) {
            let _ = spans_to_signals(&request, Utc::now(), &OPTIONS);
        }
        if let Ok(request) = logs::v1::ExportLogsServiceRequest::decode(&bytes[..]) {
            let _ = logs_to_signals(&request, Utc::now(), &OPTIONS);
        }
        if let Ok(request) = metrics::v1::ExportMetricsServiceRequest::decode(&bytes[..]) {
            let _ = metrics_to_signals(&request, Utc::now(), &OPTIONS);
        }
    }

    #[test]
    fn rules_file_parsing_never_panics(text in "(\\[[a-z_.]{0,12}\\]\n|[a-z_]{0,12} = (\"[a-z]{0,8}\"|[0-9]{0,5}|\\[\\])\n|.{0,20}\n){0,8}") {
        let _ = Rules::from_toml("rules.toml", &text);
    }
}
