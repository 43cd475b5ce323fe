//! `GET /query/services` from the counts kept per service, type and minute (store/activity.rs):
//! over any range, before and after merges, after partitions expire and while batches and
//! merges run at once, its answer is what counting the stored signals gives.

use chrono::{DateTime, Duration, DurationRound, Utc};
use prodsentinel::model::payload::is_error_sql;
use prodsentinel::store::partitions::{Turn, MAINTENANCE_LOCK_KEY};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_postgres::Client;

use super::{days, log_at, A_DAY};
use crate::helpers::{one, spawn_app, spawn_app_dispatching_by_hand, TestApp};

/// One service's line: name, logs, traces, metrics, errors, last signal.
type Line = (String, i64, i64, i64, i64, DateTime<Utc>);

/// The answer by counting the stored signals, as the endpoint did before the counts existed.
pub async fn counted(db: &Client, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Line> {
    let sql = format!(
        r#"SELECT service_name, count(*) FILTER (WHERE signal_type = 'log'),
                  count(*) FILTER (WHERE signal_type = 'trace'), count(*) FILTER (WHERE signal_type = 'metric'),
                  count(*) FILTER (WHERE {}), max("timestamp")
           FROM raw_signals WHERE "timestamp" >= $1 AND "timestamp" < $2
           GROUP BY service_name ORDER BY service_name"#,
        is_error_sql()
    );
    let rows = db.query(&sql, &[&start, &end]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))).collect()
}

/// The endpoint's answer over `[start, end)`, and the range it says it counted.
pub async fn answered(
    app_addr: std::net::SocketAddr,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>, Vec<Line>) {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let url = format!("http://{app_addr}/query/services?start_time={}&end_time={}", time(start), time(end));
    let answer = reqwest::get(&url).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "{url}");
    let body: Value = answer.json().await.unwrap();
    let lines = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let count = |key: &str| item["signals"][key].as_i64().unwrap();
            let last_seen = item["last_seen"].as_str().unwrap().parse().unwrap();
            let name = item["service_name"].as_str().unwrap().to_owned();
            (
                name,
                count("log"),
                count("trace"),
                count("metric"),
                item["error_count"].as_i64().unwrap(),
                last_seen,
            )
        })
        .collect();
    let bound = |key: &str| body[key].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    (bound("start_time"), bound("end_time"), lines)
}

/// `[start, end)` widened to whole minutes.
fn whole_minutes(start: DateTime<Utc>, end: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let floor = start.duration_trunc(Duration::minutes(1)).unwrap();
    let end_floor = end.duration_trunc(Duration::minutes(1)).unwrap();
    (floor, if end_floor == end { end } else { end_floor + Duration::minutes(1) })
}

/// A deterministic spread of numbers (a linear congruential generator): the same run each time.
struct Spread(u64);

impl Spread {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// `n` signals of every kind for services `svc-0`..`svc-3` between `from` and `from + span`, some
/// of them errors, some exactly on whole hours and minutes and a microsecond before them.
async fn send(app: &TestApp, spread: &mut Spread, from: DateTime<Utc>, span: Duration, n: usize) {
    let hour = from.duration_trunc(Duration::hours(1)).unwrap() + Duration::hours(1);
    let edges = [hour, hour - Duration::microseconds(1), hour + Duration::minutes(7)];
    let (mut logs, mut spans, mut points) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let at = match edges.get(i % 40) {
            Some(edge) if *edge < from + span => *edge,
            _ => from + Duration::microseconds(spread.next(span.num_microseconds().unwrap() as u64) as i64),
        };
        let service = format!("svc-{}", spread.next(4));
        let trace = format!("t-{}", spread.next(1_000_000));
        match i % 3 {
            0 => {
                let level = ["INFO", "ERROR", "WARNING", "CRITICAL"][spread.next(4) as usize];
                let mut log = log_at(&trace, level, at);
                log["service_name"] = json!(service);
                logs.push(log);
            }
            1 => spans.push(json!({
                "status": (["OK", "ERROR", "UNSET"][spread.next(3) as usize]),
                "signal_id": uuid::Uuid::new_v4(), "trace_id": trace, "span_id": "s1", "service_name": service,
                "timestamp": at.to_rfc3339(), "name": "GET /cart", "duration_ms": 3
            })),
            _ => points.push(json!({
                "signal_id": uuid::Uuid::new_v4(), "trace_id": trace, "service_name": service,
                "timestamp": at.to_rfc3339(), "metric_name": "queue_depth", "value": 3, "unit": "1"
            })),
        }
    }
    for (path, bodies) in [("/ingest/logs", logs), ("/ingest/traces", spans), ("/ingest/metrics", points)] {
        for chunk in bodies.chunks(200) {
            let (status, answer) = app.post_json(path, &json!(chunk)).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{path}: {answer}");
        }
    }
}

