//! A batch's signals written at the nodes holding their shards (docs/scaling.md, "Writing at
//! the workers"). Through the coordinator, Citus plans each batch's insert, pulls every row and
//! sends it on to the workers: most of the coordinator's work per signal. Here the service
//! splits the batch by shard itself (shards.rs), writes each node's part into the shards'
//! own tables over a connection to that node (plain PostgreSQL statements, planned once), and
//! drives the commit:
//!
//! 1. each part, in the nodes' order, takes the shards' metadata lock as Citus's own writers do
//!    (a shard move waits for it), checks that its shards are still on that node, inserts, and
//!    is prepared (`PREPARE TRANSACTION`);
//! 2. the coordinator's transaction tracks the batch (store/tracking.rs) and records it in
//!    `citus_prepared_batches`: its commit decides the batch;
//! 3. the parts are committed (`COMMIT PREPARED`).
//!
//! A crash between 2 and 3 leaves parts prepared: [`Workers::resolve`] commits those of a
//! recorded batch and rolls back the others. Parts are prepared one node after another in one
//! order, so two batches carrying the same signals (a retry in flight) wait for each other
//! without a cycle. A batch this cannot take (records without a time, a row in a sealed range,
//! a map gone stale, a node unreachable, a part failing) is written through the coordinator,
//! as before.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool};
use futures_util::future::{join_all, try_join_all};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, SimpleQueryMessage};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::shards::{Node, Shard, ShardMap};
use crate::config::DatabaseConfig;
use crate::model::Signal;
use crate::store::tracking::part_statement;
use crate::store::StoreError;

/// The parameters of a part's statement (store/tracking.rs, `part_statement`) for some of the
/// batch's rows, by their index in it, and the incidents' rules when it tracks them.
pub trait PartColumns: Sync {
    fn part_params(&self, rows: &[usize], tracked: bool) -> Vec<Box<dyn ToSql + Send + Sync + '_>>;
}

/// What a prepared part is named at its node: the batch's id after this prefix, so that the
/// sweep finds ours among other prepared transactions (Citus's own among them).
const GID_PREFIX: &str = "prodsentinel:";

/// The name a batch's parts are prepared under at their nodes.
fn gid(batch: Uuid) -> String {
    format!("{GID_PREFIX}{batch}")
}

/// The batch a prepared transaction of ours belongs to.
fn batch_of(gid: &str) -> Option<Uuid> {
    Uuid::parse_str(gid.strip_prefix(GID_PREFIX)?).ok()
}

/// How long a part may stay prepared before the sweep decides it: far longer than a batch's
/// coordinator transaction takes (its lock waits give up within seconds).
pub const SWEEP_AFTER: Duration = Duration::from_secs(60);

/// How long a node that refused a connection is left alone (its batches go through the
/// coordinator meanwhile).
const RETRY_NODE_AFTER: Duration = Duration::from_secs(30);

/// How often a batch that could not be written at the nodes is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A part waiting longer than this for a lock gives up and its batch goes through the
/// coordinator: a batch there and one here carrying the same signals can wait for each other
/// across two nodes, a cycle no deadlock detector sees.
const PART_LOCK_TIMEOUT: &str = "5s";

/// The coordinator's record of a batch whose parts it commits.
pub const RECORD_BATCH: &str = "INSERT INTO citus_prepared_batches (batch_id, committed) VALUES ($1, true)";

/// Writes batches at the nodes: the map, and a pool per node.
pub struct Workers {
    coordinator: DatabaseConfig,
    /// Whether the incidents are distributed with the signals: each part then tracks its rows
    /// in the shards' colocated claims and incidents.
    incidents: bool,
    map: RwLock<Option<Arc<ShardMap>>>,
    pools: Mutex<HashMap<Node, Pool>>,
    unreachable: Mutex<HashMap<Node, Instant>>,
    last_warned: Mutex<Option<Instant>>,
}

