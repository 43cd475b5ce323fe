//! The Jaeger phase (issue 22): the Jaeger query API over 20 M stored signals, as in the volume
//! phase (same load, spans also carrying `http.response.status_code`), plus traces of 1,000
//! spans and 200 logs sent through the server, and the rollups as the service keeps them at
//! that size. Prints the issue's four targets.

use std::time::Instant;

use chrono::{DurationRound, TimeDelta, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{json, Value};

use crate::ceiling::{connect, drop_database, fresh_database};
use crate::load::percentile_ms;
use crate::pg::OwnPostgres;
use crate::server::Server;
use crate::volume::{load, trace_id, urlencode, SETTINGS, SIGNALS_PER_TRACE};
use crate::workload::{kv, now_nanos, resource, scope};
use crate::{BoxError, Options};

const SAMPLES: usize = 300;
/// The worst-case search (a tag nothing has) reads every span of its hour: fewer samples.
const SLOW_SAMPLES: usize = 20;
const BIG_TRACES: usize = 20;
const BIG_SPANS: usize = 1_000;
const BIG_LOGS: usize = 200;
const BIG_SERVICES: usize = 5;
/// The service graph kept for 7 days: edges per ten-minute bucket.
const EDGES: usize = 40;
const OPERATIONS_PER_SERVICE: usize = 100;
const SERVICES: usize = 20;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One trace of `BIG_SPANS` spans over `BIG_SERVICES` services (a tree of fan-out four: most
/// calls cross services) and `BIG_LOGS` logs written inside its spans, started ten minutes ago.
fn big_trace(n: usize) -> (ExportTraceServiceRequest, ExportLogsServiceRequest, String) {
    let trace = uuid::Uuid::new_v4().as_bytes().to_vec();
    let start = now_nanos() - 600_000_000_000 + n as u64 * 1_000_000;
    let span_id = |i: usize| ((i as u64 + 1) | 0x1000_0000_0000_0000).to_be_bytes().to_vec();
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); BIG_SERVICES];
    for i in 0..BIG_SPANS {
        let begins = start + i as u64 * 50_000;
        by_service[i % BIG_SERVICES].push(Span {
            trace_id: trace.clone(),
            span_id: span_id(i),
            parent_span_id: if i == 0 { Vec::new() } else { span_id((i - 1) / 4) },
            name: format!("step {}", i % 25),
            kind: if i % 2 == 0 { 2 } else { 3 },
            start_time_unix_nano: begins,
            end_time_unix_nano: begins + 2_000_000,
            attributes: vec![kv("http.route", "/api/v1/orders/{id}"), kv("step", &i.to_string())],
            status: Some(Status { code: if i % 97 == 0 { 2 } else { 1 }, message: String::new() }),
            ..Default::default()
        });
    }
    let spans = ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .enumerate()
            .map(|(s, spans)| ResourceSpans {
                resource: Some(resource(&format!("big-{s}"))),
                scope_spans: vec![ScopeSpans { scope: Some(scope()), spans, schema_url: String::new() }],
                schema_url: String::new(),
            })
            .collect(),
    };
    let log_records = (0..BIG_LOGS)
        .map(|i| LogRecord {
            time_unix_nano: start + (i * 5) as u64 * 50_000 + 1_000,
            severity_number: if i % 10 == 0 { 17 } else { 9 },
            body: Some(AnyValue {
                value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(format!(
                    "step {i} done"
                ))),
            }),
            trace_id: trace.clone(),
            span_id: span_id(i * 5),
            attributes: vec![kv("order.id", &format!("o-{n}-{i}"))],
            ..Default::default()
        })
        .collect();
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource("big-0")),
            scope_logs: vec![ScopeLogs { scope: Some(scope()), log_records, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    };
    (spans, logs, hex(&trace))
}

async fn post_protobuf(http: &reqwest::Client, url: String, body: Vec<u8>) -> Result<(), BoxError> {
    let response = http.post(url).header("content-type", "application/x-protobuf").body(body).send().await?;
    if !response.status().is_success() {
        return Err(format!("export refused: {}", response.status()).into());
    }
    Ok(())
}

