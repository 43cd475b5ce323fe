//! On a Citus cluster (tests/citus.sh starts one: a coordinator and two workers): the signals
//! are distributed by trace, a trace is read from one shard, a retry is counted as such, a
//! range keeps its evidence when it expires, the size budget sees every node, a database
//! that already holds signals is distributed in place, and a worker holding none of their
//! shards is named at start. The rest of the Citus subset is the
//! ordinary suite run against the cluster; these tests only make sense there.

use std::time::Duration as StdDuration;

use chrono::Utc;
use prodsentinel::store::citus::placement;
use prodsentinel::store::partitions::Turn;
use prodsentinel::App;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_postgres::Client;

use crate::helpers::{
    citus_workers, column, connect, log_body, one, post_otlp_json, row_table, spawn_app_dispatching_by_hand,
    spawn_app_with, test_config, wait_for, TestDb,
};
use crate::metrics::{get, scrape_addr};
use crate::process::ServerProcess;
use crate::volume::{day_partition, days, log_at, worker_read, A_DAY};

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
    // Every range created at start-up is distributed with it, a partition per type hanging from
    // the table keyed by type and time.
    let leaves: Vec<String> = column(
        &db,
        "SELECT logicalrelid::text FROM pg_dist_partition p JOIN pg_inherits i ON i.inhrelid = p.logicalrelid
         WHERE logicalrelid::text LIKE 'raw_signals_p%' AND i.inhparent = 'raw_signal_rows'::regclass ORDER BY 1",
    )
    .await;
    assert_eq!(leaves.len(), 9, "today and two ahead, three types each: {leaves:?}");
    let key: String = one(&db, "SELECT pg_get_partkeydef('raw_signal_rows'::regclass)").await;
    assert_eq!(key, "RANGE (signal_type, \"timestamp\")");

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

    // Every retention a day: that day's partitions expire, each type's on its own, the log
    // partition keeping the analysed trace's signals in its place.
    let expiring = app.maintenance_with(&A_DAY).await;
    let pass = expiring.pass_at(Utc::now(), Turn::Wait).await;
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    let leaf = format!("{range}_log");
    assert!(pass.dropped.iter().any(|d| d.name == leaf && d.kept_signals == 2), "{:?}", pass.dropped);
    let kept: Vec<String> = column(
        &db,
        &format!(
            "SELECT name || ' ' || signals FROM raw_signal_evidence WHERE name LIKE '{range}%' ORDER BY 1"
        ),
    )
    .await;
    assert_eq!(
        kept,
        [format!("{range}_log 2"), format!("{range}_metric 0"), format!("{range}_trace 0")],
        "each type's partition keeps only its evidence"
    );
    let healthy: i64 = one(&db, "SELECT count(*) FROM raw_signals WHERE trace_id LIKE 't-healthy-%'").await;
    assert_eq!(healthy, 0, "the healthy traffic expired");
    assert_eq!(app.get_json("/query/traces/t-evidence").await.1, api_before, "the API answers it whole");
    assert_eq!(worker_read(&db, "t-evidence").await, worker_before, "the worker reads every row, unchanged");
    let distributed: bool = one(
        &db,
        &format!("SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = '{leaf}'::regclass)"),
    )
    .await;
    assert!(distributed, "the table of evidence in the partition's place is distributed like it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_partition_becomes_a_columnar_table_with_the_signals_and_a_trace_is_read_from_one_shard() {
    on_citus();
    let app = spawn_app_dispatching_by_hand(&[]).await;
    let db = app.db().await;
    let old = Utc::now() - days(2);
    assert!(app.maintenance.pass_at(old, Turn::Wait).await.errors.is_empty());
    let traces: Vec<String> = (0..20).map(|n| format!("t-sealed-{n}")).collect();
    let logs: Vec<Value> = traces
        .iter()
        .flat_map(|t| (0..5).map(move |i| log_at(t, "INFO", old + chrono::Duration::seconds(i))))
        .collect();
    assert_eq!(app.post_json("/ingest/logs", &json!(logs)).await.0, StatusCode::ACCEPTED);
    let before = worker_read(&db, &traces[3]).await;
    assert_eq!(before.len(), 5);

    let sealer = app.maintenance_with(&["--seal-after", "1h"]).await;
    let report = sealer.pass_at(Utc::now(), Turn::Wait).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let leaf = day_partition(old, "log");
    let sealed: Vec<(String, i64)> =
        report.sealed.sealed.iter().map(|s| (s.leaf.clone(), s.signals)).collect();
    assert_eq!(sealed, [(leaf.clone(), 100)], "the day's log partition, its hundred logs");
    // Its unit's table: Citus's columnar storage, distributed with the signals (same shards).
    let row = db
        .query_one(
            "SELECT a.amname::text, p.colocationid = (SELECT colocationid FROM pg_dist_partition
                                                      WHERE logicalrelid = 'raw_signal_rows'::regclass),
                    i.inhparent::regclass::text
             FROM raw_signal_units u JOIN pg_class c ON c.relname = 'raw_signal_columnar_' || u.unit
             JOIN pg_am a ON a.oid = c.relam JOIN pg_dist_partition p ON p.logicalrelid = c.oid
             JOIN pg_inherits i ON i.inhrelid = c.oid
             WHERE u.leaf = $1 AND u.attached",
            &[&leaf],
        )
        .await
        .unwrap();
    let (method, colocated, parent): (String, bool, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((method.as_str(), colocated, parent.as_str()), ("columnar", true, "raw_signal_columnar"));
    let in_rows: i64 = one(&db, &format!("SELECT count(*) FROM {leaf}")).await;
    assert_eq!(in_rows, 0, "nothing left in row form");
    // The worker's read finds the trace in its one shard, sealed, as it was.
    assert_eq!(shards_read(&db, &traces[3]).await, 1);
    assert_eq!(worker_read(&db, &traces[3]).await, before);
}

