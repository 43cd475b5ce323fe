//! Jaeger's v3 query calls (`/jaeger/api/v3/…`): services and operations as newer Jaeger UIs
//! read them, traces as OTLP JSON for Grafana's v3 mode.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as QueryString, State};
use axum::Json;
use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};

use super::described::{V3OperationsQuery, V3SearchQuery};
use super::otlp_json::resource_spans;
use super::v1::{limit, millis, operations_of, query};
use super::{find_trace, load_traces, JaegerError, V3Error};
use crate::api::openapi::Detail;
use crate::api::ApiState;
use crate::store::TraceQuery;

/// A search without `query.start_time_min` reaches back this far.
const DEFAULT_LOOKBACK: TimeDelta = TimeDelta::hours(1);
/// Traces a search returns unless `query.search_depth` says otherwise.
const DEFAULT_DEPTH: i64 = 20;

/// The services that sent spans: `{"services": [...]}`.
#[utoipa::path(get, path = "/jaeger/api/v3/services", tag = "jaeger", operation_id = "jaeger_v3_services",
    responses((status = 200, description = "{\"services\": [names]}", body = Object), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn services(State(state): State<ApiState>) -> Result<Json<Value>, V3Error> {
    Ok(Json(json!({"services": state.store.span_services().await?})))
}

/// The operations of `service`, of one `span_kind` when given: `{"operations": [{"name", "spanKind"}]}`.
#[utoipa::path(get, path = "/jaeger/api/v3/operations", tag = "jaeger", operation_id = "jaeger_v3_operations",
    params(V3OperationsQuery),
    responses((status = 200, description = "{\"operations\": [{\"name\", \"spanKind\"}]}", body = Object), (status = 400, description = "A parameter is missing or unreadable; the message names it", body = Object), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn operations(
    State(state): State<ApiState>,
    query_string: Result<QueryString<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, V3Error> {
    let operations = operations_of(&state, &query(query_string)?, &["span_kind", "spanKind"]).await?;
    Ok(Json(json!({"operations": operations})))
}

/// One trace as OTLP JSON, `{"result": {"resourceSpans": [...]}}`; 404 when unknown.
#[utoipa::path(get, path = "/jaeger/api/v3/traces/{trace_id}", tag = "jaeger", operation_id = "jaeger_v3_trace", params(("trace_id" = String, Path)),
    responses((status = 200, description = "The trace as OTLP JSON", body = Object), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 404, description = "No such trace", body = Object), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn trace(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
) -> Result<Json<Value>, V3Error> {
    match find_trace(&state, &trace_id).await? {
        Some(view) if !view.spans.is_empty() => {
            Ok(Json(json!({"result": {"resourceSpans": resource_spans(std::slice::from_ref(&view))}})))
        }
        _ => Err(JaegerError::NotFound("trace not found".to_owned()).into()),
    }
}

/// Traces found by `query.service_name`, `query.operation_name`, `query.attributes` (a JSON
/// object, or key=value pairs), `query.duration_min`/`_max` (300ms, 1.2s, …),
/// `query.start_time_min`/`_max` (RFC 3339; the last hour by default) and
/// `query.search_depth` (default 20, at most 1500), as one OTLP JSON answer.
#[utoipa::path(get, path = "/jaeger/api/v3/traces", tag = "jaeger", operation_id = "jaeger_v3_search",
    params(V3SearchQuery),
    responses((status = 200, description = "The traces as OTLP JSON", body = Object), (status = 400, description = "A parameter is missing or unreadable; the message names it", body = Object), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn search(
    State(state): State<ApiState>,
    query_string: Result<QueryString<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, V3Error> {
    let query = query(query_string)?;
    let end = query.rfc3339("query.start_time_max")?.unwrap_or_else(Utc::now);
    let start = query.rfc3339("query.start_time_min")?.unwrap_or(end - DEFAULT_LOOKBACK);
    let (min, max) = (query.duration("query.duration_min")?, query.duration("query.duration_max")?);
    let search = TraceQuery {
        service: query.get("query.service_name").map(str::to_owned),
        operation: query.get("query.operation_name").map(str::to_owned),
        tags: query.tags("query.attributes")?,
        min_duration_ms: min.map(millis),
        max_duration_ms: max.map(millis),
        start,
        end,
        limit: limit(&query, "query.search_depth", DEFAULT_DEPTH)?,
    };
    let ids = state.store.search_traces(&search).await?;
    let views = load_traces(&state, &ids).await?;
    Ok(Json(json!({"result": {"resourceSpans": resource_spans(&views)}})))
}
