//! The statements of one seal (migrations/0018 has the layout), each run in a transaction of
//! its own by mod.rs. Table names are ours (a partition's recorded name, a unit number), quoted.

use deadpool_postgres::Transaction;

use super::columnar;
use crate::model::SignalType;
use crate::store::bootstrap::quote_identifier;
use crate::store::citus::Layout;
use crate::store::partitions::append_only_trigger;
use crate::store::StoreError;

/// Signals per block: large enough that a block compresses like a whole file would (keys,
/// services and attribute names repeated across traces), small enough that reading one trace
/// decompresses well under a millisecond.
pub const BLOCK_SIGNALS: i64 = 500;

/// Signals read per step: one step's transaction writes about this many signals' blocks
/// (a few MB of WAL) and sorts them in memory.
pub const STEP_SIGNALS: i64 = 50_000;

/// The tables of unit `unit`: the old row partition while it is sealed, then its blocks and
/// their trace index (on Citus, its columnar table: columnar.rs).
pub struct UnitTables {
    pub sealing: String,
    pub blocks: String,
    pub traces: String,
    pub columnar: String,
}

impl UnitTables {
    pub fn of(unit: i32) -> UnitTables {
        UnitTables {
            sealing: format!("raw_signal_sealing_{unit}"),
            blocks: format!("raw_signal_blocks_{unit}"),
            traces: format!("raw_signal_block_traces_{unit}"),
            columnar: format!("raw_signal_columnar_{unit}"),
        }
    }
}

/// Readers of `raw_signals` lock the view's tables, this one among them, before they look at
/// the catalog: holding it while the row partition moves or the blocks replace it, no reader
/// (nor a batch's duplicate check) can see a signal twice or miss it. `ONLY`: its children (the
/// partitions being sealed) need no lock here, and one being vacuumed must not hold this up.
pub(super) const HOLD_READERS: &str = "LOCK TABLE ONLY raw_signal_sealing IN ACCESS EXCLUSIVE MODE";

/// Moves `leaf` (the `signal_type` partition of range `range`) out of the row form: an empty
/// table takes its place (late arrivals go there; the rows of unknown time stay in row form,
/// where a retry of one is recognised), and it becomes `raw_signal_sealing_<unit>`, still read
/// by `raw_signals`, no longer written. Creates the unit's empty block tables.
pub async fn begin(
    tx: &Transaction<'_>,
    leaf: &str,
    range: &str,
    signal_type: SignalType,
) -> Result<i32, StoreError> {
    // A batch holds the rows' lock from before its snapshot to its commit: with this one, a
    // batch either committed before the move (its signals move with the rest) or sees the
    // unit recorded here, and checks its late signals against what is sealed. Taken first, in
    // the order a batch takes them, so that the two never wait for each other in a circle.
    tx.batch_execute("LOCK TABLE ONLY raw_signal_rows IN SHARE MODE").await?;
    tx.batch_execute(HOLD_READERS).await?;
    let unit: i32 = tx
        .query_one(
            "INSERT INTO raw_signal_units (leaf, range_name, signal_type, starts, ends, bytes_before)
             SELECT $1, p.name, $3::text::signaltypeenum, p.starts, p.ends, pg_total_relation_size($1::text::regclass)
             FROM raw_signal_partitions p WHERE p.name = $2
             RETURNING unit",
            &[&leaf, &range, &signal_type.as_str()],
        )
        .await?
        .try_get(0)?;
    let tables = UnitTables::of(unit);
    let (quoted_leaf, next) = (quote_identifier(leaf), quote_identifier(&format!("{leaf}_next")));
    let (sealing, blocks, traces) = (
        quote_identifier(&tables.sealing),
        quote_identifier(&tables.blocks),
        quote_identifier(&tables.traces),
    );
    let range = quote_identifier(range);
    // Bounds as literals (DDL takes no parameters), from our own names and enum labels.
    tx.batch_execute(&format!(
        "CREATE TABLE {next} (LIKE {quoted_leaf} INCLUDING DEFAULTS);
         INSERT INTO {next} SELECT * FROM {quoted_leaf} WHERE time_unknown;
         ALTER TABLE {range} DETACH PARTITION {quoted_leaf};
         ALTER TABLE {quoted_leaf} RENAME TO {sealing};
         ALTER TABLE {sealing} INHERIT raw_signal_sealing;
         ALTER TABLE {next} RENAME TO {quoted_leaf};
         ALTER TABLE {range} ATTACH PARTITION {quoted_leaf} FOR VALUES IN ('{kind}');
         {leaf_trigger};
         CREATE TABLE {blocks} (LIKE raw_signal_blocks INCLUDING DEFAULTS INCLUDING COMPRESSION, CHECK (unit = {unit}));
         {blocks_trigger};
         CREATE TABLE {traces} (LIKE raw_signal_block_traces, CHECK (unit = {unit}));
         {traces_trigger};",
        kind = signal_type.as_str(),
        leaf_trigger = append_only_trigger(leaf),
        blocks_trigger = append_only_trigger(&tables.blocks),
        traces_trigger = append_only_trigger(&tables.traces),
    ))
    .await?;
    Ok(unit)
}

