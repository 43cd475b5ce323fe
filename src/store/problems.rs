//! Reading `problems` (written with the signals, in `tracking.rs`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::filter::{Conditions, PageQuery, Total};
use super::incidents::{incident_from_row, with_problems, INCIDENT_COLUMNS, INCIDENT_ORDER};
use super::{Store, StoreError};
use crate::model::{Incident, IncidentSeverity, Problem};

/// Filters of `GET /query/problems`; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct ProblemFilter {
    /// Problems seen in this service.
    pub service: Option<String>,
    pub severity: Option<IncidentSeverity>,
    /// Seen at or after (`last_seen`).
    pub start_time: Option<DateTime<Utc>>,
    /// First seen at or before (`first_seen`).
    pub end_time: Option<DateTime<Utc>>,
}

const PROBLEM_COLUMNS: &str = "id, fingerprint, title, first_seen, last_seen, \
     (SELECT count(*) FROM incident_problems ip WHERE ip.problem_id = problems.id) AS trace_count, signal_count, services, \
     severity::text, representative_trace_id, analysis_requested_at";

impl Store {
    /// One page of problems, most recently seen first, and the number matching the filter.
    pub async fn list_problems(
        &self,
        filter: &ProblemFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Problem>, Total), StoreError> {
        let severity = filter.severity.map(IncidentSeverity::db_label);
        let mut conditions = Conditions::default();
        if let Some(service) = &filter.service {
            conditions.push("services @> ARRAY[$::varchar]", service);
        }
        if let Some(severity) = &severity {
            conditions.push("severity = $::text::incidentseverity", severity);
        }
        if let Some(start) = &filter.start_time {
            conditions.push("last_seen >= $", start);
        }
        if let Some(end) = &filter.end_time {
            conditions.push("first_seen <= $", end);
        }
        let client = self.read_client().await?;
        let (rows, total) = conditions
            .fetch_page(
                &client,
                &PageQuery {
                    table: "problems",
                    columns: PROBLEM_COLUMNS,
                    order: "last_seen DESC, id DESC",
                    key: Some("id"),
                    limit,
                    offset,
                    exact_limit: self.settings.exact_total_limit,
                },
            )
            .await?;
        Ok((rows.iter().map(problem_from_row).collect::<Result<_, _>>()?, total))
    }

    pub async fn get_problem(&self, id: Uuid) -> Result<Option<Problem>, StoreError> {
        let client = self.read_client().await?;
        let row = client
            .query_opt(&format!("SELECT {PROBLEM_COLUMNS} FROM problems WHERE id = $1"), &[&id])
            .await?;
        row.as_ref().map(problem_from_row).transpose()
    }

    /// The problem's incidents, newest first, at most `limit`.
    pub async fn problem_incidents(&self, id: Uuid, limit: i64) -> Result<Vec<Incident>, StoreError> {
        let client = self.read_client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents
                     WHERE id IN (SELECT incident_id FROM incident_problems WHERE problem_id = $1)
                     ORDER BY {INCIDENT_ORDER} LIMIT $2"
                ),
                &[&id, &limit],
            )
            .await?;
        let incidents = rows.iter().map(incident_from_row).collect::<Result<_, _>>()?;
        with_problems(&client, incidents).await
    }
}

/// A row of `PROBLEM_COLUMNS`, read by name.
fn problem_from_row(row: &Row) -> Result<Problem, StoreError> {
    let severity: String = row.try_get("severity")?;
    Ok(from_columns!(row, Problem {
        id, fingerprint, title, first_seen, last_seen, trace_count, signal_count, services,
        representative_trace_id, analysis_requested_at,
    } with {
        // The column's enum type only holds these labels.
        severity: IncidentSeverity::from_db_label(&severity).unwrap_or(IncidentSeverity::Low),
    }))
}
