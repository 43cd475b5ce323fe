//! The throughput and query benchmark (see BENCHMARKS.md; run it with `examples/bench.sh`).
//!
//! 1. Ceiling: raw_signals-shaped rows written straight to a fresh database by the fastest
//!    batched methods (unnest INSERT … ON CONFLICT, text COPY), 8 sessions, no server.
//! 2. Receive path without storage: protobuf decode + mapping + payload serialisation, one core.
//! 3. The release server, driven for a fixed time per scenario: OTLP/gRPC spans, OTLP/HTTP
//!    protobuf logs, legacy single-signal POSTs (INFO, ERROR, 50 shared trace ids).
//! 4. Query latency over a database loaded with `--query-rows` signals.
//!
//! Prints a table and writes JSON (`--out`). Every figure is measured in this run; throughputs
//! are also given as ratios to this run's ceiling, since the machine is shared and noisy.

// A benchmark may panic on what it reads from its own database (clippy.toml).
#![allow(clippy::disallowed_methods)]

mod ceiling;
mod ceiling_volume;
mod citus;
mod citus_probe;
mod jaeger;
mod load;
mod pg;
mod query;
mod receive;
mod seal;
mod sealed;
mod server;
mod soak;
mod volume;
mod workload;

use std::time::Duration;

use serde_json::{json, Value};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
pub struct Options {
    pub seconds: Duration,
    pub query_rows: u64,
    /// Signals loaded for the volume phase (run only when asked for: `--only volume`).
    pub volume_rows: u64,
    pub out: String,
    pub server_binary: String,
    pub database_server: String,
    pub redis_url: String,
    /// Run only these phases (`ceiling`, `receive`, `load`, `query`); all when empty.
    pub only: Vec<String>,
    /// Extra settings for the server under test (`--server-env PROBLEM_GROUPING=false`).
    pub server_env: Vec<(String, String)>,
    /// Appended to the server's DATABASE_URL (`--database-options sslmode=disable`): to compare
    /// TLS to PostgreSQL with plain TCP in one sitting.
    pub database_options: Option<String>,
    /// Apply only the first N migrations to the fresh databases: for the binary of an older
    /// commit, run in the same sitting for a before/after comparison (`--migrations 8`).
    pub migrations: Option<usize>,
    /// Run only these server scenarios (`--scenario legacy_info_32`), or these layouts of the
    /// ceiling at volume (`--scenario daily-sealed`); all when empty.
    pub scenarios: Vec<String>,
    /// The soak phase (`--only soak`): each run's length (`--soak-minutes`, 60 the reference),
    /// the signals per second offered (`--soak-rate`), and whether a second run with a size
    /// budget follows (`--soak-budget yes|no`).
    pub soak_length: Duration,
    pub soak_rate: u32,
    pub soak_budget: bool,
    /// The budget run's length (`--soak-budget-minutes`); the first run's when not given.
    pub soak_budget_length: Option<Duration>,
}

impl Options {
    fn runs(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }

    /// The volume phase loads tens of millions of rows (about half an hour): only on request.
    fn runs_volume(&self) -> bool {
        self.only.iter().any(|p| p == "volume")
    }

    /// The Jaeger phase loads the volume phase's 20 M signals: only on request.
    fn runs_jaeger(&self) -> bool {
        self.only.iter().any(|p| p == "jaeger")
    }

    /// The sealing layouts fill a PostgreSQL of their own: only on request.
    fn runs_seal_layouts(&self) -> bool {
        self.only.iter().any(|p| p == "seal-layouts")
    }

    /// The service's sealing, on a PostgreSQL of its own: only on request.
    fn runs_sealed(&self) -> bool {
        self.only.iter().any(|p| p == "sealed")
    }

    /// The insert ceiling over a loaded day, with and without sealing: only on request.
    fn runs_ceiling_volume(&self) -> bool {
        self.only.iter().any(|p| p == "ceiling-volume")
    }

    /// The service on a Citus cluster of its own against one PostgreSQL: only on request.
    fn runs_citus(&self) -> bool {
        self.only.iter().any(|p| p == "citus")
    }

    /// What each way of writing the incidents and signals costs each Citus node: on request.
    fn runs_citus_probe(&self) -> bool {
        self.only.iter().any(|p| p == "citus-probe")
    }

    /// The soak runs for an hour or more: only on request.
    fn runs_soak(&self) -> bool {
        self.only.iter().any(|p| p == "soak")
    }
}

