//! The write of one batch: signals, the incidents they touch and the analysis requests they
//! cause, in one transaction. An acknowledgement therefore covers all three, and a retried
//! batch (duplicates) changes none of them.

use std::collections::HashSet;

use serde_json::json;
use uuid::Uuid;

use super::signals::insert_signals;
use super::{Store, StoreError};
use crate::incidents::{aggregate, TraceActivity, Triage};
use crate::model::{IncidentSeverity, Signal};

/// What one batch write did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Signals newly stored.
    pub inserted: u64,
    /// Their ids.
    pub inserted_ids: HashSet<Uuid>,
    /// Signals already stored (retries): acknowledged, not stored or counted again.
    pub duplicates: u64,
    pub incidents_opened: u64,
    pub incidents_updated: u64,
    /// Outbox rows written.
    pub analyses_requested: u64,
}

/// Class id of the advisory locks that serialise incident writes per trace (the two-key lock
/// space, distinct from the migration lock).
const INCIDENT_LOCK_CLASS: i32 = 0x5053; // "PS"

impl Store {
    /// Stores `signals` and tracks their incidents in one transaction; returns after the commit.
    pub async fn write_batch(&self, signals: &[Signal], triage: &Triage) -> Result<BatchOutcome, StoreError> {
        if signals.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let inserted = insert_signals(&tx, signals).await?;
        // Only newly stored signals count, each once even if repeated within the batch.
        let mut counted = HashSet::with_capacity(inserted.len());
        let fresh = signals.iter().filter(|s| inserted.contains(&s.signal_id) && counted.insert(s.signal_id));
        let activities = aggregate(fresh, triage);
        let mut outcome = BatchOutcome {
            inserted: inserted.len() as u64,
            duplicates: (signals.len() - inserted.len()) as u64,
            ..BatchOutcome::default()
        };
        outcome.inserted_ids = inserted;
        if !activities.is_empty() {
            track_incidents(&tx, &activities, triage, &mut outcome).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }
}

async fn track_incidents(
    tx: &tokio_postgres::Transaction<'_>,
    activities: &[TraceActivity],
    triage: &Triage,
    outcome: &mut BatchOutcome,
) -> Result<(), StoreError> {
    // Locks in ascending key order (activities are sorted so): concurrent batches wait for
    // each other per trace and can never deadlock.
    let mut keys: Vec<i32> = activities.iter().map(|a| a.lock_key).collect();
    keys.dedup();
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k",
        &[&INCIDENT_LOCK_CLASS, &keys],
    )
    .await?;

