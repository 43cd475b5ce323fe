//! The write of one batch: signals, the incidents they touch and the analysis requests they
//! cause, in one SQL statement (so one round trip and one atomic commit). An acknowledgement
//! therefore covers all three, and a retried batch (duplicates) changes none of them.
//!
//! Incidents are aggregated per trace inside the statement; each trace's claim (one row per
//! trace in `incident_traces`, migrations/0015) is taken in trace order and the incident upserted
//! where the claim says it lives, with relative updates: concurrent batches serialise per trace
//! without deadlocking, and the analysis worker's own updates of the row are kept.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::citus::parts::{PartColumns, RECORD_BATCH};
use super::{Store, StoreError};
use crate::incidents::Triage;
use crate::model::payload::Shared;
use crate::model::{IncidentSeverity, Signal, SignalKey, SignalType};

/// What one batch write did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Signals newly stored.
    pub inserted: u64,
    /// Their keys.
    pub inserted_keys: HashSet<SignalKey>,
    /// Signals already stored (retries): acknowledged, not stored or counted again.
    pub duplicates: u64,
    pub incidents_opened: u64,
    pub incidents_updated: u64,
    /// Outbox rows written.
    pub analyses_requested: u64,
    /// The severity of each incident opened.
    pub opened_severities: Vec<IncidentSeverity>,
    /// The new severity of each existing incident whose severity this batch raised.
    pub escalated_severities: Vec<IncidentSeverity>,
    /// Incidents newly linked to a problem.
    pub problem_links: u64,
    /// On Citus, whether the signals were written at the nodes holding their shards (else
    /// through the coordinator); `None` on one PostgreSQL.
    pub at_nodes: Option<bool>,
}

/// The statement, with `$name` parameters (see [`BatchParams`]).
const WRITE_BATCH: &str = include_str!("sql/write_batch.sql");

/// Declares the batch statement's parameters once: the struct, and their names in the order
/// they are bound, from the same list.
macro_rules! batch_params {
    ($($name:ident: $type:ty),* $(,)?) => {
        /// The batch statement's parameters: per-row columns (parallel arrays), the shared
        /// parts, and the escalation rules.
        struct BatchParams<'a> {
            $($name: $type,)*
        }

        impl BatchParams<'_> {
            const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
                vec![$(&self.$name),*]
            }
        }
    };
}

batch_params! {
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    trace_ids: Vec<&'a str>,
    services: Vec<&'a str>,
    timestamps: Vec<DateTime<Utc>>,
    // Encoded once, by the mapping; PostgreSQL parses each into jsonb.
    payloads: Vec<&'a str>,
    time_unknown: Vec<bool>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    shared_ids: Vec<Option<Uuid>>,
    // Counted per service and minute (store/activity.rs).
    errors: Vec<bool>,
    severities: Vec<&'static str>,
    tracked: Vec<bool>,
    requests: Vec<bool>,
    fingerprints: Vec<Option<String>>,
    titles: Vec<Option<String>>,
    shared_keys: Vec<Uuid>,
    // Of those, the ones this instance has not marked in use lately (store/shared.rs).
    shared_used: Vec<Uuid>,
    resources: Vec<&'a str>,
    scopes: Vec<&'a str>,
    critical_after_high: i64,
    analysis_window_secs: f64,
    grouping: bool,
    problem_window_secs: f64,
}

/// `sql` with each `$name` of `names` replaced by its position (`$1`, …). A name not in
/// `names` is left as it is, which PostgreSQL refuses when the statement is prepared.
fn positional(sql: &str, names: &[&str]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let length = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        match names.iter().position(|n| *n == &after[..length]) {
            Some(index) => out.push_str(&format!("${}", index + 1)),
            None => out.push_str(&rest[at..at + 1 + length]),
        }
        rest = &after[length..];
    }
    out.push_str(rest);
    out
}

/// A record without a time was stamped when it arrived, so its retry has another time: it is
/// recognised by its id among the rows flagged time_unknown (the caller holds a lock per such
/// id, so that two copies in flight cannot both pass this check). The lookup spans every
/// partition, and a statement that contains it opens, locks and initialises a scan of each, on
/// every execution, even when no row needs it: a cost that grows with the days kept. Only
/// batches with such records carry it.
const TIMELESS_CHECK: &str = "AND NOT (time_unknown AND EXISTS (
        SELECT 1 FROM raw_signal_rows r WHERE r.time_unknown AND r.id = input.id AND r.signal_type = input.kind))";

