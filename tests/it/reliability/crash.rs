//! `kill -9` under load: what was acknowledged survives, exactly once.

use std::time::Duration;

use super::load::{Kind, Load, Targets};
use crate::helpers::{one, TestDb};
use crate::process::ServerProcess;

const ALL: &[Kind] = &[Kind::Grpc, Kind::OtlpHttp, Kind::Legacy];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_mixed_load_loses_nothing_acknowledged() {
    let _turn = crate::helpers::machine_load_turn().await;
    let db = TestDb::new();
    let mut server = ServerProcess::start(&db, &[]).await;
    let load = Load::start(&Targets::from(&server), ALL, 3, 20);
    crate::helpers::wait_for("the load stored before the kill", Duration::from_secs(20), || async {
        count(&db).await > 0
    })
    .await;

    // A random moment, so the kill lands in a different phase of the batch cycle each run.
    let delay = Duration::from_millis(1_000 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 8);
    tokio::time::sleep(delay).await;
    let acked_before = count(&db).await;
    server.kill9().await;
    // The clients meet a dead port for a moment, then the restarted server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let report = load.finish(Duration::from_secs(30)).await;
    let stored = report.verify_all(&db.connect().await).await;
    assert!(acked_before > 0, "the load was stored before the kill");
    for kind in ["Grpc", "OtlpHttp", "Legacy"] {
        assert!(report.acked_by_kind.get(kind).copied().unwrap_or(0) > 0, "no {kind} request acknowledged");
    }
    assert!(report.transport_errors > 0, "the kill interrupted nobody: not a test of anything");
    eprintln!("kill -9 after {delay:?}: {}; stored {stored}, lost 0, stored twice 0", report.summary());
    server.sigterm();
    assert_eq!(server.exit_code(Duration::from_secs(15)).await, Some(0));
}

async fn count(db: &TestDb) -> i64 {
    one(&db.connect().await, "SELECT count(*) FROM raw_signals").await
}
