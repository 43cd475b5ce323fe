//! Redis as operators run it (issue 15, item 4): a password, an ACL user, and TLS (`rediss://`),
//! against a redis-server this test starts on free ports and stops at the end. The real binary
//! is run, with the test CA as its trust anchor (`SSL_CERT_FILE`, read by the system roots).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{free_port, log_body, wait_for, TestDb};
use crate::process::{temp_dir, ServerProcess, TempDir};

const CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/key.pem");
const PASSWORD: &str = "s3cret-redis-pass";

/// A redis-server of the test's own: a plain port and a TLS port, `requirepass`, no persistence.
struct OwnRedis {
    child: Child,
    plain: u16,
    tls: u16,
    _dir: TempDir,
}

impl OwnRedis {
    async fn start() -> OwnRedis {
        let dir = temp_dir();
        let (plain, tls) = (free_port(), free_port());
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &plain.to_string(), "--tls-port", &tls.to_string()])
            .args(["--tls-cert-file", CERT, "--tls-key-file", KEY, "--tls-ca-cert-file", CA])
            .args(["--tls-auth-clients", "no", "--requirepass", PASSWORD])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&*dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let redis = OwnRedis { child, plain, tls, _dir: dir };
        let url = redis.plain_url("", PASSWORD, 0);
        wait_for("the test's redis-server", Duration::from_secs(20), || {
            let url = url.clone();
            async move { ping(&url).is_ok() }
        })
        .await;
        redis
    }

    fn plain_url(&self, user: &str, password: &str, db: u8) -> String {
        format!("redis://{user}:{password}@127.0.0.1:{}/{db}", self.plain)
    }

    fn tls_url(&self, user: &str, password: &str, db: u8) -> String {
        format!("rediss://{user}:{password}@localhost:{}/{db}", self.tls)
    }

    /// What the service queued in database `db` (read over the plain port).
    fn queued(&self, db: u8) -> i64 {
        let mut connection = redis::Client::open(self.plain_url("", PASSWORD, db))
            .and_then(|c| c.get_connection())
            .expect("the test's Redis answers");
        redis::cmd("LLEN").arg("celery").query(&mut connection).unwrap_or(0)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping(url: &str) -> redis::RedisResult<String> {
    let mut connection = redis::Client::open(url)?.get_connection()?;
    redis::cmd("PING").query(&mut connection)
}

/// Runs the binary with `redis_url`, sends one ERROR log (an analysis request) and returns the
/// server, once the dispatcher had its chance.
async fn run_with(redis_url: &str, trust_test_ca: bool) -> (ServerProcess, TestDb) {
    let db = TestDb::new();
    // Without the test CA the system roots alone are trusted (an empty file: none at all).
    let roots = if trust_test_ca { CA } else { "/dev/null" };
    let server = ServerProcess::start(&db, &[("REDIS_URL", redis_url), ("SSL_CERT_FILE", roots)]).await;
    let body = log_body("redis-auth-trace", "ERROR", "payment failed");
    let answer = reqwest::Client::new()
        .post(format!("http://{}/ingest/logs", server.api))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::ACCEPTED);
    (server, db)
}

#[tokio::test]
async fn a_password_an_acl_user_and_tls_reach_redis_and_the_password_is_never_logged() {
    let redis = OwnRedis::start().await;
    assert!(ping(&redis.plain_url("", "wrong", 0)).is_err(), "the server requires the password");
    {
        let mut admin =
            redis::Client::open(redis.plain_url("", PASSWORD, 0)).unwrap().get_connection().unwrap();
        let mut setuser = redis::cmd("ACL");
        for part in ["SETUSER", "analysis", "on", ">acl-user-pass", "~*", "&*", "+@all"] {
            setuser.arg(part);
        }
        let _: () = setuser.query(&mut admin).unwrap();
    }
    let cases = [
        ("password over plain TCP", redis.plain_url("", PASSWORD, 1), 1, PASSWORD),
        ("password over TLS", redis.tls_url("", PASSWORD, 2), 2, PASSWORD),
        ("ACL user over TLS", redis.tls_url("analysis", "acl-user-pass", 3), 3, "acl-user-pass"),
    ];
    for (what, url, db, secret) in cases {
        let (mut server, _db) = run_with(&url, true).await;
        wait_for(what, Duration::from_secs(20), || {
            let queued = redis.queued(db);
            async move { queued == 1 }
        })
        .await;
        server.sigterm();
        assert_eq!(server.exit_code(Duration::from_secs(15)).await, Some(0), "{what}");
        let lines = server.log_lines();
        assert!(lines.iter().all(|line| !line.contains(secret)), "{what}: the secret is in a log line");
    }

    // A wrong password, and a certificate from a CA the service does not trust: ingestion still
    // answers, nothing is queued, and the log says why, without the password.
    let refusals = [
        (redis.tls_url("", "not-the-password", 4), 4, true, "authentication failed"),
        (redis.tls_url("", PASSWORD, 5), 5, false, "certificate"),
    ];
    for (url, db, trust, reason) in refusals {
        let (mut server, _db) = run_with(&url, trust).await;
        let refused = |lines: &[String]| {
            lines.iter().any(|l| {
                let l = l.to_lowercase();
                l.contains("analysis queue (redis) unavailable") && l.contains(reason)
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !refused(&server.log_lines()) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let lines = server.log_lines();
        assert!(refused(&lines), "the refusal and its reason ({reason}) are logged:\n{}", lines.join("\n"));
        assert_eq!(redis.queued(db), 0);
        server.sigterm();
        assert_eq!(server.exit_code(Duration::from_secs(15)).await, Some(0));
        assert!(server
            .log_lines()
            .iter()
            .all(|line| !line.contains("not-the-password") && !line.contains(PASSWORD)));
    }
}