fn options() -> Result<Options, BoxError> {
    let mut options = Options {
        seconds: Duration::from_secs(10),
        query_rows: 5_000_000,
        volume_rows: 20_000_000,
        out: "bench-results.json".to_owned(),
        server_binary: "target/release/prodsentinel".to_owned(),
        database_server: std::env::var("BENCH_DATABASE_SERVER")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned()),
        redis_url: std::env::var("BENCH_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/15".to_owned()),
        only: Vec::new(),
        server_env: Vec::new(),
        database_options: None,
        migrations: None,
        scenarios: Vec::new(),
        soak_length: Duration::from_secs(60 * 60),
        soak_rate: 1000,
        soak_budget: true,
        soak_budget_length: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => options.seconds = Duration::from_secs(value()?.parse()?),
            "--query-rows" => options.query_rows = value()?.parse()?,
            "--volume-rows" => options.volume_rows = value()?.parse()?,
            "--out" => options.out = value()?,
            "--server" => options.server_binary = value()?,
            "--only" => options.only.push(value()?),
            "--migrations" => options.migrations = Some(value()?.parse()?),
            "--scenario" => options.scenarios.push(value()?),
            "--soak-minutes" => options.soak_length = Duration::from_secs(value()?.parse::<u64>()? * 60),
            "--soak-rate" => options.soak_rate = value()?.parse()?,
            "--soak-budget-minutes" => {
                options.soak_budget_length = Some(Duration::from_secs(value()?.parse::<u64>()? * 60))
            }
            "--soak-budget" => {
                options.soak_budget = match value()?.as_str() {
                    "yes" => true,
                    "no" => false,
                    other => return Err(format!("--soak-budget takes yes or no, not {other:?}").into()),
                }
            }
            "--database-options" => options.database_options = Some(value()?),
            "--server-env" => {
                let pair = value()?;
                let (key, value) = pair.split_once('=').ok_or("--server-env takes KEY=VALUE")?;
                options.server_env.push((key.to_owned(), value.to_owned()));
            }
            other => {
                return Err(format!(
                    "unknown flag {other}; phases for --only: ceiling receive load query volume jaeger seal-layouts sealed ceiling-volume citus citus-probe soak; flags: --seconds --query-rows --volume-rows --out --server --only --server-env --migrations --scenario --database-options --soak-minutes --soak-rate --soak-budget --soak-budget-minutes"
                )
                .into())
            }
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = options()?;
    let started = chrono::Utc::now();
    let machine = json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "postgres": ceiling::server_version(&options).await?,
    });
    let mut ceiling = Value::Null;
    if options.runs("ceiling") {
        eprintln!("bench: ceiling ({}s per method)", options.seconds.as_secs());
        ceiling = ceiling::measure(&options).await?;
    }
    let ceiling_rate = ceiling["best_rows_per_s"].as_f64().unwrap_or(f64::NAN);
    let mut receive = Value::Null;
    if options.runs("receive") {
        eprintln!("bench: receive path without storage");
        receive = receive::measure(options.seconds);
    }
    let mut scenarios = Vec::new();
    if options.runs("load") {
        eprintln!("bench: server scenarios ({}s each)", options.seconds.as_secs());
        scenarios = load::run_all(&options, ceiling_rate).await?;
    }
    let mut queries = Value::Null;
    if options.runs("query") {
        eprintln!("bench: query latency over {} signals", options.query_rows);
        queries = query::measure(&options).await?;
    }

    let mut volume = Value::Null;
    if options.runs_volume() {
        eprintln!(
            "bench: volume ({} signals, {}s per scenario)",
            options.volume_rows,
            options.seconds.as_secs()
        );
        volume = volume::measure(&options).await?;
    }

    let mut jaeger = Value::Null;
    if options.runs_jaeger() {
        eprintln!("bench: the Jaeger query API over {} signals", options.volume_rows);
        jaeger = jaeger::measure(&options).await?;
    }

    let mut seal = Value::Null;
    if options.runs_seal_layouts() {
        eprintln!("bench: sealing layouts ({}s of span export)", options.seconds.as_secs());
        seal = seal::measure(&options).await?;
    }

    let mut sealed = Value::Null;
    if options.runs_sealed() {
        eprintln!("bench: sealing ({}s of span export, then logs and points)", options.seconds.as_secs());
        sealed = sealed::measure(&options).await?;
    }

    let mut ceiling_volume = Value::Null;
    if options.runs_ceiling_volume() {
        eprintln!("bench: the insert ceiling over {} signals, with and without sealing", options.volume_rows);
        ceiling_volume = ceiling_volume::measure(&options).await?;
    }

    let mut citus = Value::Null;
    if options.runs_citus() {
        eprintln!(
            "bench: Citus (a coordinator and two workers) against one PostgreSQL, {}s windows",
            options.seconds.as_secs()
        );
        citus = citus::measure(&options).await?;
    }

    let mut citus_probe = Value::Null;
    if options.runs_citus_probe() {
        eprintln!("bench: Citus write probe, {}s per way of writing, twice", options.seconds.as_secs());
        citus_probe = citus_probe::measure(&options).await?;
    }

    let mut soak = Value::Null;
    if options.runs_soak() {
        soak = soak::measure(&options).await?;
    }

    let report = json!({
        "started_at": started.to_rfc3339(),
        "machine": machine,
        "seconds_per_scenario": options.seconds.as_secs(),
        "ceiling": ceiling,
        "receive_path": receive,
        "scenarios": scenarios,
        "queries": queries,
        "volume": volume,
        "jaeger": jaeger,
        "seal": seal,
        "sealed": sealed,
        "ceiling_volume": ceiling_volume,
        "citus": citus,
        "citus_probe": citus_probe,
        "soak": soak,
    });
    print_table(&report);
    std::fs::write(&options.out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("bench: wrote {}", options.out);
    Ok(())
}

