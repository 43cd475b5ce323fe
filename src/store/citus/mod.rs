//! Running on a Citus cluster (docs/scaling.md): when the database has the `citus` extension,
//! the signals are distributed over its worker nodes by `trace_id` at start-up, after the
//! migrations, so that every batch's rows go to the nodes holding their traces and a trace
//! is read from one shard. On a plain PostgreSQL nothing here runs.
//!
//! What Citus needs of the schema, and what this changes there (once, idempotently):
//! - no multi-level partitioning: `raw_signal_rows` is partitioned once, by
//!   `(signal_type, "timestamp")`, and each type's partition of a range hangs from it directly
//!   (`raw_signals_p20261201_log` holds `('log', day) .. ('log', next day)`), so that each type
//!   still expires on its own; the range itself is only recorded. A database holding the table
//!   from before partitioning (migrations/0007: every type, before a cut-over) cannot be keyed
//!   so: there each range becomes one table holding every type (a *mixed* range, retained like
//!   the legacy table: until every type's retention has passed, its evidence kept);
//! - every unique key holds the distribution column: the signals' key gains `trace_id` (a
//!   signal's id never moves to another trace, so a retry is still recognised);
//! - no triggers on distributed tables: the statement triggers refusing UPDATE, DELETE and
//!   TRUNCATE go from the signal tables; append-only holds by privileges there (README).
//!
//! Problems, the outbox and the bookkeeping stay tables of the coordinator: a batch's signals
//! are written at the nodes holding their shards ([`parts`]), or through the coordinator, and
//! tracked there from the rows stored. The incidents are partitioned once there, as Citus
//! needs before it can distribute them ([`incidents`]); by default they stay there too, and
//! with `CITUS_DISTRIBUTE_INCIDENTS` they and their trace claims are distributed with the
//! signals, and each part tracks its rows at its node. Sealed partitions become columnar
//! tables distributed with the signals (store/sealing/columnar.rs).

use std::time::Instant;

use tokio_postgres::{Client, GenericClient};
use tracing::{info, warn};

use super::bootstrap::quote_identifier;
use super::sealing::columnar::Columnar;

mod hash;
pub mod incidents;
pub mod parts;
pub mod placement;
pub mod sessions;
mod shards;

/// How the signals are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// One PostgreSQL: range partitions, each with a partition per signal type.
    #[default]
    Single,
    /// A Citus cluster: `raw_signal_rows` distributed by `trace_id`, partitioned by type and
    /// time (or, with the legacy table, one table per range).
    Distributed {
        /// Whether `incidents` and `incident_traces` are distributed with the signals
        /// ([`incidents::distribute`]) rather than tables of the coordinator.
        incidents: bool,
    },
}

impl Layout {
    pub fn is_distributed(self) -> bool {
        matches!(self, Layout::Distributed { .. })
    }

    /// Whether the incidents are distributed with the signals.
    pub fn incidents_distributed(self) -> bool {
        matches!(self, Layout::Distributed { incidents: true })
    }

    /// The SQL function giving a table's bytes on disk, indexes and TOAST included: on Citus,
    /// the coordinator's table is empty and its shards' bytes are on the workers.
    pub fn total_size_function(self) -> &'static str {
        match self {
            Layout::Single => "pg_total_relation_size",
            Layout::Distributed { .. } => "citus_total_relation_size",
        }
    }

    /// What a transaction that changes the partitions of `raw_signal_rows` runs first. On Citus,
    /// one connection per worker for all of it: in a transaction, Citus creates the shards of a
    /// new partition over fresh connections of its own, which wait for the locks its earlier
    /// statements took on that worker over other connections (the partition detached, the
    /// parent locked), and its deadlock detector then cancels the transaction as a deadlock
    /// with itself. Sequential mode makes it reuse the transaction's one connection per worker.
    pub fn partition_change_mode(self) -> Option<&'static str> {
        match self {
            Layout::Single => None,
            Layout::Distributed { .. } => Some("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'"),
        }
    }

    /// What a transaction that attaches an incident range runs first: with the incidents
    /// distributed, the range carries the claim trigger (migrations/0015), which Citus takes on
    /// a distributed table only when told ([`incidents::distribute`]).
    pub(crate) fn incident_range_mode(self) -> Option<&'static str> {
        self.incidents_distributed().then_some("SET LOCAL citus.enable_unsafe_triggers TO on")
    }

    /// The DDL attaching `table` to the incidents as the time range `starts..ends` (literals,
    /// from our own timestamps): under `incidents_live` on one node, directly under `incidents`
    /// on Citus ([`incidents::level`]).
    pub(crate) fn attach_incident_range(self, table: &str, starts: &str, ends: &str) -> String {
        match self {
            Layout::Single => {
                format!("ALTER TABLE incidents_live ATTACH PARTITION {table} FOR VALUES FROM ('{starts}') TO ('{ends}')")
            }
            Layout::Distributed { .. } => format!(
                "ALTER TABLE incidents ATTACH PARTITION {table} FOR VALUES FROM (false, '{starts}') TO (false, '{ends}')"
            ),
        }
    }
}

