//! Queries on a streaming replica (`QUERY_DATABASE_URL`): a primary and a replica of the test's
//! own (pg_basebackup, streaming). Reads are shown to come from the replica by pausing its
//! replay: what the primary has committed since is not seen until replay resumes. Writes (ingest,
//! PATCH) go to the primary. With the replica stopped, queries keep answering from the primary.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_postgres::NoTls;

use crate::helpers::{log_body, wait_for, RedisDb};
use crate::own_postgres::OwnPostgres;

const DB: &str = "prodsentinel_replica";

async fn connect(pg: &OwnPostgres, database: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg.url(database, ""), NoTls).await.expect("connects");
    tokio::spawn(connection);
    client
}

struct Running {
    addr: std::net::SocketAddr,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(format!("http://{}{path}", self.addr)).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The messages `/query/signals` returns for trace `t-replica`.
    async fn messages(&self) -> Vec<String> {
        let (status, page) = self.get("/query/signals?trace_id=t-replica&limit=100").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let mut messages: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["payload"]["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        messages.sort();
        messages
    }

    async fn send(&self, message: &str) {
        let body = log_body("t-replica", "ERROR", message);
        let response =
            self.http.post(format!("http://{}/ingest/logs", self.addr)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_read_the_replica_writes_go_to_the_primary_and_a_replica_away_falls_back() {
    let mut primary = OwnPostgres::init();
    primary.start();
    let mut replica = OwnPostgres::replica_of(&primary);
    replica.start();
    let redis = RedisDb::acquire().await;

    // The database exists on both; the replica's replay is paused before the app migrates the
    // primary, as a replica behind a new deploy's migration would be.
    connect(&primary, "postgres").await.batch_execute(&format!("CREATE DATABASE {DB}")).await.unwrap();
    let replica_url = replica.url(DB, "");
    wait_for("the database replicated", Duration::from_secs(30), || async {
        tokio_postgres::connect(&replica_url, NoTls).await.is_ok()
    })
    .await;
    let standby = connect(&replica, DB).await;
    standby.batch_execute("SELECT pg_wal_replay_pause()").await.unwrap();

    let (primary_url, replica_url, redis_url) = (primary.url(DB, ""), replica.url(DB, ""), redis.url());
    let config = crate::helpers::test_config_for(
        &primary_url,
        &["--query-database-url", &replica_url, "--redis-url", &redis_url],
    );
    let app = prodsentinel::App::build(config).await.expect("starts");
    let addr = app.api_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let app = Running { addr, http: reqwest::Client::new(), stop: Some(stop), server };

    // The replica has not replayed the schema the app migrated the primary to: queries read
    // from the primary (not a 500 for tables the replica lacks).
    app.send("first").await;
    assert_eq!(app.messages().await, ["first"], "answered by the primary");
    let (_, ready) = app.get("/health/ready").await;
    assert_eq!(ready["query_replica"]["queries_read_from"], "primary", "{ready}");
    // Replay resumed: the replica catches up, then serves the queries.
    standby.batch_execute("SELECT pg_wal_replay_resume()").await.unwrap();
    wait_for("the replica serving the queries, with the first log", Duration::from_secs(30), || async {
        let (_, ready) = app.get("/health/ready").await;
        ready["query_replica"]["queries_read_from"] == "replica" && app.messages().await == ["first"]
    })
    .await;
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["query_replica"]["status"], "connected", "{ready}");

    // Replay paused: the primary has the second log, the queries do not see it.
    standby.batch_execute("SELECT pg_wal_replay_pause()").await.unwrap();
    app.send("second").await;
    let on_primary: i64 =
        connect(&primary, DB).await.query_one("SELECT count(*) FROM raw_signals", &[]).await.unwrap().get(0);
    assert_eq!(on_primary, 2, "ingest writes to the primary");
    assert_eq!(app.messages().await, ["first"], "queries read the replica, whose replay is paused");
    let (_, jaeger) = app.get("/jaeger/api/traces/t-replica").await;
    let logs = jaeger["data"][0]["spans"][0]["logs"].as_array().map(Vec::len);
    assert_eq!(logs, Some(1), "the Jaeger API reads the replica too: {jaeger}");
    wait_for("the replay lag reported", Duration::from_secs(30), || async {
        let (_, ready) = app.get("/health/ready").await;
        let metrics = crate::metrics::scrape_addr(addr).await;
        ready["query_replica"]["replay_lag_seconds"].as_f64().unwrap_or_default() > 0.0
            && metrics.get("prodsentinel_query_replica_replay_lag_seconds").copied().unwrap_or_default() > 0.0
            && metrics.get("prodsentinel_query_replica_up").copied() == Some(1.0)
    })
    .await;

    // PATCH writes on the primary even while the replica lags (a read-only replica would
    // refuse it).
    let (_, incidents) = app.get("/query/incidents").await;
    let id =
        incidents["items"][0]["id"].as_str().expect("the incident, replicated before the pause").to_owned();
    let patched = app
        .http
        .patch(format!("http://{addr}/query/incidents/{id}"))
        .json(&serde_json::json!({"status": "investigating"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let status: String = connect(&primary, DB)
        .await
        .query_one("SELECT status::text FROM incidents WHERE id = $1::text::uuid", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "INVESTIGATING");

    standby.batch_execute("SELECT pg_wal_replay_resume()").await.unwrap();
    wait_for("the second log replayed", Duration::from_secs(30), || async {
        app.messages().await == ["first", "second"]
    })
    .await;
    drop(standby);

    // The replica away: queries answer from the primary (a read in flight at that moment may
    // get a retryable 503; the next ones do not).
    replica.stop();
    app.send("third").await;
    wait_for("queries answered by the primary", Duration::from_secs(30), || async {
        let (status, page) = app.get("/query/signals?trace_id=t-replica&limit=100").await;
        status == StatusCode::OK && page["total"] == 3
    })
    .await;
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::OK, "the service stays ready without its replica: {ready}");
    assert_eq!(ready["query_replica"]["status"], "unavailable", "{ready}");
    assert_eq!(ready["query_replica"]["queries_read_from"], "primary", "{ready}");
    let metrics = crate::metrics::scrape_addr(addr).await;
    assert_eq!(metrics.get("prodsentinel_query_replica_up").copied(), Some(0.0));
    app.stop().await;
}
