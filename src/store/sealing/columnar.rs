//! Sealing on a Citus cluster (docs/scaling.md). A block holds the signals of many traces and
//! Citus places a row by one value of its distribution column, so blocks cannot be placed by
//! trace: a block's trace could not be read from one shard. There a sealed partition becomes
//! instead a table of Citus's own columnar storage (`citus_columnar`: each column compressed in
//! groups of rows), distributed by `trace_id` and colocated with the signals, its rows written in
//! trace order so that a trace's read, through its index, decompresses one small group.
//!
//! Laid out once by [`lay_out`], at start-up, beside what migrations/0018 made for one node:
//!
//!   raw_signal_sealing    distributed, keyed like raw_signal_rows: the partitions being sealed
//!   raw_signal_columnar   distributed, partitioned by unit: one columnar table per sealed unit
//!
//! and the readers (`raw_signals` and the list views) read both beside the row form. A seal runs
//! the same three transactions as on one node (mod.rs), with the statements here.

use deadpool_postgres::Transaction;
use tokio_postgres::{Client, GenericClient};

use super::steps::{after_trace, UnitTables, HOLD_READERS};
use crate::model::SignalType;
use crate::store::bootstrap::quote_identifier;
use crate::store::citus::{between_function, keyed_bound, keyed_by_type, CitusError};
use crate::store::partitions::{lock_for_change, SIGNALS_PARENT};
use crate::store::StoreError;

/// Rows per group a column is compressed in (Citus's smallest): a trace's read decompresses
/// the groups holding it, one or two.
const CHUNK_GROUP_ROWS: u32 = 1_000;

/// Rows per stripe. Citus's default (150,000) made an indexed read of one trace take 10–20 ms
/// on this machine (it reads the stripe's metadata whole); at 5,000, 0.7 ms, the size the same
/// (measured on 2 M spans: 70 B a span with the trace index, 668 B in row form).
const STRIPE_ROWS: u32 = 5_000;

/// Whether partitions are sealed on this cluster, and what stops it if not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Columnar {
    Ready,
    Unavailable(&'static str),
}

/// Whether partitions can be sealed on this cluster now: the layout is in place, the signals
/// are keyed by type (each type's partition of a range is one table) and Citus's columnar
/// storage is installed.
pub async fn sealable(client: &impl GenericClient) -> Result<Columnar, tokio_postgres::Error> {
    let columnar: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus_columnar')", &[])
        .await?
        .try_get(0)?;
    Ok(if !laid_out(client).await? {
        Columnar::Unavailable("sealed storage is not laid out")
    } else if !keyed_by_type(client).await? {
        Columnar::Unavailable(
            "the signals are laid out by time alone (the table from before partitioning is still there)",
        )
    } else if !columnar {
        Columnar::Unavailable("the citus_columnar extension is not installed on the cluster")
    } else {
        Columnar::Ready
    })
}

/// Whether the distributed tables of sealed storage are in place.
async fn laid_out(client: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    let sql = "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass('raw_signal_columnar'))";
    client.query_one(sql, &[]).await?.try_get(0)
}

/// Lays out the sealed storage of a Citus cluster unless it is there, and installs Citus's
/// columnar storage when the cluster has it; the caller holds the migration lock. Laid out
/// whatever the layout of the signals, so that every Citus database is read and written by the
/// same statements. One transaction; nothing is sealed on Citus before it, so no partition is
/// being sealed and the one node's (empty) parent of seals under way can be replaced.
pub async fn lay_out(client: &mut Client) -> Result<Columnar, CitusError> {
    let step = |step: &'static str| move |source| CitusError::Step { step, source };
    let available: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'citus_columnar')", &[])
        .await?
        .try_get(0)?;
    if available {
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS citus_columnar")
            .await
            .map_err(step("installing citus_columnar"))?;
    }
    if !laid_out(client).await? {
        let tx = client.transaction().await?;
        // One connection per worker: the tables are distributed and then read by the views'
        // DDL in the same transaction (Layout::partition_change_mode).
        tx.batch_execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'").await?;
        for statement in [
            "ALTER TABLE raw_signal_sealing RENAME TO raw_signal_sealing_one_node",
            r#"CREATE TABLE raw_signal_sealing (LIKE raw_signal_rows INCLUDING DEFAULTS)
                   PARTITION BY RANGE (signal_type, "timestamp")"#,
            "CREATE TABLE raw_signal_columnar (unit int4 NOT NULL, LIKE raw_signal_rows INCLUDING DEFAULTS)
                   PARTITION BY LIST (unit)",
            "CREATE INDEX raw_signal_columnar_trace_id_idx ON raw_signal_columnar (trace_id)",
            "SELECT create_distributed_table('raw_signal_sealing', 'trace_id', colocate_with => 'raw_signal_rows')",
            "SELECT create_distributed_table('raw_signal_columnar', 'trace_id', colocate_with => 'raw_signal_rows')",
        ] {
            tx.batch_execute(statement).await.map_err(step("laying out sealed storage"))?;
        }
        let between = between_function("raw_signals");
        for statement in READERS.into_iter().chain([between.as_str()]) {
            tx.batch_execute(statement).await.map_err(step("reading sealed storage"))?;
        }
        tx.batch_execute("DROP TABLE raw_signal_sealing_one_node")
            .await
            .map_err(step("dropping the parent of seals of one node"))?;
        tx.commit().await.map_err(step("commit"))?;
    }
    Ok(sealable(client).await?)
}