/// Every read of a trace (the API's, its tree, Jaeger's, an incident's evidence, a list by
/// trace or by service) reads the resources its signals refer to by id, after the signals, and
/// Jaeger's search matches a resource's tags by the ids of those matching: the table of
/// resources lives on the coordinator, and a join would send all of it to the worker holding
/// the trace at every read (measured: 2 MB for a trace of 14 signals beside 1,000 resources),
/// or to every worker for every page of a search. The sessions of every Citus test refuse joins
/// of local and distributed tables (`citus.local_table_join_policy = never`: helpers.rs,
/// `join_citus`), so that such a plan fails rather than being made.
#[tokio::test]
async fn a_trace_is_read_with_its_resources_without_sending_every_resource_to_a_worker() {
    on_citus();
    let app = spawn_app_with(&[]).await;
    let trace = "5b8efff798038103d269b633813fc60c";
    let start = (Utc::now() - chrono::Duration::minutes(1)).timestamp_nanos_opt().unwrap() as u64;
    let attribute = |key: &str, value: &str| json!({"key": key, "value": {"stringValue": value}});
    let span = json!({"traceId": trace, "spanId": "eee19b7ec3c1b174", "name": "GET /cart", "kind": 2,
                      "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + 5_000_000).to_string()});
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [attribute("service.name", "cart"), attribute("host.name", "web-1")]},
        "scopeSpans": [{"scope": {"name": "io.test", "version": "1.0"}, "spans": [span]}]}]});
    post_otlp_json(&app, "/v1/traces", &body).await;
    let db = app.db().await;
    let incident: uuid::Uuid =
        db.query_one("SELECT id FROM incidents WHERE trace_id = $1", &[&trace]).await.unwrap().get(0);
    for path in [
        format!("/query/traces/{trace}"),
        format!("/query/signals?trace_id={trace}"),
        "/query/signals?service_name=cart".to_owned(),
        format!("/query/incidents/{incident}/signals"),
    ] {
        let (status, answer) = app.get_json(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        let signals = answer.get("items").unwrap_or(&answer);
        assert_eq!(signals.as_array().map(Vec::len), Some(1), "{path}: {answer}");
        let resource = &signals[0]["payload"]["resource"];
        assert_eq!(resource, &json!({"service.name": "cart", "host.name": "web-1"}), "{path}: {answer}");
    }
    for path in [format!("/query/traces/{trace}/tree"), format!("/jaeger/api/traces/{trace}")] {
        let (status, answer) = app.get_json(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }
    // Jaeger's search, by service and by a tag of the resource or of the scope: the resources
    // matching are found on the coordinator, and only their ids go to the workers.
    for (tags, found) in [
        ("", true),
        (r#"{"host.name":"web-1"}"#, true),
        (r#"{"host.name":"web-2"}"#, false),
        (r#"{"otel.scope.name":"io.test"}"#, true),
    ] {
        let query = format!("service=cart&tags={}", crate::jaeger::urlencode(tags));
        let (status, answer) = app.get_json(&format!("/jaeger/api/traces?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {answer}");
        let traces: Vec<&str> =
            answer["data"].as_array().unwrap().iter().filter_map(|t| t["traceID"].as_str()).collect();
        assert_eq!(traces, if found { vec![trace] } else { vec![] }, "{query}: {answer}");
    }
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
    // Each type's partition with its indexes: the same tables after, not copies.
    let leaves = "SELECT c.relname::text || ' ' || c.oid::int8 || ' ' ||
                         (SELECT string_agg(x.indexrelid::regclass::text, ',' ORDER BY x.indexrelid::regclass::text) FROM pg_index x WHERE x.indrelid = c.oid)
                  FROM pg_class c WHERE c.relname LIKE 'raw_signals_p%' AND c.relkind = 'r' ORDER BY 1";
    let leaves_before: Vec<String> = column(&plain, leaves).await;
    // An operator's grant on the table, carried over to the one that takes its place.
    plain.batch_execute("GRANT SELECT ON raw_signal_rows TO PUBLIC").await.unwrap();
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
    assert_eq!(typed, 0, "no range is a table of its own now");
    assert_eq!(
        column::<String>(&citus, leaves).await,
        leaves_before,
        "each type's partition moved under the new key as it was, not copied into a new table"
    );
    let parents: Vec<String> = column(
        &citus,
        "SELECT DISTINCT i.inhparent::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE c.relname LIKE 'raw_signals_p%' AND c.relkind = 'r'",
    )
    .await;
    assert_eq!(parents, ["raw_signal_rows"]);
    let granted: bool =
        one(&citus, "SELECT has_table_privilege('public', 'raw_signal_rows', 'SELECT')").await;
    assert!(granted, "the operator's grant kept");
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

/// A superuser role of the test's own on every node of the cluster, dropped with it (declared
/// before the test's database, so dropped after it).
struct OwnRole {
    name: String,
}

impl OwnRole {
    async fn create() -> OwnRole {
        let name = format!("ps_role_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        for server in std::iter::once(crate::helpers::server_url()).chain(citus_workers()) {
            let admin = connect(&format!("{server}/postgres")).await;
            admin.batch_execute(&format!("CREATE ROLE {name} SUPERUSER LOGIN")).await.unwrap();
        }
        OwnRole { name }
    }

    /// `url` (the tests' server, as `postgres`) as this role.
    fn url(&self, url: &str) -> String {
        url.replacen("postgres@", &format!("{}@", self.name), 1)
    }
}

impl Drop for OwnRole {
    fn drop(&mut self) {
        crate::helpers::on_every_node_from_drop(format!("DROP ROLE IF EXISTS {}", self.name));
    }
}

#[tokio::test]
async fn a_database_is_distributed_in_place_by_a_role_that_does_not_own_citus() {
    on_citus();
    // The service's own role, as in most deployments: not the one that created the extension.
    let role = OwnRole::create().await;
    // Each layout of the incidents: distributed, they are tracked at the nodes by the
    // escalation rules, which Citus did not put there (made before it arrived).
    for incidents in ["off", "on"] {
        let db = TestDb::new();
        let redis = crate::helpers::RedisDb::acquire().await;
        let config = || {
            crate::helpers::test_config_for(
                &role.url(&db.url()),
                &["--redis-url", redis.url().as_str(), "--citus-distribute-incidents", incidents],
            )
        };
        drop(App::build(config()).await.expect("the plain database is laid out by the service's role"));
        db.join_citus().await;
        let app = App::build(config()).await.expect("the service's role distributes it");
        let addr = app.api_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        let citus = db.connect().await;
        let distributed: bool = one(
            &citus,
            "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'raw_signal_rows'::regclass)",
        )
        .await;
        assert!(distributed);
        assert_eq!(incidents_distributed(&citus).await, incidents == "on");
        let owner: String = one(
            &citus,
            "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'raw_signal_rows'::regclass",
        )
        .await;
        assert_eq!(owner, role.name);
        // And it stores there, read from one shard, and opens the trace's incident.
        let log = log_body("t-role", "ERROR", "stored by the service's role");
        let answer = reqwest::Client::new()
            .post(format!("http://{addr}/ingest/logs"))
            .json(&log)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "incidents distributed: {incidents}: {}",
            answer.text().await.unwrap_or_default()
        );
        assert_eq!(worker_read(&citus, "t-role").await.len(), 1);
        assert_eq!(shards_read(&citus, "t-role").await, 1);
        let opened: i64 = one(&citus, "SELECT count(*) FROM incidents WHERE trace_id = 't-role'").await;
        assert_eq!(opened, 1, "incidents distributed: {incidents}");
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}

/// The leaves of `incidents` (name, table, number of indexes) and its incidents (trace, kept,
/// detected, id).
async fn incident_tables(db: &Client) -> (Vec<String>, Vec<String>) {
    let leaves = column(
        db,
        "SELECT c.relname::text || ' ' || c.oid::int8 || ' ' || (SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid)
         FROM pg_partition_tree('incidents') t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf ORDER BY 1",
    )
    .await;
    let incidents = column(
        db,
        "SELECT trace_id || ' ' || kept || ' ' || coalesce(detected_at::text, '-') || ' ' || id FROM incidents ORDER BY 1",
    )
    .await;
    (leaves, incidents)
}

#[tokio::test]
async fn a_database_holding_incidents_has_them_partitioned_once_when_citus_arrives() {
    on_citus();
    let db = TestDb::new();
    let redis = crate::helpers::RedisDb::acquire().await;
    let config = || test_config(&db, &["--redis-url", redis.url().as_str()]);
    let plain_app = App::build(config()).await.expect("the plain database is laid out");
    let now = Utc::now();
    plain_app.store().ensure_partitions(now, Turn::Wait).await.expect("incident ranges made");
    drop(plain_app);
    let plain = db.connect().await;
    // Today's, a kept one, one a clock ahead put in the default, and two without a time: a
    // kept one (which no range of the new key holds) and a live one (in the default already).
    plain
        .batch_execute(
            "INSERT INTO incidents (trace_id, detected_at, kept) VALUES
                 ('t-today', now(), false), ('t-kept', now() - interval '40 days', true),
                 ('t-ahead', now() + interval '30 days', false), ('t-untimed-kept', NULL, true),
                 ('t-untimed-live', NULL, false);
             GRANT SELECT ON incidents TO PUBLIC;",
        )
        .await
        .unwrap();
    let partitioned_twice: Vec<String> = column(
        &plain,
        "SELECT relid::regclass::text FROM pg_partition_tree('incidents') WHERE NOT isleaf ORDER BY 1",
    )
    .await;
    assert_eq!(partitioned_twice, ["incidents", "incidents_live"], "by kept, then by time, before");
    let (leaves_before, incidents_before) = incident_tables(&plain).await;
    assert!(leaves_before.len() >= 4, "{leaves_before:?}");
    assert_eq!(incidents_before.len(), 5);

    db.join_citus().await;
    drop(App::build(config()).await.expect("the service starts on Citus"));
    let citus = db.connect().await;
    let key: String = one(
        &citus,
        "SELECT pg_get_partkeydef('incidents'::regclass) || ' ' ||
                (SELECT count(*) FROM pg_partition_tree('incidents') WHERE NOT isleaf)",
    )
    .await;
    assert_eq!(key, "RANGE (kept, detected_at) 1", "partitioned once");
    let (leaves, incidents) = incident_tables(&citus).await;
    // Distributed by trace, the kept incidents lose their own key on `id` (a unique key of a
    // distributed table must hold `trace_id`): one index fewer there, and only there.
    let distributed: bool = one(
        &citus,
        "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'incidents'::regclass)",
    )
    .await;
    let expected: Vec<String> = leaves_before
        .iter()
        .map(|leaf| match leaf.strip_prefix("incidents_kept ") {
            Some(rest) if distributed => {
                let (oid, indexes) = rest.rsplit_once(' ').expect("name, oid and index count");
                let indexes: i64 = indexes.parse().expect("an index count");
                format!("incidents_kept {oid} {}", indexes - 1)
            }
            _ => leaf.clone(),
        })
        .collect();
    assert_eq!(leaves, expected, "the same tables, each with its indexes, not copies");
    let key_on_id: bool =
        one(&citus, "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'incidents_kept_pkey')")
            .await;
    assert_eq!(key_on_id, !distributed, "the kept incidents' key on id, unless distributed");
    assert_eq!(incidents, incidents_before, "every incident kept as it was");
    let bounds: Vec<String> = column(
        &citus,
        "SELECT c.relname::text || ' ' || pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'incidents'::regclass
           AND c.relname IN ('incidents_kept', 'incidents_live_default') ORDER BY 1",
    )
    .await;
    assert_eq!(
        bounds,
        [
            "incidents_kept FOR VALUES FROM (true, MINVALUE) TO (true, MAXVALUE)",
            "incidents_live_default DEFAULT"
        ]
    );
    let homes: Vec<String> = column(
        &citus,
        &format!(
            "SELECT trace_id || ' ' || {} FROM incidents
             WHERE trace_id IN ('t-untimed-kept', 't-untimed-live', 't-ahead', 't-kept') ORDER BY 1",
            row_table()
        ),
    )
    .await;
    assert_eq!(
        homes,
        [
            "t-ahead incidents_live_default",
            "t-kept incidents_kept",
            "t-untimed-kept incidents_live_default",
            "t-untimed-live incidents_live_default"
        ]
    );
    let granted: bool = one(&citus, "SELECT has_table_privilege('public', 'incidents', 'SELECT')").await;
    assert!(granted, "the operator's grant kept");
    // The claim trigger is on the new table.
    let claimed: String = one(
        &citus,
        "INSERT INTO incidents (trace_id, detected_at) VALUES ('t-new', now()) RETURNING trace_key",
    )
    .await;
    assert_eq!(claimed, "t-new");

    // Restarted, nothing is moved again; a range made later hangs from `incidents` directly.
    let app = App::build(config()).await.expect("the service starts again");
    let (leaves_again, _) = incident_tables(&citus).await;
    assert_eq!(leaves_again, leaves, "the same tables");
    let later = now + days(10);
    let created =
        app.store().ensure_partitions(later, Turn::Wait).await.expect("ranges made").expect("its turn");
    let name = format!("incidents_p{}", later.format("%Y%m%d"));
    assert!(created.incident_ranges.contains(&name), "{created:?}");
    let bound: String = one(
        &citus,
        &format!(
            "SELECT i.inhparent::regclass::text || ' ' || pg_get_expr(c.relpartbound, c.oid)
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = '{name}'"
        ),
    )
    .await;
    assert!(bound.starts_with("incidents FOR VALUES FROM (false, '"), "{bound}");
}

#[tokio::test]
async fn a_partition_the_service_did_not_make_stops_the_distribution_and_loses_nothing() {
    on_citus();
    let db = TestDb::new();
    let redis = crate::helpers::RedisDb::acquire().await;
    let config = || test_config(&db, &["--redis-url", redis.url().as_str()]);
    drop(App::build(config()).await.expect("the plain database is laid out"));
    let plain = db.connect().await;
    // An operator's catch-all under today's range, holding a signal.
    let range = format!("raw_signals_p{}", Utc::now().format("%Y%m%d"));
    plain
        .batch_execute(&format!(
            "ALTER TYPE signaltypeenum ADD VALUE IF NOT EXISTS 'profile';
             CREATE TABLE operator_profiles PARTITION OF {range} DEFAULT;"
        ))
        .await
        .unwrap();
    plain
        .execute(
            r#"INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload)
               VALUES (gen_random_uuid(), 'profile', 't-profile', 'checkout', now(), '{}')"#,
            &[],
        )
        .await
        .unwrap();

    db.join_citus().await;
    let refused = App::build(config()).await.err().expect("the service refuses to start");
    let said = format!("{refused:#}");
    assert!(said.contains("operator_profiles"), "names the partition in the way: {said}");
    let citus = db.connect().await;
    let distributed: bool = one(
        &citus,
        "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'raw_signal_rows'::regclass)",
    )
    .await;
    assert!(!distributed, "nothing distributed");
    let kept: i64 = one(&citus, "SELECT count(*) FROM raw_signal_rows WHERE trace_id = 't-profile'").await;
    assert_eq!(kept, 1, "its signal still there, where it was");
}

/// The shard `trace` hashes to, and the worker (host:port) it is on.
async fn shard_of(db: &Client, trace: &str) -> (i64, String) {
    let row = db
        .query_one(
            "SELECT shardid, nodename || ':' || nodeport FROM citus_shards
             WHERE shardid = get_shard_id_for_distribution_column('raw_signal_rows', $1::text)",
            &[&trace],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The shard of `trace`, the worker holding it and the other worker ("host:port" each).
async fn shard_and_nodes(db: &Client, trace: &str) -> (i64, String, String) {
    let (shard, from) = shard_of(db, trace).await;
    let to = citus_workers()
        .into_iter()
        .map(|w| w.trim_start_matches("postgres://postgres@").to_owned())
        .find(|node| *node != from)
        .expect("two workers");
    (shard, from, to)
}

/// Moves `shard` (and the shards colocated with it) from `from` to `to`, writes blocked
/// meanwhile.
async fn move_shard(db: &Client, shard: i64, from: &str, to: &str) -> Result<u64, tokio_postgres::Error> {
    let (from_host, from_port) = from.rsplit_once(':').expect("host:port");
    let (to_host, to_port) = to.rsplit_once(':').expect("host:port");
    let port = |p: &str| p.parse::<i32>().expect("a port");
    db.execute(
        "SELECT citus_move_shard_placement($1, $2, $3, $4, $5, shard_transfer_mode := 'block_writes')",
        &[&shard, &from_host, &port(from_port), &to_host, &port(to_port)],
    )
    .await
}

/// Inserts a signal as another writer would, in `tx`: (id, trace) at `at`.
const OTHER_WRITER_INSERT: &str = r#"INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload)
    VALUES ($1, 'log', $2, 'checkout', $3, '{}') ON CONFLICT DO NOTHING"#;

#[tokio::test]
async fn batches_write_the_same_shards_at_once() {
    on_citus();
    let app = spawn_app_with(&[]).await;
    let db = connect(&app.db.url()).await;
    // Another writer with Citus's default settings, in the middle of a multi-shard insert: by
    // default Citus lets one such statement at a time into a shard, and it holds the shards
    // it wrote until it commits.
    let mut other = connect(&app.db.url()).await;
    let pid: i32 = one(&other, "SELECT pg_backend_pid()").await;
    let tx = other.transaction().await.unwrap();
    tx.execute(
        r#"INSERT INTO raw_signal_rows (id, signal_type, trace_id, service_name, "timestamp", payload)
           SELECT gen_random_uuid(), 'log', 'held-' || n, 'other', now(), '{}' FROM generate_series(1, 64) n
           ON CONFLICT DO NOTHING"#,
        &[],
    )
    .await
    .unwrap();
    let held: Vec<i64> = db
        .query(
            "SELECT objid::int8 FROM pg_locks WHERE pid = $1 AND locktype = 'advisory'
             AND mode = 'ShareUpdateExclusiveLock' AND granted ORDER BY 1",
            &[&pid],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(held.len() >= 2, "the other writer holds the shards of its multi-shard insert: {held:?}");
    // Our batch spans the same shards; it is stored and answered while the other one is open.
    let now = Utc::now();
    let logs: Vec<Value> = (0..100).map(|n| log_at(&format!("along-{n}"), "INFO", now)).collect();
    let mut ours = Vec::new();
    for n in 0..100 {
        ours.push(shard_of(&db, &format!("along-{n}")).await.0);
    }
    assert!(
        held.iter().all(|shard| ours.contains(shard)),
        "our batch writes every held shard: {held:?} {ours:?}"
    );
    let posted =
        tokio::time::timeout(std::time::Duration::from_secs(30), app.post_json("/ingest/logs", &json!(logs)))
            .await
            .expect("our batch waited for the other writer's transaction");
    assert_eq!(posted.0, StatusCode::ACCEPTED, "{}", posted.1);
    tx.rollback().await.unwrap();
    assert_eq!(app.count_signals().await, 100);
}

#[tokio::test]
async fn writers_of_the_same_signals_that_deadlock_across_workers_lose_nothing() {
    on_citus();
    let app = spawn_app_with(&[]).await;
    let db = connect(&app.db.url()).await;
    // Two traces on different workers.
    let (first, (_, first_node)) = ("deadlock-a".to_owned(), shard_of(&db, "deadlock-a").await);
    let mut second = None;
    for n in 0..64 {
        let trace = format!("deadlock-b{n}");
        let (_, node) = shard_of(&db, &trace).await;
        if node != first_node {
            second = Some((trace, node));
            break;
        }
    }
    let (second, second_node) = second.expect("a trace on the other worker");
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    let (a, b) = (log_at(&first, "INFO", now), log_at(&second, "INFO", now));
    let id = |log: &Value| uuid::Uuid::parse_str(log["signal_id"].as_str().unwrap()).unwrap();

    // The other writer stores b, uncommitted; our batch [a, b] then stores a and waits for b.
    let mut other = connect(&app.db.url()).await;
    let tx = other.transaction().await.unwrap();
    assert_eq!(tx.execute(OTHER_WRITER_INSERT, &[&id(&b), &second, &now]).await.unwrap(), 1);
    let posting = tokio::spawn(app.http.post(app.url("/ingest/logs")).json(&json!([a, b])).send());
    let worker = |node: &str| format!("postgres://postgres@{node}/{}", app.db.name);
    let (first_worker, second_worker) =
        (connect(&worker(&first_node)).await, connect(&worker(&second_node)).await);
    // Waiting for b on its worker, and a written on the other (its connection idle in the
    // transaction); the other writer has not touched a's worker.
    wait_for("our batch to have written a and to wait for b", std::time::Duration::from_secs(20), || async {
        let waiting: i64 = one(
            &second_worker,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await;
        let wrote: i64 = one(
            &first_worker,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
             AND state = 'idle in transaction' AND query LIKE 'INSERT INTO%raw_signal_rows%'",
        )
        .await;
        waiting > 0 && wrote > 0
    })
    .await;
    // The other writer now wants a: each waits for the other, on two workers. Citus's
    // distributed deadlock detection fails the younger transaction, ours.
    let stored_a = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tx.execute(OTHER_WRITER_INSERT, &[&id(&a), &first, &now]),
    )
    .await
    .expect("the deadlock was broken")
    .expect("the other writer, the older, went on");
    assert_eq!(stored_a, 1);
    let answer = posting.await.unwrap().expect("an answer");
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "retryable: nothing of ours was stored");
    tx.commit().await.unwrap();

    // The client's retry: both already stored, counted as duplicates, nothing twice.
    assert_eq!(app.post_json("/ingest/logs", &json!([a, b])).await.0, StatusCode::ACCEPTED);
    let stored: i64 = one(&db, "SELECT count(*) FROM raw_signals WHERE trace_id LIKE 'deadlock-%'").await;
    assert_eq!(stored, 2);
    let metrics = scrape_addr(app.addr).await;
    assert_eq!(
        get(&metrics, r#"prodsentinel_ingest_signals_duplicate_total{signal="log",transport="legacy"}"#),
        2.0
    );
}

#[tokio::test]
async fn a_batch_waits_for_maintenance_holding_nothing_it_needs() {
    on_citus();
    let app = spawn_app_with(&[]).await;
    let db = connect(&app.db.url()).await;
    // Maintenance before it creates ranges: under its lock (the app's own passes wait for it
    // or skip), the incidents' default partition locked first (store/partitions/incidents.rs),
    // then the signals' table for a new range.
    let mut maintenance = connect(&app.db.url()).await;
    let tx = maintenance.transaction().await.unwrap();
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&prodsentinel::store::partitions::MAINTENANCE_LOCK_KEY])
        .await
        .unwrap();
    tx.batch_execute("LOCK TABLE incidents_live_default IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let logs: Vec<Value> = (0..20).map(|n| log_at(&format!("waits-{n}"), "ERROR", Utc::now())).collect();
    let posting = tokio::spawn(app.http.post(app.url("/ingest/logs")).json(&json!(logs)).send());
    wait_for("the batch to wait for the incidents", std::time::Duration::from_secs(20), || async {
        let waiting: i64 = one(
            &db,
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'incidents_live_default'::regclass",
        )
        .await;
        waiting > 0
    })
    .await;
    // The batch waits holding nothing of the signals' table: maintenance gets it at once.
    tx.batch_execute("SET LOCAL lock_timeout = '5s'; LOCK TABLE raw_signal_rows IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("the signals' table was free: the batch waits before its insert");
    tx.commit().await.unwrap();
    let answer = posting.await.unwrap().expect("an answer");
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    assert_eq!(app.count_signals().await, 20);
}

/// A worker added after the signals were distributed holds none of their shards, and takes no
/// writes until Citus moves some to it: every start says so, naming each node's count and the
/// way out, until the shards are even again; and every maintenance pass sets each node's count
/// as a gauge, so a worker added, or shards moved, while the service runs shows there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_holding_none_of_the_signals_shards_is_named_at_start_until_they_move_to_it() {
    on_citus();
    let db = TestDb::new();
    db.prepare_citus().await;
    let citus = db.connect().await;
    let nodes: Vec<String> = column(
        &citus,
        "SELECT nodename || ':' || nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeid",
    )
    .await;
    let (first, second) = (&nodes[0], &nodes[1]);
    let (host, port) = second.rsplit_once(':').unwrap();
    let port: i32 = port.parse().unwrap();
    let places_shards = |yes: bool| {
        let citus = &citus;
        async move {
            citus
                .execute(
                    "SELECT citus_set_node_property($1, $2, 'shouldhaveshards', $3)",
                    &[&host, &port, &yes],
                )
                .await
                .unwrap();
        }
    };
    let counts = || async {
        placement::shards_by_node(&citus).await.unwrap().into_iter().map(|(_, n)| n).collect::<Vec<i64>>()
    };
    // The second worker places no shards while the signals are distributed: as if added after.
    places_shards(false).await;
    let mut server = ServerProcess::start(&db, &[("RETENTION_CHECK_SECONDS", "1")]).await;
    places_shards(true).await;
    assert_eq!(counts().await, [8, 0], "every shard on the first worker");
    server.sigterm();
    assert_eq!(server.exit_code(StdDuration::from_secs(30)).await, Some(0));

    server.restart().await;
    let addr: std::net::SocketAddr = server.api.parse().unwrap();
    let gauge = |node: &str| format!(r#"prodsentinel_citus_signal_shards{{node="{node}"}}"#);
    let shows = |counts: [f64; 2]| {
        let (first, second) = (gauge(first), gauge(second));
        async move {
            let samples = scrape_addr(addr).await;
            (samples.get(&first), samples.get(&second)) == (Some(&counts[0]), Some(&counts[1]))
        }
    };
    wait_for("the gauge to show 8 and 0 shards", StdDuration::from_secs(30), || shows([8.0, 0.0])).await;
    // Shards moved to it while the service runs (writes held meanwhile: the test cluster has no
    // logical replication); the next passes show it.
    citus
        .batch_execute(
            "SELECT rebalance_table_shards('raw_signal_rows', shard_transfer_mode := 'block_writes')",
        )
        .await
        .unwrap();
    assert_eq!(counts().await, [4, 4]);
    wait_for("the gauge to show 4 and 4 shards", StdDuration::from_secs(30), || shows([4.0, 4.0])).await;
    server.sigterm();
    assert_eq!(server.exit_code(StdDuration::from_secs(30)).await, Some(0));
    let warned = |server: &ServerProcess| {
        server.log_lines().into_iter().filter(|line| line.contains("placed unevenly")).collect::<Vec<_>>()
    };
    let said = warned(&server);
    assert_eq!(said.len(), 1, "the second start only (the first had no node without shards): {said:?}");
    assert!(said[0].contains(&format!("{first} holds 8, {second} holds 0")), "{}", said[0]);
    assert!(said[0].contains("citus_rebalance_start()"), "{}", said[0]);

    server.restart().await;
    server.sigterm();
    assert_eq!(server.exit_code(StdDuration::from_secs(30)).await, Some(0));
    assert_eq!(warned(&server).len(), 1, "nothing more said once the shards are even");
}

/// A connection to this test's database at `node` (`host:port`).
async fn at_node(app: &crate::helpers::TestApp, node: &str) -> Client {
    connect(&format!("postgres://postgres@{node}/{}", app.db.name)).await
}

/// Batches the coordinator recorded as written at the nodes (store/citus/parts.rs).
async fn batches_at_nodes(db: &Client) -> i64 {
    one(db, "SELECT count(*) FROM citus_prepared_batches WHERE committed").await
}

/// The parts of this test's database prepared at `node` and not yet decided. Prepared
/// transactions are the node's, not a database's: the tests running beside this one prepare
/// theirs in the same view.
async fn prepared_parts(app: &crate::helpers::TestApp, node: &str) -> i64 {
    one(
        &at_node(app, node).await,
        "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE 'prodsentinel:%'",
    )
    .await
}

/// How many rows of `trace` a read routed by Citus to the trace's shard finds.
async fn routed_rows(db: &Client, trace: &str) -> i64 {
    db.query_one("SELECT count(*) FROM raw_signal_rows WHERE trace_id = $1", &[&trace]).await.unwrap().get(0)
}

#[tokio::test]
async fn batches_are_written_at_the_nodes_holding_their_traces_or_through_the_coordinator_when_told() {
    on_citus();
    // Trace ids of every shape the service stores: W3C ids, legacy names, the keys of
    // trace-less signals, bytes beyond ASCII; each hashed by the service as Citus does.
    let traces: Vec<String> = (0..400)
        .map(|n: u32| match n % 4 {
            0 => format!("{:032x}", u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
            1 => format!("legacy-trace-{n}"),
            2 => format!("svc:checkout:{}", 29_000_000 + n),
            _ => format!("trace-é☃-{n}"),
        })
        .collect();
    for (write_at_nodes, extra) in [(true, &[][..]), (false, &["--citus-write-at-workers", "off"][..])] {
        let app = spawn_app_with(extra).await;
        let db = connect(&app.db.url()).await;
        let now = Utc::now();
        let batches: Vec<Vec<Value>> = traces
            .chunks(100)
            .map(|chunk| chunk.iter().map(|trace| log_at(trace, "ERROR", now)).collect())
            .collect();
        for logs in &batches {
            let (status, body) = app.post_json("/ingest/logs", &json!(logs)).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        // Every row is where Citus looks for its trace: a read routed to the trace's one shard
        // finds it, and there are no others.
        for trace in &traces {
            assert_eq!(routed_rows(&db, trace).await, 1, "{trace} (written at the nodes: {write_at_nodes})");
        }
        assert_eq!(app.count_signals().await, 400);
        let incidents: i64 = one(&db, "SELECT count(*) FROM incidents").await;
        assert_eq!(incidents, 400, "each trace tracked with its signals");
        let recorded = batches_at_nodes(&db).await;
        if write_at_nodes {
            assert_eq!(recorded, 4, "each batch written at the nodes and recorded by the coordinator");
        } else {
            assert_eq!(recorded, 0, "CITUS_WRITE_AT_WORKERS=off: through the coordinator");
        }
        for worker in citus_workers() {
            let node = worker.trim_start_matches("postgres://postgres@");
            assert_eq!(prepared_parts(&app, node).await, 0, "every part committed at {node}");
        }
        // A retry at the nodes stores nothing twice and is counted so.
        assert_eq!(app.post_json("/ingest/logs", &json!(batches[0])).await.0, StatusCode::ACCEPTED);
        assert_eq!(app.count_signals().await, 400);
        let metrics = scrape_addr(app.addr).await;
        assert_eq!(
            get(&metrics, r#"prodsentinel_ingest_signals_duplicate_total{signal="log",transport="legacy"}"#),
            100.0
        );
        let written = |how: &str| {
            metrics.get(&format!(r#"prodsentinel_citus_batches_total{{written="{how}"}}"#)).copied()
        };
        if write_at_nodes {
            assert_eq!((written("at_nodes"), written("through_coordinator")), (Some(5.0), None));
        } else {
            assert_eq!((written("at_nodes"), written("through_coordinator")), (None, Some(5.0)));
        }
    }
}

#[tokio::test]
async fn a_new_pooled_session_has_its_connections_to_the_workers_before_its_first_read() {
    on_citus();
    let app = spawn_app_with(&[]).await;
    // A pool of its own on the app's database, its sessions named so that the coordinator
    // shows which backend is theirs: one session, made for one setting read, nothing routed.
    let url = format!("{}?application_name=fresh-pool", app.db.url());
    let config = test_config(&app.db, &["--database-url", &url]);
    let store = prodsentinel::store::Store::new(
        &config.database,
        None,
        prodsentinel::store::StorageSettings {
            lifecycle: config.lifecycle,
            exact_total_limit: config.query_exact_total_limit,
            layout: prodsentinel::store::citus::Layout::Distributed { incidents: false },
        },
    )
    .unwrap();
    assert_eq!(store.session_setting("jit").await.unwrap(), "off");
    let db = connect(&app.db.url()).await;
    let gpids: Vec<i64> = db
        .query(
            "SELECT citus_calculate_gpid(n.nodeid, a.pid) FROM pg_stat_activity a, pg_dist_node n
             WHERE a.application_name = 'fresh-pool' AND a.datname = current_database() AND n.groupid = 0",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(gpids.len(), 1, "the pool made one session");
    // Citus names a session's connections to the workers by its global pid.
    for worker in citus_workers() {
        let node = worker.trim_start_matches("postgres://postgres@");
        let opened: i64 = at_node(&app, node)
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'citus_internal gpid=' || $1::bigint",
                &[&gpids[0]],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(opened, 1, "the session's connection to {node} opened when the session was made");
    }
    store.close();
}

#[tokio::test]
async fn a_shard_move_waits_for_a_part_prepared_at_its_node_and_takes_the_part_s_rows_along() {
    on_citus();
    let app = spawn_app_with(&[]).await;
    let db = connect(&app.db.url()).await;
    let trace = "trace-of-a-part-held-prepared";
    let (shard, from, to) = shard_and_nodes(&db, trace).await;
    // The batch's coordinator transaction records it after its parts are prepared: holding
    // the record's table holds the batch there, its part prepared at the node and not
    // committed, as between a part's PREPARE and its COMMIT PREPARED.
    let hold = connect(&app.db.url()).await;
    hold.batch_execute("BEGIN; LOCK TABLE citus_prepared_batches IN EXCLUSIVE MODE").await.unwrap();
    let batch = tokio::spawn(
        app.http.post(app.url("/ingest/logs")).json(&json!([log_at(trace, "ERROR", Utc::now())])).send(),
    );
    let node = at_node(&app, &from).await;
    wait_for("the batch's part prepared at its node", StdDuration::from_secs(20), || async {
        prepared_parts(&app, &from).await == 1
    })
    .await;
    assert_eq!(routed_rows(&db, trace).await, 0, "nothing of the batch visible before its commit");
    // Moved with writes blocked, the shard's rows copied: a part prepared there and committed
    // after the copy would be left in the old placement, out of every read.
    let mover = connect(&app.db.url()).await;
    let moving = {
        let (from, to) = (from.clone(), to.clone());
        tokio::spawn(async move { move_shard(&mover, shard, &from, &to).await })
    };
    // The move waits for the shard metadata lock the part holds, prepared, at its node.
    wait_for("the move waiting for the prepared part's lock", StdDuration::from_secs(20), || async {
        let waiting: i64 = node
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        waiting > 0
    })
    .await;
    hold.batch_execute("COMMIT").await.unwrap();
    assert_eq!(batch.await.unwrap().unwrap().status(), StatusCode::ACCEPTED);
    moving.await.unwrap().unwrap();
    assert_eq!(shard_of(&db, trace).await.1, to, "the shard moved");
    assert_eq!(routed_rows(&db, trace).await, 1, "the part's row moved with its shard");
    assert_eq!(batches_at_nodes(&db).await, 1, "the batch was written at the node");
    assert_eq!(prepared_parts(&app, &from).await, 0);
}

#[tokio::test]
async fn a_part_left_prepared_by_a_crash_is_committed_if_its_batch_was_recorded_and_rolled_back_if_not() {
    on_citus();
    let app = spawn_app_with(&[]).await;
    let db = connect(&app.db.url()).await;
    // Three parts prepared at the node of their traces as the service prepares them, and the
    // service gone before it committed them: the first batch recorded by the coordinator, the
    // other two not (their coordinator transaction never committed).
    let (recorded, unrecorded, fresh) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let mut nodes = Vec::new();
    for (batch, trace) in
        [(recorded, "crash-recorded"), (unrecorded, "crash-unrecorded"), (fresh, "crash-fresh")]
    {
        let (shard, node) = shard_of(&db, trace).await;
        let table: String = db
            .query_one("SELECT shard_name('raw_signal_rows'::regclass, $1)", &[&shard])
            .await
            .unwrap()
            .get(0);
        at_node(&app, &node)
            .await
            .batch_execute(&format!(
                r#"BEGIN;
                   INSERT INTO {table} (id, signal_type, trace_id, service_name, "timestamp", payload)
                   VALUES (gen_random_uuid(), 'log', '{trace}', 'checkout', now(), '{{}}');
                   PREPARE TRANSACTION 'prodsentinel:{batch}'"#
            ))
            .await
            .unwrap();
        nodes.push(node);
    }
    db.execute("INSERT INTO citus_prepared_batches (batch_id, committed) VALUES ($1, true)", &[&recorded])
        .await
        .unwrap();
    // A part prepared less than a minute ago may belong to a batch still being written: left.
    assert_eq!(app.store.resolve_prepared_parts().await.unwrap(), (0, 0));
    tokio::time::sleep(StdDuration::from_millis(50)).await;
    // Due (the test shortens the minute): the recorded batch's part committed, the others
    // rolled back, recorded so first, so that their coordinator transaction, were it still
    // running, could not record them after.
    let (committed, rolled_back) =
        app.store.resolve_prepared_parts_after(StdDuration::from_millis(10)).await.unwrap();
    assert_eq!((committed, rolled_back), (1, 2));
    assert_eq!(routed_rows(&db, "crash-recorded").await, 1);
    assert_eq!(routed_rows(&db, "crash-unrecorded").await, 0);
    assert_eq!(routed_rows(&db, "crash-fresh").await, 0);
    let late = db
        .execute("INSERT INTO citus_prepared_batches (batch_id, committed) VALUES ($1, true)", &[&unrecorded])
        .await
        .unwrap_err();
    assert!(
        late.as_db_error().is_some_and(|e| e.constraint() == Some("citus_prepared_batches_pkey")),
        "{late}"
    );
    for node in &nodes {
        assert_eq!(prepared_parts(&app, node).await, 0, "nothing left prepared at {node}");
    }
    // Nothing left to decide: the records stay (an hour) while nothing refers to them.
    assert_eq!(app.store.resolve_prepared_parts_after(StdDuration::ZERO).await.unwrap(), (0, 0));
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM citus_prepared_batches").await, 3);
}

#[tokio::test]
async fn a_batch_for_a_shard_moved_since_the_map_was_read_is_stored_where_the_shard_is_now() {
    on_citus();
    let app = spawn_app_with(&[]).await;
    let db = connect(&app.db.url()).await;
    let trace = "moving-trace";
    let (shard, from, to) = shard_and_nodes(&db, trace).await;
    let table: String =
        db.query_one("SELECT shard_name('raw_signal_rows'::regclass, $1)", &[&shard]).await.unwrap().get(0);
    move_shard(&db, shard, &from, &to).await.unwrap();
    // The old placement's table is still at the old node (Citus drops it later): a batch
    // written by the stale map without looking would land there, out of every read.
    let old: Option<String> =
        at_node(&app, &from).await.query_one("SELECT to_regclass($1)::text", &[&table]).await.unwrap().get(0);
    assert!(old.is_some(), "the moved shard's old table is still at {from}");
    let before = batches_at_nodes(&db).await;
    let now = Utc::now();
    assert_eq!(
        app.post_json("/ingest/logs", &json!([log_at(trace, "INFO", now)])).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(routed_rows(&db, trace).await, 1, "stored where the shard is now");
    assert_eq!(batches_at_nodes(&db).await, before, "written through the coordinator");
    // The next pass reads the map again: batches go to the nodes again, this one to the new one.
    app.maintenance.pass_at(Utc::now(), Turn::Wait).await;
    let later = now + chrono::Duration::seconds(1);
    assert_eq!(
        app.post_json("/ingest/logs", &json!([log_at(trace, "INFO", later)])).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(routed_rows(&db, trace).await, 2);
    assert_eq!(batches_at_nodes(&db).await, before + 1, "written at the node again");
}

/// Whether `incidents` and `incident_traces` are distributed, colocated with the signals.
async fn incidents_distributed(db: &Client) -> bool {
    let colocated: i64 = one(
        db,
        "SELECT count(*) FROM pg_dist_partition
         WHERE logicalrelid IN ('incidents'::regclass, 'incident_traces'::regclass)
           AND colocationid = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'raw_signal_rows'::regclass)",
    )
    .await;
    colocated == 2
}

#[tokio::test]
async fn with_the_incidents_distributed_batches_track_their_traces_at_the_nodes_as_the_coordinator_does() {
    on_citus();
    let traces: Vec<String> = (0..200)
        .map(|n: u32| match n % 3 {
            0 => format!("{:032x}", u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
            1 => format!("legacy-trace-{n}"),
            _ => format!("trace-é☃-{n}"),
        })
        .collect();
    // One clock for every layout, so that the three see the same signals (and fingerprints).
    let now = Utc::now();
    let batches = |level: &str| -> Vec<Value> {
        traces
            .chunks(100)
            .map(|chunk| json!(chunk.iter().map(|t| log_at(t, level, now)).collect::<Vec<_>>()))
            .collect()
    };
    let (warnings, errors) = (batches("WARN"), batches("ERROR"));
    let layouts: [(&str, &[&str]); 3] = [
        ("incidents on the coordinator", &["--citus-distribute-incidents", "off"]),
        ("incidents distributed, written at the nodes", &["--citus-distribute-incidents", "on"]),
        (
            "incidents distributed, written through the coordinator",
            &["--citus-distribute-incidents", "on", "--citus-write-at-workers", "off"],
        ),
    ];
    let mut figures = Vec::new();
    for (layout, extra) in layouts {
        let app = spawn_app_with(extra).await;
        let db = connect(&app.db.url()).await;
        let distributed = extra[1] == "on";
        assert_eq!(incidents_distributed(&db).await, distributed, "{layout}");
        // Opened by the warnings, raised and analysed by the errors; then a retry of a batch.
        for batch in warnings.iter().chain(&errors).chain(&errors[..1]) {
            let (status, body) = app.post_json("/ingest/logs", batch).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{layout}: {body}");
        }
        if extra.len() == 2 {
            assert_eq!(batches_at_nodes(&db).await, 5, "{layout}: every batch written at the nodes");
        }
        if distributed {
            // A trace's incident is found on its one shard, with its signals.
            for trace in traces.iter().step_by(40) {
                let plan: Vec<String> = db
                    .query("EXPLAIN SELECT * FROM incidents WHERE trace_id = $1", &[trace])
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                assert!(plan.iter().any(|line| line.trim() == "Task Count: 1"), "{layout}: {plan:#?}");
            }
        }
        for worker in citus_workers() {
            let node = worker.trim_start_matches("postgres://postgres@");
            assert_eq!(prepared_parts(&app, node).await, 0, "{layout}: every part committed at {node}");
        }
        let metrics = scrape_addr(app.addr).await;
        let counted = |name: &str| -> i64 {
            metrics
                .iter()
                .filter(|(key, _)| key.starts_with(&format!("{name}{{")))
                .map(|(_, v)| *v as i64)
                .sum()
        };
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM incidents), (SELECT count(*) FROM incident_traces),
                        (SELECT count(*) FROM incidents WHERE trace_key = trace_id AND severity = 'HIGH'),
                        (SELECT sum(error_count)::int8 FROM incidents), (SELECT sum(high_signal_count)::int8 FROM incidents),
                        (SELECT count(*) FROM incidents WHERE analysis_requested_at IS NOT NULL),
                        (SELECT count(*) FROM analysis_outbox), (SELECT count(*) FROM problems),
                        (SELECT count(*) FROM incident_problems)",
                &[],
            )
            .await
            .unwrap();
        let mut these: Vec<i64> = (0..9).map(|i| row.get(i)).collect();
        these.extend([
            counted("prodsentinel_incidents_opened_total"),
            counted("prodsentinel_incidents_escalated_total"),
            get(&metrics, r#"prodsentinel_ingest_signals_duplicate_total{signal="log",transport="legacy"}"#)
                as i64,
        ]);
        figures.push((layout, these));
    }
    let (expected_layout, expected) = &figures[0];
    // 200 traces, one incident each, raised to HIGH by one error each; 100 duplicates.
    assert_eq!(&expected[..3], &[200, 200, 200], "{expected_layout}: {expected:?}");
    assert_eq!(expected[11], 100, "{expected_layout}: {expected:?}");
    assert!(expected[6] > 0 && expected[9] == 200 && expected[10] == 200, "{expected_layout}: {expected:?}");
    for (layout, these) in &figures[1..] {
        assert_eq!(these, expected, "{layout} against {expected_layout}");
    }
}

/// With the incidents distributed, a batch's claims and incidents become visible at their node
/// when its parts commit, just after its coordinator transaction: a range dropped in between
/// must still see them. Here one part, prepared at its node as the service prepares it (its
/// coordinator transaction done), holds a new incident in today's range, whose signals are
/// kept a month, when the range expires: the drop waits for the part, then keeps the incident.
#[tokio::test]
async fn with_the_incidents_distributed_a_range_s_drop_waits_for_parts_still_committing_and_keeps_their_incidents(
) {
    on_citus();
    let app = spawn_app_with(&[
        "--citus-distribute-incidents",
        "on",
        "--retention-logs",
        "1d",
        "--incident-retention",
        "10d",
    ])
    .await;
    let db = connect(&app.db.url()).await;
    let now = Utc::now();
    assert_eq!(app.post_json("/ingest/logs", &log_at("t-quiet", "INFO", now)).await.0, StatusCode::ACCEPTED);
    let range = format!("incidents_p{}", now.format("%Y%m%d"));
    let row = db
        .query_one(
            &format!(
                "SELECT shard_name('incident_traces', get_shard_id_for_distribution_column('incident_traces', 't-late')),
                        shard_name('{range}', get_shard_id_for_distribution_column('{range}', 't-late')),
                        (SELECT nodename || ':' || nodeport FROM citus_shards
                         WHERE shardid = get_shard_id_for_distribution_column('incident_traces', 't-late'))"
            ),
            &[],
        )
        .await
        .unwrap();
    let (claims, incidents, node): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    let batch = uuid::Uuid::new_v4();
    let part = at_node(&app, &node).await;
    // As write_batch.sql claims and upserts at the node.
    part.batch_execute(&format!(
        "BEGIN;
         INSERT INTO {claims} (trace_id, detected_at) VALUES ('t-late', now());
         INSERT INTO {incidents} (id, trace_id, trace_key, kept, status, severity, detected_at, affected_services,
                                  error_count, high_signal_count, last_signal_at, signals_expire_at)
         VALUES (gen_random_uuid(), 't-late', 't-late', false, 'OPEN', 'LOW', now(), ARRAY['svc'], 0, 0, now(),
                 now() + interval '30 days');
         PREPARE TRANSACTION 'prodsentinel:{batch}'"
    ))
    .await
    .unwrap();
    db.execute("INSERT INTO citus_prepared_batches (batch_id, committed) VALUES ($1, true)", &[&batch])
        .await
        .unwrap();

    let store = app.store.clone();
    let sort = tokio::spawn(async move {
        store.expire_incident_ranges(now + days(3), Turn::Wait, StdDuration::from_secs(60)).await
    });
    // The part is committed once the drop holds the incidents (its second transaction) and,
    // were it not waiting for the part, had sorted again and stopped at the node, where its
    // drop of the range waits for the part's locks; or a second later.
    wait_for("the drop to hold the incidents", StdDuration::from_secs(30), || async {
        one::<i64>(
            &db,
            "SELECT count(*) FROM pg_locks WHERE relation = 'incidents'::regclass AND mode = 'AccessExclusiveLock'
               AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .await
            == 1
    })
    .await;
    let waiting_at_node = "SELECT count(*) FROM pg_locks WHERE NOT granted
                             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let held = std::time::Instant::now();
    while held.elapsed() < StdDuration::from_secs(1) && one::<i64>(&part, waiting_at_node).await == 0 {
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    part.batch_execute(&format!("COMMIT PREPARED 'prodsentinel:{batch}'")).await.unwrap();

    let expiry = sort.await.unwrap().expect("the sort ran").expect("it had its turn");
    assert_eq!(expiry.ranges, 1, "{expiry:?}");
    assert!(!crate::volume::exists(&db, &range).await, "the range was dropped");
    assert_eq!((expiry.incidents, expiry.kept), (1, 1), "the quiet trace's went, the late one was kept");
    let kept: Vec<String> = column(&db, "SELECT trace_id FROM incidents_kept").await;
    assert_eq!(kept, ["t-late"]);
    assert_eq!(
        crate::volume::claims_pointing_at_an_incident(&db, "t-late").await,
        1,
        "the claim points at it"
    );
}
