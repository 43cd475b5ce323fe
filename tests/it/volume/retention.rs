//! Retention drops whole partitions of one signal type, once across instances; a signal already
//! past its retention is acknowledged and not stored.

use std::time::Duration as StdDuration;

use chrono::Utc;
use prodsentinel::App;
use reqwest::StatusCode;
use tokio::sync::oneshot;

use super::{
    a_change_queued_behind_a_batch, among_overlapping_batches, day_partition, days, exists, expired_away,
    log_at,
};
use prodsentinel::store::partitions::Turn;

use crate::helpers::{spawn_app_with, test_config, wait_for, TestApp};
use crate::metrics::{get, scrape_addr};

/// Signals of every type stamped `at`, in trace `trace` (legacy log, span, metric point).
async fn one_of_each(app: &TestApp, trace: &str, at: chrono::DateTime<Utc>) {
    let span = serde_json::json!({
        "signal_id": uuid::Uuid::new_v4().to_string(), "trace_id": trace, "span_id": "s1",
        "parent_span_id": null, "service_name": "checkout", "timestamp": at.to_rfc3339(),
        "duration_ms": 12.5, "status": "ok"
    });
    let metric = serde_json::json!({
        "signal_id": uuid::Uuid::new_v4().to_string(), "trace_id": trace, "service_name": "checkout",
        "timestamp": at.to_rfc3339(), "metric_name": "queue_depth", "value": 3, "unit": "1"
    });
    for (path, body) in
        [("/ingest/logs", log_at(trace, "INFO", at)), ("/ingest/traces", span), ("/ingest/metrics", metric)]
    {
        let (status, answer) = app.post_json(path, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {answer}");
    }
}

async fn count(db: &tokio_postgres::Client, trace: &str, signal_type: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM raw_signals WHERE trace_id = $1 AND signal_type = $2::text::signaltypeenum",
        &[&trace, &signal_type],
    )
    .await
    .unwrap()
    .get(0)
}

/// An app whose first pass, as three days ago, made partitions for the past three days, with a
/// log, a span and a point in each of them and in today's: what an instance keeping
/// everything accumulates.
async fn three_days_of_everything() -> (TestApp, chrono::DateTime<Utc>) {
    let app = spawn_app_with(&[]).await;
    let now = Utc::now();
    let past = app.maintenance.pass_at(now - days(3), Turn::Wait).await;
    assert!(past.errors.is_empty(), "{:?}", past.errors);
    for day in 0..=3 {
        one_of_each(&app, &format!("t-day-{day}"), now - days(day)).await;
    }
    (app, now)
}

