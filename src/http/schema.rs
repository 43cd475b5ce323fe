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
    #[schema(schema_with = loc_schema)]
    pub loc: Vec<serde_json::Value>,
    pub msg: String,
    /// `missing`, `enum`, `int_parsing`, `datetime_parsing`, `json_invalid`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending value as it was sent (any JSON value: a query parameter's text, a body's
    /// field), absent when there is none (a missing field).
    #[schema(schema_with = any_value_schema)]
    pub input: Option<serde_json::Value>,
}

/// `loc`: names (strings) and positions in a list (integers).
fn loc_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    ArrayBuilder::new()
        .items(
            OneOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::String))
                .item(ObjectBuilder::new().schema_type(Type::Integer)),
        )
        .build()
}

/// A time in a query parameter, as the API reads it: RFC 3339, a date, or Unix seconds;
/// years 1 to 9999 (a time without an offset is also read, as UTC).
pub fn timestamp_text() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
    let text = || ObjectBuilder::new().schema_type(Type::String);
    let any = AnyOfBuilder::new()
        .item(text().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))))
        .item(text().format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))))
        .item(text().pattern(Some(crate::model::time::NUMERIC_TIMESTAMP_PATTERN)))
        .build();
    Schema::AnyOf(any).into()
}

/// Any JSON value.
pub fn any_value_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .build()
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

/// The legacy bodies as the receiver reads them (`mapping::legacy`), in the JSON Schema the
/// served description carries: utoipa cannot state "one of two shapes chosen by a field", "not
/// both of two fields", or a time given as text or a number, so these replace the structs'
/// derived schemas (`api::openapi::document`). The structs above keep the names.
pub fn legacy_body_schemas() -> [(&'static str, serde_json::Value); 3] {
    use serde_json::json;
    let identifier = json!({"type": "string", "minLength": 1, "maxLength": crate::mapping::legacy::MAX_IDENTIFIER_CHARS, "pattern": "^[^\\u0000]*$"});
    let optional_identifier = json!({"type": ["string", "null"], "maxLength": crate::mapping::legacy::MAX_IDENTIFIER_CHARS, "pattern": "^[^\\u0000]*$"});
    // RFC 3339, a date, or Unix seconds (milliseconds beyond 2e10), years 1 to 9999.
    let timestamp = json!({"anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
        {"type": "string", "pattern": crate::model::time::NUMERIC_TIMESTAMP_PATTERN},
        {"type": "number", "minimum": -62_135_596_800_000_i64, "maximum": 253_402_300_799_999_i64},
    ]});
    // A JSON number, or a number as text.
    let number = |bounds: serde_json::Value, pattern: &str| {
        let mut as_number = json!({"type": "number"});
        if let (Some(number), Some(bounds)) = (as_number.as_object_mut(), bounds.as_object()) {
            number.extend(bounds.clone());
        }
        json!({"anyOf": [as_number, {"type": "string", "pattern": pattern}]})
    };
    let text = json!({"type": "string"});
    let optional_text = json!({"type": ["string", "null"]});
    let attributes = json!({"type": ["object", "null"], "description": "Any JSON object"});
    let uuid = json!({"type": "string", "format": "uuid"});
    let log = json!({
        "type": "object",
        "description": "A legacy log. Any level is kept (WARN and FATAL become WARNING and CRITICAL).",
        "additionalProperties": false,
        "required": ["signal_id", "service_name", "timestamp", "level", "message"],
        "properties": {
            "signal_id": uuid, "trace_id": optional_identifier, "service_name": identifier,
            "timestamp": timestamp, "level": text, "message": text, "attributes": attributes,
            "stack_trace": optional_text,
        },
    });
    let span_common = json!({
        "signal_id": uuid, "trace_id": optional_identifier, "span_id": identifier,
        "parent_span_id": optional_identifier, "service_name": identifier, "name": optional_text,
        "status_message": optional_text, "attributes": attributes,
    });
    let with = |extra: serde_json::Value| {
        let mut properties = span_common.clone();
        if let (Some(properties), Some(extra)) = (properties.as_object_mut(), extra.as_object()) {
            properties.extend(extra.clone());
        }
        properties
    };
    let span = json!({
        "description": "A legacy span: the code shape (timestamp, duration_ms, status) or, when start_time is given, the README shape (start_time, end_time; an end before the start is a span of no duration).",
        "oneOf": [
            {"title": "code shape", "type": "object", "additionalProperties": false,
             "required": ["signal_id", "span_id", "service_name", "timestamp", "duration_ms", "status"],
             "properties": with(json!({"timestamp": timestamp, "duration_ms": number(json!({"minimum": 0, "maximum": crate::mapping::legacy::MAX_DURATION_MS}), "^[+]?[0-9]{1,12}(\\.[0-9]{0,6})?$"),
                                        "status": text, "start_time": {"type": "null"}, "end_time": {}}))},
            {"title": "README shape", "type": "object", "additionalProperties": false,
             "required": ["signal_id", "span_id", "service_name", "start_time", "end_time"],
             "properties": with(json!({"start_time": timestamp, "end_time": timestamp, "status": optional_text,
                                        "timestamp": {}, "duration_ms": {}}))},
        ],
    });
    let metric_properties = json!({
        "signal_id": {"type": ["string", "null"], "format": "uuid"}, "trace_id": optional_identifier,
        "service_name": identifier, "timestamp": timestamp, "metric_name": optional_text, "name": optional_text,
        "value": number(json!({}), "^[-+]?([0-9]{1,30}(\\.[0-9]{0,30})?|\\.[0-9]{1,30})([eE][-+]?[0-9]{1,2})?$"), "unit": optional_text, "attributes": attributes,
    });
    let metric = json!({
        "type": "object",
        "description": "A legacy metric: the code shape (metric_name) or the README shape (name), not both.",
        "additionalProperties": false,
        "required": ["service_name", "timestamp", "value"],
        "properties": metric_properties,
        "oneOf": [
            {"required": ["metric_name"], "properties": {"metric_name": {"type": "string"}, "name": {"type": "null"}}},
            {"required": ["name"], "properties": {"name": {"type": "string"}, "metric_name": {"type": "null"}}},
        ],
    });
    [("LegacyLog", log), ("LegacySpan", span), ("LegacyMetric", metric)]
}
