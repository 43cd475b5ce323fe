//! `GET /query/signals` and `GET /query/traces/{trace_id}`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;

use super::error::ApiError;
use super::params::Params;
use super::{ApiState, Page};
use crate::model::{SignalType, StoredSignal};
use crate::store::SignalFilter;

/// Signals newest first, filtered by `trace_id`, `service_name`, `signal_type`, `start_time`,
/// `end_time`; `limit` 1 to 1000 (default 100), `offset` from 0.
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
    };
    let limit = params.integer("limit", 100, 1, 1000);
    let offset = params.integer("offset", 0, 0, i64::MAX);
    params.finish()?;
    let (items, total) = state.store.list_signals(&filter, limit, offset).await?;
    Ok(Json(Page { items, total, limit, offset }))
}

/// Every signal of a trace, oldest first (`[]` when the trace is unknown), capped at
/// `TRACE_QUERY_MAX_SIGNALS`.
pub async fn trace_signals(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
) -> Result<Json<Vec<StoredSignal>>, ApiError> {
    let signals = state.store.trace_signals(&trace_id, state.trace_query_max_signals).await?;
    Ok(Json(signals))
}
