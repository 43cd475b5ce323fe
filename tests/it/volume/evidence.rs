//! Evidence outlives noise: when a partition expires, the signals of analysed incidents' traces
//! stay, their trace whole and exactly as the API and the worker read them, while the healthy
//! traffic beside them goes; the evidence goes with its incident.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use prodsentinel::store::partitions::Turn;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_postgres::Client;

use super::{day_partition, days, exists, log_at, worker_read, A_DAY};
use crate::helpers::{one, spawn_app_dispatching_by_hand, wait_for, TestApp};
use crate::metrics::{get, scrape_addr};

/// A legacy span and point of `trace` stamped `at`.
async fn span_and_point(app: &TestApp, trace: &str, at: DateTime<Utc>) {
    let span = json!({
        "signal_id": uuid::Uuid::new_v4().to_string(), "trace_id": trace, "span_id": "s1",
        "parent_span_id": null, "service_name": "checkout", "timestamp": at.to_rfc3339(),
        "duration_ms": 12.5, "status": "ok"
    });
    let point = json!({
        "signal_id": uuid::Uuid::new_v4().to_string(), "trace_id": trace, "service_name": "checkout",
        "timestamp": at.to_rfc3339(), "metric_name": "queue_depth", "value": 3, "unit": "1"
    });
    for (path, body) in [("/ingest/traces", span), ("/ingest/metrics", point)] {
        assert_eq!(app.post_json(path, &body).await.0, StatusCode::ACCEPTED, "{path}");
    }
}

async fn size(db: &Client, table: &str) -> i64 {
    // On Citus the coordinator's table is empty: its shards are on the workers.
    let function = if crate::helpers::citus_workers().is_empty() {
        "pg_total_relation_size"
    } else {
        "citus_total_relation_size"
    };
    let sql = format!("SELECT {function}($1::text::regclass)");
    db.query_one(&sql, &[&table]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysed_trace_outlives_its_partition_whole_and_the_healthy_traffic_beside_it_goes() {
    let app = spawn_app_dispatching_by_hand(&[]).await;
    let db = app.db().await;
    let old = Utc::now() - days(3);
    assert!(app.maintenance.pass_at(old, Turn::Wait).await.errors.is_empty());
    // Three days ago, in one day's partitions: a trace whose ERROR log asked for an analysis, and
    // the healthy traffic of a thousand traces beside it.
    let evidence = "t-evidence";
    for level in ["INFO", "ERROR"] {
        assert_eq!(
            app.post_json("/ingest/logs", &log_at(evidence, level, old)).await.0,
            StatusCode::ACCEPTED
        );
    }
    span_and_point(&app, evidence, old).await;
    // Enough that what stays is a tenth of it, even on Citus, where every shard keeps a page per
    // index however few its rows.
    for batch in 0..30 {
        let logs: Vec<Value> = (0..100)
            .map(|n| {
                let mut log = log_at(&format!("t-healthy-{batch}-{n}"), "INFO", old);
                log["message"] = json!(format!("all is well {}", "x".repeat(1000)));
                log
            })
            .collect();
        assert_eq!(app.post_json("/ingest/logs", &json!(logs)).await.0, StatusCode::ACCEPTED);
        span_and_point(&app, &format!("t-healthy-{batch}"), old).await;
    }
    let requested: i64 = one(
        &db,
        "SELECT count(*) FROM incidents WHERE trace_id = 't-evidence' AND analysis_requested_at IS NOT NULL",
    )
    .await;
    assert_eq!(requested, 1, "the ERROR asked for an analysis");
    let (api_before, worker_before) =
        (app.get_json("/query/traces/t-evidence").await.1, worker_read(&db, evidence).await);
    assert_eq!(worker_before.len(), 4);
    let log_leaf = day_partition(old, "log");
    let bytes_before = size(&db, &log_leaf).await;

    // The operator shortens every retention to a day: that day's partitions expire.
    let shorter = A_DAY;
    let args: Vec<&str> = shorter.iter().copied().chain(["--retention-check-seconds", "1"]).collect();
    let instance = app.second_instance(&args).await;
    // That day's partitions, replaced by ones holding only evidence (others expired too, empty).
    let that_day = format!("raw_signals_p{}%", old.format("%Y%m%d"));
    let kept_that_day = || {
        let (db, that_day) = (&db, that_day.clone());
        async move {
            let sql = "SELECT count(*) FROM raw_signal_evidence WHERE name LIKE $1";
            db.query_one(sql, &[&that_day]).await.unwrap().get::<_, i64>(0)
        }
    };
    wait_for(
        "the three partitions of that day to keep only their evidence",
        StdDuration::from_secs(30),
        || async { kept_that_day().await == 3 },
    )
    .await;
    let healthy: i64 = one(&db, "SELECT count(*) FROM raw_signals WHERE trace_id LIKE 't-healthy-%'").await;
    assert_eq!(healthy, 0, "the healthy traffic expired");
    assert_eq!(
        app.get_json("/query/traces/t-evidence").await.1,
        api_before,
        "the API answers it whole, unchanged"
    );
    assert_eq!(worker_read(&db, evidence).await, worker_before, "the worker reads every row, unchanged");
    assert!(exists(&db, &log_leaf).await, "the evidence sits where the partition was");
    let bytes_after = size(&db, &log_leaf).await;
    // What is left is the size of a handful of rows: a page of heap and one per index, in each
    // shard on Citus.
    let tables: i64 = if crate::helpers::citus_workers().is_empty() {
        1
    } else {
        one(&db, &format!("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = '{log_leaf}'::regclass"))
            .await
    };
    assert!(
        bytes_after * 10 < bytes_before && bytes_after <= tables * 96 * 1024,
        "the partition shrank to its evidence: {bytes_before} -> {bytes_after}"
    );
    // The pass that kept it sets the gauges after its drops: wait for it to get there.
    let signals = |metric: &'static str| {
        let addr = instance.addr;
        async move { get(&scrape_addr(addr).await, metric) }
    };
    wait_for("the evidence gauges", StdDuration::from_secs(30), || async {
        signals(r#"prodsentinel_retention_evidence_signals{signal="log"}"#).await == 2.0
    })
    .await;
    let kept = scrape_addr(instance.addr).await;
    assert_eq!(get(&kept, r#"prodsentinel_retention_evidence_signals{signal="trace"}"#), 1.0);
    assert!(get(&kept, r#"prodsentinel_retention_evidence_bytes{signal="log"}"#) > 0.0);
    assert!(
        get(&kept, r#"prodsentinel_retention_partitions_dropped_total{signal="log",reason="age"}"#) >= 1.0
    );
    eprintln!("evidence: the log partition went from {bytes_before} to {bytes_after} bytes, its 2 evidence rows kept");

    // Its incident and problem expire (INCIDENT_RETENTION): the evidence goes with them. The
    // incident goes with its range (detected today), at most one interval after its retention:
    // two days on, the range is gone; the second pass drops the evidence no incident holds.
    drop(instance);
    let args: Vec<&str> = args.into_iter().chain(["--incident-retention", "1s"]).collect();
    let expiring = app.maintenance_with(&args).await;
    for _ in 0..2 {
        let pass = expiring.pass_at(Utc::now() + days(2), Turn::Wait).await;
        assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    }
    assert_eq!(kept_that_day().await, 0, "the evidence went with its incident");
    assert!(worker_read(&db, evidence).await.is_empty());
    assert!(!exists(&db, &log_leaf).await);
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM incidents WHERE trace_id = 't-evidence'").await, 0);
}