    let trace_ids: Vec<&str> = activities.iter().map(|a| a.trace_id.as_str()).collect();
    // The worker may have inserted duplicates for a trace (the original backend's race did):
    // the earliest incident of a trace is the one we keep updating.
    let existing: Vec<(String, Uuid)> = tx
        .query(
            "SELECT DISTINCT ON (trace_id) trace_id, id FROM incidents WHERE trace_id = ANY($1)
             ORDER BY trace_id, detected_at NULLS LAST, id",
            &[&trace_ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    let threshold = triage.rules.high_signals_to_critical as i64;
    let window = triage.analysis_window.as_secs_f64();
    let (updates, inserts): (Vec<&TraceActivity>, Vec<&TraceActivity>) =
        activities.iter().partition(|a| existing.iter().any(|(t, _)| *t == a.trace_id));
    let mut requested: Vec<(String, Uuid)> = Vec::new();

    if !updates.is_empty() {
        let ids: Vec<Uuid> = updates
            .iter()
            .filter_map(|a| existing.iter().find(|(t, _)| *t == a.trace_id).map(|(_, id)| *id))
            .collect();
        let columns = Columns::of(&updates);
        // Relative updates: the analysis worker may write the same row concurrently.
        let rows = tx
            .query(
                "UPDATE incidents AS i SET
                     error_count = coalesce(i.error_count, 0) + u.signals,
                     high_signal_count = i.high_signal_count + u.high,
                     affected_services = i.affected_services || ARRAY(
                         SELECT s FROM jsonb_array_elements_text(u.services) AS s
                         WHERE s <> ALL(i.affected_services))::varchar[],
                     severity = greatest(i.severity, u.severity::incidentseverity,
                         CASE WHEN $7::int8 > 0 AND i.high_signal_count + u.high >= $7::int8
                              THEN 'CRITICAL'::incidentseverity END),
                     last_signal_at = now(),
                     analysis_requested_at = CASE
                         WHEN u.requests AND (i.analysis_requested_at IS NULL
                              OR i.analysis_requested_at <= now() - make_interval(secs => $8::float8))
                         THEN now() ELSE i.analysis_requested_at END
                 FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::jsonb[], $5::text[], $6::bool[])
                      AS u(id, signals, high, services, severity, requests)
                 WHERE i.id = u.id
                 RETURNING i.trace_id, i.id, i.analysis_requested_at = now()",
                &[
                    &ids,
                    &columns.signals,
                    &columns.high,
                    &columns.services,
                    &columns.severity,
                    &columns.requests,
                    &threshold,
                    &window,
                ],
            )
            .await?;
        outcome.incidents_updated = rows.len() as u64;
        requested.extend(
            rows.iter().filter(|r| r.get::<_, Option<bool>>(2) == Some(true)).map(|r| (r.get(0), r.get(1))),
        );
    }

    if !inserts.is_empty() {
        let columns = Columns::of(&inserts);
        let traces: Vec<&str> = inserts.iter().map(|a| a.trace_id.as_str()).collect();
        let rows = tx
            .query(
                "INSERT INTO incidents (id, trace_id, status, severity, detected_at, affected_services,
                                        error_count, high_signal_count, last_signal_at, analysis_requested_at)
                 SELECT gen_random_uuid(), u.trace_id, 'OPEN',
                        greatest(u.severity::incidentseverity,
                                 CASE WHEN $7::int8 > 0 AND u.high >= $7::int8 THEN 'CRITICAL'::incidentseverity END),
                        now(), ARRAY(SELECT jsonb_array_elements_text(u.services))::varchar[],
                        u.signals, u.high, now(), CASE WHEN u.requests THEN now() END
                 FROM unnest($1::text[], $2::int8[], $3::int8[], $4::jsonb[], $5::text[], $6::bool[])
                      AS u(trace_id, signals, high, services, severity, requests)
                 RETURNING trace_id, id, analysis_requested_at IS NOT NULL",
                &[
                    &traces,
                    &columns.signals,
                    &columns.high,
                    &columns.services,
                    &columns.severity,
                    &columns.requests,
                    &threshold,
                ],
            )
            .await?;
        outcome.incidents_opened = rows.len() as u64;
        requested.extend(rows.iter().filter(|r| r.get::<_, bool>(2)).map(|r| (r.get(0), r.get(1))));
    }

    if !requested.is_empty() {
        let traces: Vec<&str> = requested.iter().map(|(t, _)| t.as_str()).collect();
        let incidents: Vec<Uuid> = requested.iter().map(|(_, id)| *id).collect();
        tx.execute(
            "INSERT INTO analysis_outbox (trace_id, incident_id) SELECT * FROM unnest($1::text[], $2::uuid[])",
            &[&traces, &incidents],
        )
        .await?;
        outcome.analyses_requested = requested.len() as u64;
    }
    Ok(())
}

/// The per-trace columns of an incident write, as arrays for `unnest`.
struct Columns {
    signals: Vec<i64>,
    high: Vec<i64>,
    services: Vec<serde_json::Value>,
    severity: Vec<&'static str>,
    requests: Vec<bool>,
}

impl Columns {
    fn of(activities: &[&TraceActivity]) -> Columns {
        Columns {
            signals: activities.iter().map(|a| a.signals).collect(),
            high: activities.iter().map(|a| a.high_signals).collect(),
            services: activities.iter().map(|a| json!(a.services)).collect(),
            severity: activities.iter().map(|a| IncidentSeverity::db_label(a.severity)).collect(),
            requests: activities.iter().map(|a| a.requests_analysis).collect(),
        }
    }
}
