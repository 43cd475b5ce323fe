//! A size budget below the disk: RETENTION_MAX_DATABASE_SIZE keeps the database under it by
//! dropping whole partitions oldest first, healthy traffic before evidence, so the disk never
//! fills; every acknowledged signal of a partition still there is stored.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DurationRound, Utc};
use prodsentinel::store::partitions::Turn;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::helpers::{connect, one, test_config_for, wait_for, RedisDb};
use crate::own_postgres::OwnPostgres;

const MIB: i64 = 1 << 20;

/// What a partition of one hour holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// Its log partition, whole.
    Whole,
    /// Only its evidence.
    Evidence,
    /// Its healthy traffic gone, and it had no evidence.
    Emptied,
    /// The whole range gone (the budget's last resort).
    Nothing,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_below_the_disk_drops_the_oldest_partitions_first_evidence_last_and_the_disk_never_fills() {
    let _turn = crate::helpers::machine_load_turn().await;
    // 128 MB of disk, three quarters of which the load below would fill; a 40 MB budget.
    let mut pg = OwnPostgres::init_on_small_disk(128);
    pg.start();
    let url = pg.url("prodsentinel_budget", "");
    let redis = RedisDb::acquire().await;
    let redis_url = redis.url();
    let budget = 40 * MIB;
    let args = [
        "--redis-url",
        &redis_url,
        "--partition-interval",
        "1h",
        "--retention-max-database-size",
        "40MB",
        "--retention-size-check-seconds",
        "1",
    ];
    let app = prodsentinel::App::build(test_config_for(&url, &args)).await.expect("starts");
    let (api, maintenance) = (app.api_addr(), app.maintenance());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    // A day of hourly partitions.
    let now = Utc::now();
    let hour =
        |h: i64| now.duration_trunc(chrono::Duration::hours(1)).unwrap() - chrono::Duration::hours(24 - h);
    for h in 0..24 {
        assert!(maintenance.pass_at(hour(h), Turn::Wait).await.errors.is_empty());
    }

    // The database's size, sampled every 100 ms while the load runs.
    let db = connect(&url).await;
    let peak = Arc::new(AtomicI64::new(0));
    let sampling = {
        let (url, peak) = (url.clone(), peak.clone());
        tokio::spawn(async move {
            let db = connect(&url).await;
            loop {
                let size: i64 = one(&db, "SELECT pg_database_size(current_database())").await;
                peak.fetch_max(size, Ordering::Relaxed);
                tokio::time::sleep(StdDuration::from_millis(100)).await;
            }
        })
    };
    // The day's traffic, oldest hour first: 4 MB of healthy logs an hour (96 MB in all), and in
    // each of the first twelve hours a trace whose ERROR log asks for an analysis.
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let http = http.clone();
        async move { http.post(format!("http://{api}/ingest/logs")).json(&body).send().await.unwrap().status() }
    };
    let mut acked: BTreeMap<i64, i64> = BTreeMap::new();
    for h in 0..24 {
        let at = (hour(h) + chrono::Duration::minutes(30)).to_rfc3339();
        if h < 12 {
            let error = json!({"signal_id": uuid::Uuid::new_v4().to_string(), "trace_id": format!("evidence-{h}"),
                "service_name": "budget", "timestamp": at, "level": "ERROR", "message": format!("failed in hour {h}")});
            assert_eq!(post(error).await, StatusCode::ACCEPTED);
        }
        for _ in 0..16 {
            let logs: Vec<Value> = (0..200)
                .map(|_| {
                    json!({"signal_id": uuid::Uuid::new_v4().to_string(), "trace_id": format!("hour-{h}"),
                        "service_name": "budget", "timestamp": at, "level": "INFO", "message": "x".repeat(1000)})
                })
                .collect();
            let status = post(json!(logs)).await;
            assert_eq!(status, StatusCode::ACCEPTED, "the disk never fills: nothing is refused");
            *acked.entry(h).or_default() += 200;
        }
    }
    wait_for("the database to be back under its budget", StdDuration::from_secs(30), || async {
        one::<i64>(&db, "SELECT pg_database_size(current_database())").await <= budget
    })
    .await;
    sampling.abort();
    let peak = peak.load(Ordering::Relaxed);

    // Hour by hour, oldest first: gone or evidence only, then whole.
    let mut left = Vec::new();
    for h in 0..24 {
        // Named as the service names a range: the hour, unless it starts at midnight.
        let format = if hour(h).format("%H").to_string() == "00" { "%Y%m%d" } else { "%Y%m%dt%H" };
        let leaf = format!("raw_signals_p{}_log", hour(h).format(format));
        let present: bool =
            db.query_one("SELECT to_regclass($1) IS NOT NULL", &[&leaf]).await.unwrap().get(0);
        let kept: Option<i64> = db
            .query_opt("SELECT signals FROM raw_signal_evidence WHERE name = $1", &[&leaf])
            .await
            .unwrap()
            .map(|row| row.get(0));
        left.push(match (present, kept) {
            (false, _) => Left::Nothing,
            (true, None) => Left::Whole,
            (true, Some(0)) => Left::Emptied,
            (true, Some(_)) => Left::Evidence,
        });
    }
    let first_whole = left.iter().position(|l| *l == Left::Whole).expect("recent hours kept whole");
    assert!(first_whole > 0, "the budget dropped something: {left:?}");
    assert!(left[first_whole..].iter().all(|l| *l == Left::Whole), "oldest first: {left:?}");
    // Evidence last: the hours dropped kept their analysed traces, readable whole.
    for h in 0..first_whole.min(12) as i64 {
        assert_eq!(left[h as usize], Left::Evidence, "hour {h}: {left:?}");
        let kept: i64 = db
            .query_one("SELECT count(*) FROM raw_signals WHERE trace_id = $1", &[&format!("evidence-{h}")])
            .await
            .unwrap()
            .get(0);
        assert_eq!(kept, 1, "hour {h}'s evidence");
    }
    // Nothing acknowledged in a partition still there is missing.
    for h in first_whole as i64..24 {
        let stored: i64 = db
            .query_one("SELECT count(*) FROM raw_signals WHERE trace_id = $1", &[&format!("hour-{h}")])
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored, acked[&h], "hour {h}");
    }
    let metrics = crate::metrics::scrape_addr(api).await;
    let dropped = |reason: &str| {
        crate::metrics::get(
            &metrics,
            &format!(r#"prodsentinel_retention_partitions_dropped_total{{signal="log",reason="{reason}"}}"#),
        )
    };
    assert!(dropped("size") >= first_whole as f64, "{metrics:?}");
    assert_eq!(dropped("age"), 0.0);
    assert_eq!(crate::metrics::get(&metrics, "prodsentinel_database_size_budget_bytes"), budget as f64);
    let ready: Value =
        reqwest::get(format!("http://{api}/health/ready")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["database_size"]["budget_bytes"], budget, "{ready}");
    // Over the budget by at most what a second of this load writes (the size is checked every
    // second, and at once on a full disk, which never came).
    assert!(peak <= budget + 16 * MIB, "peak {peak} bytes against a budget of {budget}");
    eprintln!(
        "budget {} MiB: peak {:.1} MiB, {} of 24 hours dropped oldest first ({} kept as evidence), 0 refused",
        budget / MIB,
        peak as f64 / MIB as f64,
        first_whole,
        left.iter().filter(|l| **l == Left::Evidence).count()
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
