//! `raw_signals`' time partitions (layout: migrations/0007): reading the recorded ones,
//! creating new ones ahead of time, emptying the default partition when a new range claims its
//! rows or they expire, and dropping expired partitions; `incidents`' ranges (incidents.rs).
//!
//! Every change runs in a transaction holding the maintenance advisory lock, so several
//! instances never do the same work twice, and with a short `lock_timeout`: a change that
//! would wait behind a long query gives up and is retried by the next pass (after a few
//! attempts in this one, for the locks batches hold: [`lock_for_change`]), rather than queueing
//! every insert behind it. On one node new partitions are built detached and then attached,
//! which locks the parent only against other schema changes (SHARE UPDATE EXCLUSIVE), never
//! against inserts or reads; on Citus they are created attached (`create_range` says why),
//! which takes the parent's whole lock. Dropping one, or detaching the default partition, takes
//! its parent's ACCESS EXCLUSIVE lock for the moment the catalog changes. On Citus each of these
//! transactions runs on one connection per worker (`Layout::partition_change_mode`).

mod evidence;
mod incidents;
mod plan;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::error::SqlState;
use tracing::debug;

pub use incidents::RangeExpiry;
pub use plan::{expired, leaf_name, ranges_to_create, size_drops, Bounds, Expired, NewRange, RangePartition};

use super::activity::mark_stale;
use super::bootstrap::quote_identifier;
use super::citus::{keyed_bound, keyed_by_type, Layout};
use super::{StorageSettings, Store, StoreError};
use crate::model::SignalType;

/// Arbitrary but fixed, and distinct from the migration lock: serialises partition changes.
pub const MAINTENANCE_LOCK_KEY: i64 = 0x7072_6f64_7061_7274; // "prodpart"

/// How long a schema change waits for a table lock before giving up until the next pass.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '500ms'";

/// What [`Store::ensure_partitions`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Created {
    /// Names of the range partitions of `raw_signals` created.
    pub partitions: Vec<String>,
    /// Names of the ranges of `incidents` created (incidents.rs).
    pub incident_ranges: Vec<String>,
    /// Rows the default partition held that moved into a partition (or stayed in the default).
    pub default_rows_kept: u64,
    /// Rows of the default partition past their retention, dropped with it.
    pub default_rows_expired: u64,
}

/// One partition expired by [`Store::drop_expired_partitions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub name: String,
    /// The type whose rows it held; `None`: the table from before partitioning (every type) or
    /// an empty range partition.
    pub signal_type: Option<SignalType>,
    /// The table from before partitioning.
    pub legacy: bool,
    /// Disk bytes freed (heap, indexes, TOAST).
    pub bytes: i64,
    /// Evidence rows kept in its place (0: dropped whole).
    pub kept_signals: u64,
    pub reason: DropReason,
}

/// Why a partition was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Past its retention (or its evidence past its incidents').
    Age,
    /// The database was over `RETENTION_MAX_DATABASE_SIZE`.
    Size,
}

/// What one size pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SizePass {
    /// `pg_database_size` before and after.
    pub bytes_before: i64,
    pub bytes_after: i64,
    pub dropped: Vec<Dropped>,
    /// Incident ranges sorted once their signals had been dropped (their unanalysed incidents
    /// dropped with them).
    pub incident_ranges: RangeExpiry,
}

enum DropStep {
    Dropped(Dropped),
    /// Nothing to do: another instance dropped it after it was listed, or it still holds
    /// evidence.
    Unchanged,
    /// Another instance holds the maintenance lock: it is doing this pass.
    Busy,
}

/// Whether a pass waits for another instance's (start-up: the partitions must exist before
/// serving; a pass run by hand) or skips when one is running (the periodic job: that instance
/// does the work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Wait,
    SkipIfBusy,
}

pub(crate) async fn take_lock(tx: &Transaction<'_>, turn: Turn) -> Result<bool, StoreError> {
    let took = match turn {
        Turn::Wait => {
            tx.batch_execute("SET LOCAL lock_timeout = '60s'").await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MAINTENANCE_LOCK_KEY]).await?;
            true
        }
        Turn::SkipIfBusy => tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&MAINTENANCE_LOCK_KEY])
            .await?
            .try_get(0)?,
    };
    tx.batch_execute(LOCK_TIMEOUT).await?;
    Ok(took)
}

