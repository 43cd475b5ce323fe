//! `incidents`' time ranges (layout: migrations/0015): created ahead with `raw_signals`' own,
//! on the same grid, and emptied whole once the lifecycle says most of their incidents have
//! expired ([`crate::model::Lifecycle::incident_range_sort`]). The incidents of a range that
//! have not expired by then move to `incidents_kept` (their trace claims with them) and the
//! range is dropped: its expired incidents are never deleted one by one, so their expiry costs
//! the same on day 30 as on day 1 and leaves no half-empty index pages behind.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::types::ToSql;
use tracing::warn;

use super::plan::{ranges_to_create, RangePartition};
use super::{lock_for_change, take_lock, Turn};
use crate::model::{sort_early, RangeSort};
use crate::store::bootstrap::quote_identifier;
use crate::store::citus::parts::SWEEP_AFTER;
use crate::store::citus::Layout;
use crate::store::lifecycle::incident_expired;
use crate::store::{Store, StoreError};

/// How long a range's drop waits, on Citus with the incidents distributed, for the parts of
/// batches to commit at the nodes after their coordinator transactions (milliseconds, unless a
/// crash left one prepared: the sweep decides it, and the drop waits for the next pass).
const PARTS_SETTLE: Duration = Duration::from_secs(10);

/// Ranges are named `incidents_p20261205` (under `incidents_live`; on Citus, under `incidents`).
const NAME_PREFIX: &str = "incidents";

/// What emptying the expired ranges did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeExpiry {
    /// Ranges dropped.
    pub ranges: u64,
    /// Incidents dropped with them, and the analyses of those.
    pub incidents: u64,
    pub analyses: u64,
    /// Incidents moved to `incidents_kept`.
    pub kept: u64,
    /// Ranges counted for an early sort and left to the longest retention: too many of their
    /// incidents are still live.
    pub deferred: u64,
}

/// The ranges, each with whether an early sort was deferred (migrations/0016).
async fn read_ranges(client: &impl GenericClient) -> Result<Vec<(RangePartition, bool)>, StoreError> {
    let rows = client
        .query(
            "SELECT name, starts, ends, deferred FROM incident_partitions
             WHERE to_regclass(quote_ident(name)) IS NOT NULL ORDER BY starts",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let range = RangePartition {
                name: row.try_get(0)?,
                starts: Some(row.try_get(1)?),
                ends: row.try_get(2)?,
                legacy: false,
                mixed: false,
                keyed: false,
                types: Vec::new(),
            };
            Ok((range, row.try_get(3)?))
        })
        .collect()
}

/// Creates the incident ranges missing from the interval holding `now` to two intervals ahead,
/// in the caller's transaction (which holds the maintenance lock). Incidents the default
/// partition holds in a new range (a clock that ran ahead) move to `incidents_kept` first:
/// ATTACH refuses a range whose rows sit in the default.
pub(super) async fn ensure_ranges(
    tx: &Transaction<'_>,
    interval: crate::model::PartitionInterval,
    now: DateTime<Utc>,
    layout: Layout,
) -> Result<Vec<String>, StoreError> {
    let existing: Vec<RangePartition> = read_ranges(tx).await?.into_iter().map(|(range, _)| range).collect();
    let missing = ranges_to_create(&existing, interval, now);
    if !missing.is_empty() {
        // ATTACH takes the default partition's whole lock; taken first, before any trace claim
        // is touched: a batch under way read the default when it started, so it is waited
        // for, and a later one waits at its start, holding no claim.
        lock_for_change(tx, "LOCK TABLE incidents_live_default IN ACCESS EXCLUSIVE MODE").await?;
    }
    let mut created = Vec::new();
    for range in missing {
        let name = range.name_under(NAME_PREFIX);
        move_to_kept(
            tx,
            "incidents_live_default",
            "i.detected_at >= $1 AND i.detected_at < $2",
            "",
            &[&range.starts, &range.ends],
        )
        .await?;
        // Bounds as literals (DDL takes no parameters), from our own timestamps.
        let table = quote_identifier(&name);
        // One statement at a time: Citus refuses a string of several once the table is
        // distributed.
        if let Some(mode) = layout.incident_range_mode() {
            tx.batch_execute(mode).await?;
        }
        tx.batch_execute(&format!("CREATE TABLE {table} (LIKE incidents INCLUDING DEFAULTS)")).await?;
        tx.batch_execute(&layout.attach_incident_range(
            &table,
            &range.starts.to_rfc3339(),
            &range.ends.to_rfc3339(),
        ))
        .await?;
        tx.execute(
            "INSERT INTO incident_partitions (name, starts, ends) VALUES ($1, $2, $3)",
            &[&name, &range.starts, &range.ends],
        )
        .await?;
        created.push(name);
    }
    Ok(created)
}