/// [`TIMELESS_CHECK`] on a Citus cluster, which runs no subquery on a distributed table that
/// refers to the row outside it: the copies among the batch's ids are found first, once. Also
/// in the partitions being sealed, which keep their records of unknown time there until sealed
/// (store/sealing/columnar.rs).
const TIMELESS_CHECK_DISTRIBUTED: &str = "AND NOT (time_unknown AND (id, kind) IN (
        SELECT r.id, r.signal_type FROM raw_signal_rows r WHERE r.time_unknown AND r.id = ANY($ids::uuid[])
        UNION ALL
        SELECT s.id, s.signal_type FROM raw_signal_sealing s WHERE s.time_unknown AND s.id = ANY($ids::uuid[])))";

/// On Citus, what the batch statement reads in place of its insert: the rows the insert,
/// run first as a statement of its own, returned.
const INSERTED_ROWS: &str = r#"SELECT * FROM unnest($inserted_ids::uuid[], $inserted_times::timestamptz[],
                               $inserted_types::text[]::signaltypeenum[]) AS r(id, "timestamp", signal_type)"#;

/// On Citus with the incidents distributed, what the batch statement reads in place of its
/// incidents' part, which the parts wrote at the nodes (citus/parts.rs): the incidents they
/// upserted, as they returned them.
const UPSERTED_ROWS: &str = r#"upserted AS (
    SELECT * FROM unnest($upserted_ids::uuid[], $upserted_traces::text[], $upserted_keys::text[], $upserted_kept::bool[],
                         $upserted_detected::timestamptz[], $upserted_severities::text[]::incidentseverity[],
                         $upserted_requested::bool[], $upserted_fresh::bool[], $upserted_escalated::bool[])
        AS u(id, trace_id, trace_key, kept, detected_at, severity, requested, fresh, escalated)
)"#;

/// The names of the rows [`UPSERTED_ROWS`] reads, bound after [`INSERTED_NAMES`].
const UPSERTED_NAMES: [&str; 9] = [
    "upserted_ids",
    "upserted_traces",
    "upserted_keys",
    "upserted_kept",
    "upserted_detected",
    "upserted_severities",
    "upserted_requested",
    "upserted_fresh",
    "upserted_escalated",
];

/// What a node's part of the batch returns beside the rows it stored, with the incidents
/// distributed: each trace's incident as [`UPSERTED_ROWS`] reads it, in trace order.
const UPSERTED_ARRAYS: &str = "ARRAY(SELECT id FROM upserted ORDER BY trace_id) AS upserted_ids,
       ARRAY(SELECT trace_id::text FROM upserted ORDER BY trace_id) AS upserted_traces,
       ARRAY(SELECT trace_key::text FROM upserted ORDER BY trace_id) AS upserted_keys,
       ARRAY(SELECT kept FROM upserted ORDER BY trace_id) AS upserted_kept,
       ARRAY(SELECT detected_at FROM upserted ORDER BY trace_id) AS upserted_detected,
       ARRAY(SELECT severity::text FROM upserted ORDER BY trace_id) AS upserted_severities,
       ARRAY(SELECT coalesce(requested, false) FROM upserted ORDER BY trace_id) AS upserted_requested,
       ARRAY(SELECT fresh FROM upserted ORDER BY trace_id) AS upserted_fresh,
       ARRAY(SELECT coalesce(escalated, false) FROM upserted ORDER BY trace_id) AS upserted_escalated";

/// The parameters a node's part reads beside the rows' columns (the first [`INPUT_PARAMS`] of
/// `BatchParams::NAMES`): the escalation rules of the incidents' upsert.
const PART_RULES: [&str; 2] = ["critical_after_high", "analysis_window_secs"];

/// A part that only stores its rows reads only the columns its insert does (sending the
/// tracking's eight more to every node, to be unnested there, would cost every batch).
const PART_INPUT: [&str; 7] =
    ["ids", "types", "trace_ids", "services", "timestamps", "payloads", "shared_ids"];

/// The input of such a part, as the batch statement's names it.
const PART_INPUT_ROWS: &str = "input AS (
    SELECT t.*, t.signal_type::signaltypeenum AS kind
    FROM unnest($ids::uuid[], $types::text[], $trace_ids::text[], $services::text[], $timestamps::timestamptz[],
                $payloads::text[], $shared_ids::uuid[])
        AS t(id, signal_type, trace_id, service_name, ts, payload, shared_id)
)";

/// The parameters of a node's part, in order: [`PART_INPUT`], or, when it tracks the incidents,
/// the batch's rows' columns and [`PART_RULES`].
fn part_names(tracked: bool) -> Vec<&'static str> {
    if tracked {
        BatchParams::NAMES[..INPUT_PARAMS].iter().copied().chain(PART_RULES).collect()
    } else {
        PART_INPUT.to_vec()
    }
}