/// A transaction that changes the partitions of `raw_signal_rows`, in the mode the layout
/// needs for it (`Layout::partition_change_mode`).
pub(crate) async fn change_transaction(
    client: &mut deadpool_postgres::Client,
    layout: Layout,
) -> Result<Transaction<'_>, StoreError> {
    let tx = client.transaction().await?;
    if let Some(mode) = layout.partition_change_mode() {
        tx.batch_execute(mode).await?;
    }
    Ok(tx)
}

/// How long each attempt of [`lock_for_change`] waits, in turn, and how long the queue behind
/// it flows between two attempts.
const LOCK_ATTEMPTS_MS: [u32; 6] = [500, 1000, 2000, 4000, 4000, 4000];
const BETWEEN_LOCK_ATTEMPTS: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs `statement` (one that takes a table lock ingest may hold: `LOCK TABLE …`), asking
/// again after a lock timeout, each attempt waiting longer ([`LOCK_ATTEMPTS_MS`]): while a
/// change waits for its lock, every batch that comes after queues behind it, so the first
/// waits are short; but the batches of a slow phase (two-phase commits over Citus workers
/// under load) each hold the lock longer than that, and new ones take it between two short
/// attempts, so only a longer wait gets it, rather than the step losing its turn until the
/// next pass. The transaction's `lock_timeout` is restored after; the last timeout is
/// returned.
pub(crate) async fn lock_for_change(tx: &Transaction<'_>, statement: &str) -> Result<(), StoreError> {
    let timeout: String = tx.query_one("SELECT current_setting('lock_timeout')", &[]).await?.try_get(0)?;
    for (attempt, wait_ms) in LOCK_ATTEMPTS_MS.into_iter().enumerate() {
        tx.batch_execute(&format!("SAVEPOINT lock_for_change; SET LOCAL lock_timeout = '{wait_ms}ms'"))
            .await?;
        match tx.batch_execute(statement).await {
            Ok(()) => break,
            Err(why)
                if attempt + 1 < LOCK_ATTEMPTS_MS.len()
                    && why.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) =>
            {
                // Also undoes the SET LOCAL.
                tx.batch_execute("ROLLBACK TO SAVEPOINT lock_for_change").await?;
                debug!(attempt, wait_ms, statement, "a table lock timed out; asking again");
                tokio::time::sleep(BETWEEN_LOCK_ATTEMPTS).await;
            }
            Err(why) => return Err(why.into()),
        }
    }
    tx.execute("SELECT set_config('lock_timeout', $1, true)", &[&timeout]).await?;
    Ok(tx.batch_execute("RELEASE SAVEPOINT lock_for_change").await?)
}

/// Takes `table` and its parent (the range holding it, or `raw_signal_rows`) for a change that
/// detaches or drops it, with [`lock_for_change`]'s longer and longer waits: every insert routed
/// to it holds both until its batch commits (on Citus, its two-phase commit over the workers),
/// so batches that overlap, each slower than one short wait, hold them without a gap. Parent
/// first, as an insert takes them.
pub(super) async fn lock_with_parent(tx: &Transaction<'_>, table: &str) -> Result<(), StoreError> {
    let sql = "SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = to_regclass(quote_ident($1))";
    let parent: Option<String> = match tx.query_opt(sql, &[&table]).await? {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    };
    let tables: Vec<String> = parent.into_iter().chain([quote_identifier(table)]).collect();
    lock_for_change(tx, &format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", tables.join(", "))).await
}

/// The parent of every signal partition, alone: a change of its partitions waits for the
/// inserts under way, which hold it, and not for each partition's readers.
pub(crate) const SIGNALS_PARENT: &str = "LOCK TABLE ONLY raw_signal_rows IN ACCESS EXCLUSIVE MODE";

/// What the evidence is read from (`lifecycle::evidence_traces`), taken in share mode before an
/// expiry or a partition check changes anything: a read of them queues behind a change of the
/// incidents waiting for its own lock (the row expiry, which runs beside a pass, waits behind
/// batches), and would fail on the short lock timeout, the locks this transaction already holds
/// possibly among those the change waits for.
const EVIDENCE_SOURCES: &str = "LOCK TABLE incidents, analysis_results, problems IN ACCESS SHARE MODE";

/// Whether the recorded partition `p` is one table holding every type (`RangePartition::mixed`).
const MIXED: &str = "(p.legacy OR (to_regclass(quote_ident(p.name)) IS NOT NULL AND NOT EXISTS
     (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(quote_ident(p.name)))))";

