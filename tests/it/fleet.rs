//! Three receivers on one database and one Redis, as behind a load balancer, in two deploys:
//!
//! 1. Three start together on a fresh database, take load on all three transports each, and
//!    run their outbox dispatchers and maintenance side by side: every acknowledged signal is
//!    stored once, each problem is analysed once (one Celery task per problem, none twice,
//!    every outbox row dispatched once), partitions are created once, no deadlock.
//! 2. The next deploy of three, with a retention the old data is past: the expired partition
//!    is dropped once, by one of them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use prodsentinel::maintenance::Maintenance;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::reliability::load::{Kind, Load, Report, Targets};
use crate::helpers::{column, one, test_config, wait_for, RedisDb, TestDb};
use crate::metrics::scrape_addr;

struct Member {
    api: SocketAddr,
    targets: Targets,
    maintenance: Maintenance,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Three instances built at the same moment (migrations and partitions raced for).
async fn deploy(db: &TestDb, redis: &RedisDb, extra: &[&str]) -> Vec<Member> {
    let redis_url = redis.url();
    let args: Vec<&str> =
        ["--redis-url", redis_url.as_str()].into_iter().chain(extra.iter().copied()).collect();
    let builds = (0..3).map(|_| prodsentinel::App::build(test_config(db, &args)));
    let apps = futures_util::future::join_all(builds).await;
    apps.into_iter()
        .map(|app| {
            let app = app.expect("each instance starts");
            let (api, grpc, http) = (app.api_addr(), app.grpc_addr(), app.http_addr());
            let maintenance = app.maintenance();
            let (stop, stopped) = oneshot::channel::<()>();
            let server = tokio::spawn(app.run_until(async {
                let _ = stopped.await;
            }));
            let targets = Targets { api: api.to_string(), grpc: grpc.to_string(), http: http.to_string() };
            Member { api, targets, maintenance, stop, server }
        })
        .collect()
}

async fn stop_all(fleet: Vec<Member>) {
    for member in fleet {
        let _ = member.stop.send(());
        member.server.await.unwrap().expect("stops cleanly");
    }
}

/// The sum over the fleet of the counters whose name starts with `prefix`.
async fn fleet_sum(fleet: &[Member], prefix: &str) -> f64 {
    let mut total = 0.0;
    for member in fleet {
        let metrics = scrape_addr(member.api).await;
        total += metrics.iter().filter(|(name, _)| name.starts_with(prefix)).map(|(_, v)| v).sum::<f64>();
    }
    total
}

/// Names of one signal type's partition of an interval.
fn is_type_partition(name: &str) -> bool {
    ["_log", "_trace", "_metric"].iter().any(|t| name.ends_with(t))
}

/// The interval partitions among `names` (each split into one partition per signal type).
fn intervals(names: &HashSet<String>) -> usize {
    names.iter().filter(|name| !is_type_partition(name)).count()
}

async fn range_partitions(db: &tokio_postgres::Client) -> HashSet<String> {
    let names: Vec<String> = column(
        db,
        "SELECT relid::regclass::text FROM pg_partition_tree('raw_signal_rows') WHERE relid::regclass::text LIKE 'raw_signals_p%'",
    )
    .await;
    names.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_receivers_share_one_database_and_redis_without_loss_duplicates_or_double_work() {
    let _turn = crate::helpers::machine_load_turn().await;
    let db = TestDb::new();
    let redis = RedisDb::acquire().await;
    let fleet =
        deploy(&db, &redis, &["--analysis-debounce-seconds", "0", "--dispatch-interval-ms", "100"]).await;
    let client = db.connect().await;

    // Partitions: made once, by whichever instance got the lock first.
    let partitions = range_partitions(&client).await;
    assert!(!partitions.is_empty());
    let created = fleet_sum(&fleet, "prodsentinel_retention_partitions_created").await;
    assert_eq!(created as usize, intervals(&partitions), "each partition created by exactly one instance");

    // Three days old, kept forever by this deploy: into the default partition (no range holds
    // it), then into partitions of their own by a pass as at that day, which the three run at
    // once (as a deploy running since then would have made them).
    let three_days_ago = Utc::now() - chrono::Duration::days(3);
    for i in 0..5 {
        let body = json!({"signal_id": uuid::Uuid::new_v4(), "trace_id": "t-old", "service_name": "old",
                          "timestamp": three_days_ago.to_rfc3339(), "level": "INFO", "message": format!("old {i}")});
        let sent = reqwest::Client::new()
            .post(format!("http://{}/ingest/logs", fleet[i % 3].api))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), StatusCode::ACCEPTED);
    }
    let passes = fleet
        .iter()
        .map(|m| m.maintenance.pass_at(three_days_ago, prodsentinel::store::partitions::Turn::Wait));
    let reports = futures_util::future::join_all(passes).await;
    let made: Vec<&String> = reports.iter().flat_map(|r| &r.created.partitions).collect();
    let old_partitions: HashSet<String> =
        range_partitions(&client).await.difference(&partitions).cloned().collect();
    assert!(!old_partitions.is_empty(), "the old day has a partition now");
    assert_eq!(made.len(), intervals(&old_partitions), "created once between the three passes: {made:?}");
    assert!(
        reports.iter().all(|r| r.errors.is_empty()),
        "{:?}",
        reports.iter().map(|r| &r.errors).collect::<Vec<_>>()
    );