/// The parameters of [`Statements::citus_track_parts`], in order: the batch's, less the rules
/// only the incidents' part reads (the parts read them), then the rows and incidents the parts
/// returned.
fn track_parts_names() -> Vec<&'static str> {
    let batch = BatchParams::NAMES.iter().copied().filter(|name| !PART_RULES.contains(name));
    batch.chain(INSERTED_NAMES).chain(UPSERTED_NAMES).collect()
}

/// A node's part of a batch (citus/parts.rs): the rows of one shard inserted into the shard's
/// table `signals` and returned; with the incidents distributed, `tracking` names the shard's
/// colocated claims and incidents tables, and the part tracks the rows it stored there, by the
/// batch statement's own rules (its `/*TRACKING*/` part, on those tables). Parameters: the
/// rows' columns, then [`PART_RULES`].
pub(crate) fn part_statement(signals: &str, tracking: Option<(&str, &str)>) -> String {
    let names = part_names(tracking.is_some());
    let input = match tracking {
        Some(_) => marked(WRITE_BATCH, "/*INPUT*/"),
        None => PART_INPUT_ROWS,
    };
    // Rows as the batch statement stores them, in key order; a retry conflicts and is returned
    // no row. No sealed range is checked here: a batch with rows in one goes through the
    // coordinator.
    let insert = format!(
        r#"inserted AS (
    INSERT INTO {signals} (id, signal_type, trace_id, service_name, "timestamp", payload, time_unknown, shared_id)
    SELECT id, kind, trace_id, service_name, ts, payload::jsonb, false, shared_id FROM input
    ORDER BY ts, id, kind
    ON CONFLICT DO NOTHING
    RETURNING id, "timestamp", signal_type
)"#
    );
    let stored = r#"ARRAY(SELECT id FROM inserted ORDER BY id, "timestamp", signal_type) AS inserted_ids,
       ARRAY(SELECT "timestamp" FROM inserted ORDER BY id, "timestamp", signal_type) AS inserted_times,
       ARRAY(SELECT signal_type::text FROM inserted ORDER BY id, "timestamp", signal_type) AS inserted_types"#;
    let sql = match tracking {
        None => format!(
            "WITH {input},
{insert}
SELECT {stored}"
        ),
        Some((claims, incidents)) => {
            let tracked = marked(WRITE_BATCH, "/*TRACKING*/")
                .replace("INTO incident_traces AS c", &format!("INTO {claims} AS c"))
                .replace("INTO incidents AS i", &format!("INTO {incidents} AS i"))
                .replace("FROM incidents i", &format!("FROM {incidents} i"));
            format!(
                "WITH {input},
{insert},
{tracked}
SELECT {stored},
       {UPSERTED_ARRAYS}"
            )
        }
    };
    positional(&sql, &names)
}

/// The coordinator's tables the rest of the batch writes on Citus (a test checks the list
/// against the statement).
const TRACKED_TABLES: [&str; 7] = [
    "signal_shared",
    "service_minutes",
    "incident_traces",
    "incidents",
    "problems",
    "incident_problems",
    "analysis_outbox",
];

/// The names of the rows [`INSERTED_ROWS`] reads, bound after the batch's own parameters.
const INSERTED_NAMES: [&str; 3] = ["inserted_ids", "inserted_times", "inserted_types"];

/// The text of `sql` between the two occurrences of the comment `marker`.
fn marked<'a>(sql: &'a str, marker: &str) -> &'a str {
    let mut parts = sql.split(marker);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(inner), Some(_)) => inner,
        _ => panic!("sql/write_batch.sql must mark its part with {marker} before and after"),
    }
}

