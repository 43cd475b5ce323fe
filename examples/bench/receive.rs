//! The receive path without storage: decode a protobuf export of 512 spans, map it to signals
//! and serialise every payload as the database write would, on one core.

use std::time::{Duration, Instant};

use prost::Message;
use serde_json::{json, Value};

use crate::workload::spans;

pub fn measure(duration: Duration) -> Value {
    let body = spans("receive-path", 512).encode_to_vec();
    let started = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0usize;
    while started.elapsed() < duration {
        let request =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(&body[..])
                .expect("our own encoding decodes");
        let mapped = prodsentinel::mapping::otlp::spans_to_signals(&request, chrono::Utc::now());
        for signal in &mapped.signals {
            bytes += serde_json::to_vec(&signal.payload).map(|v| v.len()).unwrap_or(0);
        }
        count += mapped.signals.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    json!({
        "spans": count,
        "spans_per_s": count as f64 / seconds,
        "micros_per_span": seconds * 1e6 / count as f64,
        "payload_bytes_per_span": bytes as f64 / count as f64,
        "request_bytes": body.len(),
    })
}
