//! OpenAPI schemas of the bodies both HTTP surfaces use: error bodies, the legacy endpoints'
//! answers and what legacy clients send (read by `mapping::legacy` from JSON, field by field).
//! For the documentation only.

#![allow(dead_code)] // documentation-only fields are read by the derive macros, not by us

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;

/// `{"detail": "..."}`: 401, 404, 409, 413, 415, 500, 503.
#[derive(Serialize, ToSchema)]
pub struct Detail {
    pub detail: String,
}

/// 422: every field that failed validation, in FastAPI's shape.
#[derive(Serialize, ToSchema)]
pub struct ValidationErrors {
    pub detail: Vec<FieldErrorBody>,
}

#[derive(Serialize, ToSchema)]
pub struct FieldErrorBody {
    /// Where: `["body", "timestamp"]`, `["query", "limit"]`, `["body", 3, "level"]` for a bulk.
    #[schema(value_type = Vec<Object>)]
    pub loc: Vec<serde_json::Value>,
    pub msg: String,
    /// `missing`, `enum`, `int_parsing`, `datetime_parsing`, `json_invalid`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending value, when there is one.
    #[schema(value_type = Option<Object>)]
    pub input: Option<serde_json::Value>,
}

/// `202 {"status": "accepted"}`, answered once the signals are committed.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    #[schema(example = "accepted")]
    pub status: String,
}

/// What every legacy ingest endpoint answers.
#[derive(IntoResponses)]
pub enum LegacyAnswers {
    #[response(status = 202, description = "Stored (committed)")]
    Accepted(Accepted),
    #[response(status = 401, description = "A bearer token is required (INGEST_TOKENS)")]
    Unauthorized(Detail),
    #[response(status = 413, description = "Body over MAX_BODY_BYTES")]
    TooLarge(Detail),
    #[response(status = 415, description = "Not JSON")]
    UnsupportedMediaType(Detail),
    #[response(status = 422, description = "Invalid fields, each named")]
    Invalid(ValidationErrors),
    #[response(
        status = 503,
        description = "Not stored (queue full, database slow or down): retry after Retry-After"
    )]
    RetryLater(Detail),
}

/// A legacy log (`POST /ingest/logs`); a JSON array of them is stored all or nothing.
#[derive(Serialize, ToSchema)]
pub struct LegacyLog {
    pub signal_id: Uuid,
    pub trace_id: Option<String>,
    pub service_name: String,
    /// RFC 3339 / ISO 8601 (naive is UTC), a date, or Unix seconds (milliseconds above 2e10).
    pub timestamp: DateTime<Utc>,
    /// DEBUG, INFO, WARNING (WARN), ERROR, CRITICAL (FATAL), any case.
    pub level: String,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Value>,
}

/// A legacy span, in either shape clients send: the original code's (`timestamp`,
/// `duration_ms`, `status`) or its README's (`name`, `start_time`, `end_time`).
#[derive(Serialize, ToSchema)]
pub struct LegacySpan {
    pub signal_id: Uuid,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub service_name: String,
    pub timestamp: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    pub status: Option<String>,
    pub name: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Value>,
}

/// A legacy metric, in either shape: the code's (`signal_id`, `trace_id`, `metric_name`,
/// `unit`) or the README's (`name`, `value`, `service_name`, `timestamp` only; its id is
/// derived from the content and its trace key is the service's correlation key).
#[derive(Serialize, ToSchema)]
pub struct LegacyMetric {
    pub signal_id: Option<Uuid>,
    pub trace_id: Option<String>,
    pub service_name: String,
    pub timestamp: DateTime<Utc>,
    pub metric_name: Option<String>,
    pub name: Option<String>,
    pub value: f64,
    pub unit: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Value>,
}

/// One signal or a JSON array of them.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}
