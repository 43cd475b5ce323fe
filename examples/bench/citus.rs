//! The Citus phase (issue 24): the release server's OTLP/gRPC span ingest through a Citus
//! coordinator with two workers, against one PostgreSQL with the same settings, all on this
//! machine: overhead, not scale (the three nodes share the two cores with the load and the
//! server). On the cluster, two databases: one written as the service does by default (each
//! batch's signals at the nodes holding their shards), one with `CITUS_WRITE_AT_WORKERS=off`
//! (every batch through the coordinator). Windows alternate (A B C C B A A B C) so that drift
//! weighs on all three; each node's PostgreSQL CPU is summed over each target's windows and
//! divided by the spans stored. Then: every acknowledged span stored once on each; the
//! worker's trace read and `/query/traces/{id}` on both Citus databases (their plan, p50/p99);
//! the worker's `UPDATE incidents … WHERE id = …`; a database of signals distributed in place,
//! per million rows; and sealing on the cluster (bytes before and after, rate, reads of sealed
//! traces).
//!
//! Citus must be installed for this PostgreSQL (README, "Running on Citus").

use std::time::Instant;

use prodsentinel::store::citus::Layout;
use serde_json::{json, Value};

use crate::ceiling::{connect, partitions_until};
use crate::load::{grpc_logs, grpc_points, grpc_spans, percentile_ms};
use crate::pg::OwnPostgres;
use crate::server::Server;
use crate::{BoxError, Options};

/// Both sides: room for the server's pool and Citus's connections to the workers, and
/// two-phase commit.
const SETTINGS: [(&str, &str); 2] = [("max_connections", "400"), ("max_prepared_transactions", "400")];

/// Alternating so that drift weighs on every target alike (A B C D D C B A A B C D).
const WINDOWS: [Target; 12] = [
    Target::Single,
    Target::Citus,
    Target::CitusViaCoordinator,
    Target::CitusIncidents,
    Target::CitusIncidents,
    Target::CitusViaCoordinator,
    Target::Citus,
    Target::Single,
    Target::Single,
    Target::Citus,
    Target::CitusViaCoordinator,
    Target::CitusIncidents,
];

const READS: usize = 300;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Single,
    /// The service's default: batches written at the nodes holding their shards.
    Citus,
    /// `CITUS_WRITE_AT_WORKERS=off`: every batch through the coordinator (another database of
    /// the same cluster).
    CitusViaCoordinator,
    /// `CITUS_DISTRIBUTE_INCIDENTS=on`: the incidents distributed with the signals, each
    /// batch's incidents written at the nodes with its signals (a third database).
    CitusIncidents,
}

impl Target {
    fn index(self) -> usize {
        self as usize
    }
}

/// A coordinator and two workers of the benchmark's own, with `database` on each, the
/// extension in it and the workers added.
pub(crate) struct Cluster {
    pub(crate) coordinator: OwnPostgres,
    pub(crate) workers: [OwnPostgres; 2],
}

impl Cluster {
    pub(crate) fn start() -> Result<Cluster, BoxError> {
        let mut settings = SETTINGS.to_vec();
        settings.push(("shared_preload_libraries", "citus"));
        let start = || -> Result<OwnPostgres, BoxError> {
            let mut node = OwnPostgres::init()?;
            node.start(&settings)?;
            Ok(node)
        };
        Ok(Cluster { coordinator: start()?, workers: [start()?, start()?] })
    }

    /// The coordinator, then the workers.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &OwnPostgres> {
        std::iter::once(&self.coordinator).chain(&self.workers)
    }

    pub(crate) async fn database(&self, name: &str) -> Result<String, BoxError> {
        for node in self.nodes() {
            connect(&format!("{}/postgres", node.server_url()))
                .await?
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await?;
        }
        self.join(name).await?;
        Ok(format!("{}/{name}", self.coordinator.server_url()))
    }

    /// `name`, existing on the coordinator, made a Citus database.
    async fn join(&self, name: &str) -> Result<(), BoxError> {
        for node in &self.workers {
            let admin = connect(&format!("{}/postgres", node.server_url())).await?;
            let exists =
                admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some();
            if !exists {
                admin.batch_execute(&format!("CREATE DATABASE {name}")).await?;
            }
        }
        for node in self.nodes() {
            connect(&format!("{}/{name}", node.server_url()))
                .await?
                .batch_execute("CREATE EXTENSION citus")
                .await?;
        }
        let db = connect(&format!("{}/{name}", self.coordinator.server_url())).await?;
        db.execute("SELECT citus_set_coordinator_host('127.0.0.1', $1)", &[&(self.coordinator.port as i32)])
            .await?;
        for node in &self.workers {
            db.execute("SELECT citus_add_node('127.0.0.1', $1)", &[&(node.port as i32)]).await?;
        }
        Ok(())
    }
}