/// The batch's statements, their `$name` parameters numbered in the order of
/// `BatchParams::NAMES` (then [`INSERTED_NAMES`]).
struct Statements {
    /// One PostgreSQL: the whole write in one statement, without and with [`TIMELESS_CHECK`].
    single: [String; 2],
    /// Citus: the insert alone (without and with [`TIMELESS_CHECK_DISTRIBUTED`]), then the rest
    /// reading the rows it returned. Citus plans the one statement holding both as several
    /// distributed steps, the inserted rows passed between them as intermediate results, and
    /// plans it again at every execution; split, the insert is the only distributed statement
    /// and the rest, on the coordinator's tables alone, keeps its cached plan.
    citus_insert: [String; 2],
    citus_track: String,
    /// Citus with the incidents distributed and the batch's parts written at the nodes: the
    /// rest, reading the rows and the incidents the parts returned ([`UPSERTED_ROWS`]).
    citus_track_parts: String,
    /// Citus, first: the locks the one statement would take when it starts, on
    /// [`TRACKED_TABLES`], then on the signals' table. Maintenance locks an incidents range,
    /// then changes the signals' partitions (partitions/mod.rs): a batch that held the signals'
    /// table from its insert while waiting for the incidents would wait for it in a cycle,
    /// until the maintenance gave up on its lock timeout. Taken first, a batch waits holding
    /// nothing. Every one is locked on the coordinator only (Citus would send a `LOCK` of a
    /// distributed table to every node, at every batch): the signals' table, and the incidents'
    /// when distributed, because a batch written at the nodes (citus/parts.rs) never touches
    /// them there: so that a change of their partitions still waits for every batch in flight,
    /// and they for it, as on one node.
    citus_lock: String,
}

static STATEMENTS: std::sync::LazyLock<Statements> = std::sync::LazyLock::new(|| {
    let names: Vec<&str> =
        BatchParams::NAMES.iter().copied().chain(INSERTED_NAMES).chain(UPSERTED_NAMES).collect();
    let numbered = |sql: &str| positional(sql, &names);
    let with = |check: &str| numbered(&WRITE_BATCH.replace("/*TIMELESS_CHECK*/", check));
    let (input, insert) = (marked(WRITE_BATCH, "/*INPUT*/"), marked(WRITE_BATCH, "/*INSERT*/"));
    let insert_alone =
        |check: &str| numbered(&format!("WITH {input}\n{}", insert.replace("/*TIMELESS_CHECK*/", check)));
    Statements {
        single: [with(""), with(TIMELESS_CHECK)],
        citus_insert: [insert_alone(""), insert_alone(TIMELESS_CHECK_DISTRIBUTED)],
        citus_track: numbered(&WRITE_BATCH.replace(insert, INSERTED_ROWS)),
        citus_track_parts: positional(
            &WRITE_BATCH
                .replace(insert, INSERTED_ROWS)
                .replace(marked(WRITE_BATCH, "/*INCIDENTS*/"), UPSERTED_ROWS),
            &track_parts_names(),
        ),
        citus_lock: format!(
            "SET LOCAL citus.enable_ddl_propagation TO off; \
             LOCK TABLE {} IN ROW EXCLUSIVE MODE; \
             LOCK TABLE ONLY raw_signal_rows IN ROW EXCLUSIVE MODE; \
             SET LOCAL citus.enable_ddl_propagation TO on",
            TRACKED_TABLES.join(", ")
        ),
    }
});

impl PartColumns for BatchParams<'_> {
    /// The parameters [`part_statement`] reads ([`part_names`]), of the rows at `rows`.
    fn part_params(&self, rows: &[usize], tracked: bool) -> Vec<Box<dyn ToSql + Send + Sync + '_>> {
        part_names(tracked).into_iter().map(|name| self.part_param(name, rows)).collect()
    }
}

impl BatchParams<'_> {
    /// Parameter `name` of a part: the column of that name, of the rows at `rows`, or a rule.
    fn part_param(&self, name: &str, rows: &[usize]) -> Box<dyn ToSql + Send + Sync + '_> {
        fn pick<'a, T: Clone + Send + Sync + 'a>(
            column: &[T],
            rows: &[usize],
        ) -> Box<dyn ToSql + Send + Sync + 'a>
        where
            Vec<T>: ToSql,
        {
            Box::new(rows.iter().map(|&row| column[row].clone()).collect::<Vec<T>>())
        }
        match name {
            "ids" => pick(&self.ids, rows),
            "types" => pick(&self.types, rows),
            "trace_ids" => pick(&self.trace_ids, rows),
            "services" => pick(&self.services, rows),
            "timestamps" => pick(&self.timestamps, rows),
            "payloads" => pick(&self.payloads, rows),
            "time_unknown" => pick(&self.time_unknown, rows),
            "expires_at" => pick(&self.expires_at, rows),
            "shared_ids" => pick(&self.shared_ids, rows),
            "errors" => pick(&self.errors, rows),
            "severities" => pick(&self.severities, rows),
            "tracked" => pick(&self.tracked, rows),
            "requests" => pick(&self.requests, rows),
            "fingerprints" => pick(&self.fingerprints, rows),
            "titles" => pick(&self.titles, rows),
            "critical_after_high" => Box::new(self.critical_after_high),
            "analysis_window_secs" => Box::new(self.analysis_window_secs),
            // part_names lists only these (a test asks for every one).
            other => panic!("{other} is not a parameter of a node's part"),
        }
    }
}

