//! Starting the real `App` against a fresh database of its own, and talking to it.

use std::net::SocketAddr;

use prodsentinel::{App, Config};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls};

/// The PostgreSQL server tests use, without a database name.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_SERVER").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// The worker nodes of the Citus cluster the tests run against (`host:port,host:port`, set by
/// tests/citus.sh, whose coordinator is `TEST_DATABASE_SERVER`); empty on a plain PostgreSQL.
pub fn citus_workers() -> Vec<String> {
    std::env::var("TEST_CITUS_WORKERS")
        .unwrap_or_default()
        .split(',')
        .filter(|node| !node.is_empty())
        .map(|node| format!("postgres://postgres@{node}"))
        .collect()
}

/// The expression naming the table of each row a query reads: on Citus a row of a
/// distributed table is in a shard, `<table>_<shard id>`, named here by its table.
pub fn row_table() -> &'static str {
    if citus_workers().is_empty() {
        "tableoid::regclass::text"
    } else {
        r"regexp_replace(tableoid::regclass::text, '_\d+$', '')"
    }
}

/// A database that exists only for one test: dropped when this value is dropped, even when the
/// test panics.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// A unique name; the database itself is created by the app under test (or by `create`).
    pub fn new() -> TestDb {
        TestDb { name: format!("prodsentinel_test_{}", uuid::Uuid::new_v4().simple()) }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }

    /// On a Citus cluster, what an operator does before pointing the service at it (Citus's
    /// documentation): the database on every node with the extension, the workers added.
    /// Nothing on a plain PostgreSQL.
    pub async fn prepare_citus(&self) {
        let workers = citus_workers();
        if workers.is_empty() {
            return;
        }
        let admin = connect(&format!("{}/postgres", server_url())).await;
        admin.batch_execute(&format!("CREATE DATABASE \"{}\"", self.name)).await.unwrap();
        self.join_citus().await;
    }

    /// This database, existing on the coordinator, made a Citus database: the extension in it,
    /// the same database on every worker, the workers added.
    pub async fn join_citus(&self) {
        for server in citus_workers() {
            let admin = connect(&format!("{server}/postgres")).await;
            admin.batch_execute(&format!("CREATE DATABASE \"{}\"", self.name)).await.unwrap();
        }
        for server in std::iter::once(server_url()).chain(citus_workers()) {
            connect(&format!("{server}/{}", self.name))
                .await
                .batch_execute("CREATE EXTENSION citus")
                .await
                .unwrap();
        }
        // Adding a node copies the roles to it (ALTER ROLE, a catalog row shared by every
        // database of the worker): two tests doing it at once fail with "tuple concurrently
        // updated". One at a time, under a lock of the coordinator's `postgres` database.
        let turn = connect(&format!("{}/postgres", server_url())).await;
        turn.batch_execute("SELECT pg_advisory_lock(2024062400)").await.unwrap();
        let coordinator = self.connect().await;
        // The service never joins a table of the coordinator (the shared resources, the
        // incidents) to the distributed signals in a read: Citus would send the whole table to
        // the workers at each one. Its sessions here refuse such a join, so that one fails the
        // test that makes it. (A test's own look at the rows may join through a subquery.)
        coordinator
            .batch_execute(&format!(
                "ALTER DATABASE \"{}\" SET citus.local_table_join_policy = never",
                self.name
            ))
            .await
            .unwrap();
        coordinator
            .batch_execute("SELECT citus_set_coordinator_host('127.0.0.1', current_setting('port')::int)")
            .await
            .unwrap();
        for node in std::env::var("TEST_CITUS_WORKERS").unwrap_or_default().split(',') {
            let (host, port) = node.rsplit_once(':').expect("TEST_CITUS_WORKERS holds host:port pairs");
            let port: i32 = port.parse().expect("a worker's port is a number");
            coordinator.execute("SELECT citus_add_node($1, $2)", &[&host, &port]).await.unwrap();
        }
        turn.batch_execute("SELECT pg_advisory_unlock(2024062400)").await.unwrap();
    }

    /// A direct connection to this database, for assertions.
    pub async fn connect(&self) -> Client {
        connect(&self.url()).await
    }

    /// A database outage, as the app sees it: with `false`, every open connection is cut and
    /// new ones are refused; with `true`, connections are allowed again.
    pub async fn allow_connections(&self, allow: bool) {
        let admin = connect(&format!("{}/postgres", server_url())).await;
        admin
            .batch_execute(&format!("ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS {allow}", self.name))
            .await
            .unwrap();
        if !allow {
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    &[&self.name],
                )
                .await
                .unwrap();
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = &self.name;
        on_every_node_from_drop(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
    }
}

