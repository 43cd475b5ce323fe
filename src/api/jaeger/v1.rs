//! Jaeger's v1 query calls (`/jaeger/api/…`), the ones Grafana's Jaeger data source and every
//! Jaeger UI make.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as QueryString, State};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::described::{DependenciesQuery, OperationsQuery, SearchQuery, TraceRangeQuery};
use super::jaeger_json::{self, Trace};
use super::params::Query;
use super::{find_trace, load_traces, Envelope, ErrorEntry, JaegerError};
use crate::api::openapi::Detail;
use crate::api::ApiState;
use crate::store::{Operation, TraceQuery};

/// The time a search reaches back when it names neither `start` nor `lookback`.
const DEFAULT_LOOKBACK: TimeDelta = TimeDelta::hours(1);
/// Traces a search returns unless `limit` says otherwise (Jaeger's own default).
pub(super) const DEFAULT_LIMIT: i64 = 100;
/// The most a search returns (the most Jaeger UI offers); more is read as this.
pub(super) const MAX_LIMIT: i64 = 1500;
/// The service graph's default reach (Jaeger's).
const DEFAULT_DEPENDENCY_LOOKBACK: TimeDelta = TimeDelta::hours(24);

/// The span kinds a filter may name, as Jaeger names them.
const SPAN_KINDS: [&str; 5] = ["server", "client", "producer", "consumer", "internal"];

pub(super) fn query(
    query: Result<QueryString<Vec<(String, String)>>, QueryRejection>,
) -> Result<Query, JaegerError> {
    match query {
        Ok(QueryString(pairs)) => Ok(Query::new(pairs)),
        Err(why) => {
            Err(JaegerError::BadRequest(format!("unable to parse the query string: {}", why.body_text())))
        }
    }
}

/// An operation as `/api/operations` answers it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationEntry {
    pub name: String,
    /// `server`, `client`, `producer`, `consumer`, `internal`, or `""` when unknown.
    pub span_kind: String,
}

impl From<Operation> for OperationEntry {
    fn from(operation: Operation) -> Self {
        let kind = operation.span_kind.to_ascii_lowercase();
        let span_kind = if SPAN_KINDS.contains(&kind.as_str()) { kind } else { String::new() };
        OperationEntry { name: operation.name, span_kind }
    }
}

/// The operations of the query's `service` (required), of the kind the first of `kind_params`
/// present names.
pub(super) async fn operations_of(
    state: &ApiState,
    query: &Query,
    kind_params: &[&str],
) -> Result<Vec<OperationEntry>, JaegerError> {
    let service = query
        .get("service")
        .ok_or_else(|| JaegerError::BadRequest("parameter 'service' is required".to_owned()))?;
    let mut kind = None;
    for name in kind_params {
        if kind.is_none() {
            kind = span_kind_filter(query, name)?;
        }
    }
    let operations = state.store.span_operations(service, kind.as_deref()).await?;
    Ok(operations.into_iter().map(OperationEntry::from).collect())
}

/// A `spanKind` filter, as stored (`SERVER`, …).
pub(super) fn span_kind_filter(query: &Query, name: &str) -> Result<Option<String>, JaegerError> {
    match query.get(name) {
        None => Ok(None),
        Some(kind) if SPAN_KINDS.contains(&kind.to_ascii_lowercase().as_str()) => {
            Ok(Some(kind.to_ascii_uppercase()))
        }
        Some(kind) => Err(JaegerError::BadRequest(format!(
            "unable to parse param '{name}' ({kind:?}): must be one of {}",
            SPAN_KINDS.join(", ")
        ))),
    }
}