fn print_table(report: &Value) {
    let ceiling = &report["ceiling"];
    println!("\nCeiling (rows/s, 8 sessions, 1000 rows per transaction):");
    for method in ceiling["methods"].as_array().into_iter().flatten() {
        println!(
            "  {:<28} {:>10.0}",
            method["method"].as_str().unwrap_or(""),
            method["rows_per_s"].as_f64().unwrap_or(0.0)
        );
    }
    let receive = &report["receive_path"];
    for (what, figures) in [
        ("protobuf spans", receive),
        ("OTLP/JSON spans", &receive["otlp_json_spans"]),
        ("protobuf logs", &receive["protobuf_logs"]),
    ] {
        if figures.is_object() {
            println!(
                "\nReceive path without storage, {what}: {:.0}/s on one core ({:.2} µs each, {:.0} payload bytes)",
                figures["spans_per_s"].as_f64().unwrap_or(0.0),
                figures["micros_per_span"].as_f64().unwrap_or(0.0),
                figures["payload_bytes_per_span"].as_f64().unwrap_or(0.0)
            );
        }
    }
    println!(
        "\n{:<24} {:>11} {:>8} {:>10} {:>10} {:>9} {:>9} {:>8} {:>9} {:>7} {:>8} {:>8} {:>8}",
        "scenario",
        "signals/s",
        "ratio",
        "acked",
        "stored",
        "p50 ms",
        "p99 ms",
        "errors",
        "RSS MiB",
        "CPU",
        "µs CPU",
        "WAL B",
        "disk B"
    );
    for s in report["scenarios"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:>11.0} {:>8.3} {:>10} {:>10} {:>9.2} {:>9.2} {:>8} {:>9.1} {:>7.2} {:>8.1} {:>8.0} {:>8.0}",
            s["name"].as_str().unwrap_or(""),
            s["signals_per_s"].as_f64().unwrap_or(0.0),
            s["ratio_to_ceiling"].as_f64().unwrap_or(0.0),
            s["acked"],
            s["stored"],
            s["p50_ms"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0),
            s["errors"],
            s["peak_rss_mib"].as_f64().unwrap_or(0.0),
            s["cpu_cores"].as_f64().unwrap_or(0.0),
            s["server_cpu_us_per_signal"].as_f64().unwrap_or(0.0),
            s["wal_bytes_per_signal"].as_f64().unwrap_or(0.0),
            s["disk_bytes_per_signal"].as_f64().unwrap_or(0.0),
        );
    }
    print_volume(&report["volume"]);
    print_jaeger(&report["jaeger"]);
    print_seal(&report["seal"]);
    print_sealed(&report["sealed"]);
    print_soak(&report["soak"]);
    println!("\nQueries over {} signals:", report["queries"]["rows"]);
    for q in report["queries"]["latencies"].as_array().into_iter().flatten() {
        println!(
            "  {:<48} p50 {:>7.2} ms   p99 {:>7.2} ms",
            q["query"].as_str().unwrap_or(""),
            q["p50_ms"].as_f64().unwrap_or(0.0),
            q["p99_ms"].as_f64().unwrap_or(0.0)
        );
    }
}

fn print_volume(volume: &Value) {
    let Some(runs) = volume["runs"].as_array() else { return };
    println!(
        "\nVolume: {} signals over the last 24 h, {} incidents",
        volume["loaded"]["signals"], volume["loaded"]["incidents"]
    );
    for run in runs {
        let (empty, loaded) = (&run["empty"], &run["loaded"]);
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
        println!(
            "  {:<12} spans/s empty {:>8.0} loaded {:>8.0} ratio {:.2} | WAL/span {:>6.0} -> {:>6.0} ({:.2}x) | disk/span {:>6.0} -> {:>6.0}",
            run["settings"].as_str().unwrap_or(""),
            f(empty, "spans_per_s"),
            f(loaded, "spans_per_s"),
            f(run, "ingest_ratio"),
            f(empty, "wal_bytes_per_span"),
            f(loaded, "wal_bytes_per_span"),
            f(run, "wal_ratio"),
            f(empty, "disk_bytes_per_span"),
            f(loaded, "disk_bytes_per_span"),
        );
        for q in run["queries"]["latencies"].as_array().into_iter().flatten() {
            println!(
                "      {:<66} p50 {:>7.2} ms  p99 {:>7.2} ms",
                q["query"].as_str().unwrap_or(""),
                f(q, "p50_ms"),
                f(q, "p99_ms")
            );
        }
    }
}