/// Advisory-lock namespace of the per-id locks around records without a time (the two-key
/// form, a key space apart from the single-key locks of migrations and maintenance).
const TIMELESS_LOCK_SPACE: i32 = 0x5349_474e; // "SIGN"

/// The parameters the insert alone reads on Citus: the batch's rows, the first of
/// `BatchParams::NAMES` (a test checks that they are exactly those the input reads).
const INPUT_PARAMS: usize = 15;

/// Takes the locks of the batch's records without a time (`locks`, sorted), if any.
async fn lock_timeless(tx: &deadpool_postgres::Transaction<'_>, locks: &[i32]) -> Result<(), StoreError> {
    if !locks.is_empty() {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k ORDER BY k",
            &[&TIMELESS_LOCK_SPACE, &locks],
        )
        .await?;
    }
    Ok(())
}

/// A `signaltypeenum` value read as its label.
struct SignalTypeLabel(String);

impl<'a> tokio_postgres::types::FromSql<'a> for SignalTypeLabel {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(SignalTypeLabel(std::str::from_utf8(raw)?.to_owned()))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        ty.name() == "signaltypeenum"
    }
}

impl Store {
    /// Stores `signals` and tracks their incidents atomically; returns after the commit. A
    /// full disk wakes the size budget's pass.
    pub async fn write_batch(&self, signals: &[Signal], triage: &Triage) -> Result<BatchOutcome, StoreError> {
        let written = self.write_batch_once(signals, triage).await;
        if let Err(StoreError::DiskFull(_)) = &written {
            self.size_pressure.notify_one();
        }
        written
    }

