//! `GET /query/incidents`, `/query/incidents/{id}` and `/query/incidents/{id}/analysis`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;

use super::error::ApiError;
use super::params::{path_uuid, Params};
use super::{ApiState, Page};
use crate::model::{AnalysisResult, Incident, IncidentSeverity, IncidentStatus};
use crate::store::IncidentFilter;

/// Incidents newest first, filtered by `status` and `severity` (lower-case values) and by an
/// affected `service`;
/// `limit` 1 to 200 (default 50), `offset` from 0.
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
    };
    let limit = params.integer("limit", 50, 1, 200);
    let offset = params.integer("offset", 0, 0, i64::MAX);
    params.finish()?;
    let (items, total) = state.store.list_incidents(&filter, limit, offset).await?;
    Ok(Json(Page { items, total, limit, offset }))
}

pub async fn get_incident(
    State(state): State<ApiState>,
    Path(incident_id): Path<String>,
) -> Result<Json<Incident>, ApiError> {
    let id = path_uuid("incident_id", &incident_id)?;
    match state.store.get_incident(id).await? {
        Some(incident) => Ok(Json(incident)),
        None => Err(ApiError::NotFound("Incident not found")),
    }
}

/// The newest analysis of the incident; 404 until the worker has written one.
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