/// A batch's parts, prepared at their nodes, and the rows they stored.
pub struct Prepared {
    pub batch: Uuid,
    parts: Vec<Part>,
    ids: Vec<Uuid>,
    times: Vec<DateTime<Utc>>,
    kinds: Vec<String>,
    /// With the incidents distributed, the incidents the parts upserted.
    upserted: Option<Upserted>,
}

/// Each trace's incident as the parts upserted it, in the columns the coordinator's
/// statement reads (store/tracking.rs, `UPSERTED_ROWS`).
#[derive(Debug, Default)]
pub struct Upserted {
    ids: Vec<Uuid>,
    traces: Vec<String>,
    keys: Vec<String>,
    kept: Vec<bool>,
    detected: Vec<DateTime<Utc>>,
    severities: Vec<String>,
    requested: Vec<bool>,
    fresh: Vec<bool>,
    escalated: Vec<bool>,
}

impl Upserted {
    fn extend(&mut self, row: &tokio_postgres::Row) -> Result<(), tokio_postgres::Error> {
        self.ids.extend(row.try_get::<_, Vec<Uuid>>("upserted_ids")?);
        self.traces.extend(row.try_get::<_, Vec<String>>("upserted_traces")?);
        self.keys.extend(row.try_get::<_, Vec<String>>("upserted_keys")?);
        self.kept.extend(row.try_get::<_, Vec<bool>>("upserted_kept")?);
        self.detected.extend(row.try_get::<_, Vec<DateTime<Utc>>>("upserted_detected")?);
        self.severities.extend(row.try_get::<_, Vec<String>>("upserted_severities")?);
        self.requested.extend(row.try_get::<_, Vec<bool>>("upserted_requested")?);
        self.fresh.extend(row.try_get::<_, Vec<bool>>("upserted_fresh")?);
        self.escalated.extend(row.try_get::<_, Vec<bool>>("upserted_escalated")?);
        Ok(())
    }

    /// The columns as the statement's parameters, in `UPSERTED_NAMES`' order.
    pub fn params(&self) -> [&(dyn ToSql + Sync); 9] {
        [
            &self.ids,
            &self.traces,
            &self.keys,
            &self.kept,
            &self.detected,
            &self.severities,
            &self.requested,
            &self.fresh,
            &self.escalated,
        ]
    }
}

struct Part {
    node: Node,
    client: Object,
}

/// Why a batch went through the coordinator.
enum Fallback {
    /// Routine: nothing to warn about.
    Quiet(&'static str),
    Warn(String),
}

impl Workers {
    pub fn new(coordinator: &DatabaseConfig, incidents: bool) -> Workers {
        Workers {
            coordinator: coordinator.clone(),
            incidents,
            map: RwLock::new(None),
            pools: Mutex::default(),
            unreachable: Mutex::default(),
            last_warned: Mutex::default(),
        }
    }

    /// Reads the shard map again (at start and at every maintenance pass).
    pub async fn refresh(&self, coordinator: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
        let loaded = ShardMap::load(coordinator).await?;
        let map = match loaded {
            Ok(map) => Some(Arc::new(map)),
            Err(why) => {
                if self.should_warn() {
                    warn!(reason = %why, "Citus: batches are written through the coordinator");
                }
                None
            }
        };
        let mut current = self.map.write().unwrap_or_else(|e| e.into_inner());
        if current.is_none() && map.is_some() {
            info!("Citus: batches are written at the nodes holding their shards");
        }
        *current = map;
        Ok(())
    }

    /// Writes `rows` at their nodes and prepares them there, or says `None`: the batch is then
    /// written through the coordinator. `coordinator` is the batch's coordinator transaction,
    /// which decides the parts when it commits (`RECORD_BATCH`).
    pub async fn prepare(
        &self,
        coordinator: &impl GenericClient,
        rows: &[&Signal],
        columns: &impl PartColumns,
    ) -> Option<Prepared> {
        match self.try_prepare(coordinator, rows, columns).await {
            Ok(prepared) => Some(prepared),
            Err(Fallback::Quiet(why)) => {
                debug!(reason = why, "batch written through the Citus coordinator");
                None
            }
            Err(Fallback::Warn(why)) => {
                if self.should_warn() {
                    warn!(reason = %why, "a batch could not be written at the Citus nodes: written through the coordinator (logged once a minute at most)");
                }
                None
            }
        }
    }

