//! The Citus write probe (`--only citus-probe`; docs/scaling.md, "What is left" 1): before the
//! incidents are distributed, what each way of writing a batch's incidents and signals costs
//! each node of a coordinator and two workers. Not the service: its statements' shapes on
//! tables shaped like its own (claims, incidents partitioned once by `(kept, detected_at)`,
//! signals, problems and the outbox), 4 clients, each way in turn for `--seconds`, twice. CPU
//! per batch is each node's PostgreSQL CPU over the window divided by the batches written.
//! The last two ways write a whole batch: as the service does today, and split by worker into
//! the shards with a two-phase commit the client drives. `--scenario <Way>` runs only the ways
//! named (as in the results).
//!
//! Citus must be installed for this PostgreSQL (README, "Running on Citus").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient};

use crate::ceiling::connect;
use crate::citus::Cluster;
use crate::{BoxError, Options};

const CLIENTS: usize = 4;
/// A batch: 512 spans of 64 traces, as the ingest benchmark sends them.
const TRACES: usize = 64;
const SPANS_PER_TRACE: usize = 8;
const ROUNDS: usize = 2;

const SCHEMA: [&str; 25] = [
    "SET citus.shard_count = 8",
    "CREATE TABLE claims (trace_id varchar PRIMARY KEY, detected_at timestamptz NOT NULL, kept boolean NOT NULL DEFAULT false)",
    "CREATE TABLE incidents (
        id uuid NOT NULL DEFAULT gen_random_uuid(), trace_id varchar NOT NULL, trace_key varchar,
        kept boolean NOT NULL DEFAULT false, detected_at timestamptz DEFAULT now(), severity int NOT NULL DEFAULT 0,
        affected_services varchar[] NOT NULL DEFAULT '{}', error_count float8, high_signal_count bigint NOT NULL DEFAULT 0,
        last_signal_at timestamptz
    ) PARTITION BY RANGE (kept, detected_at)",
    "CREATE TABLE incidents_kept PARTITION OF incidents FOR VALUES FROM (true, MINVALUE) TO (true, MAXVALUE)",
    "CREATE TABLE incidents_live PARTITION OF incidents FOR VALUES FROM (false, '2000-01-01') TO (false, '2100-01-01')",
    "CREATE TABLE incidents_default PARTITION OF incidents DEFAULT",
    "CREATE UNIQUE INDEX ON incidents (trace_id, trace_key, kept, detected_at)",
    "CREATE INDEX ON incidents (id)",
    "CREATE INDEX ON incidents USING gin (affected_services)",
    "CREATE INDEX ON incidents (detected_at, id)",
    "CREATE INDEX ON incidents (severity, detected_at, id)",
    "CREATE TABLE local_claims (LIKE claims INCLUDING ALL)",
    "CREATE TABLE local_incidents (LIKE incidents INCLUDING ALL) PARTITION BY RANGE (kept, detected_at)",
    "CREATE TABLE local_incidents_kept PARTITION OF local_incidents FOR VALUES FROM (true, MINVALUE) TO (true, MAXVALUE)",
    "CREATE TABLE local_incidents_live PARTITION OF local_incidents FOR VALUES FROM (false, '2000-01-01') TO (false, '2100-01-01')",
    "CREATE TABLE local_incidents_default PARTITION OF local_incidents DEFAULT",
    "CREATE TABLE signals (id uuid NOT NULL, trace_id varchar NOT NULL, service_name varchar NOT NULL, ts timestamptz NOT NULL,
                           payload jsonb NOT NULL, PRIMARY KEY (trace_id, ts, id)) PARTITION BY RANGE (ts)",
    "CREATE TABLE signals_default PARTITION OF signals DEFAULT",
    "CREATE INDEX ON signals (service_name, ts)",
    "CREATE INDEX ON signals (ts)",
    "SELECT create_distributed_table('claims', 'trace_id')",
    "SELECT create_distributed_table('incidents', 'trace_id', colocate_with => 'claims')",
    "SELECT create_distributed_table('signals', 'trace_id', colocate_with => 'claims')",
    "CREATE TABLE problems (fingerprint text PRIMARY KEY, signal_count bigint NOT NULL DEFAULT 0, last_seen timestamptz)",
    // The coordinator's record of a batch's parts prepared on the workers: what a sweep after
    // a crash commits (recorded) or rolls back (not recorded), as Citus's pg_dist_transaction.
    "CREATE TABLE prepared_parts (gid text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
];