    /// [`Self::write_batch`]: stores `signals` and tracks their incidents atomically; returns after the commit.
    async fn write_batch_once(
        &self,
        signals: &[Signal],
        triage: &Triage,
    ) -> Result<BatchOutcome, StoreError> {
        if signals.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let rows = without_repeated_timeless(signals);
        let shared = distinct_shared(&rows);
        let assessed = triage.assess_all(&rows);
        let escalation = triage.escalation();
        let params = BatchParams {
            ids: rows.iter().map(|s| s.signal_id).collect(),
            types: rows.iter().map(|s| s.signal_type.as_str()).collect(),
            trace_ids: rows.iter().map(|s| s.trace_id.as_str()).collect(),
            services: rows.iter().map(|s| s.service_name.as_str()).collect(),
            timestamps: rows.iter().map(|s| s.timestamp).collect(),
            payloads: rows.iter().map(|s| s.payload.as_str()).collect(),
            time_unknown: rows.iter().map(|s| s.time_unknown).collect(),
            expires_at: rows.iter().map(|s| self.expires_at(s)).collect(),
            shared_ids: rows.iter().map(|s| s.shared.as_ref().map(|p| p.id)).collect(),
            errors: rows.iter().map(|s| s.facts.is_error(s.signal_type)).collect(),
            severities: assessed.severities,
            tracked: assessed.tracked,
            requests: assessed.requests_analysis,
            fingerprints: assessed.fingerprints,
            titles: assessed.titles,
            shared_keys: shared.iter().map(|p| p.id).collect(),
            shared_used: self.shared_use.due(shared.iter().map(|p| &p.id)),
            resources: shared.iter().map(|p| p.resource.as_str()).collect(),
            scopes: shared.iter().map(|p| p.scope.as_str()).collect(),
            critical_after_high: escalation.critical_after_high as i64,
            analysis_window_secs: escalation.analysis_window.as_secs_f64(),
            grouping: escalation.problem_window.is_some(),
            problem_window_secs: escalation.problem_window.unwrap_or_default().as_secs_f64(),
        };
        let shared_used = params.shared_used.clone();
        let batch = params;
        let params = batch.values();

        let mut client = self.client().await?;
        let locks = timeless_locks(&rows);
        let mut at_nodes = None;
        let row = if self.settings.layout.is_distributed() {
            let tx = client.transaction().await?;
            tx.batch_execute(&STATEMENTS.citus_lock).await?;
            lock_timeless(&tx, &locks).await?;
            let mut prepared = match &self.workers {
                Some(workers) => workers.prepare(&*tx, &rows, &batch).await,
                None => None,
            };
            let (ids, times, kinds) = match &mut prepared {
                Some(at_nodes) => at_nodes.take_stored(),
                None => {
                    let insert =
                        tx.prepare_cached(&STATEMENTS.citus_insert[usize::from(!locks.is_empty())]).await?;
                    let inserted = tx.query(&insert, &params[..INPUT_PARAMS]).await?;
                    let ids: Vec<Uuid> = inserted.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
                    let times: Vec<DateTime<Utc>> =
                        inserted.iter().map(|r| r.try_get(1)).collect::<Result<_, _>>()?;
                    let kinds: Vec<String> = inserted
                        .iter()
                        .map(|r| r.try_get::<_, SignalTypeLabel>(2).map(|l| l.0))
                        .collect::<Result<_, _>>()?;
                    (ids, times, kinds)
                }
            };
            let upserted = prepared.as_ref().and_then(|at_nodes| at_nodes.upserted());
            let mut all: Vec<&(dyn ToSql + Sync)> = match upserted {
                // The parts applied the incidents' rules: the rest does not read them.
                Some(_) => BatchParams::NAMES
                    .iter()
                    .zip(&params)
                    .filter(|(name, _)| !PART_RULES.contains(name))
                    .map(|(_, value)| *value)
                    .collect(),
                None => params.clone(),
            };
            all.extend([&ids as &(dyn ToSql + Sync), &times, &kinds]);
            if let Some(upserted) = upserted {
                all.extend(upserted.params());
            }
            let tracked = async {
                if let Some(at_nodes) = &prepared {
                    tx.execute(RECORD_BATCH, &[&at_nodes.batch]).await?;
                }
                let track = match upserted {
                    Some(_) => &STATEMENTS.citus_track_parts,
                    None => &STATEMENTS.citus_track,
                };
                let track = tx.prepare_cached(track).await?;
                let row = tx.query_one(&track, &all).await?;
                tx.commit().await?;
                Ok::<_, tokio_postgres::Error>(row)
            }
            .await;
            at_nodes = Some(prepared.is_some());
            match (tracked, prepared) {
                (Ok(row), Some(at_nodes)) => {
                    at_nodes.commit().await;
                    row
                }
                (Ok(row), None) => row,
                (Err(why), Some(at_nodes)) => {
                    // An answer from the server: the transaction did not commit. Without one
                    // (the connection lost) it may have: the sweep decides by the record.
                    if why.code().is_some() {
                        at_nodes.roll_back().await;
                    }
                    return Err(decided_elsewhere(why));
                }
                (Err(why), None) => return Err(why.into()),
            }
        } else if locks.is_empty() {
            let statement = client.prepare_cached(&STATEMENTS.single[0]).await?;
            client.query_one(&statement, &params).await?
        } else {
            // Locks first, then the write in a statement of its own, whose snapshot sees a copy
            // that a concurrent batch committed while we waited.
            let tx = client.transaction().await?;
            lock_timeless(&tx, &locks).await?;
            let statement = tx.prepare_cached(&STATEMENTS.single[1]).await?;
            let row = tx.query_one(&statement, &params).await?;
            tx.commit().await?;
            row
        };
        self.shared_use.marked(&shared_used);
        self.record_operations(&rows).await;
        let ids: Vec<Uuid> = row.try_get("inserted_ids")?;
        let times: Vec<DateTime<Utc>> = row.try_get("inserted_times")?;
        let kinds: Vec<String> = row.try_get("inserted_types")?;
        let inserted_keys: HashSet<SignalKey> = ids
            .into_iter()
            .zip(times)
            .zip(kinds)
            .filter_map(|((id, at), kind)| Some((id, at, SignalType::parse(&kind)?)))
            .collect();
        let (upserted, requested): (i64, i64) =
            (row.try_get("incidents_upserted")?, row.try_get("analyses_requested")?);
        let severities = |column: &str| -> Result<Vec<IncidentSeverity>, StoreError> {
            let labels: Vec<String> = row.try_get(column)?;
            Ok(labels.iter().filter_map(|label| IncidentSeverity::from_db_label(label)).collect())
        };
        // One severity per opened incident: the statement does not count them a second time.
        let opened_severities = severities("opened_severities")?;
        let opened = opened_severities.len() as u64;
        Ok(BatchOutcome {
            inserted: inserted_keys.len() as u64,
            duplicates: (signals.len() - inserted_keys.len()) as u64,
            inserted_keys,
            incidents_opened: opened,
            incidents_updated: (upserted as u64).saturating_sub(opened),
            analyses_requested: requested as u64,
            opened_severities,
            escalated_severities: severities("escalated_severities")?,
            problem_links: row.try_get::<_, i64>("problem_links")? as u64,
            at_nodes,
        })
    }

    /// When `signal` will have gone as noise (`None`: kept forever).
    fn expires_at(&self, signal: &Signal) -> Option<DateTime<Utc>> {
        self.settings.lifecycle.noise_gone_by(signal.signal_type, signal.timestamp)
    }
}

