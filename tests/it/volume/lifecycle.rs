//! What grows with traffic besides signals expires too: incidents nobody analysed with their
//! signals, analysed ones (with their analyses and problems) after INCIDENT_RETENTION,
//! delivered outbox rows after OUTBOX_RETENTION; pending requests never.

use chrono::Utc;
use reqwest::StatusCode;

use super::{among_overlapping_batches, days, log_at};
use prodsentinel::store::partitions::Turn;

use crate::helpers::{column, one, row_table, spawn_app_with, wait_for, TestApp};
use tokio_postgres::Client;

#[tokio::test]
async fn unanalysed_incidents_go_with_their_signals_and_analysed_ones_after_incident_retention() {
    let app = spawn_app_with(&[
        "--retention-logs",
        "1d",
        "--incident-retention",
        "10d",
        "--outbox-retention",
        "2d",
    ])
    .await;
    let db = app.db().await;
    let now = Utc::now();
    for (trace, level) in [("t-quiet", "INFO"), ("t-failing", "ERROR"), ("t-pending", "CRITICAL")] {
        assert_eq!(app.post_json("/ingest/logs", &log_at(trace, level, now)).await.0, StatusCode::ACCEPTED);
    }
    let incident = |trace: &'static str| {
        let db = &db;
        async move {
            db.query_opt("SELECT id FROM incidents WHERE trace_id = $1", &[&trace])
                .await
                .unwrap()
                .map(|r| r.get::<_, uuid::Uuid>(0))
        }
    };
    let failing = incident("t-failing").await.expect("an incident for the error");
    // The worker analysed the failing trace (t-pending's analysis was requested, never
    // written). Both requests are delivered; a third waits in the outbox, not yet due.
    db.execute(
        "INSERT INTO analysis_results (incident_id, root_cause, confidence_score, evidence_signals, ai_explanation)
         VALUES ($1, 'pool exhausted', 0.9, '{}', '{}'::json)",
        &[&failing],
    )
    .await
    .unwrap();
    crate::helpers::wait_for("both requests delivered", std::time::Duration::from_secs(30), || async {
        app.outbox().await == [("sent".to_owned(), 2)]
    })
    .await;
    db.execute(
        "INSERT INTO analysis_outbox (trace_id, due_at) VALUES ('t-later', now() + interval '1 year')",
        &[],
    )
    .await
    .unwrap();
    let problems: i64 = one(&db, "SELECT count(*) FROM problems").await;
    assert_eq!(problems, 2, "two faults: the ERROR and the CRITICAL log");

    // Three days on: the logs' partition (today's) is past a one-day retention, so the quiet
    // trace's incident goes; the analysed and the requested ones stay, and the delivered
    // outbox row (older than two days then) goes while the pending one stays.
    let report = app.maintenance.pass_at(now + days(3), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.dropped.iter().any(|d| d.name.ends_with("_log")), "{:?}", report.dropped);
    assert_eq!(report.expired_rows.incidents, 1);
    assert_eq!(report.expired_rows.outbox_rows, 2);
    assert_eq!(incident("t-quiet").await, None);
    assert!(incident("t-failing").await.is_some());
    assert!(incident("t-pending").await.is_some());
    let outbox: Vec<String> = column(&db, "SELECT status FROM analysis_outbox").await;
    assert_eq!(outbox, ["pending"]);

    // Eleven days on: past INCIDENT_RETENTION without activity, the others go with their
    // analysis and problems (and the links to them).
    let report = app.maintenance.pass_at(now + days(11), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.expired_rows.incidents, report.expired_rows.analyses), (2, 1));
    assert_eq!(report.expired_rows.problems, 2);
    for table in ["incidents", "analysis_results", "problems", "incident_problems"] {
        let left: i64 = db.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0);
        assert_eq!(left, 0, "{table}");
    }
    // A pending analysis request is never expired.
    let pending: i64 = one(&db, "SELECT count(*) FROM analysis_outbox").await;
    assert_eq!(pending, 1);
}