/// The cluster the database belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub citus_version: String,
    /// Active worker nodes (the coordinator holds no shards unless added as one).
    pub workers: i64,
}

/// Why laying the store out on Citus failed.
#[derive(Debug, thiserror::Error)]
pub enum CitusError {
    #[error("the database has partitions sealed into blocks ({0} of them); sealed storage is not distributed: start on a database without sealed partitions (SEAL_AFTER=off before moving to Citus)")]
    Sealed(i64),
    #[error("laying the store out on the Citus cluster failed at: {step}")]
    Step {
        step: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("partitions of the signals that the service did not make stand in the way of distributing them: {0} (move their rows into the service's partitions, or drop them)")]
    Unmoved(String),
    #[error("reading the Citus catalog failed")]
    Catalog(#[from] tokio_postgres::Error),
}

/// The cluster, when the database has the `citus` extension.
pub async fn detect(client: &Client) -> Result<Option<Cluster>, tokio_postgres::Error> {
    let version =
        client.query_opt("SELECT extversion FROM pg_extension WHERE extname = 'citus'", &[]).await?;
    let Some(version) = version else { return Ok(None) };
    let workers: i64 =
        client.query_one("SELECT count(*) FROM citus_get_active_worker_nodes()", &[]).await?.try_get(0)?;
    Ok(Some(Cluster { citus_version: version.try_get(0)?, workers }))
}

/// What [`distribute`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Distributed {
    /// Range partitions whose type partitions were moved under the new key (or, with the
    /// legacy table, merged into one table each).
    pub ranges: usize,
    /// Whether the signals are partitioned by type and time (false: mixed ranges).
    pub by_type: bool,
    /// Signals copied onto the workers.
    pub signals: i64,
    pub seconds: f64,
}

/// Whether `raw_signal_rows` is a distributed table.
async fn is_distributed(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let sql =
        "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'raw_signal_rows'::regclass)";
    client.query_one(sql, &[]).await?.try_get(0)
}

/// Puts the functions of the views' triggers (`raw_signals` and its like: migrations/0018) on
/// every node, each in a statement of its own, before the signals are distributed. Once the
/// table is, Citus propagates the views over it and the functions they need; in the
/// transaction that distributed it, it creates them over the connections of the session's role
/// but records them as distributed over connections of the extension's owner, which cannot see
/// them yet: unless the service's role owns the extension, the distribution then fails on a
/// worker with "function raw_signals_reject_change() does not exist" (Citus 13.2). Created and
/// recorded first, they are already there. Idempotent.
async fn distribute_view_trigger_functions(client: &Client) -> Result<(), tokio_postgres::Error> {
    let functions = client
        .query(
            "SELECT DISTINCT g.tgfoid::regprocedure::text FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
             WHERE c.relkind = 'v' AND NOT g.tgisinternal AND c.relnamespace = current_schema()::regnamespace
             ORDER BY 1",
            &[],
        )
        .await?;
    for function in &functions {
        let function: String = function.try_get(0)?;
        client.execute("SELECT create_distributed_function($1::text::regprocedure)", &[&function]).await?;
    }
    Ok(())
}

