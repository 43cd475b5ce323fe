//! The volume phase (issue 12): the OTLP/gRPC span scenario on an empty database and on one
//! already holding `--volume-rows` signals (default 20 M) spread over the last 24 hours, in
//! traces of ten with one incident each (2 M), under stock and recommended PostgreSQL
//! settings; WAL and disk bytes per stored span; the dashboard's and the worker's queries at
//! that size. On a PostgreSQL of the benchmark's own, restarted between the two settings.

use std::time::Instant;

use serde_json::{json, Value};

use crate::ceiling::{connect, drop_database, fresh_database, partitions_over};
use crate::load::{grpc_spans, percentile_ms};
use crate::pg::OwnPostgres;
use crate::server::Server;
use crate::workload::{logs, spans};
use crate::{BoxError, Options};

/// PostgreSQL as installed, and as BENCHMARKS.md recommends for this write load.
pub const SETTINGS: [(&str, &[(&str, &str)]); 2] = [
    ("stock", &[]),
    (
        "recommended",
        &[
            ("shared_buffers", "6GB"),
            ("max_wal_size", "16GB"),
            ("checkpoint_timeout", "15min"),
            ("wal_compression", "lz4"),
        ],
    ),
];

pub const SIGNALS_PER_TRACE: i64 = 10;
/// Rows per INSERT statement of the load (so that progress shows and no transaction is huge).
const LOAD_CHUNK: i64 = 500_000;
const SAMPLES: usize = 300;

/// One payload of each kind exactly as the server stores it for the scenario's exports: the
/// loaded rows look like the ones the scenario writes.
fn templates() -> (Value, Value) {
    let request = spans("bench-volume", 1);
    let options = crate::receive::options();
    let span = prodsentinel::mapping::otlp::spans_to_signals(&request, chrono::Utc::now(), &options);
    let log =
        prodsentinel::mapping::otlp::logs_to_signals(&logs("bench-volume", 1), chrono::Utc::now(), &options);
    (Value::Object(span.signals[0].payload.to_map()), Value::Object(log.signals[0].payload.to_map()))
}

/// `rows` signals over the last 24 hours, oldest first, in traces of ten (eight spans, a log, a
/// point), and one incident per trace; two sessions (one per core), then VACUUM ANALYZE. With
/// `status_codes`, every span also carries `http.response.status_code`, 500 on one signal in 50
/// and 200 otherwise (what the Jaeger phase searches by tag).
pub async fn load(url: &str, rows: i64, status_codes: bool, interval: &str) -> Result<Value, BoxError> {
    load_until(url, rows, status_codes, interval, chrono::Utc::now()).await
}

