//! What grows with traffic besides signals, expired by the rules of [`crate::model::lifecycle`]:
//! incidents nobody analysed once their signals are gone, any incident (with its analyses,
//! links and trace claim) and problems after `INCIDENT_RETENTION` without activity, delivered
//! outbox rows after `OUTBOX_RETENTION`.
//!
//! Incidents go by their time range first: a range due by [`Lifecycle::incident_range_sort`]
//! keeps the few that have not expired and is dropped whole (store/partitions/incidents.rs,
//! run by the maintenance before this). Those kept go here one by one, like problems and outbox rows: each statement deletes at
//! most `BATCH` rows, so a backlog (the first pass over a large old database) is worked off in
//! short transactions. The candidate scans use the `detected_at` index: no incident can have
//! expired before it was detected at the earlier of the two cut-offs.
//!
//! [`Lifecycle::incident_range_sort`]: crate::model::Lifecycle::incident_range_sort

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::partitions::lock_for_change;
use super::{Store, StoreError};

/// Rows per delete statement.
const BATCH: i64 = 5_000;

/// What one expiry pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expiry {
    /// Incident ranges emptied and dropped, and the incidents of them kept past the range.
    pub incident_ranges: u64,
    pub incidents_kept: u64,
    pub incidents: u64,
    pub analyses: u64,
    pub problems: u64,
    pub outbox_rows: u64,
    /// `signal_shared` rows no signal can refer to any more (store/shared.rs).
    pub shared: u64,
    /// `span_operations` rows not seen for longer than spans are kept.
    pub span_operations: u64,
    /// `span_dependencies` rows older than spans are kept.
    pub dependencies: u64,
}

/// An incident someone analysed or asked to (its signals are evidence): an analysis was
/// requested, or moved out of OPEN by a person (for `incidents` as `i`; the partial index
/// `incidents_analysed_idx` holds these)...
const ANALYSED_BY_REQUEST: &str = "(i.analysis_requested_at IS NOT NULL OR i.status <> 'OPEN')";
/// ...or the worker wrote an analysis of it. Not correlated: Citus runs no subquery over a
/// coordinator's table that refers to a distributed incident (store/citus/incidents.rs), but
/// reads this one once and sends its ids along. The NULL ids left out keep `NOT` true or false.
const ANALYSED_BY_WORKER: &str =
    "i.id IN (SELECT a.incident_id FROM analysis_results a WHERE a.incident_id IS NOT NULL)";

/// The traces whose signals are evidence, as long as their incident or problem is kept: those
/// of analysed incidents, and problems' representative traces.
pub(super) fn evidence_traces() -> String {
    format!(
        "SELECT i.trace_id FROM incidents i WHERE {ANALYSED_BY_REQUEST}
         UNION SELECT i.trace_id FROM incidents i WHERE {ANALYSED_BY_WORKER}
         UNION SELECT representative_trace_id FROM problems WHERE representative_trace_id IS NOT NULL"
    )
}

/// Whether incident `i` has expired at `$1` (now), by either rule: nobody analysed it and every
/// signal it counted has gone; or it has had no signal since `$2` (`INCIDENT_RETENTION` ago,
/// NULL: kept forever). Its signals' expiry as recorded at write time decides only the first:
/// a retention changed since would otherwise hold an analysed incident forever. A NULL `$1`
/// counts every signal as gone, whatever its retention: the size budget has dropped them.
pub(super) fn incident_expired() -> String {
    format!(
        "((coalesce(i.signals_expire_at < $1, $1 IS NULL) AND NOT {ANALYSED_BY_REQUEST} AND NOT {ANALYSED_BY_WORKER})
          OR coalesce(coalesce(i.last_signal_at, i.detected_at) < $2, false))"
    )
}

/// The tables whose incidents go one by one: those kept past their range, and what no range
/// holds. The ranges themselves are emptied whole (store/partitions/incidents.rs).
const ROW_BY_ROW: [&str; 2] = ["incidents_kept", "incidents_live_default"];

/// Up to `$4` expired incidents of `table` (only those detected before `$3`: none can have
/// expired later), with their analyses, links and trace claims.
fn expired_rows(table: &str) -> String {
    format!(
        "WITH doomed AS (
             SELECT id, trace_id, trace_key FROM {table} i WHERE i.detected_at < $3 AND {expired} LIMIT $4
         ),
         links AS (DELETE FROM incident_problems WHERE incident_id IN (SELECT id FROM doomed)),
         claims AS (DELETE FROM incident_traces WHERE trace_id IN (SELECT trace_id FROM doomed WHERE trace_key = trace_id)),
         analyses AS (DELETE FROM analysis_results WHERE incident_id IN (SELECT id FROM doomed) RETURNING 1),
         gone AS (DELETE FROM {table} WHERE id IN (SELECT id FROM doomed) RETURNING 1)
         SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM analyses)",
        expired = incident_expired()
    )
}

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
        let mut client = self.client().await?;
        let mut expiry = Expiry::default();
        // No incident expires before it was detected at the earlier of the two cut-offs.
        let detected_before = match (cutoffs.unanalysed_detected_before, cutoffs.inactive_since) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(detected_before) = detected_before {
            for table in ROW_BY_ROW {
                let sql = expired_rows(table);
                loop {
                    // The table's whole lock, taken before any trace claim: a batch under way
                    // read every partition of incidents when it started, so it has this one's
                    // lock and is waited for; a later one waits at its start, holding no claim
                    // (store/sql/write_batch.sql). Nothing here needs a parent's lock.
                    let tx = client.transaction().await?;
                    tx.batch_execute("SET LOCAL lock_timeout = '500ms'").await?;
                    lock_for_change(&tx, &format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).await?;
                    let row = tx
                        .query_one(&sql, &[&now, &cutoffs.inactive_since, &detected_before, &BATCH])
                        .await?;
                    tx.commit().await?;
                    let (incidents, analyses): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                    expiry.incidents += incidents as u64;
                    expiry.analyses += analyses as u64;
                    if incidents < BATCH || !in_budget() {
                        break;
                    }
                }
            }
        }
        if let Some(inactive_since) = cutoffs.inactive_since {
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