/// Whether `p`'s type partition of type `t` exists.
const LEAF: &str = "to_regclass(quote_ident(p.name || '_' || t::text)) IS NOT NULL";

static PARTITIONS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT p.name, p.starts, p.ends, p.legacy,
                ARRAY(SELECT t::text FROM unnest(enum_range(NULL::signaltypeenum)) AS t WHERE {MIXED} OR {LEAF}),
                {MIXED}, to_regclass(quote_ident(p.name)) IS NULL
         FROM raw_signal_partitions p
         -- On Citus a range is only recorded, its type partitions hang from raw_signal_rows.
         WHERE to_regclass(quote_ident(p.name)) IS NOT NULL
            OR EXISTS (SELECT 1 FROM unnest(enum_range(NULL::signaltypeenum)) AS t WHERE {LEAF})
         ORDER BY p.starts NULLS FIRST"
    )
});

async fn read_partitions(client: &impl GenericClient) -> Result<Vec<RangePartition>, StoreError> {
    let rows = client.query(PARTITIONS.as_str(), &[]).await?;
    rows.iter()
        .map(|row| {
            let types: Vec<String> = row.try_get(4)?;
            Ok(RangePartition {
                name: row.try_get(0)?,
                starts: row.try_get(1)?,
                ends: row.try_get(2)?,
                legacy: row.try_get(3)?,
                mixed: row.try_get(5)?,
                keyed: row.try_get(6)?,
                types: types.iter().filter_map(|t| SignalType::parse(t)).collect(),
            })
        })
        .collect()
}

/// Whether a row of the default partition is kept: within its type's retention (`$1`, `$2`,
/// `$3` are the cutoffs of logs, traces and metrics, in `SignalType::ALL` order, NULL for
/// "forever"), or evidence.
fn kept() -> String {
    format!(
        r#"(NOT coalesce(CASE signal_type WHEN 'log' THEN "timestamp" < $1
                                          WHEN 'trace' THEN "timestamp" < $2
                                          ELSE "timestamp" < $3 END, false)
            OR trace_id IN ({}))"#,
        super::lifecycle::evidence_traces()
    )
}

impl Store {
    /// The range partitions as recorded, oldest first (the legacy table, when there is one).
    pub async fn range_partitions(&self) -> Result<Vec<RangePartition>, StoreError> {
        let client = self.client().await?;
        read_partitions(&client).await
    }

