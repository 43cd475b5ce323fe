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
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::otlp_export::{ExportCore, ExportRequest};
use crate::error::Reject;
use crate::ingest::client_message;
use crate::telemetry::metrics::Transport;
use response::{success, Encoding, Failure};

pub use response::RpcStatus;

/// What the OTLP/HTTP handlers share.
#[derive(Clone)]
pub struct OtlpHttpState {
    pub core: ExportCore,
    /// `OTLP_MAX_MESSAGE_BYTES`, applied to the body before and after decompression.
    pub max_message_bytes: usize,
    /// `INGEST_TOKENS`: required when any is configured.
    pub tokens: crate::config::Tokens,
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

async fn export_traces(State(state): State<OtlpHttpState>, headers: HeaderMap, body: Body) -> Response {
    export::<ExportTraceServiceRequest>(&state, &headers, body).await
}

async fn export_logs(State(state): State<OtlpHttpState>, headers: HeaderMap, body: Body) -> Response {
    export::<ExportLogsServiceRequest>(&state, &headers, body).await
}

async fn export_metrics(State(state): State<OtlpHttpState>, headers: HeaderMap, body: Body) -> Response {
    export::<ExportMetricsServiceRequest>(&state, &headers, body).await
}

/// Decodes the body into the request gRPC would have received, calls the same export core, and
/// answers in the request's encoding.
async fn export<R: ExportRequest>(state: &OtlpHttpState, headers: &HeaderMap, body: Body) -> Response {
    let Some(encoding) = Encoding::from_content_type(headers.get(header::CONTENT_TYPE)) else {
        let message = "unsupported media type, supported: [application/json, application/x-protobuf]";
        return Failure::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            message,
        )
        .into_response(Encoding::Protobuf);
    };
    let request = match read_request::<R>(state, encoding, headers, body).await {
        Ok(request) => request,
        Err(failure) => return failure.into_response(encoding),
    };
    match state.core.export(Transport::otlp_http, &request).await {
        Ok(rejected) => success::<R>(encoding, rejected),
        Err(error) => {
            Failure::from_reject(Reject::from(&error), client_message(&error)).into_response(encoding)
        }
    }
}

/// Protobuf via prost; JSON via our own walker (see `otlp_json`). An empty body is an empty,
/// valid protobuf request; for JSON it is not JSON.
async fn read_request<R: ExportRequest>(
    state: &OtlpHttpState,
    encoding: Encoding,
    headers: &HeaderMap,
    body: Body,
) -> Result<R, Failure> {
    let bytes = body::read(headers, body, state.max_message_bytes).await?;
    match encoding {
        Encoding::Protobuf => {
            R::decode(bytes.as_ref()).map_err(|why| Failure::malformed(format!("invalid protobuf: {why}")))
        }
        Encoding::Json => {
            let value: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|why| Failure::malformed(format!("invalid JSON: {why}")))?;
            R::from_json(&value).map_err(|why| Failure::malformed(format!("invalid OTLP/JSON at {why}")))
        }
    }
}

/// 401 with a `google.rpc.Status` (UNAUTHENTICATED) unless the request carries a token.
async fn require_token(
    State(tokens): State<crate::config::Tokens>,
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
