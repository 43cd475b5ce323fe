//! The insert ceiling at volume (issue 23): PostgreSQL alone, no server in between, 8 sessions
//! writing 1000-span batches (random trace ids, eight spans each; the ceiling's `unnest` insert
//! with `ON CONFLICT`) into an empty database and into one holding `--volume-rows` signals
//! stored over the 24 hours before the spans' time. With daily partitions in row form (the
//! layout before sealing); daily partitions sealed an hour after they end (the default: the
//! day before is sealed, the day written is not); hourly partitions sealed an hour after they
//! end, so that the partition being written holds at most an hour of rows and the row form
//! two (`--scenario daily|daily-sealed|hourly-sealed` for one of them). Beside each, the worker's unfiltered trace read on the loaded database as its text
//! query arrives (planned every time, over every partition and unit), and
//! `/query/traces/{id}`. On a PostgreSQL of the benchmark's own, stock settings.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::ceiling::{
    connect, drop_database, migrated_database, partitions_over, write_for, Method, ROWS_PER_TRANSACTION,
    SESSIONS,
};
use crate::load::percentile_ms;
use crate::pg::OwnPostgres;
use crate::server::Server;
use crate::volume::{load_until, trace_id, SIGNALS_PER_TRACE};
use crate::{BoxError, Options};

struct Layout {
    /// Its name for `--scenario` (all of them when none is given).
    key: &'static str,
    name: &'static str,
    interval: &'static str,
    seal_after: Option<Duration>,
}

const AN_HOUR: Option<Duration> = Some(Duration::from_secs(3600));

const LAYOUTS: [Layout; 3] = [
    Layout { key: "daily", name: "daily partitions, row form", interval: "1d", seal_after: None },
    Layout {
        key: "daily-sealed",
        name: "daily partitions, sealed 1 h after",
        interval: "1d",
        seal_after: AN_HOUR,
    },
    Layout {
        key: "hourly-sealed",
        name: "hourly partitions, sealed 1 h after",
        interval: "1h",
        seal_after: AN_HOUR,
    },
];

const READS: i64 = 300;

/// When the spans are written: 12:30 UTC today, whatever the time of the run, so that the
/// daily partition written holds half a day of the load (twelve and a half hours), and the
/// hourly one half an hour, in every run.
fn written_at() -> DateTime<Utc> {
    let today = Utc::now().date_naive().and_hms_opt(12, 30, 0).unwrap_or_default();
    today.and_utc()
}

/// A migrated database with `interval` partitions around `at`, as a service running then made.
async fn empty_database(
    options: &Options,
    purpose: &str,
    interval: &str,
    at: DateTime<Utc>,
) -> Result<String, BoxError> {
    let url = migrated_database(options, purpose).await?;
    partitions_over(&url, at, at, interval).await?;
    Ok(url)
}

/// `SESSIONS` connections writing 1000-span batches stamped `at` for `duration`: rows per second.
async fn write_spans(url: &str, duration: Duration, at: DateTime<Utc>) -> Result<f64, BoxError> {
    Ok(write_for(url, Method::RandomSpans { at }, SESSIONS, duration).await? as f64 / duration.as_secs_f64())
}

/// The traces read: spread over the loaded day, so that most are sealed in the sealed layout.
fn sampled(traces: i64) -> impl Iterator<Item = String> {
    (0..READS + 10).map(move |i| trace_id(i * (traces / (READS + 10)) + 7))
}

/// The worker's read of the sampled traces as text queries (planned each time), and
/// `/query/traces/{id}` of the same through a server on the database.
async fn trace_reads(options: &Options, url: &str, interval: &str, traces: i64) -> Result<Value, BoxError> {
    let db = connect(url).await?;
    let mut worker = Vec::new();
    for (i, trace) in sampled(traces).enumerate() {
        let sql = format!("SELECT * FROM raw_signals WHERE trace_id = '{trace}' ORDER BY timestamp");
        let t0 = Instant::now();
        let messages = db.simple_query(&sql).await?;
        let elapsed = t0.elapsed();
        let rows =
            messages.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))).count();
        if rows != SIGNALS_PER_TRACE as usize {
            return Err(format!("trace {trace}: {rows} rows, not {SIGNALS_PER_TRACE}").into());
        }
        if i >= 10 {
            worker.push(elapsed.as_micros() as u32);
        }
    }
    let server =
        Server::start(options, url, &[("PARTITION_INTERVAL", interval), ("SEAL_AFTER", "0")]).await?;
    let http = reqwest::Client::new();
    let mut api = Vec::new();
    for (i, trace) in sampled(traces).enumerate() {
        let t0 = Instant::now();
        let answer = http.get(format!("http://{}/query/traces/{trace}", server.api)).send().await?;
        answer.error_for_status()?.bytes().await?;
        if i >= 10 {
            api.push(t0.elapsed().as_micros() as u32);
        }
    }
    server.stop().await?;
    worker.sort_unstable();
    api.sort_unstable();
    let figures = |samples: &[u32]| json!({"p50_ms": percentile_ms(samples, 0.5), "p99_ms": percentile_ms(samples, 0.99), "samples": samples.len()});
    Ok(json!({"worker": figures(&worker), "api": figures(&api)}))
}

