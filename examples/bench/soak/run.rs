//! One soak run: its PostgreSQL, the server, the canary, the load, the polls, the consumer,
//! a row every minute; then the verdict and the CSV.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::sample::{self, lock, Row, Shared, Window};
use super::traffic::{self, Endpoints};
use super::{consumer, verdict, RunSpec};
use crate::ceiling::{connect, migrated_database};
use crate::load::flush_redis;
use crate::pg::OwnPostgres;
use crate::server::Server;
use crate::{BoxError, Options};

/// WAL kept small, so that a tmpfs just larger than the budget holds it; otherwise stock.
const POSTGRES_SETTINGS: [(&str, &str); 2] = [("max_wal_size", "256MB"), ("min_wal_size", "64MB")];
/// Room on the budget run's file system beyond the budget: WAL up to `max_wal_size` and a
/// checkpoint's worth more, the catalog, a partition being built.
const TMPFS_HEADROOM: u64 = 640 << 20;

/// A tmpfs of its own, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(bytes: u64) -> Result<Tmpfs, BoxError> {
        // Short: PostgreSQL's socket goes in a directory below, and a socket path is at most
        // 107 bytes.
        let dir = std::path::Path::new("/tmp")
            .join(format!("soak-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        std::fs::create_dir_all(&dir)?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes},mode=0777"), "tmpfs"])
            .arg(&dir)
            .status()?;
        if !status.success() {
            return Err(
                "mount -t tmpfs failed (the budget run mounts a small file system: run as root)".into()
            );
        }
        Ok(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(0, |a| a.port())
}

pub async fn soak(options: &Options, spec: RunSpec, csv: &str) -> Result<Value, BoxError> {
    // The budget run's data directory on a file system just larger than the budget: if the
    // budget did not hold, the disk would fill and the service would say so.
    let tmpfs = match spec.budget {
        Some(budget) => Some(Tmpfs::mount(budget + TMPFS_HEADROOM)?),
        None => None,
    };
    let mut pg = match &tmpfs {
        Some(fs) => OwnPostgres::init_in(&fs.0)?,
        None => OwnPostgres::init()?,
    };
    pg.start(&POSTGRES_SETTINGS)?;
    let own = Options { database_server: pg.server_url(), ..options.clone() };
    let url = migrated_database(&own, "soak").await?;
    flush_redis(options)?;
    let budget = spec.budget.map(|b| b.to_string());
    let check = super::CHECK_SECONDS.to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("PARTITION_INTERVAL", super::PARTITION_INTERVAL),
        ("RETENTION_TRACES", super::RETENTION_TRACES),
        ("RETENTION_LOGS", super::RETENTION_LOGS),
        ("RETENTION_METRICS", super::RETENTION_METRICS),
        ("INCIDENT_RETENTION", super::INCIDENT_RETENTION),
        ("OUTBOX_RETENTION", super::OUTBOX_RETENTION),
        ("RETENTION_CHECK_SECONDS", &check),
        ("LOG_LEVEL", "WARN"),
    ];
    if let Some(budget) = &budget {
        env.push(("RETENTION_MAX_DATABASE_SIZE", budget));
    }
    let server = match Server::start(&own, &url, &env).await {
        Ok(server) => server,
        Err(why) => return Err(format!("{why}; PostgreSQL's log:\n{}", pg.log_tail()).into()),
    };
    let endpoints = Arc::new(Endpoints { api: server.api, grpc: server.grpc, http: server.http });
    let canary_metrics = format!("127.0.0.1:{}", free_port());
    let retention = format!(
        "trace={},log={},metric={}",
        super::RETENTION_TRACES,
        super::RETENTION_LOGS,
        super::RETENTION_METRICS
    );
    let mut canary = Command::new(&options.server_binary)
        .arg("canary")
        .env("CANARY_OTLP_GRPC_ENDPOINT", format!("http://{}", server.grpc))
        .env("CANARY_OTLP_HTTP_ENDPOINT", format!("http://{}", server.http))
        .env("CANARY_API_ENDPOINT", format!("http://{}", server.api))
        .env("CANARY_INTERVAL", "2s")
        .env("CANARY_READ_DELAY", "1s")
        .env("CANARY_RETENTION", &retention)
        .env("CANARY_PARTITION_INTERVAL", super::PARTITION_INTERVAL)
        .env("CANARY_EXPIRY_GRACE", "1m")
        .env("CANARY_SPOT_CHECK_INTERVAL", "20s")
        .env("CANARY_ERROR_EVERY", "10")
        .env("CANARY_METRICS_ADDR", &canary_metrics)
        .env("LOG_LEVEL", "ERROR")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;

    let window: Shared = Arc::new(Mutex::new(Window::default()));
    let recent = Arc::new(Mutex::new(String::from("0")));
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(traffic::load(endpoints.clone(), spec.rate, window.clone(), recent.clone(), stop.clone()));
    tasks.spawn(traffic::polls(endpoints.clone(), window.clone(), recent.clone(), stop.clone()));
    // Past the logs' retention, two partitions and two checks: the noise must be gone by then.
    let check_after = Duration::from_secs(3 * 60 + 2 * 60 + 2 * super::CHECK_SECONDS);
    tasks.spawn(traffic::probes(endpoints.clone(), window.clone(), check_after, stop.clone()));
    tasks.spawn(consumer::drain(
        options.redis_url.clone(),
        "celery".to_owned(),
        window.clone(),
        stop.clone(),
    ));
    tasks.spawn(largest_size(url.clone(), window.clone(), stop.clone()));

    let db = connect(&url).await?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut cpu_before = server.cpu_seconds();
    let mut last = started;
    let mut next = started + spec.sample_every;
    while next <= started + spec.length {
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        let taken = std::mem::take(&mut *lock(&window));
        let cpu = server.cpu_seconds();
        let metrics = http.get(format!("http://{}/metrics", server.api)).send().await?.text().await?;
        let canary_text = match http.get(format!("http://{canary_metrics}/metrics")).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let row = row(
            rows.len() as u32 + 1,
            started,
            now - last,
            taken,
            cpu - cpu_before,
            &server,
            &db,
            &metrics,
            &canary_text,
        )
        .await?;
        eprintln!(
            "bench: soak minute {:>3}: db {:>6.1} MiB, rss {:>5.1} MiB, {:>6.0} signals/s, services p99 {:>6.2} ms, 5xx {}, canary failures {}",
            row.minute,
            row.db_bytes as f64 / 1048576.0,
            row.rss_mib,
            row.ingest_per_s,
            sample::percentile_ms(row.seen.polls.get("services").map(Vec::as_slice).unwrap_or_default(), 0.99),
            row.seen.server_errors,
            sample::CANARY_KINDS.iter().map(|k| row.canary.get(*k).copied().unwrap_or(0.0)).sum::<f64>(),
        );
        rows.push(row);
        (cpu_before, last) = (cpu, now);
        next += spec.sample_every;
    }
    stop.cancel();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(why)) = done {
            eprintln!("bench: soak task failed: {why}");
        }
    }
    let _ =
        std::process::Command::new("kill").args(["-TERM", &canary.id().unwrap_or(0).to_string()]).status();
    let _ = tokio::time::timeout(Duration::from_secs(30), canary.wait()).await;
    server.stop().await?;
    sample::write_csv(&rows, csv, spec.budget)?;
    let judged = verdict::judge(&rows, spec);
    drop(db);
    pg.stop()?;
    drop(pg);
    drop(tmpfs);
    Ok(json!({
        "minutes": rows.len(),
        "rate_offered": spec.rate,
        "budget_bytes": spec.budget,
        "csv": csv,
        "postgres_settings": POSTGRES_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "verdict": judged,
    }))
}

