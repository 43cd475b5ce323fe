//! Jaeger's query API under `/jaeger`, so Jaeger UI and Grafana's Jaeger data source browse
//! what we store: v1 (`/jaeger/api/…`, Jaeger JSON in a `{"data", "total", "limit", "offset",
//! "errors"}` envelope) and the v3 calls newer UIs and Grafana's v3 mode make
//! (`/jaeger/api/v3/…`, OTLP JSON). Reads only; behind `QUERY_TOKENS` like `/query/*`, from
//! the query replica when one is set.

mod described;
mod jaeger_json;
mod otlp_json;
mod params;
mod span_view;
pub mod v1;
pub mod v3;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::ApiState;
use crate::http::ApiError;
use crate::store::StoreError;
use span_view::TraceView;

/// The v1 envelope.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Envelope<T> {
    pub data: T,
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    pub errors: Option<Vec<ErrorEntry>>,
}

/// One error of a v1 answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorEntry {
    pub code: u16,
    pub msg: String,
    #[serde(rename = "traceID", skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl<T> Envelope<T> {
    fn of(data: T, total: usize) -> Envelope<T> {
        Envelope { data, total, limit: 0, offset: 0, errors: None }
    }
}

/// Why a Jaeger call failed.
#[derive(Debug)]
pub enum JaegerError {
    /// 400: a parameter could not be read; the message names it.
    BadRequest(String),
    /// 404: no such trace.
    NotFound(String),
    /// The database failed: answered as every query endpoint answers it (503 or 500).
    Store(StoreError),
}

impl From<StoreError> for JaegerError {
    fn from(error: StoreError) -> Self {
        JaegerError::Store(error)
    }
}

impl JaegerError {
    /// The response, with a refusal's body made by `body`; the database's failures are
    /// answered as on every query endpoint.
    fn respond(self, body: impl FnOnce(StatusCode, &str) -> serde_json::Value) -> Response {
        let (status, msg) = match self {
            JaegerError::Store(error) => return ApiError::from(error).into_response(),
            JaegerError::BadRequest(msg) => (StatusCode::BAD_REQUEST, msg),
            JaegerError::NotFound(msg) => (StatusCode::NOT_FOUND, msg),
        };
        (status, Json(body(status, &msg))).into_response()
    }
}

/// v1's shape: the envelope with `data: null` and one error.
impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        self.respond(|status, msg| {
            json!({"data": null, "total": 0, "limit": 0, "offset": 0,
                   "errors": [{"code": status.as_u16(), "msg": msg}]})
        })
    }
}

/// v3's shape of the same errors: `{"error": {"httpCode", "message"}}`.
#[derive(Debug)]
pub struct V3Error(pub JaegerError);

impl<E: Into<JaegerError>> From<E> for V3Error {
    fn from(error: E) -> Self {
        V3Error(error.into())
    }
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        self.0.respond(|status, msg| json!({"error": {"httpCode": status.as_u16(), "message": msg}}))
    }
}

/// The ids to look a trace up by: as given (legacy ids are any text), and, for hex shorter than
/// 32 digits (the UI drops leading zeros, some clients send 64-bit ids), padded to 32.
fn id_candidates(id: &str) -> Vec<String> {
    let id = id.trim().to_owned();
    let lower = id.to_ascii_lowercase();
    let mut candidates = vec![id.clone()];
    if lower.chars().all(|c| c.is_ascii_hexdigit()) && !lower.is_empty() {
        if lower != id {
            candidates.push(lower.clone());
        }
        if lower.len() < 32 {
            candidates.push(format!("{lower:0>32}"));
        }
    }
    candidates
}

/// The trace of `id` (tried as [`id_candidates`]), or `None` when it has no span or log.
async fn find_trace(state: &ApiState, id: &str) -> Result<Option<TraceView>, StoreError> {
    for candidate in id_candidates(id) {
        let signals = state.store.trace_signals(&candidate, state.trace_query_max_signals).await?;
        if let Some(view) = TraceView::of(&candidate, signals) {
            return Ok(Some(view));
        }
    }
    Ok(None)
}

/// The traces of `ids`, in that order, each with its signals.
async fn load_traces(state: &ApiState, ids: &[String]) -> Result<Vec<TraceView>, StoreError> {
    let traces = state.store.traces_signals(ids, state.trace_query_max_signals).await?;
    Ok(traces.into_iter().filter_map(|(id, signals)| TraceView::of(&id, signals)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hex_ids_are_also_tried_padded_and_other_ids_as_given() {
        assert_eq!(id_candidates("ABC"), ["ABC", "abc", "00000000000000000000000000000abc"]);
        assert_eq!(id_candidates("trace-1"), ["trace-1"]);
        let full = "0af7651916cd43dd8448eb211c80319c";
        assert_eq!(id_candidates(full), [full]);
    }
}
