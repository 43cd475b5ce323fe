//! SIGTERM under load, as a deploy sends it: listeners close, in-flight requests finish or get
//! a retryable answer, the last batch is committed, the dispatcher stops, exit 0 in time.

use std::time::{Duration, Instant};

use super::load::{assert_whole, stored_by_trace, Kind, Load, Targets};
use crate::helpers::{RedisDb, TestDb};
use crate::process::ServerProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_flushes_what_it_acknowledged_and_exits_0_in_time() {
    let _turn = crate::helpers::machine_load_turn().await;
    let db = TestDb::new();
    let redis = RedisDb::acquire().await;
    let env = [("REDIS_URL", redis.url()), ("SHUTDOWN_TIMEOUT_SECONDS", "8".to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server = ServerProcess::start(&db, &env).await;
    let load = Load::start(&Targets::from(&server), &[Kind::Grpc, Kind::OtlpHttp, Kind::Legacy], 3, 20);
    // Under way before the signal, however slowly the machine starts the clients.
    crate::helpers::wait_for("requests acknowledged before SIGTERM", Duration::from_secs(20), || async {
        !load.acked_so_far().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // and a little more of it in flight

    let term = Instant::now();
    server.sigterm();
    let code = server.exit_code(Duration::from_secs(8 + 5)).await;
    let took = term.elapsed();
    assert_eq!(code, Some(0), "exit 0 after SIGTERM");
    assert!(took < Duration::from_secs(8), "exited within SHUTDOWN_TIMEOUT_SECONDS (took {took:?})");
    let logs = server.log_lines();
    assert!(logs.iter().any(|l| l.contains("all in-flight requests finished")), "{logs:#?}");
    assert!(logs.iter().any(|l| l.contains("\"stopped\"")), "{logs:#?}");
    let bad = ["deadline reached", "ended with an error", "task failed"];
    assert!(!logs.iter().any(|l| bad.iter().any(|b| l.contains(b))), "an unclean stop: {logs:#?}");

    // Before anything restarts: every acknowledgement given by the stopped instance is in the
    // database (the last batch was flushed before exit).
    let acked_at_exit = load.acked_so_far();
    let stored = stored_by_trace(&db.connect().await).await;
    assert_whole(&stored, acked_at_exit.iter().map(|(t, n)| (t, *n)));
    let stored_at_exit: i64 = stored.values().sum();

    // The deploy's new instance takes over; the clients' retries land there.
    server.restart().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.finish(Duration::from_secs(30)).await;
    let total = report.verify_all(&db.connect().await).await;
    assert!(!acked_at_exit.is_empty(), "the stopped instance acknowledged requests");
    eprintln!(
        "SIGTERM under load: exit 0 after {took:?}; {} requests acknowledged before exit, all among the \
         {stored_at_exit} signals stored at exit; with the restarted instance, in all: {}; stored {total}, \
         lost 0",
        acked_at_exit.len(),
        report.summary()
    );
    server.sigterm();
    assert_eq!(server.exit_code(Duration::from_secs(15)).await, Some(0));
}
