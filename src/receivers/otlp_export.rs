//! The OTLP export core both OTLP transports call: map a decoded `Export*ServiceRequest`, store
//! its signals, and build the `Export*ServiceResponse` (partial success when records were
//! rejected). gRPC hands it tonic's decoded request; HTTP decodes its body (protobuf or JSON)
//! into the same type first and encodes the answer in the request's encoding.

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use super::otlp_json::{self, JsonResult};
use crate::error::error_chain;
use crate::ingest::{Ingest, IngestError};
use crate::mapping::otlp::{logs_to_signals, metrics_to_signals, spans_to_signals, Mapped};
use crate::mapping::MappingOptions;
use crate::model::SignalType;
use crate::telemetry::metrics::Transport;

/// What was rejected from an export that was otherwise stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub count: u64,
    /// Capped well under the 4 MiB message limits of both transports.
    pub message: String,
}

/// One OTLP signal kind: its request and response types and how its records map.
pub trait ExportRequest: prost::Message + Default + Send + Sync + 'static {
    type Response: prost::Message + Default;
    const SIGNAL: SignalType;
    /// The rejected-count field of the response in OTLP/JSON (`rejectedSpans`, …).
    const REJECTED_JSON_FIELD: &'static str;

    fn map(&self, received_at: DateTime<Utc>, options: &MappingOptions) -> Mapped;
    fn from_json(body: &serde_json::Value) -> JsonResult<Self>;
    fn response(rejected: Option<Rejected>) -> Self::Response;
}

/// One `ExportRequest` impl per signal kind: they differ only in names.
macro_rules! export_request {
    ($request:ty, $response:ident, $partial:ident { $rejected:ident }, $signal:expr, $json_field:literal,
     $map:path, $from_json:path) => {
        impl ExportRequest for $request {
            type Response = $response;
            const SIGNAL: SignalType = $signal;
            const REJECTED_JSON_FIELD: &'static str = $json_field;

            fn map(&self, received_at: DateTime<Utc>, options: &MappingOptions) -> Mapped {
                $map(self, received_at, options)
            }

            fn from_json(body: &serde_json::Value) -> JsonResult<Self> {
                $from_json(body)
            }

            fn response(rejected: Option<Rejected>) -> $response {
                $response {
                    partial_success: rejected
                        .map(|r| $partial { $rejected: r.count as i64, error_message: r.message }),
                }
            }
        }
    };
}

export_request!(
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    ExportTracePartialSuccess { rejected_spans },
    SignalType::Trace,
    "rejectedSpans",
    spans_to_signals,
    otlp_json::traces_request
);
export_request!(
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    ExportLogsPartialSuccess { rejected_log_records },
    SignalType::Log,
    "rejectedLogRecords",
    logs_to_signals,
    otlp_json::logs_request
);
export_request!(
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
    ExportMetricsPartialSuccess { rejected_data_points },
    SignalType::Metric,
    "rejectedDataPoints",
    metrics_to_signals,
    otlp_json::metrics_request
);

/// Maps and stores exports; shared by the gRPC services and the HTTP handlers.
#[derive(Clone)]
pub struct ExportCore {
    pub ingest: Ingest,
    pub options: MappingOptions,
}

impl ExportCore {
    /// Stores `request`'s signals; `Ok` only once they are committed. What could not be mapped
    /// comes back in the answer's partial success.
    pub async fn export<R: ExportRequest>(
        &self,
        transport: Transport,
        request: &R,
    ) -> Result<Option<Rejected>, IngestError> {
        let mapped = request.map(Utc::now(), &self.options);
        let accepted =
            self.ingest.submit_mapped(transport, R::SIGNAL, mapped).await.inspect_err(|error| {
                // Retryable refusals are logged once per episode by ingest.
                if !error.is_transient() {
                    tracing::error!(transport = ?transport, error = %error_chain(error), "otlp export failed");
                }
            })?;
        Ok(accepted
            .rejection_message
            .map(|message| Rejected { count: accepted.rejected, message: capped_message(message) }))
    }
}

/// Partial-success messages are capped well under the 4 MiB message limits.
fn capped_message(message: String) -> String {
    const MAX: usize = 4096;
    if message.len() <= MAX {
        return message;
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_capped_on_a_char_boundary() {
        let message = "é".repeat(5000);
        let capped = capped_message(message);
        assert!(capped.len() <= 4096 + "…".len());
    }
}
