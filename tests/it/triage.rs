//! Incidents, rules and the analysis queue against the real PostgreSQL and Redis.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use prodsentinel::queue::StepOutcome;

use crate::helpers::{free_port, log_body, wait_for, TestApp};

/// These tests pin the per-trace behaviour of issue 5, which `PROBLEM_GROUPING=false` keeps
/// unchanged (problems group analyses across traces; see `problems.rs`).
const PER_TRACE: [&str; 2] = ["--problem-grouping", "false"];

async fn spawn_app() -> TestApp {
    crate::helpers::spawn_app_with(&PER_TRACE).await
}

async fn spawn_app_with(extra: &[&str]) -> TestApp {
    let args: Vec<&str> = PER_TRACE.iter().chain(extra).copied().collect();
    crate::helpers::spawn_app_with(&args).await
}

/// An app whose outbox the test dispatches step by step.
async fn spawn_app_dispatching_by_hand(extra: &[&str]) -> TestApp {
    let args: Vec<&str> = PER_TRACE.iter().chain(extra).copied().collect();
    crate::helpers::spawn_app_dispatching_by_hand(&args).await
}

/// One incident per trace id: `(severity, error_count, affected_services)`.
async fn incident(app: &TestApp, trace_id: &str) -> Option<(String, f64, Vec<String>)> {
    let (_, page) = app.get_json("/query/incidents?limit=200").await;
    let found = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["trace_id"] == trace_id)
        .cloned()
        .collect::<Vec<_>>();
    assert!(found.len() <= 1, "one incident per trace: {found:?}");
    found.first().map(|i| {
        let services = i["affected_services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        (i["severity"].as_str().unwrap().to_owned(), i["error_count"].as_f64().unwrap(), services)
    })
}