    /// Creates the partitions missing from the interval holding `now` to two intervals ahead.
    /// When the default partition holds rows in a new range (a clock that ran ahead) or rows
    /// past their retention, it is replaced by an empty one in the same transaction and its
    /// rows re-inserted where they now belong, the expired ones left out: ATTACH refuses a new
    /// range whose rows sit in the default. `None`: skipped, another instance was at it.
    pub async fn ensure_partitions(
        &self,
        now: DateTime<Utc>,
        turn: Turn,
    ) -> Result<Option<Created>, StoreError> {
        let StorageSettings { ref lifecycle, .. } = self.settings;
        let mut client = self.client().await?;
        let tx = change_transaction(&mut client, self.settings.layout).await?;
        if !take_lock(&tx, turn).await? {
            return Ok(None);
        }
        // Before the default incidents' whole lock (ensure_ranges): a lock held upgrades ahead
        // of a change queued for it, where a read after it would queue behind the change.
        lock_for_change(&tx, EVIDENCE_SOURCES).await?;
        let mut created = Created {
            incident_ranges: incidents::ensure_ranges(
                &tx,
                lifecycle.partition_interval,
                now,
                self.settings.layout,
            )
            .await?,
            ..Created::default()
        };
        let existing = read_partitions(&tx).await?;
        let missing = ranges_to_create(&existing, lifecycle.partition_interval, now);
        let cutoffs = lifecycle.noise_cutoffs(now);
        let mut claimed = false;
        for range in &missing {
            let sql = r#"SELECT EXISTS (SELECT 1 FROM raw_signals_default WHERE "timestamp" >= $1 AND "timestamp" < $2)"#;
            claimed |= tx.query_one(sql, &[&range.starts, &range.ends]).await?.try_get::<_, bool>(0)?;
        }
        let expired_sql = format!("SELECT EXISTS (SELECT 1 FROM raw_signals_default WHERE NOT {})", kept());
        let has_expired: bool =
            tx.query_one(&expired_sql, &[&cutoffs[0], &cutoffs[1], &cutoffs[2]]).await?.try_get(0)?;
        let rotate = claimed || has_expired;
        if missing.is_empty() && !rotate {
            tx.commit().await?;
            return Ok(Some(created));
        }
        if rotate || self.settings.layout.is_distributed() {
            // Detaching the default, and on Citus creating a partition attached, take the
            // parent's whole lock, which every insert holds until its batch commits: asked for
            // with longer and longer waits, as the incidents' (slow batches overlap on Citus).
            lock_for_change(&tx, SIGNALS_PARENT).await?;
        }
        if rotate {
            // One statement at a time, as Citus needs (evidence::keep_evidence).
            for statement in [
                "ALTER TABLE raw_signal_rows DETACH PARTITION raw_signals_default",
                "ALTER TABLE raw_signals_default RENAME TO raw_signals_default_rotating",
                "CREATE TABLE raw_signals_default PARTITION OF raw_signal_rows DEFAULT",
            ] {
                tx.batch_execute(statement).await?;
            }
            tx.batch_execute(&signals_guard("raw_signals_default", self.settings.layout)).await?;
        }
        for range in &missing {
            create_range(&tx, range, self.settings.layout).await?;
            created.partitions.push(range.name());
        }
        if rotate {
            // Counted from RETURNING: Citus's command tag of an INSERT … ON CONFLICT DO NOTHING
            // can be wrong (citusdata/citus#3377).
            let moved = format!(
                r#"WITH moved AS (
                       INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id)
                       SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id
                       FROM raw_signals_default_rotating WHERE {}
                       ON CONFLICT DO NOTHING
                       RETURNING 1)
                   SELECT count(*) FROM moved"#,
                kept()
            );
            let row = tx.query_one(&moved, &[&cutoffs[0], &cutoffs[1], &cutoffs[2]]).await?;
            created.default_rows_kept = row.try_get::<_, i64>(0)? as u64;
            let total: i64 =
                tx.query_one("SELECT count(*) FROM raw_signals_default_rotating", &[]).await?.try_get(0)?;
            created.default_rows_expired = (total as u64).saturating_sub(created.default_rows_kept);
            let expired = format!(
                r#"SELECT signal_type::text, min("timestamp"), max("timestamp") + interval '1 microsecond'
                   FROM raw_signals_default_rotating WHERE NOT {} GROUP BY 1"#,
                kept()
            );
            for row in tx.query(&expired, &[&cutoffs[0], &cutoffs[1], &cutoffs[2]]).await? {
                let label: String = row.try_get(0)?;
                mark_stale(&tx, SignalType::parse(&label), row.try_get(1)?, row.try_get(2)?).await?;
            }
            tx.batch_execute("DROP TABLE raw_signals_default_rotating").await?;
        }
        tx.commit().await?;
        Ok(Some(created))
    }

    /// Expires what the lifecycle says has expired at `now`: a type's partition past its
    /// retention keeps its evidence in its place (or is dropped whole when it holds none); a
    /// partition holding only evidence is dropped once none of it is evidence any more; a range
    /// partition left empty is dropped. Each in a transaction of its own (a lock timeout on one
    /// leaves the others done). Returns what was dropped and the errors of the ones that could
    /// not be done this time; `None`: another instance was at it.
    pub async fn drop_expired_partitions(
        &self,
        now: DateTime<Utc>,
        turn: Turn,
    ) -> Result<Option<(Vec<Dropped>, Vec<StoreError>)>, StoreError> {
        let (partitions, evidence_only) = {
            let client = self.client().await?;
            (read_partitions(&client).await?, evidence::evidence_only(&client).await?)
        };
        let actions = expired(&partitions, &evidence_only, &self.settings.lifecycle, now);
        let (mut dropped, mut failed) = (Vec::new(), Vec::new());
        // The types of one range expiring together go in one transaction: a reader never sees
        // a trace's spans gone and its logs still there.
        for group in actions.chunk_by(|a, b| a.range() == b.range()) {
            match self.expire_together(group, turn, DropReason::Age).await {
                Ok(Some(done)) => dropped.extend(done),
                Ok(None) if dropped.is_empty() && failed.is_empty() => return Ok(None),
                Ok(None) => break,
                Err(why) => failed.push(why),
            }
        }
        Ok(Some((dropped, failed)))
    }

    /// The database's size on disk (`pg_database_size`), WAL excluded; on Citus, summed over
    /// the coordinator and every worker.
    pub async fn database_size(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let sql = match self.settings.layout {
            Layout::Single => "SELECT pg_database_size(current_database())",
            // The signals are on the workers: the budget is of the whole cluster's disk.
            Layout::Distributed { .. } => {
                "SELECT sum(result::int8)::int8 FROM run_command_on_all_nodes('SELECT pg_database_size(current_database())')"
            }
        };
        Ok(client.query_one(sql, &[]).await?.try_get(0)?)
    }

    /// Brings the database under `budget` bytes: whole partitions oldest first, healthy traffic
    /// before evidence ([`size_drops`]), re-measuring after each, until it is under or nothing
    /// that may go is left. `None`: another instance holds the maintenance lock.
    pub async fn enforce_size_budget(
        &self,
        budget: u64,
        now: DateTime<Utc>,
        turn: Turn,
    ) -> Result<Option<SizePass>, StoreError> {
        let budget = budget as i64;
        let bytes_before = self.database_size().await?;
        let mut pass = SizePass { bytes_before, bytes_after: bytes_before, ..SizePass::default() };
        if bytes_before <= budget {
            return Ok(Some(pass));
        }
        let (partitions, evidence_only) = {
            let client = self.client().await?;
            (read_partitions(&client).await?, evidence::evidence_only(&client).await?)
        };
        let mut incidents_sorted = false;
        for action in size_drops(&partitions, &evidence_only, now) {
            // Between the healthy traffic and the evidence: the incidents of the ranges whose
            // signals are gone by now.
            if !incidents_sorted && !matches!(action, Expired::Noise { .. }) {
                incidents_sorted = true;
                if !self.sort_incidents_for_size(&mut pass, now, turn).await? {
                    break;
                }
                if pass.bytes_after <= budget {
                    break;
                }
            }
            match self.expire_one(&action, turn, DropReason::Size).await? {
                DropStep::Dropped(dropped) => pass.dropped.push(dropped),
                DropStep::Unchanged => continue,
                DropStep::Busy if pass.dropped.is_empty() => return Ok(None),
                DropStep::Busy => break,
            }
            pass.bytes_after = self.database_size().await?;
            if pass.bytes_after <= budget {
                break;
            }
        }
        if !incidents_sorted && pass.bytes_after > budget {
            self.sort_incidents_for_size(&mut pass, now, turn).await?;
        }
        Ok(Some(pass))
    }

    /// The size pass's sort of incident ranges ([`Store::sort_incident_ranges_for_size`]),
    /// recorded in `pass` and re-measured; false: another instance holds the maintenance lock.
    async fn sort_incidents_for_size(
        &self,
        pass: &mut SizePass,
        now: DateTime<Utc>,
        turn: Turn,
    ) -> Result<bool, StoreError> {
        let Some(sorted) = self.sort_incident_ranges_for_size(now, turn).await? else {
            return Ok(false);
        };
        pass.incident_ranges = sorted;
        pass.bytes_after = self.database_size().await?;
        Ok(true)
    }

    async fn expire_one(
        &self,
        action: &Expired,
        turn: Turn,
        reason: DropReason,
    ) -> Result<DropStep, StoreError> {
        Ok(match self.expire_together(std::slice::from_ref(action), turn, reason).await? {
            None => DropStep::Busy,
            Some(mut done) => done.pop().map_or(DropStep::Unchanged, DropStep::Dropped),
        })
    }

    /// Expires `actions` in one transaction; what was dropped, or `None`: another instance
    /// holds the maintenance lock.
    async fn expire_together(
        &self,
        actions: &[Expired],
        turn: Turn,
        reason: DropReason,
    ) -> Result<Option<Vec<Dropped>>, StoreError> {
        let mut client = self.client().await?;
        let tx = change_transaction(&mut client, self.settings.layout).await?;
        if !take_lock(&tx, turn).await? {
            return Ok(None);
        }
        lock_for_change(&tx, EVIDENCE_SOURCES).await?;
        // Every table measured before any changes: Citus measures no distributed table in a
        // transaction that has changed several shards (each expiry below does).
        let mut measured = Vec::with_capacity(actions.len());
        for action in actions {
            let tables = tables_of(&tx, action).await?;
            let mut bytes = 0;
            for table in &tables {
                bytes += evidence::size(&tx, table, self.settings.layout).await?;
            }
            measured.push((tables, bytes));
        }
        let mut dropped = Vec::new();
        for (action, (tables, bytes)) in actions.iter().zip(measured) {
            if let DropStep::Dropped(done) =
                expire_in(&tx, action, &tables, bytes, reason, self.settings.layout).await?
            {
                dropped.push(done);
            }
        }
        tx.commit().await?;
        Ok(Some(dropped))
    }
    /// Evidence kept in partitions whose noise expired, per signal type (`None`: the table from
    /// before partitioning): `(type, signals, bytes)`.
    pub async fn evidence_kept(&self) -> Result<Vec<(Option<SignalType>, i64, i64)>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT signal_type::text, sum(signals)::int8, sum({}(to_regclass(quote_ident(name))))::int8
             FROM raw_signal_evidence WHERE to_regclass(quote_ident(name)) IS NOT NULL GROUP BY 1",
            self.settings.layout.total_size_function()
        );
        let rows = client.query(&sql, &[]).await?;
        rows.iter()
            .map(|row| {
                let label: Option<String> = row.try_get(0)?;
                Ok((label.as_deref().and_then(SignalType::parse), row.try_get(1)?, row.try_get(2)?))
            })
            .collect()
    }

    /// Per signal type, the oldest time still stored (the start of the oldest partition holding
    /// it, or an older row of the default or legacy partition); absent for a type with none.
    pub async fn oldest_retained(&self) -> Result<Vec<(SignalType, DateTime<Utc>)>, StoreError> {
        let client = self.client().await?;
        let legacy = client
            .query_one("SELECT to_regclass('raw_signals_legacy') IS NOT NULL", &[])
            .await?
            .try_get::<_, bool>(0)?;
        // The legacy table mixes types: its oldest row stands for each of them.
        // A partition holding only evidence is not retained traffic: the gauge tells whether
        // expiry keeps up.
        let legacy_oldest = if legacy {
            r#"(SELECT min("timestamp") FROM raw_signals_legacy
                WHERE NOT EXISTS (SELECT 1 FROM raw_signal_evidence WHERE name = 'raw_signals_legacy'))"#
        } else {
            "NULL::timestamptz"
        };
        let sql = format!(
            // The default partition's oldest per type first, on its own: Citus joins no
            // distributed table to the local ones in a correlated subquery.
            r#"WITH defaults AS MATERIALIZED (
                   SELECT signal_type, min("timestamp") AS oldest FROM raw_signals_default GROUP BY signal_type)
               SELECT t::text, least(
                   (SELECT min(p.starts) FROM raw_signal_partitions p
                    WHERE NOT p.legacy AND to_regclass(quote_ident(p.name || '_' || t::text)) IS NOT NULL
                      AND p.name || '_' || t::text NOT IN (SELECT name FROM raw_signal_evidence)),
                   -- A range holding every type (on Citus) stands for each of them.
                   (SELECT min(p.starts) FROM raw_signal_partitions p
                    WHERE {MIXED} AND NOT p.legacy AND to_regclass(quote_ident(p.name)) IS NOT NULL
                      AND p.name NOT IN (SELECT name FROM raw_signal_evidence)),
                   (SELECT oldest FROM defaults d WHERE d.signal_type = t),
                   {legacy_oldest})
               FROM unnest(enum_range(NULL::signaltypeenum)) AS t"#
        );
        let mut oldest = Vec::new();
        for row in client.query(&sql, &[]).await? {
            let label: String = row.try_get(0)?;
            let at: Option<DateTime<Utc>> = row.try_get(1)?;
            if let (Some(signal_type), Some(at)) = (SignalType::parse(&label), at) {
                oldest.push((signal_type, at));
            }
        }
        Ok(oldest)
    }
}

