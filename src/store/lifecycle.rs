//! What grows with traffic besides signals, expired in batches by the rules of
//! [`crate::model::lifecycle`]: incidents nobody analysed once their signals are gone, analysed
//! ones (with their analyses) and problems after `INCIDENT_RETENTION` without activity,
//! delivered outbox rows after `OUTBOX_RETENTION`. Links of incidents to problems go with
//! either (ON DELETE CASCADE).
//!
//! Each statement deletes at most `BATCH` rows, so a backlog (the first pass over a large old
//! database) is worked off in short transactions that never hold many locks. The candidate
//! scans use the `detected_at` index: an incident cannot have outlived its signals before the
//! shortest retention has passed since it was detected, nor been inactive for
//! `INCIDENT_RETENTION` before that much time has passed since then.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

/// Rows per delete statement.
const BATCH: i64 = 5_000;

/// What one expiry pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expiry {
    pub incidents: u64,
    pub analyses: u64,
    pub problems: u64,
    pub outbox_rows: u64,
    /// `signal_shared` rows no signal can refer to any more (store/shared.rs).
    pub shared: u64,
}

/// An incident someone analysed or asked to (its signals are evidence): an analysis was
/// requested, or moved out of OPEN by a person (for `incidents` as `i`; the partial index
/// `incidents_analysed_idx` holds these)...
const ANALYSED_BY_REQUEST: &str = "(i.analysis_requested_at IS NOT NULL OR i.status <> 'OPEN')";
/// ...or the worker wrote an analysis of it.
const ANALYSED_BY_WORKER: &str = "EXISTS (SELECT 1 FROM analysis_results a WHERE a.incident_id = i.id)";

/// The traces whose signals are evidence, as long as their incident or problem is kept: those
/// of analysed incidents, and problems' representative traces.
pub(super) fn evidence_traces() -> String {
    format!(
        "SELECT i.trace_id FROM incidents i WHERE {ANALYSED_BY_REQUEST}
         UNION SELECT i.trace_id FROM incidents i WHERE {ANALYSED_BY_WORKER}
         UNION SELECT representative_trace_id FROM problems WHERE representative_trace_id IS NOT NULL"
    )
}

/// An incident never analysed goes once every signal it counted has expired.
fn unanalysed_expired() -> String {
    format!(
        "WITH doomed AS (
             SELECT id FROM incidents i
             WHERE detected_at < $1 AND signals_expire_at < $2
               AND NOT {ANALYSED_BY_REQUEST} AND NOT {ANALYSED_BY_WORKER}
             LIMIT $3 FOR UPDATE SKIP LOCKED
         )
         DELETE FROM incidents WHERE id IN (SELECT id FROM doomed)"
    )
}

// Any incident, analysed or not, without a signal for INCIDENT_RETENTION, with its analyses
// (its evidence goes at the next pass; signals of it still within their own retention stay as
// noise until then). Not its signals' expiry as recorded at write time: a retention changed
// since would hold the incident forever.
const INACTIVE: &str = "
WITH doomed AS (
    SELECT id FROM incidents
    WHERE detected_at < $1 AND coalesce(last_signal_at, detected_at) < $1
    LIMIT $2 FOR UPDATE SKIP LOCKED
),
analyses AS (
    DELETE FROM analysis_results WHERE incident_id IN (SELECT id FROM doomed) RETURNING 1
),
gone AS (
    DELETE FROM incidents WHERE id IN (SELECT id FROM doomed) RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM analyses)";

const PROBLEMS: &str = "
DELETE FROM problems WHERE id IN (SELECT id FROM problems WHERE last_seen < $1 LIMIT $2)";

const OUTBOX: &str = "
DELETE FROM analysis_outbox WHERE id IN (
    SELECT id FROM analysis_outbox WHERE status <> 'pending' AND sent_at < $1 LIMIT $2)";

impl Store {
    /// Deletes what the lifecycle says has expired at `now`, in batches, for at most `budget`
    /// (a pass stops starting new batches then; the rest waits for the next pass).
    pub async fn expire_rows(&self, now: DateTime<Utc>, budget: Duration) -> Result<Expiry, StoreError> {
        let started = Instant::now();
        let in_budget = || started.elapsed() < budget;
        let cutoffs = self.settings.lifecycle.row_cutoffs(now);
        let client = self.client().await?;
        let mut expiry = Expiry::default();
        if let Some(detected_before) = cutoffs.unanalysed_detected_before {
            let unanalysed = unanalysed_expired();
            loop {
                let n = client.execute(&unanalysed, &[&detected_before, &now, &BATCH]).await?;
                expiry.incidents += n;
                if n < BATCH as u64 || !in_budget() {
                    break;
                }
            }
        }
        if let Some(inactive_since) = cutoffs.inactive_since {
            loop {
                let row = client.query_one(INACTIVE, &[&inactive_since, &BATCH]).await?;
                let (incidents, analyses): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                expiry.incidents += incidents as u64;
                expiry.analyses += analyses as u64;
                if incidents < BATCH || !in_budget() {
                    break;
                }
            }
            loop {
                let n = client.execute(PROBLEMS, &[&inactive_since, &BATCH]).await?;
                expiry.problems += n;
                if n < BATCH as u64 || !in_budget() {
                    break;
                }
            }
        }
        if let Some(sent_before) = cutoffs.outbox_sent_before {
            loop {
                let n = client.execute(OUTBOX, &[&sent_before, &BATCH]).await?;
                expiry.outbox_rows += n;
                if n < BATCH as u64 || !in_budget() {
                    break;
                }
            }
        }
        Ok(expiry)
    }
}
