//! On Citus, `incidents` is partitioned once, by `RANGE (kept, detected_at)`, instead of by
//! `kept` and then by time (migrations/0015): Citus neither distributes a table partitioned
//! twice nor adds one to its metadata (`citus_add_local_table_to_metadata`), and one of the two
//! is what lets a batch's incidents be written on the node holding its signals
//! (docs/scaling.md, "What is left" 1). The tables themselves stay what they are and keep their
//! names: `incidents_kept` holds `(true, MINVALUE)` to `(true, MAXVALUE)`, each time range
//! `(false, starts)` to `(false, ends)`, and `incidents_live_default` is the default partition.
//! No row is copied, except a kept incident without a time (one from before migrations/0015
//! can have none), which no range can hold: it moves to the default partition.

use std::time::Instant;

use tokio_postgres::{Client, GenericClient};
use tracing::info;

use super::CitusError;
use crate::store::bootstrap::quote_identifier;

/// What [`level`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Leveled {
    /// Time ranges (and the default partition) moved under the new key.
    pub ranges: usize,
    pub incidents: i64,
    pub seconds: f64,
}

/// Whether `incidents` is partitioned once, by `(kept, detected_at)`.
async fn is_leveled(client: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    let sql = "SELECT partstrat = 'r' FROM pg_partitioned_table WHERE partrelid = 'incidents'::regclass";
    client.query_one(sql, &[]).await?.try_get(0)
}

/// The bound of a time range of `incidents_live` (`FOR VALUES FROM ('…') TO ('…')`, as
/// PostgreSQL prints it, or `DEFAULT`) under the key `(kept, detected_at)`; `None` for a bound
/// of another form, which no partition the service makes has.
fn live_bound(bound: &str) -> Option<String> {
    if bound == "DEFAULT" {
        return Some(bound.to_owned());
    }
    let rest = bound.strip_prefix("FOR VALUES FROM (")?;
    let (from, to) = rest.split_once(") TO (")?;
    let to = to.strip_suffix(')')?;
    Some(format!("FOR VALUES FROM (false, {from}) TO (false, {to})"))
}

/// The partitions directly under `parent`, each with its bound as PostgreSQL prints it.
async fn partitions_of(
    client: &impl GenericClient,
    parent: &str,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    client
        .query(
            "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = $1::text::regclass ORDER BY 1",
            &[&parent],
        )
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Puts in the place of `incidents` a table partitioned by `RANGE (kept, detected_at)`, its
/// partitions attached to it directly (see the module), unless it already is: `None` when it
/// was. One transaction, holding `incidents` whole: batches wait until it commits, while
/// PostgreSQL checks each partition's rows against its new bounds (one read of every incident).
pub async fn level(client: &mut Client) -> Result<Option<Leveled>, CitusError> {
    if is_leveled(client).await? {
        return Ok(None);
    }
    let started = Instant::now();
    let step = |step: &'static str| move |source| CitusError::Step { step, source };
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE")
        .await
        .map_err(step("locking the incidents"))?;
    // The definitions name the table `incidents`, which the new table is called by then.
    let rebuild = super::rebuild_statements(&tx, "incidents").await?;
    let top = partitions_of(&tx, "incidents").await?;
    let expected = [("incidents_kept", "FOR VALUES IN (true)"), ("incidents_live", "FOR VALUES IN (false)")];
    let unexpected: Vec<&str> = top
        .iter()
        .filter(|(name, bound)| !expected.contains(&(name.as_str(), bound.as_str())))
        .map(|(name, _)| name.as_str())
        .collect();
    let live = partitions_of(&tx, "incidents_live").await?;
    let mut moves = Vec::new();
    let mut unmovable = unexpected.iter().map(|name| name.to_string()).collect::<Vec<_>>();
    // Ranges first and the default last: attaching a range reads the default partition, if
    // one is attached already, for rows that belong in the range.
    let (defaults, ranges): (Vec<_>, Vec<_>) = live.iter().partition(|(_, bound)| bound == "DEFAULT");
    for (name, bound) in ranges.iter().chain(&defaults) {
        match live_bound(bound) {
            Some(leveled) => moves.push(format!(
                "ALTER TABLE incidents_live DETACH PARTITION {table};
                 ALTER TABLE incidents_leveled ATTACH PARTITION {table} {leveled};",
                table = quote_identifier(name),
            )),
            None => unmovable.push(name.clone()),
        }
    }
    if !unmovable.is_empty() {
        return Err(CitusError::Unmoved(format!("of incidents: {}", unmovable.join(", "))));
    }
    let columns: String = tx
        .query_one(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
             WHERE attrelid = 'incidents'::regclass AND attnum > 0 AND NOT attisdropped",
            &[],
        )
        .await?
        .try_get(0)?;
    tx.batch_execute(
        "CREATE TABLE incidents_leveled (LIKE incidents INCLUDING DEFAULTS) PARTITION BY RANGE (kept, detected_at);
         ALTER TABLE incidents DETACH PARTITION incidents_kept;
         ALTER TABLE incidents DETACH PARTITION incidents_live;",
    )
    .await
    .map_err(step("detaching the kept and the live incidents"))?;
    tx.batch_execute(&moves.join("\n"))
        .await
        .map_err(step("moving the incident ranges under the new key"))?;
    // Into the default partition once it is the new table's, whose bounds admit them.
    tx.batch_execute(&format!(
        "WITH untimed AS (DELETE FROM incidents_kept WHERE detected_at IS NULL RETURNING {columns})
         INSERT INTO incidents_leveled ({columns}) SELECT {columns} FROM untimed;
         ALTER TABLE incidents_leveled ATTACH PARTITION incidents_kept FOR VALUES FROM (true, MINVALUE) TO (true, MAXVALUE);"
    ))
    .await
    .map_err(step("moving the kept incidents under the new key"))?;
    // Both old tables are empty now; their indexes' and trigger's names are free for the new one.
    tx.batch_execute(
        "DROP TABLE incidents_live;
         DROP TABLE incidents;
         ALTER TABLE incidents_leveled RENAME TO incidents;",
    )
    .await
    .map_err(step("dropping the incidents partitioned twice"))?;
    tx.batch_execute(&rebuild.join(";\n")).await.map_err(step("indexing the incidents partitioned once"))?;
    let incidents: i64 = tx.query_one("SELECT count(*) FROM incidents", &[]).await?.try_get(0)?;
    tx.commit().await.map_err(step("commit"))?;
    let done = Leveled { ranges: live.len(), incidents, seconds: started.elapsed().as_secs_f64() };
    info!(
        ranges = done.ranges,
        incidents = done.incidents,
        seconds = format!("{:.1}", done.seconds),
        "incidents partitioned once, by (kept, detected_at), for Citus"
    );
    Ok(Some(done))
}

/// Whether `incidents` is a distributed table.
pub async fn are_distributed(client: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    let sql = "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'incidents'::regclass)";
    client.query_one(sql, &[]).await?.try_get(0)
}

/// The functions a batch's incidents' part calls (store/sql/write_batch.sql), which run at the
/// nodes once the incidents are distributed.
const TRACKING_FUNCTIONS: [&str; 4] =
    ["escalated", "array_add_missing", "analysis_window_passed_at", "uuid_time_ordered"];

/// Puts [`TRACKING_FUNCTIONS`] on every node, each in a statement of its own (idempotent). Citus
/// creates a function on the workers when it is made after the extension, or when a table it
/// distributes depends on it; in a database that held the service's schema before Citus
/// arrived, the escalation rules are neither, and the parts at the nodes would not find them.
pub async fn distribute_functions(client: &impl GenericClient) -> Result<(), CitusError> {
    let step = |step: &'static str| move |source| CitusError::Step { step, source };
    let functions = client
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p
             WHERE p.proname = ANY($1) AND p.pronamespace = current_schema()::regnamespace ORDER BY 1",
            &[&&TRACKING_FUNCTIONS[..]],
        )
        .await?;
    for function in &functions {
        let function: String = function.try_get(0)?;
        client
            .execute("SELECT create_distributed_function($1::text::regprocedure)", &[&function])
            .await
            .map_err(step("putting the escalation rules on every node"))?;
    }
    Ok(())
}

