//! `POST /ingest/logs|traces|metrics`: the original backend's JSON endpoints
//! (docs/contracts.md §4).
//!
//! `202 {"status": "accepted"}` is answered only after the signals are committed. The body is
//! read as JSON under a JSON, missing or form content type: the original README's own example
//! (`curl -d '{…}'`) sends `application/x-www-form-urlencoded` with a JSON body.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::schema::{LegacyAnswers, LegacyLog, LegacyMetric, LegacySpan, OneOrMany};
use crate::http::ApiError;
use crate::ingest::Ingest;
use crate::mapping::legacy::{signals_from_json, LegacyKind};
use crate::mapping::MappingOptions;
use crate::telemetry::metrics::Transport;
use crate::validation::{FieldError, LocPart};

/// What the legacy handlers share.
#[derive(Clone)]
pub struct LegacyState {
    pub ingest: Ingest,
    pub options: MappingOptions,
    /// `MAX_BODY_BYTES`, for the 413 message (the limit itself is a router layer).
    pub max_body_bytes: usize,
    /// `INGEST_TOKENS`: required when any is configured.
    pub tokens: crate::config::Tokens,
}

pub fn router(state: LegacyState) -> OpenApiRouter {
    let auth = axum::middleware::from_fn_with_state(state.tokens.clone(), crate::http::require_token);
    OpenApiRouter::new()
        .routes(routes!(ingest_logs))
        .routes(routes!(ingest_traces))
        .routes(routes!(ingest_metrics))
        .route_layer(auth)
        .with_state(state)
}

#[utoipa::path(post, path = "/ingest/logs", tag = "ingest", request_body = OneOrMany<LegacyLog>,
    responses(LegacyAnswers))]
async fn ingest_logs(
    State(state): State<LegacyState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    accept(&state, LegacyKind::Logs, &headers, body).await
}

#[utoipa::path(post, path = "/ingest/traces", tag = "ingest", request_body = OneOrMany<LegacySpan>,
    responses(LegacyAnswers))]
async fn ingest_traces(
    State(state): State<LegacyState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    accept(&state, LegacyKind::Traces, &headers, body).await
}

#[utoipa::path(post, path = "/ingest/metrics", tag = "ingest", request_body = OneOrMany<LegacyMetric>,
    responses(LegacyAnswers))]
async fn ingest_metrics(
    State(state): State<LegacyState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    accept(&state, LegacyKind::Metrics, &headers, body).await
}

async fn accept(
    state: &LegacyState,
    kind: LegacyKind,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_content_type(headers)?;
    let body = body.map_err(|why| {
        if why.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: state.max_body_bytes }
        } else {
            ApiError::BadRequest(format!("cannot read request body: {}", why.body_text()))
        }
    })?;
    let value: Value = serde_json::from_slice(&body).map_err(|why| {
        ApiError::field(FieldError::new(
            "json_invalid",
            vec![LocPart::from("body")],
            format!("JSON decode error: {why}"),
        ))
    })?;
    let signals = signals_from_json(kind, &value, &state.options).map_err(ApiError::Validation)?;
    state.ingest.submit(Transport::legacy, kind.signal_type(), signals).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "accepted" }))))
}

/// JSON (`application/json`, any `+json`), form (read as JSON, see module docs) or none.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    let essence = text.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let accepted = essence.is_empty()
        || essence == "application/json"
        || essence == "application/x-www-form-urlencoded"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if accepted {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_type(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        headers
    }

    #[test]
    fn json_form_and_missing_content_types_are_read() {
        assert!(check_content_type(&HeaderMap::new()).is_ok());
        assert!(check_content_type(&with_type("application/json")).is_ok());
        assert!(check_content_type(&with_type("Application/JSON; charset=utf-8")).is_ok());
        assert!(check_content_type(&with_type("application/x-www-form-urlencoded")).is_ok());
        assert!(check_content_type(&with_type("application/vnd.api+json")).is_ok());
    }

    #[test]
    fn other_content_types_are_refused() {
        for refused in ["text/plain", "application/x-protobuf", "multipart/form-data; boundary=x"] {
            assert!(
                matches!(check_content_type(&with_type(refused)), Err(ApiError::UnsupportedMediaType(_))),
                "{refused}"
            );
        }
    }
}