/// Moves the incidents of `table` (a leaf of `incidents_live`) that match `condition` (on `i`,
/// with `params`; it bounds `detected_at` to the leaf's range, so that the move reads only that
/// leaf) to `incidents_kept`, their trace claims first (those that match `claims` too, on `c`).
/// Returns how many moved.
async fn move_to_kept(
    tx: &Transaction<'_>,
    table: &str,
    condition: &str,
    claims: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    tx.execute(
        &format!(
            "UPDATE incident_traces c SET kept = true FROM {table} i
             WHERE i.trace_key = i.trace_id AND c.trace_id = i.trace_id AND {condition} {claims}"
        ),
        params,
    )
    .await?;
    Ok(tx
        .execute(&format!("UPDATE incidents i SET kept = true WHERE NOT i.kept AND {condition}"), params)
        .await?)
}

/// What sorting a range's incidents detected from some time did.
struct Sorted {
    /// Moved to `incidents_kept`.
    kept: u64,
    /// Left to go with the range.
    left: u64,
    /// Of those, the ones whose trace claims were removed (the rest had none).
    unclaimed: u64,
    /// Their analyses, removed.
    analyses: u64,
}

/// Which incidents of a range a sort reads.
struct Window<'a> {
    table: &'a str,
    from: DateTime<Utc>,
    ends: DateTime<Utc>,
    /// Only these traces' (sorted): one shard's on Citus with the incidents distributed, so
    /// that every statement of the sort is planned for that one shard and its colocated claims
    /// (Citus refuses `FOR UPDATE` over several).
    traces: Option<&'a [String]>,
}

impl Window<'_> {
    /// The condition on the incidents `i`, its parameters numbered from `first`: the window's
    /// bounds, then its traces.
    fn condition(&self, first: usize) -> String {
        let bounds = format!("i.detected_at >= ${first} AND i.detected_at < ${}", first + 1);
        match self.traces {
            Some(_) => format!("{bounds} AND i.trace_id = ANY(${})", first + 2),
            None => bounds,
        }
    }

    /// What [`Window::condition`] adds on the claims `c` joined to them: the same traces, which
    /// Citus needs written on the claims too to plan for one shard.
    fn claims(&self, first: usize) -> String {
        match self.traces {
            Some(_) => format!("AND c.trace_id = ANY(${})", first + 2),
            None => String::new(),
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.from, &self.ends];
        if let Some(traces) = &self.traces {
            params.push(traces);
        }
        params
    }
}

impl Sorted {
    /// Adds the incidents kept and the analyses removed to `expiry`; returns those left.
    fn count_into(&self, expiry: &mut RangeExpiry) -> u64 {
        expiry.kept += self.kept;
        expiry.analyses += self.analyses;
        self.left
    }
}

/// Sorts the incidents of `window`: those that have not expired ([`incident_expired`], with
/// `signals_gone_before` and `inactive_since`) move to `incidents_kept`, the rest lose their
/// claims, problem links and analyses, left for the range's drop. With `lock`, their claims
/// are locked first, in trace order, as a batch takes them.
async fn sort_range(
    tx: &Transaction<'_>,
    window: &Window<'_>,
    signals_gone_before: Option<DateTime<Utc>>,
    inactive_since: Option<DateTime<Utc>>,
    lock: bool,
) -> Result<Sorted, StoreError> {
    let table = window.table;
    if lock {
        tx.query(
            &format!(
                "SELECT 1 FROM incident_traces c JOIN {table} i ON i.trace_key = i.trace_id AND c.trace_id = i.trace_id
                 WHERE {} {} ORDER BY c.trace_id FOR UPDATE OF c",
                window.condition(1),
                window.claims(1)
            ),
            &window.params(),
        )
        .await?;
    }
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&signals_gone_before, &inactive_since];
    params.extend(window.params());
    let condition = format!("{} AND NOT {}", window.condition(3), incident_expired());
    let kept = move_to_kept(tx, table, &condition, &window.claims(3), &params).await?;
    // A claim goes only if it points at one of these incidents: one in `incidents_kept` or in
    // another range is its trace's incident now.
    let row = tx
        .query_one(
            &format!(
                "WITH doomed AS (SELECT id, trace_id, trace_key, detected_at FROM {table} i WHERE {doomed}),
                      links AS (DELETE FROM incident_problems WHERE incident_id IN (SELECT id FROM doomed)),
                      claims AS (DELETE FROM incident_traces c USING doomed d
                                 WHERE d.trace_key = d.trace_id AND c.trace_id = d.trace_id {claims}
                                   AND c.detected_at = d.detected_at AND NOT c.kept RETURNING 1),
                      analyses AS (DELETE FROM analysis_results WHERE incident_id IN (SELECT id FROM doomed) RETURNING 1)
                 SELECT (SELECT count(*) FROM doomed), (SELECT count(*) FROM claims), (SELECT count(*) FROM analyses)",
                doomed = window.condition(1),
                claims = window.claims(1),
            ),
            &window.params(),
        )
        .await?;
    let count = |n: usize| -> Result<u64, StoreError> { Ok(row.try_get::<_, i64>(n)?.max(0) as u64) };
    Ok(Sorted { kept, left: count(0)?, unclaimed: count(1)?, analyses: count(2)? })
}

