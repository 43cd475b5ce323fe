//! The soak phase (issue 21, "a month in an hour"): the release server with its retention and
//! partitions scaled down to minutes, so that retention cycles many times within the run, under
//! a steady mixed load over every transport with a share of error traces, a Celery-compatible
//! consumer draining the analysis queue, the dashboard's polls and the canary beside it. Every
//! minute a row: the database's and each table's size, the server's RSS and CPU, the ingest
//! rate, each poll's p50/p99, the canary's counters. Written as CSV, drawn as a PNG, judged
//! against the issue's targets. Run twice: without a size budget, then with one smaller than
//! what the first run stored, on a PostgreSQL whose data directory is a tmpfs just larger than
//! the budget (a full disk would show as refusals).

mod consumer;
mod run;
mod sample;
mod traffic;
mod verdict;

use std::time::Duration;

use serde_json::{json, Value};

use crate::{BoxError, Options};

/// The service's lifecycle, scaled: a "day" of the default settings is about two minutes.
pub const PARTITION_INTERVAL: &str = "1m";
pub const RETENTION_TRACES: &str = "3m";
pub const RETENTION_LOGS: &str = "3m";
pub const RETENTION_METRICS: &str = "6m";
pub const INCIDENT_RETENTION: &str = "9m";
pub const OUTBOX_RETENTION: &str = "3m";
pub const CHECK_SECONDS: u64 = 10;
/// The longest any row lives (incident retention) plus a partition: after one cycle every
/// table holds what it will hold in the steady state.
pub const CYCLE: Duration = Duration::from_secs(10 * 60);

/// What one run is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec {
    pub length: Duration,
    /// Signals per second offered.
    pub rate: u32,
    /// `RETENTION_MAX_DATABASE_SIZE`, bytes.
    pub budget: Option<u64>,
    pub sample_every: Duration,
}

pub async fn measure(options: &Options) -> Result<Value, BoxError> {
    let spec = RunSpec {
        length: options.soak_length,
        rate: options.soak_rate,
        budget: None,
        sample_every: Duration::from_secs(60),
    };
    let stem = options.out.trim_end_matches(".json").to_owned();
    eprintln!("bench: soak without a budget, {} min at {} signals/s", spec.length.as_secs() / 60, spec.rate);
    let plain = run::soak(options, spec, &format!("{stem}-soak.csv")).await?;
    let mut runs = vec![plain];
    if options.soak_budget {
        // Smaller than what the run stores: the steady size the first run measured, less 40 %.
        let steady = runs[0]["verdict"]["database"]["mean_bytes"].as_f64().unwrap_or(0.0);
        let budget = ((steady * 0.6) as u64 / (1 << 20)).max(64) << 20;
        eprintln!("bench: soak with a budget of {} MiB", budget >> 20);
        let length = options.soak_budget_length.unwrap_or(spec.length);
        let spec = RunSpec { budget: Some(budget), length, ..spec };
        runs.push(run::soak(options, spec, &format!("{stem}-soak-budget.csv")).await?);
    }
    let csvs: Vec<String> = runs.iter().filter_map(|r| r["csv"].as_str().map(str::to_owned)).collect();
    let chart = match chart(&csvs, &format!("{stem}-soak.png")) {
        Ok(png) => json!(png),
        Err(why) => {
            eprintln!("bench: no chart: {why}");
            json!(null)
        }
    };
    Ok(json!({"runs": runs, "chart": chart}))
}

/// Draws the runs' series with matplotlib, from a virtual environment of pinned packages under
/// target/ (made on first use).
fn chart(csvs: &[String], png: &str) -> Result<String, BoxError> {
    let venv = std::path::Path::new("target/bench-venv");
    let requirements = "examples/bench/requirements.txt";
    let wanted = std::fs::read_to_string(requirements)?;
    let stamp = venv.join("requirements.installed");
    let python = venv.join("bin/python");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(venv);
        run(std::process::Command::new("python3").args(["-m", "venv"]).arg(venv))?;
        run(std::process::Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            requirements,
        ]))?;
        std::fs::write(&stamp, &wanted)?;
    }
    run(std::process::Command::new(&python).arg("examples/bench/soak_chart.py").arg(png).args(csvs))?;
    Ok(png.to_owned())
}

fn run(command: &mut std::process::Command) -> Result<(), BoxError> {
    let output = command.stdin(std::process::Stdio::null()).output()?;
    if !output.status.success() {
        return Err(format!("{command:?}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(())
}