/// What one step did.
pub enum Step {
    /// Sealed the next traces.
    Sealed,
    /// Nothing was left: the unit is ready to attach.
    Done,
    /// The unit is attached, or gone (its partition expired meanwhile).
    Over,
}

/// Seals the next [`STEP_SIGNALS`] signals (whole traces) of the unit's old partition, in
/// trace order, after the last trace sealed, into the next blocks (on Citus, into its columnar
/// table); records the progress in the same transaction, so a step is done once or not at all.
/// The progress is read here, under the maintenance lock the caller holds: whoever runs the next
/// step (another instance, after a restart) continues exactly where the last one stopped.
pub async fn step(
    tx: &Transaction<'_>,
    unit: i32,
    signal_type: SignalType,
    layout: Layout,
) -> Result<Step, StoreError> {
    let progress = tx
        .query_opt(
            "SELECT next_trace, blocks, attached FROM raw_signal_units WHERE unit = $1 FOR UPDATE",
            &[&unit],
        )
        .await?;
    let Some(progress) = progress else { return Ok(Step::Over) };
    let (after, first_block, attached): (Option<String>, i32, bool) =
        (progress.try_get(0)?, progress.try_get(1)?, progress.try_get(2)?);
    if attached {
        return Ok(Step::Over);
    }
    let sealing = quote_identifier(&UnitTables::of(unit).sealing);
    let after = after.as_deref();
    let after_clause = after_trace(after, 1);
    let boundary: Option<String> = tx
        .query_opt(
            &format!(
                "SELECT trace_id FROM {sealing} WHERE {after_clause} AND NOT time_unknown
                 ORDER BY trace_id OFFSET $2 LIMIT 1"
            ),
            &[&after, &STEP_SIGNALS],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    let (signals, blocks, last_trace) = match layout {
        Layout::Single => {
            write_blocks(tx, unit, signal_type, (after, boundary.as_deref()), first_block).await?
        }
        Layout::Distributed { .. } => {
            let signals = columnar::write(tx, unit, after, boundary.as_deref()).await?;
            let last = match boundary {
                Some(boundary) => Some(boundary),
                None => columnar::last_trace(tx, unit, after).await?,
            };
            (signals as i64, 0, last)
        }
    };
    if signals == 0 {
        return Ok(Step::Done);
    }
    tx.execute(
        "UPDATE raw_signal_units SET next_trace = $2, blocks = blocks + $3, signals = signals + $4 WHERE unit = $1",
        &[&unit, &last_trace, &blocks, &signals],
    )
    .await?;
    Ok(Step::Sealed)
}

/// The condition "after the trace in parameter `$n`", for a step resuming after `after`. The
/// first step's (`None`) still names the parameter, which is always bound, but holds for every
/// row. Spelled apart rather than as `$n IS NULL OR trace_id > $n`, so that a resuming step's
/// condition is a plain range on the trace index whatever the planner makes of a disjunction.
pub(super) fn after_trace(after: Option<&str>, n: usize) -> String {
    match after {
        Some(_) => format!("trace_id > ${n}"),
        None => format!("${n}::varchar IS NULL"),
    }
}

/// Writes the unit's signals of the traces after `after` up to `last` (all those left when
/// `None`) into blocks numbered from `first_block`: `(signals, blocks, last trace)`.
async fn write_blocks(
    tx: &Transaction<'_>,
    unit: i32,
    signal_type: SignalType,
    (after, boundary): (Option<&str>, Option<&str>),
    first_block: i32,
) -> Result<(i64, i32, Option<String>), StoreError> {
    let tables = UnitTables::of(unit);
    let sealing = quote_identifier(&tables.sealing);
    let after_clause = after_trace(after, 1);
    // The timestamps in the blocks are written in UTC whatever the server's setting.
    tx.batch_execute("SET LOCAL TimeZone = 'UTC'").await?;
    // Traces are ordered by their first signal, so a block holds traces of nearby times (its
    // bounds let a scan by time skip it) that resemble each other (they compress together).
    // Each block is written as JSON text and parsed into jsonb once: aggregating jsonb values
    // (jsonb_agg, then jsonb_object_agg) copies each signal twice more and took half the step.
    let sql = format!(
        r#"WITH chunk AS (
               SELECT trace_id, "timestamp", id, service_name,
                      json_build_array(id, service_name, "timestamp", received_at, shared_id, payload)::text AS signal,
                      min("timestamp") OVER (PARTITION BY trace_id) AS trace_start
               FROM {sealing}
               WHERE {after_clause} AND ($2::varchar IS NULL OR trace_id <= $2) AND NOT time_unknown
           ),
           numbered AS (
               SELECT *, $3::int4 + ((row_number() OVER (ORDER BY trace_start, trace_id, "timestamp", id) - 1) / $4)::int4 AS block
               FROM chunk
           ),
           traces AS (
               SELECT block, trace_id, '[' || string_agg(signal, ',' ORDER BY "timestamp", id) || ']' AS signals
               FROM numbered GROUP BY block, trace_id
           ),
           bounds AS (
               SELECT block, min("timestamp") AS starts, max("timestamp") AS ends,
                      array_agg(DISTINCT service_name) AS services
               FROM numbered GROUP BY block
           ),
           blocks AS (
               INSERT INTO {blocks} (unit, block, signal_type, starts, ends, services, body)
               SELECT $5, t.block, $6::text::signaltypeenum, b.starts, b.ends, b.services, t.body
               FROM (SELECT block, ('{{' || string_agg(to_json(trace_id)::text || ':' || signals, ',') || '}}')::jsonb AS body
                     FROM traces GROUP BY block) t
               JOIN bounds b USING (block)
               RETURNING 1
           ),
           keys AS (
               INSERT INTO {traces} (unit, trace_id, block)
               SELECT $5, trace_id, block FROM traces ORDER BY trace_id
           )
           SELECT (SELECT count(*) FROM numbered), (SELECT count(*) FROM blocks)::int4,
                  (SELECT max(trace_id) FROM numbered)"#,
        blocks = quote_identifier(&tables.blocks),
        traces = quote_identifier(&tables.traces),
    );
    let row = tx
        .query_one(&sql, &[&after, &boundary, &first_block, &BLOCK_SIGNALS, &unit, &signal_type.as_str()])
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// Indexes the unit's tables as their parents' indexes are, before they are attached (attaching
/// then adopts them instead of building them under the readers' lock).
pub async fn index(tx: &Transaction<'_>, unit: i32, layout: Layout) -> Result<(), StoreError> {
    if layout.is_distributed() {
        return columnar::index(tx, unit).await;
    }
    let tables = UnitTables::of(unit);
    tx.batch_execute(&format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS {blocks_key} ON {blocks} (unit, block);
         CREATE INDEX IF NOT EXISTS {traces_key} ON {traces} (trace_id);",
        blocks_key = quote_identifier(&format!("{}_pkey", tables.blocks)),
        traces_key = quote_identifier(&format!("{}_trace_id_idx", tables.traces)),
        blocks = quote_identifier(&tables.blocks),
        traces = quote_identifier(&tables.traces),
    ))
    .await?;
    Ok(())
}