/// [`load`] over the 24 hours before `until`.
pub async fn load_until(
    url: &str,
    rows: i64,
    status_codes: bool,
    interval: &str,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<Value, BoxError> {
    let (span, log) = templates();
    // The partitions the service made over that day (of `interval`, its PARTITION_INTERVAL).
    partitions_over(url, until - chrono::Duration::hours(24), until, interval).await?;
    let started = Instant::now();
    let chunks: Vec<i64> = (0..rows).step_by(LOAD_CHUNK as usize).collect();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut sessions = tokio::task::JoinSet::new();
    let day_start = until - chrono::Duration::hours(24);
    for _ in 0..2 {
        let (url, next, chunks, span, log) =
            (url.to_owned(), next.clone(), chunks.clone(), span.clone(), log.clone());
        sessions.spawn(async move {
            let client = connect(&url).await?;
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&first) = chunks.get(index) else { return Ok::<(), BoxError>(()) };
                let last = (first + LOAD_CHUNK).min(rows);
                client
                    .execute(
                        r#"INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload)
                           SELECT gen_random_uuid(),
                                  (CASE g % 10 WHEN 8 THEN 'log' WHEN 9 THEN 'metric' ELSE 'trace' END)::signaltypeenum,
                                  left(encode(sha256(('vol' || (g / 10))::bytea), 'hex'), 32), 'svc-' || ((g / 10) % 20),
                                  $3::timestamptz + (g::float8 / $4) * interval '24 hours' - interval '1 minute',
                                  CASE g % 10
                                      WHEN 8 THEN $6::jsonb
                                      WHEN 9 THEN jsonb_build_object('metric_name', 'http.server.duration', 'value', g % 500,
                                                                     'unit', 'ms', 'attributes', '{}'::jsonb)
                                      ELSE $5::jsonb || jsonb_build_object('span_id', substr(md5(g::text), 1, 16))
                                           || CASE WHEN $7 THEN jsonb_build_object('attributes', ($5::jsonb->'attributes')
                                                   || jsonb_build_object('http.response.status_code', CASE WHEN g % 50 = 7 THEN 500 ELSE 200 END))
                                              ELSE '{}'::jsonb END
                                  END
                           FROM generate_series($1::int8, $2::int8 - 1) AS g"#,
                        &[&first, &last, &day_start, &(rows as f64), &span, &log, &status_codes],
                    )
                    .await?;
                eprintln!("bench: loaded {last} of {rows} signals ({:.0} s)", started.elapsed().as_secs_f64());
            }
        });
    }
    while let Some(result) = sessions.join_next().await {
        result??;
    }
    let signals_seconds = started.elapsed().as_secs_f64();
    let client = connect(url).await?;
    let traces = rows / SIGNALS_PER_TRACE;
    client
        .execute(
            "INSERT INTO incidents (trace_id, trace_key, status, severity, detected_at, affected_services,
                                    error_count, high_signal_count, last_signal_at, signals_expire_at)
             SELECT left(encode(sha256(('vol' || t)::bytea), 'hex'), 32), left(encode(sha256(('vol' || t)::bytea), 'hex'), 32), 'OPEN',
                    (ARRAY['LOW', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'])[1 + t % 5]::incidentseverity,
                    $1::timestamptz + (t::float8 / $2) * interval '24 hours', ARRAY['svc-' || (t % 20)],
                    10, 0, $1::timestamptz + (t::float8 / $2) * interval '24 hours', now() + interval '8 days'
             FROM generate_series(0, $3::int8 - 1) AS t",
            &[&day_start, &(traces as f64), &traces],
        )
        .await?;
    let vacuum = Instant::now();
    for statement in ["VACUUM (ANALYZE) raw_signal_rows", "VACUUM (ANALYZE) incidents", "CHECKPOINT"] {
        client.batch_execute(statement).await?;
    }
    let sizes = client
        .query_one(
            "SELECT (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('raw_signal_rows'))::int8,
                    (SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('raw_signal_rows'))::int8,
                    (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('incidents'))::int8",
            &[],
        )
        .await?;
    let (total, heap, incidents): (i64, i64, i64) = (sizes.get(0), sizes.get(1), sizes.get(2));
    // What the scenario's inserts land in: today's partition, as full as the time of day makes it.
    let today = r#"SELECT count(*) FROM raw_signals WHERE "timestamp" >= date_trunc('day', $1 AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"#;
    let in_today: i64 = client.query_one(today, &[&until]).await?.get(0);
    Ok(json!({
        "signals": rows,
        "incidents": traces,
        "load_seconds": signals_seconds,
        "incidents_and_vacuum_seconds": started.elapsed().as_secs_f64() - signals_seconds,
        "vacuum_seconds": vacuum.elapsed().as_secs_f64(),
        "disk_bytes_per_signal": total as f64 / rows as f64,
        "heap_bytes_per_signal": heap as f64 / rows as f64,
        "incident_bytes_each": incidents as f64 / traces as f64,
        "signals_in_todays_partition": in_today,
    }))
}