/// One expiry, in the caller's transaction (which holds the maintenance lock): `tables` are
/// the tables it changes ([`tables_of`]), of `bytes` on disk.
async fn expire_in(
    tx: &Transaction<'_>,
    action: &Expired,
    tables: &[String],
    bytes: i64,
    reason: DropReason,
    layout: Layout,
) -> Result<DropStep, StoreError> {
    let table = action.table();
    // Another instance may have dropped it since it was listed.
    if tables.is_empty() {
        return Ok(DropStep::Unchanged);
    }
    // The signals of its range (of its type, for a type's partition) change: their counts
    // are recounted by the next merge.
    let (range, signal_type) = match action {
        Expired::Noise { bounds, .. } => (action.range(), bounds.signal_type()),
        _ => (table, None),
    };
    let bounds =
        tx.query_opt("SELECT starts, ends FROM raw_signal_partitions WHERE name = $1", &[&range]).await?;
    let (starts, ends) = match bounds {
        Some(row) => (row.try_get(0)?, Some(row.try_get(1)?)),
        None => (None, None),
    };
    mark_stale(tx, signal_type, starts, ends).await?;
    let mut dropped =
        Dropped { name: table.to_owned(), signal_type: None, legacy: false, bytes, kept_signals: 0, reason };
    match action {
        Expired::Noise { bounds, .. } => {
            (dropped.signal_type, dropped.legacy) =
                (bounds.signal_type(), matches!(bounds, Bounds::Before(_)));
            let kept = evidence::keep_evidence(tx, table, bounds, bytes, layout).await?;
            dropped.bytes = kept.bytes_before - kept.bytes_after;
            dropped.kept_signals = kept.signals;
            return Ok(DropStep::Dropped(dropped));
        }
        Expired::Evidence { .. } => {
            for table in tables {
                if evidence::holds_evidence(tx, table).await? {
                    return Ok(DropStep::Unchanged);
                }
            }
        }
        Expired::Everything { .. } => {}
    }
    dropped.legacy = table == "raw_signals_legacy";
    evidence::forget(tx, table).await?;
    crate::store::sealing::units::drop_all(tx, table).await?;
    for table in tables {
        lock_with_parent(tx, table).await?;
        tx.batch_execute(&format!("DROP TABLE {}", quote_identifier(table))).await?;
    }
    tx.execute("DELETE FROM raw_signal_partitions WHERE name = $1", &[&table]).await?;
    Ok(DropStep::Dropped(dropped))
}