async fn send_log(app: &TestApp, trace_id: &str, service: &str, level: &str, message: &str) {
    let mut body = log_body(trace_id, level, message);
    body["service_name"] = json!(service);
    let (status, answer) = app.post_json("/ingest/logs", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

async fn analyses_requested(app: &TestApp, trace_id: &str) -> i64 {
    app.db()
        .await
        .query_one("SELECT count(*) FROM analysis_outbox WHERE trace_id = $1", &[&trace_id])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn every_signal_is_tracked_and_an_error_queues_one_analysis() {
    let app = spawn_app_dispatching_by_hand(&[]).await;
    send_log(&app, "t-info", "checkout", "INFO", "all good").await;
    assert_eq!(incident(&app, "t-info").await, Some(("low".into(), 1.0, vec!["checkout".into()])));
    assert_eq!(analyses_requested(&app, "t-info").await, 0, "LOW incidents are not analysed");

    send_log(&app, "t-err", "checkout", "INFO", "start").await;
    send_log(&app, "t-err", "payments", "ERROR", "card declined").await;
    assert_eq!(
        incident(&app, "t-err").await,
        Some(("high".into(), 2.0, vec!["checkout".into(), "payments".into()]))
    );
    assert_eq!(analyses_requested(&app, "t-err").await, 1);

    assert_eq!(app.dispatch_all().await, [StepOutcome::Dispatched { sent: 1, deduplicated: 0 }]);
    assert_eq!(app.outbox().await, [("sent".to_owned(), 1)]);
    assert_eq!(app.queued_trace_ids("celery"), ["t-err"]);
    let ttl: i64 =
        redis::cmd("TTL").arg("analysis:triggered:t-err").query(&mut app.redis.connection()).unwrap();
    assert!((1..=300).contains(&ttl), "the dedup lock is set with the 300 s TTL: {ttl}");
}

#[tokio::test]
async fn duplicates_change_nothing() {
    let app = spawn_app().await;
    let body = log_body("t-dup", "ERROR", "boom");
    for _ in 0..3 {
        assert_eq!(app.post_json("/ingest/logs", &body).await.0, StatusCode::ACCEPTED);
    }
    assert_eq!(incident(&app, "t-dup").await.unwrap().1, 1.0);
    assert_eq!(analyses_requested(&app, "t-dup").await, 1);
}

#[tokio::test]
async fn severity_only_rises_and_five_high_signals_make_it_critical_without_a_second_analysis() {
    let app = spawn_app().await;
    for i in 0..4 {
        send_log(&app, "t-esc", "api", "ERROR", &format!("error {i}")).await;
        assert_eq!(incident(&app, "t-esc").await.unwrap().0, "high", "after {} errors", i + 1);
    }
    send_log(&app, "t-esc", "api", "ERROR", "error 4").await;
    assert_eq!(incident(&app, "t-esc").await.unwrap().0, "critical");
    send_log(&app, "t-esc", "api", "INFO", "recovered").await;
    assert_eq!(
        incident(&app, "t-esc").await,
        Some(("critical".into(), 6.0, vec!["api".into()])),
        "never lowered"
    );
    assert_eq!(
        analyses_requested(&app, "t-esc").await,
        1,
        "HIGH -> CRITICAL within the lock window asks once"
    );
}

#[tokio::test]
async fn each_default_rule_applies_through_every_endpoint() {
    let app = spawn_app().await;
    let span = |trace: &str, status: &str| {
        json!({"signal_id": Uuid::new_v4().to_string(), "trace_id": trace, "span_id": "s1", "service_name": "api",
               "timestamp": "2024-05-01T10:20:30Z", "duration_ms": 12, "status": status})
    };
    assert_eq!(app.post_json("/ingest/traces", &span("t-span-err", "ERROR")).await.0, StatusCode::ACCEPTED);
    assert_eq!(app.post_json("/ingest/traces", &span("t-span-ok", "OK")).await.0, StatusCode::ACCEPTED);
    send_log(&app, "t-critical", "api", "CRITICAL", "disk gone").await;
    let mut with_stack = log_body("t-stack", "WARNING", "handled");
    with_stack["stack_trace"] = json!("Traceback: boom");
    assert_eq!(app.post_json("/ingest/logs", &with_stack).await.0, StatusCode::ACCEPTED);
    let metric = |trace: &str, name: &str, value: f64| {
        json!({"signal_id": Uuid::new_v4().to_string(), "trace_id": trace, "service_name": "api",
               "timestamp": "2024-05-01T10:20:30Z", "metric_name": name, "value": value, "unit": "ms"})
    };
    assert_eq!(
        app.post_json("/ingest/metrics", &metric("t-slow", "http_latency_ms", 2500.0)).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.post_json("/ingest/metrics", &metric("t-fast", "http_latency_ms", 120.0)).await.0,
        StatusCode::ACCEPTED
    );
    send_log(&app, "t-keyword", "api", "INFO", "retry failed, giving up").await;

    // An OTLP span with an exception event but status OK (a handled exception).
    let otlp = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "x",
        "status": {"code": 1}, "events": [{"name": "exception", "attributes": [{"key": "exception.type", "value": {"stringValue": "E"}}]}]
    }]}]}]});
    let (status, _, _) = app
        .post_otlp("/v1/traces", &[("content-type", "application/json")], otlp.to_string().into_bytes())
        .await;
    assert_eq!(status, StatusCode::OK);

    let expected = [
        ("t-span-err", "high", 1),
        ("t-span-ok", "low", 0),
        ("t-critical", "critical", 1),
        ("t-stack", "high", 1),
        ("t-slow", "high", 1),
        ("t-fast", "low", 0),
        ("t-keyword", "low", 1),
        ("0af7651916cd43dd8448eb211c80319c", "high", 1),
    ];
    for (trace, severity, analyses) in expected {
        assert_eq!(incident(&app, trace).await.unwrap().0, severity, "{trace}");
        assert_eq!(analyses_requested(&app, trace).await, analyses, "{trace}");
    }
}