/// `(stored, distinct)` spans of a database.
async fn stored(url: &str) -> Result<(i64, i64), BoxError> {
    let db = connect(url).await?;
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT (id, \"timestamp\", signal_type)) FROM raw_signal_rows",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// The traces of the row form.
const IN_ROWS: &str = "SELECT DISTINCT trace_id FROM raw_signal_rows ORDER BY 1 LIMIT $1";

/// The traces of sealed spans (store/sealing/columnar.rs).
const SEALED: &str =
    "SELECT DISTINCT trace_id FROM raw_signal_columnar WHERE signal_type = 'trace' ORDER BY 1 LIMIT $1";

/// Timings of the worker's read and the API's, of `READS` traces of those `traces` lists; the
/// number of tasks the worker's read is planned as.
async fn trace_reads(url: &str, api: std::net::SocketAddr, traces: &str) -> Result<Value, BoxError> {
    let db = connect(url).await?;
    let traces: Vec<String> =
        db.query(traces, &[&(READS as i64 * 20)]).await?.iter().map(|r| r.get(0)).step_by(20).collect();
    let plan: Vec<String> = db
        .query("EXPLAIN SELECT * FROM raw_signals WHERE trace_id = $1", &[&traces[0]])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let tasks = plan.iter().find_map(|l| l.trim().strip_prefix("Task Count: ").map(str::to_owned));
    let (mut worker, mut http_times) = (Vec::new(), Vec::new());
    for trace in &traces {
        let t0 = Instant::now();
        let rows = db
            .query(r#"SELECT * FROM raw_signals WHERE trace_id = $1 ORDER BY "timestamp""#, &[trace])
            .await?;
        worker.push(t0.elapsed().as_micros() as u32);
        assert!(!rows.is_empty(), "trace {trace} read");
    }
    let http = reqwest::Client::new();
    for trace in &traces {
        let t0 = Instant::now();
        http.get(format!("http://{api}/query/traces/{trace}"))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        http_times.push(t0.elapsed().as_micros() as u32);
    }
    // The analysis worker's write (docs/contracts.md): by id, without the trace.
    let ids: Vec<uuid::Uuid> = db
        .query("SELECT id FROM incidents LIMIT $1", &[&(READS as i64)])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut updates = Vec::new();
    for id in &ids {
        let t0 = Instant::now();
        db.execute("UPDATE incidents SET status = 'INVESTIGATING' WHERE id = $1", &[id]).await?;
        updates.push(t0.elapsed().as_micros() as u32);
    }
    for times in [&mut worker, &mut http_times, &mut updates] {
        times.sort_unstable();
    }
    let summary = |times: &[u32]| json!({"p50": percentile_ms(times, 0.5), "p99": percentile_ms(times, 0.99), "samples": times.len()});
    Ok(json!({
        "worker_read_tasks": tasks,
        "worker_trace_read_ms": summary(&worker),
        "api_trace_ms": summary(&http_times),
        "worker_update_by_id_ms": summary(&updates),
    }))
}

/// Sealing on the cluster (store/sealing/columnar.rs), as the sealed phase measures it on one
/// node: spans (8 streams), then log records and gauge points (4 each), exported into minute
/// partitions through the release server, sealed once their minute has ended, flat out: bytes
/// per signal before and after per type (on every node), signals sealed per second, and the
/// worker's read and `/query/traces/{id}` of sealed traces.
async fn sealed(cluster: &Cluster, options: &Options) -> Result<Value, BoxError> {
    let url = cluster.database("prodsentinel_bench_citus_sealed").await?;
    let server = Server::start(options, &url, &crate::sealed::SERVER_ENV).await?;
    let db = connect(&url).await?;
    let layout = Layout::Distributed { incidents: false };
    let sealer = crate::sealed::store(&url, "1m", std::time::Duration::from_secs(1), layout)?;
    let service = "bench-citus-sealed";
    let (spans, took) = grpc_spans(server.grpc, 8, options.seconds, service).await?;
    let ingest = spans.acked as f64 / took.as_secs_f64();
    grpc_logs(server.grpc, 4, options.seconds / 2, service).await?;
    grpc_points(server.grpc, 4, options.seconds / 2, service).await?;
    let before = crate::sealed::row_form(&db, layout).await?;
    let now = crate::sealed::after_the_last_range(&db).await?;
    let started = Instant::now();
    crate::sealed::seal_all(&sealer, now, 1.0).await?;
    let seconds = started.elapsed().as_secs_f64();
    let after = crate::sealed::sealed_form(&db, layout).await?;
    let signals: i64 = after.values().map(|(signals, _)| signals).sum();
    eprintln!("bench: citus: sealed {signals} signals in {seconds:.1}s");
    let reads = trace_reads(&url, server.api, SEALED).await?;
    server.stop().await?;
    let bytes = |form: &std::collections::BTreeMap<String, (i64, i64)>| {
        form.get("trace").map_or(0.0, |(signals, bytes)| *bytes as f64 / (*signals).max(1) as f64)
    };
    Ok(json!({
        "ingest_spans_per_s": ingest,
        "row_form": crate::sealed::per_signal(&before),
        "sealed": crate::sealed::per_signal(&after),
        "span_bytes_before": bytes(&before),
        "span_bytes_after": bytes(&after),
        "sealed_signals": signals,
        "seal_seconds": seconds,
        "sealed_signals_per_s": signals as f64 / seconds,
        "reads": reads,
    }))
}

/// A million spans written straight into a plain database on the coordinator, which then
/// becomes a Citus database and is distributed by the service's start-up step.
async fn distribute_in_place(cluster: &Cluster, rows: i64) -> Result<Value, BoxError> {
    let name = "prodsentinel_bench_citus_in_place";
    let admin = connect(&format!("{}/postgres", cluster.coordinator.server_url())).await?;
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    let url = format!("{}/{name}", cluster.coordinator.server_url());
    let config = prodsentinel::Config::from_args(["bench", "--database-url", url.as_str()])?;
    prodsentinel::store::migrate_database(&config.database, prodsentinel::store::migrate::MIGRATIONS).await?;
    partitions_until(&url, chrono::Utc::now()).await?;
    let db = connect(&url).await?;
    db.execute(
        r#"INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload)
           SELECT gen_random_uuid(), 'trace', md5((i / 8)::text), 'bench-in-place', now() - (i % 3600) * interval '1 second',
                  jsonb_build_object('span_id', i, 'name', 'GET /orders/' || (i % 100), 'duration_ms', i % 250, 'status', 'ok')
           FROM generate_series(1, $1::int8) AS i"#,
        &[&rows],
    )
    .await?;
    db.batch_execute("VACUUM ANALYZE raw_signal_rows").await?;
    cluster.join(name).await?;
    let started = Instant::now();
    prodsentinel::store::prepare_layout(&config.database).await?;
    let seconds = started.elapsed().as_secs_f64();
    let (count, _) = stored(&url).await?;
    assert_eq!(count, rows, "every row distributed");
    Ok(json!({"rows": rows, "seconds": seconds, "seconds_per_million": seconds / (rows as f64 / 1e6)}))
}

pub async fn measure(options: &Options) -> Result<Value, BoxError> {
    let mut single = OwnPostgres::init()?;
    single.start(&SETTINGS)?;
    let cluster = Cluster::start()?;
    let single_url = format!("{}/prodsentinel_bench_single", single.server_url());
    let citus_url = cluster.database("prodsentinel_bench_citus").await?;
    let coordinator_url = cluster.database("prodsentinel_bench_citus_coordinator").await?;
    let incidents_url = cluster.database("prodsentinel_bench_citus_incidents").await?;
    let env = [("SEAL_AFTER", "0")];
    let servers = [
        Server::start(
            &Options { database_server: single.server_url(), ..options.clone() },
            &single_url,
            &env,
        )
        .await?,
        Server::start(options, &citus_url, &env).await?,
        Server::start(options, &coordinator_url, &[("SEAL_AFTER", "0"), ("CITUS_WRITE_AT_WORKERS", "off")])
            .await?,
        Server::start(options, &incidents_url, &[("SEAL_AFTER", "0"), ("CITUS_DISTRIBUTE_INCIDENTS", "on")])
            .await?,
    ];
    let server = |target: Target| &servers[target.index()];
    let (mut rates, mut acked) = ([Vec::new(), Vec::new(), Vec::new(), Vec::new()], [0u64; 4]);
    // PostgreSQL CPU seconds of each Citus node (coordinator, workers) over each target's
    // windows, and the spans those windows stored.
    let mut node_cpu = [[0.0f64; 3]; 4];
    for (window, target) in WINDOWS.iter().enumerate() {
        let before: Vec<f64> = cluster.nodes().map(|n| n.cpu_seconds()).collect();
        let (spans, took) =
            grpc_spans(server(*target).grpc, 8, options.seconds, &format!("bench-citus-{window}")).await?;
        let after: Vec<f64> = cluster.nodes().map(|n| n.cpu_seconds()).collect();
        for (node, (b, a)) in before.iter().zip(&after).enumerate() {
            node_cpu[target.index()][node] += a - b;
        }
        let rate = spans.acked as f64 / took.as_secs_f64();
        eprintln!("bench: citus: window {window} {target:?}: {rate:.0} spans/s ({} errors)", spans.errors);
        rates[target.index()].push(rate);
        acked[target.index()] += spans.acked;
    }
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    // Microseconds of each node's PostgreSQL CPU per span stored.
    let per_span = |target: Target| -> Vec<f64> {
        node_cpu[target.index()].iter().map(|s| s * 1e6 / acked[target.index()].max(1) as f64).collect()
    };
    let (single_stored, citus_stored, coordinator_stored, incidents_stored) = (
        stored(&single_url).await?,
        stored(&citus_url).await?,
        stored(&coordinator_url).await?,
        stored(&incidents_url).await?,
    );
    // The same reads of the database written through the coordinator: whether the way the
    // rows were written changes what reading them costs. Each twice, in the order A B B A, as
    // the first reads after the load meet its aftermath (autovacuum, checkpoints).
    let reads = trace_reads(&citus_url, server(Target::Citus).api, IN_ROWS).await?;
    let coordinator_reads =
        trace_reads(&coordinator_url, server(Target::CitusViaCoordinator).api, IN_ROWS).await?;
    let coordinator_reads_again =
        trace_reads(&coordinator_url, server(Target::CitusViaCoordinator).api, IN_ROWS).await?;
    let reads_again = trace_reads(&citus_url, server(Target::Citus).api, IN_ROWS).await?;
    let incidents_reads = trace_reads(&incidents_url, server(Target::CitusIncidents).api, IN_ROWS).await?;
    let single_reads = trace_reads(&single_url, server(Target::Single).api, IN_ROWS).await?;
    for server in servers {
        server.stop().await?;
    }
    let in_place = distribute_in_place(&cluster, 1_000_000).await?;
    let sealed = sealed(&cluster, options).await?;
    let result = json!({
        "windows": WINDOWS.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>(),
        "single_spans_per_s": rates[0],
        "citus_spans_per_s": rates[1],
        "citus_via_coordinator_spans_per_s": rates[2],
        "citus_to_single": mean(&rates[1]) / mean(&rates[0]),
        "citus_via_coordinator_to_single": mean(&rates[2]) / mean(&rates[0]),
        "citus_incidents_spans_per_s": rates[3],
        "citus_incidents_to_single": mean(&rates[3]) / mean(&rates[0]),
        "citus_incidents_node_cpu_us_per_span": {"coordinator_worker1_worker2": per_span(Target::CitusIncidents)},
        "citus_incidents": {"acked": acked[3], "stored": incidents_stored.0, "distinct": incidents_stored.1},
        "citus_incidents_reads": incidents_reads,
        "citus_node_cpu_us_per_span": {"coordinator_worker1_worker2": per_span(Target::Citus)},
        "citus_via_coordinator_node_cpu_us_per_span": {"coordinator_worker1_worker2": per_span(Target::CitusViaCoordinator)},
        "single": {"acked": acked[0], "stored": single_stored.0, "distinct": single_stored.1},
        "citus": {"acked": acked[1], "stored": citus_stored.0, "distinct": citus_stored.1},
        "citus_via_coordinator": {"acked": acked[2], "stored": coordinator_stored.0, "distinct": coordinator_stored.1},
        "citus_reads": reads,
        "citus_via_coordinator_reads": coordinator_reads,
        "citus_via_coordinator_reads_again": coordinator_reads_again,
        "citus_reads_again": reads_again,
        "single_reads": single_reads,
        "distributed_in_place": in_place,
        "sealed": sealed,
    });
    eprintln!("bench: citus {result}");
    drop(cluster);
    drop(single);
    Ok(result)
}
