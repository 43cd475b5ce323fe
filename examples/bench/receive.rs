//! The receive path without storage, on one core: decode an export of 512 records, validate and
//! map it, and encode every payload into the text the database write sends. Spans from
//! protobuf (the target of issue 13), spans from OTLP/JSON, and log records from protobuf.

use std::time::{Duration, Instant};

use prost::Message;
use serde_json::{json, Value};

use crate::workload::{logs, spans, spans_json};
use prodsentinel::mapping::otlp::Mapped;
use prodsentinel::mapping::MappingOptions;

pub fn options() -> MappingOptions {
    MappingOptions {
        correlation_window: Duration::from_secs(300),
        limits: prodsentinel::mapping::limits::ValueLimits::DEFAULT,
    }
}

pub fn measure(duration: Duration) -> Value {
    let options = options();
    let spans_protobuf = spans("receive-path", 512).encode_to_vec();
    let spans_json = spans_json(&spans("receive-path", 512));
    let logs_protobuf = logs("receive-path", 512).encode_to_vec();
    let third = duration / 3;
    let traces = run(third, spans_protobuf.len(), || {
        let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
            &spans_protobuf[..],
        )
        .expect("our own encoding decodes");
        prodsentinel::mapping::otlp::spans_to_signals(&request, chrono::Utc::now(), &options)
    });
    let traces_json = run(third, spans_json.len(), || {
        let body: Value = serde_json::from_slice(&spans_json).expect("our own JSON");
        let request = prodsentinel::receivers::otlp_json::traces_request(&body).expect("valid OTLP/JSON");
        prodsentinel::mapping::otlp::spans_to_signals(&request, chrono::Utc::now(), &options)
    });
    let logs = run(third, logs_protobuf.len(), || {
        let request = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(
            &logs_protobuf[..],
        )
        .expect("our own encoding decodes");
        prodsentinel::mapping::otlp::logs_to_signals(&request, chrono::Utc::now(), &options)
    });
    // The spans figure keeps its old place in the report, so old and new runs compare directly.
    let mut report = traces.clone();
    report["otlp_json_spans"] = traces_json;
    report["protobuf_logs"] = logs;
    report
}

/// Runs `once` for `duration`; every record's payload is counted in bytes, as written.
fn run(duration: Duration, request_bytes: usize, mut once: impl FnMut() -> Mapped) -> Value {
    let started = Instant::now();
    let (mut count, mut bytes) = (0u64, 0usize);
    while started.elapsed() < duration {
        let mapped = once();
        bytes += mapped.signals.iter().map(|s| s.payload.as_str().len()).sum::<usize>();
        count += mapped.signals.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    json!({
        "spans": count,
        "spans_per_s": count as f64 / seconds,
        "micros_per_span": seconds * 1e6 / count as f64,
        "payload_bytes_per_span": bytes as f64 / count as f64,
        "request_bytes": request_bytes,
    })
}