    // Load on every instance, over all three transports.
    let loads: Vec<Load> = fleet
        .iter()
        .map(|m| Load::start(&m.targets, &[Kind::Grpc, Kind::OtlpHttp, Kind::Legacy], 2, 20))
        .collect();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut report = Report::default();
    for load in loads {
        report.merge(load.finish(Duration::from_secs(60)).await);
    }
    // The old logs sent above are part of what must be stored, once.
    report.sent.insert("t-old".into(), 5);
    report.acked.insert("t-old".into());
    let stored = report.verify_all(&client).await;

    // Analyses: every outbox row dispatched once between three dispatchers; one task per
    // problem (one window), no trace twice.
    wait_for("every analysis request dispatched", Duration::from_secs(30), || async {
        one::<i64>(&client, "SELECT count(*) FROM analysis_outbox WHERE status = 'pending'").await == 0
    })
    .await;
    let problems: i64 = one(&client, "SELECT count(*) FROM problems").await;
    let requests: i64 = one(&client, "SELECT count(*) FROM analysis_outbox").await;
    let sent: i64 = one(&client, "SELECT count(*) FROM analysis_outbox WHERE status = 'sent'").await;
    let messages: Vec<String> =
        redis::cmd("LRANGE").arg("celery").arg(0).arg(-1).query(&mut redis.connection()).unwrap();
    let envelopes: Vec<Value> = messages.iter().map(|m| serde_json::from_str(m).unwrap()).collect();
    let task_ids: HashSet<&str> = envelopes.iter().map(|e| e["headers"]["id"].as_str().unwrap()).collect();
    let traces: HashSet<&str> =
        envelopes.iter().map(|e| e["headers"]["argsrepr"].as_str().unwrap()).collect();
    assert!(problems > 0, "the load's errors make problems");
    assert_eq!(requests, problems, "one analysis request per problem in its window");
    assert_eq!(sent, requests, "every request sent, none deduplicated away");
    assert_eq!(messages.len() as i64, sent, "one task per request: no dispatcher sent a row twice");
    assert_eq!(task_ids.len(), messages.len(), "distinct task ids");
    assert_eq!(traces.len(), messages.len(), "no trace analysed twice");
    let representatives: HashSet<String> =
        column::<String>(&client, "SELECT representative_trace_id FROM problems").await.into_iter().collect();
    let queued: HashSet<String> =
        traces.iter().map(|t| t.trim_matches(|c| "[]'".contains(c)).to_owned()).collect();
    assert_eq!(queued, representatives, "each problem's task names its representative trace");

    let deadlocks: i64 =
        one(&client, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").await;
    assert_eq!(deadlocks, 0, "no deadlock between the instances");
    stop_all(fleet).await;

    // The next deploy keeps a day: the old partition goes, dropped by one of the three.
    let args: Vec<&str> =
        super::volume::A_DAY.into_iter().chain(["--retention-check-seconds", "1"]).collect();
    // The old ranges past a day's retention (the last one made ahead is not).
    let expiring: HashSet<String> = column::<String>(
        &client,
        "SELECT name FROM raw_signal_partitions WHERE ends + interval '1 day' <= now() AND NOT legacy",
    )
    .await
    .into_iter()
    .filter(|name| old_partitions.contains(name))
    .collect();
    assert!(!expiring.is_empty(), "the old day's range expires");
    let fleet = deploy(&db, &redis, &args).await;
    // A type's partition expires once: replaced by its evidence (none here), counted by the
    // instance that did it, just after its transaction committed; then its range, holding
    // only evidence no incident needs, goes whole (not counted again). Wait for the expiring
    // ranges to be gone and the counts to arrive: the three instances' counts add up to the
    // type partitions that expired, exactly: none was expired (or counted) twice.
    let gone_types = std::cell::Cell::new(0);
    wait_for("the expired partitions dropped and counted", Duration::from_secs(30), || async {
        let rows: i64 = one(&client, "SELECT count(*) FROM raw_signals WHERE trace_id = 't-old'").await;
        let left = range_partitions(&client).await;
        let gone: HashSet<String> = old_partitions.difference(&left).cloned().collect();
        gone_types.set(gone.iter().filter(|name| is_type_partition(name)).count());
        let dropped = fleet_sum(&fleet, "prodsentinel_retention_partitions_dropped").await;
        rows == 0
            && expiring.iter().all(|range| !left.contains(range))
            && dropped as usize >= gone_types.get()
    })
    .await;
    assert_eq!(gone_types.get(), 3 * expiring.len(), "every type's partition of the expired ranges gone");
    let dropped = fleet_sum(&fleet, "prodsentinel_retention_partitions_dropped").await;
    assert_eq!(dropped as usize, gone_types.get(), "each expired partition dropped once");
    let created = fleet_sum(&fleet, "prodsentinel_retention_partitions_created").await;
    assert_eq!(created, 0.0, "nothing left to create");
    let left: i64 = one(&client, "SELECT count(*) FROM raw_signals WHERE trace_id = 't-old'").await;
    assert_eq!(left, 0);
    stop_all(fleet).await;
    eprintln!(
        "fleet of 3: {}; stored {stored} signals, 0 lost, 0 duplicates; {problems} problems, {sent} analyses \
         queued (one each); {} partitions created once; {dropped} expired partition drops, once",
        report.summary(),
        intervals(&partitions) + intervals(&old_partitions),
    );
}
