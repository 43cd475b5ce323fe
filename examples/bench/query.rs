//! Query latency over a large database: `--query-rows` signals in traces of 10, one incident
//! per trace, loaded directly with COPY, then the API queried one request at a time.

use std::time::Instant;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::ceiling::{connect, copy_rows, drop_database, fresh_database};
use crate::server::Server;
use crate::workload::raw_payload;
use crate::{BoxError, Options};

/// A named query and how to build its path for sample `i`.
pub type Query = (&'static str, Box<dyn Fn(usize) -> String>);

const SIGNALS_PER_TRACE: u64 = 10;
const SERVICES: u64 = 20;
/// Samples per query; queries that count millions of rows for `total` get fewer.
const SAMPLES: usize = 300;
const SLOW_SAMPLES: usize = 20;

pub async fn measure(options: &Options) -> Result<Value, BoxError> {
    let url = fresh_database(options, "query").await?;
    let started = Instant::now();
    load(&url, options.query_rows).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    eprintln!("bench: loaded {} signals in {load_seconds:.0} s", options.query_rows);
    let activity_seconds = crate::volume::count_activity(options, &url).await?;
    let server = Server::start(options, &url, &[]).await?;
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.api);
    let traces = options.query_rows / SIGNALS_PER_TRACE;
    let queries: Vec<Query> = vec![
        (
            "GET /query/traces/{id}",
            Box::new(move |i| format!("/query/traces/trace-{}", (i as u64 * 104_729) % traces)),
        ),
        ("GET /query/signals?limit=100", Box::new(|_| "/query/signals?limit=100".to_owned())),
        (
            "GET /query/signals?service_name=…&limit=100",
            Box::new(|i| format!("/query/signals?service_name=svc-{}&limit=100", i as u64 % SERVICES)),
        ),
        (
            "GET /query/signals?signal_type=log&limit=100",
            Box::new(|_| "/query/signals?signal_type=log&limit=100".to_owned()),
        ),
        (
            "GET /query/signals?trace_id=…",
            Box::new(move |i| format!("/query/signals?trace_id=trace-{}", (i as u64 * 7_919) % traces)),
        ),
        ("GET /query/services (the last 24 h)", Box::new(|_| "/query/services".to_owned())),
        (
            "GET /query/incidents?limit=50 (first page)",
            Box::new(|_| "/query/incidents?limit=50&offset=0".to_owned()),
        ),
        (
            "GET /query/incidents?severity=high&limit=50",
            Box::new(|_| "/query/incidents?severity=high&limit=50".to_owned()),
        ),
    ];
    let mut latencies = Vec::new();
    for (name, path) in &queries {
        // Warm-up, then measured samples, one request at a time. The unfiltered and type-filtered
        // signal lists count millions of rows for `total`: fewer samples.
        let slow = name.contains("limit=100") && !name.contains("service_name");
        let n = if slow { SLOW_SAMPLES } else { SAMPLES };
        for i in 0..if slow { 2 } else { 20 } {
            http.get(format!("{base}{}", path(i))).send().await?;
        }
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let t0 = Instant::now();
            let response = http.get(format!("{base}{}", path(i + 20))).send().await?;
            let status = response.status();
            response.bytes().await?;
            samples.push(t0.elapsed().as_secs_f64() * 1000.0);
            if !status.is_success() {
                return Err(format!("{name}: {status}").into());
            }
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        latencies.push(json!({"query": name, "p50_ms": p(0.5), "p99_ms": p(0.99), "samples": n}));
    }
    server.stop().await?;
    drop_database(options, &url).await?;
    Ok(json!({"rows": options.query_rows, "incidents": traces, "load_seconds": load_seconds,
               "activity_count_seconds": activity_seconds, "latencies": latencies}))
}

/// `rows` signals (8 parallel COPY sessions, 10,000 rows each) and one incident per trace.
async fn load(url: &str, rows: u64) -> Result<(), BoxError> {
    const CHUNK: u64 = 10_000;
    let chunks = rows.div_ceil(CHUNK);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut sessions = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (url, next) = (url.to_owned(), next.clone());
        sessions.spawn(async move {
            let client = connect(&url).await?;
            loop {
                let chunk = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if chunk >= chunks {
                    return Ok::<(), BoxError>(());
                }
                let (first, last) = (chunk * CHUNK, ((chunk + 1) * CHUNK).min(rows));
                let base = chrono::Utc::now() - chrono::Duration::days(30);
                let mut text = String::with_capacity((last - first) as usize * 600);
                for i in first..last {
                    let at = (base + chrono::Duration::milliseconds(i as i64 * 500)).to_rfc3339();
                    let kind = if i % 10 == 9 {
                        "metric"
                    } else if i % 10 == 8 {
                        "trace"
                    } else {
                        "log"
                    };
                    let payload = raw_payload(i).to_string().replace('\\', "\\\\");
                    let (trace, service) = (i / SIGNALS_PER_TRACE, (i / SIGNALS_PER_TRACE) % SERVICES);
                    text.push_str(&format!(
                        "{}\t{kind}\ttrace-{trace}\tsvc-{service}\t{at}\t{payload}\n",
                        Uuid::new_v4()
                    ));
                }
                copy_rows(
                    &client,
                    "raw_signal_rows (id, signal_type, trace_id, service_name, \"timestamp\", payload)",
                    text,
                )
                .await?;
                // The incidents of the traces this chunk completes.
                let mut incidents = String::new();
                for trace in (first / SIGNALS_PER_TRACE)..(last / SIGNALS_PER_TRACE) {
                    let at = (base + chrono::Duration::seconds(trace as i64 * 5)).to_rfc3339();
                    let severity = ["LOW", "MEDIUM", "HIGH", "CRITICAL"][(trace % 4) as usize];
                    incidents.push_str(&format!(
                        "{}\ttrace-{trace}\tOPEN\t{severity}\t{at}\t{{svc-{}}}\t{SIGNALS_PER_TRACE}\n",
                        Uuid::new_v4(),
                        trace % SERVICES
                    ));
                }
                copy_rows(
                    &client,
                    "incidents (id, trace_id, status, severity, detected_at, affected_services, error_count)",
                    incidents,
                )
                .await?;
            }
        });
    }
    while let Some(result) = sessions.join_next().await {
        result??;
    }
    connect(url).await?.batch_execute("ANALYZE").await?;
    Ok(())
}