/// The rollups as the service keeps them with this many services: operations of every service,
/// and a week of the service graph (every bucket computed, so the server computes none while
/// the queries are timed).
async fn rollups(url: &str) -> Result<Value, BoxError> {
    let db = connect(url).await?;
    db.execute(
        "INSERT INTO span_operations (service_name, operation, span_kind, last_seen)
         SELECT 'svc-' || s, 'GET /api/v1/resource-' || o, (ARRAY['SERVER', 'CLIENT', 'INTERNAL'])[1 + o % 3], now()
         FROM generate_series(0, $1::int4 - 1) s, generate_series(0, $2::int4 - 1) o
         ON CONFLICT DO NOTHING",
        &[&(SERVICES as i32), &(OPERATIONS_PER_SERVICE as i32)],
    )
    .await?;
    let bucket = prodsentinel::store::dependencies::BUCKET;
    let newest = (Utc::now() - prodsentinel::store::dependencies::SETTLE).duration_trunc(bucket)? - bucket;
    let buckets = 7 * 24 * 6;
    let first = newest - bucket * (buckets - 1);
    db.execute(
        "INSERT INTO span_dependency_buckets (bucket)
         SELECT $1::timestamptz + b * interval '10 minutes' FROM generate_series(0, $2::int4 - 1) b
         ON CONFLICT DO NOTHING",
        &[&first, &buckets],
    )
    .await?;
    db.execute(
        "INSERT INTO span_dependencies (bucket, parent, child, call_count)
         SELECT $1::timestamptz + b * interval '10 minutes', 'svc-' || (e % $4), 'svc-' || ((e * 7 + 1) % $4), 1 + (b * e) % 500
         FROM generate_series(0, $2::int4 - 1) b, generate_series(0, $3::int4 - 1) e
         ON CONFLICT DO NOTHING",
        &[&first, &buckets, &(EDGES as i32), &(SERVICES as i32)],
    )
    .await?;
    db.batch_execute("VACUUM (ANALYZE) span_operations, span_dependencies, span_dependency_buckets").await?;
    let rows: i64 = db.query_one("SELECT count(*) FROM span_dependencies", &[]).await?.get(0);
    Ok(
        json!({"operations": SERVICES * OPERATIONS_PER_SERVICE, "dependency_buckets": buckets, "dependency_rows": rows}),
    )
}

/// What computing one bucket of the service graph costs at this size: the maintenance's
/// statement on five buckets of the loaded day, each rolled back.
async fn bucket_compute(url: &str) -> Result<Value, BoxError> {
    let mut db = connect(url).await?;
    let bucket = prodsentinel::store::dependencies::BUCKET;
    let length = format!("{} seconds", bucket.num_seconds());
    let mut seconds = Vec::new();
    for hours_ago in [3, 6, 9, 12, 15] {
        let at = (Utc::now() - TimeDelta::hours(hours_ago)).duration_trunc(bucket)?;
        let tx = db.transaction().await?;
        let started = Instant::now();
        tx.execute(prodsentinel::store::dependencies::COMPUTE_BUCKET, &[&at, &length]).await?;
        seconds.push(started.elapsed().as_secs_f64());
        tx.rollback().await?;
    }
    let mean = seconds.iter().sum::<f64>() / seconds.len() as f64;
    Ok(
        json!({"seconds": seconds, "mean_seconds": mean, "share_of_a_core": mean / bucket.num_seconds() as f64}),
    )
}

type Path = Box<dyn Fn(usize) -> String>;

