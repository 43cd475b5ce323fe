//! Jaeger's v3 query calls (`/jaeger/api/v3/…`): services and operations as newer Jaeger UIs
//! read them, traces as OTLP JSON for Grafana's v3 mode.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as QueryString, State};
use axum::Json;
use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};

use super::described::{V3OperationsQuery, V3SearchQuery};
use super::otlp_json::resource_spans;
use super::span_view::{self, TraceView};
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

/// A v3 search's filters.
fn v3_search(
    query_string: Result<QueryString<Vec<(String, String)>>, QueryRejection>,
) -> Result<TraceQuery, JaegerError> {
    let query = query(query_string)?.v3();
    let end = query.rfc3339("query.start_time_max")?.unwrap_or_else(Utc::now);
    let start = query.rfc3339("query.start_time_min")?.unwrap_or(end - DEFAULT_LOOKBACK);
    let (min, max) = (query.duration("query.duration_min")?, query.duration("query.duration_max")?);
    Ok(TraceQuery {
        service: query.get("query.service_name").map(str::to_owned),
        operation: query.get("query.operation_name").map(str::to_owned),
        tags: query.tags("query.attributes")?,
        min_duration_ms: min.map(millis),
        max_duration_ms: max.map(millis),
        start,
        end,
        limit: limit(&query, "query.search_depth", DEFAULT_DEPTH)?,
    })
}

/// The traces a v3 search finds, with their signals.
async fn found(
    state: &ApiState,
    query_string: Result<QueryString<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<TraceView>, V3Error> {
    let search = v3_search(query_string)?;
    let ids = state.store.search_traces(&search).await?;
    Ok(load_traces(state, &ids).await?)
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
    let views = found(&state, query_string).await?;
    Ok(Json(json!({"result": {"resourceSpans": resource_spans(&views)}})))
}

/// What Jaeger UI's search list shows of each trace found, `{"summaries": [{"traceId",
/// "rootServiceName", "rootOperationName", "minStartTimeUnixNano", "maxEndTimeUnixNano",
/// "spanCount", "errorSpanCount", "orphanSpanCount", "services": [{"name", "spanCount",
/// "errorSpanCount"}]}]}`, for the same search as `/jaeger/api/v3/traces` (parameters under
/// their proto or JSON names: `query.service_name` or `query.serviceName`, …). Traces whose id
/// is not 32 hex digits (legacy ids) are left out: the UI refuses the whole answer otherwise.
#[utoipa::path(get, path = "/jaeger/api/v3/trace-summaries", tag = "jaeger", operation_id = "jaeger_v3_trace_summaries",
    params(V3SearchQuery),
    responses((status = 200, description = "One summary per trace found", body = Object), (status = 400, description = "A parameter is unreadable; the message names it", body = Object), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn trace_summaries(
    State(state): State<ApiState>,
    query_string: Result<QueryString<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, V3Error> {
    let views = found(&state, query_string).await?;
    let summaries: Vec<Value> = views.iter().filter_map(summary).collect();
    Ok(Json(json!({"summaries": summaries})))
}

/// One trace's summary; `None` for an id the UI cannot read or a trace without spans.
fn summary(view: &TraceView) -> Option<Value> {
    let hex = view.trace_id.len() == 32 && view.trace_id.bytes().all(|b| b.is_ascii_hexdigit());
    let &(root, _) = view.graph.order.first().filter(|_| hex)?;
    let mut services: Vec<(String, u64, u64)> = Vec::new();
    let (mut start, mut end, mut errors) = (i64::MAX, 0, 0u64);
    for span in &view.spans {
        let (span_start, span_end) = span_view::span_nanos(span);
        (start, end) = (start.min(span_start), end.max(span_end));
        let failed = u64::from(span_view::status(span) == Some("ERROR"));
        errors += failed;
        match services.iter_mut().find(|(name, _, _)| *name == span.service_name) {
            Some((_, count, error_count)) => (*count, *error_count) = (*count + 1, *error_count + failed),
            None => services.push((span.service_name.clone(), 1, failed)),
        }
    }
    let root_span = &view.spans[root];
    Some(json!({
        "traceId": view.trace_id,
        "rootServiceName": root_span.service_name,
        "rootOperationName": span_view::operation(root_span),
        "minStartTimeUnixNano": start.to_string(),
        "maxEndTimeUnixNano": end.to_string(),
        "spanCount": view.spans.len(),
        "errorSpanCount": errors,
        "orphanSpanCount": view.missing_parents.len(),
        "services": services.iter().map(|(name, count, errors)| json!({"name": name, "spanCount": count, "errorSpanCount": errors})).collect::<Vec<_>>(),
    }))
}