/// The services that sent spans.
#[utoipa::path(get, path = "/jaeger/api/services", tag = "jaeger", operation_id = "jaeger_services",
    responses((status = 200, description = "Service names, sorted", body = Envelope<Vec<String>>), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn services(State(state): State<ApiState>) -> Result<Json<Envelope<Vec<String>>>, JaegerError> {
    let services = state.store.span_services().await?;
    let total = services.len();
    Ok(Json(Envelope::of(services, total)))
}

/// The operation names of a service (`[]` for a service never seen).
#[utoipa::path(get, path = "/jaeger/api/services/{service}/operations", tag = "jaeger", operation_id = "jaeger_service_operations", params(("service" = String, Path)),
    responses((status = 200, description = "Operation names, sorted", body = Envelope<Vec<String>>), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn service_operations(
    State(state): State<ApiState>,
    Path(service): Path<String>,
) -> Result<Json<Envelope<Vec<String>>>, JaegerError> {
    let mut names: Vec<String> =
        state.store.span_operations(&service, None).await?.into_iter().map(|o| o.name).collect();
    names.dedup();
    let total = names.len();
    Ok(Json(Envelope::of(names, total)))
}

/// The operations of a service with their span kind, of one kind when `spanKind` is given.
#[utoipa::path(get, path = "/jaeger/api/operations", tag = "jaeger", operation_id = "jaeger_operations",
    params(OperationsQuery),
    responses((status = 200, description = "Operations", body = Envelope<Vec<OperationEntry>>), (status = 400, description = "A parameter is missing or unreadable; the message names it", body = Object), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn operations(
    State(state): State<ApiState>,
    query_string: Result<QueryString<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Envelope<Vec<OperationEntry>>>, JaegerError> {
    let operations = operations_of(&state, &query(query_string)?, &["spanKind"]).await?;
    let total = operations.len();
    Ok(Json(Envelope::of(operations, total)))
}

/// One trace; 404 with an error entry when no span or log of it is stored. `start` and `end`
/// (microseconds) are accepted and checked; the lookup by id reads one index entry per
/// partition either way.
#[utoipa::path(get, path = "/jaeger/api/traces/{trace_id}", tag = "jaeger", operation_id = "jaeger_trace", params(("trace_id" = String, Path), TraceRangeQuery),
    responses((status = 200, description = "The trace", body = Envelope<Vec<Trace>>), (status = 400, description = "A parameter is unreadable; the message names it", body = Object), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 404, description = "No such trace", body = Object), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn trace(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
    query_string: Result<QueryString<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Envelope<Vec<Trace>>>, JaegerError> {
    let query = query(query_string)?;
    query.epoch_time("start", 17, 1)?;
    query.epoch_time("end", 17, 1)?;
    match find_trace(&state, &trace_id).await? {
        Some(view) => Ok(Json(Envelope::of(vec![jaeger_json::trace(&view)], 1))),
        None => Err(JaegerError::NotFound("trace not found".to_owned())),
    }
}

/// A search's filters, as v1 names them. A range or duration bounds that are empty (start
/// after end, minimum above maximum) find nothing, as Jaeger's do.
fn search_query(query: &Query) -> Result<TraceQuery, JaegerError> {
    let end = query.epoch_time("end", 17, 1)?.unwrap_or_else(Utc::now);
    let lookback = match query.get("lookback") {
        None | Some("custom") => DEFAULT_LOOKBACK,
        Some(_) => query.duration("lookback")?.unwrap_or(DEFAULT_LOOKBACK),
    };
    let start = match query.epoch_time("start", 17, 1)? {
        Some(start) => start,
        None => end.checked_sub_signed(lookback).unwrap_or(DateTime::<Utc>::MIN_UTC),
    };
    let (min, max) = (query.duration("minDuration")?, query.duration("maxDuration")?);
    Ok(TraceQuery {
        service: query.get("service").map(str::to_owned),
        operation: query.get("operation").map(str::to_owned),
        tags: query.tags("tags")?,
        min_duration_ms: min.map(millis),
        max_duration_ms: max.map(millis),
        start,
        end,
        limit: limit(query, "limit", DEFAULT_LIMIT)?,
    })
}

/// A trace count: `default` when absent or 0, at most [`MAX_LIMIT`].
pub(super) fn limit(query: &Query, name: &str, default: i64) -> Result<usize, JaegerError> {
    let limit = match query.count(name, 4, default)? {
        0 => default,
        limit => limit.min(MAX_LIMIT),
    };
    Ok(limit as usize)
}

pub(super) fn millis(duration: TimeDelta) -> f64 {
    duration.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// Traces: those named by `traceID` (repeated; an error entry per one not found), or found by
/// `service`, `operation`, `tags`, `minDuration`, `maxDuration`, `start` and `end`
/// (microseconds) or `lookback`, `limit` (default 100, at most 1500), most recent first.
#[utoipa::path(get, path = "/jaeger/api/traces", tag = "jaeger", operation_id = "jaeger_search",
    params(SearchQuery),
    responses((status = 200, description = "The traces", body = Envelope<Vec<Trace>>), (status = 400, description = "A parameter is missing or unreadable; the message names it", body = Object), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn search(
    State(state): State<ApiState>,
    query_string: Result<QueryString<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Envelope<Vec<Trace>>>, JaegerError> {
    let query = query(query_string)?;
    // Read (and checked) whether or not ids are given: a bad parameter is refused either way.
    let search = search_query(&query)?;
    let ids = query.all("traceID");
    if !ids.is_empty() {
        let mut traces = Vec::new();
        let mut errors = Vec::new();
        for id in ids {
            match find_trace(&state, id).await? {
                Some(view) => traces.push(jaeger_json::trace(&view)),
                None => errors.push(ErrorEntry {
                    code: 404,
                    msg: "trace not found".into(),
                    trace_id: Some(id.to_owned()),
                }),
            }
        }
        let total = traces.len();
        return Ok(Json(Envelope {
            errors: (!errors.is_empty()).then_some(errors),
            ..Envelope::of(traces, total)
        }));
    }
    let ids = state.store.search_traces(&search).await?;
    let traces: Vec<Trace> = load_traces(&state, &ids).await?.iter().map(jaeger_json::trace).collect();
    let total = traces.len();
    Ok(Json(Envelope::of(traces, total)))
}

/// Calls from one service to another.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyLink {
    pub parent: String,
    pub child: String,
    pub call_count: i64,
}

/// The service graph: calls between services whose spans started within `lookback`
/// (milliseconds, default a day) before `endTs` (milliseconds since the epoch, default now), on
/// ten-minute buckets computed by the maintenance once settled.
#[utoipa::path(get, path = "/jaeger/api/dependencies", tag = "jaeger", operation_id = "jaeger_dependencies", params(DependenciesQuery),
    responses((status = 200, description = "Calls between services", body = Envelope<Vec<DependencyLink>>), (status = 400, description = "A parameter is unreadable; the message names it", body = Object), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn dependencies(
    State(state): State<ApiState>,
    query_string: Result<QueryString<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Envelope<Vec<DependencyLink>>>, JaegerError> {
    let query = query(query_string)?;
    let end = query.epoch_time("endTs", 14, 1_000)?.unwrap_or_else(Utc::now);
    let lookback = query.millis("lookback", 14)?.unwrap_or(DEFAULT_DEPENDENCY_LOOKBACK);
    let start = end.checked_sub_signed(lookback).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let links: Vec<DependencyLink> = state
        .store
        .dependencies(start, end)
        .await?
        .into_iter()
        .map(|d| DependencyLink { parent: d.parent, child: d.child, call_count: d.call_count })
        .collect();
    let total = links.len();
    Ok(Json(Envelope::of(links, total)))
}
