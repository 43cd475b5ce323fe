//! Sealed units when their partition expires (store/partitions/evidence.rs): they go with it,
//! whole, after their evidence is copied, as the rows of the partition are, into the table that
//! takes its place. Evidence is kept in row form: it is a few traces, read one by one.

use deadpool_postgres::Transaction;

use super::steps::UnitTables;
use crate::store::bootstrap::quote_identifier;
use crate::store::citus::Layout;
use crate::store::lifecycle::evidence_traces;
use crate::store::StoreError;

/// The units sealed from `leaf` (the type partition's name), or from any partition of the
/// range `range`: `(unit, attached)`.
async fn units(tx: &Transaction<'_>, leaf_or_range: &str) -> Result<Vec<(i32, bool)>, StoreError> {
    let rows = tx
        .query(
            "SELECT unit, attached FROM raw_signal_units WHERE leaf = $1 OR range_name = $1 ORDER BY unit",
            &[&leaf_or_range],
        )
        .await?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
}

/// Copies the evidence of `leaf`'s units into `kept` (a table like the row partition);
/// returns how many signals.
pub async fn copy_evidence(
    tx: &Transaction<'_>,
    leaf: &str,
    kept: &str,
    layout: Layout,
) -> Result<u64, StoreError> {
    let mut copied = 0;
    for (unit, attached) in units(tx, leaf).await? {
        let tables = UnitTables::of(unit);
        // Until it is attached, the old partition holds every signal of the unit.
        let source = if attached && layout.is_distributed() {
            format!(
                "SELECT id, signal_type, trace_id, service_name, \"timestamp\", payload, received_at, false, shared_id
                 FROM {} WHERE trace_id IN ({})",
                quote_identifier(&tables.columnar),
                evidence_traces()
            )
        } else if attached {
            format!(
                "SELECT u.id, b.signal_type, t.trace_id, u.service_name, u.\"timestamp\", u.payload, u.received_at, false, u.shared_id
                 FROM {traces} t JOIN {blocks} b ON b.block = t.block
                 CROSS JOIN LATERAL raw_signal_unpack(b.body -> t.trace_id::text) u
                 WHERE t.trace_id IN ({evidence})",
                traces = quote_identifier(&tables.traces),
                blocks = quote_identifier(&tables.blocks),
                evidence = evidence_traces(),
            )
        } else {
            // On one node its rows of unknown time are copied with the partition that took its
            // place; on Citus they are still here (columnar.rs).
            let known = if layout.is_distributed() { "" } else { "NOT time_unknown AND" };
            format!(
                "SELECT id, signal_type, trace_id, service_name, \"timestamp\", payload, received_at, time_unknown, shared_id
                 FROM {} WHERE {known} trace_id IN ({})",
                quote_identifier(&tables.sealing),
                evidence_traces()
            )
        };
        copied += tx
            .execute(
                &format!(
                    "INSERT INTO {} (id, signal_type, trace_id, service_name, \"timestamp\", payload, received_at, time_unknown, shared_id) {source}",
                    quote_identifier(kept)
                ),
                &[],
            )
            .await?;
    }
    Ok(copied)
}

/// Disk bytes of the units of `leaf_or_range` (heap, TOAST, indexes; on Citus, on every node).
pub async fn size(tx: &Transaction<'_>, leaf_or_range: &str, layout: Layout) -> Result<i64, StoreError> {
    let mut bytes = 0;
    // Only the tables that exist: Citus's function takes no table that is not distributed.
    let sql = format!(
        "SELECT coalesce(sum({}(t)), 0)::int8
         FROM unnest($1::text[]) AS n CROSS JOIN LATERAL to_regclass(quote_ident(n)) AS t WHERE t IS NOT NULL",
        layout.total_size_function()
    );
    for (unit, _) in units(tx, leaf_or_range).await? {
        let tables = UnitTables::of(unit);
        let names = [tables.sealing, tables.blocks, tables.traces, tables.columnar];
        bytes += tx.query_one(&sql, &[&&names[..]]).await?.try_get::<_, i64>(0)?;
    }
    Ok(bytes)
}

/// Drops the units of `leaf_or_range`, whole, and forgets them.
pub async fn drop_all(tx: &Transaction<'_>, leaf_or_range: &str) -> Result<(), StoreError> {
    for (unit, _) in units(tx, leaf_or_range).await? {
        let tables = UnitTables::of(unit);
        for table in [&tables.sealing, &tables.blocks, &tables.traces, &tables.columnar] {
            // One statement each, as Citus takes its DDL (partitions/evidence.rs).
            tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", quote_identifier(table))).await?;
        }
        tx.execute("DELETE FROM raw_signal_units WHERE unit = $1", &[&unit]).await?;
    }
    Ok(())
}
