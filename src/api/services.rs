//! `GET /query/services`: which services are sending, how much, and how many errors.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::openapi::{Detail, ServicesQuery, ValidationErrors};
use super::params::Params;
use super::ApiState;
use crate::http::ApiError;
use crate::store::{MinuteRange, ServiceSummary};
use crate::validation::FieldError;

/// The range when none is given: the last day.
const DEFAULT_RANGE_HOURS: i64 = 24;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Services {
    /// The range counted: the one asked for, widened to whole minutes (UTC).
    #[serde(serialize_with = "crate::model::time::serialize")]
    pub start_time: DateTime<Utc>,
    #[serde(serialize_with = "crate::model::time::serialize")]
    pub end_time: DateTime<Utc>,
    pub items: Vec<ServiceItem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceItem {
    pub service_name: String,
    pub signals: SignalCounts,
    /// Error signals: ERROR/CRITICAL logs, spans with status ERROR or an exception event.
    pub error_count: i64,
    #[serde(serialize_with = "crate::model::time::serialize")]
    pub last_seen: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignalCounts {
    pub log: i64,
    pub trace: i64,
    pub metric: i64,
    pub total: i64,
}

impl From<ServiceSummary> for ServiceItem {
    fn from(s: ServiceSummary) -> Self {
        ServiceItem {
            service_name: s.service_name,
            signals: SignalCounts {
                log: s.logs,
                trace: s.traces,
                metric: s.metrics,
                total: s.logs + s.traces + s.metrics,
            },
            error_count: s.errors,
            last_seen: s.last_seen,
        }
    }
}

/// Services with signals in `[start_time, end_time)` widened to whole minutes (default: the
/// last 24 hours), by name; the answer gives the range counted.
#[utoipa::path(get, path = "/query/services", tag = "query", params(ServicesQuery),
    responses((status = 200, description = "Services with signals in the range (widened to whole minutes, as the answer's start_time and end_time say), by name", body = Services), (status = 401, description = "A bearer token is required (QUERY_TOKENS)", body = Detail), (status = 422, description = "Invalid parameters", body = ValidationErrors), (status = 503, description = "Database unavailable: retry", body = Detail)))]
pub async fn list_services(
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Services>, ApiError> {
    let mut params = Params::new(query)?;
    let end_time = params.timestamp("end_time").unwrap_or_else(Utc::now);
    let start_time =
        params.timestamp("start_time").unwrap_or(end_time - Duration::hours(DEFAULT_RANGE_HOURS));
    params.finish()?;
    if start_time >= end_time {
        // An empty range: no service was active in it.
        return Ok(Json(Services { start_time, end_time, items: Vec::new() }));
    }
    let Some(range) = MinuteRange::around(start_time, end_time) else {
        return Err(ApiError::field(FieldError::new(
            "value_error",
            vec!["query".into(), "end_time".into()],
            "Value error, the range is too far from the present to be counted",
        )));
    };
    let summaries = state.store.service_summaries(range).await?;
    let items = summaries.into_iter().map(ServiceItem::from).collect();
    Ok(Json(Services { start_time: range.start, end_time: range.end, items }))
}