/// Tables of the coordinator that a worker's transaction may write, and the delegated function.
const METADATA: [&str; 5] = [
    "CREATE TABLE analysis_outbox (id bigserial PRIMARY KEY, trace_id text NOT NULL, created_at timestamptz DEFAULT now())",
    "SELECT citus_add_local_table_to_metadata('problems')",
    "SELECT citus_add_local_table_to_metadata('analysis_outbox')",
    // PL/pgSQL: Citus plans no distributed statement inside a SQL function with parameters.
    "CREATE FUNCTION probe_track(key varchar, traces varchar[]) RETURNS bigint LANGUAGE plpgsql AS $$
     DECLARE n bigint;
     BEGIN
         WITH ACTIVITY_CLAIMED_UPSERTED SELECT count(*) INTO n FROM upserted;
         RETURN n;
     END $$",
    "SELECT create_distributed_function('probe_track(varchar, varchar[])', 'key', colocate_with := 'claims')",
];

/// The batch's incidents part as write_batch.sql has it (the claims feeding the upsert), on
/// `{claims}` and `{incidents}`; the clock of the update comes from the row (Citus refuses
/// `now()` in `DO UPDATE SET` of a distributed table).
const INCIDENTS_CTE: &str = "activity AS (
        SELECT t AS trace_id, 8 AS signals, 0 AS high, 1 AS severity, ARRAY['svc']::varchar[] AS services
        FROM unnest(TRACES::varchar[]) AS t
    ), claimed AS (
        INSERT INTO {claims} AS c (trace_id, detected_at) SELECT trace_id, now() FROM activity ORDER BY trace_id
        ON CONFLICT (trace_id) DO UPDATE SET trace_id = excluded.trace_id
        RETURNING c.trace_id, c.detected_at, c.kept
    ), upserted AS (
        INSERT INTO {incidents} AS i (trace_id, trace_key, kept, severity, detected_at, affected_services, error_count,
                                      high_signal_count, last_signal_at)
        SELECT a.trace_id, a.trace_id, c.kept, a.severity, c.detected_at, a.services, a.signals, a.high, now()
        FROM activity a JOIN claimed c USING (trace_id) ORDER BY a.trace_id
        ON CONFLICT (trace_id, trace_key, kept, detected_at) DO UPDATE SET
            error_count = coalesce(i.error_count, 0) + excluded.error_count,
            high_signal_count = i.high_signal_count + excluded.high_signal_count,
            last_signal_at = excluded.last_signal_at
        RETURNING i.id
    )";

const CLAIMS_UNNEST: &str = "INSERT INTO claims AS c (trace_id, detected_at)
    SELECT t, now() FROM unnest($1::varchar[]) AS t ORDER BY t
    ON CONFLICT (trace_id) DO UPDATE SET trace_id = excluded.trace_id
    RETURNING c.trace_id, c.detected_at, c.kept";

const INCIDENTS_UNNEST: &str = "INSERT INTO incidents AS i (trace_id, trace_key, kept, severity, detected_at,
        affected_services, error_count, high_signal_count, last_signal_at)
    SELECT t, t, k, 1, d, ARRAY['svc']::varchar[], 8, 0, now()
    FROM unnest($1::varchar[], $2::bool[], $3::timestamptz[]) AS x(t, k, d) ORDER BY t
    ON CONFLICT (trace_id, trace_key, kept, detected_at) DO UPDATE SET
        error_count = coalesce(i.error_count, 0) + excluded.error_count,
        high_signal_count = i.high_signal_count + excluded.high_signal_count,
        last_signal_at = excluded.last_signal_at
    RETURNING i.id";

