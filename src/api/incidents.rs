//! `GET /query/incidents`, `/query/incidents/{id}` and `/query/incidents/{id}/analysis`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;

use super::cursor::Cursor;
use super::openapi::{Detail, EvidenceQuery, IncidentQuery, PageStartQuery, StatusUpdate, ValidationErrors};
use super::params::{path_uuid, Params};
use super::{ApiState, Page};
use crate::http::ApiError;
use crate::model::{AnalysisResult, Incident, IncidentSeverity, IncidentStatus, StoredSignal};
use crate::store::{IncidentFilter, StatusChange};
use crate::validation::{FieldError, LocPart};
use serde_json::Value;

/// Incidents newest first, filtered by `status` and `severity` (lower-case values), by an
/// affected `service` and by `trace_id`; `limit` 1 to 200 (default 50); `offset` from 0 or `cursor`.
#[utoipa::path(get, path = "/query/incidents", tag = "query", params(IncidentQuery, PageStartQuery),
    responses((status = 200, description = "A page of incidents, newest first", body = Page<Incident>), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 422, description = "Invalid parameters", body = ValidationErrors), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn list_incidents(
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Page<Incident>>, ApiError> {
    let mut params = Params::new(query)?;
    let filter = IncidentFilter {
        status: params.choice(
            "status",
            IncidentStatus::from_api_value,
            &["open", "investigating", "resolved", "closed"],
        ),
        severity: params.choice(
            "severity",
            IncidentSeverity::from_api_value,
            &["low", "medium", "high", "critical"],
        ),
        service: params.text("service"),
        trace_id: params.text("trace_id"),
        problem: params.text("problem").and_then(|text| params.uuid("problem", &text)),
    };
    let limit = params.integer("limit", 50, 1, 200);
    let (start, offset) = params.page_start();
    params.finish()?;
    let (items, total) = state.store.list_incidents(&filter, limit, start).await?;
    let items = items.into_iter().map(|i| state.linked(i)).collect();
    Ok(Json(Page::new(items, total, limit, offset, |i| Cursor { at: i.detected_at, id: i.id })))
}

/// Moves the incident's status: open → investigating → resolved → closed, open → resolved, and
/// resolved → open (reopen); closed is final. Resolving sets `resolved_at`, reopening clears
/// it. Any other move is 409, naming the allowed ones; the status it already has is a 200 that
/// changes nothing.
#[utoipa::path(patch, path = "/query/incidents/{incident_id}", tag = "query", params(("incident_id" = Uuid, Path)),
    request_body = StatusUpdate,
    responses((status = 200, description = "The incident, moved", body = Incident), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 404, body = Detail),
        (status = 409, description = "Not an allowed move; the detail names the allowed ones", body = Detail), (status = 422, description = "Invalid parameters", body = ValidationErrors), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn patch_incident(
    State(state): State<ApiState>,
    Path(incident_id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Incident>, ApiError> {
    let id = path_uuid("incident_id", &incident_id)?;
    let to = requested_status(body)?;
    let Some(current) = state.store.current_incident(id).await? else {
        return Err(ApiError::NotFound("Incident not found"));
    };
    if current.status == to {
        return Ok(Json(state.linked(current)));
    }
    if !current.status.may_move_to(to) {
        let allowed: Vec<&str> = current.status.next_allowed().iter().map(|s| s.api_value()).collect();
        return Err(ApiError::Conflict(format!(
            "cannot move an incident from {} to {}; allowed: {}",
            current.status.api_value(),
            to.api_value(),
            if allowed.is_empty() { "none (closed is final)".to_owned() } else { allowed.join(", ") }
        )));
    }
    match state.store.change_status(id, StatusChange { from: current.status, to }).await? {
        Some(changed) => Ok(Json(state.linked(changed))),
        None => Err(ApiError::Conflict("the incident changed meanwhile; read it again and retry".to_owned())),
    }
}

/// The `status` of a PATCH body, or a 422 in FastAPI's shape.
fn requested_status(body: Result<Json<Value>, JsonRejection>) -> Result<IncidentStatus, ApiError> {
    let body = match body {
        Ok(Json(body)) => body,
        Err(why) => {
            let error = FieldError::new(
                "json_invalid",
                vec!["body".into()],
                format!("JSON decode error: {}", why.body_text()),
            );
            return Err(ApiError::field(error));
        }
    };
    let loc = || vec![LocPart::from("body"), LocPart::from("status")];
    match body.get("status") {
        None => Err(ApiError::field(FieldError::new("missing", loc(), "Field required"))),
        Some(value) => value.as_str().and_then(IncidentStatus::from_api_value).ok_or_else(|| {
            let msg = "Input should be 'open', 'investigating', 'resolved' or 'closed'";
            ApiError::field(FieldError::new("enum", loc(), msg).with_input(value))
        }),
    }
}

/// The incident's evidence: its trace's signals, errors first (ERROR/CRITICAL logs, spans with
/// status ERROR), then oldest first; `limit` 1 to 1000 (default 100), `offset` from 0.
#[utoipa::path(get, path = "/query/incidents/{incident_id}/signals", tag = "query",
    params(("incident_id" = Uuid, Path), EvidenceQuery),
    responses((status = 200, description = "The incident's signals, errors first", body = Page<StoredSignal>), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 404, body = Detail), (status = 422, description = "Invalid parameters", body = ValidationErrors), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn incident_signals(
    State(state): State<ApiState>,
    Path(incident_id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Page<StoredSignal>>, ApiError> {
    let id = path_uuid("incident_id", &incident_id)?;
    let mut params = Params::new(query)?;
    let limit = params.integer("limit", 100, 1, 1000);
    let offset = params.integer("offset", 0, 0, i64::MAX);
    params.finish()?;
    let Some(incident) = state.store.get_incident(id).await? else {
        return Err(ApiError::NotFound("Incident not found"));
    };
    let (items, total) = state.store.evidence_signals(&incident.trace_id, limit, offset).await?;
    // Offset pagination only: the order (errors first) has no cursor.
    Ok(Json(Page::offset_only(items, total, limit, offset)))
}

#[utoipa::path(get, path = "/query/incidents/{incident_id}", tag = "query", params(("incident_id" = Uuid, Path)),
    responses((status = 200, body = Incident), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 404, body = Detail), (status = 422, description = "Invalid parameters", body = ValidationErrors), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn get_incident(
    State(state): State<ApiState>,
    Path(incident_id): Path<String>,
) -> Result<Json<Incident>, ApiError> {
    let id = path_uuid("incident_id", &incident_id)?;
    match state.store.get_incident(id).await? {
        Some(incident) => Ok(Json(state.linked(incident))),
        None => Err(ApiError::NotFound("Incident not found")),
    }
}

/// The newest analysis of the incident; 404 until the worker has written one.
#[utoipa::path(get, path = "/query/incidents/{incident_id}/analysis", tag = "query", params(("incident_id" = Uuid, Path)),
    responses((status = 200, description = "The newest analysis", body = AnalysisResult), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail),
        (status = 404, description = "No analysis yet", body = Detail), (status = 422, description = "Invalid parameters", body = ValidationErrors), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn get_analysis(
    State(state): State<ApiState>,
    Path(incident_id): Path<String>,
) -> Result<Json<AnalysisResult>, ApiError> {
    let id = path_uuid("incident_id", &incident_id)?;
    match state.store.latest_analysis(id).await? {
        Some(analysis) => Ok(Json(analysis)),
        None => Err(ApiError::NotFound("Analysis not found")),
    }
}
