//! The real `prodsentinel` binary: settings, exit codes, signals.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::helpers::{one, TestDb};
use crate::process::{prodsentinel, settings, temp_dir, ServerProcess};

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
    for setting in settings() {
        assert!(help.contains(&setting), "--help should mention {setting}");
    }
    // .env.example documents the same settings.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    for setting in settings() {
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
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let db = TestDb::new();
    let mut server = ServerProcess::start(&db, &[]).await;
    let addr = server.api.clone();

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

    server.sigterm();
    // New connections are refused once shutdown has begun.
    crate::helpers::wait_for("the listener closed", Duration::from_secs(10), || async {
        TcpStream::connect(&addr).await.is_err()
    })
    .await;

    stream.write_all(rest).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    assert_eq!(server.exit_code(Duration::from_secs(15)).await, Some(0));
    let stored: i64 = one(&db.connect().await, "SELECT count(*) FROM raw_signals").await;
    assert_eq!(stored, 1, "the in-flight request's signal was committed");
}

#[tokio::test]
async fn sigint_on_an_idle_server_exits_0() {
    let db = TestDb::new();
    let mut server = ServerProcess::start(&db, &[]).await;
    let health = reqwest::get(format!("http://{}/health/ready", server.api)).await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    server.sigint();
    assert_eq!(server.exit_code(Duration::from_secs(15)).await, Some(0));
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
}

#[tokio::test]
async fn requests_write_no_log_lines_and_log_level_filters() {
    let db = TestDb::new();
    let mut server = ServerProcess::start(&db, &[]).await;
    let addr = server.api.clone();
    let http = reqwest::Client::new();
    for i in 0..30 {
        let body = crate::helpers::log_body("t-quiet", "INFO", &format!("request {i}"));
        let status =
            http.post(format!("http://{addr}/ingest/logs")).json(&body).send().await.unwrap().status();
        assert_eq!(status, reqwest::StatusCode::ACCEPTED);
        http.get(format!("http://{addr}/query/signals?limit=1")).send().await.unwrap();
    }
    server.sigterm();
    assert_eq!(server.exit_code(Duration::from_secs(15)).await, Some(0));
    let lines = server.log_lines();
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("a JSON log line: {line}"));
        assert!(event["level"].is_string() && event["message"].is_string(), "{line}");
    }
    // Start-up (database created, one line per migration, schema updated, 3 partitions and 3
    // incident ranges created, ready) and shutdown (SIGTERM received, requests finished,
    // stopped) lines only: nothing per request.
    let expected = prodsentinel::store::migrate::MIGRATIONS.len() + 12;
    assert!(lines.len() <= expected, "{} lines for 60 requests:\n{}", lines.len(), lines.join("\n"));

    let quiet_db = TestDb::new();
    let mut quiet = ServerProcess::start(&quiet_db, &[("LOG_LEVEL", "ERROR")]).await;
    quiet.sigterm();
    assert_eq!(quiet.exit_code(Duration::from_secs(15)).await, Some(0));
    let lines = quiet.log_lines();
    assert!(lines.iter().all(|l| l.contains("\"ERROR\"")), "LOG_LEVEL=ERROR shows errors only: {lines:?}");
}

/// The binary started against a database that is not there, so it logs a few lines (text
/// format) and exits; `wrap` runs it under `script`, which gives it a terminal.
fn failing_start(dir: &std::path::Path, on_a_terminal: bool, no_color: Option<&str>) -> Command {
    let port = crate::helpers::free_port();
    let mut command = if on_a_terminal {
        // util-linux script: -q quiet, -e the child's exit code, -f flush, -c the command.
        let mut command = Command::new("script");
        command.args(["-qefc", env!("CARGO_BIN_EXE_prodsentinel"), "/dev/null"]).current_dir(dir);
        for setting in settings() {
            command.env_remove(setting);
        }
        command
    } else {
        prodsentinel(dir)
    };
    command
        .env("LOG_FORMAT", "text")
        .env("DATABASE_URL", format!("postgres://postgres@127.0.0.1:{port}/prodsentinel"))
        .env("DATABASE_WAIT_SECONDS", "1")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null());
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    command
}

async fn output_of(mut command: Command) -> (Option<i32>, String) {
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("exits within 30 s")
        .expect("runs");
    // Under script, what the binary wrote to its terminal comes out on script's stdout.
    let text = [output.stdout, output.stderr].concat();
    (output.status.code(), String::from_utf8_lossy(&text).into_owned())
}

#[tokio::test]
async fn text_logs_are_coloured_only_on_a_terminal_and_never_with_no_color() {
    let dir = temp_dir();
    let (code, to_a_pipe) = output_of(failing_start(&dir, false, None)).await;
    assert_eq!(code, Some(1), "{to_a_pipe}");
    assert!(to_a_pipe.contains("ERROR"), "the failure is logged: {to_a_pipe}");
    assert!(!to_a_pipe.contains('\u{1b}'), "escape codes in a redirected log: {to_a_pipe:?}");

    let (code, on_a_terminal) = output_of(failing_start(&dir, true, None)).await;
    assert_eq!(code, Some(1), "{on_a_terminal}");
    assert!(on_a_terminal.contains("\u{1b}["), "a terminal gets colour: {on_a_terminal:?}");

    let (code, no_color) = output_of(failing_start(&dir, true, Some("1"))).await;
    assert_eq!(code, Some(1), "{no_color}");
    assert!(no_color.contains("ERROR"), "{no_color}");
    assert!(!no_color.contains('\u{1b}'), "NO_COLOR is honoured: {no_color:?}");
}

/// With mimalloc's transparent huge pages RSS swung by tens of megabytes and rose while idle
/// (src/main.rs): the process runs with them off, as the kernel reports it.
#[tokio::test]
async fn the_server_runs_without_transparent_huge_pages() {
    let db = TestDb::new();
    let server = ServerProcess::start(&db, &[]).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let thp = status.lines().find(|line| line.starts_with("THP_enabled:"));
    assert_eq!(
        thp.map(|line| line.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["THP_enabled:", "0"]),
        "{status}"
    );
}

/// A stop asked for while start-up waits for the database ends the process at once and cleanly
/// (exit 0), instead of the signal's default kill: the handlers are installed before the app is
/// built. The sync point is the first "waiting for database" line, written after they are.
#[tokio::test]
async fn sigterm_while_start_up_waits_for_the_database_exits_0() {
    use tokio::io::AsyncBufReadExt;
    let dir = temp_dir();
    let port = crate::helpers::free_port();
    let mut command = prodsentinel(&dir);
    command
        .env("LOG_FORMAT", "text")
        .env("DATABASE_URL", format!("postgres://postgres@127.0.0.1:{port}/prodsentinel"))
        .env("DATABASE_WAIT_SECONDS", "120")
        .env("API_ADDR", "127.0.0.1:0")
        .env("OTLP_GRPC_ADDR", "127.0.0.1:0")
        .env("OTLP_HTTP_ADDR", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let waiting = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("waiting for database") {
                return;
            }
        }
        panic!("the binary exited before waiting for the database");
    });
    waiting.await.expect("a 'waiting for database' line within 30 s");
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stopped within 10 s, not after the 120 s wait")
        .unwrap();
    assert_eq!(status.code(), Some(0), "a clean stop, not a kill by the signal: {status:?}");
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(rest.contains("stopped before start-up finished"), "{rest}");
}