#[tokio::test]
async fn a_custom_rules_file_is_applied() {
    let path = std::env::temp_dir().join(format!("rules-{}.toml", Uuid::new_v4().simple()));
    std::fs::write(
        &path,
        "[[signals.metrics]]\nname = \"queue.*\"\nmin_value = 100\nseverity = \"critical\"\n[analysis]\nkeywords = []\n",
    )
    .unwrap();
    let app = spawn_app_with(&["--rules-file", path.to_str().unwrap()]).await;
    let metric = json!({"name": "queue.depth", "value": 150, "service_name": "worker", "timestamp": "2024-05-01T10:20:30Z", "trace_id": "t-q"});
    assert_eq!(app.post_json("/ingest/metrics", &metric).await.0, StatusCode::ACCEPTED);
    assert_eq!(incident(&app, "t-q").await.unwrap().0, "critical");
    send_log(&app, "t-kw", "api", "INFO", "failed").await;
    assert_eq!(analyses_requested(&app, "t-kw").await, 0, "keywords turned off by the file");
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn incident_min_severity_skips_lower_signals() {
    let app = spawn_app_with(&["--incident-min-severity", "high"]).await;
    send_log(&app, "t-low", "api", "INFO", "hello").await;
    send_log(&app, "t-high", "api", "ERROR", "boom").await;
    assert_eq!(incident(&app, "t-low").await, None);
    assert_eq!(incident(&app, "t-high").await.unwrap().1, 1.0);
    assert_eq!(app.count_signals().await, 2, "every signal is still stored");
}

#[tokio::test]
async fn a_storm_of_errors_in_one_trace_is_one_incident_and_one_task() {
    let app = spawn_app().await;
    let requests = (0..10).map(|_| {
        let batch: Vec<Value> =
            (0..5).map(|i| log_body("t-storm", "ERROR", &format!("timeout {i}"))).collect();
        let app = &app;
        async move { app.post_json("/ingest/logs", &Value::Array(batch)).await.0 }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED), "{statuses:?}");
    let (severity, count, _) = incident(&app, "t-storm").await.unwrap();
    assert_eq!((severity.as_str(), count), ("critical", 50.0));
    wait_for("the one analysis to be sent", Duration::from_secs(10), || async {
        app.outbox().await == [("sent".to_owned(), 1)]
    })
    .await;
    assert_eq!(app.queued_trace_ids("celery"), ["t-storm"]);
}

#[tokio::test]
async fn concurrent_batches_on_overlapping_traces_neither_deadlock_nor_lose_updates() {
    let app = spawn_app().await;
    let requests = (0..20).map(|request: usize| {
        // Each request touches the same ten traces, in a different order.
        let batch: Vec<Value> =
            (0..10).map(|i| log_body(&format!("t-{}", (i * 7 + request) % 10), "INFO", "tick")).collect();
        let app = &app;
        async move { app.post_json("/ingest/logs", &Value::Array(batch)).await.0 }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED), "{statuses:?}");
    for trace in 0..10 {
        assert_eq!(incident(&app, &format!("t-{trace}")).await.unwrap().1, 20.0, "t-{trace}");
    }
}

#[tokio::test]
async fn with_redis_unreachable_errors_are_accepted_and_each_delivered_once_when_it_returns() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let app = spawn_app_dispatching_by_hand(&["--redis-url", &url, "--dispatch-max-backoff-ms", "300"]).await;
    for trace in ["t-a", "t-b", "t-c"] {
        send_log(&app, trace, "api", "ERROR", "boom").await;
    }
    assert_eq!(app.outbox().await, [("pending".to_owned(), 3)]);
    match app.dispatch_all().await.as_slice() {
        [StepOutcome::QueueUnavailable { postponed: 3, reason }] => {
            assert!(!reason.is_empty(), "the refusal carries Redis's reason")
        }
        other => panic!("expected one step postponing all three: {other:?}"),
    }
    let row = app
        .db()
        .await
        .query_one("SELECT min(attempts), count(last_error) FROM analysis_outbox", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i64>(1)), (1, 3), "each tried once, its error kept");
    assert_eq!(app.outbox().await, [("pending".to_owned(), 3)], "nothing dropped while Redis is down");

    let mut redis = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is installed");
    // Due again after the (capped) backoff; Redis may take a moment to accept connections.
    wait_for("all three requests delivered", Duration::from_secs(20), || async {
        app.dispatch_all().await;
        app.outbox().await == [("sent".to_owned(), 3)]
    })
    .await;
    let mut connection = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
    let messages: Vec<String> =
        redis::cmd("LRANGE").arg("celery").arg(0).arg(-1).query(&mut connection).unwrap();
    let mut traces: Vec<String> = messages
        .iter()
        .map(|m| {
            let envelope: Value = serde_json::from_str(m).unwrap();
            envelope["headers"]["argsrepr"].as_str().unwrap().to_owned()
        })
        .collect();
    traces.sort();
    assert_eq!(traces, ["['t-a']", "['t-b']", "['t-c']"], "each exactly once");
    redis.kill().await.unwrap();
}

#[tokio::test]
async fn two_instances_on_one_database_and_redis_deliver_one_task_per_trace() {
    let app = spawn_app().await;
    let second = app.second_instance(&PER_TRACE).await;
    let targets = [app.addr, second.addr];
    let requests = (0..40).map(|i: usize| {
        let url = format!("http://{}/ingest/logs", targets[i % 2]);
        let body = log_body(&format!("t-{}", i % 10), "ERROR", "boom");
        let http = app.http.clone();
        async move { http.post(url).json(&body).send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED), "{statuses:?}");
    wait_for("every request dispatched", Duration::from_secs(15), || async {
        app.outbox().await.iter().all(|(status, _)| status != "pending")
    })
    .await;
    let mut traces = app.queued_trace_ids("celery");
    traces.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("t-{i}")).collect();
    expected.sort();
    assert_eq!(traces, expected, "one task per trace");
    for trace in 0..10 {
        assert_eq!(incident(&app, &format!("t-{trace}")).await.unwrap().1, 4.0);
    }
}