/// What reads the signals on Citus once sealed storage is laid out: the row form, the
/// partitions being sealed and the columnar tables, all distributed by trace and colocated, so
/// that a read by trace still goes to one shard. Same names and columns as migrations/0018; a
/// columnar row is listed as a row is (its own time and service as its bounds). No leg filters
/// its rows: Citus plans no join of a local table (`signal_shared`, as the readers join it) with
/// a union over several shards one of whose legs has a condition ("complex joins are only
/// supported…"), so a partition being sealed keeps its records of unknown time until its
/// columnar table replaces it ([`attach`]), rather than sharing them with the row form as on
/// one node. One statement each, as Citus passes DDL on to the workers whole.
const READERS: [&str; 3] = [
    r#"CREATE OR REPLACE VIEW raw_signals_sealed AS
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id
    FROM raw_signal_sealing
    UNION ALL
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, false, shared_id
    FROM raw_signal_columnar"#,
    r#"CREATE OR REPLACE VIEW raw_signals AS
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id
    FROM raw_signal_rows
    UNION ALL
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id
    FROM raw_signals_sealed"#,
    r#"CREATE OR REPLACE VIEW raw_signals_hot AS
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, shared_id,
           "timestamp" AS lo, "timestamp" AS hi, ARRAY[service_name] AS services, NULL::int4 AS unit, NULL::int4 AS block
    FROM raw_signal_rows
    UNION ALL
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, shared_id,
           "timestamp", "timestamp", ARRAY[service_name], NULL::int4, NULL::int4
    FROM raw_signals_sealed"#,
];

/// [`super::steps::begin`] on Citus: the type partition `leaf` of range `range` leaves the
/// row form (an empty one takes its place) and becomes a partition of `raw_signal_sealing`
/// under the same bounds, still read, no longer written, its records of unknown time with it
/// (where the batch's check finds a retry of one: store/tracking.rs); the unit's empty
/// columnar table is made. The caller's transaction is in sequential mode.
pub async fn begin(
    tx: &Transaction<'_>,
    leaf: &str,
    range: &str,
    signal_type: SignalType,
) -> Result<i32, StoreError> {
    // Measured before the first lock: Citus measures no table in a transaction that has
    // changed several shards.
    let bytes_before: i64 = tx
        .query_one("SELECT citus_total_relation_size($1::text::regclass)::int8", &[&leaf])
        .await?
        .try_get(0)?;
    // Detaching waits for the batches writing to the signals, which hold their parent until
    // they commit (over the workers, each a two-phase commit): asked for with longer and longer
    // waits. Then the readers', in the order a batch takes them.
    lock_for_change(tx, SIGNALS_PARENT).await?;
    tx.batch_execute(HOLD_READERS).await?;
    let row = tx
        .query_one(
            "INSERT INTO raw_signal_units (leaf, range_name, signal_type, starts, ends, bytes_before)
             SELECT $1, p.name, $3::text::signaltypeenum, p.starts, p.ends, $4
             FROM raw_signal_partitions p WHERE p.name = $2
             RETURNING unit, starts, ends",
            &[&leaf, &range, &signal_type.as_str(), &bytes_before],
        )
        .await?;
    let unit: i32 = row.try_get(0)?;
    let bounds = format!(
        "FROM ({}) TO ({})",
        keyed_bound(signal_type.as_str(), row.try_get(1)?),
        keyed_bound(signal_type.as_str(), row.try_get(2)?)
    );
    let tables = UnitTables::of(unit);
    let (quoted_leaf, sealing, columnar) =
        (quote_identifier(leaf), quote_identifier(&tables.sealing), quote_identifier(&tables.columnar));
    for statement in [
        format!("ALTER TABLE raw_signal_rows DETACH PARTITION {quoted_leaf}"),
        format!("ALTER TABLE {quoted_leaf} RENAME TO {sealing}"),
        format!("CREATE TABLE {quoted_leaf} PARTITION OF raw_signal_rows FOR VALUES {bounds}"),
        format!("ALTER TABLE raw_signal_sealing ATTACH PARTITION {sealing} FOR VALUES {bounds}"),
        format!("CREATE TABLE {columnar} (LIKE raw_signal_columnar INCLUDING DEFAULTS) USING columnar"),
        format!(
            "ALTER TABLE {columnar} SET (columnar.compression = zstd, columnar.chunk_group_row_limit = {CHUNK_GROUP_ROWS},
                                         columnar.stripe_row_limit = {STRIPE_ROWS})"
        ),
    ] {
        tx.batch_execute(&statement).await?;
    }
    tx.execute(
        "SELECT create_distributed_table($1::text::regclass, 'trace_id', colocate_with => 'raw_signal_rows')",
        &[&tables.columnar],
    )
    .await?;
    Ok(unit)
}

