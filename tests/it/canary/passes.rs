//! The canary against services that keep what they acknowledge: it passes, its counts are the
//! service's counts, it never queues an analysis unless told to, it reaches a service behind
//! TLS and tokens, and running on, it serves its metrics with a capped memory of past writes.

use std::time::Duration;

use serde_json::json;

use super::{canary_command, endpoints_of, run_canary, strings};
use crate::helpers::{free_port, one, spawn_app, spawn_app_with, wait_for, TestDb};
use crate::metrics::{get, scrape_addr};
use crate::process::{temp_dir, ServerProcess};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

/// Quick cycles: one a second, read at once, spot checks at every write.
const QUICK: &[&str] =
    &["--interval", "1s", "--read-delay", "100ms", "--max-wait", "20s", "--spot-check-interval", "1s"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_passes_against_the_real_binary_over_every_transport_and_its_counts_add_up() {
    let db = TestDb::new();
    let server = ServerProcess::start(&db, &[]).await;
    let mut args = strings(&[
        "--otlp-grpc-endpoint",
        &format!("http://{}", server.grpc),
        "--otlp-http-endpoint",
        &format!("http://{}", server.http),
        "--api-endpoint",
        &format!("http://{}", server.api),
        "--cycles",
        "3",
    ]);
    args.extend(strings(QUICK));
    let run = run_canary(&args, Duration::from_secs(120)).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let report = &run.report;
    assert_eq!(report["passed"], true);
    assert_eq!(report["cycles"], 3);
    // Per cycle: 5 spans, a log and a gauge point over gRPC; a span, a log and a point over
    // each OTLP/HTTP encoding; a legacy log, span and point.
    assert_eq!(
        report["written"],
        json!({"otlp_grpc": 15, "otlp_http_protobuf": 9, "otlp_http_json": 9, "legacy": 9}),
        "{report}"
    );
    assert_eq!(report["checks"]["read"], 42);
    assert_eq!(report["checks"]["incident"], 3);
    let spot = report["checks"]["spot"].as_u64().unwrap_or_default();
    assert!(spot >= 14 && spot % 14 == 0, "whole earlier writes spot-checked: {report}");
    assert_eq!(run.all_failures(), 0);

    // The service counted, per signal type and transport, what the canary counted.
    let metrics = scrape_addr(server.api.parse().unwrap()).await;
    let stored = |signal: &str, transport: &str| {
        get(
            &metrics,
            &format!(
                r#"prodsentinel_ingest_signals_stored_total{{signal="{signal}",transport="{transport}"}}"#
            ),
        )
    };
    for (signal, transport, n) in [
        ("trace", "otlp_grpc", 9.0),
        ("log", "otlp_grpc", 3.0),
        ("metric", "otlp_grpc", 3.0),
        ("trace", "otlp_http", 6.0),
        ("log", "otlp_http", 6.0),
        ("metric", "otlp_http", 6.0),
        ("trace", "legacy", 3.0),
        ("log", "legacy", 3.0),
        ("metric", "legacy", 3.0),
    ] {
        assert_eq!(stored(signal, transport), n, "{signal} over {transport}");
    }
    let client = db.connect().await;
    assert_eq!(one::<i64>(&client, "SELECT count(*) FROM raw_signals").await, 42);
    // One incident per trace, none asking for analysis, and nothing queued.
    assert_eq!(one::<i64>(&client, "SELECT count(*) FROM incidents WHERE severity = 'LOW'").await, 3);
    assert_eq!(one::<i64>(&client, "SELECT count(*) FROM incidents").await, 3);
    assert_eq!(one::<i64>(&client, "SELECT count(*) FROM analysis_outbox").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_writes_error_every_asks_for_open_an_analysed_incident() {
    let app = spawn_app().await;
    let mut args = endpoints_of(&app);
    args.extend(strings(&["--cycles", "4", "--error-every", "2"]));
    args.extend(strings(QUICK));
    let run = run_canary(&args, Duration::from_secs(120)).await;
    // The canary checked each failing write's incident (high or critical, open) and that the
    // healthy ones have none asking for analysis.
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.report["checks"]["incident"], 4);
    let db = app.db().await;
    let severities: Vec<(String, String)> = db
        .query("SELECT trace_id, severity::text FROM incidents ORDER BY detected_at", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let high: Vec<&String> = severities.iter().filter(|(_, s)| s == "HIGH").map(|(t, _)| t).collect();
    assert_eq!(high.len(), 2, "{severities:?}");
    assert_eq!(severities.iter().filter(|(_, s)| s == "LOW").count(), 2, "{severities:?}");
    // Analyses were requested (one per problem and window: the two failures are one fault),
    // for failing traces only.
    let queued: Vec<String> = db
        .query("SELECT trace_id FROM analysis_outbox", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(!queued.is_empty());
    assert!(queued.iter().all(|t| high.contains(&t)), "{queued:?} {severities:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_reaches_a_service_behind_tls_and_bearer_tokens() {
    let (ingest, query) = ("canary-ingest-token-0123456789", "canary-query-token-0123456789");
    let app = spawn_app_with(&[
        "--tls-cert-file",
        &format!("{FIXTURES}/cert.pem"),
        "--tls-key-file",
        &format!("{FIXTURES}/key.pem"),
        "--ingest-tokens",
        ingest,
        "--query-tokens",
        query,
    ])
    .await;
    let endpoints = strings(&[
        "--otlp-grpc-endpoint",
        &format!("https://localhost:{}", app.grpc_addr.port()),
        "--otlp-http-endpoint",
        &format!("https://localhost:{}", app.http_addr.port()),
        "--api-endpoint",
        &format!("https://localhost:{}", app.addr.port()),
        "--ca-file",
        &format!("{FIXTURES}/ca.pem"),
        "--once",
        "--read-delay",
        "100ms",
        "--max-wait",
        "10s",
    ]);
    let mut args = endpoints.clone();
    args.extend(strings(&["--ingest-token", ingest, "--query-token", query]));
    let run = run_canary(&args, Duration::from_secs(60)).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.report["checks"]["read"], 14);

    // Without the ingest token every write is refused, and said so; the run fails.
    let mut args = endpoints;
    args.extend(strings(&["--query-token", query]));
    let refused = run_canary(&args, Duration::from_secs(60)).await;
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    let by_transport = &refused.report["refused"];
    assert_eq!(
        by_transport,
        &json!({"otlp_grpc": 3, "otlp_http_protobuf": 3, "otlp_http_json": 3, "legacy": 3})
    );
    let lines = refused.report["first_failures"].to_string();
    assert!(lines.contains("UNAUTHENTICATED") && lines.contains("(401)"), "{lines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_on_it_serves_its_metrics_keeps_a_capped_memory_and_stops_on_sigterm() {
    let app = spawn_app().await;
    let port = free_port();
    let mut args = endpoints_of(&app);
    args.extend(strings(&[
        "--interval",
        "200ms",
        "--read-delay",
        "0",
        "--max-wait",
        "10s",
        "--spot-check-interval",
        "200ms",
        "--spot-check-max",
        "3",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ]));
    let dir = temp_dir();
    let mut child = canary_command(&dir)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the canary starts");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let read = r#"prodsentinel_canary_checks_total{check="read"}"#;
    wait_for("ten writes read back", Duration::from_secs(90), || async move {
        reqwest::get(format!("http://{addr}/metrics")).await.is_ok()
            && get(&scrape_addr(addr).await, read) >= 140.0
    })
    .await;
    let metrics = scrape_addr(addr).await;
    assert_eq!(get(&metrics, "prodsentinel_canary_spot_check_samples"), 3.0, "capped at --spot-check-max");
    assert!(get(&metrics, r#"prodsentinel_canary_checks_total{check="spot"}"#) >= 14.0);
    assert!(
        get(&metrics, r#"prodsentinel_canary_writes_total{transport="otlp_grpc",signal_type="trace"}"#)
            >= 30.0,
        "{metrics:?}"
    );
    assert!(get(&metrics, "prodsentinel_canary_readable_delay_seconds_count") >= 140.0);
    let failures: f64 = metrics
        .iter()
        .filter(|(name, _)| {
            name.starts_with("prodsentinel_canary_check_failures_total")
                || name.starts_with("prodsentinel_canary_write_failures_total")
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failures, 0.0, "{metrics:?}");

    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("stops").unwrap();
    assert_eq!(status.code(), Some(0));
}
