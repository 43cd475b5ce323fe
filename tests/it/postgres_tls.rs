//! PostgreSQL over TLS, against a postmaster of the test's own that serves TLS with the
//! fixture certificate (`localhost` and 127.0.0.1, signed by tests/fixtures/tls/ca.pem) and
//! refuses every connection without TLS (pg_hba `hostnossl … reject`): a mode that connects
//! at all connected encrypted.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::oneshot;

use crate::helpers::{log_body, RedisDb};
use crate::own_postgres::OwnPostgres;
use crate::process::{prodsentinel, temp_dir};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

fn tls_postgres() -> OwnPostgres {
    OwnPostgres::serving_tls(
        &format!("{FIXTURES}/cert.pem"),
        &format!("{FIXTURES}/key.pem"),
        "hostssl all all 127.0.0.1/32 trust",
    )
}

/// A CA that signed nothing of the server's.
fn unrelated_ca(dir: &std::path::Path) -> String {
    let (key, cert) = (dir.join("other-ca.key"), dir.join("other-ca.pem"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-subj", "/CN=unrelated test CA", "-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl made a CA");
    cert.display().to_string()
}

/// The app on `url`: builds (database created, migrated over TLS), stores one log through the
/// legacy endpoint and reads it back; then stops.
pub(crate) async fn store_and_read_one_log(url: &str, redis: &RedisDb) -> Result<(), String> {
    let redis_url = redis.url();
    let config =
        crate::helpers::test_config_for(url, &["--redis-url", &redis_url, "--database-wait-seconds", "2"]);
    let app = prodsentinel::App::build(config).await.map_err(|why| format!("{why:#}"))?;
    let addr = app.api_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let body = log_body("t-tls", "INFO", "over TLS");
    let sent = http.post(format!("http://{addr}/ingest/logs")).json(&body).send().await.unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let page: serde_json::Value = http
        .get(format!("http://{addr}/query/signals?trace_id=t-tls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = stop.send(());
    server.await.unwrap().map_err(|why| format!("{why:#}"))?;
    assert!(page["total"].as_i64().unwrap_or_default() >= 1, "{page}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sslmode_means_what_libpq_says_against_a_postgresql_serving_tls() {
    let pg = tls_postgres();
    let redis = RedisDb::acquire().await;
    let dir = temp_dir();
    let ca = format!("{FIXTURES}/ca.pem");
    let other_ca = unrelated_ca(&dir);
    // host=a name the certificate does not carry, hostaddr=where the server is.
    let wrong_name = |query: &str| {
        format!("postgres://postgres@wrong.example:{}/prodsentinel_tls?hostaddr=127.0.0.1&{query}", pg.port)
    };
    let accepted = [
        ("prefer (the default)", pg.url("prodsentinel_tls", "")),
        ("require, certificate unchecked", pg.url("prodsentinel_tls", "?sslmode=require")),
        ("require, unchecked even by a wrong name", wrong_name("sslmode=require")),
        ("verify-ca", pg.url("prodsentinel_tls", &format!("?sslmode=verify-ca&sslrootcert={ca}"))),
        ("verify-ca ignores the name", wrong_name(&format!("sslmode=verify-ca&sslrootcert={ca}"))),
        ("verify-full, by IP", pg.url("prodsentinel_tls", &format!("?sslmode=verify-full&sslrootcert={ca}"))),
        (
            "verify-full, by name",
            format!(
                "postgres://postgres@localhost:{}/prodsentinel_tls?sslmode=verify-full&sslrootcert={ca}",
                pg.port
            ),
        ),
    ];
    for (what, url) in &accepted {
        store_and_read_one_log(url, &redis).await.unwrap_or_else(|why| panic!("{what}: {why}\n{}", pg.log()));
    }

    let refused = [
        (
            "disable: the server refuses plain connections",
            pg.url("prodsentinel_tls", "?sslmode=disable"),
            "no encryption",
        ),
        (
            "verify-full by a wrong name",
            wrong_name(&format!("sslmode=verify-full&sslrootcert={ca}")),
            "not valid for name",
        ),
        (
            "verify-ca by another CA",
            pg.url("prodsentinel_tls", &format!("?sslmode=verify-ca&sslrootcert={other_ca}")),
            "UnknownIssuer",
        ),
        (
            "require with another CA is verify-ca",
            pg.url("prodsentinel_tls", &format!("?sslmode=require&sslrootcert={other_ca}")),
            "UnknownIssuer",
        ),
    ];
    for (what, url, why) in &refused {
        let error = store_and_read_one_log(url, &redis).await.expect_err(what);
        assert!(error.contains(why), "{what}: {error}");
    }
}

#[tokio::test]
async fn verify_full_against_the_wrong_host_name_stops_start_up_at_once_with_one_line() {
    let pg = tls_postgres();
    let dir = temp_dir();
    let url = format!(
        "postgres://postgres@wrong.example:{}/prodsentinel_tls?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={FIXTURES}/ca.pem",
        pg.port
    );
    let mut command = prodsentinel(&dir);
    command.env("DATABASE_URL", &url).env("DATABASE_WAIT_SECONDS", "60").env("LOG_FORMAT", "text");
    let started = std::time::Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("exits, without waiting DATABASE_WAIT_SECONDS")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "a refused certificate is not retried");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    for part in [
        "ERROR",
        "TLS certificate is not accepted",
        "sslmode=verify-full",
        "host wrong.example",
        "not valid for name",
    ] {
        assert!(lines[0].contains(part), "{part:?} missing from: {}", lines[0]);
    }
}

/// `openssl` with `args`, in `dir`.
pub(crate) fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslcert_and_sslkey_authenticate_us_to_a_server_that_wants_a_client_certificate() {
    let dir = temp_dir();
    // A CA for clients, and a client certificate for the user `postgres` signed by it.
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-subj", "/CN=client CA", "-days", "1", "-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        &dir,
        &[&["req"][..], &ec, &["-subj", "/CN=postgres", "-keyout", "client.key", "-out", "client.csr"]]
            .concat(),
    );
    // Version 3, with the extensions of a client certificate (rustls refuses version 1).
    let extensions = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n";
    std::fs::write(dir.join("client.ext"), extensions).unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "client.ext",
            "-out",
            "client.pem",
        ],
    );
    openssl(
        &dir,
        &[&["req"][..], &ec, &["-subj", "/CN=someone else", "-keyout", "other.key", "-out", "other.csr"]]
            .concat(),
    );

    let mut pg = OwnPostgres::init();
    pg.install_file(&format!("{FIXTURES}/cert.pem"), "server.crt");
    pg.install_file(&format!("{FIXTURES}/key.pem"), "server.key");
    pg.install_file(&dir.join("ca.pem").display().to_string(), "client-ca.pem");
    pg.configure(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'client-ca.pem'",
    );
    // Authentication by certificate: its CN must be the user's name.
    pg.hba_first("hostnossl all all 0.0.0.0/0 reject\nhostssl all all 127.0.0.1/32 cert");
    pg.start();
    let redis = RedisDb::acquire().await;
    let (cert, key, other_key) = (
        dir.join("client.pem").display().to_string(),
        dir.join("client.key").display().to_string(),
        dir.join("other.key").display().to_string(),
    );
    let base = format!("?sslmode=verify-full&sslrootcert={FIXTURES}/ca.pem");

    let with_ours = pg.url("prodsentinel_tls", &format!("{base}&sslcert={cert}&sslkey={key}"));
    store_and_read_one_log(&with_ours, &redis).await.unwrap_or_else(|why| panic!("{why}\n{}", pg.log()));

    let without =
        store_and_read_one_log(&pg.url("prodsentinel_tls", &base), &redis).await.expect_err("no certificate");
    assert!(without.contains("certificate"), "{without}");
    let mismatched = pg.url("prodsentinel_tls", &format!("{base}&sslcert={cert}&sslkey={other_key}"));
    let mismatched =
        store_and_read_one_log(&mismatched, &redis).await.expect_err("a key of another certificate");
    assert!(mismatched.contains("sslkey: does not match sslcert"), "{mismatched}");
    let half = pg.url("prodsentinel_tls", &format!("{base}&sslcert={cert}"));
    let half = prodsentinel::Config::from_args(["prodsentinel", "--database-url", &half])
        .expect_err("half an identity");
    assert!(half.to_string().contains("sslcert needs sslkey"), "{half}");
}