/// Runs `sql` in the `postgres` database of the server and of every Citus worker, for a
/// `Drop`: it runs inside the test's runtime, so this uses a thread with a runtime of its own.
/// A failure is said, not raised (the test's own outcome matters more).
pub fn on_every_node_from_drop(sql: String) {
    let dropper = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            for server in std::iter::once(server_url()).chain(citus_workers()) {
                let admin = connect(&format!("{server}/postgres")).await;
                admin
                    .batch_execute(&sql)
                    .await
                    .unwrap_or_else(|why| eprintln!("could not clean up ({sql}): {why}"));
            }
        });
    });
    let _ = dropper.join();
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|why| panic!("PostgreSQL must be running for the tests ({url}): {why}"));
    tokio::spawn(connection);
    client
}

/// A Redis logical database (1 to 15) that only this test uses, emptied when taken and when
/// dropped. A lock file per database, in the machine's temp directory, keeps concurrent tests
/// apart: threads, processes, and test runs of other checkouts on the same Redis.
pub struct RedisDb {
    pub index: u8,
    lock: std::fs::File,
}

/// The Redis server tests use, without a database number.
pub fn redis_server() -> String {
    std::env::var("TEST_REDIS_SERVER").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

impl RedisDb {
    pub async fn acquire() -> RedisDb {
        let dir = std::env::temp_dir().join("prodsentinel-test-redis-locks");
        std::fs::create_dir_all(&dir).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            for index in 1..=15u8 {
                let lock = std::fs::File::create(dir.join(format!("redis-db-{index}.lock"))).unwrap();
                if lock.try_lock().is_ok() {
                    let db = RedisDb { index, lock };
                    db.flush();
                    return db;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no free Redis database for 120 s");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", redis_server(), self.index)
    }

    /// A plain connection to this database, for assertions.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .unwrap_or_else(|why| panic!("Redis must be running for the tests ({}): {why}", self.url()))
    }

    fn flush(&self) {
        let _: () = redis::cmd("FLUSHDB").query(&mut self.connection()).expect("FLUSHDB");
    }
}

impl Drop for RedisDb {
    fn drop(&mut self) {
        self.flush();
        let _ = self.lock.unlock();
    }
}

/// A running app on an ephemeral port with its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub http: reqwest::Client,
    /// The app's maintenance job, to run passes by hand at any time.
    pub maintenance: prodsentinel::maintenance::Maintenance,
    /// The app's store, to look at what a read does (plans).
    pub store: prodsentinel::store::Store,
    /// The outbox dispatcher, when the app was spawned to be stepped by hand
    /// ([`spawn_app_dispatching_by_hand`]); otherwise it runs in the background.
    dispatcher: Option<prodsentinel::queue::Dispatcher>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Last: the database and Redis are cleaned after the app's handles are dropped.
    pub db: TestDb,
    pub redis: RedisDb,
}

/// Settings every test app gets; `extra` flags come after and win.
pub fn test_config(db: &TestDb, extra: &[&str]) -> Config {
    test_config_for(&db.url(), extra)
}

/// The same settings on a database of any server (a test's own PostgreSQL).
pub fn test_config_for(url: &str, extra: &[&str]) -> Config {
    let mut args = vec![
        "prodsentinel",
        "--database-url",
        url,
        "--api-addr",
        "127.0.0.1:0",
        "--otlp-grpc-addr",
        "127.0.0.1:0",
        "--otlp-http-addr",
        "127.0.0.1:0",
        "--database-wait-seconds",
        "10",
        "--database-acquire-timeout-ms",
        "5000",
        // A loaded CI machine must not turn a slow commit into a 503: tests of the timeout
        // itself set their own.
        "--ingest-timeout-ms",
        "30000",
        "--shutdown-timeout-seconds",
        "5",
        // The fixtures carry fixed times from 2024: kept forever unless a test of retention
        // sets its own (a signal past its retention on arrival is not stored).
        "--retention-traces",
        "0",
        "--retention-logs",
        "0",
        "--retention-metrics",
        "0",
        // Likewise incidents the tests insert with old times.
        "--incident-retention",
        "0",
        // Partitions of past days stay in row form, where tests look at them, unless a test of
        // sealing steps it by hand (volume::sealing).
        "--seal-after",
        "0",
    ];
    args.extend_from_slice(extra);
    Config::from_args(args).expect("valid test configuration")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    spawn(extra, false).await
}

