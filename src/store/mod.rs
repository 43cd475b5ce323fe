//! All SQL lives here: start-up (wait, create, migrate), the connection pool, writes and reads.
//! Callers get plain model types and a [`StoreError`] that says whether retrying can help.

/// `Type { field: row.try_get("field")?, … }`: each field read from the result column of the
/// same name, so a renamed column is an error (StoreError), never a value read from the wrong
/// place, and never a panic. Fields that need converting follow `with`.
macro_rules! from_columns {
    ($row:expr, $type:ident { $($field:ident),* $(,)? } $(with { $($name:ident: $value:expr),* $(,)? })?) => {
        $type { $($field: $row.try_get(stringify!($field))?,)* $($($name: $value,)*)? }
    };
}

mod activity;
mod bootstrap;
mod certificate;
pub mod citus;
pub mod dependencies;
mod filter;
mod idle;
mod incidents;
pub mod lifecycle;
pub mod migrate;
mod outbox;
pub mod partitions;
mod problems;
mod replica;
pub mod sealing;
mod shared;
mod signals;
mod span_rollups;
pub mod tls;
mod trace_search;
mod tracking;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;

use crate::config::DatabaseConfig;
use crate::model::Lifecycle;

pub use activity::{Merged, MinuteRange, ServiceSummary};
pub use bootstrap::{ensure_database, wait_for_server};
pub use dependencies::Dependency;
pub use filter::Total;
pub use incidents::{IncidentFilter, StatusChange, INCIDENT_ORDER};
pub use outbox::OutboxRow;
pub use problems::ProblemFilter;
use replica::Replica;
pub use replica::ReplicaStatus;
pub use signals::{PageStart, SignalFilter};
pub use span_rollups::Operation;
pub use trace_search::{TagFilter, TraceQuery};
pub use tracking::BatchOutcome;

/// A failed database operation, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, is restarting, or is overloaded: retry later.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database cannot extend a file: its data disk is full (SQLSTATE 53100). Retry once
    /// space is freed (retention, the size budget, or an operator).
    #[error("the database's disk is full")]
    DiskFull(#[source] tokio_postgres::Error),
    /// The statement itself failed; retrying the same request will fail again.
    #[error("database query failed")]
    Query(#[source] tokio_postgres::Error),
}

impl StoreError {
    /// Whether the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::DiskFull(_))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        if error.code() == Some(&SqlState::DISK_FULL) {
            StoreError::DiskFull(error)
        } else if is_transient(&error) {
            StoreError::Unavailable(Box::new(error))
        } else {
            StoreError::Query(error)
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(Box::new(error))
    }
}

/// Errors where the same request may succeed later: lost or refused connections, server
/// shutdown or start-up, resource exhaustion, serialization failures and deadlocks.
fn is_transient(error: &tokio_postgres::Error) -> bool {
    let Some(code) = error.code() else {
        // No SQLSTATE: a closed connection or an I/O error is transient; anything else
        // (a parameter that does not convert, a protocol error) is our bug.
        let io = std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>());
        return error.is_closed() || io;
    };
    let class = &code.code()[..2];
    matches!(class, "08" | "53" | "57" | "58")
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// How the data is laid out and kept: what the writes and the totals of the reads need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageSettings {
    /// When partitions, incidents and outbox rows expire.
    pub lifecycle: Lifecycle,
    /// List totals are exact up to this many rows (`QUERY_EXACT_TOTAL_LIMIT`).
    pub exact_total_limit: i64,
    /// One PostgreSQL or a Citus cluster ([`prepare_layout`]).
    pub layout: citus::Layout,
}

/// Each connection's session settings, set once when it is made. JIT off: our statements are
/// short (a batch write, a page of a list) and PostgreSQL compiles a plan whose cost estimate
/// passes `jit_above_cost`, however fast it runs. On partitioned incidents the list's page
/// query is estimated at about 120,000 (its id lookup cannot be known unique across
/// partitions) and ran in 0.6 ms plus 14-60 ms of compiling (BENCHMARKS.md, "A month in an
/// hour").
const SESSION_SETTINGS: &str = "SET jit = off";