/// The per-service counts the batches would have kept as the signals arrived (the load went
/// around them), made by the service's first merge, as after an upgrade (migration 0013 marks
/// everything stored as to be counted): seconds taken.
pub async fn count_activity(options: &Options, url: &str) -> Result<f64, BoxError> {
    let started = Instant::now();
    let server = Server::start(options, url, &[]).await?;
    let db = connect(url).await?;
    loop {
        let stale: i64 = db.query_one("SELECT count(*) FROM service_activity_stale", &[]).await?.get(0);
        if stale == 0 {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(3600) {
            return Err("the per-service counts were not made within an hour".into());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    server.stop().await?;
    db.batch_execute("VACUUM (ANALYZE) service_minutes, service_hours").await?;
    Ok(seconds)
}

async fn signals_disk_bytes(db: &tokio_postgres::Client) -> Result<i64, BoxError> {
    let sql = "SELECT sum(pg_total_relation_size(relid))::int8 FROM pg_partition_tree('raw_signal_rows')";
    Ok(db.query_one(sql, &[]).await?.get(0))
}

/// The span scenario against `url` for `--seconds`, from a fresh checkpoint: rate, WAL and disk
/// bytes per span stored, server CPU.
async fn ingest(options: &Options, url: &str, service: &str) -> Result<Value, BoxError> {
    let db = connect(url).await?;
    db.batch_execute("CHECKPOINT").await?;
    let server = Server::start(options, url, &[]).await?;
    let lsn: String = db.query_one("SELECT pg_current_wal_lsn()::text", &[]).await?.get(0);
    let disk = signals_disk_bytes(&db).await?;
    let cpu = server.cpu_seconds();
    let (tally, elapsed) = grpc_spans(server.grpc, 8, options.seconds, service).await?;
    let cpu = server.cpu_seconds() - cpu;
    let wal: f64 = db
        .query_one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8", &[&lsn])
        .await?
        .get(0);
    let grown = signals_disk_bytes(&db).await? - disk;
    let stored: i64 =
        db.query_one("SELECT count(*) FROM raw_signals WHERE service_name = $1", &[&service]).await?.get(0);
    server.stop().await?;
    let mut latencies = tally.latencies_us;
    latencies.sort_unstable();
    let result = json!({
        "acked": tally.acked,
        "stored": stored,
        "errors": tally.errors,
        "spans_per_s": tally.acked as f64 / elapsed.as_secs_f64(),
        "p50_ms": percentile_ms(&latencies, 0.5),
        "p99_ms": percentile_ms(&latencies, 0.99),
        "wal_bytes_per_span": wal / stored.max(1) as f64,
        "disk_bytes_per_span": grown as f64 / stored.max(1) as f64,
        "server_cpu_us_per_span": cpu * 1e6 / stored.max(1) as f64,
    });
    eprintln!("bench: volume ingest {service}: {result}");
    Ok(result)
}

/// p50/p99 of each query over the loaded database, one request at a time, no ingest running.
async fn queries(options: &Options, url: &str, traces: i64) -> Result<Value, BoxError> {
    let server = Server::start(options, url, &[]).await?;
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.api);
    let trace = move |i: usize| trace_id((i as i64 * 104_729) % traces);
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let hour_ago_services = hour_ago.clone();
    let paths: Vec<crate::query::Query> = vec![
        ("GET /query/signals?limit=10", Box::new(|_| "/query/signals?limit=10".to_owned())),
        ("GET /query/signals?limit=100", Box::new(|_| "/query/signals?limit=100".to_owned())),
        ("GET /query/incidents?limit=50", Box::new(|_| "/query/incidents?limit=50&offset=0".to_owned())),
        (
            "GET /query/incidents?severity=high&limit=50",
            Box::new(|_| "/query/incidents?severity=high&limit=50".to_owned()),
        ),
        ("GET /query/traces/{id}", Box::new(move |i| format!("/query/traces/{}", trace(i)))),
        ("GET /query/traces/{id}/tree", Box::new(move |i| format!("/query/traces/{}/tree", trace(i + 7)))),
        (
            "GET /query/signals?trace_id=…",
            Box::new(move |i| format!("/query/signals?trace_id={}", trace(i + 13))),
        ),
        (
            "GET /query/signals?service_name=…&limit=100",
            Box::new(|i| format!("/query/signals?service_name=svc-{}&limit=100", i % 20)),
        ),
        ("GET /query/services (the last 24 h)", Box::new(|_| "/query/services".to_owned())),
        (
            "GET /query/services?start_time=(1 h ago)",
            Box::new(move |_| format!("/query/services?start_time={}", urlencode(&hour_ago_services))),
        ),
        (
            "GET /query/signals?start_time=(1 h ago)&signal_type=log",
            Box::new(move |_| {
                format!("/query/signals?start_time={}&signal_type=log&limit=100", urlencode(&hour_ago))
            }),
        ),
    ];
    let mut latencies = Vec::new();
    for (name, path) in &paths {
        for i in 0..10 {
            http.get(format!("{base}{}", path(i + 1_000_000))).send().await?.bytes().await?;
        }
        let mut samples = Vec::with_capacity(SAMPLES);
        for i in 0..SAMPLES {
            let t0 = Instant::now();
            let response = http.get(format!("{base}{}", path(i))).send().await?;
            let status = response.status();
            response.bytes().await?;
            samples.push(t0.elapsed().as_micros() as u32);
            if !status.is_success() {
                return Err(format!("{name}: {status}").into());
            }
        }
        samples.sort_unstable();
        latencies.push(json!({"query": name, "p50_ms": percentile_ms(&samples, 0.5), "p99_ms": percentile_ms(&samples, 0.99)}));
    }
    // The worker's read, as its text query arrives: planned every time, over every partition.
    let db = connect(url).await?;
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES + 10 {
        let sql =
            format!("SELECT * FROM raw_signals WHERE trace_id = '{}' ORDER BY timestamp", trace(i + 29));
        let t0 = Instant::now();
        db.simple_query(&sql).await?;
        if i >= 10 {
            samples.push(t0.elapsed().as_micros() as u32);
        }
    }
    samples.sort_unstable();
    latencies.push(json!({
        "query": "worker: SELECT * FROM raw_signals WHERE trace_id = … ORDER BY timestamp",
        "p50_ms": percentile_ms(&samples, 0.5),
        "p99_ms": percentile_ms(&samples, 0.99),
    }));
    let total: Value = http.get(format!("{base}/query/signals?limit=10")).send().await?.json().await?;
    server.stop().await?;
    Ok(
        json!({"latencies": latencies, "signals_total_shown": total["total"], "total_exact": total["total_exact"]}),
    )
}

/// The load's trace ids (computed by PostgreSQL): random-looking 32-hex-digit ids, as real
/// trace ids are, so that the trace index grows as it does in production.
pub fn trace_id(trace: i64) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("vol{trace}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

pub async fn measure(options: &Options) -> Result<Value, BoxError> {
    let mut pg = OwnPostgres::init()?;
    pg.start(SETTINGS[0].1)?;
    let own = Options { database_server: pg.server_url(), ..options.clone() };
    let loaded_url = fresh_database(&own, "volume").await?;
    eprintln!("bench: loading {} signals over the last 24 hours", options.volume_rows);
    let mut loaded = load(&loaded_url, options.volume_rows as i64, false, "1d").await?;
    loaded["activity_count_seconds"] = json!(count_activity(&own, &loaded_url).await?);
    eprintln!("bench: loaded {loaded}");
    let traces = options.volume_rows as i64 / SIGNALS_PER_TRACE;
    let mut runs = Vec::new();
    for (index, (name, settings)) in SETTINGS.iter().enumerate() {
        if index > 0 {
            pg.stop()?;
            pg.start(settings)?;
        }
        // A first run after a (re)start is slower (cold caches, new connections): a warm-up
        // on a throwaway database, then empty and loaded alternately, twice each.
        let warm_url = fresh_database(&own, &format!("warmup_{name}")).await?;
        ingest(&own, &warm_url, &format!("bench-volume-warmup-{name}")).await?;
        drop_database(&own, &warm_url).await?;
        let (mut empty, mut full) = (Vec::new(), Vec::new());
        for round in 0..2 {
            let empty_url = fresh_database(&own, &format!("empty_{name}_{round}")).await?;
            empty.push(ingest(&own, &empty_url, &format!("bench-volume-empty-{name}-{round}")).await?);
            drop_database(&own, &empty_url).await?;
            full.push(ingest(&own, &loaded_url, &format!("bench-volume-loaded-{name}-{round}")).await?);
        }
        let mean = |runs: &[Value], key: &str| {
            runs.iter().filter_map(|r| r[key].as_f64()).sum::<f64>() / runs.len() as f64
        };
        let ratio = mean(&full, "spans_per_s") / mean(&empty, "spans_per_s");
        let wal_ratio = mean(&full, "wal_bytes_per_span") / mean(&empty, "wal_bytes_per_span");
        let query = queries(&own, &loaded_url, traces).await?;
        let summary = |runs: &[Value]| {
            json!({
                "spans_per_s": mean(runs, "spans_per_s"),
                "wal_bytes_per_span": mean(runs, "wal_bytes_per_span"),
                "disk_bytes_per_span": mean(runs, "disk_bytes_per_span"),
                "server_cpu_us_per_span": mean(runs, "server_cpu_us_per_span"),
                "runs": runs,
            })
        };
        runs.push(json!({
            "settings": name,
            "postgres_settings": settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "empty": summary(&empty),
            "loaded": summary(&full),
            "ingest_ratio": ratio,
            "wal_ratio": wal_ratio,
            "queries": query,
        }));
    }
    drop_database(&own, &loaded_url).await?;
    drop(pg);
    Ok(json!({"loaded": loaded, "runs": runs}))
}
