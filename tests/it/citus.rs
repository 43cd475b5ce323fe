//! On a Citus cluster (tests/citus.sh starts one: a coordinator and two workers): the signals
//! are distributed by trace, a trace is read from one shard, a retry is counted as such, a
//! range keeps its evidence when it expires, the size budget sees every node, and a database
//! that already holds signals is distributed in place. The rest of the Citus subset is the
//! ordinary suite run against the cluster; these tests only make sense there.

use chrono::Utc;
use prodsentinel::store::partitions::Turn;
use prodsentinel::App;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_postgres::Client;

use crate::helpers::{
    citus_workers, column, connect, log_body, one, spawn_app_dispatching_by_hand, spawn_app_with,
    test_config, TestDb,
};
use crate::metrics::{get, scrape_addr};
use crate::volume::{days, log_at, worker_read, A_DAY};

/// These tests need the cluster of tests/citus.sh; run elsewhere they say so and fail.
fn on_citus() {
    assert!(
        !citus_workers().is_empty(),
        "a Citus test: run it through tests/citus.sh, which starts the cluster (TEST_CITUS_WORKERS)"
    );
}

/// How many shards the worker's read of `trace` is sent to (`Task Count` of its plan).
async fn shards_read(db: &Client, trace: &str) -> i64 {
    let plan: Vec<String> = db
        .query("EXPLAIN SELECT * FROM raw_signals WHERE trace_id = $1", &[&trace])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let tasks = plan.iter().find_map(|line| line.trim().strip_prefix("Task Count: "));
    tasks.unwrap_or_else(|| panic!("a distributed plan: {plan:#?}")).parse().unwrap()
}

