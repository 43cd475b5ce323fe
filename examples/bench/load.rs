//! The server scenarios: a fixed time each, at fixed concurrency; acknowledged signals are
//! counted on the client, stored ones in the database, and must match.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use serde_json::{json, Value};
use tonic::codec::CompressionEncoding;

use crate::ceiling::{connect, drop_database, fresh_database};
use crate::server::Server;
use crate::workload::{legacy_log, logs, spans};
use crate::{BoxError, Options};

#[derive(Default)]
pub struct Tally {
    pub acked: u64,
    pub errors: u64,
    pub latencies_us: Vec<u32>,
}

/// The OTLP/gRPC scenario: `concurrency` streams exporting 512 spans (gzip) each, as fast as
/// the server answers, for `duration`.
pub async fn grpc_spans(
    addr: std::net::SocketAddr,
    concurrency: usize,
    duration: Duration,
    service: &str,
) -> Result<(Tally, Duration), BoxError> {
    let service = service.to_owned();
    grpc_exports(addr, concurrency, duration, TraceServiceClient::new, move |mut client| {
        let request = spans(&service, 512);
        async move {
            let response = client.export(request).await.map_err(|s| s.to_string())?;
            Ok(512 - response.into_inner().partial_success.map_or(0, |p| p.rejected_spans as u64))
        }
    })
    .await
}

/// The same with log records (512 per export), for the sealing phase's bytes per log.
pub async fn grpc_logs(
    addr: std::net::SocketAddr,
    concurrency: usize,
    duration: Duration,
    service: &str,
) -> Result<(Tally, Duration), BoxError> {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let service = service.to_owned();
    grpc_exports(addr, concurrency, duration, LogsServiceClient::new, move |mut client| {
        let request = logs(&service, 512);
        async move {
            let response = client.export(request).await.map_err(|s| s.to_string())?;
            Ok(512 - response.into_inner().partial_success.map_or(0, |p| p.rejected_log_records as u64))
        }
    })
    .await
}

/// The same with gauge points (512 per export).
pub async fn grpc_points(
    addr: std::net::SocketAddr,
    concurrency: usize,
    duration: Duration,
    service: &str,
) -> Result<(Tally, Duration), BoxError> {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    let service = service.to_owned();
    grpc_exports(addr, concurrency, duration, MetricsServiceClient::new, move |mut client| {
        let request = crate::workload::points(&service, 512);
        async move {
            let response = client.export(request).await.map_err(|s| s.to_string())?;
            Ok(512 - response.into_inner().partial_success.map_or(0, |p| p.rejected_data_points as u64))
        }
    })
    .await
}

/// `concurrency` gRPC clients made by `client` (one connection each, gzip), each calling
/// `export` with its clone as fast as the server answers, for `duration`.
async fn grpc_exports<C, E, Fut>(
    addr: std::net::SocketAddr,
    concurrency: usize,
    duration: Duration,
    client: fn(tonic::transport::Channel) -> C,
    export: E,
) -> Result<(Tally, Duration), BoxError>
where
    C: GzipClient + Clone + Send + Sync + 'static,
    E: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send,
{
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?.connect().await?;
        clients.push(client(channel).gzip());
    }
    let clients = Arc::new(clients);
    Ok(drive(concurrency, duration, move |worker, _| export(clients[worker].clone())).await)
}

/// The generated OTLP clients' `send_compressed(Gzip)`, under one name.
trait GzipClient {
    fn gzip(self) -> Self;
}

macro_rules! gzip_client {
    ($($client:ty),*) => {$(
        impl GzipClient for $client {
            fn gzip(self) -> Self {
                self.send_compressed(CompressionEncoding::Gzip)
            }
        }
    )*};
}

gzip_client!(
    TraceServiceClient<tonic::transport::Channel>,
    opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient<
        tonic::transport::Channel,
    >,
    opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient<
        tonic::transport::Channel,
    >
);