    async fn try_prepare(
        &self,
        coordinator: &impl GenericClient,
        rows: &[&Signal],
        columns: &impl PartColumns,
    ) -> Result<Prepared, Fallback> {
        let Some(map) = self.map.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Err(Fallback::Quiet("no shard map"));
        };
        if rows.iter().any(|s| s.time_unknown) {
            // Their retries are recognised by a lookup over every partition (tracking.rs).
            return Err(Fallback::Quiet("records without a time"));
        }
        // A row older than the newest sealed range may be a retry of a sealed one: the
        // coordinator's insert looks there.
        let sealed: Option<DateTime<Utc>> = coordinator
            .query_one("SELECT max(ends) FROM raw_signal_units", &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|why| Fallback::Warn(format!("reading the sealed ranges: {why}")))?;
        if sealed.is_some_and(|sealed| rows.iter().any(|s| s.timestamp < sealed)) {
            return Err(Fallback::Quiet("a row in a sealed range"));
        }
        // node → shard id → (shard, the indexes of its rows); nodes in one order for every batch.
        let mut split: BTreeMap<&Node, BTreeMap<i64, (&Shard, Vec<usize>)>> = BTreeMap::new();
        for (index, signal) in rows.iter().enumerate() {
            let shard = map.shard_of(&signal.trace_id);
            if self.incidents && shard.tracking.is_none() {
                return Err(Fallback::Warn(format!(
                    "the map has no incidents' shard beside shard {}: read again at the next maintenance pass",
                    shard.id
                )));
            }
            split
                .entry(&map.nodes()[shard.node])
                .or_default()
                .entry(shard.id)
                .or_insert_with(|| (shard, Vec::new()))
                .1
                .push(index);
        }
        let batch = Uuid::new_v4();
        let gid = gid(batch);
        let mut prepared = Prepared {
            batch,
            parts: Vec::new(),
            ids: Vec::new(),
            times: Vec::new(),
            kinds: Vec::new(),
            upserted: self.incidents.then(Upserted::default),
        };
        for (node, shards) in split {
            let client = match self.client(node).await {
                Ok(client) => client,
                Err(why) => {
                    prepared.roll_back().await;
                    return Err(why);
                }
            };
            match write_part(&client, &gid, &shards, columns, self.incidents).await {
                Ok(written) => {
                    prepared.parts.push(Part { node: node.clone(), client });
                    if let Err(why) = written.iter().try_for_each(|row| prepared.absorb(row)) {
                        prepared.roll_back().await;
                        return Err(Fallback::Warn(format!("reading the part at {node}: {why}")));
                    }
                }
                Err(why) => {
                    // Out of the transaction, or the connection goes.
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(client));
                    }
                    prepared.roll_back().await;
                    if why == PartError::Moved {
                        *self.map.write().unwrap_or_else(|e| e.into_inner()) = None;
                        return Err(Fallback::Warn(format!("a shard is no longer on {node}: the map is read again at the next maintenance pass")));
                    }
                    return Err(Fallback::Warn(format!("the part at {node}: {why}")));
                }
            }
        }
        Ok(prepared)
    }

    /// A connection to `node`, unless it refused one lately.
    async fn client(&self, node: &Node) -> Result<Object, Fallback> {
        {
            let mut unreachable = self.unreachable.lock().unwrap_or_else(|e| e.into_inner());
            match unreachable.get(node) {
                Some(since) if since.elapsed() < RETRY_NODE_AFTER => {
                    return Err(Fallback::Quiet("a node refused a connection lately"));
                }
                Some(_) => {
                    unreachable.remove(node);
                }
                None => {}
            }
        }
        let pool = self.pool(node).map_err(|why| Fallback::Warn(format!("a pool for {node}: {why:#}")))?;
        match pool.get().await {
            Ok(client) => Ok(client),
            Err(why) => {
                self.unreachable
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(node.clone(), Instant::now());
                Err(Fallback::Warn(format!("connecting to {node}: {}", crate::error::error_chain(&why))))
            }
        }
    }

    fn pool(&self, node: &Node) -> anyhow::Result<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = pools.get(node) {
            return Ok(pool.clone());
        }
        let config = DatabaseConfig { pg: at_node(&self.coordinator.pg, node), ..self.coordinator.clone() };
        let pool = crate::store::pool(&config, super::Layout::Single)?;
        pools.insert(node.clone(), pool.clone());
        Ok(pool)
    }

    fn should_warn(&self) -> bool {
        let mut last = self.last_warned.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Decides the parts left prepared for longer than `after` (a crash between the
    /// coordinator's commit and the parts'): committed when their batch is recorded so,
    /// rolled back otherwise (recorded so first, so that the batch's coordinator transaction,
    /// were it still running, fails instead of committing after). Then forgets the records no
    /// prepared part refers to. Returns (committed, rolled back).
    pub async fn resolve(
        &self,
        coordinator: &impl GenericClient,
        after: Duration,
    ) -> Result<(u64, u64), StoreError> {
        let Some(map) = self.map.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Ok((0, 0));
        };
        let (mut committed, mut rolled_back) = (0, 0);
        let mut pending: Vec<Uuid> = Vec::new();
        for node in map.nodes() {
            let pool = self.pool(node).map_err(|why| StoreError::Unavailable(why.into()))?;
            let client = pool.get().await?;
            let prepared = client
                .query(
                    "SELECT gid, prepared < now() - make_interval(secs => $2) FROM pg_prepared_xacts
                     WHERE database = current_database() AND starts_with(gid, $1)",
                    &[&GID_PREFIX, &after.as_secs_f64()],
                )
                .await?;
            for row in prepared {
                let (gid, due): (String, bool) = (row.try_get(0)?, row.try_get(1)?);
                let Some(batch) = batch_of(&gid) else { continue };
                if !due {
                    pending.push(batch);
                    continue;
                }
                coordinator
                    .execute(
                        "INSERT INTO citus_prepared_batches (batch_id, committed) VALUES ($1, false)
                         ON CONFLICT (batch_id) DO NOTHING",
                        &[&batch],
                    )
                    .await?;
                // A statement of its own: its snapshot sees a record committed while the insert
                // above waited for it.
                let commit: bool = coordinator
                    .query_one("SELECT committed FROM citus_prepared_batches WHERE batch_id = $1", &[&batch])
                    .await?
                    .try_get(0)?;
                let verb = if commit { "COMMIT" } else { "ROLLBACK" };
                match client.batch_execute(&format!("{verb} PREPARED '{gid}'")).await {
                    Ok(()) => {}
                    // Finished by the batch meanwhile.
                    Err(why) if why.code() == Some(&SqlState::UNDEFINED_OBJECT) => continue,
                    Err(why) => return Err(why.into()),
                }
                if commit {
                    committed += 1;
                } else {
                    rolled_back += 1;
                }
                warn!(node = %node, batch = %batch, committed = commit, "Citus: a batch's part left prepared was decided");
            }
        }
        // Every node answered: a record no prepared part names is done with. (A record is
        // written only after its batch's parts were all prepared, so none is prepared later.)
        // Kept an hour all the same: a rolled-back batch's record is what stops its coordinator
        // transaction, however late, from committing.
        coordinator
            .execute(
                "DELETE FROM citus_prepared_batches
                 WHERE decided_at < now() - interval '1 hour' AND batch_id <> ALL($1)",
                &[&pending],
            )
            .await?;
        Ok((committed, rolled_back))
    }
}