/// Incidents live in time ranges (migrations/0015): when a range is due, the incidents that
/// must outlive it move to `incidents_kept` (same id, links, analyses and trace claim) and the
/// range is dropped whole with the rest. One incident per trace holds across the move: a later
/// signal updates the kept incident; a signal of a trace whose incident went opens a new one.
#[tokio::test]
async fn an_incident_range_is_dropped_whole_and_what_must_outlive_it_moves_to_the_kept_incidents() {
    let app = spawn_app_with(&["--retention-logs", "1d", "--incident-retention", "10d"]).await;
    let db = app.db().await;
    let now = Utc::now();
    let quiet: Vec<serde_json::Value> =
        (0..200).map(|n| log_at(&format!("t-quiet-{n}"), "INFO", now)).collect();
    assert_eq!(app.post_json("/ingest/logs", &serde_json::json!(quiet)).await.0, StatusCode::ACCEPTED);
    assert_eq!(
        app.post_json("/ingest/logs", &log_at("t-analysed", "ERROR", now)).await.0,
        StatusCode::ACCEPTED
    );
    let range = format!("incidents_p{}", now.format("%Y%m%d"));
    let placed: Vec<String> = column(&db, &format!("SELECT DISTINCT {} FROM incidents", row_table())).await;
    assert_eq!(placed, std::slice::from_ref(&range), "new incidents go to today's range");
    let claims: i64 = one(&db, "SELECT count(*) FROM incident_traces WHERE NOT kept").await;
    assert_eq!(claims, 201, "one claim per trace");
    let analysed: uuid::Uuid = one(&db, "SELECT id FROM incidents WHERE trace_id = 't-analysed'").await;
    let links: i64 = one(&db, "SELECT count(*) FROM incident_problems").await;
    assert_eq!(links, 1);

    // Three days on (logs kept a day, traces a week, metrics a month) the range may be sorted
    // early: the quiet incidents' signals are gone, only the analysed one (one in 201) is still
    // live, so the range goes whole now rather than after the longest retention.
    let report = app.maintenance.pass_at(now + days(3), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let expired = report.expired_rows;
    assert!(expired.incident_ranges >= 1, "{expired:?}");
    assert_eq!((expired.incidents, expired.incidents_kept), (200, 1), "{expired:?}");
    assert!(!super::exists(&db, &range).await, "the range was dropped");
    let kept: Vec<String> = column(&db, &format!("SELECT {} || ' ' || id FROM incidents", row_table())).await;
    assert_eq!(kept, [format!("incidents_kept {analysed}")]);
    let claims: Vec<String> = column(&db, "SELECT trace_id || ' ' || kept FROM incident_traces").await;
    assert_eq!(claims, ["t-analysed true"], "the claims went with their incidents, the kept one follows it");
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM incident_problems").await, 1, "its link stayed");

    // A late signal of the kept trace updates the kept incident; one of a dropped trace opens a
    // new incident.
    assert_eq!(
        app.post_json("/ingest/logs", &log_at("t-analysed", "ERROR", Utc::now())).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.post_json("/ingest/logs", &log_at("t-quiet-0", "INFO", Utc::now())).await.0,
        StatusCode::ACCEPTED
    );
    let per_trace: Vec<String> = column(
        &db,
        "SELECT trace_id || ' ' || count(*) || ' ' || sum(error_count) FROM incidents GROUP BY trace_id ORDER BY trace_id",
    )
    .await;
    assert_eq!(per_trace, ["t-analysed 1 2", "t-quiet-0 1 1"]);
    let still: uuid::Uuid = one(&db, "SELECT id FROM incidents WHERE trace_id = 't-analysed'").await;
    assert_eq!(still, analysed);
}

/// A range whose incidents are still largely live when the shortest retention has run out
/// (here a third of them counted spans, kept a week) is counted once, left to the longest
/// retention and not counted again; then it is sorted like any other.
#[tokio::test]
async fn an_incident_range_with_many_live_incidents_waits_for_the_longest_retention() {
    let app =
        spawn_app_with(&["--retention-logs", "1d", "--retention-traces", "5d", "--retention-metrics", "5d"])
            .await;
    let db = app.db().await;
    let now = Utc::now();
    let logs: Vec<serde_json::Value> = (0..20).map(|n| log_at(&format!("t-log-{n}"), "INFO", now)).collect();
    assert_eq!(app.post_json("/ingest/logs", &serde_json::json!(logs)).await.0, StatusCode::ACCEPTED);
    for n in 0..10 {
        let span = serde_json::json!({
            "signal_id": uuid::Uuid::new_v4().to_string(), "trace_id": format!("t-span-{n}"), "span_id": "s1",
            "parent_span_id": null, "service_name": "checkout", "timestamp": now.to_rfc3339(),
            "duration_ms": 12.5, "status": "ok"
        });
        assert_eq!(app.post_json("/ingest/traces", &span).await.0, StatusCode::ACCEPTED);
    }
    let range = format!("incidents_p{}", now.format("%Y%m%d"));
    let deferred = format!("SELECT deferred FROM incident_partitions WHERE name = '{range}'");

    // Before the shortest retention (plus the range's interval) has run out: not even counted.
    let report = app.maintenance.pass_at(now + days(1), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(!one::<bool>(&db, &deferred).await);

    // Three days on the log traces' incidents have expired, the span traces' ones (10 of 30)
    // have not: more than a tenth would move, so the range stays, marked, nothing dropped.
    let report = app.maintenance.pass_at(now + days(3), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.expired_rows.incident_ranges, 0, "{:?}", report.expired_rows);
    assert!(super::exists(&db, &range).await);
    assert!(one::<bool>(&db, &deferred).await, "the count is recorded, not repeated");
    assert_eq!(one::<i64>(&db, &format!("SELECT count(*) FROM {range}")).await, 30);

    // After the longest retention and an interval every incident here has outlived its signals:
    // the range goes whole, nothing kept.
    let report = app.maintenance.pass_at(now + days(7), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let expired = report.expired_rows;
    assert!(expired.incident_ranges >= 1, "{expired:?}");
    assert_eq!((expired.incidents, expired.incidents_kept), (30, 0), "{expired:?}");
    assert!(!super::exists(&db, &range).await, "the range was dropped");
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM incident_traces").await, 0);
}

/// Over its size budget, once the size pass has dropped the healthy traffic of every range that
/// has ended, it drops their incident ranges too, before any evidence: the unanalysed incidents
/// go with them (their signals are gone), the analysed one is kept.
#[tokio::test]
async fn over_its_budget_the_size_pass_drops_the_incident_ranges_whose_signals_it_dropped() {
    // Smaller than the empty database: everything that may go goes. Logs kept forever: the
    // budget, not their retention, drops them.
    let app = spawn_app_with(&["--retention-max-database-size", "1MB"]).await;
    let db = app.db().await;
    let now = Utc::now();
    let quiet: Vec<serde_json::Value> =
        (0..50).map(|n| log_at(&format!("t-quiet-{n}"), "INFO", now)).collect();
    assert_eq!(app.post_json("/ingest/logs", &serde_json::json!(quiet)).await.0, StatusCode::ACCEPTED);
    assert_eq!(
        app.post_json("/ingest/logs", &log_at("t-analysed", "ERROR", now)).await.0,
        StatusCode::ACCEPTED
    );
    let range = format!("incidents_p{}", now.format("%Y%m%d"));
    let analysed: uuid::Uuid = one(&db, "SELECT id FROM incidents WHERE trace_id = 't-analysed'").await;

    // Two days on, today's ranges have ended: well within every retention, but over the budget.
    let pass = app.maintenance.size_pass_at(now + days(2), Turn::Wait).await.expect("a budget is set");
    let sorted = pass.incident_ranges;
    assert!(sorted.ranges >= 1, "{pass:?}");
    assert_eq!((sorted.incidents, sorted.kept), (50, 1), "{pass:?}");
    assert!(!super::exists(&db, &range).await, "the range was dropped");
    let kept: Vec<String> = column(&db, &format!("SELECT {} || ' ' || id FROM incidents", row_table())).await;
    assert_eq!(kept, [format!("incidents_kept {analysed}")]);
    let claims: Vec<String> = column(&db, "SELECT trace_id FROM incident_traces").await;
    assert_eq!(claims, ["t-analysed"]);
}

/// An app keeping logs a day and incidents ten, with one INFO log of `trace` stored now:
/// `(app, a connection, now, the incident range holding the trace's incident)`.
async fn quiet_trace_in_todays_range(trace: &str) -> (TestApp, Client, chrono::DateTime<Utc>, String) {
    let app = spawn_app_with(&["--retention-logs", "1d", "--incident-retention", "10d"]).await;
    let db = app.db().await;
    let now = Utc::now();
    assert_eq!(app.post_json("/ingest/logs", &log_at(trace, "INFO", now)).await.0, StatusCode::ACCEPTED);
    let range: String = db
        .query_one(&format!("SELECT {} FROM incidents WHERE trace_id = $1", row_table()), &[&trace])
        .await
        .unwrap()
        .get(0);
    (app, db, now, range)
}

/// A batch that started before a range was sorted, and claims its trace after the sort removed
/// the expired incident's claim, puts a new incident in the range (still current: its time is
/// the batch's start). The range's drop sorts again what arrived meanwhile: the new incident
/// outlives it (its signals are kept longer) and its claim points at it.
#[tokio::test]
async fn an_incident_made_in_a_range_while_it_is_sorted_outlives_its_drop() {
    use prodsentinel::store::partitions::MAINTENANCE_LOCK_KEY;
    let (app, db, now, range) = quiet_trace_in_todays_range("t-late").await;
    // Waiters for the maintenance lock in this database: pg_locks shows every database's, and
    // the tests beside this one take the same key in theirs.
    let waiting = || async {
        let waiting: i64 = one(
            &db,
            &format!(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                   AND (classid::int8 << 32 | objid::int8) = {MAINTENANCE_LOCK_KEY}
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
        )
        .await;
        waiting
    };

    // The batch lands between the sort's two transactions. In production that is timing (it
    // waits for the claim the first one holds, and holds the incidents, which the second
    // waits for); here the maintenance lock orders it: held by the test, the sort's first
    // transaction queues for it, then the batch, which the second then waits for.
    // The batch's transaction starts before the sort's: its claim's time is older than the
    // sort, which must still look for it.
    let batch = app.db().await;
    batch.batch_execute("BEGIN").await.unwrap();
    let mut gate = app.db().await;
    let gate = gate.transaction().await.unwrap();
    gate.execute("SELECT pg_advisory_xact_lock($1)", &[&MAINTENANCE_LOCK_KEY]).await.unwrap();
    let store = app.store.clone();
    let sort = tokio::spawn(async move {
        store.expire_incident_ranges(now + days(3), Turn::Wait, std::time::Duration::from_secs(60)).await
    });
    wait_for("the sort to queue", std::time::Duration::from_secs(20), || async { waiting().await == 1 })
        .await;
    let batch = {
        let range = range.clone();
        tokio::spawn(async move {
            // As write_batch.sql claims and inserts: the trace's claim is gone, so a new one,
            // at the batch's start, in the range; its signals (spans, say) kept for a month.
            batch
                .batch_execute(&format!(
                    "SELECT pg_advisory_xact_lock_shared({MAINTENANCE_LOCK_KEY});
                     INSERT INTO incident_traces (trace_id, detected_at) VALUES ('t-late', now());
                     INSERT INTO {range} (id, trace_id, trace_key, kept, status, severity, detected_at, affected_services,
                                          error_count, high_signal_count, last_signal_at, signals_expire_at)
                     VALUES (gen_random_uuid(), 't-late', 't-late', false, 'OPEN', 'LOW', now(), ARRAY['svc'], 0, 0, now(),
                             now() + interval '30 days');
                     COMMIT;"
                ))
                .await
        })
    };
    wait_for("the batch to queue behind the sort", std::time::Duration::from_secs(20), || async {
        waiting().await == 2
    })
    .await;
    gate.commit().await.unwrap();
    batch.await.unwrap().expect("the batch's claim and incident are stored");

    let expiry = sort.await.unwrap().expect("the sort ran").expect("it had its turn");
    assert_eq!(expiry.ranges, 1, "{expiry:?}");
    assert!(!super::exists(&db, &range).await, "the range was dropped");
    let incidents: Vec<String> =
        column(&db, &format!("SELECT {} FROM incidents WHERE trace_id = 't-late'", row_table())).await;
    assert_eq!(
        incidents,
        ["incidents_kept"],
        "the expired incident went with its range, the new one was kept"
    );
    assert_eq!(super::claims_pointing_at_an_incident(&db, "t-late").await, 1, "the claim points at it");
    assert_eq!((expiry.incidents, expiry.kept), (1, 1), "{expiry:?}");
}

/// A batch holding the incidents for longer than a change's lock timeout (a two-phase commit
/// over Citus workers under load): the pass asks again, and ends clean once the batch is done.
#[tokio::test]
async fn a_pass_waits_out_a_batch_slower_than_its_lock_timeout() {
    let (app, db, now, range) = quiet_trace_in_todays_range("t-slow").await;

    let mut batch = app.db().await;
    let batch = batch.transaction().await.unwrap();
    batch.batch_execute("LOCK TABLE incidents IN ROW EXCLUSIVE MODE").await.unwrap();
    let maintenance = app.maintenance.clone();
    let pass = tokio::spawn(async move { maintenance.pass_at(now + days(3), Turn::Wait).await });
    // Three times the lock timeout (500 ms): the pass has timed out at least twice by then.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!pass.is_finished(), "the pass waits for the batch");
    batch.commit().await.unwrap();
    let pass = pass.await.unwrap();
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!(pass.expired_rows.incident_ranges, 1, "{:?}", pass.expired_rows);
    assert!(!super::exists(&db, &range).await, "the range was dropped");
}

/// Batches that overlap, each holding the incidents longer than the lock timeout (a slow phase
/// of two-phase commits): one always holds them, and a new one takes them between two short
/// attempts, so the pass waits longer at each attempt, and gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_gets_its_locks_from_overlapping_batches_each_slower_than_its_lock_timeout() {
    let (app, db, now, range) = quiet_trace_in_todays_range("t-busy").await;
    let lock = "LOCK TABLE incidents IN ROW EXCLUSIVE MODE";
    let pass =
        among_overlapping_batches(&app.db.url(), lock, app.maintenance.pass_at(now + days(3), Turn::Wait))
            .await;
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!(pass.expired_rows.incident_ranges, 1, "{:?}", pass.expired_rows);
    assert!(!super::exists(&db, &range).await, "the range was dropped");
}

/// Ranges are sorted and dropped while batches keep writing to their traces: no deadlock and no
/// lock timeout (every pass clean), every write acknowledged, and afterwards still one incident
/// per trace, every claim pointing at its incident and every incident of a trace claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_ranges_are_dropped_while_batches_write_to_their_traces() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let app = spawn_app_with(&["--retention-logs", "1d", "--incident-retention", "10d"]).await;
    let db = app.db().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..3 {
        let (http, url, stop) =
            (reqwest::Client::new(), format!("http://{}/ingest/logs", app.addr), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut refused = 0;
            // Bounded: a few hundred batches at most, whatever the machine's speed.
            for n in 0..400 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let level = if n % 7 == 0 { "ERROR" } else { "INFO" };
                let logs: Vec<serde_json::Value> = (0..40)
                    .map(|t| log_at(&format!("t-{}", (n * 13 + t * 7 + writer) % 300), level, Utc::now()))
                    .collect();
                let status = http.post(&url).json(&logs).send().await.expect("request sent").status();
                refused += usize::from(status != StatusCode::ACCEPTED);
            }
            refused
        }));
    }
    for round in 0..5 {
        // Today's range again (the previous round dropped it), filled by the writers, then
        // sorted and dropped under them.
        let pass = app.maintenance.pass_at(Utc::now(), Turn::Wait).await;
        assert!(pass.errors.is_empty(), "round {round}: {:?}", pass.errors);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let pass = app.maintenance.pass_at(Utc::now() + days(3), Turn::Wait).await;
        assert!(pass.errors.is_empty(), "round {round}: {:?}", pass.errors);
        assert!(pass.expired_rows.incident_ranges >= 1, "round {round}: {:?}", pass.expired_rows);
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        assert_eq!(writer.await.unwrap(), 0, "every write acknowledged");
    }
    let doubled: Vec<String> = column(
        &db,
        "SELECT trace_id FROM incidents WHERE trace_key = trace_id GROUP BY trace_id HAVING count(*) > 1",
    )
    .await;
    assert!(doubled.is_empty(), "one incident per trace: {doubled:?}");
    let dangling: i64 = one(
        &db,
        "SELECT count(*) FROM incident_traces c WHERE NOT EXISTS (SELECT 1 FROM incidents i
             WHERE i.trace_id = c.trace_id AND i.trace_key = c.trace_id AND i.kept = c.kept AND i.detected_at = c.detected_at)",
    )
    .await;
    assert_eq!(dangling, 0, "every claim points at its incident");
    let unclaimed: i64 = one(
        &db,
        "SELECT count(*) FROM incidents i WHERE i.trace_key = i.trace_id
           AND NOT EXISTS (SELECT 1 FROM incident_traces c WHERE c.trace_id = i.trace_id)",
    )
    .await;
    assert_eq!(unclaimed, 0, "every incident of a trace claimed");
    let kept: i64 = one(&db, "SELECT count(*) FROM incidents_kept").await;
    assert!(kept > 0, "the analysed incidents were kept past their ranges");
}
