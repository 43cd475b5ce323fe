//! An unpartitioned raw_signals, ours from before partitioning or the original Python
//! backend's, becomes the partitioned table without losing a row or its duplicate check.

use std::time::Instant;

use prodsentinel::store::migrate::MIGRATIONS;
use prodsentinel::store::migrate_database;
use prodsentinel::App;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_postgres::Client;

use crate::helpers::{column, one, test_config, RedisDb, TestDb};

const ROWS: i64 = 100_000;

/// `ROWS` signals over the last 29 days in traces of ten (logs, spans and points in turn) and
/// ten stamped three days ahead, as an unpartitioned table holds them.
async fn fill(db: &Client, payload_type: &str) {
    db.batch_execute(&format!(
        "INSERT INTO raw_signals (id, signal_type, trace_id, service_name, \"timestamp\", payload)
         SELECT gen_random_uuid(), (ARRAY['log', 'trace', 'metric'])[1 + g % 3]::signaltypeenum,
                'legacy-' || (g / 10), 'svc-' || (g % 7), now() - g * interval '25 seconds',
                json_build_object('level', 'INFO', 'message', 'row ' || g)::{payload_type}
         FROM generate_series(1, {ROWS}) AS g;
         INSERT INTO raw_signals (id, signal_type, trace_id, service_name, \"timestamp\", payload)
         SELECT gen_random_uuid(), 'log', 'legacy-ahead', 'svc-0', now() + interval '3 days' + g * interval '1 second',
                json_build_object('level', 'INFO', 'message', 'ahead ' || g)::{payload_type}
         FROM generate_series(1, 10) AS g;"
    ))
    .await
    .unwrap();
}

/// A stored log as the legacy client that sent it would send it again.
async fn resend_body(db: &Client, trace_id: &str) -> Value {
    let row = db
        .query_one(
            r#"SELECT id::text, trace_id, service_name,
                      to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
                      payload->>'message'
               FROM raw_signals WHERE trace_id = $1 AND signal_type = 'log' LIMIT 1"#,
            &[&trace_id],
        )
        .await
        .unwrap();
    json!({
        "signal_id": row.get::<_, String>(0), "trace_id": row.get::<_, String>(1),
        "service_name": row.get::<_, String>(2), "timestamp": row.get::<_, String>(3),
        "level": "INFO", "message": row.get::<_, String>(4), "attributes": {}
    })
}

async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// Builds and serves the app on `db` (applying what is missing) and a Redis database of its own
/// (the error signal sent below queues an analysis), returns its API address and how long the
/// start took.
async fn start(db: &TestDb) -> (std::net::SocketAddr, Running, f64) {
    let redis = RedisDb::acquire().await;
    let redis_url = redis.url();
    let started = Instant::now();
    let app = App::build(test_config(db, &["--redis-url", &redis_url]))
        .await
        .expect("the app starts on the old database");
    let took = started.elapsed().as_secs_f64();
    let addr = app.api_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    (addr, Running { stop, server, _redis: redis }, took)
}

/// The app `start` serves, until `stop`.
struct Running {
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    // Cleaned once the app, and its outbox dispatcher, have stopped.
    _redis: RedisDb,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(30), self.server).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "the app stops cleanly: {stopped:?}");
    }
}

/// The checks both kinds of old database pass once migrated.
async fn assert_migrated_whole(db: &Client, addr: std::net::SocketAddr, took: f64, what: &str) {
    assert_eq!(count(db, "SELECT count(*) FROM raw_signals").await, ROWS + 10, "every row kept");
    assert_eq!(count(db, "SELECT count(*) FROM raw_signals_legacy").await, ROWS, "attached in place");
    assert_eq!(
        count(db, "SELECT count(*) FROM raw_signals_default").await,
        10,
        "stamped ahead of the cut-over"
    );
    let legacy: (Option<chrono::DateTime<chrono::Utc>>, chrono::DateTime<chrono::Utc>) = {
        let row =
            db.query_one("SELECT starts, ends FROM raw_signal_partitions WHERE legacy", &[]).await.unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(legacy.0, None, "from the beginning of time");
    assert!(legacy.1 > chrono::Utc::now() && legacy.1 <= chrono::Utc::now() + chrono::Duration::hours(1));
    let after: i64 = db
        .query_one("SELECT count(*) FROM raw_signal_partitions WHERE starts = $1", &[&legacy.1])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, 1, "the service's partitions continue from the cut-over");
    // The worker's read, on a trace from before.
    let worker = db
        .query("SELECT * FROM raw_signals WHERE trace_id = $1 ORDER BY timestamp", &[&"legacy-42"])
        .await
        .unwrap();
    assert_eq!(worker.len(), 10);
    // The duplicate check survived, in the legacy partition and in the default one.
    let http = reqwest::Client::new();
    for trace in ["legacy-42", "legacy-ahead"] {
        let body = resend_body(db, trace).await;
        let answer = http.post(format!("http://{addr}/ingest/logs")).json(&body).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(count(db, "SELECT count(*) FROM raw_signals").await, ROWS + 10, "resends stored nothing");
    let page: Value =
        http.get(format!("http://{addr}/query/signals?limit=5")).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["items"][0]["trace_id"], "legacy-ahead", "newest first across partitions");
    // The signals from before are counted for GET /query/services by the first merge.
    crate::helpers::wait_for("the first merge of the counts", std::time::Duration::from_secs(60), || async {
        count(db, "SELECT count(*) FROM service_activity_stale").await == 0
    })
    .await;
    let all = (chrono::DateTime::UNIX_EPOCH, chrono::Utc::now() + chrono::Duration::days(400));
    let services = super::activity::answered(addr, all.0, all.1).await.2;
    assert_eq!(services, super::activity::counted(db, all.0, all.1).await);
    assert_eq!(services.iter().map(|s| s.1 + s.2 + s.3).sum::<i64>(), ROWS + 10);
    eprintln!(
        "{what}: {} rows migrated and started in {took:.2} s, {:.1} s per million rows",
        ROWS + 10,
        took / (ROWS + 10) as f64 * 1e6
    );
}