const SIGNALS_UNNEST: &str = "INSERT INTO signals (id, trace_id, service_name, ts, payload)
    SELECT id, t, 'svc', ts, p::jsonb FROM unnest($1::uuid[], $2::varchar[], $3::timestamptz[], $4::text[]) AS x(id, t, ts, p)
    ON CONFLICT DO NOTHING RETURNING id";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// Today: the incidents are tables of the coordinator.
    IncidentsOnCoordinator,
    /// Distributed and colocated, the statement as it is.
    IncidentsStatementAsItIs,
    /// The statement in a function Citus delegates to the worker holding the key's shard.
    IncidentsDelegated,
    /// One shard's traces, the claims then the incidents, each `INSERT … SELECT FROM unnest`.
    IncidentsUnnestViaCoordinator,
    IncidentsUnnestAtWorker,
    /// The same as multi-row `VALUES` (router statements).
    IncidentsValuesViaCoordinator,
    IncidentsValuesAtWorker,
    /// At the worker, with a problem's upsert and two outbox rows on the coordinator's tables.
    IncidentsAndCoordinatorTablesAtWorker,
    /// 512 spans: over every shard through the coordinator (today), or one shard's at its worker.
    SignalsViaCoordinator,
    SignalsAtWorker,
    /// A whole batch as the service writes it today, through the coordinator in one
    /// transaction: its 512 spans over every shard, its 64 traces' claims and incidents on the
    /// coordinator's tables, a problem and two outbox rows.
    BatchViaCoordinator,
    /// The same batch with the claims and incidents distributed, split by worker, each part
    /// (its spans, claims and incidents) written by the client into that worker's shards
    /// themselves, each shard's statements pipelined, and prepared there (`PREPARE
    /// TRANSACTION`); then the problem and outbox rows with the parts' record written on the
    /// coordinator, then the parts committed (`COMMIT PREPARED`): the two-phase commit driven
    /// by the client, so that no statement is routed between nodes. Into the shards, because
    /// Citus refuses `PREPARE TRANSACTION` after any distributed statement, even one it
    /// executed on the worker's own shards ("cannot use 2PC in transactions involving multiple
    /// servers").
    BatchAtWorkerShardsPrepared,
    /// The same with only the spans at the workers: the claims and incidents stay on the
    /// coordinator's tables, written in its transaction with the problem and outbox rows.
    BatchSpansAtWorkerShardsPrepared,
}

const WAYS: [Way; 13] = [
    Way::IncidentsOnCoordinator,
    Way::IncidentsStatementAsItIs,
    Way::IncidentsDelegated,
    Way::IncidentsUnnestViaCoordinator,
    Way::IncidentsValuesViaCoordinator,
    Way::IncidentsUnnestAtWorker,
    Way::IncidentsValuesAtWorker,
    Way::IncidentsAndCoordinatorTablesAtWorker,
    Way::SignalsViaCoordinator,
    Way::SignalsAtWorker,
    Way::BatchViaCoordinator,
    Way::BatchAtWorkerShardsPrepared,
    Way::BatchSpansAtWorkerShardsPrepared,
];

impl Way {
    fn at_worker(self) -> bool {
        matches!(
            self,
            Way::IncidentsUnnestAtWorker
                | Way::IncidentsValuesAtWorker
                | Way::IncidentsAndCoordinatorTablesAtWorker
                | Way::SignalsAtWorker
        )
    }

    /// Whether a batch's traces are all of one shard.
    fn one_shard(self) -> bool {
        !matches!(
            self,
            Way::IncidentsOnCoordinator
                | Way::IncidentsStatementAsItIs
                | Way::SignalsViaCoordinator
                | Way::BatchViaCoordinator
                | Way::BatchAtWorkerShardsPrepared
                | Way::BatchSpansAtWorkerShardsPrepared
        )
    }
}

/// Fresh traces by shard, each taken once.
type Pool = Arc<Mutex<HashMap<i64, Vec<String>>>>;

/// `count` new trace ids of the shards on the node at `port` (any node: `None`), by shard.
async fn traces(coordinator: &Client, count: usize, port: Option<i32>) -> Result<Pool, BoxError> {
    let ids: Vec<String> = (0..count).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
    let rows = coordinator
        .query(
            "SELECT t, s.shardid FROM unnest($1::text[]) AS t
             JOIN pg_dist_shard s ON s.shardid = get_shard_id_for_distribution_column('claims', t)
             JOIN pg_dist_placement USING (shardid) JOIN pg_dist_node n USING (groupid)
             WHERE $2::int IS NULL OR n.nodeport = $2",
            &[&ids, &port],
        )
        .await?;
    let mut pool: HashMap<i64, Vec<String>> = HashMap::new();
    for row in rows {
        pool.entry(row.get(1)).or_default().push(row.get(0));
    }
    Ok(Arc::new(Mutex::new(pool)))
}

