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
    let config = prodsentinel::Config::from_args(["bench", "--database-url", url])?;
    let settings = prodsentinel::store::StorageSettings {
        retention: config.retention,
        partition_interval: config.partition_interval,
        exact_total_limit: config.query_exact_total_limit,
    };
    let store = prodsentinel::store::Store::new(&config.database, settings)?;
    let wait = prodsentinel::store::partitions::Turn::Wait;
    store.ensure_partitions(now, wait).await?;
    store.close();
    Ok(())
}

/// A new, migrated database with the partitions around now; returns its URL.
pub async fn fresh_database(options: &Options, purpose: &str) -> Result<String, BoxError> {
    let name = format!("prodsentinel_bench_{purpose}_{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let admin = connect(&format!("{}/postgres", options.database_server)).await?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    let url = format!("{}/{name}", options.database_server);
    let config = prodsentinel::Config::from_args(["bench", "--database-url", url.as_str()])?;
    prodsentinel::store::migrate_database(&config.database, prodsentinel::store::migrate::MIGRATIONS).await?;
    partitions_until(&url, chrono::Utc::now()).await?;
    Ok(url)
}

pub async fn drop_database(options: &Options, url: &str) -> Result<(), BoxError> {
    let name = url.rsplit('/').next().unwrap_or_default();
    let admin = connect(&format!("{}/postgres", options.database_server)).await?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Method {
    Unnest,
    Copy,
}

pub async fn measure(options: &Options) -> Result<Value, BoxError> {
    let url = fresh_database(options, "ceiling").await?;
    let mut methods = Vec::new();
    for method in [Method::Unnest, Method::Copy] {
        let rows = write_for(&url, method, SESSIONS, options.seconds).await?;
        let rate = rows as f64 / options.seconds.as_secs_f64();
        let name = match method {
            Method::Unnest => "INSERT unnest ON CONFLICT",
            Method::Copy => "COPY (text)",
        };
        methods.push(json!({"method": name, "rows": rows, "rows_per_s": rate}));
    }
    drop_database(options, &url).await?;
    let best = methods.iter().filter_map(|m| m["rows_per_s"].as_f64()).fold(0.0, f64::max);
    Ok(json!({
        "sessions": SESSIONS,
        "rows_per_transaction": ROWS_PER_TRANSACTION,
        "methods": methods,
        "best_rows_per_s": best,
    }))
}

/// `sessions` connections writing batches of 1000 rows for `duration`; returns rows committed.
async fn write_for(url: &str, method: Method, sessions: usize, duration: Duration) -> Result<u64, BoxError> {
    let total = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for session in 0..sessions {
        let (url, total) = (url.to_owned(), total.clone());
        tasks.spawn(async move {
            let client = connect(&url).await?;
            let mut n = session as u64 * 1_000_000_000;
            while Instant::now() < deadline {
                match method {
                    Method::Unnest => insert_unnest(&client, n).await?,
                    Method::Copy => copy_text(&client, n).await?,
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

async fn insert_unnest(client: &tokio_postgres::Client, first: u64) -> Result<(), BoxError> {
    let ids: Vec<Uuid> = (0..ROWS_PER_TRANSACTION).map(|_| Uuid::new_v4()).collect();
    let types: Vec<&str> = vec!["log"; ROWS_PER_TRANSACTION];
    let traces: Vec<String> =
        (0..ROWS_PER_TRANSACTION as u64).map(|i| format!("trace-{}", (first + i) / 8)).collect();
    let services: Vec<&str> = vec!["ceiling"; ROWS_PER_TRANSACTION];
    let now = chrono::Utc::now();
    let times = vec![now; ROWS_PER_TRANSACTION];
    let payloads: Vec<Value> = (0..ROWS_PER_TRANSACTION as u64).map(|i| raw_payload(first + i)).collect();
    client
        .execute(
            r#"INSERT INTO raw_signals (id, signal_type, trace_id, service_name, "timestamp", payload)
               SELECT id, signal_type::signaltypeenum, trace_id, service_name, ts, payload
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])
                    AS t(id, signal_type, trace_id, service_name, ts, payload)
               ON CONFLICT (id) DO NOTHING"#,
            &[&ids, &types, &traces, &services, &times, &payloads],
        )
        .await?;
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
    copy_rows(client, "raw_signals (id, signal_type, trace_id, service_name, \"timestamp\", payload)", text)
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