/// The blocks replace the old partition for every reader at once; false: already done (or the
/// unit is gone).
pub async fn attach(tx: &Transaction<'_>, unit: i32, layout: Layout) -> Result<bool, StoreError> {
    let pending = tx
        .query_opt("SELECT 1 FROM raw_signal_units WHERE unit = $1 AND NOT attached FOR UPDATE", &[&unit])
        .await?;
    if pending.is_none() {
        return Ok(false);
    }
    if layout.is_distributed() {
        let leaf: String =
            tx.query_one("SELECT leaf FROM raw_signal_units WHERE unit = $1", &[&unit]).await?.try_get(0)?;
        columnar::attach(tx, unit, &leaf).await?;
    } else {
        attach_blocks(tx, unit).await?;
    }
    tx.execute("UPDATE raw_signal_units SET attached = true, sealed_at = now() WHERE unit = $1", &[&unit])
        .await?;
    Ok(true)
}

async fn attach_blocks(tx: &Transaction<'_>, unit: i32) -> Result<(), StoreError> {
    let tables = UnitTables::of(unit);
    tx.batch_execute(HOLD_READERS).await?;
    tx.batch_execute(&format!(
        "DROP TABLE {sealing};
         ALTER TABLE raw_signal_blocks ATTACH PARTITION {blocks} FOR VALUES IN ({unit});
         ALTER TABLE raw_signal_block_traces ATTACH PARTITION {traces} FOR VALUES IN ({unit});",
        sealing = quote_identifier(&tables.sealing),
        blocks = quote_identifier(&tables.blocks),
        traces = quote_identifier(&tables.traces),
    ))
    .await?;
    Ok(())
}
