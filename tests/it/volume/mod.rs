//! Volume (issue 12): time partitions created by the service, retention that drops whole
//! partitions, idempotency across partitions, the lifecycle of incidents, the migration of an
//! unpartitioned table, and totals that never count every row.

mod activity;
mod budget;
mod evidence;
mod idempotency;
mod lifecycle;
mod migration;
mod partitions;
mod retention;
mod sealing;
mod shared;
mod totals;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use tokio_postgres::Client;

use crate::helpers::log_body;

/// A legacy log body stamped `at`.
pub fn log_at(trace_id: &str, level: &str, at: DateTime<Utc>) -> Value {
    let mut body = log_body(trace_id, level, &format!("{level} at {at}"));
    body["timestamp"] = Value::String(at.to_rfc3339());
    body
}

/// Every signal type kept a day.
pub const A_DAY: [&str; 6] =
    ["--retention-logs", "1d", "--retention-traces", "1d", "--retention-metrics", "1d"];

pub fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// How many claims of `trace` point at an incident of it (where the claim says it lives):
/// 1 when the trace's claim and incident agree.
pub async fn claims_pointing_at_an_incident(db: &Client, trace: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM incident_traces c JOIN incidents i
           ON i.trace_id = c.trace_id AND i.trace_key = c.trace_id AND i.kept = c.kept AND i.detected_at = c.detected_at
         WHERE c.trace_id = $1",
        &[&trace],
    )
    .await
    .unwrap()
    .get(0)
}

/// The table each signal of `trace_id` is stored in (in row form), oldest signal first.
pub async fn placed(db: &Client, trace_id: &str) -> Vec<String> {
    db.query(
        &format!(
            r#"SELECT {} FROM raw_signal_rows WHERE trace_id = $1 ORDER BY "timestamp", id"#,
            crate::helpers::row_table()
        ),
        &[&trace_id],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The worker's read (docs/contracts.md §1): every column of every row of the trace, as JSON.
pub async fn worker_read(db: &Client, trace: &str) -> Vec<Value> {
    db.query(
        r#"SELECT to_jsonb(r) FROM (SELECT * FROM raw_signals WHERE trace_id = $1 ORDER BY "timestamp", id) r"#,
        &[&trace],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// The name of the partition holding `signal_type` for the day of `at` (the default interval).
pub fn day_partition(at: DateTime<Utc>, signal_type: &str) -> String {
    // The same name on Citus, where it hangs from raw_signal_rows itself (store/citus.rs).
    format!("raw_signals_p{}_{signal_type}", at.format("%Y%m%d"))
}

/// Whether a table of that name exists.
pub async fn exists(db: &Client, table: &str) -> bool {
    db.query_one("SELECT to_regclass(quote_ident($1)) IS NOT NULL", &[&table]).await.unwrap().get(0)
}

/// Whether a type's partition has expired: gone, or replaced by one holding only its evidence
/// (its range keeps a partition for the type).
pub async fn expired_away(db: &Client, table: &str) -> bool {
    let replaced: i64 = db
        .query_one("SELECT count(*) FROM raw_signal_evidence WHERE name = $1", &[&table])
        .await
        .unwrap()
        .get(0);
    !exists(db, table).await || replaced == 1
}

/// A batch holds `table` for two seconds and a change of it (the row expiry's whole lock)
/// queues behind the batch; returns once the change waits, with the task that ends the batch
/// and the change's: await both after the step under test.
pub async fn a_change_queued_behind_a_batch(
    url: &str,
    db: &Client,
    table: &'static str,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let batch = crate::helpers::connect(url).await;
    batch.batch_execute(&format!("BEGIN; LOCK TABLE {table} IN ROW EXCLUSIVE MODE")).await.unwrap();
    let change = {
        let url = url.to_owned();
        tokio::spawn(async move {
            let mut client = crate::helpers::connect(&url).await;
            let tx = client.transaction().await.unwrap();
            tx.batch_execute(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).await.unwrap();
            tx.commit().await.unwrap();
        })
    };
    let sql = format!(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND mode = 'AccessExclusiveLock'
           AND relation = '{table}'::regclass"
    );
    crate::helpers::wait_for(
        "the change to queue for its lock",
        std::time::Duration::from_secs(10),
        || async { db.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) == 1 },
    )
    .await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        batch.batch_execute("COMMIT").await.unwrap();
    });
    (release, change)
}

/// Runs `step` among batches that overlap, each holding `lock` (`LOCK TABLE … IN ROW EXCLUSIVE
/// MODE`) for 1.2 s, a new one every 0.6 s, so one always holds it (a slow phase of two-phase
/// commits on Citus): a step that asks once for the table's whole lock, waiting 500 ms, never
/// gets it. Returns the step's output once the last batch has ended.
pub async fn among_overlapping_batches<T>(
    url: &str,
    lock: &'static str,
    step: impl std::future::Future<Output = T>,
) -> T {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration as StdDuration, Instant};
    let stop = Arc::new(AtomicBool::new(false));
    let holders = {
        let (stop, url) = (stop.clone(), url.to_owned());
        tokio::spawn(async move {
            let mut running = Vec::new();
            // Bounded: a minute at most, whatever the machine's speed.
            let deadline = Instant::now() + StdDuration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut client = crate::helpers::connect(&url).await;
                running.push(tokio::spawn(async move {
                    let tx = client.transaction().await.unwrap();
                    tx.batch_execute(lock).await.unwrap();
                    tokio::time::sleep(StdDuration::from_millis(1200)).await;
                    tx.commit().await.unwrap();
                }));
                tokio::time::sleep(StdDuration::from_millis(600)).await;
            }
            for holder in running {
                holder.await.unwrap();
            }
        })
    };
    // From here on two holders overlap.
    tokio::time::sleep(StdDuration::from_millis(700)).await;
    let output = step.await;
    stop.store(true, Ordering::Relaxed);
    holders.await.unwrap();
    output
}