/// The traces of `table`'s incidents detected in [`from`, `ends`), grouped by the shard of
/// the claims that holds them, each group sorted.
async fn traces_by_shard(
    tx: &Transaction<'_>,
    table: &str,
    from: DateTime<Utc>,
    ends: DateTime<Utc>,
) -> Result<Vec<Vec<String>>, StoreError> {
    let rows = tx
        .query(
            &format!(
                "WITH traces AS (SELECT DISTINCT trace_id FROM {table} i WHERE i.detected_at >= $1 AND i.detected_at < $2)
                 SELECT array_agg(t.trace_id::text ORDER BY t.trace_id)
                 FROM traces t JOIN pg_dist_shard s ON s.logicalrelid = 'incident_traces'::regclass
                  AND worker_hash(t.trace_id) BETWEEN s.shardminvalue::int AND s.shardmaxvalue::int
                 GROUP BY s.shardid ORDER BY s.shardid"
            ),
            &[&from, &ends],
        )
        .await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

/// Whether range `name` is still there: another instance may have dropped it since it was
/// listed.
async fn present(tx: &Transaction<'_>, name: &str) -> Result<bool, StoreError> {
    Ok(tx.query_one("SELECT to_regclass(quote_ident($1)) IS NOT NULL", &[&name]).await?.try_get(0)?)
}

/// The earliest time a claim unseen by a sort starting now can carry: a claim's time is its
/// batch's `now()`, the start of its transaction, so one made later by a batch under way or
/// yet to come is no earlier than the oldest transaction open on this database (a session
/// that is idle now starts later). `None`: a session in a transaction, of a role that could
/// claim, is not ours to see (another role, and ours lacks `pg_read_all_stats`), so its start
/// could be any time.
///
/// With the incidents distributed (`at_nodes`), a batch's claims are made at the nodes and
/// become visible there when its parts commit, after its coordinator transaction has ended:
/// no earlier than [`SWEEP_AFTER`] ago either, far longer than a batch's transaction lasts (a
/// part left prepared longer by a crash is waited for by the drop, below).
async fn unseen_claims_since(
    tx: &Transaction<'_>,
    at_nodes: bool,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let margin = if at_nodes { SWEEP_AFTER.as_secs_f64() } else { 0.0 };
    Ok(tx
        .query_one(
            // A hidden session's start is hidden, but not whether it is in a transaction:
            // pg_locks shows every transaction's lock on its own virtual id, whoever runs it.
            "SELECT CASE WHEN NOT EXISTS (
                        SELECT 1 FROM pg_stat_activity a
                        JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'virtualxid' AND l.granted
                        WHERE a.datname = current_database() AND a.backend_type IS NULL
                          AND has_table_privilege(a.usesysid, 'incident_traces', 'INSERT'))
                    THEN least((SELECT min(xact_start) FROM pg_stat_activity
                                WHERE datname = current_database() AND backend_type = 'client backend'),
                               now() - make_interval(secs => $1)) END",
            &[&margin],
        )
        .await?
        .try_get(0)?)
}

/// The transactions prepared at the worker nodes in this database, by name: on Citus, a
/// batch's parts (ours, or Citus's own) between its coordinator's commit and theirs.
async fn prepared_at_nodes(tx: &Transaction<'_>) -> Result<HashSet<String>, StoreError> {
    let rows = tx
        .query(
            "SELECT nodename || ':' || nodeport, success, result FROM run_command_on_workers(
                 $$SELECT coalesce(string_agg(gid, ' '), '') FROM pg_prepared_xacts WHERE database = current_database()$$)",
            &[],
        )
        .await?;
    let mut names = HashSet::new();
    for row in rows {
        let (node, success, result): (String, bool, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if !success {
            return Err(StoreError::Unavailable(
                format!("listing the prepared transactions at {node}: {result}").into(),
            ));
        }
        names.extend(result.split_whitespace().map(str::to_owned));
    }
    Ok(names)
}