#[tokio::test]
async fn a_short_retention_drops_only_that_types_expired_partitions_and_fresh_signals_stay() {
    let (app, now) = three_days_of_everything().await;
    let db = app.db().await;
    for day in 1..=3 {
        assert!(exists(&db, &day_partition(now - days(day), "log")).await);
    }
    // The operator lowers log retention to two days: a new instance with it, passes every second.
    let instance = app.second_instance(&["--retention-logs", "2d", "--retention-check-seconds", "1"]).await;
    // Logs of three days ago (a partition ending two days ago) expire; two days ago still has
    // hours left; traces and metrics are kept forever.
    let expired = day_partition(now - days(3), "log");
    wait_for("the expired log partition dropped", StdDuration::from_secs(30), || async {
        expired_away(&db, &expired).await
    })
    .await;
    assert_eq!(count(&db, "t-day-3", "log").await, 0, "expired with its partition");
    for (trace, signal_type) in
        [("t-day-3", "trace"), ("t-day-3", "metric"), ("t-day-2", "log"), ("t-day-0", "log")]
    {
        assert_eq!(count(&db, trace, signal_type).await, 1, "{trace} {signal_type} kept");
    }
    assert!(!expired_away(&db, &day_partition(now - days(3), "trace")).await);
    assert!(!expired_away(&db, &day_partition(now - days(2), "log")).await);

    // The pass that dropped it may still be updating its metrics: wait for the next to finish.
    let passes = get(&scrape_addr(instance.addr).await, "prodsentinel_maintenance_passes_total");
    wait_for("a full pass after the drop", StdDuration::from_secs(30), || async {
        get(&scrape_addr(instance.addr).await, "prodsentinel_maintenance_passes_total") >= passes + 1.0
    })
    .await;
    let m = scrape_addr(instance.addr).await;
    assert_eq!(get(&m, r#"prodsentinel_retention_partitions_dropped_total{signal="log",reason="age"}"#), 1.0);
    assert_eq!(
        get(&m, r#"prodsentinel_retention_partitions_dropped_total{signal="trace",reason="age"}"#),
        0.0
    );
    assert!(get(&m, r#"prodsentinel_retention_bytes_freed_total{signal="log"}"#) >= 8192.0, "{m:?}");
    let oldest_log = get(&m, r#"prodsentinel_retention_oldest_retained_timestamp_seconds{signal="log"}"#);
    let two_days_ago =
        (now - days(2)).date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() as f64;
    assert_eq!(oldest_log, two_days_ago, "the start of the oldest log partition left");
    let oldest_trace = get(&m, r#"prodsentinel_retention_oldest_retained_timestamp_seconds{signal="trace"}"#);
    assert!(oldest_trace < two_days_ago);
    assert_eq!(get(&m, "prodsentinel_maintenance_errors_total"), 0.0);

    // A log older than its retention on arrival is acknowledged and not stored.
    let late = log_at("t-late", "ERROR", now - days(5));
    let answer = reqwest::Client::new()
        .post(format!("http://{}/ingest/logs", instance.addr))
        .json(&late)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    assert_eq!(count(&db, "t-late", "log").await, 0);
    let m = scrape_addr(instance.addr).await;
    assert_eq!(
        get(&m, r#"prodsentinel_ingest_signals_expired_on_arrival_total{signal="log",transport="legacy"}"#),
        1.0
    );
}

#[tokio::test]
async fn two_instances_create_and_drop_partitions_without_error_or_double_work() {
    let (app, now) = three_days_of_everything().await;
    let db = app.db().await;
    // Both start at once with a one-day log retention: two log partitions have expired (three
    // and two days ago), and start-up finds today's partitions there already.
    let settings = ["--retention-logs", "1d", "--retention-check-seconds", "1"];
    let redis = app.redis.url();
    let args: Vec<&str> = ["--redis-url", redis.as_str()].into_iter().chain(settings).collect();
    let (first, second) =
        tokio::join!(App::build(test_config(&app.db, &args)), App::build(test_config(&app.db, &args)));
    let mut stops = Vec::new();
    let mut addrs = Vec::new();
    for instance in [first.expect("first instance starts"), second.expect("second instance starts")] {
        addrs.push(instance.api_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(instance.run_until(async {
            let _ = stopped.await;
        }));
        stops.push(stop);
    }
    // Each instance runs at least three passes (about three seconds), all of them contending.
    wait_for("three passes on each instance", StdDuration::from_secs(60), || {
        let addrs = addrs.clone();
        async move {
            let mut done = true;
            for addr in addrs {
                done &= get(&scrape_addr(addr).await, "prodsentinel_maintenance_passes_total") >= 3.0;
            }
            done
        }
    })
    .await;
    let (mut dropped, mut created, mut errors) = (0.0, 0.0, 0.0);
    for addr in &addrs {
        let m = scrape_addr(*addr).await;
        dropped += get(&m, r#"prodsentinel_retention_partitions_dropped_total{signal="log",reason="age"}"#);
        created += get(&m, "prodsentinel_retention_partitions_created_total");
        errors += get(&m, "prodsentinel_maintenance_errors_total");
    }
    assert_eq!(dropped, 2.0, "each expired log partition dropped once, by one of the two");
    assert_eq!(created, 0.0, "the partitions around now were there already");
    assert_eq!(errors, 0.0);
    for day in [3, 2] {
        assert!(expired_away(&db, &day_partition(now - days(day), "log")).await);
        assert_eq!(count(&db, &format!("t-day-{day}"), "log").await, 0);
    }
    let yesterday = day_partition(now - days(1), "log");
    assert!(
        exists(&db, &yesterday).await && !expired_away(&db, &yesterday).await,
        "yesterday's has not expired"
    );
    assert_eq!(count(&db, "t-day-3", "trace").await, 1);
    drop(stops);
}

#[tokio::test]
async fn otlp_records_past_their_retention_on_arrival_are_a_partial_success_naming_the_retention() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    let app = spawn_app_with(&["--retention-logs", "1d"]).await;
    let nanos = |at: chrono::DateTime<Utc>| at.timestamp_nanos_opt().unwrap().to_string();
    let (fresh, stale) = (Utc::now(), Utc::now() - days(5));
    // OTLP/JSON: one record of now, one of five days ago.
    let body = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": nanos(fresh), "severityNumber": 9, "body": {"stringValue": "fresh"}},
        {"timeUnixNano": nanos(stale), "severityNumber": 9, "body": {"stringValue": "stale"}},
    ]}]}]});
    let (status, _, answer) = app
        .post_otlp("/v1/logs", &[("content-type", "application/json")], body.to_string().into_bytes())
        .await;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedLogRecords"], "1", "{answer}");
    let message = answer["partialSuccess"]["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("older than RETENTION_LOGS (1d) on arrival"), "{message}");
    assert_eq!(app.rows().await.len(), 1, "the fresh record is stored, the stale one not");

    // gRPC says the same.
    let time = |at: chrono::DateTime<Utc>| at.timestamp_nanos_opt().unwrap() as u64;
    let record = |at| LogRecord { time_unix_nano: time(at), severity_number: 9, ..Default::default() };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record(stale), record(stale)],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut client = LogsServiceClient::connect(format!("http://{}", app.grpc_addr)).await.unwrap();
    let partial =
        client.export(request).await.unwrap().into_inner().partial_success.expect("a partial success");
    assert_eq!(partial.rejected_log_records, 2);
    assert!(partial.error_message.contains("RETENTION_LOGS (1d)"), "{}", partial.error_message);
}

/// Today's log partition, holding a log of a trace whose ERROR asked for an analysis, in an app
/// keeping logs a day: expired three days on, it keeps that trace's log.
async fn an_expiring_log_partition() -> (TestApp, tokio_postgres::Client, chrono::DateTime<Utc>, String) {
    let app = spawn_app_with(&["--retention-logs", "1d"]).await;
    let db = app.db().await;
    let now = Utc::now();
    assert_eq!(app.post_json("/ingest/logs", &log_at("t-kept", "ERROR", now)).await.0, StatusCode::ACCEPTED);
    (app, db, now, day_partition(now, "log"))
}

/// Whether the log partition kept its evidence (and only that) in its place.
async fn kept_its_evidence(db: &tokio_postgres::Client, leaf: &str) -> bool {
    let sql = "SELECT count(*) FROM raw_signal_evidence WHERE name = $1 AND signals = 1";
    db.query_one(sql, &[&leaf]).await.unwrap().get::<_, i64>(0) == 1
}

/// Writers that overlap, each holding the signal tables longer than the lock timeout (batches
/// of a slow phase): the expiry detaching a partition waits longer at each attempt, and gets
/// them, rather than failing until a quieter pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_expires_among_overlapping_writers_each_slower_than_the_lock_timeout() {
    let (app, db, now, leaf) = an_expiring_log_partition().await;
    let lock = "LOCK TABLE raw_signal_rows IN ROW EXCLUSIVE MODE";
    let expired = among_overlapping_batches(
        &app.db.url(),
        lock,
        app.store.drop_expired_partitions(now + days(3), Turn::Wait),
    )
    .await;
    let (dropped, failed) = expired.unwrap().expect("this pass's turn");
    assert!(failed.is_empty(), "{failed:?}");
    assert!(dropped.iter().any(|d| d.name == leaf), "{dropped:?}");
    assert!(kept_its_evidence(&db, &leaf).await);
}

/// The row expiry (which runs beside a pass) waits for the incidents' whole lock behind batches;
/// the expiry's read of the evidence, queued behind that request, waits it out too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_expires_while_a_change_of_the_incidents_waits_for_its_lock() {
    let (app, db, now, leaf) = an_expiring_log_partition().await;
    let (release, change) = a_change_queued_behind_a_batch(&app.db.url(), &db, "incidents").await;
    let expired = app.store.drop_expired_partitions(now + days(3), Turn::Wait).await;
    release.await.unwrap();
    change.await.unwrap();
    let (dropped, failed) = expired.unwrap().expect("this pass's turn");
    assert!(failed.is_empty(), "{failed:?}");
    assert!(dropped.iter().any(|d| d.name == leaf), "{dropped:?}");
    assert!(kept_its_evidence(&db, &leaf).await);
}
