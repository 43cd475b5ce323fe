//! The ceiling: rows written straight to PostgreSQL, no server, by the fastest batched methods.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::workload::raw_payload;
use crate::{BoxError, Options};

pub const SESSIONS: usize = 8;
pub const ROWS_PER_TRANSACTION: usize = 1000;

pub async fn connect(url: &str) -> Result<tokio_postgres::Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

pub async fn server_version(options: &Options) -> Result<String, BoxError> {
    let client = connect(&format!("{}/postgres", options.database_server)).await?;
    Ok(client.query_one("SHOW server_version", &[]).await?.get(0))
}

/// Creates the partitions the service would have made up to `now` (its start-up does the same).
pub async fn partitions_until(url: &str, now: chrono::DateTime<chrono::Utc>) -> Result<(), BoxError> {
    partitions_over(url, now, now, "1d").await
}

/// The partitions of `interval` (`PARTITION_INTERVAL`) a service running from `since` until
/// `until` would have made: a pass every interval, each making the current one and those ahead.
pub async fn partitions_over(
    url: &str,
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    interval: &str,
) -> Result<(), BoxError> {
    let config =
        prodsentinel::Config::from_args(["bench", "--database-url", url, "--partition-interval", interval])?;
    let step = chrono::Duration::from_std(config.lifecycle.partition_interval.length())?;
    let settings = prodsentinel::store::StorageSettings {
        lifecycle: config.lifecycle,
        exact_total_limit: config.query_exact_total_limit,
        layout: Default::default(),
    };
    let store = prodsentinel::store::Store::new(&config.database, None, settings)?;
    let wait = prodsentinel::store::partitions::Turn::Wait;
    let mut at = since;
    loop {
        store.ensure_partitions(at.min(until), wait).await?;
        if at >= until {
            break;
        }
        at += step;
    }
    store.close();
    Ok(())
}

/// A new, migrated database with the partitions around now; returns its URL.
pub async fn fresh_database(options: &Options, purpose: &str) -> Result<String, BoxError> {
    let url = migrated_database(options, purpose).await?;
    partitions_until(&url, chrono::Utc::now()).await?;
    Ok(url)
}

