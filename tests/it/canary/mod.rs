//! `prodsentinel canary`, the real binary, against the real service and against services that
//! lose, change, duplicate or expire what they acknowledge: it passes when everything is
//! stored and served intact, and fails, naming the kind and the field, when not.

mod failures;
mod fakes;
mod passes;
mod settings;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::process::{temp_dir, TempDir};

/// The canary binary with none of its settings inherited, in an empty directory (no `.env`).
pub fn canary_command(dir: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prodsentinel"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CANARY_") {
            command.env_remove(key);
        }
    }
    command.arg("canary").current_dir(&**dir).stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// The endpoints of an in-process app, as the canary takes them.
pub fn endpoints_of(app: &crate::helpers::TestApp) -> Vec<String> {
    vec![
        "--otlp-grpc-endpoint".into(),
        format!("http://{}", app.grpc_addr),
        "--otlp-http-endpoint".into(),
        format!("http://{}", app.http_addr),
        "--api-endpoint".into(),
        format!("http://{}", app.addr),
    ]
}

/// What a finished `--once`/`--cycles` run said.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    /// The JSON report (`--report json`).
    pub report: Value,
    pub stderr: String,
}

impl Run {
    /// How many checks failed with `check`/`kind`.
    pub fn failures(&self, check: &str, kind: &str) -> u64 {
        let failures = self.report["failures"].as_array().cloned().unwrap_or_default();
        failures
            .iter()
            .filter(|f| f["check"] == check && f["kind"] == kind)
            .map(|f| f["count"].as_u64().unwrap_or_default())
            .sum()
    }

    pub fn all_failures(&self) -> u64 {
        let failures = self.report["failures"].as_array().cloned().unwrap_or_default();
        failures.iter().map(|f| f["count"].as_u64().unwrap_or_default()).sum()
    }
}

/// Runs the canary with `args` (plus `--report json` and quick reads) to its end, at most
/// `timeout`.
pub async fn run_canary(args: &[String], timeout: Duration) -> Run {
    let dir = temp_dir();
    let mut command = canary_command(&dir);
    command.args(["--report", "json", "--request-timeout", "5s"]).args(args);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("the canary did not finish within {timeout:?}"))
        .expect("the canary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|why| panic!("not a JSON report ({why}): {stdout}\n{stderr}"));
    Run { code: output.status.code(), report, stderr }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}