/// Waits, at most [`PARTS_SETTLE`], until the transactions prepared at the nodes now are
/// decided: the claims and incidents of the batches whose coordinator transactions have ended
/// are then visible. Whether they were.
async fn parts_settled(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    let started = Instant::now();
    let mut pending = prepared_at_nodes(tx).await?;
    while !pending.is_empty() {
        if started.elapsed() >= PARTS_SETTLE {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = prepared_at_nodes(tx).await?;
        pending.retain(|name| now.contains(name));
    }
    Ok(true)
}

impl Store {
    /// Empties every incident range the lifecycle says is due at `now`, oldest first, for at
    /// most `budget`; `None`: another instance holds the maintenance lock.
    pub async fn expire_incident_ranges(
        &self,
        now: DateTime<Utc>,
        turn: Turn,
        budget: Duration,
    ) -> Result<Option<RangeExpiry>, StoreError> {
        let lifecycle = self.settings.lifecycle;
        let due: Vec<(RangePartition, RangeSort)> = read_ranges(&self.client().await?)
            .await?
            .into_iter()
            .filter_map(|(range, deferred)| match lifecycle.incident_range_sort(range.ends, now) {
                RangeSort::NotYet => None,
                RangeSort::IfFewKept if deferred => None,
                sort => Some((range, sort)),
            })
            .collect();
        self.sort_ranges(due, Some(now), now, turn, budget).await
    }

    /// The size budget's step between healthy traffic and evidence (`enforce_size_budget`):
    /// by then it has dropped the signals of every range that has ended at `now`, evidence
    /// aside, so their incidents are sorted as if every signal had gone, whatever its type's
    /// retention: the unanalysed ones go with their range, the analysed ones are kept.
    pub(super) async fn sort_incident_ranges_for_size(
        &self,
        now: DateTime<Utc>,
        turn: Turn,
    ) -> Result<Option<RangeExpiry>, StoreError> {
        let ended: Vec<(RangePartition, RangeSort)> = read_ranges(&self.client().await?)
            .await?
            .into_iter()
            .filter(|(range, _)| range.ends <= now)
            .map(|(range, _)| (range, RangeSort::Now))
            .collect();
        self.sort_ranges(ended, None, now, turn, Duration::MAX).await
    }

    /// Sorts `ranges` in order, for at most `budget`: an incident whose signals are all gone
    /// before `signals_gone_before` (`None`: all gone, whatever their retention) unless it was
    /// analysed, or that has been inactive for `INCIDENT_RETENTION` at `now`, goes with its
    /// range; the rest move to `incidents_kept`.
    ///
    /// Two transactions per range. The first sorts its incidents under their trace claims'
    /// row locks, taken in trace order as the batch write takes them: a batch under way finishes
    /// first, a later one waits and then finds the claim moved or gone (a new incident). No
    /// table lock is taken there: sorting a large range takes long, and ingest goes on. The
    /// second takes `incidents` whole, sorts again what batches did to the range meanwhile (a
    /// range still current when sorted receives new claims: the clock of the size pass, or a
    /// batch that started before the range ended and waited for a claim the first removed),
    /// and drops the range, which by then holds only expired incidents nothing refers to;
    /// should it time out, the next pass sorts again and drops it then.
    ///
    /// On Citus with the incidents distributed, the first is one transaction per shard of the
    /// claims, and the second waits for the batches' parts still being committed at the nodes
    /// before it sorts again.
    async fn sort_ranges(
        &self,
        ranges: Vec<(RangePartition, RangeSort)>,
        signals_gone_before: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        turn: Turn,
        budget: Duration,
    ) -> Result<Option<RangeExpiry>, StoreError> {
        let started = Instant::now();
        let inactive_since = self.settings.lifecycle.row_cutoffs(now).inactive_since;
        let mut client = self.client().await?;
        let mut expiry = RangeExpiry::default();
        'ranges: for (range, sort) in ranges {
            if started.elapsed() >= budget {
                break;
            }
            let table = quote_identifier(&range.name);
            let starts = range.starts.unwrap_or(range.ends);
            let tx = client.transaction().await?;
            if !take_lock(&tx, turn).await? {
                return Ok((expiry != RangeExpiry::default()).then_some(expiry));
            }
            if !present(&tx, &range.name).await? {
                tx.commit().await?;
                continue;
            }
            let distributed = self.settings.layout.incidents_distributed();
            let since = unseen_claims_since(&tx, distributed).await?;
            if sort == RangeSort::IfFewKept {
                // Counted once, without locks: a batch that reaches one of these incidents
                // meanwhile makes it live, which the sort below sees; the count only decides
                // whether sorting now is worth it.
                let row = tx
                    .query_one(
                        &format!(
                            "SELECT count(*) FILTER (WHERE NOT {expired}), count(*) FROM {table} i",
                            expired = incident_expired()
                        ),
                        &[&signals_gone_before, &inactive_since],
                    )
                    .await?;
                let (live, total): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                if !sort_early(live as u64, total as u64) {
                    tx.execute(
                        "UPDATE incident_partitions SET deferred = true WHERE name = $1",
                        &[&range.name],
                    )
                    .await?;
                    tx.commit().await?;
                    expiry.deferred += 1;
                    continue;
                }
            }
            let whole = Window { table: &table, from: starts, ends: range.ends, traces: None };
            let mut incidents = 0;
            if distributed {
                // One transaction per shard of the claims, each locking only that shard's, in
                // trace order as a batch's part at its node does: a batch waits for at most
                // one of them, and none of them for a batch that waits in turn (the batch's
                // parts at several nodes hold their claims together, so a sort holding claims
                // of several shards could wait for one of its parts while another waited for
                // the sort). The first shard's in the transaction that listed them: a range of
                // one shard's traces is sorted as on one node.
                let mut groups = traces_by_shard(&tx, &table, starts, range.ends).await?.into_iter();
                if let Some(traces) = groups.next() {
                    let shard = Window { traces: Some(&traces), ..whole };
                    let sorted = sort_range(&tx, &shard, signals_gone_before, inactive_since, true).await?;
                    incidents += sorted.count_into(&mut expiry);
                }
                tx.commit().await?;
                for traces in groups {
                    let tx = client.transaction().await?;
                    if !take_lock(&tx, turn).await? {
                        return Ok(Some(expiry));
                    }
                    if !present(&tx, &range.name).await? {
                        tx.commit().await?;
                        continue 'ranges;
                    }
                    let shard = Window { traces: Some(&traces), ..whole };
                    let sorted = sort_range(&tx, &shard, signals_gone_before, inactive_since, true).await?;
                    tx.commit().await?;
                    incidents += sorted.count_into(&mut expiry);
                }
            } else {
                let sorted = sort_range(&tx, &whole, signals_gone_before, inactive_since, true).await?;
                tx.commit().await?;
                incidents += sorted.count_into(&mut expiry);
            }

            let tx = client.transaction().await?;
            if !take_lock(&tx, turn).await? {
                return Ok(Some(expiry));
            }
            // Every transaction that touches an incident has its lock on `incidents` from its
            // start (a batch's one statement, or its first on Citus), before any claim: those
            // under way finish first, holding nothing this waits for; later ones wait holding
            // nothing. What they did since the sort above is then sorted again: only incidents
            // detected from `since` can be new to it.
            lock_for_change(&tx, "LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE").await?;
            if distributed && !parts_settled(&tx).await? {
                warn!(
                    range = %range.name,
                    "a transaction prepared at a Citus node was not decided within {PARTS_SETTLE:?}: the incident range is dropped at a later pass, once it is"
                );
                tx.rollback().await?;
                return Ok(Some(expiry));
            }
            let from = match since {
                Some(since) => since.max(starts),
                None => {
                    warn!(
                        range = %range.name,
                        "a transaction of another role was open when this incident range was sorted, and its start is hidden from ours: the range's drop reads the whole range again under its lock on incidents (seconds per million incidents); GRANT pg_read_all_stats to the service's role"
                    );
                    starts
                }
            };
            // Under that lock no batch is under way, and on Citus, once the parts prepared at
            // the nodes are decided, none holds a claim: the claims are not locked again there
            // (Citus refuses `FOR UPDATE` over several shards).
            let late = Window { from, ..whole };
            let late = sort_range(&tx, &late, signals_gone_before, inactive_since, !distributed).await?;
            tx.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).await?;
            tx.execute("DELETE FROM incident_partitions WHERE name = $1", &[&range.name]).await?;
            tx.commit().await?;
            late.count_into(&mut expiry);
            // The first sort counted every incident it left; the incidents it never saw are
            // those whose claims this one removed.
            incidents += late.unclaimed;
            expiry.ranges += 1;
            expiry.incidents += incidents;
        }
        Ok(Some(expiry))
    }
}