impl crate::store::Store {
    /// Reads the signals' shard map again when batches are written at the nodes (at start and
    /// at every maintenance pass: shards move).
    pub async fn refresh_shard_map(&self) -> Result<(), StoreError> {
        if let Some(workers) = &self.workers {
            let client = self.client().await?;
            workers.refresh(&**client).await?;
        }
        Ok(())
    }

    /// [`Workers::resolve`] with [`SWEEP_AFTER`]: the parts left prepared by a crash, decided.
    pub async fn resolve_prepared_parts(&self) -> Result<(u64, u64), StoreError> {
        self.resolve_prepared_parts_after(SWEEP_AFTER).await
    }

    /// [`Workers::resolve`] of the parts prepared for longer than `after` (tests shorten it).
    pub async fn resolve_prepared_parts_after(&self, after: Duration) -> Result<(u64, u64), StoreError> {
        match &self.workers {
            Some(workers) => workers.resolve(&**self.client().await?, after).await,
            None => Ok((0, 0)),
        }
    }
}

/// Why a part failed.
#[derive(Debug, PartialEq)]
enum PartError {
    /// A shard is no longer placed on the node (moved since the map was read).
    Moved,
    Query(String),
}

impl std::fmt::Display for PartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartError::Moved => f.write_str("a shard moved"),
            PartError::Query(why) => f.write_str(why),
        }
    }
}

