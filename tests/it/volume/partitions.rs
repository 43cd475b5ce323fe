//! Partitions exist ahead of now, made by the service; signals far from now are stored where
//! they can be read; a new range takes its rows out of the default partition.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::Value;

use super::{
    a_change_queued_behind_a_batch, among_overlapping_batches, day_partition, days, exists, log_at, placed,
};
use prodsentinel::store::partitions::Turn;

use crate::helpers::{one, spawn_app_with};

#[tokio::test]
async fn partitions_exist_ahead_of_now_and_later_passes_create_the_next_ones() {
    let app = spawn_app_with(&[]).await;
    let db = app.db().await;
    let now = Utc::now();
    // Start-up made today's partition and the next two days', each with a partition per type.
    for day in 0..3 {
        for signal_type in ["log", "trace", "metric"] {
            let table = day_partition(now + days(day), signal_type);
            assert!(exists(&db, &table).await, "{table} made at start-up");
        }
    }
    assert!(!exists(&db, &day_partition(now + days(3), "log")).await, "not further than two days ahead");
    let recorded: i64 = one(&db, "SELECT count(*) FROM raw_signal_partitions").await;
    assert_eq!(recorded, 3);

    // Five days on, a pass adds what is missing around that time, and nothing else.
    let later = now + days(5);
    let report = app.maintenance.pass_at(later, Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let made: Vec<String> = report.created.partitions.clone();
    let expected: Vec<String> =
        (5..8).map(|d| format!("raw_signals_p{}", (now + days(d)).format("%Y%m%d"))).collect();
    assert_eq!(made, expected);
    for table in &made {
        assert!(exists(&db, &format!("{table}_trace")).await);
    }
    // The same pass again finds nothing to do.
    let again = app.maintenance.pass_at(later, Turn::Wait).await;
    assert!(again.created.partitions.is_empty() && again.errors.is_empty());
    // Each new partition carries the parent's key: a signal stamped then is stored once.
    let body = log_at("t-ahead", "INFO", later);
    for _ in 0..2 {
        assert_eq!(app.post_json("/ingest/logs", &body).await.0, StatusCode::ACCEPTED);
    }
    assert_eq!(placed(&db, "t-ahead").await, [day_partition(later, "log")]);
}

#[tokio::test]
async fn signals_three_years_old_and_a_day_ahead_are_stored_and_readable() {
    // Retention is off in tests (helpers::test_config), as it must be for a 3-year-old log.
    let app = spawn_app_with(&[]).await;
    let db = app.db().await;
    let now = Utc::now();
    let old = log_at("t-skew", "ERROR", now - days(3 * 365));
    let ahead = log_at("t-skew", "INFO", now + days(1));
    let far_ahead = log_at("t-skew", "INFO", now + days(400));
    for body in [&old, &ahead, &far_ahead] {
        let (status, answer) = app.post_json("/ingest/logs", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    // Where each went: outside every range to the default partition, tomorrow to its own.
    assert_eq!(
        placed(&db, "t-skew").await,
        [
            "raw_signals_default".to_owned(),
            day_partition(now + days(1), "log"),
            "raw_signals_default".to_owned()
        ]
    );
    // Readable like any other: the trace, the list, the worker's query.
    let (status, trace) = app.get_json("/query/traces/t-skew").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = trace.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    let sent: Vec<&str> =
        [&old, &ahead, &far_ahead].iter().map(|b| b["signal_id"].as_str().unwrap()).collect();
    assert_eq!(ids, sent, "oldest first");
    let (_, page) = app.get_json("/query/signals?trace_id=t-skew").await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"][0]["id"], far_ahead["signal_id"], "newest first");
    let worker: i64 = db
        .query("SELECT * FROM raw_signals WHERE trace_id = $1 ORDER BY timestamp", &[&"t-skew"])
        .await
        .unwrap()
        .len() as i64;
    assert_eq!(worker, 3);
    let (_, incidents) = app.get_json("/query/incidents").await;
    assert_eq!(incidents["items"][0]["error_count"], 3.0, "tracked like any signal");
}

#[tokio::test]
async fn a_new_range_takes_its_rows_out_of_the_default_partition() {
    let app = spawn_app_with(&[]).await;
    let db = app.db().await;
    let now = Utc::now();
    // Four days ahead: beyond the partitions made at start-up.
    let early = log_at("t-early", "INFO", now + days(4));
    let again = early.clone();
    assert_eq!(app.post_json("/ingest/logs", &early).await.0, StatusCode::ACCEPTED);
    assert_eq!(placed(&db, "t-early").await, ["raw_signals_default"]);

    // Three days on, the pass creates that day: the row moves there, once.
    let report = app.maintenance.pass_at(now + days(3), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.created.default_rows_kept, 1);
    assert_eq!(report.created.default_rows_expired, 0);
    assert_eq!(placed(&db, "t-early").await, [day_partition(now + days(4), "log")]);
    // Its duplicate check moved with it.
    assert_eq!(app.post_json("/ingest/logs", &again).await.0, StatusCode::ACCEPTED);
    assert_eq!(placed(&db, "t-early").await.len(), 1);
    let (_, page) = app.get_json("/query/signals?trace_id=t-early").await;
    assert_eq!(
        page["items"][0]["payload"]["message"],
        Value::String(early["message"].as_str().unwrap().into())
    );
}

/// The partitions a plan of `sql` reads (`Relation Name` of its scans).
async fn partitions_read(db: &tokio_postgres::Client, sql: &str, at: &chrono::DateTime<Utc>) -> Vec<String> {
    let plan: Value = db.query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[at]).await.unwrap().get(0);
    crate::helpers::plan_relations(&plan)
}

#[tokio::test]
async fn a_time_filter_reads_only_the_partitions_of_its_range() {
    let app = spawn_app_with(&[]).await;
    let db = app.db().await;
    let now = Utc::now();
    app.maintenance.pass_at(now - days(2), Turn::Wait).await;
    // The list's condition on the row form as the API writes it (store/signals.rs), for the
    // last hour (the sealed blocks are chosen by their own bounds: volume::sealing).
    let sql = r#"SELECT id FROM raw_signals_hot WHERE "timestamp" >= $1 AND hi >= $1
                 ORDER BY "timestamp" DESC, id DESC LIMIT 10"#;
    // The hour reaches back into yesterday in the first hour after midnight UTC: the expected
    // days start at the day the hour starts in, not at today.
    let since = now - chrono::Duration::hours(1);
    let read = partitions_read(&db, sql, &since).await;
    let first_day = day_partition(since, "");
    let expected_days: Vec<String> =
        std::iter::once(first_day.clone()).chain((0..3).map(|d| day_partition(now + days(d), ""))).collect();
    assert!(
        read.iter()
            .all(|t| expected_days.iter().any(|d| t.starts_with(d.as_str()))
                || t == "raw_signals_default"
                || t == "raw_signal_sealing"),
        "only the hour's days, the days ahead, the default partition (and the parent of partitions being sealed, empty): {read:?}"
    );
    assert!(read.iter().any(|t| t.starts_with(first_day.as_str())), "{read:?}");
    assert!(
        !read.iter().any(|t| t.starts_with(&day_partition(since - days(1), ""))),
        "the day before the hour pruned: {read:?}"
    );
    // With a type too, only that type's partitions.
    let typed = r#"SELECT id FROM raw_signals_hot WHERE "timestamp" >= $1 AND signal_type = 'log' LIMIT 10"#;
    let read = partitions_read(&db, typed, &(now - chrono::Duration::hours(1))).await;
    assert!(
        read.iter().all(|t| t.ends_with("_log") || t == "raw_signals_default" || t == "raw_signal_sealing"),
        "{read:?}"
    );
}

/// The row expiry (which runs beside a pass) waits for the kept incidents' whole lock behind a
/// batch; the partition check, whose read of the evidence queues behind that request, waits it
/// out and creates its ranges, rather than giving up on the short lock timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_created_while_a_change_of_the_incidents_waits_for_its_lock() {
    let app = spawn_app_with(&[]).await;
    let db = app.db().await;
    // A batch holds the kept incidents; the row expiry's lock queues behind it.
    let (release, change) = a_change_queued_behind_a_batch(&app.db.url(), &db, "incidents_kept").await;
    let later = Utc::now() + days(5);
    let created = app.store.ensure_partitions(later, Turn::Wait).await;
    release.await.unwrap();
    change.await.unwrap();
    let created = created.unwrap().expect("this pass's turn");
    assert_eq!(created.partitions.len(), 3, "{created:?}");
    for day in 5..8 {
        assert!(exists(&db, &day_partition(later + days(day - 5), "log")).await);
    }
}

/// Batches that overlap, each holding the signals' table longer than the lock timeout (a slow
/// phase of two-phase commits on Citus): the pass that moves a row out of the default partition
/// (and on Citus creates its ranges attached) waits longer at each attempt for the table's
/// whole lock, and gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_created_among_overlapping_batches_each_slower_than_the_lock_timeout() {
    let app = spawn_app_with(&[]).await;
    let db = app.db().await;
    let now = Utc::now();
    // Four days ahead: in the default partition, which the pass three days on rotates.
    assert_eq!(
        app.post_json("/ingest/logs", &log_at("t-early", "INFO", now + days(4))).await.0,
        StatusCode::ACCEPTED
    );
    let lock = "LOCK TABLE ONLY raw_signal_rows IN ROW EXCLUSIVE MODE";
    let created = among_overlapping_batches(
        &app.db.url(),
        lock,
        app.store.ensure_partitions(now + days(3), Turn::Wait),
    )
    .await;
    let created = created.unwrap().expect("this pass's turn");
    assert_eq!(created.partitions.len(), 3, "{created:?}");
    assert_eq!(created.default_rows_kept, 1, "{created:?}");
    assert_eq!(placed(&db, "t-early").await, [day_partition(now + days(4), "log")]);
}
