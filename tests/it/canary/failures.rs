//! The canary can fail, and says why: against a service that stores nothing (missing), one
//! whose stored data changes behind its back (incorrect, naming the field), one that stores a
//! legacy resend with another timestamp (duplicate), and one with a shorter retention than the
//! canary was told (expired early). Each run exits 1 and counts the kind.

use std::time::Duration;

use chrono::{DurationRound, Utc};
use prodsentinel::store::partitions::Turn;

use super::fakes::{black_hole, resending_proxy};
use super::{endpoints_of, run_canary, strings};
use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_acknowledges_and_stores_nothing_fails_every_read_as_missing() {
    let fake = black_hole().await;
    let args = strings(&[
        "--otlp-grpc-endpoint",
        &format!("http://{}", fake.grpc),
        "--otlp-http-endpoint",
        &format!("http://{}", fake.http),
        "--api-endpoint",
        &format!("http://{}", fake.http),
        "--once",
        "--read-delay",
        "100ms",
        "--max-wait",
        "2s",
    ]);
    let run = run_canary(&args, Duration::from_secs(60)).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(run.report["refused"], serde_json::json!({}), "every write was acknowledged");
    assert_eq!(run.failures("read", "missing"), 14, "{:#}", run.report);
    assert_eq!(run.all_failures(), 14);
    assert!(run.stderr.contains("canary check failed"), "one log line per failure: {}", run.stderr);
    assert_eq!(run.stderr.matches("canary check failed").count(), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_changed_behind_the_services_back_is_incorrect_and_the_field_is_named() {
    let app = spawn_app().await;
    // A test-only database: every canary root span is stored with another name.
    app.db()
        .await
        .batch_execute(
            r#"CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF NEW.payload->'attributes'->>'canary.signal' = 'span.otlp_grpc.root' THEN
                   NEW.payload := jsonb_set(NEW.payload, '{name}', '"tampered"');
                 END IF;
                 RETURN NEW;
               END $$;
               CREATE TRIGGER tamper BEFORE INSERT ON raw_signal_rows FOR EACH ROW EXECUTE FUNCTION tamper();"#,
        )
        .await
        .unwrap();
    let mut args = endpoints_of(&app);
    args.extend(strings(&["--once", "--read-delay", "100ms", "--max-wait", "10s"]));
    let run = run_canary(&args, Duration::from_secs(60)).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(run.failures("read", "incorrect"), 1, "{:#}", run.report);
    assert_eq!(run.all_failures(), 1);
    let lines = run.report["first_failures"][0].as_str().unwrap_or_default();
    assert!(lines.contains("span.otlp_grpc.root"), "{lines}");
    assert!(lines.contains(r#"payload.name: expected "canary root", found "tampered""#), "{lines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_resend_with_another_timestamp_is_a_duplicate() {
    let app = spawn_app().await;
    let proxy = resending_proxy(app.addr).await;
    let args = strings(&[
        "--otlp-grpc-endpoint",
        &format!("http://{}", app.grpc_addr),
        "--otlp-http-endpoint",
        &format!("http://{}", app.http_addr),
        "--api-endpoint",
        &format!("http://{}", proxy.http),
        "--once",
        "--read-delay",
        "100ms",
        "--max-wait",
        "10s",
    ]);
    let run = run_canary(&args, Duration::from_secs(60)).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(run.failures("read", "duplicate"), 1, "{:#}", run.report);
    assert_eq!(run.all_failures(), 1);
    let line = run.report["first_failures"][0].as_str().unwrap_or_default();
    assert!(line.contains("log.legacy") && line.contains("stored 2 times"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_keeping_less_than_the_canary_was_told_expires_its_writes_early() {
    // The last hour's partition exists, and the service's retention ends its life 20 s from
    // now. The canary stamps its writes five seconds before the hour, so the first ones land
    // in that partition, and is told a day. Its one spot-check sample (the first write, read
    // back whole at once) is read again at every cycle: before the drop it is there, after it
    // it is gone, and each read after the drop counts its 14 signals as expired early.
    let now = Utc::now();
    let hour = now.duration_trunc(chrono::Duration::hours(1)).unwrap();
    let since_hour = (now - hour).num_seconds() as u64;
    let retention = format!("{}s", since_hour + 20);
    let app = spawn_app_with(&[
        "--partition-interval",
        "1h",
        "--retention-traces",
        &retention,
        "--retention-logs",
        &retention,
        "--retention-metrics",
        &retention,
        "--retention-check-seconds",
        "1",
    ])
    .await;
    let past = app.maintenance.pass_at(now - chrono::Duration::hours(1), Turn::Wait).await;
    assert!(past.errors.is_empty(), "{:?}", past.errors);
    // The offset is taken now, not before the service started (slower on Citus): the first
    // writes must land before the hour. They are 5 s past their retention's start on arrival
    // plus the time the service took to start: over 20 s, the service would refuse them.
    let started = Utc::now();
    assert!(started - now < chrono::Duration::seconds(12), "the service took {} to start", started - now);
    let offset = (started - hour).num_seconds() as u64 + 5;
    let mut args = endpoints_of(&app);
    args.extend(strings(&[
        "--cycles",
        "25",
        "--interval",
        "1s",
        "--read-delay",
        "100ms",
        "--max-wait",
        "5s",
        "--spot-check-interval",
        "1h",
        "--retention",
        "1d",
        "--time-offset",
        &format!("{offset}s"),
    ]));
    let run = run_canary(&args, Duration::from_secs(120)).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    let early = run.failures("spot", "expired_early");
    assert!(early >= 14 && early % 14 == 0, "{:#}", run.report);
    assert_eq!(
        run.all_failures(),
        early,
        "each write was read back whole before it expired: {:#}",
        run.report
    );
    let line = run.report["first_failures"][0].as_str().unwrap_or_default();
    assert!(line.contains("spot/expired_early") && line.contains("before its retention"), "{line}");
}