#[tokio::test]
async fn our_unpartitioned_table_of_100k_rows_is_migrated_whole_with_its_duplicate_check() {
    let db = TestDb::new();
    let admin = crate::helpers::connect(&format!("{}/postgres", crate::helpers::server_url())).await;
    admin.batch_execute(&format!("CREATE DATABASE \"{}\"", db.name)).await.unwrap();
    let config = test_config(&db, &[]);
    let before: Vec<_> = MIGRATIONS.iter().copied().filter(|m| m.version < 7).collect();
    migrate_database(&config.database, &before).await.unwrap();
    let client = db.connect().await;
    fill(&client, "jsonb").await;

    let (addr, running, took) = start(&db).await;
    assert_migrated_whole(&client, addr, took, "our pre-partitioning schema").await;
    running.stop().await;
}

/// The tables as the original backend's SQLAlchemy models create them (docs/contracts.md §1).
const ORIGINAL_SCHEMA: &str = r#"
CREATE TYPE signaltypeenum AS ENUM ('log', 'trace', 'metric');
CREATE TYPE incidentstatus AS ENUM ('OPEN', 'INVESTIGATING', 'RESOLVED', 'CLOSED');
CREATE TYPE incidentseverity AS ENUM ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL');
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('3f2a1b9c0d4e');
CREATE TABLE raw_signals (
    id uuid NOT NULL, signal_type signaltypeenum NOT NULL, trace_id varchar, service_name varchar,
    "timestamp" timestamptz, payload json NOT NULL, PRIMARY KEY (id)
);
CREATE INDEX ix_raw_signals_trace_id ON raw_signals (trace_id);
CREATE INDEX ix_raw_signals_service_name ON raw_signals (service_name);
CREATE INDEX ix_raw_signals_timestamp ON raw_signals ("timestamp");
CREATE TABLE incidents (
    id uuid NOT NULL, trace_id varchar NOT NULL, status incidentstatus, severity incidentseverity,
    detected_at timestamptz DEFAULT now(), resolved_at timestamptz, affected_services varchar[],
    error_count double precision, PRIMARY KEY (id)
);
CREATE INDEX ix_incidents_trace_id ON incidents (trace_id);
CREATE TABLE analysis_results (
    id uuid NOT NULL, incident_id uuid REFERENCES incidents (id), root_cause text NOT NULL,
    confidence_score double precision NOT NULL, evidence_signals uuid[] NOT NULL,
    ai_explanation json NOT NULL, generated_at timestamptz DEFAULT now(), PRIMARY KEY (id)
);
CREATE INDEX ix_analysis_results_incident_id ON analysis_results (incident_id);
INSERT INTO incidents (id, trace_id, status, severity, affected_services, error_count)
VALUES ('6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f', 'legacy-42', 'OPEN', 'HIGH', '{svc-0}', 10),
       ('7f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f', 'legacy-43', NULL, NULL, NULL, 3);
INSERT INTO analysis_results (id, incident_id, root_cause, confidence_score, evidence_signals, ai_explanation)
VALUES (gen_random_uuid(), '6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f', 'pool', 0.8, '{}', '{}');
"#;

#[tokio::test]
async fn the_original_backends_database_is_adopted_and_migrated_whole() {
    let db = TestDb::new();
    let admin = crate::helpers::connect(&format!("{}/postgres", crate::helpers::server_url())).await;
    admin.batch_execute(&format!("CREATE DATABASE \"{}\"", db.name)).await.unwrap();
    let client = db.connect().await;
    client.batch_execute(ORIGINAL_SCHEMA).await.unwrap();
    fill(&client, "json").await;

    let (addr, running, took) = start(&db).await;
    assert_migrated_whole(&client, addr, took, "the original backend's schema").await;
    let versions: Vec<i32> = column(&client, "SELECT version FROM schema_migrations ORDER BY version").await;
    assert_eq!(versions, (1..=MIGRATIONS.len() as i32).collect::<Vec<_>>());
    let payload_type: String = one(&client, "SELECT data_type FROM information_schema.columns WHERE table_name = 'raw_signals' AND column_name = 'payload'").await;
    assert_eq!(payload_type, "jsonb");
    // Its incidents are served, the one without a status as open, its analysis too.
    let http = reqwest::Client::new();
    let incidents: Value =
        http.get(format!("http://{addr}/query/incidents")).send().await.unwrap().json().await.unwrap();
    assert_eq!(incidents["total"], 2);
    let statuses: Vec<&str> =
        incidents["items"].as_array().unwrap().iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["open", "open"]);
    let analysis = http
        .get(format!("http://{addr}/query/incidents/6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f/analysis"))
        .send()
        .await
        .unwrap();
    assert_eq!(analysis.status(), StatusCode::OK);
    // New signals of an old trace are tracked under its incident.
    let mut body = crate::helpers::log_body("legacy-42", "ERROR", "still failing");
    body["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    let answer = http.post(format!("http://{addr}/ingest/logs")).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let count: f64 = one(&client, "SELECT error_count FROM incidents WHERE trace_id = 'legacy-42'").await;
    assert_eq!(count, 11.0);
    running.stop().await;
}