/// An app whose outbox dispatcher does not run by itself: the test steps it with
/// [`TestApp::dispatch_all`] and asserts what each pass did.
pub async fn spawn_app_dispatching_by_hand(extra: &[&str]) -> TestApp {
    spawn(extra, true).await
}

async fn spawn(extra: &[&str], dispatch_by_hand: bool) -> TestApp {
    // TEST_LOG=debug (any LOG_LEVEL value) shows the app's logs while debugging a test.
    if let Ok(level) = std::env::var("TEST_LOG") {
        prodsentinel::telemetry::init(&level, prodsentinel::config::LogFormat::Text);
    }
    let db = TestDb::new();
    db.prepare_citus().await;
    let redis = RedisDb::acquire().await;
    let redis_url = redis.url();
    let args: Vec<&str> =
        ["--redis-url", redis_url.as_str()].into_iter().chain(extra.iter().copied()).collect();
    let mut app = App::build(test_config(&db, &args)).await.expect("app starts");
    let mut dispatcher = None;
    if dispatch_by_hand {
        dispatcher = Some(app.dispatcher());
        app = app.dispatch_by_hand();
    }
    let (addr, grpc_addr, http_addr) = (app.api_addr(), app.grpc_addr(), app.http_addr());
    let maintenance = app.maintenance();
    let store = app.store().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        grpc_addr,
        http_addr,
        http: reqwest::Client::new(),
        maintenance,
        store,
        dispatcher,
        stop: Some(stop),
        server: Some(server),
        db,
        redis,
    }
}

/// Another instance of the service on `app`'s database and Redis database, as a second
/// replica would run; stopped when dropped.
pub struct Instance {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl TestApp {
    pub async fn second_instance(&self, extra: &[&str]) -> Instance {
        let redis_url = self.redis.url();
        let args: Vec<&str> =
            ["--redis-url", redis_url.as_str()].into_iter().chain(extra.iter().copied()).collect();
        let app = App::build(test_config(&self.db, &args)).await.expect("second instance starts");
        let addr = app.api_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Instance { addr, _stop: stop }
    }

    /// The maintenance job of an instance with `extra` settings on this app's database (the
    /// instance itself is not run), to step its passes at any time.
    pub async fn maintenance_with(&self, extra: &[&str]) -> prodsentinel::maintenance::Maintenance {
        let redis_url = self.redis.url();
        let args: Vec<&str> =
            ["--redis-url", redis_url.as_str()].into_iter().chain(extra.iter().copied()).collect();
        App::build(test_config(&self.db, &args)).await.expect("instance builds").maintenance()
    }

    /// Steps the outbox dispatcher until nothing is due or Redis refuses; the outcome of each
    /// step that found rows, in order. Only for an app from [`spawn_app_dispatching_by_hand`].
    pub async fn dispatch_all(&self) -> Vec<prodsentinel::queue::StepOutcome> {
        use prodsentinel::queue::StepOutcome;
        let dispatcher = self.dispatcher.as_ref().expect("an app spawned to dispatch by hand");
        let mut outcomes = Vec::new();
        // Each step claims up to 100 rows: 1,000 steps is far beyond any test's outbox.
        for _ in 0..1000 {
            match dispatcher.step().await.expect("outbox readable") {
                StepOutcome::NothingDue => return outcomes,
                refused @ StepOutcome::QueueUnavailable { .. } => {
                    outcomes.push(refused);
                    return outcomes;
                }
                dispatched => outcomes.push(dispatched),
            }
        }
        panic!("the outbox never emptied: {outcomes:?}");
    }

    /// Waits until a backend of this test's database waits for a lock: the writer is blocked
    /// by a lock the test holds, with the request it took.
    pub async fn wait_for_blocked_writer(&self) {
        let db = self.db().await;
        wait_for("a writer blocked on the test's lock", std::time::Duration::from_secs(20), || async {
            let row = db
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap();
            row.get::<_, i64>(0) > 0
        })
        .await;
    }