/// The next batch's `count` traces: of one shard, or of any; `None` when the pool ran out.
fn take(pool: &Pool, one_shard: bool, n: usize, count: usize) -> Option<Vec<String>> {
    if !one_shard {
        return Some(take_by_shard(pool, n, count)?.into_iter().flat_map(|(_, traces)| traces).collect());
    }
    let mut pool = pool.lock().ok()?;
    let shards: Vec<i64> = pool.iter().filter(|(_, t)| t.len() >= count).map(|(s, _)| *s).collect();
    let list = pool.get_mut(shards.get(n % shards.len().max(1))?)?;
    Some(list.split_off(list.len() - count))
}

/// One worker's part of a batch: its traces by shard.
type Part = Vec<(i64, Vec<String>)>;

/// Like [`take`] over any shard, the traces grouped by their shard.
fn take_by_shard(pool: &Pool, n: usize, count: usize) -> Option<Part> {
    let mut pool = pool.lock().ok()?;
    let mut shards: Vec<i64> = pool.iter().filter(|(_, t)| t.len() >= count).map(|(s, _)| *s).collect();
    if shards.is_empty() {
        return None;
    }
    shards.sort_unstable();
    let mut taken: Vec<(i64, Vec<String>)> = shards.iter().map(|s| (*s, Vec::new())).collect();
    for i in 0..count {
        let slot = (n + i) % shards.len();
        taken[slot].1.push(pool.get_mut(&shards[slot])?.pop()?);
    }
    Some(taken)
}

/// By the id of a shard of the claims, the names of the colocated shards (same hash range) of
/// the claims, the incidents and the signals.
type ShardTables = HashMap<i64, (String, String, String)>;