async fn timed(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    samples: usize,
    path: &Path,
) -> Result<Value, BoxError> {
    for i in 0..5 {
        http.get(format!("{base}{}", path(i + 1_000_000))).send().await?.bytes().await?;
    }
    let mut latencies = Vec::with_capacity(samples);
    let mut bytes = 0;
    let mut found = 0;
    for i in 0..samples {
        let started = Instant::now();
        let response = http.get(format!("{base}{}", path(i))).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        latencies.push(started.elapsed().as_micros() as u32);
        if !status.is_success() {
            return Err(format!("{name}: {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        bytes += body.len();
        let answer: Value = serde_json::from_slice(&body)?;
        found += answer["data"].as_array().map_or(0, Vec::len);
    }
    latencies.sort_unstable();
    let result = json!({
        "query": name,
        "samples": samples,
        "p50_ms": percentile_ms(&latencies, 0.5),
        "p99_ms": percentile_ms(&latencies, 0.99),
        "mean_answer_bytes": bytes / samples,
        "mean_items": found as f64 / samples as f64,
    });
    eprintln!("bench: jaeger {result}");
    Ok(result)
}

pub async fn measure(options: &Options) -> Result<Value, BoxError> {
    let mut pg = OwnPostgres::init()?;
    pg.start(SETTINGS[0].1)?;
    let own = Options { database_server: pg.server_url(), ..options.clone() };
    let url = fresh_database(&own, "jaeger").await?;
    eprintln!("bench: loading {} signals over the last 24 hours", options.volume_rows);
    let loaded = load(&url, options.volume_rows as i64, true, "1d").await?;
    let activity_seconds = crate::volume::count_activity(&own, &url).await?;
    let rollups = rollups(&url).await?;
    let compute = bucket_compute(&url).await?;
    eprintln!("bench: loaded {loaded}, rollups {rollups}, one bucket of the graph {compute}");

    let server = Server::start(&own, &url, &[]).await?;
    let http = reqwest::Client::new();
    let mut big = Vec::new();
    for n in 0..BIG_TRACES {
        let (spans, logs, id) = big_trace(n);
        post_protobuf(&http, format!("http://{}/v1/traces", server.http), spans.encode_to_vec()).await?;
        post_protobuf(&http, format!("http://{}/v1/logs", server.http), logs.encode_to_vec()).await?;
        big.push(id);
    }
    let base = format!("http://{}", server.api);
    let check: Value = http.get(format!("{base}/jaeger/api/traces/{}", big[0])).send().await?.json().await?;
    let spans = check["data"][0]["spans"].as_array().map_or(0, Vec::len);
    let logs: usize = check["data"][0]["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["logs"].as_array().map_or(0, Vec::len))
        .sum();
    if spans != BIG_SPANS {
        return Err(format!("the big trace came back with {spans} spans").into());
    }
    let traces = options.volume_rows as i64 / SIGNALS_PER_TRACE;
    let tags = |json: &str| urlencode(json).replace('{', "%7B").replace('}', "%7D").replace('"', "%22");
    let (tag_500, tag_none) =
        (tags(r#"{"http.response.status_code":"500"}"#), tags(r#"{"http.response.status_code":"404"}"#));
    let week_ms = 7 * 24 * 3_600_000;
    let big_ids = big.clone();
    let queries: Vec<(&str, usize, Path)> = vec![
        (
            "GET /jaeger/api/traces/{id} (1,000 spans, 200 logs)",
            SAMPLES,
            Box::new(move |i| format!("/jaeger/api/traces/{}", big_ids[i % BIG_TRACES])),
        ),
        (
            "GET /jaeger/api/traces/{id} (10 signals)",
            SAMPLES,
            Box::new(move |i| format!("/jaeger/api/traces/{}", trace_id((i as i64 * 104_729) % traces))),
        ),
        (
            "GET /jaeger/api/traces?service=…&lookback=1h&limit=20",
            SAMPLES,
            Box::new(|i| format!("/jaeger/api/traces?service=svc-{}&lookback=1h&limit=20", i % SERVICES)),
        ),
        (
            "GET /jaeger/api/traces?service=…&lookback=1h&limit=20&tags=(status 500)",
            SAMPLES,
            Box::new(move |i| {
                format!("/jaeger/api/traces?service=svc-{}&lookback=1h&limit=20&tags={tag_500}", i % SERVICES)
            }),
        ),
        (
            "GET /jaeger/api/traces?…&tags=(matching nothing: every span of the hour read)",
            SLOW_SAMPLES,
            Box::new(move |i| {
                format!(
                    "/jaeger/api/traces?service=svc-{}&lookback=1h&limit=20&tags={tag_none}",
                    i % SERVICES
                )
            }),
        ),
        ("GET /jaeger/api/services", SAMPLES, Box::new(|_| "/jaeger/api/services".to_owned())),
        (
            "GET /jaeger/api/services/{service}/operations",
            SAMPLES,
            Box::new(|i| format!("/jaeger/api/services/svc-{}/operations", i % SERVICES)),
        ),
        (
            "GET /jaeger/api/operations?service=…&spanKind=server",
            SAMPLES,
            Box::new(|i| format!("/jaeger/api/operations?service=svc-{}&spanKind=server", i % SERVICES)),
        ),
        (
            "GET /jaeger/api/dependencies (7 days)",
            SAMPLES,
            Box::new(move |_| {
                format!("/jaeger/api/dependencies?endTs={}&lookback={week_ms}", Utc::now().timestamp_millis())
            }),
        ),
    ];
    let mut latencies = Vec::new();
    for (name, samples, path) in &queries {
        latencies.push(timed(&http, &base, name, *samples, path).await?);
    }
    server.stop().await?;
    drop_database(&own, &url).await?;
    drop(pg);
    let p99 = |index: usize| latencies[index]["p99_ms"].as_f64().unwrap_or(f64::NAN);
    let targets = json!([
        {"target": "/jaeger/api/traces/{id}, 1,000 spans and 200 logs: p99 ≤ 50 ms", "p99_ms": p99(0), "met": p99(0) <= 50.0},
        {"target": "search by service, 1 h, limit 20: p99 ≤ 200 ms; with a tag: p99 ≤ 500 ms", "p99_ms": [p99(2), p99(3)], "met": p99(2) <= 200.0 && p99(3) <= 500.0},
        {"target": "/jaeger/api/services and operations: p99 ≤ 20 ms", "p99_ms": [p99(5), p99(6), p99(7)], "met": p99(5) <= 20.0 && p99(6) <= 20.0 && p99(7) <= 20.0},
        {"target": "/jaeger/api/dependencies over 7 days: p99 ≤ 500 ms", "p99_ms": p99(8), "met": p99(8) <= 500.0},
    ]);
    Ok(json!({
        "loaded": loaded,
        "activity_count_seconds": activity_seconds,
        "rollups": rollups,
        "dependency_bucket_compute": compute,
        "big_trace": {"spans": spans, "logs": logs},
        "latencies": latencies,
        "targets": targets,
    }))
}