/// Ranges of every shape over `[from, to)`: whole hours, whole minutes, parts of a minute,
/// bounds on the signals' own edges, and arbitrary ones (answered on whole minutes).
fn ranges(
    spread: &mut Spread,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let hour = from.duration_trunc(Duration::hours(1)).unwrap();
    let mut ranges = vec![
        (from - days(1), to + days(1)),
        (hour, hour + Duration::hours(2)),
        (hour + Duration::hours(1), hour + Duration::hours(1) + Duration::minutes(7)),
        (hour + Duration::hours(1) - Duration::microseconds(1), hour + Duration::hours(1)),
        (hour + Duration::minutes(59), hour + Duration::minutes(61) + Duration::seconds(30)),
        (hour + Duration::seconds(1), hour + Duration::seconds(50)),
    ];
    let span = (to - from).num_microseconds().unwrap() as u64;
    for _ in 0..40 {
        let a = from + Duration::microseconds(spread.next(span) as i64);
        let b = from + Duration::microseconds(spread.next(span) as i64);
        if a != b {
            ranges.push((a.min(b), a.max(b)));
        }
    }
    ranges
}

async fn assert_all_agree(app: &TestApp, db: &Client, ranges: &[(DateTime<Utc>, DateTime<Utc>)], when: &str) {
    for &(start, end) in ranges {
        let (counted_from, counted_to) = whole_minutes(start, end);
        let expected = counted(db, counted_from, counted_to).await;
        let answer = answered(app.addr, start, end).await;
        assert_eq!(answer, (counted_from, counted_to, expected), "{when}: [{start}, {end})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counts_answer_every_range_as_counting_the_signals_would_before_and_after_merges() {
    let app = spawn_app().await;
    let db = app.db().await;
    // The maintenance lock held: the service's own merges (every few seconds) wait, so the
    // batches' rows are all there is at first.
    let holder = app.db().await;
    holder.execute("SELECT pg_advisory_lock($1)", &[&MAINTENANCE_LOCK_KEY]).await.unwrap();
    let mut spread = Spread(21);
    let from = Utc::now() - Duration::hours(3);
    send(&app, &mut spread, from, Duration::hours(3), 1_500).await;
    let ranges = ranges(&mut spread, from, Utc::now());
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM service_minutes WHERE merged").await, 0);
    assert_all_agree(&app, &db, &ranges, "as stored, not merged").await;
    holder.execute("SELECT pg_advisory_unlock($1)", &[&MAINTENANCE_LOCK_KEY]).await.unwrap();

    app.maintenance.merge_activity(Turn::Wait).await.expect("merged");
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM service_minutes WHERE NOT merged").await, 0);
    assert!(one::<i64>(&db, "SELECT count(*) FROM service_hours").await >= 4 * 3, "hours counted");
    assert_all_agree(&app, &db, &ranges, "merged").await;

    // Late signals land in minutes and hours already merged: both kinds of row count at once.
    send(&app, &mut spread, from, Duration::hours(3), 600).await;
    assert_all_agree(&app, &db, &ranges, "merged, then more stored").await;
    app.maintenance.merge_activity(Turn::Wait).await.expect("merged");
    assert_all_agree(&app, &db, &ranges, "merged again").await;
    let total: i64 = one(&db, "SELECT sum(signals)::int8 FROM service_hours").await;
    assert_eq!(total, app.count_signals().await, "the hours hold every signal once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stored_while_merges_run_are_each_counted_once() {
    let app = spawn_app().await;
    let db = app.db().await;
    let from = Utc::now() - Duration::minutes(90);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let merging = {
        let (maintenance, stop) = (app.maintenance.clone(), stop.clone());
        tokio::spawn(async move {
            let mut merges = 0;
            // Bounded: the senders finish in seconds.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < deadline {
                maintenance.merge_activity(Turn::Wait).await.expect("merged");
                merges += 1;
            }
            merges
        })
    };
    let mut senders = tokio::task::JoinSet::new();
    let app = std::sync::Arc::new(app);
    for seed in 0..4 {
        let app = app.clone();
        senders.spawn(async move {
            let mut spread = Spread(seed);
            for _ in 0..5 {
                send(&app, &mut spread, from, Duration::minutes(90), 300).await;
            }
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let merges = merging.await.unwrap();
    assert!(merges > 1, "merges ran while batches were stored: {merges}");
    let ranges = ranges(&mut Spread(99), from, Utc::now());
    assert_all_agree(&app, &db, &ranges, "after concurrent merges").await;
    app.maintenance.merge_activity(Turn::Wait).await.expect("merged");
    assert_all_agree(&app, &db, &ranges, "merged").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_partitions_take_their_counts_with_them_and_evidence_keeps_its_own() {
    let app = spawn_app_dispatching_by_hand(&[]).await;
    let db = app.db().await;
    let old = Utc::now() - days(3);
    assert!(app.maintenance.pass_at(old, Turn::Wait).await.errors.is_empty());
    let mut spread = Spread(7);
    send(&app, &mut spread, old, Duration::hours(2), 300).await;
    app.maintenance.merge_activity(Turn::Wait).await.expect("merged");
    let window = whole_minutes(old - Duration::hours(1), old + Duration::hours(3));
    let before = answered(app.addr, window.0, window.1).await.2;
    assert_eq!(before, counted(&db, window.0, window.1).await);

    // Every retention shortened to a day: that day's partitions expire, keeping the evidence.
    let redis = app.redis.url();
    let args: Vec<&str> = ["--redis-url", &redis].into_iter().chain(A_DAY).collect();
    let shorter =
        prodsentinel::App::build(crate::helpers::test_config(&app.db, &args)).await.expect("starts");
    let report = shorter.maintenance().pass_at(Utc::now(), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM service_activity_stale").await, 0, "recounted");
    // The traces with errors asked for analyses: their signals are evidence and stay.
    let left = answered(app.addr, window.0, window.1).await.2;
    assert_eq!(left, counted(&db, window.0, window.1).await);
    let total = |lines: &[Line]| lines.iter().map(|l| l.1 + l.2 + l.3).sum::<i64>();
    assert!(total(&left) > 0 && total(&left) < total(&before), "{} of {} left", total(&left), total(&before));
    let minutes_kept = |table: &str| {
        format!(
            r#"SELECT count(*) FROM (SELECT DISTINCT service_name, signal_type, date_bin('1 minute', {table}, timestamptz 'epoch')
               FROM {} WHERE {table} < now() - interval '2 days') AS m"#,
            if table == "minute" { "service_minutes" } else { "raw_signals" }
        )
    };
    assert_eq!(
        one::<i64>(&db, &minutes_kept("minute")).await,
        one::<i64>(&db, &minutes_kept("\"timestamp\"")).await,
        "the minutes of the expired signals are gone, the evidence's stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_stored_before_the_counts_existed_are_counted_once_by_the_first_merge() {
    let app = spawn_app().await;
    let db = app.db().await;
    let mut spread = Spread(3);
    let from = Utc::now() - Duration::hours(2);
    send(&app, &mut spread, from, Duration::hours(2), 600).await;
    // The state migration 0013 leaves a database that already holds signals in: no counts,
    // everything stale.
    db.batch_execute(
        "BEGIN; DELETE FROM service_minutes; DELETE FROM service_hours;
         INSERT INTO service_activity_stale VALUES (NULL, NULL, NULL); COMMIT;",
    )
    .await
    .unwrap();
    app.maintenance.merge_activity(Turn::Wait).await.expect("merged");
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM service_activity_stale").await, 0);
    let ranges = ranges(&mut spread, from, Utc::now());
    assert_all_agree(&app, &db, &ranges, "counted from the signals").await;
}
