//! `GET /query/signals` and `GET /query/traces/{trace_id}`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;

use super::cursor::Cursor;
use super::openapi::{Detail, PageStartQuery, SignalQuery, ValidationErrors};
use super::params::Params;
use super::trace_tree::TraceTree;
use super::{ApiState, Page};
use crate::http::ApiError;
use crate::model::{SignalType, StoredSignal};
use crate::store::{PageStart, SignalFilter};

/// The log levels stored (`payload.level`).
const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

fn parse_level(text: &str) -> Option<&'static str> {
    LEVELS.iter().copied().find(|level| level.eq_ignore_ascii_case(text))
}

/// Signals newest first, filtered by `trace_id`, `service_name`, `signal_type`, `start_time`,
/// `end_time`, `level` (logs) and `q` (text in log messages, case-insensitive); `limit` 1 to
/// 1000 (default 100); `offset` from 0 or `cursor`.
#[utoipa::path(get, path = "/query/signals", tag = "query", params(SignalQuery, PageStartQuery),
    responses((status = 200, description = "A page of signals, newest first", body = Page<StoredSignal>), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 422, description = "Invalid parameters", body = ValidationErrors), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn list_signals(
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Page<StoredSignal>>, ApiError> {
    let mut params = Params::new(query)?;
    let filter = SignalFilter {
        trace_id: params.text("trace_id"),
        service_name: params.text("service_name"),
        signal_type: params.choice("signal_type", SignalType::parse, &["log", "trace", "metric"]),
        start_time: params.timestamp("start_time"),
        end_time: params.timestamp("end_time"),
        level: params.choice("level", parse_level, &LEVELS).map(str::to_owned),
        text: params.text("q").filter(|q| !q.is_empty()),
    };
    let limit = params.integer("limit", 100, 1, 1000);
    let (start, offset) = params.page_start();
    params.finish()?;
    // A cursor without a time sorts after every signal (they all have one): nothing follows it.
    let start = match start {
        PageStart::After { at: None, .. } => PageStart::Offset(i64::MAX),
        start => start,
    };
    let (items, total) = state.store.list_signals(&filter, limit, start).await?;
    Ok(Json(Page::new(items, total, limit, offset, |s| Cursor { at: Some(s.timestamp), id: s.id })))
}

/// Every signal of a trace, oldest first (`[]` when the trace is unknown), capped at
/// `TRACE_QUERY_MAX_SIGNALS`.
#[utoipa::path(get, path = "/query/traces/{trace_id}", tag = "query", params(("trace_id" = String, Path)),
    responses((status = 200, description = "The trace's signals, oldest first; [] when unknown", body = Vec<StoredSignal>), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn trace_signals(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
) -> Result<Json<Vec<StoredSignal>>, ApiError> {
    let signals = state.store.trace_signals(&trace_id, state.trace_query_max_signals).await?;
    Ok(Json(signals))
}

/// The trace for a waterfall view: its spans depth-first with depth, children, start offset and
/// duration, logs attached to their spans, services, total duration, error spans marked; 404
/// when the trace has no signal. At most `TRACE_QUERY_MAX_SIGNALS` signals are read.
#[utoipa::path(get, path = "/query/traces/{trace_id}/tree", tag = "query", params(("trace_id" = String, Path)),
    responses((status = 200, description = "The trace as a waterfall", body = TraceTree), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 404, body = Detail), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn trace_tree(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
) -> Result<Json<TraceTree>, ApiError> {
    let signals = state.store.trace_signals(&trace_id, state.trace_query_max_signals).await?;
    if signals.is_empty() {
        return Err(ApiError::NotFound("Trace not found"));
    }
    Ok(Json(super::trace_tree::build(&trace_id, signals)))
}
