//! Clients sending faster than the database absorbs: memory stays under a bound, the excess is
//! refused at the door with retryable answers, and everything accepted is stored.

use std::time::Duration;

use super::load::{Kind, Load, Targets};
use crate::helpers::TestDb;
use crate::process::ServerProcess;

/// The documented bound (docs/reliability.md) on the process's peak resident memory during the
/// flood below, at default settings: the runtime and pool (~25 MiB), 16 exports of ~220 KB
/// decoded and mapped at once (~15 MiB), at most 20,000 queued signals of ~2 KiB (~40 MiB),
/// and room for the allocator's slack.
const PEAK_RSS_BOUND: u64 = 160 * 1024 * 1024;

/// A database slower than the clients: every inserted signal costs it 10 ms, so 8 writers
/// absorb at most ~800 signals a second.
async fn slow_down(db: &TestDb) {
    db.connect()
        .await
        .batch_execute(
            "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END $$; \
             CREATE TRIGGER slow_insert BEFORE INSERT ON raw_signal_rows \
             FOR EACH ROW EXECUTE FUNCTION slow_insert();",
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_refused_retryably_with_memory_bounded_and_everything_accepted_stored() {
    let _turn = crate::helpers::machine_load_turn().await;
    let db = TestDb::new();
    // A 10 s ingest timeout (default 3 s): the rest of the suite runs beside this test on two
    // cores, and a starved process must not turn scheduling delays into timeouts. Without
    // admission control the 20,000-signal queue would still hold 25 s of work at 800/s, so
    // accepted requests would time out all the same: the assertion below keeps its teeth.
    let mut server = ServerProcess::start(&db, &[("INGEST_TIMEOUT_MS", "10000")]).await;
    slow_down(&db).await;
    let idle_rss = server.peak_rss_bytes();

    // 24 clients, OTLP requests of 200 records with ~1 KB each.
    let load = Load::start(&Targets::from(&server), &[Kind::Grpc, Kind::OtlpHttp, Kind::Legacy], 8, 200);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let peak = server.peak_rss_bytes();
    let report = load.finish(Duration::from_secs(60)).await;

    assert!(report.retryable > 0, "nothing was refused: the database kept up, not an overload");
    assert_eq!(
        report.timed_out,
        0,
        "accepted requests timed out instead of the excess being refused ({} acknowledged, {} refused)",
        report.acked.len(),
        report.retryable
    );
    let stored = report.verify_all(&db.connect().await).await;
    eprintln!(
        "overload: {} requests acknowledged ({} signals), {} refused retryably (0 timed out), \
         stored {stored}, lost 0; refusals {:?}; peak RSS {} MiB (idle {} MiB, bound {} MiB)",
        report.acked.len(),
        report.acked_signals(),
        report.retryable,
        report.refusals,
        peak >> 20,
        idle_rss >> 20,
        PEAK_RSS_BOUND >> 20,
    );
    assert!(peak < PEAK_RSS_BOUND, "peak RSS {} MiB over the bound {} MiB", peak >> 20, PEAK_RSS_BOUND >> 20);
    server.sigterm();
    assert_eq!(server.exit_code(Duration::from_secs(15)).await, Some(0));
}