async fn shard_tables(coordinator: &Client) -> Result<ShardTables, BoxError> {
    let rows = coordinator
        .query(
            "SELECT c.shardid, 'claims_' || c.shardid, 'incidents_' || i.shardid, 'signals_' || s.shardid
             FROM pg_dist_shard c
             JOIN pg_dist_shard i ON i.logicalrelid = 'incidents'::regclass AND i.shardminvalue = c.shardminvalue
             JOIN pg_dist_shard s ON s.logicalrelid = 'signals'::regclass AND s.shardminvalue = c.shardminvalue
             WHERE c.logicalrelid = 'claims'::regclass",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3)))).collect())
}

fn values(rows: usize, row: impl Fn(usize) -> String) -> String {
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

/// The claims of `traces`, then their incidents, as two statements.
async fn claims_then_incidents(
    client: &impl GenericClient,
    traces: &[String],
    as_values: bool,
) -> Result<(), BoxError> {
    let claims = if as_values {
        let sql = format!(
            "INSERT INTO claims AS c (trace_id, detected_at) VALUES {}
             ON CONFLICT (trace_id) DO UPDATE SET trace_id = excluded.trace_id
             RETURNING c.trace_id, c.detected_at, c.kept",
            values(traces.len(), |i| format!("(${}, now())", i + 1))
        );
        let params: Vec<&(dyn ToSql + Sync)> = traces.iter().map(|t| t as &(dyn ToSql + Sync)).collect();
        client.query(&sql, &params).await?
    } else {
        client.query(CLAIMS_UNNEST, &[&traces]).await?
    };
    let ids: Vec<String> = claims.iter().map(|r| r.get(0)).collect();
    let at: Vec<DateTime<Utc>> = claims.iter().map(|r| r.get(1)).collect();
    let kept: Vec<bool> = claims.iter().map(|r| r.get(2)).collect();
    let upserted = if as_values {
        let sql = format!(
            "INSERT INTO incidents AS i (trace_id, trace_key, kept, severity, detected_at, affected_services,
                                         error_count, high_signal_count, last_signal_at) VALUES {}
             ON CONFLICT (trace_id, trace_key, kept, detected_at) DO UPDATE SET
                 error_count = coalesce(i.error_count, 0) + excluded.error_count,
                 high_signal_count = i.high_signal_count + excluded.high_signal_count,
                 last_signal_at = excluded.last_signal_at
             RETURNING i.id",
            values(ids.len(), |i| format!(
                "(${a}, ${a}, ${b}, 1, ${c}, ARRAY['svc']::varchar[], 8, 0, now())",
                a = 3 * i + 1,
                b = 3 * i + 2,
                c = 3 * i + 3
            ))
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        for i in 0..ids.len() {
            params.extend([&ids[i] as &(dyn ToSql + Sync), &kept[i], &at[i]]);
        }
        client.query(&sql, &params).await?
    } else {
        client.query(INCIDENTS_UNNEST, &[&ids, &kept, &at]).await?
    };
    if upserted.len() != traces.len() {
        return Err(format!("{} incidents written of {}", upserted.len(), traces.len()).into());
    }
    Ok(())
}

/// A problem's upsert and two outbox rows: the coordinator's share of a batch.
async fn coordinator_rows(client: &impl GenericClient, traces: &[String], n: usize) -> Result<(), BoxError> {
    client
        .execute(
            "INSERT INTO problems AS p (fingerprint, signal_count, last_seen) VALUES ($1, 1, now())
             ON CONFLICT (fingerprint) DO UPDATE SET signal_count = p.signal_count + 1, last_seen = excluded.last_seen",
            &[&format!("fault-{}", n % 50)],
        )
        .await?;
    client
        .execute("INSERT INTO analysis_outbox (trace_id) SELECT unnest($1::text[])", &[&&traces[..2]])
        .await?;
    Ok(())
}

/// The spans of `traces` (`SPANS_PER_TRACE` each) by `sql` (`SIGNALS_UNNEST`, on the table or
/// on one of its shards); how many traces' spans were stored.
async fn spans(client: &impl GenericClient, sql: &str, traces: &[String]) -> Result<usize, BoxError> {
    let spans = traces.len() * SPANS_PER_TRACE;
    let ids: Vec<uuid::Uuid> = (0..spans).map(|_| uuid::Uuid::new_v4()).collect();
    let of: Vec<&String> = traces.iter().flat_map(|t| std::iter::repeat_n(t, SPANS_PER_TRACE)).collect();
    let at = vec![Utc::now(); spans];
    let payload = json!({"name": "GET /api/cart", "kind": 2,
                         "attributes": {"http.method": "GET", "http.status_code": 200, "note": "x".repeat(300)}})
    .to_string();
    let payloads = vec![payload; spans];
    Ok(client.query(sql, &[&ids, &of, &at, &payloads]).await?.len() / SPANS_PER_TRACE)
}

/// One worker's part of a batch written into its shards: the shards' metadata locked as
/// Citus's own writers lock it (a shard move waits for the part to commit, and the part sees
/// a move that came first: the placement no longer here), then for each shard its traces'
/// spans and claims, then their incidents (`with_incidents`), each round of statements
/// pipelined; prepared as `gid`.
async fn prepared_shard_part(
    client: &Client,
    part: &[(i64, Vec<String>)],
    tables: &ShardTables,
    with_incidents: bool,
    gid: &str,
) -> Result<(), BoxError> {
    client.batch_execute("BEGIN").await?;
    let mut shard_ids: Vec<i64> = Vec::new();
    for (shard, _) in part {
        let (claims, incidents, signals) = tables.get(shard).ok_or("a shard missing from the map")?;
        let written = if with_incidents { vec![claims, incidents, signals] } else { vec![signals] };
        for table in written {
            let id =
                table.rsplit_once('_').and_then(|(_, id)| id.parse().ok()).ok_or("a shard table's name")?;
            shard_ids.push(id);
        }
    }
    // 5: ShareLock, what Citus's executor takes for a modification of a shard.
    client.execute("SELECT lock_shard_metadata(5, $1)", &[&shard_ids]).await?;
    let here: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_dist_placement
             WHERE shardid = ANY($1) AND groupid = (SELECT groupid FROM pg_dist_local_group)",
            &[&shard_ids],
        )
        .await?
        .get(0);
    if here != shard_ids.len() as i64 {
        client.batch_execute("ROLLBACK").await?;
        return Err(format!(
            "{} of the part's {} shards moved away",
            shard_ids.len() as i64 - here,
            shard_ids.len()
        )
        .into());
    }
    let mut statements = Vec::new();
    for (shard, _) in part {
        let (claims, _, signals) = tables.get(shard).ok_or("a shard missing from the map")?;
        statements.push((
            SIGNALS_UNNEST.replace("INSERT INTO signals", &format!("INSERT INTO {signals}")),
            CLAIMS_UNNEST.replace("INSERT INTO claims", &format!("INSERT INTO {claims}")),
        ));
    }
    let mut first = Vec::new();
    for ((_, traces), (signals_sql, claims_sql)) in part.iter().zip(&statements) {
        let stored = spans(client, signals_sql, traces);
        let claimed = async move {
            Ok(match with_incidents {
                true => Some(client.query(claims_sql, &[traces]).await?),
                false => None,
            })
        };
        first.push(async move { futures_util::future::try_join(stored, claimed).await });
    }
    let first = futures_util::future::try_join_all(first).await?;
    let mut second = Vec::new();
    for ((shard, traces), (stored, claims)) in part.iter().zip(&first) {
        if *stored != traces.len() {
            return Err(format!("{stored} traces' spans stored of {}", traces.len()).into());
        }
        let Some(claims) = claims else { continue };
        let (_, incidents, _) = tables.get(shard).ok_or("a shard missing from the map")?;
        let ids: Vec<String> = claims.iter().map(|r| r.get(0)).collect();
        let at: Vec<DateTime<Utc>> = claims.iter().map(|r| r.get(1)).collect();
        let kept: Vec<bool> = claims.iter().map(|r| r.get(2)).collect();
        let sql = INCIDENTS_UNNEST.replace("INSERT INTO incidents", &format!("INSERT INTO {incidents}"));
        second.push(async move {
            client.query(&sql, &[&ids, &kept, &at]).await.map(|rows| (rows.len(), traces.len()))
        });
    }
    for (upserted, traces) in futures_util::future::try_join_all(second).await? {
        if upserted != traces {
            return Err(format!("{upserted} incidents written of {traces}").into());
        }
    }
    client.batch_execute(&format!("PREPARE TRANSACTION '{gid}'")).await?;
    Ok(())
}

/// The claims and incidents of `traces` on the coordinator's tables, as the service's batch
/// statement writes them; how many incidents were written.
async fn coordinator_incidents(client: &impl GenericClient, traces: &[String]) -> Result<usize, BoxError> {
    let sql = format!(
        "WITH {} SELECT count(*) FROM upserted",
        INCIDENTS_CTE
            .replace("{claims}", "local_claims")
            .replace("{incidents}", "local_incidents")
            .replace("TRACES", "$1")
    );
    Ok(client.query_one(&sql, &[&traces]).await?.get::<_, i64>(0) as usize)
}

/// A batch written at the workers (`Way::Batch*AtWorkerShardsPrepared`): `parts[i]` the
/// traces of worker `i` by shard, prepared there at once; then the coordinator's rows (with
/// the claims and incidents unless the parts wrote them) and the parts' record in one
/// transaction there (its commit decides the batch); then the parts committed. A failure ends
/// the probe, whose cluster is thrown away: no sweep of parts left prepared.
async fn batch_at_workers(
    coordinator: &mut Client,
    workers: &[Client],
    parts: &[Part],
    tables: &ShardTables,
    incidents_at_workers: bool,
    n: usize,
) -> Result<(), BoxError> {
    let gid = format!("probe_{}", uuid::Uuid::new_v4().simple());
    let prepared = futures_util::future::join_all(
        workers
            .iter()
            .zip(parts)
            .map(|(w, part)| prepared_shard_part(w, part, tables, incidents_at_workers, &gid)),
    )
    .await;
    for result in prepared {
        result?;
    }
    let tx = coordinator.transaction().await?;
    tx.execute("INSERT INTO prepared_parts (gid) VALUES ($1)", &[&gid]).await?;
    let traces: Vec<String> = parts.iter().flatten().flat_map(|(_, t)| t.iter().cloned()).collect();
    if !incidents_at_workers {
        let written = coordinator_incidents(&tx, &traces).await?;
        if written != traces.len() {
            return Err(format!("{written} incidents written of {}", traces.len()).into());
        }
    }
    coordinator_rows(&tx, &traces, n).await?;
    tx.commit().await?;
    for worker in workers {
        worker.batch_execute(&format!("COMMIT PREPARED '{gid}'")).await?;
    }
    // Once every part committed, the record has done its work (a sweep could take these in
    // bulk; deleted here, the probe charges the coordinator for it).
    coordinator.execute("DELETE FROM prepared_parts WHERE gid = $1", &[&gid]).await?;
    Ok(())
}

async fn batch(client: &mut Client, way: Way, traces: &[String], n: usize) -> Result<(), BoxError> {
    if way == Way::IncidentsDelegated {
        // Outside a transaction block: Citus delegates a call only there (unless the function
        // forces it), and the call is the whole batch.
        let written =
            client.query_one("SELECT probe_track($1, $2)", &[&traces[0], &traces]).await?.get::<_, i64>(0);
        if written as usize != traces.len() {
            return Err(format!("{way:?}: {written} traces written of {}", traces.len()).into());
        }
        return Ok(());
    }
    let tx = client.transaction().await?;
    let written: usize = match way {
        Way::IncidentsOnCoordinator | Way::IncidentsStatementAsItIs => {
            let (claims, incidents) = match way {
                Way::IncidentsOnCoordinator => ("local_claims", "local_incidents"),
                _ => ("claims", "incidents"),
            };
            let sql = format!(
                "WITH {} SELECT count(*) FROM upserted",
                INCIDENTS_CTE
                    .replace("{claims}", claims)
                    .replace("{incidents}", incidents)
                    .replace("TRACES", "$1")
            );
            tx.query_one(&sql, &[&traces]).await?.get::<_, i64>(0) as usize
        }
        Way::IncidentsDelegated => unreachable!("written above, outside a transaction"),
        Way::IncidentsUnnestViaCoordinator | Way::IncidentsUnnestAtWorker => {
            claims_then_incidents(&tx, traces, false).await?;
            traces.len()
        }
        Way::IncidentsValuesViaCoordinator | Way::IncidentsValuesAtWorker => {
            claims_then_incidents(&tx, traces, true).await?;
            traces.len()
        }
        Way::IncidentsAndCoordinatorTablesAtWorker => {
            claims_then_incidents(&tx, traces, false).await?;
            coordinator_rows(&tx, traces, n).await?;
            traces.len()
        }
        Way::SignalsViaCoordinator | Way::SignalsAtWorker => spans(&tx, SIGNALS_UNNEST, traces).await?,
        Way::BatchViaCoordinator => {
            let stored = spans(&tx, SIGNALS_UNNEST, traces).await?;
            let tracked = coordinator_incidents(&tx, traces).await?;
            coordinator_rows(&tx, traces, n).await?;
            stored.min(tracked)
        }
        Way::BatchAtWorkerShardsPrepared | Way::BatchSpansAtWorkerShardsPrepared => {
            unreachable!("written by batch_at_workers")
        }
    };
    tx.commit().await?;
    if written != traces.len() {
        return Err(format!("{way:?}: {written} traces written of {}", traces.len()).into());
    }
    Ok(())
}

/// Session settings of the service on Citus (README, "Running on Citus").
async fn session(url: &str) -> Result<Client, BoxError> {
    let client = connect(url).await?;
    client
        .batch_execute(
            "SET citus.max_cached_conns_per_worker = 8; SET citus.enable_deadlock_prevention = off",
        )
        .await?;
    Ok(client)
}

/// One window of `way`: batches written, and each node's CPU seconds meanwhile.
async fn window(cluster: &Cluster, db: &str, way: Way, seconds: Duration) -> Result<Value, BoxError> {
    let coordinator_url = format!("{}/{db}", cluster.coordinator.server_url());
    let worker_url = format!("{}/{db}", cluster.workers[0].server_url());
    let coordinator = connect(&coordinator_url).await?;
    // Fresh traces for the window at well above the rates measured (≈ 900 batches/s at most,
    // ≈ 170 of one shard), twice as many where only one worker's shards are kept.
    let split = matches!(way, Way::BatchAtWorkerShardsPrepared | Way::BatchSpansAtWorkerShardsPrepared);
    let rate = if way.one_shard() || split { 300.0 } else { 900.0 };
    let needed = (seconds.as_secs_f64() * rate) as usize * TRACES * if way.at_worker() { 2 } else { 1 };
    let port = way.at_worker().then_some(cluster.workers[0].port as i32);
    let pool = traces(&coordinator, needed, port).await?;
    // A batch written at the workers takes half its traces from each worker's shards (the
    // split a batch of random traces has), each from a pool of that worker's.
    let mut worker_pools = Vec::new();
    let mut worker_urls = Vec::new();
    let tables = Arc::new(if split { shard_tables(&coordinator).await? } else { ShardTables::new() });
    if split {
        for worker in &cluster.workers {
            worker_pools.push(traces(&coordinator, needed, Some(worker.port as i32)).await?);
            worker_urls.push(format!("{}/{db}", worker.server_url()));
        }
    }
    let url = if way.at_worker() { worker_url } else { coordinator_url };
    let cpu = || -> Vec<f64> { cluster.nodes().map(|n| n.cpu_seconds()).collect() };
    let before = cpu();
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (pool, url) = (pool.clone(), url.clone());
        let (worker_pools, worker_urls, tables) = (worker_pools.clone(), worker_urls.clone(), tables.clone());
        clients.push(tokio::spawn(async move {
            let mut client = session(&url).await?;
            let mut workers = Vec::new();
            for url in &worker_urls {
                workers.push(session(url).await?);
            }
            let mut n = c;
            while started.elapsed() < seconds {
                if split {
                    let parts: Option<Vec<Part>> = worker_pools
                        .iter()
                        .map(|pool| take_by_shard(pool, n, TRACES / worker_pools.len()))
                        .collect();
                    let Some(parts) = parts else { break };
                    batch_at_workers(
                        &mut client,
                        &workers,
                        &parts,
                        &tables,
                        way == Way::BatchAtWorkerShardsPrepared,
                        n,
                    )
                    .await?;
                } else {
                    let Some(traces) = take(&pool, way.one_shard(), n, TRACES) else { break };
                    batch(&mut client, way, &traces, n).await?;
                }
                n += CLIENTS;
            }
            Ok::<usize, BoxError>((n - c) / CLIENTS)
        }));
    }
    let mut batches = 0;
    for client in clients {
        batches += client.await??;
    }
    let took = started.elapsed().as_secs_f64();
    // Backends of the closed connections exit (and are counted) shortly after.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = cpu();
    let per_batch = |i: usize| (after[i] - before[i]) * 1000.0 / batches.max(1) as f64;
    let result = json!({
        "way": format!("{way:?}"),
        "batches_per_s": batches as f64 / took,
        "coordinator_ms_per_batch": per_batch(0),
        "workers_ms_per_batch": per_batch(1) + per_batch(2),
    });
    eprintln!("bench: citus-probe: {result}");
    Ok(result)
}

