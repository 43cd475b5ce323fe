//! Errors of the HTTP endpoints on the API port (query API and legacy ingest), rendered in
//! FastAPI's shapes (`{"detail": "..."}` or `{"detail": [field errors]}`) so existing clients
//! parse them.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::error;

use crate::error::{error_chain, Reject, RETRY_AFTER_SECONDS};
use crate::ingest::{client_message, IngestError, DISK_FULL_MESSAGE};
use crate::store::StoreError;
use crate::telemetry::episodes::Cause;
use crate::validation::FieldError;

#[derive(Debug)]
pub enum ApiError {
    /// 422: fields that failed validation.
    Validation(Vec<FieldError>),
    /// 404 with the given detail.
    NotFound(&'static str),
    /// 409: the request conflicts with the resource's state (an invalid status transition).
    Conflict(String),
    /// 401: a bearer token is required and none of the configured ones was presented.
    Unauthorized,
    /// 413: the body exceeds `MAX_BODY_BYTES`.
    PayloadTooLarge { limit: usize },
    /// 415: a content type we do not read.
    UnsupportedMediaType(String),
    /// 400: the request could not be read at all.
    BadRequest(String),
    /// A failure classified for the client (503 or 500), with the detail it is told.
    Rejected(Reject, &'static str),
    /// 503: the database failed for a cause that lasts (counted as an episode of the query API
    /// by the request middleware, which finds it on the response).
    StoreUnavailable(StoreFailure),
}

/// Why a query could not be answered, carried on its 503 response for the middleware.
#[derive(Debug, Clone)]
pub struct StoreFailure {
    pub cause: Cause,
    /// The error's causes, for the log line that starts the episode.
    pub detail: String,
}

impl ApiError {
    pub fn field(error: FieldError) -> ApiError {
        ApiError::Validation(vec![error])
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_transient() {
            ApiError::StoreUnavailable(StoreFailure {
                cause: Cause::from(&error),
                detail: error_chain(&error),
            })
        } else {
            // A statement that fails is our bug: every occurrence is worth a line.
            error!(error = %error_chain(&error), "database query failed");
            ApiError::Rejected(Reject::Internal, "internal error")
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        let reject = Reject::from(&error);
        // Retryable refusals are logged once per episode by ingest.
        if reject != Reject::RetryLater {
            error!(error = %error_chain(&error), "ingest failed");
        }
        ApiError::Rejected(reject, client_message(&error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(errors) => {
                (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "detail": errors }))).into_response()
            }
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({ "detail": "Not authenticated" })),
            )
                .into_response(),
            ApiError::Conflict(detail) => {
                (StatusCode::CONFLICT, Json(json!({ "detail": detail }))).into_response()
            }
            ApiError::NotFound(detail) => {
                (StatusCode::NOT_FOUND, Json(json!({ "detail": detail }))).into_response()
            }
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(json!({ "detail": format!("request body exceeds {limit} bytes (MAX_BODY_BYTES)") })),
            )
                .into_response(),
            ApiError::UnsupportedMediaType(content_type) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Json(json!({
                    "detail": format!("unsupported content type {content_type:?}: send application/json")
                })),
            )
                .into_response(),
            ApiError::BadRequest(detail) => {
                (StatusCode::BAD_REQUEST, Json(json!({ "detail": detail }))).into_response()
            }
            ApiError::StoreUnavailable(failure) => {
                let detail = match failure.cause {
                    Cause::database_disk_full => DISK_FULL_MESSAGE,
                    _ => "database temporarily unavailable, retry later",
                };
                let mut response = ApiError::Rejected(Reject::RetryLater, detail).into_response();
                response.extensions_mut().insert(failure);
                response
            }
            ApiError::Rejected(reject, detail) => {
                let status = reject.http_status();
                match reject {
                    Reject::RetryLater => (
                        status,
                        [(header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string())],
                        Json(json!({ "detail": detail })),
                    )
                        .into_response(),
                    Reject::Malformed => {
                        (status, Json(json!({ "detail": "malformed request" }))).into_response()
                    }
                    Reject::TooLarge => {
                        (status, Json(json!({ "detail": "request too large" }))).into_response()
                    }
                    Reject::Internal => (status, Json(json!({ "detail": detail }))).into_response(),
                }
            }
        }
    }
}

/// Middleware: refuses the request with 401 unless it carries one of `tokens`.
pub async fn require_token(
    axum::extract::State(tokens): axum::extract::State<crate::config::Tokens>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if tokens.allows_headers(request.headers()) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}
