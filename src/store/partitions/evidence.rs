//! Evidence kept when its partition expires (`model::lifecycle`): the rows of evidence traces
//! are copied into a new table that takes the expired partition's place (its name, parent and
//! bounds) and the old table is dropped whole; a partition holding only evidence is dropped
//! once none of its rows is evidence any more. No row is ever updated or deleted.

use std::collections::HashSet;

use deadpool_postgres::{GenericClient, Transaction};

use super::plan::Bounds;
use super::{quote_identifier, signals_guard};
use crate::model::SignalType;
use crate::store::citus::{keyed_bound, Layout};
use crate::store::lifecycle::evidence_traces;
use crate::store::sealing::units;
use crate::store::StoreError;

/// What a partition kept when it expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kept {
    pub signals: u64,
    pub bytes_before: i64,
    pub bytes_after: i64,
}

/// The partitions that hold only evidence.
pub(super) async fn evidence_only(client: &impl GenericClient) -> Result<HashSet<String>, StoreError> {
    let rows = client.query("SELECT name FROM raw_signal_evidence", &[]).await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

/// Disk bytes of `table`, its partitions and what was sealed from them.
pub(super) async fn size(tx: &Transaction<'_>, table: &str, layout: Layout) -> Result<i64, StoreError> {
    let sql = format!(
        "SELECT coalesce(sum({}(relid)), 0)::int8 FROM pg_partition_tree($1::text::regclass) WHERE isleaf",
        layout.total_size_function()
    );
    Ok(tx.query_one(&sql, &[&table]).await?.try_get::<_, i64>(0)? + units::size(tx, table, layout).await?)
}

/// Puts a table holding only `table`'s evidence rows (perhaps none) in its place, so that its
/// range keeps a partition for the type: a late signal is stored there, never refused.
/// `bytes_before`: `table`'s size, measured before the transaction changed anything.
pub(super) async fn keep_evidence(
    tx: &Transaction<'_>,
    table: &str,
    bounds: &Bounds,
    bytes_before: i64,
    layout: Layout,
) -> Result<Kept, StoreError> {
    let (quoted, kept) = (quote_identifier(table), quote_identifier(&format!("{table}_kept")));
    tx.batch_execute(&format!("CREATE TABLE {kept} (LIKE {quoted} INCLUDING DEFAULTS)")).await?;
    let copy = format!("INSERT INTO {kept} SELECT * FROM {quoted} WHERE trace_id IN ({})", evidence_traces());
    let signals = tx.execute(&copy, &[]).await?
        + units::copy_evidence(tx, table, &format!("{table}_kept"), layout).await?;
    // Citus measures no distributed table in a transaction that changed several shards (the
    // swap below): there the kept rows are measured while they are still a table of the
    // coordinator, without the indexes ATTACH adds.
    let kept_before_attach = match layout {
        Layout::Single => None,
        Layout::Distributed { .. } => Some(
            tx.query_one("SELECT pg_total_relation_size($1::text::regclass)", &[&format!("{table}_kept")])
                .await?
                .try_get::<_, i64>(0)?,
        ),
    };
    // Bounds as literals (DDL takes no parameters), from our own names and timestamps.
    let signal_type = bounds.signal_type();
    let (parent, values) = match bounds {
        Bounds::Type { parent, signal_type } => {
            (quote_identifier(parent), format!("IN ('{}')", signal_type.as_str()))
        }
        Bounds::Before(ends) => {
            ("raw_signal_rows".to_owned(), format!("FROM (MINVALUE) TO ('{}')", ends.to_rfc3339()))
        }
        Bounds::Keyed { signal_type, starts, ends, .. } => (
            "raw_signal_rows".to_owned(),
            format!(
                "FROM ({}) TO ({})",
                keyed_bound(signal_type.as_str(), *starts),
                keyed_bound(signal_type.as_str(), *ends)
            ),
        ),
        Bounds::Mixed { starts, ends } => (
            "raw_signal_rows".to_owned(),
            format!("FROM ('{}') TO ('{}')", starts.to_rfc3339(), ends.to_rfc3339()),
        ),
    };
    super::lock_with_parent(tx, table).await?;
    // Readers wait for the moment the catalog changes, then see the kept rows where the
    // partition was (ATTACH builds the parent's indexes and key on the small table).
    // One statement at a time: Citus passes a DDL string on to the workers whole, and refuses
    // one holding several commands.
    for statement in [
        format!("ALTER TABLE {parent} DETACH PARTITION {quoted}"),
        format!("DROP TABLE {quoted}"),
        format!("ALTER TABLE {kept} RENAME TO {quoted}"),
        format!("ALTER TABLE {parent} ATTACH PARTITION {quoted} FOR VALUES {values}"),
        signals_guard(table, layout),
    ] {
        tx.batch_execute(&statement).await?;
    }
    units::drop_all(tx, table).await?;
    tx.execute(
        "INSERT INTO raw_signal_evidence (name, signal_type, signals, bytes_before)
         VALUES ($1, $2::text::signaltypeenum, $3, $4)",
        &[&table, &signal_type.map(SignalType::as_str), &(signals as i64), &bytes_before],
    )
    .await?;
    let bytes_after = match kept_before_attach {
        Some(bytes) => bytes,
        None => size(tx, table, layout).await?,
    };
    Ok(Kept { signals, bytes_before, bytes_after })
}

/// Whether `table` (a range, or the legacy table, whose partitions hold only evidence) still
/// holds some.
pub(super) async fn holds_evidence(tx: &Transaction<'_>, table: &str) -> Result<bool, StoreError> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE trace_id IN ({}))",
        quote_identifier(table),
        evidence_traces()
    );
    Ok(tx.query_one(&sql, &[]).await?.try_get(0)?)
}

/// Forgets the partitions of `table` (a range, or the legacy table) that held only evidence.
pub(super) async fn forget(tx: &Transaction<'_>, table: &str) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM raw_signal_evidence WHERE name = $1
            OR name IN (SELECT $1 || '_' || t::text FROM unnest(enum_range(NULL::signaltypeenum)) AS t)",
        &[&table],
    )
    .await?;
    Ok(())
}
