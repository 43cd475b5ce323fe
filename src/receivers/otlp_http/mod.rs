//! OTLP/HTTP on `OTLP_HTTP_ADDR`: `POST /v1/traces`, `/v1/logs`, `/v1/metrics`, protobuf or
//! JSON, compressed or not. Answers follow the OTLP spec: 200 with an export response (partial
//! success when records were rejected), 400/413/415/404/405 and 503 with a `google.rpc.Status`
//! body in the request's encoding. 200 is sent only after the signals are committed.

mod body;
mod response;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::otlp_json;
use crate::error::{client_message, Reject};
use crate::ingest::{Accepted, Ingest};
use crate::mapping::otlp::{logs_to_signals, metrics_to_signals, spans_to_signals, Mapped};
use crate::mapping::MappingOptions;
use crate::model::SignalType;
use crate::telemetry::metrics::Transport;
use response::{capped_message, success, Encoding, Failure};

pub use response::RpcStatus;

/// What the OTLP/HTTP handlers share.
#[derive(Clone)]
pub struct OtlpHttpState {
    pub ingest: Ingest,
    pub options: MappingOptions,
    /// `OTLP_MAX_MESSAGE_BYTES`, applied to the body before and after decompression.
    pub max_message_bytes: usize,
    /// `INGEST_TOKENS`: required when any is configured.
    pub tokens: crate::auth::Tokens,
}

pub fn router(state: OtlpHttpState) -> Router {
    let auth = axum::middleware::from_fn_with_state(state.tokens.clone(), require_token);
    Router::new()
        .route("/v1/traces", post(export_traces))
        .route("/v1/logs", post(export_logs))
        .route("/v1/metrics", post(export_metrics))
        .route_layer(auth)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Traces,
    Logs,
    Metrics,
}

async fn export_traces(State(state): State<OtlpHttpState>, headers: HeaderMap, body: Body) -> Response {
    export(&state, Kind::Traces, &headers, body).await
}

async fn export_logs(State(state): State<OtlpHttpState>, headers: HeaderMap, body: Body) -> Response {
    export(&state, Kind::Logs, &headers, body).await
}

async fn export_metrics(State(state): State<OtlpHttpState>, headers: HeaderMap, body: Body) -> Response {
    export(&state, Kind::Metrics, &headers, body).await
}

async fn export(state: &OtlpHttpState, kind: Kind, headers: &HeaderMap, body: Body) -> Response {
    let Some(encoding) = Encoding::from_content_type(headers.get(header::CONTENT_TYPE)) else {
        let message = "unsupported media type, supported: [application/json, application/x-protobuf]";
        return Failure::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            message,
        )
        .into_response(Encoding::Protobuf);
    };
    match decode_and_store(state, kind, encoding, headers, body).await {
        Ok(accepted) => success_response(kind, encoding, accepted),
        Err(failure) => failure.into_response(encoding),
    }
}

async fn decode_and_store(
    state: &OtlpHttpState,
    kind: Kind,
    encoding: Encoding,
    headers: &HeaderMap,
    body: Body,
) -> Result<Accepted, Failure> {
    let bytes = body::read(headers, body, state.max_message_bytes).await?;
    let received_at = Utc::now();
    let mapped: Mapped = match kind {
        Kind::Traces => spans_to_signals(
            &decode::<ExportTraceServiceRequest>(encoding, &bytes, otlp_json::traces_request)?,
            received_at,
            &state.options,
        ),
        Kind::Logs => logs_to_signals(
            &decode::<ExportLogsServiceRequest>(encoding, &bytes, otlp_json::logs_request)?,
            received_at,
            &state.options,
        ),
        Kind::Metrics => metrics_to_signals(
            &decode::<ExportMetricsServiceRequest>(encoding, &bytes, otlp_json::metrics_request)?,
            received_at,
            &state.options,
        ),
    };
    let signal_type = match kind {
        Kind::Traces => SignalType::Trace,
        Kind::Logs => SignalType::Log,
        Kind::Metrics => SignalType::Metric,
    };
    state.ingest.submit_mapped(Transport::otlp_http, signal_type, mapped).await.map_err(|error| {
        tracing::warn!(error = %crate::api::error::error_chain(&error), "otlp/http export failed");
        Failure::from_reject(Reject::from(&error), client_message(&error))
    })
}

/// Protobuf via prost; JSON via our own walker (see `otlp_json`). An empty body is an empty,
/// valid protobuf request; for JSON it is not JSON.
fn decode<M: Message + Default>(
    encoding: Encoding,
    bytes: &[u8],
    from_json: fn(&serde_json::Value) -> Result<M, otlp_json::JsonError>,
) -> Result<M, Failure> {
    match encoding {
        Encoding::Protobuf => {
            M::decode(bytes).map_err(|why| Failure::malformed(format!("invalid protobuf: {why}")))
        }
        Encoding::Json => {
            let value: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|why| Failure::malformed(format!("invalid JSON: {why}")))?;
            from_json(&value).map_err(|why| Failure::malformed(format!("invalid OTLP/JSON at {why}")))
        }
    }
}

fn success_response(kind: Kind, encoding: Encoding, accepted: Accepted) -> Response {
    let message = accepted.rejection_message.map(capped_message);
    let rejected = accepted.rejected as i64;
    let (protobuf, json_field) = match kind {
        Kind::Traces => (
            ExportTraceServiceResponse {
                partial_success: message.clone().map(|error_message| ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message,
                }),
            }
            .encode_to_vec(),
            "rejectedSpans",
        ),
        Kind::Logs => (
            ExportLogsServiceResponse {
                partial_success: message.clone().map(|error_message| ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message,
                }),
            }
            .encode_to_vec(),
            "rejectedLogRecords",
        ),
        Kind::Metrics => (
            ExportMetricsServiceResponse {
                partial_success: message.clone().map(|error_message| ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message,
                }),
            }
            .encode_to_vec(),
            "rejectedDataPoints",
        ),
    };
    success(encoding, protobuf, json_field, accepted.rejected, message)
}

/// 401 with a `google.rpc.Status` (UNAUTHENTICATED) unless the request carries a token.
async fn require_token(
    State(tokens): State<crate::auth::Tokens>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if tokens.allows_headers(request.headers()) {
        return next.run(request).await;
    }
    let mut response = Failure::with_status(
        StatusCode::UNAUTHORIZED,
        tonic::Code::Unauthenticated,
        "missing or invalid bearer token",
    )
    .into_response(encoding_of(request.headers()));
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn encoding_of(headers: &HeaderMap) -> Encoding {
    Encoding::from_content_type(headers.get(header::CONTENT_TYPE)).unwrap_or(Encoding::Protobuf)
}

async fn not_found(headers: HeaderMap) -> Response {
    Failure::with_status(
        StatusCode::NOT_FOUND,
        tonic::Code::Unimplemented,
        "not found: OTLP paths are /v1/traces, /v1/logs, /v1/metrics",
    )
    .into_response(encoding_of(&headers))
}

async fn method_not_allowed(headers: HeaderMap) -> Response {
    let mut response = Failure::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        tonic::Code::InvalidArgument,
        "method not allowed, supported: [POST]",
    )
    .into_response(encoding_of(&headers));
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    response.into_response()
}
