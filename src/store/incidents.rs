//! Reading `incidents` and `analysis_results`, and the one write of the query API: an
//! incident's status. Incidents are opened and escalated by the batch write (tracking.rs);
//! analyses are written by the analysis worker (docs/contracts.md §1).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use tokio_postgres::Row;
use uuid::Uuid;

use super::filter::{Conditions, PageQuery, Total};
use super::signals::PageStart;
use super::{Store, StoreError};
use crate::model::{AnalysisResult, Incident, IncidentSeverity, IncidentStatus};

/// Filters of `GET /query/incidents`; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub status: Option<IncidentStatus>,
    pub severity: Option<IncidentSeverity>,
    /// Incidents whose `affected_services` include this one.
    pub service: Option<String>,
    /// The incident of this trace (or correlation key).
    pub trace_id: Option<String>,
    /// Incidents linked to this problem.
    pub problem: Option<Uuid>,
}

/// A status move already checked against the allowed transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusChange {
    pub from: IncidentStatus,
    pub to: IncidentStatus,
}

/// The order of every incident list, newest first; the list indexes (migrations/0014) are
/// this order read backwards.
pub const INCIDENT_ORDER: &str = "detected_at DESC NULLS LAST, id DESC";

/// An incident's columns; its problem is read apart ([`with_problems`]).
pub(super) const INCIDENT_COLUMNS: &str =
    "id, trace_id, status::text, severity::text, detected_at, resolved_at, affected_services, error_count";

/// `incidents` with each one's problem (the first it was linked to), read in a statement of
/// its own: on Citus the incidents may be distributed while `incident_problems` is the
/// coordinator's, and Citus joins the two in no statement (store/citus/incidents.rs).
pub(super) async fn with_problems(
    client: &tokio_postgres::Client,
    mut incidents: Vec<Incident>,
) -> Result<Vec<Incident>, StoreError> {
    if incidents.is_empty() {
        return Ok(incidents);
    }
    let ids: Vec<Uuid> = incidents.iter().map(|i| i.id).collect();
    let rows = client
        .query(
            "SELECT DISTINCT ON (incident_id) incident_id, problem_id FROM incident_problems
             WHERE incident_id = ANY($1) ORDER BY incident_id, linked_at, problem_id",
            &[&ids],
        )
        .await?;
    let mut problems = HashMap::with_capacity(rows.len());
    for row in &rows {
        problems.insert(row.try_get::<_, Uuid>(0)?, row.try_get::<_, Uuid>(1)?);
    }
    for incident in &mut incidents {
        incident.problem_id = problems.get(&incident.id).copied();
    }
    Ok(incidents)
}

impl Store {
    /// One page of incidents, newest `detected_at` first, and the number matching the filter.
    pub async fn list_incidents(
        &self,
        filter: &IncidentFilter,
        limit: i64,
        start: PageStart,
    ) -> Result<(Vec<Incident>, Total), StoreError> {
        let status = filter.status.map(IncidentStatus::db_label);
        let severity = filter.severity.map(IncidentSeverity::db_label);
        let mut conditions = Conditions::default();
        if let Some(status) = &status {
            conditions.push("status = $::text::incidentstatus", status);
        }
        if let Some(severity) = &severity {
            conditions.push("severity = $::text::incidentseverity", severity);
        }
        if let Some(service) = &filter.service {
            conditions.push("affected_services @> ARRAY[$::varchar]", service);
        }
        if let Some(trace_id) = &filter.trace_id {
            conditions.push("trace_id = $", trace_id);
        }
        if let Some(problem) = &filter.problem {
            conditions
                .push("id IN (SELECT incident_id FROM incident_problems WHERE problem_id = $)", problem);
        }
        let (offset, after) = match start {
            PageStart::Offset(offset) => (offset, None),
            PageStart::After { at, id, skip } => (skip, Some((at, id))),
        };
        // The order below with NULLS LAST: after a dated row come earlier dates, the same date
        // with a smaller id, then every undated row; after an undated row, smaller ids.
        match &after {
            Some((Some(at), id)) => conditions.push_page_only(
                "(detected_at < $ OR (detected_at = $ AND id < $) OR detected_at IS NULL)",
                &[at, at, id],
            ),
            Some((None, id)) => conditions.push_page_only("(detected_at IS NULL AND id < $)", &[id]),
            None => {}
        }
        let client = self.read_client().await?;
        let (rows, total) = conditions
            .fetch_page(
                &client,
                &PageQuery {
                    table: "incidents",
                    columns: INCIDENT_COLUMNS,
                    order: INCIDENT_ORDER,
                    key: Some("id"),
                    limit,
                    offset,
                    exact_limit: self.settings.exact_total_limit,
                },
            )
            .await?;
        let incidents = rows.iter().map(incident_from_row).collect::<Result<_, _>>()?;
        Ok((with_problems(&client, incidents).await?, total))
    }