#[tokio::test]
async fn service_filter_lists_incidents_touching_a_service() {
    let app = spawn_app().await;
    send_log(&app, "t-1", "checkout", "INFO", "a").await;
    send_log(&app, "t-1", "payments", "INFO", "b").await;
    send_log(&app, "t-2", "inventory", "INFO", "c").await;
    let (_, page) = app.get_json("/query/incidents?service=payments").await;
    let traces: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|i| i["trace_id"].as_str().unwrap()).collect();
    assert_eq!((traces, page["total"].as_i64()), (vec!["t-1"], Some(1)));
}

/// The SQL the original analysis worker runs (SQLAlchemy): find the incident by trace, update
/// its severity, count and services, insert its analysis; the dashboard then reads it.
#[tokio::test]
async fn the_analysis_workers_writes_work_against_our_schema() {
    let app = spawn_app().await;
    send_log(&app, "t-worker", "checkout", "ERROR", "boom").await;
    let db = app.db().await;
    let row = db
        .query_one("SELECT id, error_count FROM incidents WHERE trace_id = $1", &[&"t-worker"])
        .await
        .unwrap();
    let (id, count): (Uuid, f64) = (row.get(0), row.get(1));
    db.execute(
        "UPDATE incidents SET severity = $2::text::incidentseverity, error_count = $3, affected_services = $4 WHERE incidents.id = $1",
        &[&id, &"CRITICAL", &(count + 1.0), &vec!["checkout".to_owned(), "payments".to_owned()]],
    )
    .await
    .expect("the worker's UPDATE");
    let evidence = Uuid::new_v4();
    db.execute(
        "INSERT INTO analysis_results (id, incident_id, root_cause, confidence_score, evidence_signals, ai_explanation, generated_at)
         VALUES ($1, $2, $3, $4, $5, $6, now())",
        &[&Uuid::new_v4(), &id, &"connection pool exhausted", &0.92, &vec![evidence], &json!({"summary": "pool", "steps": [1, 2]})],
    )
    .await
    .expect("the worker's INSERT");
    // The worker also inserts incidents of its own with its own uuid4.
    db.execute(
        "INSERT INTO incidents (id, trace_id, status, severity, detected_at, affected_services, error_count)
         VALUES ($1, 't-from-worker', 'OPEN', 'HIGH', now(), ARRAY['x']::varchar[], 1)",
        &[&Uuid::new_v4()],
    )
    .await
    .expect("the worker's own incident INSERT");

    let (status, analysis) = app.get_json(&format!("/query/incidents/{id}/analysis")).await;
    assert_eq!(status, StatusCode::OK);
    let mut keys: Vec<&str> = analysis.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "ai_explanation",
            "confidence_score",
            "evidence_signals",
            "generated_at",
            "id",
            "incident_id",
            "root_cause"
        ]
    );
    assert_eq!(analysis["root_cause"], "connection pool exhausted");
    assert_eq!(analysis["evidence_signals"], json!([evidence.to_string()]));
    let (_, incident) = app.get_json(&format!("/query/incidents/{id}")).await;
    assert_eq!(
        (incident["severity"].as_str(), incident["error_count"].as_f64()),
        (Some("critical"), Some(2.0))
    );

    // Our next batch for the trace keeps the worker's changes and adds to them.
    send_log(&app, "t-worker", "inventory", "INFO", "later").await;
    let (_, incident) = app.get_json(&format!("/query/incidents/{id}")).await;
    assert_eq!(incident["severity"], "critical");
    assert_eq!(incident["error_count"], 3.0);
    assert_eq!(incident["affected_services"], json!(["checkout", "payments", "inventory"]));
}

#[tokio::test]
async fn an_incident_the_worker_opened_is_the_one_our_signals_update() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    app.db()
        .await
        .execute(
            "INSERT INTO incidents (id, trace_id, status, severity, detected_at, affected_services, error_count)
             VALUES ($1, 't-worker-first', 'OPEN', 'MEDIUM', now(), ARRAY['pipeline']::varchar[], 1)",
            &[&id],
        )
        .await
        .unwrap();
    send_log(&app, "t-worker-first", "api", "ERROR", "boom").await;
    let (_, page) = app.get_json("/query/incidents?limit=200").await;
    let mine: Vec<&Value> =
        page["items"].as_array().unwrap().iter().filter(|i| i["trace_id"] == "t-worker-first").collect();
    assert_eq!(mine.len(), 1, "no second incident for the trace");
    assert_eq!(mine[0]["id"], id.to_string());
    assert_eq!(mine[0]["severity"], "high");
    assert_eq!(mine[0]["error_count"], 2.0);
    assert_eq!(mine[0]["affected_services"], json!(["pipeline", "api"]));
}