/// A new, migrated database without partitions: the server makes them at start-up, on the
/// grid of its own `PARTITION_INTERVAL` (day partitions made here would hold the next days).
pub async fn migrated_database(options: &Options, purpose: &str) -> Result<String, BoxError> {
    let name = format!("prodsentinel_bench_{purpose}_{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let admin = connect(&format!("{}/postgres", options.database_server)).await?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    let url = format!("{}/{name}", options.database_server);
    let config = prodsentinel::Config::from_args(["bench", "--database-url", url.as_str()])?;
    // An older server under test (`--migrations N`) gets the schema it knows, no newer.
    let all = prodsentinel::store::migrate::MIGRATIONS;
    let migrations = &all[..options.migrations.unwrap_or(all.len()).min(all.len())];
    prodsentinel::store::migrate_database(&config.database, migrations).await?;
    Ok(url)
}

pub async fn drop_database(options: &Options, url: &str) -> Result<(), BoxError> {
    let name = url.rsplit('/').next().unwrap_or_default();
    let admin = connect(&format!("{}/postgres", options.database_server)).await?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    Ok(())
}

/// Ways to write a batch of signals. The first three keep idempotency (`ON CONFLICT` on the
/// key) and so are candidates for the service's write; text COPY has no conflict handling and is
/// the raw upper bound.
#[derive(Clone, Copy, Debug)]
pub enum Method {
    /// `unnest` of array parameters, payloads sent as `jsonb[]` (binary: the JSON text).
    Unnest,
    /// The same, payloads sent as `text[]` and cast to jsonb in the statement (the service's).
    UnnestText,
    /// Binary COPY into a temporary staging table, then `INSERT … SELECT … ON CONFLICT`.
    StagedCopy,
    /// `unnest` into an unpartitioned copy of the table, payload column `jsonb` …
    UnnestJsonbPlain,
    /// … and `json` (stored as text, not parsed into jsonb): what parsing into jsonb costs.
    UnnestJsonColumn,
    Copy,
    /// Like `UnnestText`, spans stamped `at` of random trace ids, eight to a trace: the trace
    /// index takes its keys at random places, as the service's does (the ceiling at volume).
    RandomSpans {
        at: chrono::DateTime<chrono::Utc>,
    },
}

pub async fn measure(options: &Options) -> Result<Value, BoxError> {
    let url = fresh_database(options, "ceiling").await?;
    let mut methods = Vec::new();
    connect(&url)
        .await?
        .batch_execute(
            "CREATE TABLE ceiling_json (LIKE raw_signal_rows INCLUDING DEFAULTS);
             ALTER TABLE ceiling_json ALTER COLUMN payload TYPE json;
             ALTER TABLE ceiling_json ADD PRIMARY KEY (\"timestamp\", id, signal_type);
             CREATE TABLE ceiling_jsonb (LIKE raw_signal_rows INCLUDING DEFAULTS);
             ALTER TABLE ceiling_jsonb ADD PRIMARY KEY (\"timestamp\", id, signal_type);",
        )
        .await?;
    let all = [
        Method::Unnest,
        Method::UnnestText,
        Method::StagedCopy,
        Method::UnnestJsonbPlain,
        Method::UnnestJsonColumn,
        Method::Copy,
    ];
    for method in all {
        let rows = write_for(&url, method, SESSIONS, options.seconds).await?;
        let rate = rows as f64 / options.seconds.as_secs_f64();
        let name = match method {
            Method::Unnest => "INSERT unnest ON CONFLICT",
            Method::UnnestText => "INSERT unnest text->jsonb",
            Method::StagedCopy => "COPY binary staging+INSERT",
            Method::UnnestJsonbPlain => "INSERT unnest, 1 table, jsonb",
            Method::UnnestJsonColumn => "INSERT unnest, 1 table, json",
            Method::Copy => "COPY (text)",
            Method::RandomSpans { .. } => "INSERT unnest, spans of random traces",
        };
        methods.push(json!({"method": name, "rows": rows, "rows_per_s": rate, "idempotent": !matches!(method, Method::Copy)}));
    }
    drop_database(options, &url).await?;
    // The ceiling is the best write into the partitioned table itself.
    let best = methods
        .iter()
        .filter(|m| !m["method"].as_str().unwrap_or_default().contains("1 table"))
        .filter_map(|m| m["rows_per_s"].as_f64())
        .fold(0.0, f64::max);
    Ok(json!({
        "sessions": SESSIONS,
        "rows_per_transaction": ROWS_PER_TRANSACTION,
        "methods": methods,
        "best_rows_per_s": best,
    }))
}

/// `sessions` connections writing batches of 1000 rows for `duration`; returns rows committed.
pub async fn write_for(
    url: &str,
    method: Method,
    sessions: usize,
    duration: Duration,
) -> Result<u64, BoxError> {
    let total = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for session in 0..sessions {
        let (url, total) = (url.to_owned(), total.clone());
        tasks.spawn(async move {
            let mut client = connect(&url).await?;
            if matches!(method, Method::StagedCopy) {
                client
                    .batch_execute(
                        r#"CREATE TEMP TABLE staging (id uuid, signal_type text, trace_id text, service_name text,
                                                      "timestamp" timestamptz, payload jsonb) ON COMMIT DELETE ROWS"#,
                    )
                    .await?;
            }
            let mut n = session as u64 * 1_000_000_000;
            while Instant::now() < deadline {
                match method {
                    Method::Unnest => insert_unnest(&client, n, "raw_signal_rows", false).await?,
                    Method::UnnestText => insert_unnest(&client, n, "raw_signal_rows", true).await?,
                    Method::UnnestJsonbPlain => insert_unnest(&client, n, "ceiling_jsonb", true).await?,
                    Method::UnnestJsonColumn => insert_unnest(&client, n, "ceiling_json", true).await?,
                    Method::StagedCopy => staged_copy(&mut client, n).await?,
                    Method::Copy => copy_text(&client, n).await?,
                    Method::RandomSpans { at } => insert_spans(&client, n, at).await?,
                }
                n += ROWS_PER_TRANSACTION as u64;
                total.fetch_add(ROWS_PER_TRANSACTION as u64, Ordering::Relaxed);
            }
            Ok::<(), BoxError>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(total.load(Ordering::Relaxed))
}

async fn insert_unnest(
    client: &tokio_postgres::Client,
    first: u64,
    table: &str,
    as_text: bool,
) -> Result<(), BoxError> {
    let ids: Vec<Uuid> = (0..ROWS_PER_TRANSACTION).map(|_| Uuid::new_v4()).collect();
    let types: Vec<&str> = vec!["log"; ROWS_PER_TRANSACTION];
    let traces: Vec<String> =
        (0..ROWS_PER_TRANSACTION as u64).map(|i| format!("trace-{}", (first + i) / 8)).collect();
    let services: Vec<&str> = vec!["ceiling"; ROWS_PER_TRANSACTION];
    let now = chrono::Utc::now();
    let times = vec![now; ROWS_PER_TRANSACTION];
    let payloads: Vec<Value> = (0..ROWS_PER_TRANSACTION as u64).map(|i| raw_payload(first + i)).collect();
    let texts: Vec<String> = payloads.iter().map(Value::to_string).collect();
    let (input, payload): (&str, &(dyn tokio_postgres::types::ToSql + Sync)) =
        if as_text { ("$6::text[]", &texts) } else { ("$6::jsonb[]", &payloads) };
    let cast = if table == "ceiling_json" { "json" } else { "jsonb" };
    client
        .execute(
            &format!(
                r#"INSERT INTO {table} (id, signal_type, trace_id, service_name, "timestamp", payload)
                   SELECT id, signal_type::signaltypeenum, trace_id, service_name, ts, payload::{cast}
                   FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], {input})
                        AS t(id, signal_type, trace_id, service_name, ts, payload)
                   ON CONFLICT ("timestamp", id, signal_type) DO NOTHING"#
            ),
            &[&ids, &types, &traces, &services, &times, payload],
        )
        .await?;
    Ok(())
}

/// 1000 spans stamped `at`, of 125 random traces, through the `unnest` insert.
async fn insert_spans(
    client: &tokio_postgres::Client,
    first: u64,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), BoxError> {
    const SPANS_PER_TRACE: usize = 8;
    let ids: Vec<Uuid> = (0..ROWS_PER_TRANSACTION).map(|_| Uuid::new_v4()).collect();
    let traces: Vec<String> = (0..ROWS_PER_TRANSACTION / SPANS_PER_TRACE)
        .flat_map(|_| std::iter::repeat_n(Uuid::new_v4().simple().to_string(), SPANS_PER_TRACE))
        .collect();
    let services: Vec<String> =
        (0..ROWS_PER_TRANSACTION as u64).map(|i| format!("svc-{}", (first + i) % 20)).collect();
    let times = vec![at; ROWS_PER_TRANSACTION];
    let payloads: Vec<String> =
        (0..ROWS_PER_TRANSACTION as u64).map(|i| raw_payload(first + i).to_string()).collect();
    client
        .execute(
            r#"INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload)
               SELECT id, 'trace', trace_id, service_name, ts, payload::jsonb
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
                    AS t(id, trace_id, service_name, ts, payload)
               ON CONFLICT ("timestamp", id, signal_type) DO NOTHING"#,
            &[&ids, &traces, &services, &times, &payloads],
        )
        .await?;
    Ok(())
}

/// Binary COPY of 1000 rows into the session's staging table, then one idempotent insert.
async fn staged_copy(client: &mut tokio_postgres::Client, first: u64) -> Result<(), BoxError> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{Json, Type};
    let tx = client.transaction().await?;
    let sink = tx
        .copy_in(r#"COPY staging (id, signal_type, trace_id, service_name, "timestamp", payload) FROM STDIN BINARY"#)
        .await?;
    let types = [Type::UUID, Type::TEXT, Type::TEXT, Type::TEXT, Type::TIMESTAMPTZ, Type::JSONB];
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures_util::pin_mut!(writer);
    let now = chrono::Utc::now();
    for i in first..first + ROWS_PER_TRANSACTION as u64 {
        let (id, trace, payload) = (Uuid::new_v4(), format!("trace-{}", i / 8), Json(raw_payload(i)));
        writer.as_mut().write(&[&id, &"log", &trace, &"ceiling", &now, &payload]).await?;
    }
    writer.finish().await?;
    tx.execute(
        r#"INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload)
           SELECT id, signal_type::signaltypeenum, trace_id, service_name, "timestamp", payload FROM staging
           ON CONFLICT ("timestamp", id, signal_type) DO NOTHING"#,
        &[],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One COPY of 1000 rows (text format: tab-separated, backslashes doubled).
pub async fn copy_text(client: &tokio_postgres::Client, first: u64) -> Result<(), BoxError> {
    let now = chrono::Utc::now().to_rfc3339();
    let mut text = String::with_capacity(ROWS_PER_TRANSACTION * 600);
    for i in first..first + ROWS_PER_TRANSACTION as u64 {
        let payload = raw_payload(i).to_string().replace('\\', "\\\\");
        text.push_str(&format!("{}\tlog\ttrace-{}\tceiling\t{now}\t{payload}\n", Uuid::new_v4(), i / 8));
    }
    copy_rows(
        client,
        "raw_signal_rows (id, signal_type, trace_id, service_name, \"timestamp\", payload)",
        text,
    )
    .await
}

/// `COPY <target> FROM STDIN` with `text` as the data.
pub async fn copy_rows(client: &tokio_postgres::Client, target: &str, text: String) -> Result<(), BoxError> {
    let sink = client.copy_in(&format!("COPY {target} FROM STDIN")).await?;
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from(text)).await?;
    sink.finish().await?;
    Ok(())
}