#[tokio::test]
async fn signals_are_distributed_by_trace_and_a_trace_is_read_from_one_shard() {
    on_citus();
    let app = spawn_app_with(&[]).await;
    let db = app.db().await;
    let (key, shards): (String, i64) = {
        let row = db
            .query_one(
                "SELECT column_to_column_name(logicalrelid, partkey),
                        (SELECT count(*) FROM pg_dist_shard s WHERE s.logicalrelid = p.logicalrelid)
                 FROM pg_dist_partition p WHERE logicalrelid = 'raw_signal_rows'::regclass",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(
        (key.as_str(), shards),
        ("trace_id", 8),
        "distributed by trace_id over CITUS_SHARD_COUNT shards"
    );
    // Every range created at start-up is distributed with it, one table for every type.
    let ranges: Vec<String> = column(
        &db,
        "SELECT logicalrelid::text FROM pg_dist_partition WHERE logicalrelid::text LIKE 'raw_signals_p%' ORDER BY 1",
    )
    .await;
    assert_eq!(ranges.len(), 3, "today and two ahead: {ranges:?}");

    let traces: Vec<String> = (0..40).map(|n| format!("t-citus-{n}")).collect();
    let logs: Vec<Value> = traces.iter().map(|t| log_body(t, "ERROR", "spread")).collect();
    assert_eq!(app.post_json("/ingest/logs", &json!(logs)).await.0, StatusCode::ACCEPTED);
    // Rows per node, counted in each shard where it is.
    let per_worker: Vec<i64> = column(
        &db,
        "SELECT sum(r.result::int8)::int8 FROM run_command_on_shards('raw_signal_rows', 'SELECT count(*) FROM %s') r
         JOIN citus_shards s USING (shardid) GROUP BY s.nodeport ORDER BY s.nodeport",
    )
    .await;
    assert_eq!(per_worker.len(), 2, "shards on both workers: {per_worker:?}");
    assert!(per_worker.iter().all(|n| *n > 0), "both workers hold signals: {per_worker:?}");
    assert_eq!(per_worker.iter().sum::<i64>(), 40, "each signal stored once, on a worker: {per_worker:?}");

    // The worker's read and the API's: one shard, the same rows.
    assert_eq!(shards_read(&db, "t-citus-7").await, 1, "a trace's read is routed to one shard");
    let rows = worker_read(&db, "t-citus-7").await;
    assert_eq!(rows.len(), 1);
    let (status, trace) = app.get_json("/query/traces/t-citus-7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(trace.as_array().map(Vec::len), Some(1), "{trace}");
    // The start-up check reads every node's settings; this cluster is set up right.
    let client = connect(&app.db.url()).await;
    let cluster = prodsentinel::store::citus::detect(&client).await.unwrap().expect("a Citus database");
    assert_eq!(cluster.workers, 2);
    let warnings = prodsentinel::store::citus::check_settings(&client, &cluster).await.unwrap();
    assert_eq!(warnings, Vec::<String>::new());
    // Incidents stay on the coordinator, one per trace, and the analysis worker's update by id
    // reaches its row.
    let incidents: i64 = one(&db, "SELECT count(*) FROM incidents WHERE trace_id LIKE 't-citus-%'").await;
    assert_eq!(incidents, 40);
    let id: uuid::Uuid =
        db.query_one("SELECT id FROM incidents WHERE trace_id = 't-citus-7'", &[]).await.unwrap().get(0);
    let updated = db
        .execute("UPDATE incidents SET status = 'INVESTIGATING'::incidentstatus WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(updated, 1);
}

#[tokio::test]
async fn a_retried_export_is_counted_as_duplicates_and_stored_once() {
    on_citus();
    let app = spawn_app_with(&[]).await;
    let logs: Vec<Value> = (0..25).map(|n| log_body(&format!("t-retry-{n}"), "INFO", "once")).collect();
    for _ in 0..3 {
        assert_eq!(app.post_json("/ingest/logs", &json!(logs)).await.0, StatusCode::ACCEPTED);
    }
    assert_eq!(app.count_signals().await, 25);
    // Every row of a retry conflicts: the case whose command tag Citus gets wrong
    // (citusdata/citus#3377). The counts come from what the insert returned.
    let metrics = scrape_addr(app.addr).await;
    assert_eq!(
        get(&metrics, r#"prodsentinel_ingest_signals_stored_total{signal="log",transport="legacy"}"#),
        25.0
    );
    assert_eq!(
        get(&metrics, r#"prodsentinel_ingest_signals_duplicate_total{signal="log",transport="legacy"}"#),
        50.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysed_trace_outlives_its_range_and_the_healthy_traffic_beside_it_goes() {
    on_citus();
    let app = spawn_app_dispatching_by_hand(&[]).await;
    let db = app.db().await;
    let old = Utc::now() - days(3);
    assert!(app.maintenance.pass_at(old, Turn::Wait).await.errors.is_empty());
    let range = format!("raw_signals_p{}", old.format("%Y%m%d"));
    for level in ["INFO", "ERROR"] {
        assert_eq!(
            app.post_json("/ingest/logs", &log_at("t-evidence", level, old)).await.0,
            StatusCode::ACCEPTED
        );
    }
    let healthy: Vec<Value> = (0..200).map(|n| log_at(&format!("t-healthy-{n}"), "INFO", old)).collect();
    assert_eq!(app.post_json("/ingest/logs", &json!(healthy)).await.0, StatusCode::ACCEPTED);
    let (api_before, worker_before) =
        (app.get_json("/query/traces/t-evidence").await.1, worker_read(&db, "t-evidence").await);
    assert_eq!(worker_before.len(), 2);

    // Every retention a day: that day's range expires whole (it holds every type), keeping
    // the analysed trace's signals in its place.
    let expiring = app.maintenance_with(&A_DAY).await;
    let pass = expiring.pass_at(Utc::now(), Turn::Wait).await;
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert!(pass.dropped.iter().any(|d| d.name == range), "{:?}", pass.dropped);
    let kept: i64 =
        one(&db, &format!("SELECT count(*) FROM raw_signal_evidence WHERE name = '{range}'")).await;
    assert_eq!(kept, 1, "the range keeps only its evidence");
    let healthy: i64 = one(&db, "SELECT count(*) FROM raw_signals WHERE trace_id LIKE 't-healthy-%'").await;
    assert_eq!(healthy, 0, "the healthy traffic expired");
    assert_eq!(app.get_json("/query/traces/t-evidence").await.1, api_before, "the API answers it whole");
    assert_eq!(worker_read(&db, "t-evidence").await, worker_before, "the worker reads every row, unchanged");
    let distributed: bool = one(
        &db,
        &format!("SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = '{range}'::regclass)"),
    )
    .await;
    assert!(distributed, "the table of evidence in the range's place is distributed like it");
}

#[tokio::test]
async fn the_size_budget_sees_the_bytes_on_every_node() {
    on_citus();
    let app = spawn_app_with(&[]).await;
    let logs: Vec<Value> =
        (0..500).map(|n| log_body(&format!("t-size-{n}"), "INFO", &"x".repeat(2000))).collect();
    assert_eq!(app.post_json("/ingest/logs", &json!(logs)).await.0, StatusCode::ACCEPTED);
    let db = app.db().await;
    let coordinator: i64 = one(&db, "SELECT pg_database_size(current_database())").await;
    let mut nodes = coordinator;
    for worker in citus_workers() {
        let node = connect(&format!("{worker}/{}", app.db.name)).await;
        nodes += one::<i64>(&node, "SELECT pg_database_size(current_database())").await;
    }
    let measured = app.store.database_size().await.unwrap();
    // The nodes' sizes move a little between the two readings (the sum is read later).
    assert!(measured > coordinator * 2, "more than the coordinator's own {coordinator}: {measured}");
    assert!((measured - nodes).abs() < nodes / 20, "the sum over the nodes, {nodes}: {measured}");
}

#[tokio::test]
async fn a_database_holding_signals_is_distributed_in_place_when_citus_arrives() {
    on_citus();
    // The service ran on the coordinator's PostgreSQL before it was a Citus database.
    let db = TestDb::new();
    let redis = crate::helpers::RedisDb::acquire().await;
    let redis_url = redis.url();
    let run = |db: &TestDb| {
        let config = test_config(db, &["--redis-url", redis_url.as_str()]);
        async move {
            let app = App::build(config).await.expect("app starts");
            let (addr, store) = (app.api_addr(), app.store().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let server = tokio::spawn(app.run_until(async {
                let _ = stopped.await;
            }));
            (addr, store, stop, server)
        }
    };
    let http = reqwest::Client::new();
    let (addr, _, stop, server) = run(&db).await;
    let now = Utc::now();
    let mut sent = Vec::new();
    for day in [0, 3] {
        let logs: Vec<Value> =
            (0..300).map(|n| log_at(&format!("t-before-{day}-{n}"), "ERROR", now - days(day))).collect();
        let answer = http.post(format!("http://{addr}/ingest/logs")).json(&logs).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
        sent.extend(logs);
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    let plain = db.connect().await;
    let typed: i64 = one(
        &plain,
        "SELECT count(*) FROM pg_partitioned_table WHERE partrelid::regclass::text LIKE 'raw_signals_p%'",
    )
    .await;
    assert!(typed >= 3, "a partition per type under each range before");
    let before = worker_read(&plain, "t-before-0-17").await;

    // The operator installs Citus and adds the workers; the service, restarted, distributes.
    db.join_citus().await;
    let (addr, _, stop, server) = run(&db).await;
    let citus = db.connect().await;
    assert_eq!(
        one::<i64>(&citus, "SELECT count(*) FROM raw_signal_rows").await,
        600,
        "every signal kept, once"
    );
    let typed: i64 = one(
        &citus,
        "SELECT count(*) FROM pg_partitioned_table WHERE partrelid::regclass::text LIKE 'raw_signals_p%'",
    )
    .await;
    assert_eq!(typed, 0, "each range one table now");
    assert_eq!(shards_read(&citus, "t-before-0-17").await, 1);
    assert_eq!(worker_read(&citus, "t-before-0-17").await, before, "read as before, from its shard");
    // A retry of a signal stored before the move is still recognised.
    let answer = http.post(format!("http://{addr}/ingest/logs")).json(&sent[17]).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let answer = http.get(format!("http://{addr}/query/traces/t-before-0-17")).send().await.unwrap();
    let trace: Value = answer.json().await.unwrap();
    assert_eq!(trace.as_array().map(Vec::len), Some(1), "{trace}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
