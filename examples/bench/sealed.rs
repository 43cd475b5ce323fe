//! The sealed phase (issue 23): the service's own sealing, measured on a PostgreSQL of the
//! benchmark's own. The OTLP/gRPC exports (spans, then logs and gauge points) fill one-minute
//! partitions through the release server (sealing off), so that a minute later they can be
//! sealed: bytes per stored signal before and after, per type; WAL written by sealing; signals
//! sealed per second (one PostgreSQL backend does it: per core); the worker's trace read and
//! `/query/traces/{id}` on the sealed traces; then span loads in alternating windows, with and
//! without a seal at the service's pace beside them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use serde_json::{json, Value};

use prodsentinel::store::citus::Layout;

use crate::ceiling::{connect, drop_database, migrated_database};
use crate::load::{grpc_logs, grpc_points, grpc_spans, percentile_ms};
use crate::pg::OwnPostgres;
use crate::server::Server;
use crate::{BoxError, Options};

/// The server's settings: minute partitions (so that the loads can be sealed a minute later),
/// partitions made ahead every few seconds, no sealing by the server itself.
pub const SERVER_ENV: [(&str, &str); 3] =
    [("PARTITION_INTERVAL", "1m"), ("RETENTION_CHECK_SECONDS", "5"), ("SEAL_AFTER", "0")];

const READS: usize = 300;

/// The ingest windows of part D, in order: with a seal beside (`true`) or without.
const WINDOWS: [bool; 6] = [false, true, true, false, false, true];

/// A store of the library sealing as the service would with these settings, on one node or a
/// Citus cluster.
pub fn store(
    url: &str,
    interval: &str,
    seal_after: Duration,
    layout: Layout,
) -> Result<prodsentinel::store::Store, BoxError> {
    let config =
        prodsentinel::Config::from_args(["bench", "--database-url", url, "--partition-interval", interval])?;
    let mut lifecycle = config.lifecycle;
    lifecycle.seal_after = Some(seal_after);
    let settings = prodsentinel::store::StorageSettings {
        lifecycle,
        exact_total_limit: config.query_exact_total_limit,
        layout,
    };
    Ok(prodsentinel::store::Store::new(&config.database, None, settings)?)
}

/// Seals everything due at `now`, again after a lock timeout (autovacuum analysing a partition
/// just filled holds the lock a seal's first step needs: the service retries on its next pass).
pub async fn seal_all(
    sealer: &prodsentinel::store::Store,
    now: DateTime<Utc>,
    share: f64,
) -> Result<(), BoxError> {
    for _ in 0..120 {
        match sealer
            .seal(now, prodsentinel::store::partitions::Turn::Wait, Duration::from_secs(3600), share)
            .await
        {
            Ok(Some(pass)) if pass.unfinished.is_none() => return Ok(()),
            Ok(_) => {}
            // The service retries both on its next pass.
            Err(prodsentinel::store::StoreError::Query(e))
                if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
                    || e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                eprintln!("bench: sealing retries: {}", prodsentinel::error::error_chain(&e));
            }
            Err(other) => return Err(prodsentinel::error::error_chain(&other).into()),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err("sealing never got its locks".into())
}

/// Signals sealed so far, from the units' records.
async fn sealed_so_far(db: &tokio_postgres::Client) -> Result<i64, BoxError> {
    Ok(db
        .query_one("SELECT coalesce(sum(signals), 0)::int8 FROM raw_signal_units WHERE attached", &[])
        .await?
        .get(0))
}

/// Waits until every partition holding a signal has ended, then vacuums them as autovacuum
/// would have long before a partition a day old is sealed (a seal waiting behind autovacuum's
/// analyse of a partition just filled is retried; here it would only blur the timing).
pub async fn after_the_last_range(db: &tokio_postgres::Client) -> Result<DateTime<Utc>, BoxError> {
    let newest: DateTime<Utc> =
        db.query_one(r#"SELECT max("timestamp") FROM raw_signal_rows"#, &[]).await?.get(0);
    let ready = newest.duration_trunc(chrono::Duration::minutes(1))?
        + chrono::Duration::minutes(1)
        + chrono::Duration::seconds(2);
    if let Ok(wait) = (ready - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let now = Utc::now();
    db.batch_execute("VACUUM (ANALYZE) raw_signal_rows").await?;
    Ok(now)
}

/// Per signal type: (signals, bytes) of the row form's type partitions (on Citus, on every node).
pub async fn row_form(
    db: &tokio_postgres::Client,
    layout: Layout,
) -> Result<BTreeMap<String, (i64, i64)>, BoxError> {
    let mut found = BTreeMap::new();
    for kind in ["trace", "log", "metric"] {
        let bytes: i64 = db
            .query_one(
                &format!(
                    "SELECT coalesce(sum({}(c.oid)), 0)::int8 FROM pg_class c
                     WHERE c.relkind = 'r' AND c.relname LIKE 'raw_signals_p%' AND c.relname LIKE '%\\_' || $1",
                    layout.total_size_function()
                ),
                &[&kind],
            )
            .await?
            .get(0);
        let signals: i64 = db
            .query_one(
                "SELECT count(*) FROM raw_signal_rows WHERE signal_type = $1::text::signaltypeenum",
                &[&kind],
            )
            .await?
            .get(0);
        found.insert(kind.to_owned(), (signals, bytes));
    }
    Ok(found)
}

/// Per signal type: (signals, bytes) of the sealed units (blocks, their trace index, TOAST; on
/// Citus, their columnar tables and trace index on every node).
pub async fn sealed_form(
    db: &tokio_postgres::Client,
    layout: Layout,
) -> Result<BTreeMap<String, (i64, i64)>, BoxError> {
    let bytes = match layout {
        Layout::Single => {
            "pg_total_relation_size(('raw_signal_blocks_' || unit)::regclass)
             + pg_total_relation_size(('raw_signal_block_traces_' || unit)::regclass)"
        }
        Layout::Distributed { .. } => "citus_total_relation_size(('raw_signal_columnar_' || unit)::regclass)",
    };
    let sql = format!(
        "SELECT signal_type::text, sum(signals)::int8, sum({bytes})::int8
         FROM raw_signal_units WHERE attached GROUP BY 1"
    );
    let rows = db.query(&sql, &[]).await?;
    Ok(rows.iter().map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2)))).collect())
}

