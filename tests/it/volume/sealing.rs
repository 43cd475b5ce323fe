//! Sealing (issue 23): a partition whose range ended SEAL_AFTER ago is rewritten into
//! compressed blocks; every reader gets exactly what the rows gave, a retry is still stored
//! once, late arrivals are kept and sealed later, nothing in the sealed form can be changed,
//! retention drops it whole keeping its evidence, and partitions from before are sealed by
//! the running service. In the Citus subset too: there a sealed partition becomes a columnar
//! table (store/sealing/columnar.rs) and every reader must still get what the rows gave.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use prodsentinel::maintenance::Maintenance;
use prodsentinel::store::partitions::Turn;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_postgres::Client;

use super::{day_partition, days, log_at, worker_read, A_DAY};
use crate::helpers::{
    citus_workers, column, one, post_otlp_json, spawn_app_dispatching_by_hand, spawn_app_with, wait_for,
    TestApp,
};

const SEAL_AN_HOUR_AFTER: [&str; 2] = ["--seal-after", "1h"];

/// The OTLP trace id of traffic `n` (never all zeros: that is no trace id).
fn trace_of(n: usize) -> String {
    format!("{:032x}", n + 0x100)
}

fn nanos(at: DateTime<Utc>) -> String {
    at.timestamp_nanos_opt().expect("a time within the nanosecond range").to_string()
}

/// At `at`, on trace [`trace_of`]`(n)`: an OTLP trace of three spans of two services (with an
/// event and attributes of every kind), a log inside it, a metric point; a legacy span and log
/// on `legacy-<n>`. Some of them errors (a failing span, ERROR logs) unless `healthy`.
async fn traffic(app: &TestApp, n: usize, at: DateTime<Utc>) {
    traffic_of(app, n, at, false).await
}

async fn traffic_of(app: &TestApp, n: usize, at: DateTime<Utc>, healthy: bool) {
    let trace = trace_of(n);
    let attrs = json!([
        {"key": "http.method", "value": {"stringValue": "GET"}},
        {"key": "http.status_code", "value": {"intValue": if healthy { "200" } else { "500" }}},
        {"key": "retry", "value": {"boolValue": true}},
        {"key": "ratio", "value": {"doubleValue": 0.25}},
        {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}}
    ]);
    let span = |id: &str, parent: &str, name: &str, offset_ms: i64, error: bool| {
        let start = at + Duration::milliseconds(offset_ms);
        json!({
            "traceId": trace, "spanId": id, "parentSpanId": parent, "name": name, "kind": 2,
            "startTimeUnixNano": nanos(start), "endTimeUnixNano": nanos(start + Duration::milliseconds(7)),
            "attributes": attrs,
            "events": [{"timeUnixNano": nanos(start), "name": "retrying", "attributes": [{"key": "attempt", "value": {"intValue": "2"}}]}],
            "status": if error { json!({"code": 2, "message": "boom"}) } else { json!({"code": 1}) }
        })
    };
    let resource = |service: &str| {
        json!({"attributes": [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "host.name", "value": {"stringValue": "node-7"}}]})
    };
    let traces = json!({"resourceSpans": [
        {"resource": resource("checkout"), "scopeSpans": [{"scope": {"name": "shop", "version": "1.2"}, "spans": [
            span("1000000000000001", "", "GET /cart", 0, false), span("1000000000000002", "1000000000000001", "load", 2, false)]}]},
        {"resource": resource("payments"), "scopeSpans": [{"scope": {"name": "pay"}, "spans": [
            span("2000000000000003", "1000000000000002", "charge", 3, !healthy && n.is_multiple_of(2))]}]}
    ]});
    let logs = json!({"resourceLogs": [{"resource": resource("payments"), "scopeLogs": [{"logRecords": [{
        "timeUnixNano": nanos(at + Duration::milliseconds(4)), "severityNumber": if healthy { 9 } else { 17 },
        "body": {"stringValue": if healthy { format!("card accepted {n}") } else { format!("card declined {n}") }},
        "traceId": trace, "spanId": "2000000000000003",
        "attributes": if healthy { json!([]) } else { json!([{"key": "exception.stacktrace", "value": {"stringValue": "at pay()"}}]) }}]}]}]});
    let metrics = json!({"resourceMetrics": [{"resource": resource("payments"), "scopeMetrics": [{"metrics": [{
        "name": "queue_depth", "unit": "1", "gauge": {"dataPoints": [{"timeUnixNano": nanos(at), "asInt": (n as i64).to_string(),
        "attributes": [{"key": "queue", "value": {"stringValue": "q1"}}]}]}}]}]}]});
    for (path, body) in [("/v1/traces", &traces), ("/v1/logs", &logs), ("/v1/metrics", &metrics)] {
        post_otlp_json(app, path, body).await;
    }
    let legacy_span = json!({
        "signal_id": uuid::Uuid::new_v4().to_string(), "trace_id": format!("legacy-{n}"), "span_id": "s1",
        "parent_span_id": null, "service_name": "legacy", "timestamp": at.to_rfc3339(),
        "duration_ms": 12.5, "status": "ok", "attributes": {"route": "/old"}
    });
    assert_eq!(app.post_json("/ingest/traces", &legacy_span).await.0, StatusCode::ACCEPTED);
    let log =
        log_at(&format!("legacy-{n}"), if !healthy && n.is_multiple_of(3) { "ERROR" } else { "INFO" }, at);
    assert_eq!(app.post_json("/ingest/logs", &log).await.0, StatusCode::ACCEPTED);
}