    /// `(status, count)` of the analysis outbox, sorted by status.
    pub async fn outbox(&self) -> Vec<(String, i64)> {
        self.db()
            .await
            .query("SELECT status, count(*) FROM analysis_outbox GROUP BY status ORDER BY status", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// The trace ids of the task messages waiting in the Celery queue list `queue`.
    pub fn queued_trace_ids(&self, queue: &str) -> Vec<String> {
        use base64::Engine;
        let messages: Vec<String> =
            redis::cmd("LRANGE").arg(queue).arg(0).arg(-1).query(&mut self.redis.connection()).unwrap();
        messages
            .iter()
            .map(|message| {
                let envelope: Value = serde_json::from_str(message).unwrap();
                let body = base64::engine::general_purpose::STANDARD
                    .decode(envelope["body"].as_str().unwrap())
                    .unwrap();
                let body: Value = serde_json::from_slice(&body).unwrap();
                body[0][0].as_str().unwrap().to_owned()
            })
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.expect("request sent")
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let response = self.get(path).await;
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    /// POSTs `body` as `application/json`.
    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self.http.post(self.url(path)).json(body).send().await.expect("request sent");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    /// POSTs raw bytes with an optional content type.
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Response {
        let mut request = self.http.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.expect("request sent")
    }

    pub async fn db(&self) -> Client {
        self.db.connect().await
    }

    pub async fn count_signals(&self) -> i64 {
        self.db().await.query_one("SELECT count(*) FROM raw_signals", &[]).await.unwrap().get(0)
    }

    /// Stops the server the way SIGTERM does and waits for it to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("server task"),
            None => Ok(()),
        }
    }
}

/// A valid legacy log body with a fresh `signal_id`.
pub fn log_body(trace_id: &str, level: &str, message: &str) -> Value {
    serde_json::json!({
        "signal_id": uuid::Uuid::new_v4().to_string(),
        "trace_id": trace_id,
        "service_name": "checkout",
        "timestamp": "2024-05-01T10:20:30.123456+00:00",
        "level": level,
        "message": message,
        "attributes": {"order_id": 42}
    })
}

/// The `loc` paths of a 422 body, as dotted strings.
pub fn error_locs(body: &Value) -> Vec<String> {
    body["detail"]
        .as_array()
        .expect("detail is a list of field errors")
        .iter()
        .map(|e| {
            e["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().map(str::to_owned).unwrap_or_else(|| p.to_string()))
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect()
}

/// A fixture file of `tests/fixtures/`.
pub fn fixture(path: &str) -> String {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|why| panic!("{full}: {why}"))
}

/// A stored signal: the columns as the analysis worker reads them, and its payload both as
/// stored and as the query API returns it (OTLP resource and scope re-attached, defaults back).
#[derive(Debug, Clone)]
pub struct Row {
    pub id: uuid::Uuid,
    pub signal_type: String,
    pub trace_id: String,
    pub service_name: String,
    pub timestamp: String,
    /// As the API returns it.
    pub payload: Value,
    /// The `payload` column, as the analysis worker reads it.
    pub stored: Value,
}

impl TestApp {
    /// Every stored signal, ordered by timestamp then id.
    pub async fn rows(&self) -> Vec<Row> {
        self.db()
            .await
            .query(
                r#"SELECT id, signal_type::text, trace_id, service_name,
                          to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), payload,
                          resource, scope
                   FROM raw_signals LEFT JOIN (SELECT shared_id, resource, scope FROM signal_shared) sh USING (shared_id)
                   ORDER BY "timestamp", id"#,
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let signal_type: String = r.get(1);
                let kind = prodsentinel::model::SignalType::parse(&signal_type).unwrap();
                let stored: Value = r.get(5);
                let shared: Option<(Value, Value)> = r.get::<_, Option<Value>>(6).zip(r.get(7));
                Row {
                    id: r.get(0),
                    signal_type,
                    trace_id: r.get(2),
                    service_name: r.get(3),
                    timestamp: r.get(4),
                    payload: prodsentinel::model::payload::api_form(kind, stored.clone(), shared),
                    stored,
                }
            })
            .collect()
    }

    /// POSTs to the OTLP/HTTP receiver; returns status, headers and body bytes.
    pub async fn post_otlp(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let mut request = self.http.post(format!("http://{}{path}", self.http_addr)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let (status, headers) = (response.status(), response.headers().clone());
        (status, headers, response.bytes().await.unwrap().to_vec())
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Cuts the app off its database (`allow = false`: new connections refused, open ones
/// terminated) or lets it back in.
pub async fn block_connections(app: &TestApp, allow: bool) {
    app.db.allow_connections(allow).await;
}

/// The Python of a virtual environment holding `tests/python/requirements.txt` (the real
/// OpenTelemetry SDK, pinned), created on first use from PyPI. A file lock makes concurrent
/// tests wait for one installation; a stamp of the requirements' text makes a changed list
/// reinstall.
pub fn python_with_requirements() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-venv");
    let requirements = format!("{}/tests/python/requirements.txt", env!("CARGO_MANIFEST_DIR"));
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    let python = dir.join("bin/python");
    let stamp = dir.join("requirements.installed");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(&dir);
        let run = |program: &std::path::Path, args: &[&str]| {
            let output = std::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap_or_else(|why| panic!("cannot run {}: {why}", program.display()));
            assert!(
                output.status.success(),
                "{} {args:?} failed:\n{}\n{}",
                program.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        };
        run(std::path::Path::new("python3"), &["-m", "venv", dir.to_str().unwrap()]);
        run(
            &python,
            &["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", &requirements],
        );
        std::fs::write(&stamp, &wanted).unwrap();
    }
    lock.unlock().unwrap();
    python
}

/// Polls `check` every 100 ms until it holds; fails the test after `timeout`, naming `what`.
pub async fn wait_for<F, Fut>(what: &str, timeout: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A TCP port nothing listens on (just released by the OS).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Exports `records` log records over OTLP/gRPC to `app`.
pub async fn grpc_logs_export(
    app: &TestApp,
    records: usize,
) -> Result<
    tonic::Response<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse>,
    tonic::Status,
> {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let log_records = (0..records)
        .map(|i| LogRecord {
            time_unix_nano: 1_714_558_830_000_000_000 + i as u64,
            severity_number: 9,
            ..Default::default()
        })
        .collect();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
            ..Default::default()
        }],
    };
    let mut client =
        LogsServiceClient::connect(format!("http://{}", app.grpc_addr)).await.expect("gRPC connects");
    client.export(request).await
}

/// Held by a test that loads the whole machine (the fault tests under load): such tests take
/// turns, across threads and processes, so that each measures its own fault rather than the
/// others' load. Released when dropped.
pub async fn machine_load_turn() -> std::fs::File {
    let path = std::env::temp_dir().join("prodsentinel-test-machine-load.lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(path).unwrap();
        file.lock().unwrap();
        file
    })
    .await
    .unwrap()
}

/// The first column of every row `sql` returns.
pub async fn column<T>(db: &Client, sql: &str) -> Vec<T>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    let rows = db.query(sql, &[]).await.unwrap_or_else(|why| panic!("{sql}: {why}"));
    rows.iter().map(|row| row.get(0)).collect()
}

/// The one value `sql` returns.
pub async fn one<T>(db: &Client, sql: &str) -> T
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    db.query_one(sql, &[]).await.unwrap_or_else(|why| panic!("{sql}: {why}")).get(0)
}

/// The tables and partitions a plan (`EXPLAIN (FORMAT JSON)`) reads, sorted.
pub fn plan_relations(plan: &Value) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![plan[0]["Plan"].clone()];
    while let Some(node) = stack.pop() {
        if let Some(name) = node["Relation Name"].as_str() {
            names.push(name.to_owned());
        }
        stack.extend(node["Plans"].as_array().cloned().unwrap_or_default());
    }
    names.sort();
    names
}

/// Posts an OTLP/HTTP JSON export to `path` of `app` and asserts it was taken whole.
pub async fn post_otlp_json(app: &TestApp, path: &str, body: &serde_json::Value) {
    let (status, _, answer) =
        app.post_otlp(path, &[("content-type", "application/json")], serde_json::to_vec(body).unwrap()).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{}", String::from_utf8_lossy(&answer));
}