async fn wal_lsn(db: &tokio_postgres::Client) -> Result<String, BoxError> {
    Ok(db.query_one("SELECT pg_current_wal_lsn()::text", &[]).await?.get(0))
}

async fn wal_since(db: &tokio_postgres::Client, lsn: &str) -> Result<f64, BoxError> {
    let sql = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8";
    Ok(db.query_one(sql, &[&lsn]).await?.get(0))
}

pub fn per_signal(form: &BTreeMap<String, (i64, i64)>) -> Value {
    form.iter()
        .map(|(kind, (signals, bytes))| {
            (kind.clone(), json!({"signals": signals, "bytes": bytes, "bytes_per_signal": *bytes as f64 / (*signals).max(1) as f64}))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub async fn measure(options: &Options) -> Result<Value, BoxError> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut pg = OwnPostgres::init()?;
    pg.start(&[])?;
    let own = Options { database_server: pg.server_url(), ..options.clone() };
    let url = migrated_database(&own, "sealed").await?;
    let server = Server::start(&own, &url, &SERVER_ENV).await?;
    let db = connect(&url).await?;
    let sealer = store(&url, "1m", Duration::from_secs(1), Layout::Single)?;

    // A: the exports, sealing off.
    let (spans, took) = grpc_spans(server.grpc, 8, options.seconds, "bench-sealed").await?;
    let ingest = spans.acked as f64 / took.as_secs_f64();
    eprintln!("bench: sealed: {} spans at {ingest:.0}/s", spans.acked);
    let half = options.seconds / 2;
    grpc_logs(server.grpc, 4, half, "bench-sealed").await?;
    grpc_points(server.grpc, 4, half, "bench-sealed").await?;
    let before = row_form(&db, Layout::Single).await?;

    // B: seal it all, alone.
    let now = after_the_last_range(&db).await?;
    db.batch_execute("CHECKPOINT").await?;
    let lsn = wal_lsn(&db).await?;
    let started = Instant::now();
    let already = sealed_so_far(&db).await?;
    seal_all(&sealer, now, 1.0).await?;
    let seal_seconds = started.elapsed().as_secs_f64();
    let sealed_signals = sealed_so_far(&db).await? - already;
    let wal = wal_since(&db, &lsn).await?;
    let seal_rate = sealed_signals as f64 / seal_seconds;
    let after = sealed_form(&db, Layout::Single).await?;
    eprintln!("bench: sealed {sealed_signals} signals in {seal_seconds:.1}s ({seal_rate:.0}/s)");

    // C: the worker's read and the API's on sealed traces.
    let traces: Vec<String> = db
        .query(
            "SELECT DISTINCT t.trace_id FROM raw_signal_block_traces t JOIN raw_signal_units u USING (unit)
             WHERE u.signal_type = 'trace' ORDER BY 1 LIMIT $1",
            &[&(READS as i64 * 20)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .step_by(20)
        .collect();
    let mut worker = Vec::new();
    for trace in &traces {
        let t0 = Instant::now();
        let rows =
            db.query(r#"SELECT * FROM raw_signals WHERE trace_id = $1 ORDER BY timestamp"#, &[trace]).await?;
        worker.push(t0.elapsed().as_micros() as u32);
        assert!(!rows.is_empty(), "sealed trace {trace} read");
    }
    let http = reqwest::Client::new();
    let mut api = Vec::new();
    for trace in &traces {
        let t0 = Instant::now();
        let answer = http.get(format!("http://{}/query/traces/{trace}", server.api)).send().await?;
        answer.error_for_status()?.bytes().await?;
        api.push(t0.elapsed().as_micros() as u32);
    }
    worker.sort_unstable();
    api.sort_unstable();

    // D: ingest with and without a seal running beside it, in alternating windows (A B B A A
    // B: checkpoints, autovacuum and the table's growth weigh on both alike). Before each
    // window with a seal, what the windows before wrote becomes due; the seal runs at the
    // service's pace, and the next window starts once it has finished.
    let mut alone = Vec::new();
    let mut beside = Vec::new();
    let mut sealed_beside = 0;
    for (window, with_seal) in WINDOWS.iter().enumerate() {
        let service = format!("bench-sealed-window-{window}");
        if !with_seal {
            let (spans, took) = grpc_spans(server.grpc, 8, options.seconds, &service).await?;
            alone.push(spans.acked as f64 / took.as_secs_f64());
            continue;
        }
        let now = after_the_last_range(&db).await?;
        let already = sealed_so_far(&db).await?;
        let sealing = {
            let sealer = sealer.clone();
            let share = prodsentinel::store::sealing::SEAL_SHARE;
            tokio::spawn(async move { seal_all(&sealer, now, share).await.map_err(|e| e.to_string()) })
        };
        let (spans, took) = grpc_spans(server.grpc, 8, options.seconds, &service).await?;
        if sealing.is_finished() {
            eprintln!("bench: window {window}: the seal ended before the load did");
        }
        beside.push(spans.acked as f64 / took.as_secs_f64());
        sealing.await??;
        sealed_beside += sealed_so_far(&db).await? - already;
    }
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    eprintln!("bench: alone {alone:?}, beside a seal {beside:?}");
    server.stop().await?;
    drop(db);
    drop_database(&own, &url).await?;
    drop(pg);

    let bytes = |form: &BTreeMap<String, (i64, i64)>, kind: &str| {
        form.get(kind).map_or(0.0, |(signals, bytes)| *bytes as f64 / (*signals).max(1) as f64)
    };
    let result = json!({
        "cores": cores,
        "ingest_spans_per_s": ingest,
        "row_form": per_signal(&before),
        "sealed": per_signal(&after),
        "span_bytes_before": bytes(&before, "trace"),
        "span_bytes_after": bytes(&after, "trace"),
        "wal_bytes_per_signal": wal / sealed_signals.max(1) as f64,
        "sealed_signals": sealed_signals,
        "seal_seconds": seal_seconds,
        "seal_signals_per_s_per_core": seal_rate,
        "ingest_spans_per_s_per_core": ingest / cores as f64,
        "seal_to_ingest_per_core": seal_rate / (ingest / cores as f64),
        "worker_trace_read_ms": {"p50": percentile_ms(&worker, 0.5), "p99": percentile_ms(&worker, 0.99), "samples": worker.len()},
        "api_trace_ms": {"p50": percentile_ms(&api, 0.5), "p99": percentile_ms(&api, 0.99), "samples": api.len()},
        "windows": WINDOWS,
        "ingest_without_seal_spans_per_s": alone,
        "ingest_beside_seal_spans_per_s": beside,
        "ingest_ratio_beside_seal": mean(&beside) / mean(&alone),
        "seal_beside_signals": sealed_beside,
    });
    eprintln!("bench: sealed {result}");
    Ok(result)
}