    /// Moves an incident to `change.to` if it is still in `change.from` (a concurrent change
    /// wins, and the caller re-reads): resolving sets `resolved_at`, reopening clears it,
    /// closing keeps it (or sets it when the incident was never resolved). `None` when the
    /// incident is gone or no longer in `change.from`.
    pub async fn change_status(
        &self,
        id: Uuid,
        change: StatusChange,
    ) -> Result<Option<Incident>, StoreError> {
        let client = self.client().await?;
        // The database's clock, read first, and the incident read again after: with the
        // incidents distributed, `id` names no shard, and Citus evaluates no function that is
        // not IMMUTABLE in a CASE or a RETURNING list (the enums' casts to text are STABLE) of a
        // statement over every shard.
        let now: DateTime<Utc> = client.query_one("SELECT now()", &[]).await?.try_get(0)?;
        let changed = client
            .query_opt(
                "UPDATE incidents SET status = $2::text::incidentstatus,
                     resolved_at = CASE
                         WHEN $2 = 'RESOLVED' THEN $4
                         WHEN $2 = 'CLOSED' THEN coalesce(resolved_at, $4)
                         WHEN $2 IN ('OPEN', 'INVESTIGATING') THEN NULL
                     END
                 WHERE id = $1 AND status = $3::text::incidentstatus
                 RETURNING id",
                &[&id, &change.to.db_label(), &change.from.db_label(), &now],
            )
            .await?;
        match changed {
            Some(_) => incident_by_id(&client, id).await,
            None => Ok(None),
        }
    }

    /// An incident as the query API shows it (from the query replica, when there is one).
    pub async fn get_incident(&self, id: Uuid) -> Result<Option<Incident>, StoreError> {
        let client = self.read_client().await?;
        incident_by_id(&client, id).await
    }

    /// An incident as the primary has it now: what a status change is checked against.
    pub async fn current_incident(&self, id: Uuid) -> Result<Option<Incident>, StoreError> {
        let client = self.client().await?;
        incident_by_id(&client, id).await
    }

    /// The newest analysis of an incident, if the worker has written one.
    pub async fn latest_analysis(&self, incident_id: Uuid) -> Result<Option<AnalysisResult>, StoreError> {
        let client = self.read_client().await?;
        let row = client
            .query_opt(
                "SELECT id, incident_id, root_cause, confidence_score, evidence_signals,
                        ai_explanation, generated_at
                 FROM analysis_results WHERE incident_id = $1
                 ORDER BY generated_at DESC NULLS LAST, id DESC LIMIT 1",
                &[&incident_id],
            )
            .await?;
        // Written by the analysis worker: read by name, and a value of another type is an
        // error (500, logged), not a panic.
        let Some(row) = row else { return Ok(None) };
        Ok(Some(from_columns!(
            row,
            AnalysisResult {
                id,
                incident_id,
                root_cause,
                confidence_score,
                evidence_signals,
                ai_explanation,
                generated_at,
            }
        )))
    }
}

async fn incident_by_id(client: &tokio_postgres::Client, id: Uuid) -> Result<Option<Incident>, StoreError> {
    let row =
        client.query_opt(&format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"), &[&id]).await?;
    let Some(row) = row else { return Ok(None) };
    Ok(with_problems(client, vec![incident_from_row(&row)?]).await?.pop())
}

/// A row of [`INCIDENT_COLUMNS`], its problem not read yet ([`with_problems`]). The analysis
/// worker writes incidents too: columns are read by name, and a value of another type is an
/// error, not a panic.
pub(super) fn incident_from_row(row: &Row) -> Result<Incident, StoreError> {
    let status: String = row.try_get("status")?;
    let severity: String = row.try_get("severity")?;
    Ok(from_columns!(row, Incident {
        id, trace_id, detected_at, resolved_at, affected_services, error_count,
    } with {
        // The enum columns only hold these labels.
        status: IncidentStatus::from_db_label(&status).unwrap_or(IncidentStatus::Open),
        severity: IncidentSeverity::from_db_label(&severity).unwrap_or(IncidentSeverity::Low),
        trace_url: None,
        problem_id: None,
    }))
}