/// Writes the unit's signals of the traces after `after` up to `last` (all those left when
/// `None`) into its columnar table, in trace order: each shard's table is written in that
/// order, step after step, so that a trace is in one group of rows (or two, at a boundary).
/// Returns how many.
pub async fn write(
    tx: &Transaction<'_>,
    unit: i32,
    after: Option<&str>,
    last: Option<&str>,
) -> Result<u64, StoreError> {
    let tables = UnitTables::of(unit);
    let after_clause = after_trace(after, 2);
    // A statement per shard, each run on the worker holding it (the tables are colocated).
    let sql = format!(
        r#"INSERT INTO {columnar} (unit, id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id)
           SELECT $1, id, signal_type, trace_id, service_name, "timestamp", payload, received_at, false, shared_id
           FROM {sealing}
           WHERE {after_clause} AND ($3::varchar IS NULL OR trace_id <= $3) AND NOT time_unknown
           ORDER BY trace_id, "timestamp", id"#,
        columnar = quote_identifier(&tables.columnar),
        sealing = quote_identifier(&tables.sealing),
    );
    Ok(tx.execute(&sql, &[&unit, &after, &last]).await?)
}

/// The last trace of the unit's signals after `after`: where a step that took them all ended.
pub async fn last_trace(
    tx: &Transaction<'_>,
    unit: i32,
    after: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let after_clause = after_trace(after, 1);
    let sql = format!(
        "SELECT max(trace_id) FROM {} WHERE {after_clause} AND NOT time_unknown",
        quote_identifier(&UnitTables::of(unit).sealing)
    );
    Ok(tx.query_one(&sql, &[&after]).await?.try_get(0)?)
}

/// [`super::steps::index`] on Citus: the trace index of the unit's columnar table, which
/// attaching it then adopts.
pub async fn index(tx: &Transaction<'_>, unit: i32) -> Result<(), StoreError> {
    let tables = UnitTables::of(unit);
    tx.batch_execute(&format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} (trace_id)",
        quote_identifier(&format!("{}_trace_id_idx", tables.columnar)),
        quote_identifier(&tables.columnar),
    ))
    .await?;
    Ok(())
}

/// [`super::steps::attach`] on Citus, once the unit is known pending: the columnar table
/// replaces the partition being sealed for every reader at once, and its records of unknown
/// time go back to the row form, into the partition that took its place (`leaf`). The
/// caller's transaction is in sequential mode.
pub async fn attach(tx: &Transaction<'_>, unit: i32, leaf: &str) -> Result<(), StoreError> {
    let tables = UnitTables::of(unit);
    let (sealing, columnar) = (quote_identifier(&tables.sealing), quote_identifier(&tables.columnar));
    let columns = r#"id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id"#;
    tx.batch_execute(HOLD_READERS).await?;
    for statement in [
        format!(
            "INSERT INTO {} ({columns}) SELECT {columns} FROM {sealing} WHERE time_unknown",
            quote_identifier(leaf)
        ),
        format!("ALTER TABLE raw_signal_sealing DETACH PARTITION {sealing}"),
        format!("DROP TABLE {sealing}"),
        format!("ALTER TABLE raw_signal_columnar ATTACH PARTITION {columnar} FOR VALUES IN ({unit})"),
    ] {
        tx.batch_execute(&statement).await?;
    }
    Ok(())
}