/// Runs `concurrency` workers for `duration`; each call of `operation(worker, i)` returns the
/// number of signals acknowledged, or an error.
async fn drive<F, Fut>(concurrency: usize, duration: Duration, operation: F) -> (Tally, Duration)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send,
{
    let operation = Arc::new(operation);
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let operation = operation.clone();
        workers.spawn(async move {
            let mut tally = Tally::default();
            let mut i = 0;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match operation(worker, i).await {
                    Ok(acked) => {
                        tally.acked += acked;
                        tally.latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Err(_) => tally.errors += 1,
                }
                i += 1;
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(Ok(tally)) = workers.join_next().await {
        total.acked += tally.acked;
        total.errors += tally.errors;
        total.latencies_us.extend(tally.latencies_us);
    }
    (total, started.elapsed())
}

pub fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

pub async fn run_all(options: &Options, ceiling: f64) -> Result<Vec<Value>, BoxError> {
    let url = fresh_database(options, "load").await?;
    flush_redis(options)?;
    let server = Server::start(options, &url, &[]).await?;
    let db = connect(&url).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let mut results = Vec::new();

    let scenarios: [(&str, usize); 6] = [
        ("otlp_grpc_spans", 8),
        ("otlp_http_logs", 8),
        ("legacy_info_32", 32),
        ("legacy_error_32", 32),
        ("legacy_shared_50_traces", 32),
        ("otlp_grpc_overload_64", 64),
    ];
    let chosen = scenarios
        .into_iter()
        .filter(|(name, _)| options.scenarios.is_empty() || options.scenarios.iter().any(|s| s == name));
    for (name, concurrency) in chosen {
        let service = format!("bench-{name}");
        // From a fresh checkpoint, so each scenario pays its own full-page images in the WAL.
        db.batch_execute("CHECKPOINT").await?;
        let lsn: String = db.query_one("SELECT pg_current_wal_lsn()::text", &[]).await?.get(0);
        let disk = stored_bytes(&db).await?;
        server.take_peak_rss_mib();
        let cpu_before = server.cpu_seconds();
        let postgres_before = crate::server::postgres_cpu_seconds();
        let (tally, elapsed) = match name {
            "otlp_grpc_spans" | "otlp_grpc_overload_64" => {
                grpc_spans(server.grpc, concurrency, options.seconds, &service).await?
            }
            "otlp_http_logs" => {
                let (url, http) = (format!("http://{}/v1/logs", server.http), http.clone());
                drive(concurrency, options.seconds, move |_, _| {
                    let (url, http, body) = (url.clone(), http.clone(), logs(&service, 512).encode_to_vec());
                    async move {
                        let response = http
                            .post(url)
                            .header("content-type", "application/x-protobuf")
                            .body(body)
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        if response.status().is_success() {
                            Ok(512)
                        } else {
                            Err(response.status().to_string())
                        }
                    }
                })
                .await
            }
            _ => {
                let level = if name == "legacy_info_32" { "INFO" } else { "ERROR" };
                let shared = name == "legacy_shared_50_traces";
                let (url, http) = (format!("http://{}/ingest/logs", server.api), http.clone());
                drive(concurrency, options.seconds, move |worker, i| {
                    let trace = if shared {
                        format!("shared-{}", (worker as u64 * 7919 + i) % 50)
                    } else {
                        uuid::Uuid::new_v4().simple().to_string()
                    };
                    let (url, http, body) = (url.clone(), http.clone(), legacy_log(&service, &trace, level));
                    async move {
                        let response = http.post(url).json(&body).send().await.map_err(|e| e.to_string())?;
                        if response.status() == reqwest::StatusCode::ACCEPTED {
                            Ok(1)
                        } else {
                            Err(response.status().to_string())
                        }
                    }
                })
                .await
            }
        };
        let cpu_seconds = server.cpu_seconds() - cpu_before;
        let postgres_seconds = crate::server::postgres_cpu_seconds() - postgres_before;
        let cpu = cpu_seconds / elapsed.as_secs_f64();
        let wal: f64 = db
            .query_one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8", &[&lsn])
            .await?
            .get(0);
        let disk = stored_bytes(&db).await? - disk;
        let wal_by_kind = wal_breakdown(&db, &lsn).await.unwrap_or(Value::Null);
        let disk_by_relation = disk_breakdown(&db).await.unwrap_or(Value::Null);
        let peak_rss_mib = server.take_peak_rss_mib();
        let service = format!("bench-{name}");
        let stored: i64 = db
            .query_one("SELECT count(*) FROM raw_signals WHERE service_name = $1", &[&service])
            .await?
            .get(0);
        let mut latencies = tally.latencies_us;
        latencies.sort_unstable();
        let rate = tally.acked as f64 / elapsed.as_secs_f64();
        let result = json!({
            "name": name,
            "concurrency": concurrency,
            "seconds": elapsed.as_secs_f64(),
            "requests": latencies.len(),
            "errors": tally.errors,
            "acked": tally.acked,
            "stored": stored,
            "acked_equals_stored": tally.acked == stored as u64,
            "signals_per_s": rate,
            "ratio_to_ceiling": rate / ceiling,
            "p50_ms": percentile_ms(&latencies, 0.50),
            "p99_ms": percentile_ms(&latencies, 0.99),
            "peak_rss_mib": peak_rss_mib,
            "cpu_cores": cpu,
            "server_cpu_us_per_signal": cpu_seconds * 1e6 / stored.max(1) as f64,
            "postgres_cpu_us_per_signal": postgres_seconds * 1e6 / stored.max(1) as f64,
            "wal_bytes_per_signal": wal / stored.max(1) as f64,
            "disk_bytes_per_signal": disk as f64 / stored.max(1) as f64,
            "wal_by_kind": wal_by_kind,
            "disk_by_relation": disk_by_relation,
        });
        eprintln!("bench: {result}");
        results.push(result);
    }
    let incidents: i64 = db.query_one("SELECT count(*) FROM incidents", &[]).await?.get(0);
    let shared: Value = db
        .query_one(
            "SELECT count(*), coalesce(sum(error_count), 0)::float8 FROM incidents WHERE trace_id LIKE 'shared-%'",
            &[],
        )
        .await
        .map(|r| json!({"incidents": r.get::<_, i64>(0), "error_count_sum": r.get::<_, f64>(1)}))?;
    eprintln!("bench: {incidents} incidents; shared-trace incidents {shared}");
    if let Some(last) = results.iter_mut().find(|r| r["name"] == "legacy_shared_50_traces") {
        last["incidents"] = shared;
    }
    server.stop().await?;
    drop(db);
    drop_database(options, &url).await?;
    flush_redis(options)?;
    Ok(results)
}

/// Heap, TOAST and index bytes of every signal table: the partitions, and the shared resources
/// and scopes where the schema has them.
async fn stored_bytes(db: &tokio_postgres::Client) -> Result<i64, BoxError> {
    let sql = "SELECT ((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('raw_signal_rows'))
                      + coalesce(pg_total_relation_size(to_regclass('signal_shared')), 0))::int8";
    Ok(db.query_one(sql, &[]).await?.get(0))
}

/// Where the scenario's WAL went, by resource manager (heap, btree, gin, …): record bytes and
/// full-page-image bytes (pg_walinspect, PostgreSQL 15; skipped where it is not available).
async fn wal_breakdown(db: &tokio_postgres::Client, since: &str) -> Result<Value, BoxError> {
    db.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect").await?;
    let rows = db
        .query(
            r#"SELECT "resource_manager/record_type", count::int8, record_size::int8, fpi_size::int8
               FROM pg_get_wal_stats($1::text::pg_lsn, pg_current_wal_lsn(), false)
               WHERE count > 0 ORDER BY combined_size DESC LIMIT 8"#,
            &[&since],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({"kind": r.get::<_, String>(0), "records": r.get::<_, i64>(1),
                   "record_bytes": r.get::<_, i64>(2), "fpi_bytes": r.get::<_, i64>(3)})
        })
        .collect())
}

/// Bytes of every relation of the signal tables and incidents (heap and each index), largest
/// first: cumulative over the run's scenarios.
async fn disk_breakdown(db: &tokio_postgres::Client) -> Result<Value, BoxError> {
    let rows = db
        .query(
            r#"SELECT regexp_replace(c.relname, '_p[0-9t]+', '_p*') AS relation, c.relkind::text,
                      sum(pg_relation_size(c.oid))::int8 AS bytes
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')
                 AND (c.relname LIKE 'raw_signals%' OR c.relname LIKE 'incidents%' OR c.relname LIKE 'signal_shared%')
               GROUP BY 1, 2 HAVING sum(pg_relation_size(c.oid)) > 0 ORDER BY 3 DESC"#,
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| json!({"relation": r.get::<_, String>(0), "bytes": r.get::<_, i64>(2)})).collect())
}

pub fn flush_redis(options: &Options) -> Result<(), BoxError> {
    let mut connection = redis::Client::open(options.redis_url.as_str())?.get_connection()?;
    redis::cmd("FLUSHDB").query::<()>(&mut connection)?;
    Ok(())
}
