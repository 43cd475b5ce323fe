//! `GET /query/problems` and `/query/problems/{id}`: faults grouped across traces by error
//! fingerprint (issue 8).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Serialize;

use super::openapi::{Detail, ProblemQuery, ValidationErrors};
use super::params::{path_uuid, Params};
use super::{ApiState, Page};
use crate::http::ApiError;
use crate::model::{Incident, IncidentSeverity, Problem, StoredSignal};
use crate::store::ProblemFilter;

/// How many incidents and signals `GET /query/problems/{id}` shows.
const SAMPLE_INCIDENTS: i64 = 100;
const SAMPLE_SIGNALS: i64 = 20;

/// Problems most recently seen first, filtered by `service`, `severity` and a time range
/// (`start_time`: seen since; `end_time`: first seen before); `limit` 1 to 200 (default 50),
/// `offset` from 0.
#[utoipa::path(get, path = "/query/problems", tag = "query", params(ProblemQuery),
    responses((status = 200, description = "A page of problems", body = Page<Problem>),
        (status = 401, body = Detail), (status = 422, body = ValidationErrors), (status = 503, body = Detail)))]
pub async fn list_problems(
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Page<Problem>>, ApiError> {
    let mut params = Params::new(query)?;
    let filter = ProblemFilter {
        service: params.text("service"),
        severity: params.choice(
            "severity",
            IncidentSeverity::from_api_value,
            &["low", "medium", "high", "critical"],
        ),
        start_time: params.timestamp("start_time"),
        end_time: params.timestamp("end_time"),
    };
    let limit = params.integer("limit", 50, 1, 200);
    let offset = params.integer("offset", 0, 0, i64::MAX);
    params.finish()?;
    let (items, total) = state.store.list_problems(&filter, limit, offset).await?;
    Ok(Json(Page::offset_only(items, total, limit, offset)))
}

/// One problem with its incidents and a sample of its representative trace's signals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemDetail {
    #[serde(flatten)]
    pub problem: Problem,
    /// Its incidents, newest first (at most 100).
    pub incidents: Vec<Incident>,
    /// The representative trace's signals, errors first (at most 20).
    pub sample_signals: Vec<StoredSignal>,
}

#[utoipa::path(get, path = "/query/problems/{problem_id}", tag = "query", params(("problem_id" = Uuid, Path)),
    responses((status = 200, body = ProblemDetail), (status = 401, body = Detail), (status = 404, body = Detail),
        (status = 422, body = ValidationErrors), (status = 503, body = Detail)))]
pub async fn get_problem(
    State(state): State<ApiState>,
    Path(problem_id): Path<String>,
) -> Result<Json<ProblemDetail>, ApiError> {
    let id = path_uuid("problem_id", &problem_id)?;
    let Some(problem) = state.store.get_problem(id).await? else {
        return Err(ApiError::NotFound("Problem not found"));
    };
    let incidents = state
        .store
        .problem_incidents(id, SAMPLE_INCIDENTS)
        .await?
        .into_iter()
        .map(|i| state.linked(i))
        .collect();
    let sample_signals = match &problem.representative_trace_id {
        Some(trace) => state.store.evidence_signals(trace, SAMPLE_SIGNALS, 0).await?.0,
        None => Vec::new(),
    };
    Ok(Json(ProblemDetail { problem, incidents, sample_signals }))
}
