//! The real `prodsentinel` binary: settings, exit codes, signals.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::helpers::TestDb;

const SETTINGS: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "DATABASE_WAIT_SECONDS",
    "DATABASE_ACQUIRE_TIMEOUT_MS",
    "REDIS_URL",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "API_ADDR",
    "OTLP_GRPC_ADDR",
    "OTLP_HTTP_ADDR",
    "MAX_BODY_BYTES",
    "INGEST_TOKENS",
    "QUERY_TOKENS",
    "OTLP_MAX_MESSAGE_BYTES",
    "OTLP_MAX_CONCURRENT_EXPORTS",
    "OTLP_HTTP_CORS_ALLOWED_ORIGINS",
    "INGEST_TIMEOUT_MS",
    "INGEST_WRITERS",
    "INGEST_BATCH_MAX_SIGNALS",
    "INGEST_BATCH_LINGER_MS",
    "INGEST_QUEUE_SIGNALS",
    "INGEST_ENQUEUE_WAIT_MS",
    "CORS_ALLOWED_ORIGINS",
    "CORRELATION_WINDOW_SECONDS",
    "RULES_FILE",
    "INCIDENT_MIN_SEVERITY",
    "ANALYSIS_DEBOUNCE_SECONDS",
    "ANALYSIS_LOCK_TTL_SECONDS",
    "CELERY_QUEUE",
    "DISPATCH_INTERVAL_MS",
    "DISPATCH_MAX_BACKOFF_MS",
    "SHUTDOWN_TIMEOUT_SECONDS",
    "TRACE_QUERY_MAX_SIGNALS",
];

/// The binary with none of our settings inherited, run in `dir`.
fn prodsentinel(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prodsentinel"));
    for setting in SETTINGS {
        command.env_remove(setting);
    }
    command.current_dir(dir).stdin(Stdio::null()).kill_on_drop(true);
    command
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("prodsentinel-it-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn run_to_end(mut command: Command) -> (Option<i32>, String) {
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("exits within 30 s")
        .expect("runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn help_lists_every_setting() {
    let dir = temp_dir();
    let mut command = prodsentinel(&dir);
    command.arg("--help");
    let output = command.output().await.unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for setting in SETTINGS {
        assert!(help.contains(setting), "--help should mention {setting}");
    }
    // .env.example documents the same settings.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    for setting in SETTINGS {
        assert!(example.contains(&format!("{setting}=")), ".env.example should list {setting}");
    }
}

#[tokio::test]
async fn invalid_setting_exits_2_with_one_line_naming_it() {
    let dir = temp_dir();
    let mut command = prodsentinel(&dir);
    command.env("API_ADDR", "not-an-address");
    let (code, stderr) = run_to_end(command).await;
    assert_eq!(code, Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("API_ADDR") && stderr.contains("not-an-address"), "{stderr}");
}

#[tokio::test]
async fn flags_override_environment_which_overrides_dotenv() {
    let dir = temp_dir();
    std::fs::write(dir.join(".env"), "MAX_BODY_BYTES=bad-from-dotenv\nCORS_ALLOWED_ORIGINS=not-an-origin\n")
        .unwrap();
    let mut command = prodsentinel(&dir);
    command.env("API_ADDR", "bad-from-env").args(["--api-addr", "127.0.0.1:0"]).env("MAX_BODY_BYTES", "1MiB");
    let (code, stderr) = run_to_end(command).await;
    // API_ADDR came from the flag, MAX_BODY_BYTES from the environment: the first bad value
    // left is the one only `.env` set.
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("CORS_ALLOWED_ORIGINS"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Starts the binary on ephemeral ports against `db`, and returns it with its API address.
async fn start(db: &TestDb) -> (Child, String) {
    let (child, addr, _logs) = start_with_logs(db, &[]).await;
    (child, addr)
}

/// Like [`start`], also returning every log line the binary writes (collected until it exits).
async fn start_with_logs(
    db: &TestDb,
    env: &[(&str, &str)],
) -> (Child, String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let dir = temp_dir();
    let addr = format!("127.0.0.1:{}", crate::helpers::free_port());
    let mut command = prodsentinel(&dir);
    command
        .env("DATABASE_URL", db.url())
        .env("API_ADDR", &addr)
        .env("OTLP_GRPC_ADDR", "127.0.0.1:0")
        .env("OTLP_HTTP_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("SHUTDOWN_TIMEOUT_SECONDS", "10")
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Keep draining its logs so it never blocks on a full pipe.
    let collected = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            collected.lock().unwrap().push(line);
        }
    });
    crate::helpers::wait_for("the binary to be ready", Duration::from_secs(30), || {
        let url = format!("http://{addr}/health/ready");
        async move { reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    (child, addr, logs)
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let db = TestDb::new();
    let (mut child, addr) = start(&db).await;

    // Begin a request and stop half-way through its body.
    let body = crate::helpers::log_body("sigterm", "INFO", "in flight").to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /ingest/logs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused once shutdown has begun.
    assert!(TcpStream::connect(&addr).await.is_err(), "listener should be closed");

    stream.write_all(rest).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("exits").unwrap();
    assert_eq!(status.code(), Some(0));
    let stored: i64 =
        db.connect().await.query_one("SELECT count(*) FROM raw_signals", &[]).await.unwrap().get(0);
    assert_eq!(stored, 1, "the in-flight request's signal was committed");
}

#[tokio::test]
async fn sigint_on_an_idle_server_exits_0() {
    let db = TestDb::new();
    let (mut child, addr) = start(&db).await;
    let health = reqwest::get(format!("http://{addr}/health/ready")).await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("exits").unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_malformed_rules_file_stops_start_up_naming_its_line() {
    let dir = temp_dir();
    std::fs::write(dir.join("rules.toml"), "[signals]\nspan_error = \"severe\"\n").unwrap();
    let mut command = prodsentinel(&dir);
    command.env("RULES_FILE", "rules.toml");
    let (code, stderr) = run_to_end(command).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("RULES_FILE") && stderr.contains("rules.toml line 2"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn requests_write_no_log_lines_and_log_level_filters() {
    let db = TestDb::new();
    let (mut child, addr, logs) = start_with_logs(&db, &[]).await;
    let http = reqwest::Client::new();
    for i in 0..30 {
        let body = crate::helpers::log_body("t-quiet", "INFO", &format!("request {i}"));
        let status =
            http.post(format!("http://{addr}/ingest/logs")).json(&body).send().await.unwrap().status();
        assert_eq!(status, reqwest::StatusCode::ACCEPTED);
        http.get(format!("http://{addr}/query/signals?limit=1")).send().await.unwrap();
    }
    sigterm(&child);
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
    let lines = logs.lock().unwrap().clone();
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("a JSON log line: {line}"));
        assert!(event["level"].is_string() && event["message"].is_string(), "{line}");
    }
    // Start-up (database created, 5 migrations, schema updated, ready) and shutdown lines only:
    // nothing per request.
    assert!(lines.len() <= 14, "{} lines for 60 requests:\n{}", lines.len(), lines.join("\n"));

    let quiet_db = TestDb::new();
    let (mut child, _addr, logs) = start_with_logs(&quiet_db, &[("LOG_LEVEL", "ERROR")]).await;
    sigterm(&child);
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
    let lines = logs.lock().unwrap().clone();
    assert!(lines.iter().all(|l| l.contains("\"ERROR\"")), "LOG_LEVEL=ERROR shows errors only: {lines:?}");
}