/// A batch whose record the sweep wrote first (its parts, prepared longer than
/// [`super::citus::parts::SWEEP_AFTER`], rolled back): stored nothing, so a retry can succeed.
fn decided_elsewhere(error: tokio_postgres::Error) -> StoreError {
    let record = error.as_db_error().and_then(|e| e.constraint()) == Some("citus_prepared_batches_pkey");
    if record {
        StoreError::Unavailable(Box::new(error))
    } else {
        error.into()
    }
}

/// The batch's signals, with a record without a time that repeats an earlier one of the batch
/// (two copies of a retry in flight) left out: their receipt times differ, so the key would
/// not see them as one.
fn without_repeated_timeless(signals: &[Signal]) -> Vec<&Signal> {
    let mut seen = HashSet::new();
    signals.iter().filter(|s| !s.time_unknown || seen.insert((s.signal_id, s.signal_type))).collect()
}

/// The shared parts the batch's signals refer to, each once (most batches carry a few exports,
/// each with one resource and scope for hundreds of records).
fn distinct_shared<'a>(rows: &[&'a Signal]) -> Vec<&'a Shared> {
    let mut seen = HashSet::new();
    rows.iter().filter_map(|s| s.shared.as_deref()).filter(|p| seen.insert(p.id)).collect()
}