/// What the loaded database looks like to a writer and a reader.
async fn shape(url: &str, at: DateTime<Utc>) -> Result<Value, BoxError> {
    let db = connect(url).await?;
    let row = db
        .query_one(
            r#"SELECT (SELECT count(*) FROM pg_partition_tree('raw_signal_rows') WHERE isleaf)::int8,
                      (SELECT count(*) FROM raw_signal_units WHERE attached)::int8,
                      (SELECT count(*) FROM raw_signal_rows)::int8,
                      (SELECT coalesce(sum(signals), 0) FROM raw_signal_units WHERE attached)::int8,
                      (SELECT count(*) FROM raw_signal_rows
                       WHERE "timestamp" >= (SELECT max(starts) FROM raw_signal_partitions WHERE starts <= $1))::int8,
                      (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('raw_signal_rows'))::int8,
                      (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('raw_signal_blocks'))::int8
                      + (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('raw_signal_block_traces'))::int8"#,
            &[&at],
        )
        .await?;
    Ok(json!({
        "row_partitions": row.get::<_, i64>(0),
        "sealed_units": row.get::<_, i64>(1),
        "signals_in_rows": row.get::<_, i64>(2),
        "signals_sealed": row.get::<_, i64>(3),
        "signals_in_partition_written": row.get::<_, i64>(4),
        "row_bytes": row.get::<_, i64>(5),
        "sealed_bytes": row.get::<_, i64>(6),
    }))
}

async fn layout(options: &Options, layout: &Layout) -> Result<Value, BoxError> {
    let rows = options.volume_rows as i64;
    let purpose = format!("ceilvol_{}", layout.key.replace('-', "_"));
    let loaded_url = migrated_database(options, &format!("{purpose}_loaded")).await?;
    eprintln!("bench: ceiling at volume, {}: loading {rows} signals", layout.name);
    let at = written_at();
    let loaded = load_until(&loaded_url, rows, false, layout.interval, at).await?;
    let mut sealing = Value::Null;
    if let Some(after) = layout.seal_after {
        let sealer = crate::sealed::store(&loaded_url, layout.interval, after, Default::default())?;
        let started = Instant::now();
        crate::sealed::seal_all(&sealer, at, 1.0).await?;
        sealer.close();
        let db = connect(&loaded_url).await?;
        for statement in
            ["VACUUM (ANALYZE) raw_signal_rows", "VACUUM (ANALYZE) raw_signal_blocks", "CHECKPOINT"]
        {
            db.batch_execute(statement).await?;
        }
        sealing = json!({"seconds": started.elapsed().as_secs_f64()});
        eprintln!("bench: sealed in {:.0} s", started.elapsed().as_secs_f64());
    }
    let shape = shape(&loaded_url, at).await?;
    let reads = trace_reads(options, &loaded_url, layout.interval, rows / SIGNALS_PER_TRACE).await?;
    eprintln!("bench: {shape} worker read {reads}");
    // A first write after loading runs colder than the rest: a warm-up on a throwaway database,
    // then empty and loaded alternately, twice each.
    let warm = empty_database(options, &format!("{purpose}_warm"), layout.interval, at).await?;
    write_spans(&warm, options.seconds / 3, at).await?;
    drop_database(options, &warm).await?;
    let (mut empty, mut full) = (Vec::new(), Vec::new());
    for round in 0..2 {
        let url = empty_database(options, &format!("{purpose}_empty{round}"), layout.interval, at).await?;
        empty.push(write_spans(&url, options.seconds, at).await?);
        drop_database(options, &url).await?;
        full.push(write_spans(&loaded_url, options.seconds, at).await?);
        eprintln!("bench: round {round}: empty {:.0} rows/s, loaded {:.0} rows/s", empty[round], full[round]);
    }
    drop_database(options, &loaded_url).await?;
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    Ok(json!({
        "layout": layout.name,
        "partition_interval": layout.interval,
        "written_at": at.to_rfc3339(),
        "seal_after_seconds": layout.seal_after.map(|d| d.as_secs()),
        "loaded": loaded,
        "sealing": sealing,
        "shape": shape,
        "trace_reads": reads,
        "empty_rows_per_s": empty,
        "loaded_rows_per_s": full,
        "ratio": mean(&full) / mean(&empty),
    }))
}

pub async fn measure(options: &Options) -> Result<Value, BoxError> {
    let mut pg = OwnPostgres::init()?;
    pg.start(&[])?;
    let own = Options { database_server: pg.server_url(), ..options.clone() };
    let mut layouts = Vec::new();
    let chosen =
        |layout: &&Layout| options.scenarios.is_empty() || options.scenarios.iter().any(|k| k == layout.key);
    for each in LAYOUTS.iter().filter(chosen) {
        layouts.push(layout(&own, each).await?);
    }
    drop(pg);
    let result =
        json!({"sessions": SESSIONS, "rows_per_transaction": ROWS_PER_TRANSACTION, "layouts": layouts});
    eprintln!("bench: ceiling at volume {result}");
    Ok(result)
}