/// Lays the store out on the cluster, unless it already is: `None` when it was. One
/// transaction; concurrent instances take turns on the migration lock (the caller holds it).
/// A database that already holds signals is distributed in place: ingest waits on the lock of
/// `raw_signal_rows` until it commits.
pub async fn distribute(client: &mut Client, shard_count: u32) -> Result<Option<Distributed>, CitusError> {
    if is_distributed(client).await? {
        return Ok(None);
    }
    let started = Instant::now();
    let step = |step: &'static str| move |source| CitusError::Step { step, source };
    let sealed: i64 = client.query_one("SELECT count(*) FROM raw_signal_units", &[]).await?.try_get(0)?;
    if sealed > 0 {
        return Err(CitusError::Sealed(sealed));
    }
    distribute_view_trigger_functions(client)
        .await
        .map_err(step("distributing the views' trigger functions"))?;
    let tx = client.transaction().await?;
    // Taken first, so that a batch in flight cannot deadlock with the DDL below.
    tx.batch_execute("LOCK TABLE raw_signal_rows IN ACCESS EXCLUSIVE MODE").await.map_err(step("lock"))?;
    let typed = tx
        .query(
            "SELECT p.name, p.starts, p.ends FROM raw_signal_partitions p
             JOIN pg_partitioned_table t ON t.partrelid = to_regclass(quote_ident(p.name))
             WHERE NOT p.legacy ORDER BY p.starts",
            &[],
        )
        .await?;
    let triggers: Vec<String> = tx
        .query(
            "SELECT format('DROP TRIGGER %I ON %s', g.tgname, g.tgrelid::regclass)
             FROM pg_partition_tree('raw_signal_rows') p JOIN pg_trigger g ON g.tgrelid = p.relid
             WHERE NOT g.tgisinternal",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    tx.batch_execute(&triggers.join(";\n")).await.map_err(step("dropping the append-only triggers"))?;
    tx.batch_execute(
        r#"ALTER TABLE raw_signal_rows DROP CONSTRAINT raw_signals_pkey,
               ADD CONSTRAINT raw_signals_pkey PRIMARY KEY ("timestamp", id, signal_type, trace_id)"#,
    )
    .await
    .map_err(step("adding trace_id to the signals' key"))?;
    let legacy: bool =
        tx.query_one("SELECT to_regclass('raw_signals_legacy') IS NOT NULL", &[]).await?.try_get(0)?;
    let ranges = typed
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<Vec<(String, Time, Time)>, tokio_postgres::Error>>()?;
    let rebuild = if legacy {
        for (name, starts, ends) in &ranges {
            tx.batch_execute(&merge_range(name, *starts, *ends))
                .await
                .map_err(step("merging a range's type partitions"))?;
        }
        None
    } else {
        Some(key_by_type(&tx, &ranges).await?)
    };
    // Before distributing: Citus runs no function DDL after a parallel distributed command.
    tx.batch_execute(ROW_FORM_READERS).await.map_err(step("reading the row form only"))?;
    tx.batch_execute(&between_function("raw_signal_rows"))
        .await
        .map_err(step("reading the row form only"))?;
    if let Some(rebuild) = rebuild {
        // The readers above now read the new table: the old one has no dependents left, and its
        // constraints' and indexes' names are free for the new one's.
        tx.batch_execute("DROP TABLE raw_signal_rows_by_time")
            .await
            .map_err(step("dropping the table partitioned by time"))?;
        tx.batch_execute(&rebuild).await.map_err(step("indexing the table partitioned by type and time"))?;
    }
    tx.execute(
        "SELECT create_distributed_table('raw_signal_rows', 'trace_id', shard_count := $1)",
        &[&(shard_count as i32)],
    )
    .await
    .map_err(step("create_distributed_table"))?;
    let signals: i64 = tx.query_one("SELECT count(*) FROM raw_signal_rows", &[]).await?.try_get(0)?;
    if signals == 0 {
        // Nothing stored, nothing to recount: a new database's marker "count everything again"
        // (migrations/0013) would only make the first merge race the first batches, which on
        // Citus it cannot do safely (store/activity.rs).
        tx.batch_execute("DELETE FROM service_activity_stale").await?;
    }
    tx.commit().await.map_err(step("commit"))?;
    let done = Distributed {
        ranges: ranges.len(),
        by_type: !legacy,
        signals,
        seconds: started.elapsed().as_secs_f64(),
    };
    info!(
        shards = shard_count,
        signals = done.signals,
        ranges = done.ranges,
        by_type = done.by_type,
        seconds = format!("{:.1}", done.seconds),
        "signals distributed over the Citus cluster by trace_id"
    );
    Ok(Some(done))
}

type Time = chrono::DateTime<chrono::Utc>;

/// Puts in the place of `raw_signal_rows` (partitioned by time, each range by type) a table
/// partitioned once, by `(signal_type, "timestamp")`, with each range's type partitions
/// attached to it directly under the bounds they had, and the default partition: no row is
/// copied (ATTACH only checks each partition's rows against its bounds). The old table is left
/// renamed `raw_signal_rows_by_time`, holding the emptied ranges, for the caller to drop once
/// nothing reads it. Returns the DDL giving the new table the old one's keys, indexes and
/// privileges, to run after that drop frees their names: each partition's own index is then
/// adopted, not built again.
async fn key_by_type(
    tx: &tokio_postgres::Transaction<'_>,
    ranges: &[(String, Time, Time)],
) -> Result<String, CitusError> {
    let step = |step: &'static str| move |source| CitusError::Step { step, source };
    // The definitions name the table `raw_signal_rows`, which the new table is called by then.
    let rebuild = rebuild_statements(tx, "raw_signal_rows").await?.join(";\n");
    tx.batch_execute(
        r#"CREATE TABLE raw_signal_rows_keyed (LIKE raw_signal_rows INCLUDING DEFAULTS)
               PARTITION BY RANGE (signal_type, "timestamp")"#,
    )
    .await
    .map_err(step("creating the table partitioned by type and time"))?;
    let mut moves = Vec::new();
    for (name, starts, ends) in ranges {
        let leaves = tx
            .query(
                "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = to_regclass(quote_ident($1)) ORDER BY 1",
                &[name],
            )
            .await?;
        for leaf in &leaves {
            let (table, bound): (String, String) = (leaf.try_get(0)?, leaf.try_get(1)?);
            // `FOR VALUES IN ('log')`: the type is our own enum's label. Anything else is a
            // partition we did not make: left where it is, and refused below.
            let Some(label) = bound.strip_prefix("FOR VALUES IN ('").and_then(|b| b.strip_suffix("')"))
            else {
                continue;
            };
            moves.push(format!(
                "ALTER TABLE {range} DETACH PARTITION {leaf};
                 ALTER TABLE raw_signal_rows_keyed ATTACH PARTITION {leaf} FOR VALUES FROM ({}) TO ({});",
                keyed_bound(label, *starts),
                keyed_bound(label, *ends),
                range = quote_identifier(name),
                leaf = quote_identifier(&table),
            ));
        }
    }
    moves.push(
        "ALTER TABLE raw_signal_rows DETACH PARTITION raw_signals_default;
         ALTER TABLE raw_signal_rows_keyed ATTACH PARTITION raw_signals_default DEFAULT;
         ALTER TABLE raw_signal_rows RENAME TO raw_signal_rows_by_time;
         ALTER TABLE raw_signal_rows_keyed RENAME TO raw_signal_rows;"
            .to_owned(),
    );
    tx.batch_execute(&moves.join("\n"))
        .await
        .map_err(step("moving the type partitions under the new key"))?;
    // The old table is dropped next, with whatever still hangs from it.
    let left: Vec<String> = tx
        .query(
            "SELECT relid::regclass::text FROM pg_partition_tree('raw_signal_rows_by_time') WHERE isleaf ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    if !left.is_empty() {
        return Err(CitusError::Unmoved(left.join(", ")));
    }
    Ok(rebuild)
}

/// The DDL giving a table that takes the place and name of `table` the keys, indexes, triggers
/// and privileges `table` has (its columns and defaults come with `LIKE`). Run once the old
/// table is dropped, which frees the names; each partition's index matching one is adopted.
pub(super) async fn rebuild_statements(
    client: &impl GenericClient,
    table: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    client
        .query(
            "SELECT format('ALTER TABLE %I ADD CONSTRAINT %I %s', $1::text, conname, pg_get_constraintdef(oid))
             FROM pg_constraint WHERE conrelid = $1::text::regclass AND contype IN ('p', 'u', 'x', 'c', 'f')
             UNION ALL
             SELECT replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ')
             FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
             WHERE i.indrelid = $1::text::regclass AND c.oid IS NULL
             UNION ALL
             SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = $1::text::regclass AND NOT tgisinternal
             UNION ALL
             SELECT format('GRANT %s ON %I TO %s', a.privilege_type, $1::text,
                           CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)
             FROM pg_class t CROSS JOIN LATERAL aclexplode(t.relacl) a
             WHERE t.oid = $1::text::regclass AND a.grantee <> t.relowner",
            &[&table],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect()
}

/// One bound of a type's partition under the key `(signal_type, "timestamp")`, as DDL takes it
/// (literals, from our own enum label and timestamps).
pub(crate) fn keyed_bound(label: &str, at: Time) -> String {
    format!("'{label}', '{}'", at.to_rfc3339())
}

/// What reads the signals reads the row form alone until sealed storage is laid out, right
/// after (store/sealing/columnar.rs): a view that also named the one node's (local, empty)
/// sealed tables made Citus plan a trace's read as several steps, one of them a scan of every
/// shard. Same names and columns as migrations/0018.
const ROW_FORM_READERS: &str = r#"
CREATE OR REPLACE VIEW raw_signals AS
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id
    FROM raw_signal_rows;
CREATE OR REPLACE VIEW raw_signals_hot AS
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, shared_id,
           "timestamp" AS lo, "timestamp" AS hi, ARRAY[service_name] AS services, NULL::int4 AS unit, NULL::int4 AS block
    FROM raw_signal_rows;
CREATE OR REPLACE VIEW raw_signals_listed AS SELECT * FROM raw_signals_hot;
"#;

/// `raw_signals_between` (migrations/0018) reading `source`, as Citus can run it: PL/pgSQL, as
/// Citus plans no SQL function over a distributed table called with parameters.
pub(crate) fn between_function(source: &str) -> String {
    format!(
        r#"CREATE OR REPLACE FUNCTION raw_signals_between(kind signaltypeenum, since timestamptz, until timestamptz)
RETURNS SETOF raw_signals
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id
    FROM {source}
    WHERE (kind IS NULL OR signal_type = kind) AND "timestamp" >= since AND "timestamp" < until;
END;
$$"#
    )
}

/// DDL replacing the range partition `name` (one partition per type) by one table holding the
/// same rows, attached with the same bounds.
fn merge_range(
    name: &str,
    starts: chrono::DateTime<chrono::Utc>,
    ends: chrono::DateTime<chrono::Utc>,
) -> String {
    let (table, typed) = (quote_identifier(name), quote_identifier(&format!("{name}_typed")));
    let columns = r#"id, signal_type, trace_id, service_name, "timestamp", payload, received_at, time_unknown, shared_id"#;
    format!(
        "ALTER TABLE raw_signal_rows DETACH PARTITION {table};
         ALTER TABLE {table} RENAME TO {typed};
         CREATE TABLE {table} (LIKE raw_signal_rows INCLUDING DEFAULTS);
         INSERT INTO {table} ({columns}) SELECT {columns} FROM {typed};
         DROP TABLE {typed};
         ALTER TABLE raw_signal_rows ATTACH PARTITION {table} FOR VALUES FROM ('{}') TO ('{}');",
        starts.to_rfc3339(),
        ends.to_rfc3339(),
    )
}

/// Settings of the cluster the service depends on, each wrong one described.
pub async fn check_settings(
    client: &Client,
    cluster: &Cluster,
) -> Result<Vec<String>, tokio_postgres::Error> {
    // Every node's, the workers' above all: they prepare the two-phase commits.
    let rows = client
        .query(
            "SELECT n.nodename || ':' || n.nodeport, r.result
             FROM run_command_on_all_nodes('SHOW max_prepared_transactions') r JOIN pg_dist_node n USING (nodeid)
             WHERE r.success ORDER BY n.nodeid",
            &[],
        )
        .await?;
    let prepared = rows
        .iter()
        .map(|row| Ok((row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?.parse().unwrap_or(0))))
        .collect::<Result<Vec<(String, i64)>, tokio_postgres::Error>>()?;
    let factor: String =
        client.query_one("SHOW citus.distributed_deadlock_detection_factor", &[]).await?.try_get(0)?;
    // Unparsable would be a Citus we do not know: no warning rather than a wrong one.
    let detecting = factor.trim().parse::<f64>().map_or(true, |f| f > 0.0);
    Ok(warnings(cluster.workers, &prepared, detecting))
}

/// What is wrong with a cluster of `workers` active workers whose nodes have these
/// `max_prepared_transactions` (`node`, value), and whose coordinator is `detecting`
/// distributed deadlocks or not.
fn warnings(workers: i64, prepared: &[(String, i64)], detecting: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    if workers == 0 {
        warnings.push(
            "the Citus cluster has no active worker node: every shard is on the coordinator (add workers with citus_add_node)"
                .to_owned(),
        );
    }
    let without: Vec<&str> =
        prepared.iter().filter(|(_, n)| *n == 0).map(|(node, _)| node.as_str()).collect();
    if !without.is_empty() {
        warnings.push(format!(
            "max_prepared_transactions is 0 on {}: a batch written to several workers cannot commit (two-phase commit); set it on every node, e.g. to max_connections",
            without.join(", ")
        ));
    }
    if !detecting {
        // Our sessions let batches into a shard together (store/mod.rs, session_settings).
        warnings.push(
            "citus.distributed_deadlock_detection_factor is -1: two batches carrying the same signals (a retry in flight) can wait for each other forever; set it back to its default (2)"
                .to_owned(),
        );
    }
    warnings
}

/// Says, at every start, whether partitions are sealed (into columnar tables), when the
/// signals are laid out by time alone (the table from before partitioning is still there):
/// each range then expires at the longest retention, and when their shards are placed
/// unevenly over the nodes ([`placement`]).
pub async fn report_layout(client: &Client, sealed: &Columnar) -> Result<(), tokio_postgres::Error> {
    match sealed {
        Columnar::Ready => {
            info!("on Citus sealed partitions become columnar tables distributed by trace_id (SEAL_AFTER)")
        }
        Columnar::Unavailable(why) => {
            warn!("on this Citus cluster partitions are not sealed, SEAL_AFTER has no effect: {why}")
        }
    }
    if !keyed_by_type(client).await? {
        warn!(
            "on this Citus database each range of signals is one table for every type (the table from before partitioning, raw_signals_legacy, is still there): a range expires once the longest of the three retentions has passed it"
        );
    }
    if let Some(warning) = placement::uneven(&placement::shards_by_node(client).await?) {
        warn!("{warning}");
    }
    Ok(())
}

/// Logs the cluster and its warnings.
pub fn report(cluster: &Cluster, warnings: &[String]) {
    info!(citus = %cluster.citus_version, workers = cluster.workers, "the database is a Citus coordinator");
    for warning in warnings {
        warn!("{warning}");
    }
}

/// Whether `raw_signal_rows` is partitioned by `(signal_type, "timestamp")` ([`key_by_type`]),
/// rather than by time alone (on one node; on Citus when the legacy table is still there).
pub(crate) async fn keyed_by_type(client: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    let sql = "SELECT partnatts = 2 FROM pg_partitioned_table WHERE partrelid = 'raw_signal_rows'::regclass";
    client.query_one(sql, &[]).await?.try_get(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_without_workers_or_two_phase_commit_is_named_node_by_node() {
        let fine = [("c:5432".to_owned(), 400), ("w1:5432".to_owned(), 400)];
        assert!(warnings(2, &fine, true).is_empty());
        let broken = [("c:5432".to_owned(), 400), ("w1:5432".to_owned(), 0), ("w2:5432".to_owned(), 0)];
        let said = warnings(0, &broken, true);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said[0].contains("no active worker"));
        assert!(said[1].contains("w1:5432, w2:5432") && !said[1].contains("c:5432"), "{}", said[1]);
    }

    #[test]
    fn a_coordinator_that_detects_no_distributed_deadlock_is_warned_about() {
        let fine = [("c:5432".to_owned(), 400)];
        let said = warnings(2, &fine, false);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("distributed_deadlock_detection_factor"), "{}", said[0]);
    }
}