/// The lock keys of the batch's records without a time, sorted (one locking order for all
/// batches, so they cannot deadlock) and without repeats.
fn timeless_locks(rows: &[&Signal]) -> Vec<i32> {
    let mut keys: Vec<i32> = rows
        .iter()
        .filter(|s| s.time_unknown)
        .map(|s| {
            let bytes = s.signal_id.as_bytes();
            i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_named_in_the_statement_and_every_name_is_a_parameter() {
        for name in BatchParams::NAMES {
            assert!(WRITE_BATCH.contains(&format!("${name}")), "${name} is never used");
        }
        let all = [
            &STATEMENTS.single[..],
            &STATEMENTS.citus_insert[..],
            std::slice::from_ref(&STATEMENTS.citus_track),
            std::slice::from_ref(&STATEMENTS.citus_track_parts),
            &[part_statement("s", None), part_statement("s", Some(("c", "i")))],
        ];
        for statement in all.concat().iter() {
            let unbound: Vec<&str> = statement
                .match_indices('$')
                .map(|(at, _)| &statement[at + 1..])
                .filter(|after| !after.starts_with(|c: char| c.is_ascii_digit()))
                .collect();
            assert!(unbound.is_empty(), "names without a parameter: {unbound:?}");
        }
    }

    #[test]
    fn on_citus_the_insert_is_alone_and_the_rest_reads_the_rows_it_returned() {
        let numbers = |sql: &str| -> std::collections::BTreeSet<usize> {
            sql.match_indices('$')
                .filter_map(|(at, _)| {
                    let digits: String = sql[at + 1..].chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().ok()
                })
                .collect()
        };
        for insert in &STATEMENTS.citus_insert {
            assert_eq!(
                numbers(insert),
                (1..=INPUT_PARAMS).collect(),
                "the insert reads the input's parameters: {insert}"
            );
            assert!(insert.starts_with("WITH input AS") && insert.contains("INSERT INTO raw_signal_rows"));
            assert!(!insert.contains("INTO incidents") && !insert.contains("analysis_outbox"));
        }
        let track = &STATEMENTS.citus_track;
        assert!(!track.contains("INSERT INTO raw_signal_rows"), "{track}");
        assert!(!track.contains("raw_signal_rows"), "no distributed table left in it");
        let all = BatchParams::NAMES.len() + INSERTED_NAMES.len();
        assert_eq!(numbers(track), (1..=all).collect());
        // Every table the rest writes is locked before the insert, and nothing else.
        // (`ON CONFLICT … DO UPDATE SET` updates the row the insert names.)
        let written: std::collections::BTreeSet<&str> = ["INSERT INTO ", "UPDATE "]
            .iter()
            .flat_map(|verb| {
                track
                    .match_indices(verb)
                    .filter(|(at, _)| !track[..*at].ends_with("DO "))
                    .map(move |(at, _)| &track[at + verb.len()..])
            })
            .map(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or(""))
            .collect();
        assert_eq!(written, TRACKED_TABLES.into_iter().collect(), "{track}");
        assert!(STATEMENTS.single.iter().all(|s| s.contains("INSERT INTO raw_signal_rows")));
    }

    #[test]
    fn a_part_at_a_node_writes_only_its_shards_and_tracks_by_the_batch_statement_s_rules() {
        let numbers = |sql: &str| -> std::collections::BTreeSet<usize> {
            sql.match_indices('$')
                .filter_map(|(at, _)| {
                    sql[at + 1..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
                })
                .collect()
        };
        let coordinator_only = [
            "raw_signal_rows",
            "raw_signal_units",
            "problems",
            "analysis_outbox",
            "service_minutes",
            "signal_shared",
        ];
        let alone = part_statement("raw_signal_rows_102008", None);
        assert_eq!(numbers(&alone), (1..=PART_INPUT.len()).collect(), "{alone}");
        assert!(!alone.contains("$severities") && !alone.contains("$titles"), "only what the insert reads");
        assert!(alone.contains("INSERT INTO raw_signal_rows_102008 "), "{alone}");
        assert!(!alone.contains("INTO incident"), "{alone}");
        let tracked =
            part_statement("raw_signal_rows_102008", Some(("incident_traces_102040", "incidents_102048")));
        assert_eq!(numbers(&tracked), (1..=INPUT_PARAMS + PART_RULES.len()).collect(), "{tracked}");
        for table in
            ["INTO incident_traces_102040 AS c", "INTO incidents_102048 AS i", "FROM incidents_102048 i"]
        {
            assert!(tracked.contains(table), "{table} in {tracked}");
        }
        // Nothing of the coordinator's, nor the tables by their distributed names.
        let code: String =
            tracked.lines().map(|line| line.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        let words: std::collections::BTreeSet<&str> =
            code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
        for table in coordinator_only.iter().chain(&["incidents", "incident_traces"]) {
            assert!(!words.contains(table), "{table} in {tracked}");
        }
        for column in UPSERTED_NAMES {
            assert!(tracked.contains(&format!("AS {column}")), "{column} returned by {tracked}");
        }
        // And the coordinator's statement then reads them in place of its incidents' part.
        let track = &STATEMENTS.citus_track_parts;
        assert!(!track.contains("INTO incidents") && !track.contains("INTO incident_traces"), "{track}");
        assert_eq!(numbers(track), (1..=track_parts_names().len()).collect(), "{track}");
    }

    #[test]
    fn a_part_is_given_a_value_for_every_parameter_its_statement_numbers() {
        let batch = BatchParams {
            ids: vec![Uuid::nil()],
            types: vec!["log"],
            trace_ids: vec!["t"],
            services: vec!["s"],
            timestamps: vec![Utc::now()],
            payloads: vec!["{}"],
            time_unknown: vec![false],
            expires_at: vec![None],
            shared_ids: vec![None],
            errors: vec![false],
            severities: vec!["LOW"],
            tracked: vec![true],
            requests: vec![false],
            fingerprints: vec![None],
            titles: vec![None],
            shared_keys: Vec::new(),
            shared_used: Vec::new(),
            resources: Vec::new(),
            scopes: Vec::new(),
            critical_after_high: 3,
            analysis_window_secs: 60.0,
            grouping: false,
            problem_window_secs: 0.0,
        };
        for (tracked, tracking) in [(false, None), (true, Some(("c", "i")))] {
            let statement = part_statement("s", tracking);
            let highest = statement
                .match_indices('$')
                .filter_map(|(at, _)| {
                    statement[at + 1..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                        .parse()
                        .ok()
                })
                .max();
            assert_eq!(Some(batch.part_params(&[0], tracked).len()), highest, "{statement}");
        }
    }

    #[test]
    fn the_conflict_updates_read_no_clock_of_their_own() {
        // Citus refuses a function that is not IMMUTABLE in `DO UPDATE SET` of a table in its
        // metadata (migrations/0019): the clock comes from the row inserted.
        let updates: Vec<&str> = WRITE_BATCH
            .split("DO UPDATE SET")
            .skip(1)
            .map(|rest| rest.split("RETURNING").next().unwrap_or(rest))
            .collect();
        assert_eq!(updates.len(), 3, "claims, incidents and problems");
        for update in updates {
            let code: String = update.lines().map(|line| line.split("--").next().unwrap_or("")).collect();
            for stable in ["now()", "analysis_window_passed(", "current_timestamp", "clock_timestamp"] {
                assert!(!code.contains(stable), "{stable} in {code}");
            }
        }
    }

    #[test]
    fn names_become_positions_and_prefixes_do_not_collide() {
        let sql = positional(
            "SELECT $shared_ids, $shared, $ids::uuid[] -- $unknown",
            &["shared", "ids", "shared_ids"],
        );
        assert_eq!(sql, "SELECT $3, $1, $2::uuid[] -- $unknown");
    }
}