/// The database's size every two seconds, its largest kept: the budget is judged by it.
async fn largest_size(url: String, window: Shared, stop: CancellationToken) -> Result<(), BoxError> {
    let db = connect(&url).await?;
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        if let Ok(row) = db.query_one("SELECT pg_database_size(current_database())", &[]).await {
            let size: i64 = row.get(0);
            let mut w = lock(&window);
            w.db_max_bytes = w.db_max_bytes.max(size);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn row(
    minute: u32,
    started: Instant,
    span: Duration,
    taken: Window,
    cpu: f64,
    server: &Server,
    db: &tokio_postgres::Client,
    metrics: &str,
    canary: &str,
) -> Result<Row, BoxError> {
    let db_bytes: i64 = db.query_one("SELECT pg_database_size(current_database())", &[]).await?.get(0);
    let mut canary_counts = std::collections::BTreeMap::new();
    canary_counts
        .insert("checks".to_owned(), sample::metric(canary, "prodsentinel_canary_checks_total", &[]));
    canary_counts
        .insert("writes".to_owned(), sample::metric(canary, "prodsentinel_canary_writes_total", &[]));
    for kind in sample::CANARY_KINDS {
        let label = format!("kind=\"{kind}\"");
        canary_counts.insert(
            kind.to_owned(),
            sample::metric(canary, "prodsentinel_canary_check_failures_total", &[&label]),
        );
    }
    let mut seen = taken;
    seen.db_max_bytes = seen.db_max_bytes.max(db_bytes);
    Ok(Row {
        minute,
        elapsed_s: started.elapsed().as_secs_f64(),
        db_bytes,
        tables: sample::tables(db).await?,
        rss_mib: server.rss_mib(),
        pool_open: sample::metric(metrics, "prodsentinel_db_pool_connections", &[]),
        queue_signals: sample::metric(metrics, "prodsentinel_pipeline_queue_signals", &[]),
        cpu_cores: cpu / span.as_secs_f64(),
        ingest_per_s: seen.acked as f64 / span.as_secs_f64(),
        seen,
        canary: canary_counts,
        dropped_age: sample::metric(
            metrics,
            "prodsentinel_retention_partitions_dropped_total",
            &["reason=\"age\""],
        ),
        dropped_size: sample::metric(
            metrics,
            "prodsentinel_retention_partitions_dropped_total",
            &["reason=\"size\""],
        ),
        disk_full_failures: sample::metric(
            metrics,
            "prodsentinel_failures_total",
            &["cause=\"database_disk_full\""],
        ),
    })
}