impl From<tokio_postgres::Error> for PartError {
    fn from(error: tokio_postgres::Error) -> Self {
        PartError::Query(crate::error::error_chain(&error))
    }
}

/// One node's part: its shards' rows inserted (and, with `tracked`, their incidents upserted
/// in the shards' colocated tables) and the transaction prepared as `gid`. The statements go
/// in one round trip (the client pipelines them), the prepare in another once the placements
/// are known to hold. Returns each shard's answer ([`Prepared::absorb`]).
async fn write_part(
    client: &Object,
    gid: &str,
    shards: &BTreeMap<i64, (&Shard, Vec<usize>)>,
    columns: &impl PartColumns,
    tracked: bool,
) -> Result<Vec<tokio_postgres::Row>, PartError> {
    let ids: Vec<String> = shards.keys().map(i64::to_string).collect();
    let ids = ids.join(",");
    // Citus's writers take this lock on a shard's metadata (mode 5, share): a move of the shard
    // (and of its colocated ones with it) takes it exclusively, so it waits until this part is
    // committed or rolled back. Then the placements, read by a statement that starts after the
    // lock is held (one simple query: its statements run in order, each with a snapshot of its
    // own).
    let setup = format!(
        "BEGIN; SET LOCAL lock_timeout = '{PART_LOCK_TIMEOUT}';
         SELECT lock_shard_metadata(5, ARRAY[{ids}]::int8[]);
         SELECT count(*) FROM pg_dist_placement
         WHERE shardid IN ({ids}) AND groupid = (SELECT groupid FROM pg_dist_local_group)"
    );
    let setup = client.simple_query(&setup);
    let writes =
        try_join_all(shards.values().map(|(shard, rows)| write_shard(client, shard, rows, columns, tracked)));
    let (answers, written) = futures_util::try_join!(setup, writes)?;
    let placed = answers.iter().rev().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0).and_then(|n| n.parse::<usize>().ok()),
        _ => None,
    });
    if placed != Some(shards.len()) {
        return Err(PartError::Moved);
    }
    client.batch_execute(&format!("PREPARE TRANSACTION '{gid}'")).await?;
    Ok(written)
}

/// One shard's rows (by index in the batch) into its table, tracked in its colocated ones when
/// `tracked`.
async fn write_shard(
    client: &Object,
    shard: &Shard,
    rows: &[usize],
    columns: &impl PartColumns,
    tracked: bool,
) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
    let tracking = shard.tracking.as_ref().filter(|_| tracked).map(|(c, i)| (c.as_str(), i.as_str()));
    let statement = client.prepare_cached(&part_statement(&shard.table, tracking)).await?;
    let params = columns.part_params(rows, tracking.is_some());
    let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    client.query_one(&statement, &params).await
}