/// On a Citus coordinator, also:
///
/// - keep the connections to the workers that a batch opened for the next one. Citus keeps one
///   per worker by default, so a batch spread over many shards opened (and two-phase committed)
///   a new connection per shard: 4.4k rows/s instead of 36.6k measured with 32 shards
///   (docs/scaling.md). Enough for every shard of one worker.
/// - let batches write the same shard at once. By default Citus lets one multi-shard
///   modification at a time into a shard (a lock that conflicts with itself), to keep two such
///   statements from locking rows in opposite orders on two shards; every batch spans the
///   shards, so our batches queued behind each other and a fifth of the two cores sat idle
///   (0.41 of one node's ingest; 0.52 without it, BENCHMARKS.md "Citus"). Our writes are
///   inserts of distinct keys: two batches wait for each other only when both carry the same
///   signal (a retry still in flight), and the cycle that can then form is broken by Citus's
///   distributed deadlock detection, which fails one of them with a deadlock (retryable, so the
///   client sends it again and it is counted as the duplicate it is; tests/it/citus.rs).
fn session_settings(layout: citus::Layout, shard_count: u32) -> String {
    match layout {
        citus::Layout::Single => SESSION_SETTINGS.to_owned(),
        citus::Layout::Distributed { .. } => format!(
            "{SESSION_SETTINGS}; SET citus.max_cached_conns_per_worker = {}; \
             SET citus.enable_deadlock_prevention = off",
            shard_count.max(1)
        ),
    }
}

pub(crate) fn pool(config: &DatabaseConfig, layout: citus::Layout) -> anyhow::Result<Pool> {
    let settings: Arc<str> = session_settings(layout, config.citus_shard_count).into();
    let manager = Manager::from_config(
        config.pg.clone(),
        tls::pg_tls(&config.tls)?,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    Ok(Pool::builder(manager)
        .post_create(Hook::async_fn(move |client, _| {
            let settings = settings.clone();
            Box::pin(async move {
                client.batch_execute(&settings).await.map_err(HookError::Backend)?;
                if layout.is_distributed() {
                    citus::sessions::open_worker_connections(client).await.map_err(HookError::Backend)?;
                }
                Ok(())
            })
        }))
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.acquire_timeout))
        .create_timeout(Some(config.acquire_timeout))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()?)
}

/// The connection pools; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The query API's reads (`QUERY_DATABASE_URL`), when they go to a replica.
    replica: Option<Arc<Replica>>,
    settings: StorageSettings,
    /// Woken when PostgreSQL reports its disk full: the size budget's pass runs at once.
    size_pressure: Arc<tokio::sync::Notify>,
    /// When this instance last marked each `signal_shared` row in use.
    shared_use: Arc<shared::SharedUse>,
    /// When this instance last wrote each `span_operations` row.
    operations_seen: Arc<span_rollups::OperationsSeen>,
    /// Pooled connections unused for longer are closed (`DATABASE_POOL_IDLE_SECONDS`).
    pool_idle: Option<Duration>,
    /// On Citus, unless CITUS_WRITE_AT_WORKERS is off: batches written at the nodes holding
    /// their shards (citus/parts.rs).
    workers: Option<Arc<citus::parts::Workers>>,
}