/// Distributes `incidents` (partitioned once: [`level`]) and the trace claims
/// (`incident_traces`) by `trace_id`, colocated with the signals, so that a batch's incidents
/// live on the node holding its signals (docs/scaling.md, "What is left" 1). One transaction;
/// `create_distributed_table` copies the rows there are. What Citus asks of them:
/// - every unique key holds `trace_id`: the kept incidents' own primary key on `id` (the table
///   from before migrations/0015) goes; `id` stays indexed (`incidents_id_idx`) and is a uuid
///   made by us or the worker, never chosen twice;
/// - a trigger on a distributed table is refused unless `citus.enable_unsafe_triggers` is on:
///   the claim trigger of the worker's own incidents (migrations/0015) runs at the shard, where
///   its insert into `incident_traces` is routed to the colocated shard on the same node. The
///   maintenance, which creates incident ranges carrying the trigger, turns it on too
///   ([`super::Layout::incident_range_mode`]).
///
/// Returns the incidents distributed, `None` when they already were.
pub async fn distribute(client: &mut Client) -> Result<Option<i64>, CitusError> {
    if are_distributed(client).await? {
        return Ok(None);
    }
    let started = Instant::now();
    let step = |step: &'static str| move |source| CitusError::Step { step, source };
    let tx = client.transaction().await?;
    tx.batch_execute(
        "SET LOCAL citus.enable_unsafe_triggers TO on;
         LOCK TABLE incident_traces, incidents IN ACCESS EXCLUSIVE MODE;
         ALTER TABLE incidents_kept DROP CONSTRAINT IF EXISTS incidents_kept_pkey",
    )
    .await
    .map_err(step("keying the incidents by trace"))?;
    for table in ["incident_traces", "incidents"] {
        tx.execute(
            "SELECT create_distributed_table($1::text::regclass, 'trace_id', colocate_with := 'raw_signal_rows')",
            &[&table],
        )
        .await
        .map_err(step("distributing the incidents"))?;
    }
    let incidents: i64 = tx.query_one("SELECT count(*) FROM incidents", &[]).await?.try_get(0)?;
    tx.commit().await.map_err(step("commit"))?;
    info!(
        incidents,
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "incidents distributed over the Citus cluster by trace_id, with their signals"
    );
    Ok(Some(incidents))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_range_keeps_its_bounds_among_the_live_incidents() {
        assert_eq!(
            live_bound("FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2026-12-02 00:00:00+00')").as_deref(),
            Some("FOR VALUES FROM (false, '2026-12-01 00:00:00+00') TO (false, '2026-12-02 00:00:00+00')")
        );
        assert_eq!(
            live_bound("FOR VALUES FROM (MINVALUE) TO ('2026-12-02 00:00:00+00')").as_deref(),
            Some("FOR VALUES FROM (false, MINVALUE) TO (false, '2026-12-02 00:00:00+00')")
        );
        assert_eq!(live_bound("DEFAULT").as_deref(), Some("DEFAULT"));
        assert_eq!(live_bound("FOR VALUES IN ('x')"), None);
    }
}