fn print_jaeger(jaeger: &Value) {
    let Some(latencies) = jaeger["latencies"].as_array() else { return };
    println!("\nJaeger query API over {} signals:", jaeger["loaded"]["signals"]);
    for q in latencies {
        println!(
            "  {:<76} p50 {:>8.2} ms  p99 {:>8.2} ms  ({} samples, {:.1} items)",
            q["query"].as_str().unwrap_or(""),
            q["p50_ms"].as_f64().unwrap_or(0.0),
            q["p99_ms"].as_f64().unwrap_or(0.0),
            q["samples"],
            q["mean_items"].as_f64().unwrap_or(0.0)
        );
    }
    println!("  one bucket of the service graph computed: {}", jaeger["dependency_bucket_compute"]);
    for target in jaeger["targets"].as_array().into_iter().flatten() {
        let verdict = if target["met"] == true { "met" } else { "MISSED" };
        println!(
            "  target {}: p99 {} ms: {verdict}",
            target["target"].as_str().unwrap_or(""),
            target["p99_ms"]
        );
    }
}

fn print_seal(seal: &Value) {
    let Some(layouts) = seal["layouts"].as_array() else { return };
    println!(
        "\nSealing layouts: {} spans in {} traces, row form {:.0} bytes per span",
        seal["spans"],
        seal["traces"],
        seal["row_form_bytes_per_span"].as_f64().unwrap_or(0.0)
    );
    for layout in layouts {
        let f = |k: &str| layout[k].as_f64().unwrap_or(0.0);
        println!(
            "  {:<5} {:>7.0} B/span ({:>5.2}x smaller) WAL {:>6.0} B/span {:>9.0} spans/s  {}",
            layout["compression"].as_str().unwrap_or(""),
            f("bytes_per_span"),
            f("ratio_to_row_form"),
            f("wal_bytes_per_span"),
            f("spans_sealed_per_s"),
            layout["layout"].as_str().unwrap_or("")
        );
    }
}

fn print_sealed(sealed: &Value) {
    if sealed.is_null() {
        return;
    }
    let f = |k: &str| sealed[k].as_f64().unwrap_or(0.0);
    println!("\nSealing (the service's own), {} signals sealed:", sealed["sealed_signals"]);
    for kind in ["trace", "log", "metric"] {
        println!(
            "  {kind:<6} {:>6.0} B/signal in rows -> {:>6.0} B/signal sealed",
            sealed["row_form"][kind]["bytes_per_signal"].as_f64().unwrap_or(0.0),
            sealed["sealed"][kind]["bytes_per_signal"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "  WAL {:.0} B/signal; {:.0} signals/s sealed per core = {:.2}x the ingest per core ({:.0} spans/s on {} cores)",
        f("wal_bytes_per_signal"),
        f("seal_signals_per_s_per_core"),
        f("seal_to_ingest_per_core"),
        f("ingest_spans_per_s"),
        sealed["cores"]
    );
    println!(
        "  sealed trace read p99: worker {:.2} ms, /query/traces/{{id}} {:.2} ms; ingest beside a seal {:.2}x ({:.0} vs {:.0} spans/s; that seal {:.0} signals in {:.1} s)",
        sealed["worker_trace_read_ms"]["p99"].as_f64().unwrap_or(0.0),
        sealed["api_trace_ms"]["p99"].as_f64().unwrap_or(0.0),
        f("ingest_ratio_beside_seal"),
        f("ingest_beside_seal_spans_per_s"),
        f("ingest_without_seal_spans_per_s"),
        f("seal_beside_signals"),
        f("seal_beside_seconds")
    );
}

fn print_soak(soak: &Value) {
    for run in soak["runs"].as_array().into_iter().flatten() {
        let v = &run["verdict"];
        println!(
            "\nSoak, {} minutes at {} signals/s offered, budget {}: {}",
            run["minutes"], run["rate_offered"], run["budget_bytes"], run["csv"]
        );
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
    if let Some(chart) = soak["chart"].as_str() {
        println!("Soak chart: {chart}");
    }
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
