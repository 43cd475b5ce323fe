//! The database goes away under load and comes back: retryable answers meanwhile, readiness
//! follows the database, recovery on its own, nothing acknowledged lost.

use std::time::{Duration, Instant};

use super::load::{Kind, Load, Targets};
use crate::helpers::{one, TestDb};
use crate::process::ServerProcess;

async fn ready(client: &reqwest::Client, api: &str) -> bool {
    let answer = client.get(format!("http://{api}/health/ready")).send().await;
    answer.is_ok_and(|r| r.status().is_success())
}

/// Polls readiness every 50 ms until it equals `wanted`; the time it took, or `None` after `limit`.
async fn until_ready_is(
    client: &reqwest::Client,
    api: &str,
    wanted: bool,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready(client, api).await == wanted {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn stored(db: &TestDb) -> i64 {
    one(&db.connect().await, "SELECT count(*) FROM raw_signals").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_load_is_answered_retryably_and_recovered_from() {
    let _turn = crate::helpers::machine_load_turn().await;
    let db = TestDb::new();
    let mut server = ServerProcess::start(&db, &[]).await;
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let load = Load::start(&Targets::from(&server), &[Kind::Grpc, Kind::OtlpHttp, Kind::Legacy], 2, 20);
    crate::helpers::wait_for("the load stored before the outage", Duration::from_secs(20), || async {
        stored(&db).await > 0
    })
    .await;

    db.allow_connections(false).await;
    let noticed = until_ready_is(&probe, &server.api, false, Duration::from_secs(10)).await;
    let noticed = noticed.expect("readiness goes false within 10 s of the outage");
    // The outage lasts a while under load: every request meanwhile is refused retryably.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!ready(&probe, &server.api).await, "still not ready while the database is away");

    db.allow_connections(true).await;
    let back = Instant::now();
    let recovered = until_ready_is(&probe, &server.api, true, Duration::from_secs(15)).await;
    let recovered = recovered.expect("readiness comes back within 15 s of the database");
    let before = stored(&db).await;
    crate::helpers::wait_for("new signals stored after the outage", Duration::from_secs(15), || async {
        stored(&db).await > before
    })
    .await;
    let storing_again = back.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let report = load.finish(Duration::from_secs(30)).await;
    assert!(report.retryable > 0, "the outage refused nothing: not a test of anything");
    let total = report.verify_all(&db.connect().await).await;
    eprintln!(
        "database outage of ~3 s under load: readiness false after {noticed:?}, ready again {recovered:?} \
         and storing again {storing_again:?} after the database returned; {}; stored {total}, lost 0",
        report.summary()
    );
    // It kept running through the outage, and still stops cleanly.
    server.sigterm();
    assert_eq!(server.exit_code(Duration::from_secs(15)).await, Some(0));
}
