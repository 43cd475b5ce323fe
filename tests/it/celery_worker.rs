//! A real Celery 5.4 worker (redis-py 5.2, kombu 5.6.2, pinned in tests/python) consumes the
//! `analyze_trace` tasks the service queues.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::helpers::{column, log_body, python_with_requirements, spawn_app_dispatching_by_hand, wait_for};

/// The complete lines of a file another process is appending to: a last line without its
/// newline is still being written and is left for the next read.
fn lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    complete.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn a_real_celery_worker_runs_one_analysis_per_trace_no_earlier_than_its_eta() {
    let app = spawn_app_dispatching_by_hand(&["--analysis-debounce-seconds", "3"]).await;
    let worker = Worker::start(&app.redis.url()).await;

    let sent_at = Utc::now();
    for i in 0..3 {
        let (status, _) =
            app.post_json("/ingest/logs", &log_body("t-celery", "ERROR", &format!("boom {i}"))).await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    }
    let (status, _) = app.post_json("/ingest/logs", &log_body("t-celery-2", "CRITICAL", "down")).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);

    // One task per trace goes to the queue, and nothing else: the worker can run only these.
    let runs = worker.run_what_is_dispatched(&app, 2).await;
    let worker_log = worker.log();
    assert_eq!(runs.len(), 2, "exactly one run per trace: {runs:?}\n{worker_log}");
    let mut traces: Vec<&str> = runs.iter().map(|r| r["trace_id"].as_str().unwrap()).collect();
    traces.sort();
    assert_eq!(traces, ["t-celery", "t-celery-2"]);
    for run in &runs {
        let (eta, started) = (time(&run["eta"]), time(&run["received_at"]));
        assert!(started >= eta, "ran at {started}, before its eta {eta}");
        let delay = (eta - sent_at).num_milliseconds();
        assert!((2_500..=10_000).contains(&delay), "eta is the 3 s debounce after ingestion: {delay} ms");
        assert_eq!(run["routing_key"], "celery");
    }
    worker.assert_healthy();
    let ids: Vec<String> = column(
        &app.db().await,
        "SELECT task_id::text FROM analysis_outbox WHERE status = 'sent' ORDER BY trace_id",
    )
    .await;
    let mut run_ids: Vec<String> = runs.iter().map(|r| r["task_id"].as_str().unwrap().to_owned()).collect();
    run_ids.sort();
    let mut sent_ids = ids.clone();
    sent_ids.sort();
    assert_eq!(run_ids, sent_ids, "the outbox records the task ids the worker ran");

    worker.stop().await;
}

/// A real Celery worker on a Redis database, writing one JSON line per task it runs.
pub struct Worker {
    child: tokio::process::Child,
    dir: std::path::PathBuf,
}

impl Worker {
    pub async fn start(redis_url: &str) -> Worker {
        let python = tokio::task::spawn_blocking(python_with_requirements).await.unwrap();
        let dir = std::env::temp_dir().join(format!("celery-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = tokio::process::Command::new(python)
            .args(["-m", "celery", "-A", "celery_worker", "worker", "--pool", "solo", "--loglevel", "INFO"])
            .args(["-Q", "celery", "--without-gossip", "--without-mingle", "--without-heartbeat"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python"))
            .env("REDIS_URL", redis_url)
            .env("PROBE_JSONL", dir.join("runs.jsonl"))
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(dir.join("worker.out")).unwrap())
            .stderr(std::fs::File::create(dir.join("worker.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Worker { child, dir }
    }

    /// The tasks run so far, one JSON object each.
    /// Steps `app`'s outbox dispatcher by hand, asserts it sent `tasks` tasks and nothing
    /// else, and returns the worker's runs once it ran that many.
    pub async fn run_what_is_dispatched(&self, app: &crate::helpers::TestApp, tasks: usize) -> Vec<Value> {
        assert_eq!(
            app.dispatch_all().await,
            [prodsentinel::queue::StepOutcome::Dispatched { sent: tasks, deduplicated: 0 }]
        );
        wait_for("the worker to run what was dispatched", Duration::from_secs(90), || async {
            self.runs().len() >= tasks
        })
        .await;
        self.runs()
    }

    pub fn runs(&self) -> Vec<Value> {
        lines(&self.dir.join("runs.jsonl"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("worker.log")).unwrap_or_default()
    }

    /// Fails if the worker met a message it could not handle.
    pub fn assert_healthy(&self) {
        let log = self.log();
        for bad in
            ["CRITICAL", "Unrecoverable", "unregistered task", "invalid task message", "unknown message"]
        {
            assert!(!log.contains(bad), "worker log has {bad:?}:\n{log}");
        }
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