impl Store {
    /// A pool for `config`, and one for the query API's reads on `query` (a replica) when
    /// given. Connections are made lazily; a broken one is replaced on next use.
    pub fn new(
        config: &DatabaseConfig,
        query: Option<&DatabaseConfig>,
        settings: StorageSettings,
    ) -> anyhow::Result<Store> {
        let schema = migrate::MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
        let replica = query
            .map(|query| pool(query, settings.layout).map(|p| Replica::new(p, schema)))
            .transpose()?
            .map(Arc::new);
        let workers = (settings.layout.is_distributed() && config.citus_write_at_workers)
            .then(|| Arc::new(citus::parts::Workers::new(config, settings.layout.incidents_distributed())));
        Ok(Store {
            pool: pool(config, settings.layout)?,
            replica,
            settings,
            size_pressure: Arc::default(),
            shared_use: Arc::default(),
            operations_seen: Arc::default(),
            pool_idle: config.pool_idle,
            workers,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// A connection for a query API read: the replica's when there is one and it is reachable,
    /// the primary's otherwise.
    async fn read_client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        if let Some(replica) = &self.replica {
            if let Some(client) = replica.client().await {
                return Ok(client);
            }
        }
        self.client().await
    }

    /// The query replica's reachability and replay lag; `None` without `QUERY_DATABASE_URL`.
    pub async fn replica_status(&self, timeout: Duration) -> Option<ReplicaStatus> {
        match &self.replica {
            Some(replica) => Some(replica.status(timeout).await),
            None => None,
        }
    }

    /// Round-trips `SELECT 1`, within `timeout`: the health and readiness probe.
    pub async fn ping(&self, timeout: Duration) -> Result<(), StoreError> {
        let probe = async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await?;
            Ok::<(), StoreError>(())
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(result) => result,
            Err(elapsed) => Err(StoreError::Unavailable(Box::new(elapsed))),
        }
    }

    /// A session setting as our pooled connections have it (`current_setting`).
    pub async fn session_setting(&self, name: &str) -> Result<String, StoreError> {
        let client = self.client().await?;
        Ok(client.query_one("SELECT current_setting($1)", &[&name]).await?.try_get(0)?)
    }

    /// Connections of the pool: `(in use, idle, maximum)`.
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let status = self.pool.status();
        (status.size.saturating_sub(status.available), status.available, status.max_size)
    }

    pub fn settings(&self) -> &StorageSettings {
        &self.settings
    }

    /// Notified when a write found the database's disk full.
    pub fn size_pressure(&self) -> Arc<tokio::sync::Notify> {
        self.size_pressure.clone()
    }

    /// Closes the pool: idle connections are dropped, later requests fail fast.
    pub fn close(&self) {
        self.pool.close();
    }
}

/// On a Citus coordinator, distributes the signals over the cluster unless they already are
/// ([`citus::distribute`], under the migration lock) and warns of settings that would hurt;
/// on a plain PostgreSQL, nothing. Returns the layout the store then works with.
pub async fn prepare_layout(config: &DatabaseConfig) -> anyhow::Result<citus::Layout> {
    let mut client = bootstrap::connect(&config.pg, &tls::pg_tls(&config.tls)?).await?;
    let Some(cluster) = citus::detect(&client).await? else {
        return Ok(citus::Layout::Single);
    };
    citus::report(&cluster, &citus::check_settings(&client, &cluster).await?);
    migrate::lock(&client).await?;
    let distributed = lay_out_on_citus(&mut client, config).await;
    migrate::unlock(&client).await;
    let (sealed, incidents) = distributed?;
    citus::report_layout(&client, &sealed).await?;
    Ok(citus::Layout::Distributed { incidents })
}

/// [`prepare_layout`]'s changes, under the migration lock: the signals distributed, the
/// incidents partitioned once (and distributed with the signals when asked: a database whose
/// incidents are distributed keeps them so, asked or not), sealed storage laid out. Returns how sealing works there and whether the incidents are
/// distributed.
async fn lay_out_on_citus(
    client: &mut tokio_postgres::Client,
    config: &DatabaseConfig,
) -> Result<(sealing::columnar::Columnar, bool), citus::CitusError> {
    citus::distribute(client, config.citus_shard_count).await?;
    citus::incidents::level(client).await?;
    let incidents = if config.citus_distribute_incidents {
        citus::incidents::distribute(client).await?;
        true
    } else {
        citus::incidents::are_distributed(client).await?
    };
    if incidents {
        citus::incidents::distribute_functions(client).await?;
    }
    let sealed = sealing::columnar::lay_out(client).await?;
    Ok((sealed, incidents))
}

/// Connects to the configured database and applies `migrations` (see [`migrate::run`]).
pub async fn migrate_database(
    config: &DatabaseConfig,
    migrations: &[migrate::Migration],
) -> anyhow::Result<migrate::MigrationReport> {
    let mut client = bootstrap::connect(&config.pg, &tls::pg_tls(&config.tls)?).await?;
    Ok(migrate::run(&mut client, migrations).await?)
}