/// Everything the readers get for the traces `0..n` and the lists over them.
async fn answers(app: &TestApp, db: &Client, n: usize, at: DateTime<Utc>) -> BTreeMap<String, Value> {
    let mut answers = BTreeMap::new();
    let (since, until) = ((at - Duration::hours(1)).to_rfc3339(), (at + Duration::hours(1)).to_rfc3339());
    let mut paths = vec![
        "/query/signals?limit=500".to_owned(),
        "/query/signals?limit=7".to_owned(),
        "/query/signals?limit=7&offset=9".to_owned(),
        "/query/signals?service_name=payments&limit=50".to_owned(),
        "/query/signals?signal_type=metric".to_owned(),
        "/query/signals?level=ERROR".to_owned(),
        "/query/signals?q=declined%202".to_owned(),
        format!("/query/signals?start_time={}&end_time={}&limit=500", urlencode(&since), urlencode(&until)),
        "/query/incidents?limit=100".to_owned(),
        "/query/problems".to_owned(),
    ];
    for i in 0..n {
        let trace = trace_of(i);
        paths.push(format!("/query/traces/{trace}"));
        paths.push(format!("/query/traces/{trace}/tree"));
        paths.push(format!("/query/traces/legacy-{i}"));
        paths.push(format!("/query/signals?trace_id={trace}"));
        paths.push(format!("/jaeger/api/traces/{trace}"));
        answers.insert(format!("worker {trace}"), json!(worker_read(db, &trace).await));
        answers.insert(format!("worker legacy-{i}"), json!(worker_read(db, &format!("legacy-{i}")).await));
    }
    // Keyset pages: the cursor of one page leads to the same next page.
    let first = app.get_json("/query/signals?limit=11").await.1;
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    paths.push(format!("/query/signals?limit=11&cursor={cursor}"));
    for path in paths {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        answers.insert(path, body);
    }
    let incidents = app.get_json("/query/incidents?limit=100").await.1;
    for incident in incidents["items"].as_array().unwrap() {
        let path = format!("/query/incidents/{}/signals?limit=100", incident["id"].as_str().unwrap());
        answers.insert(path.clone(), app.get_json(&path).await.1);
    }
    answers
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

fn assert_same(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>, what: &str) {
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    for (key, value) in before {
        assert_eq!(&after[key], value, "{what}: {key} answers differently");
    }
}

async fn count(db: &Client, sql: &str) -> i64 {
    one(db, sql).await
}

/// What the seals made: on one node `blocks` blocks in all; on Citus none, but a columnar
/// table per sealed unit, holding every signal of its unit.
async fn assert_sealed_into(db: &Client, blocks: std::ops::RangeInclusive<i64>, what: &str) {
    let made = count(db, "SELECT count(*) FROM raw_signal_blocks").await;
    if citus_workers().is_empty() {
        assert!(blocks.contains(&made), "{what}: {made} blocks");
        return;
    }
    assert_eq!(made, 0, "no block on Citus");
    let tables =
        count(db, "SELECT count(*) FROM pg_partition_tree('raw_signal_columnar') WHERE isleaf").await;
    let units = count(db, "SELECT count(*) FROM raw_signal_units WHERE attached").await;
    assert_eq!(tables, units, "{what}: a columnar table per unit");
    let sealed =
        count(db, "SELECT coalesce(sum(signals), 0)::int8 FROM raw_signal_units WHERE attached").await;
    assert_eq!(
        count(db, "SELECT count(*) FROM raw_signal_columnar").await,
        sealed,
        "{what}: every signal sealed"
    );
}

/// Seals what is due at `now` with sealing on; returns the leaves sealed.
async fn seal(sealer: &Maintenance, now: DateTime<Utc>) -> Vec<String> {
    let report = sealer.pass_at(now, Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.sealed.unfinished.is_none());
    report.sealed.sealed.iter().map(|s| s.leaf.clone()).collect()
}

/// An app whose partitions for the day `days_ago` days back exist, its database, and a time
/// in that day.
async fn app_with_day(days_ago: i64) -> (TestApp, Client, DateTime<Utc>) {
    let app = spawn_app_dispatching_by_hand(&[]).await;
    let db = app.db().await;
    let old = Utc::now() - days(days_ago);
    assert!(app.maintenance.pass_at(old, Turn::Wait).await.errors.is_empty());
    (app, db, old)
}

/// The same with two days ago's traffic of trace 1 sealed, by the maintenance returned.
async fn sealed_day() -> (TestApp, Client, DateTime<Utc>, Maintenance) {
    let (app, db, old) = app_with_day(2).await;
    traffic(&app, 1, old).await;
    let sealer = app.maintenance_with(&SEAL_AN_HOUR_AFTER).await;
    assert_eq!(seal(&sealer, Utc::now()).await.len(), 3, "the day's three type partitions sealed");
    (app, db, old, sealer)
}

const TRACES: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_partition_answers_every_reader_as_its_rows_did_and_a_retry_is_stored_once() {
    let (app, db, old) = app_with_day(3).await;
    for n in 0..TRACES {
        traffic(&app, n, old + Duration::seconds(n as i64)).await;
    }
    let stored = count(&db, "SELECT count(*) FROM raw_signals").await;
    assert_eq!(stored, TRACES as i64 * 7);
    let before = answers(&app, &db, TRACES, old).await;

    let sealer = app.maintenance_with(&SEAL_AN_HOUR_AFTER).await;
    // Not before its range ended an hour ago: today's partitions are left alone.
    let sealed = seal(&sealer, Utc::now()).await;
    let mut expected: Vec<String> = ["log", "metric", "trace"].map(|t| day_partition(old, t)).to_vec();
    sealed.iter().for_each(|leaf| assert!(expected.contains(leaf), "{leaf} sealed"));
    expected.sort();
    let mut sealed = sealed;
    sealed.sort();
    assert_eq!(sealed, expected);
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signal_rows").await, 0, "no row left in row form");
    assert_sealed_into(&db, 3..=3, "one block per type: each holds fewer than 500 signals").await;
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signals").await, stored);
    assert_same(&before, &answers(&app, &db, TRACES, old).await, "after sealing");

    // The same exports and legacy bodies again: nothing new is stored.
    for n in 0..3 {
        traffic(&app, n, old + Duration::seconds(n as i64)).await;
    }
    // (the legacy bodies carry new signal ids: those are new signals, late arrivals)
    let late = count(&db, "SELECT count(*) FROM raw_signal_rows").await;
    assert_eq!(late, 3 * 2, "only the legacy bodies, with new ids, are stored again");
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signals").await, stored + late);

    // A retry of the very same legacy signal (same id and time) is recognised too.
    let row = db
        .query_one(
            r#"SELECT id::text, "timestamp" FROM raw_signals_sealed WHERE trace_id = 'legacy-5' AND signal_type = 'log'"#,
            &[],
        )
        .await
        .unwrap();
    let (id, at): (String, DateTime<Utc>) = (row.get(0), row.get(1));
    let mut retry = log_at("legacy-5", "INFO", at);
    retry["signal_id"] = json!(id);
    retry["message"] = json!(format!("INFO at {old_at}", old_at = at));
    assert_eq!(app.post_json("/ingest/logs", &retry).await.0, StatusCode::ACCEPTED);
    assert_eq!(
        count(&db, "SELECT count(*) FROM raw_signals").await,
        stored + late,
        "the retry is stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_arrivals_are_readable_and_sealed_once_they_stop() {
    let (app, db, old, sealer) = sealed_day().await;

    // A log stamped in the sealed day arrives now: stored in the day's log partition, read
    // with the sealed signals of its trace.
    let trace = trace_of(1);
    let late = log_at(&trace, "WARNING", old + Duration::minutes(1));
    assert_eq!(app.post_json("/ingest/logs", &late).await.0, StatusCode::ACCEPTED);
    let leaf = day_partition(old, "log");
    let in_rows: i64 = db.query_one(&format!("SELECT count(*) FROM {leaf}"), &[]).await.unwrap().get(0);
    assert_eq!(in_rows, 1, "the late log waits in row form");
    let read = worker_read(&db, &trace).await;
    assert_eq!(read.len(), 5, "the worker reads the four sealed signals of the trace and the late one");
    let api = app.get_json(&format!("/query/traces/{trace}")).await.1;
    let before = (read, api);

    // Not sealed while late signals keep coming; sealed an hour after the last one.
    assert!(seal(&sealer, Utc::now() + Duration::minutes(30)).await.is_empty());
    assert_eq!(seal(&sealer, Utc::now() + Duration::minutes(61)).await, std::slice::from_ref(&leaf));
    let units: Vec<String> = column(
        &db,
        &format!("SELECT leaf || ' ' || signals FROM raw_signal_units WHERE leaf = '{leaf}' ORDER BY unit"),
    )
    .await;
    assert_eq!(
        units,
        [format!("{leaf} 2"), format!("{leaf} 1")],
        "the day's two logs sealed, then the late one"
    );
    assert_eq!(count(&db, &format!("SELECT count(*) FROM {leaf}")).await, 0);
    let after = (worker_read(&db, &trace).await, app.get_json(&format!("/query/traces/{trace}")).await.1);
    assert_eq!(after, before, "read the same, sealed in two units");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_sealed_can_be_changed() {
    let (_app, db, _, _) = sealed_day().await;
    // The row form's tables (five days of ranges: two before today, today and two ahead), the
    // three units' blocks and trace indexes with their parents, the parent of seals under way.
    let checked = crate::store::assert_every_change_is_refused(&db).await;
    assert_eq!(checked, 1 + 5 * 4 + 1 + 2 * (1 + 3) + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_sealed_units_whole_and_keeps_their_evidence() {
    let (app, db, old) = app_with_day(3).await;
    for n in 0..TRACES {
        traffic_of(&app, n, old + Duration::seconds(n as i64), true).await;
    }
    // One trace's incident was analysed (by the worker, which moved it on): its signals are
    // evidence; the rest is healthy traffic nobody analysed.
    let evidence = trace_of(4);
    db.execute("UPDATE incidents SET status = 'INVESTIGATING' WHERE trace_id = $1", &[&evidence])
        .await
        .unwrap();
    let before =
        (worker_read(&db, &evidence).await, app.get_json(&format!("/query/traces/{evidence}")).await.1);
    assert_eq!(before.0.len(), 4, "three spans and a log");
    let sealer = app.maintenance_with(&SEAL_AN_HOUR_AFTER).await;
    assert_eq!(seal(&sealer, Utc::now()).await.len(), 3);

    let args: Vec<&str> = A_DAY.iter().copied().chain(SEAL_AN_HOUR_AFTER).collect();
    let expiring = app.maintenance_with(&args).await;
    let report = expiring.pass_at(Utc::now(), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let dropped: Vec<(String, u64)> =
        report.dropped.iter().map(|d| (d.name.clone(), d.kept_signals)).collect();
    for kind in ["log", "metric", "trace"] {
        // The trace's three spans and its log; its metric point is keyed by service and window.
        let kept = match kind {
            "trace" => 3,
            "log" => 1,
            _ => 0,
        };
        assert!(dropped.contains(&(day_partition(old, kind), kept)), "{kind}: {dropped:?}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signal_units").await, 0, "every unit dropped");
    let sealed_parent = if citus_workers().is_empty() { "raw_signal_blocks" } else { "raw_signal_columnar" };
    let tree = format!("SELECT count(*) FROM pg_partition_tree('{sealed_parent}')");
    assert_eq!(count(&db, &tree).await, 1, "{sealed_parent} holds nothing but itself");
    let others: i64 = db
        .query_one("SELECT count(*) FROM raw_signals WHERE trace_id <> $1", &[&evidence])
        .await
        .unwrap()
        .get(0);
    assert_eq!(others, 0, "the healthy traffic went with its units");
    let after =
        (worker_read(&db, &evidence).await, app.get_json(&format!("/query/traces/{evidence}")).await.1);
    assert_eq!(after, before, "the evidence is read exactly as before, now in row form");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_from_before_sealing_are_sealed_by_the_running_service_while_it_ingests() {
    let app = spawn_app_dispatching_by_hand(&[]).await;
    let db = app.db().await;
    for days_ago in [4, 3] {
        let at = Utc::now() - days(days_ago);
        assert!(app.maintenance.pass_at(at, Turn::Wait).await.errors.is_empty());
        for n in 0..4 {
            traffic(&app, n + 10 * days_ago as usize, at + Duration::seconds(n as i64)).await;
        }
    }
    let old_traces: Vec<String> = (30..34).chain(40..44).map(trace_of).collect();
    let mut before = Vec::new();
    for trace in &old_traces {
        before.push((worker_read(&db, trace).await, app.get_json(&format!("/query/traces/{trace}")).await.1));
    }
    let stored = count(&db, "SELECT count(*) FROM raw_signals").await;
    // An instance with sealing on starts: its maintenance seals the six old partitions while
    // the first instance keeps taking today's signals.
    let _sealing = app.second_instance(&SEAL_AN_HOUR_AFTER).await;
    let mut sent = 0;
    wait_for("the six old partitions sealed", StdDuration::from_secs(60), || {
        sent += 1;
        let (app, db, n) = (&app, &db, 1000 + sent);
        async move {
            traffic(app, n, Utc::now()).await;
            count(db, "SELECT count(*) FROM raw_signal_units WHERE attached").await == 6
        }
    })
    .await;
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signal_units WHERE NOT attached").await, 0);
    let today = count(&db, "SELECT count(*) FROM raw_signal_rows").await;
    assert_eq!(today, sent as i64 * 7, "every signal sent meanwhile stored, in row form");
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signals").await, stored + today);
    for (trace, before) in old_traces.iter().zip(before) {
        let after = (worker_read(&db, trace).await, app.get_json(&format!("/query/traces/{trace}")).await.1);
        assert_eq!(after, before, "{trace} reads the same sealed");
    }
}

/// Every page of a list walked with its cursor, and a few with an offset.
async fn walk(app: &TestApp, query: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut path = format!("/query/signals?{query}");
    for _ in 0..100 {
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        let next = page["next_cursor"].as_str().map(str::to_owned);
        pages.push(page);
        match next {
            Some(cursor) => path = format!("/query/signals?{query}&cursor={cursor}"),
            None => return pages,
        }
    }
    panic!("{query}: more than 100 pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_many_sealed_blocks_are_those_of_the_rows() {
    let app = spawn_app_dispatching_by_hand(&[]).await;
    let db = app.db().await;
    let old = Utc::now() - days(2);
    let day = old.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    assert!(app.maintenance.pass_at(old, Turn::Wait).await.errors.is_empty());
    // 6,000 logs over the day in 24 traces of four services, sent out of time order: twelve
    // blocks whose times overlap.
    for batch in 0..60 {
        let logs: Vec<Value> = (0..100)
            .map(|i| {
                let n = (batch * 7919 + i * 104_729) % 6000;
                let mut log = log_at(
                    &format!("list-{}", n % 24),
                    if n % 10 == 0 { "ERROR" } else { "INFO" },
                    day + Duration::seconds(n as i64 * 14),
                );
                log["service_name"] = json!(format!("svc-{}", n % 4));
                log
            })
            .collect();
        assert_eq!(app.post_json("/ingest/logs", &json!(logs)).await.0, StatusCode::ACCEPTED);
    }
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signals").await, 6000);
    let (from, to) = (
        urlencode(&(day + Duration::hours(3)).to_rfc3339()),
        urlencode(&(day + Duration::hours(9)).to_rfc3339()),
    );
    let queries = [
        "limit=500".to_owned(),
        "limit=37&service_name=svc-2".to_owned(),
        "limit=100&level=ERROR".to_owned(),
        format!("limit=250&start_time={from}&end_time={to}"),
        "limit=50&signal_type=log&service_name=svc-1&q=ERROR".to_owned(),
    ];
    let mut before = Vec::new();
    for query in &queries {
        before.push(walk(&app, query).await);
    }
    let offsets = ["limit=20&offset=2500", "limit=20&offset=5990", "limit=5&offset=6000"];
    for query in offsets {
        before.push(vec![app.get_json(&format!("/query/signals?{query}")).await.1]);
    }
    let sealer = app.maintenance_with(&SEAL_AN_HOUR_AFTER).await;
    assert_eq!(seal(&sealer, Utc::now()).await, [day_partition(old, "log")]);
    assert_sealed_into(&db, 12..=12, "twelve blocks of 500").await;
    let mut after = Vec::new();
    for query in &queries {
        after.push(walk(&app, query).await);
    }
    for query in offsets {
        after.push(vec![app.get_json(&format!("/query/signals?{query}")).await.1]);
    }
    for (query, (before, after)) in
        queries.iter().map(String::as_str).chain(offsets).zip(before.iter().zip(&after))
    {
        assert_eq!(before.len(), after.len(), "{query}: as many pages");
        for (page, (b, a)) in before.iter().zip(after).enumerate() {
            assert_eq!(a, b, "{query}: page {page}");
        }
    }
    assert_eq!(before[0].len(), 13, "the whole list: twelve full pages of 500, then an empty one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sealing_at_once_seal_each_signal_once() {
    let (app, db, old) = app_with_day(2).await;
    // More than two steps' worth of logs (STEP_SIGNALS each), written straight to the day's
    // partition: both instances get to step the same seal.
    let signals = 2 * prodsentinel::store::sealing::STEP_SIGNALS + 7_000;
    db.execute(
        r#"INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload)
           SELECT gen_random_uuid(), 'log', 'many-' || (g / 5), 'svc-' || (g % 3),
                  $1::timestamptz + g * interval '100 ms', jsonb_build_object('level', 'INFO', 'message', 'row ' || g)
           FROM generate_series(1, $2::int8) AS g"#,
        &[&(old.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc()), &signals],
    )
    .await
    .unwrap();
    // Each seals until nothing is left (a maintenance pass stops after its few seconds and the
    // next one resumes: how many passes a seal takes is the machine's speed, not the point).
    let (one, two) = (sealer_store(&app).await, sealer_store(&app).await);
    let now = Utc::now();
    let hour = StdDuration::from_secs(3600);
    let (a, b) = tokio::join!(one.seal(now, Turn::Wait, hour, 1.0), two.seal(now, Turn::Wait, hour, 1.0));
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert!(a.unfinished.is_none() && b.unfinished.is_none(), "{a:?} {b:?}");
    let units: Vec<String> =
        column(&db, "SELECT leaf || ' ' || signals || ' ' || attached FROM raw_signal_units").await;
    assert_eq!(units, [format!("{} {signals} true", day_partition(old, "log"))]);
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signals").await, signals);
    assert_eq!(count(&db, "SELECT count(DISTINCT id) FROM raw_signals").await, signals);
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signal_rows").await, 0);
    let expected = (signals + 499) / 500;
    assert_sealed_into(&db, expected..=expected + 2, "a step's last block may be short").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_being_sealed_is_read_once_its_records_of_unknown_time_included() {
    let (app, db, old) = app_with_day(2).await;
    traffic(&app, 1, old).await;
    // A record stored without a time, back when that day's partition was the current one.
    db.execute(
        r#"INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload, time_unknown)
           VALUES (gen_random_uuid(), 'log', $1, 'checkout', $2, '{"level": "INFO", "message": "no time"}', true)"#,
        &[&trace_of(1), &old],
    )
    .await
    .unwrap();
    let trace = trace_of(1);
    let before = (worker_read(&db, &trace).await, app.get_json(&format!("/query/traces/{trace}")).await.1);
    assert_eq!(before.0.len(), 5);
    let lists = app.get_json("/query/signals?limit=100").await.1;
    // A seal begun and left after its first step (no time budget): the partition is being
    // sealed, its timeless record already copied to the one that took its place.
    seal_begun(&app).await;
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signal_units WHERE NOT attached").await, 1);
    let during = (worker_read(&db, &trace).await, app.get_json(&format!("/query/traces/{trace}")).await.1);
    assert_eq!(during, before, "read once while being sealed");
    assert_eq!(app.get_json("/query/signals?limit=100").await.1, lists);
    // Finished: the same again, the timeless record in row form.
    seal(&app.maintenance_with(&SEAL_AN_HOUR_AFTER).await, Utc::now()).await;
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signal_units WHERE NOT attached").await, 0);
    assert_eq!(
        (worker_read(&db, &trace).await, app.get_json(&format!("/query/traces/{trace}")).await.1),
        before
    );
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signal_rows WHERE time_unknown").await, 1);
}

/// The store of an instance of its own with sealing on (an hour after a range ends).
async fn sealer_store(app: &TestApp) -> prodsentinel::store::Store {
    let redis = app.redis.url();
    let config = crate::helpers::test_config(&app.db, &["--seal-after", "1h", "--redis-url", &redis]);
    prodsentinel::App::build(config).await.expect("an instance builds").store().clone()
}

/// A seal of the day's partitions begun by its own instance and left after its first step.
async fn seal_begun(app: &TestApp) {
    let sealer = sealer_store(app).await;
    let pass = sealer.seal(Utc::now(), Turn::Wait, StdDuration::ZERO, 1.0).await.unwrap().unwrap();
    assert!(pass.unfinished.is_some(), "{pass:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_unknown_time_retried_while_its_partition_is_sealed_is_stored_once() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let trace = [7u8; 16];
    let hex: String = trace.iter().map(|b| format!("{b:02x}")).collect();
    let export = |app: &TestApp| {
        let addr = format!("http://{}", app.grpc_addr);
        async move {
            let mut client = LogsServiceClient::connect(addr).await.unwrap();
            client.export(super::idempotency::timeless_logs(trace)).await.expect("an export");
        }
    };
    // The three records as the service stores them (their ids come from their content), learnt
    // from an instance of their own.
    let scratch = spawn_app_with(&[]).await;
    export(&scratch).await;
    let learnt = scratch
        .db()
        .await
        .query(
            "SELECT r.id, r.service_name, r.payload, r.shared_id, s.resource, s.scope
             FROM raw_signals r JOIN (SELECT * FROM signal_shared) s USING (shared_id) WHERE r.trace_id = $1",
            &[&hex],
        )
        .await
        .unwrap();
    assert_eq!(learnt.len(), 3);
    // Stored two days ago, when that day's partition was the current one, beside a trace.
    let (app, db, old) = app_with_day(2).await;
    traffic(&app, 1, old).await;
    for row in &learnt {
        let (id, shared): (uuid::Uuid, uuid::Uuid) = (row.get(0), row.get(3));
        let (service, payload): (String, Value) = (row.get(1), row.get(2));
        let (resource, scope): (Value, Value) = (row.get(4), row.get(5));
        db.execute(
            "INSERT INTO signal_shared (shared_id, resource, scope) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&shared, &resource, &scope],
        )
        .await
        .unwrap();
        db.execute(
            r#"INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload, time_unknown, shared_id)
               VALUES ($1, 'log', $2, $3, $4, $5, true, $6)"#,
            &[&id, &hex, &service, &old, &payload, &shared],
        )
        .await
        .unwrap();
    }
    let of_trace = format!("SELECT count(*) FROM raw_signals WHERE trace_id = '{hex}'");
    let stored = || count(&db, &of_trace);
    assert_eq!(stored().await, 3);
    seal_begun(&app).await;
    assert_eq!(count(&db, "SELECT count(*) FROM raw_signal_units WHERE NOT attached").await, 1);
    // The exporter retries them now: recognised, wherever the seal keeps them meanwhile.
    export(&app).await;
    assert_eq!(stored().await, 3, "the retry is recognised while the partition is being sealed");
    seal(&app.maintenance_with(&SEAL_AN_HOUR_AFTER).await, Utc::now()).await;
    export(&app).await;
    assert_eq!(stored().await, 3, "and once it is sealed");
    let in_rows = format!("SELECT count(*) FROM raw_signal_rows WHERE trace_id = '{hex}' AND time_unknown");
    assert_eq!(count(&db, &in_rows).await, 3, "records of unknown time stay in row form");
}
