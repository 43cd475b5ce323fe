//! The database's data disk fills under load (a PostgreSQL of the test's own on a small tmpfs,
//! its WAL elsewhere): an incident, not a log storm. Refusals are retryable and say the disk is
//! full, the episode is logged a few times in all and shown by /health/ready, nothing
//! acknowledged is lost, and ingest resumes by itself once space is freed.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::load::{Kind, Load, Targets};
use crate::helpers::{connect, wait_for};
use crate::own_postgres::OwnPostgres;
use crate::process::ServerProcess;

/// Bytes free on the file system holding `path`.
fn free_bytes(path: &std::path::Path) -> u64 {
    let output = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().nth(1).and_then(|line| line.trim().parse().ok()).expect("df prints the space left")
}

async fn readiness(api: &str) -> Value {
    reqwest::get(format!("http://{api}/health/ready")).await.unwrap().json().await.unwrap()
}

fn disk_full_episode(ready: &Value) -> bool {
    ready["failing"].as_array().is_some_and(|list| {
        list.iter().any(|e| e["source"] == "ingest" && e["cause"] == "database_disk_full")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_disk_refuses_retryably_logs_once_loses_nothing_and_recovers_by_itself() {
    let _turn = crate::helpers::machine_load_turn().await;
    let mut pg = OwnPostgres::init_on_small_disk(96);
    pg.start();
    let url = pg.url("prodsentinel_disk", "");
    let server = ServerProcess::start_at(url.clone(), &[]).await;
    // Leave the database about 12 MB (its own files and the migrations are in already): a ballast
    // file takes the rest, so the test frees space by removing it.
    let data = pg.dir.join("data");
    let ballast = data.join("ballast");
    let keep = 12 << 20;
    let fill = free_bytes(&data).saturating_sub(keep);
    std::fs::write(&ballast, vec![0u8; fill as usize]).unwrap();
    assert!(free_bytes(&data) <= keep + (1 << 20), "the ballast leaves about 12 MB");

    let logged_before = server.log_lines().len();
    let load = Load::start(&Targets::from(&server), &[Kind::Grpc, Kind::OtlpHttp, Kind::Legacy], 2, 50);
    wait_for("the disk to fill and /health/ready to say so", Duration::from_secs(90), || async {
        disk_full_episode(&readiness(&server.api).await)
    })
    .await;
    // The disk stays full a while under load: every request meanwhile is refused, retryably.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = readiness(&server.api).await;
    assert!(disk_full_episode(&ready), "{ready}");
    let episode =
        ready["failing"].as_array().unwrap().iter().find(|e| e["source"] == "ingest").unwrap().clone();
    assert!(episode["failures"].as_u64().unwrap() > 1, "{episode}");
    assert_eq!(episode["reason"], "the database's disk is full");

    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    let acked_then = load.acked_so_far().len();
    wait_for("ingest to resume by itself", Duration::from_secs(30), || async {
        load.acked_so_far().len() > acked_then + 10
    })
    .await;
    let resumed = freed.elapsed();
    // No new requests (the load would fill the freed space again): what was refused is retried.
    let report = load.finish(Duration::from_secs(60)).await;
    wait_for("the episode to end", Duration::from_secs(30), || async {
        !disk_full_episode(&readiness(&server.api).await)
    })
    .await;

    let disk_full_refusals: u64 =
        report.refusals.iter().filter(|(said, _)| said.contains("disk is full")).map(|(_, n)| n).sum();
    assert!(disk_full_refusals > 0, "refusals said why: {:?}", report.refusals);
    let total = report.verify_all(&connect(&url).await).await;

    // A few lines for the whole episode: it started, it ended (per source that met it).
    let lines = server.log_lines();
    let episode_lines: Vec<&String> =
        lines[logged_before..].iter().filter(|line| line.contains("disk")).collect();
    assert!(episode_lines.len() <= 4, "{} lines for one episode: {episode_lines:#?}", episode_lines.len());
    assert!(episode_lines.iter().any(|l| l.contains("database_disk_full")), "{episode_lines:#?}");
    let errors: Vec<&String> =
        lines[logged_before..].iter().filter(|l| l.contains("\"level\":\"ERROR\"")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    eprintln!(
        "data disk full under load: {disk_full_refusals} refusals saying so, {} log lines in all, ingest resumed \
         {resumed:?} after space was freed; {}; stored {total}, lost 0",
        episode_lines.len(),
        report.summary()
    );
}