impl Prepared {
    /// The rows the parts stored (ids, times, types), for the coordinator's tracking.
    pub fn take_stored(&mut self) -> (Vec<Uuid>, Vec<DateTime<Utc>>, Vec<String>) {
        (std::mem::take(&mut self.ids), std::mem::take(&mut self.times), std::mem::take(&mut self.kinds))
    }

    /// Adds what a shard's statement returned: the rows it stored, and the incidents it
    /// upserted when it tracked them.
    fn absorb(&mut self, row: &tokio_postgres::Row) -> Result<(), tokio_postgres::Error> {
        self.ids.extend(row.try_get::<_, Vec<Uuid>>("inserted_ids")?);
        self.times.extend(row.try_get::<_, Vec<DateTime<Utc>>>("inserted_times")?);
        self.kinds.extend(row.try_get::<_, Vec<String>>("inserted_types")?);
        match &mut self.upserted {
            Some(upserted) => upserted.extend(row),
            None => Ok(()),
        }
    }

    /// With the incidents distributed, the incidents the parts upserted.
    pub fn upserted(&self) -> Option<&Upserted> {
        self.upserted.as_ref()
    }

    /// Commits the parts, once the coordinator's transaction recording the batch committed. A
    /// part that cannot be committed now is committed by the sweep ([`Workers::resolve`]).
    pub async fn commit(self) {
        self.finish("COMMIT").await;
    }

    /// Rolls the parts back: the coordinator's transaction failed.
    pub async fn roll_back(self) {
        self.finish("ROLLBACK").await;
    }

    async fn finish(self, verb: &str) {
        let sql = format!("{verb} PREPARED '{}'", gid(self.batch));
        let done = join_all(self.parts.iter().map(|part| part.client.batch_execute(&sql))).await;
        for (part, result) in self.parts.iter().zip(done) {
            if let Err(why) = result {
                warn!(node = %part.node, batch = %self.batch, error = %crate::error::error_chain(&why),
                      "Citus: a batch's part was left prepared; the maintenance decides it");
            }
        }
    }
}

/// The coordinator's connection settings, at `node`.
fn at_node(coordinator: &tokio_postgres::Config, node: &Node) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.host(&node.host).port(node.port);
    if let Some(user) = coordinator.get_user() {
        config.user(user);
    }
    if let Some(password) = coordinator.get_password() {
        config.password(password);
    }
    if let Some(dbname) = coordinator.get_dbname() {
        config.dbname(dbname);
    }
    if let Some(options) = coordinator.get_options() {
        config.options(options);
    }
    if let Some(name) = coordinator.get_application_name() {
        config.application_name(name);
    }
    if let Some(timeout) = coordinator.get_connect_timeout() {
        config.connect_timeout(*timeout);
    }
    config
        .ssl_mode(coordinator.get_ssl_mode())
        .keepalives(coordinator.get_keepalives())
        .keepalives_idle(coordinator.get_keepalives_idle())
        .channel_binding(coordinator.get_channel_binding());
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_part_names_its_batch_and_others_are_not_ours() {
        let batch = Uuid::new_v4();
        assert_eq!(batch_of(&gid(batch)), Some(batch));
        assert_eq!(batch_of(&format!("citus_0_{batch}")), None);
        assert_eq!(batch_of("prodsentinel:not-a-uuid"), None);
    }

    #[test]
    fn a_node_is_reached_as_the_coordinator_is_but_at_its_own_address() {
        let coordinator: tokio_postgres::Config =
            "postgres://svc:secret@coordinator:5432/telemetry?application_name=ps&connect_timeout=3"
                .parse()
                .unwrap();
        let node = Node { host: "worker-1".into(), port: 5433 };
        let config = at_node(&coordinator, &node);
        assert_eq!(config.get_hosts(), &[tokio_postgres::config::Host::Tcp("worker-1".into())]);
        assert_eq!(config.get_ports(), &[5433]);
        assert_eq!(config.get_user(), Some("svc"));
        assert_eq!(config.get_password(), Some(&b"secret"[..]));
        assert_eq!(config.get_dbname(), Some("telemetry"));
        assert_eq!(config.get_application_name(), Some("ps"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
    }
}