pub async fn measure(options: &Options) -> Result<Value, BoxError> {
    let cluster = Cluster::start()?;
    let db = "prodsentinel_bench_probe";
    let url = cluster.database(db).await?;
    let coordinator = connect(&url).await?;
    for statement in SCHEMA {
        coordinator.batch_execute(statement).await?;
    }
    for statement in METADATA {
        let statement = statement.replace(
            "WITH ACTIVITY_CLAIMED_UPSERTED",
            &format!(
                "WITH {}",
                INCIDENTS_CTE
                    .replace("{claims}", "claims")
                    .replace("{incidents}", "incidents")
                    .replace("TRACES", "traces")
            ),
        );
        coordinator.batch_execute(&statement).await?;
    }
    // `--scenario` names the ways to run (their names as in the results); every way without.
    let chosen: Vec<Way> = WAYS
        .into_iter()
        .filter(|way| {
            options.scenarios.is_empty() || options.scenarios.iter().any(|s| *s == format!("{way:?}"))
        })
        .collect();
    let mut windows = Vec::new();
    for _ in 0..ROUNDS {
        for way in chosen.iter().copied() {
            windows.push(window(&cluster, db, way, options.seconds).await?);
        }
    }
    Ok(
        json!({"clients": CLIENTS, "traces_per_batch": TRACES, "spans_per_trace": SPANS_PER_TRACE, "windows": windows}),
    )
}