/// The tables `action` changes that exist: the partition itself; for a whole range recorded
/// without a table of its own (on Citus: store/citus.rs), its type partitions.
async fn tables_of(tx: &Transaction<'_>, action: &Expired) -> Result<Vec<String>, StoreError> {
    let table = action.table();
    let sql = match action {
        Expired::Noise { .. } => "SELECT $1 WHERE to_regclass(quote_ident($1)) IS NOT NULL",
        Expired::Evidence { .. } | Expired::Everything { .. } => {
            "SELECT $1 WHERE to_regclass(quote_ident($1)) IS NOT NULL
             UNION ALL
             SELECT $1 || '_' || t::text FROM unnest(enum_range(NULL::signaltypeenum)) AS t
             WHERE to_regclass(quote_ident($1)) IS NULL AND to_regclass(quote_ident($1 || '_' || t::text)) IS NOT NULL"
        }
    };
    let rows = tx.query(sql, &[&table]).await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

/// The partitions holding only evidence that exist.
pub(crate) async fn evidence_tables(client: &impl GenericClient) -> Result<Vec<String>, StoreError> {
    Ok(evidence::evidence_only(client).await?.into_iter().collect())
}

/// The statement-level trigger refusing UPDATE, DELETE and TRUNCATE, for one more table.
pub(crate) fn append_only_trigger(table: &str) -> String {
    format!(
        "CREATE TRIGGER raw_signals_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {}
         FOR EACH STATEMENT EXECUTE FUNCTION raw_signals_reject_change()",
        quote_identifier(table)
    )
}

/// The statement-level trigger refusing UPDATE, DELETE and TRUNCATE on a table of signals, where
/// the layout allows it: Citus refuses triggers on distributed tables (there, privileges hold
/// the rule: README, "Running on Citus").
pub(crate) fn signals_guard(table: &str, layout: Layout) -> String {
    match layout {
        Layout::Single => append_only_trigger(table),
        Layout::Distributed { .. } => String::new(),
    }
}

/// One range partition, built detached and then attached: ATTACH adds the parent's indexes and
/// key to the empty tables at no cost. With a partition per signal type under it; on Citus
/// (which distributes no table partitioned twice) a partition per type of `raw_signal_rows`
/// itself, keyed by type and time, or one table for every type when the table is keyed by
/// time alone (store/citus.rs).
async fn create_range(tx: &Transaction<'_>, range: &NewRange, layout: Layout) -> Result<(), StoreError> {
    let name = range.name();
    if layout.is_distributed() {
        // Created attached: Citus distributes a new partition of a distributed table. Not
        // built detached and attached as on one node: Citus then distributes it over
        // connections of its own, which wait for this transaction's locks when the default
        // partition was rotated in it, and cancels the transaction as a distributed deadlock
        // with itself (canary::failures::a_service_keeping_less_… failed every run so). One
        // statement at a time, as Citus needs (evidence::keep_evidence).
        let statements: Vec<String> = if keyed_by_type(&**tx).await? {
            SignalType::ALL
                .iter()
                .map(|t| {
                    format!(
                        "CREATE TABLE {} PARTITION OF raw_signal_rows FOR VALUES FROM ({}) TO ({})",
                        quote_identifier(&leaf_name(&name, *t)),
                        keyed_bound(t.as_str(), range.starts),
                        keyed_bound(t.as_str(), range.ends),
                    )
                })
                .collect()
        } else {
            vec![format!(
                "CREATE TABLE {} PARTITION OF raw_signal_rows FOR VALUES FROM ('{}') TO ('{}')",
                quote_identifier(&name),
                range.starts.to_rfc3339(),
                range.ends.to_rfc3339(),
            )]
        };
        for statement in statements {
            tx.batch_execute(&statement).await?;
        }
        return record_range(tx, &name, range).await;
    }
    let mut ddl = format!(
        "CREATE TABLE {table} (LIKE raw_signal_rows INCLUDING DEFAULTS) PARTITION BY LIST (signal_type);\n{trigger};\n",
        table = quote_identifier(&name),
        trigger = append_only_trigger(&name),
    );
    for signal_type in SignalType::ALL {
        let leaf = leaf_name(&name, signal_type);
        ddl.push_str(&format!(
            "CREATE TABLE {} PARTITION OF {} FOR VALUES IN ('{}');\n{};\n",
            quote_identifier(&leaf),
            quote_identifier(&name),
            signal_type.as_str(),
            append_only_trigger(&leaf),
        ));
    }
    // Bounds as literals (DDL takes no parameters), from our own timestamps.
    ddl.push_str(&format!(
        "ALTER TABLE raw_signal_rows ATTACH PARTITION {} FOR VALUES FROM ('{}') TO ('{}');",
        quote_identifier(&name),
        range.starts.to_rfc3339(),
        range.ends.to_rfc3339(),
    ));
    tx.batch_execute(&ddl).await?;
    record_range(tx, &name, range).await
}

async fn record_range(tx: &Transaction<'_>, name: &str, range: &NewRange) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO raw_signal_partitions (name, starts, ends) VALUES ($1, $2, $3)",
        &[&name, &range.starts, &range.ends],
    )
    .await?;
    Ok(())
}
