//! The same TLS settings accept and refuse the same servers for us as for libpq: each case is
//! tried with psql (libpq, the reference) and with the service, against postmasters of the
//! tests' own serving certificates real deployments have: the self-signed one the PostgreSQL
//! manual tells users to make (a CA, by OpenSSL 3's defaults), a version-1 certificate valid
//! for no time at all (what every Citus node generates at start-up), and an expired one. Every
//! server refuses plain connections, so a case that connects at all connected encrypted.

use crate::helpers::RedisDb;
use crate::own_postgres::OwnPostgres;
use crate::postgres_tls::{openssl, store_and_read_one_log};
use crate::process::{temp_dir, TempDir};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

/// psql's verdict on a connection to `url`: `Err` with its message.
fn libpq(url: &str) -> Result<(), String> {
    let mut psql = std::process::Command::new("psql");
    psql.arg(url).args(["-X", "-A", "-t", "-c", "SELECT 1"]).env("PGCONNECT_TIMEOUT", "10");
    for inherited in ["PGSSLMODE", "PGSSLROOTCERT", "PGCHANNELBINDING", "PGPASSWORD", "PGHOST"] {
        psql.env_remove(inherited);
    }
    let output = psql.stdin(std::process::Stdio::null()).output().expect("psql runs");
    match output.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
    }
}

struct Case<'a> {
    what: &'a str,
    /// `user[:password]@host:port`, then `?` and the connection parameters.
    authority: String,
    query: String,
    accepted: bool,
    /// Part of our message when refused.
    why: &'a str,
}

/// Runs every case with psql and with the service; both must give the expected verdict.
async fn agree(cases: &[Case<'_>], pg: &OwnPostgres) {
    let redis = RedisDb::acquire().await;
    for case in cases {
        let theirs = libpq(&format!("postgresql://{}/postgres?{}", case.authority, case.query));
        assert_eq!(theirs.is_ok(), case.accepted, "libpq, {}: {theirs:?}", case.what);
        let ours = store_and_read_one_log(
            &format!("postgres://{}/prodsentinel_tls?{}", case.authority, case.query),
            &redis,
        )
        .await;
        match (&ours, case.accepted) {
            (Ok(()), true) => {}
            (Err(why), false) => assert!(why.contains(case.why), "{}: {why}", case.what),
            _ => panic!("ours, {}: {ours:?}, libpq: {theirs:?}\n{}", case.what, pg.log()),
        }
    }
}

fn path(dir: &TempDir, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_self_signed_certificate_of_the_postgresql_manual_is_trusted_as_libpq_trusts_it() {
    let dir = temp_dir();
    // The manual's command ("Creating Certificates"), verbatim but for the host name.
    openssl(
        &dir,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "365",
            "-nodes",
            "-text",
            "-out",
            "server.crt",
            "-keyout",
            "server.key",
            "-subj",
            "/CN=dbhost",
        ],
    );
    let pg = OwnPostgres::serving_tls(
        &path(&dir, "server.crt"),
        &path(&dir, "server.key"),
        "hostssl all all 127.0.0.1/32 trust",
    );
    let (crt, ca) = (path(&dir, "server.crt"), format!("{FIXTURES}/ca.pem"));
    let dbhost = format!("postgres@dbhost:{}", pg.port);
    let localhost = format!("postgres@localhost:{}", pg.port);
    let by_address = "hostaddr=127.0.0.1";
    let cases = [
        Case {
            what: "verify-full, the certificate its own root, by the name it carries",
            authority: dbhost.clone(),
            query: format!("{by_address}&sslmode=verify-full&sslrootcert={crt}"),
            accepted: true,
            why: "",
        },
        Case {
            what: "verify-ca, the certificate its own root",
            authority: dbhost.clone(),
            query: format!("{by_address}&sslmode=verify-ca&sslrootcert={crt}"),
            accepted: true,
            why: "",
        },
        Case {
            what: "require with it as root is verify-ca",
            authority: localhost.clone(),
            query: format!("sslmode=require&sslrootcert={crt}"),
            accepted: true,
            why: "",
        },
        Case {
            what: "verify-full by a name it does not carry",
            authority: localhost.clone(),
            query: format!("sslmode=verify-full&sslrootcert={crt}"),
            accepted: false,
            why: "not valid for name \"localhost\"",
        },
        Case {
            what: "verify-ca against another CA",
            authority: dbhost.clone(),
            query: format!("{by_address}&sslmode=verify-ca&sslrootcert={ca}"),
            accepted: false,
            why: "TLS certificate is not accepted (sslmode=verify-ca, host dbhost)",
        },
    ];
    agree(&cases, &pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_ca_and_its_leaf_are_judged_as_libpq_judges_them() {
    let cert = format!("{FIXTURES}/cert.pem");
    let pg =
        OwnPostgres::serving_tls(&cert, &format!("{FIXTURES}/key.pem"), "hostssl all all 127.0.0.1/32 trust");
    let ca = format!("{FIXTURES}/ca.pem");
    let at = |host: &str| format!("postgres@{host}:{}", pg.port);
    let cases = [
        Case {
            what: "verify-full by name",
            authority: at("localhost"),
            query: format!("sslmode=verify-full&sslrootcert={ca}"),
            accepted: true,
            why: "",
        },
        Case {
            what: "verify-full by address",
            authority: at("127.0.0.1"),
            query: format!("sslmode=verify-full&sslrootcert={ca}"),
            accepted: true,
            why: "",
        },
        Case {
            what: "verify-full by a wrong name",
            authority: at("wrong.example"),
            query: format!("hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"),
            accepted: false,
            why: "not valid for name \"wrong.example\"",
        },
        Case {
            what: "verify-ca, the leaf given as the root: not self-signed, so no anchor for OpenSSL",
            authority: at("localhost"),
            query: format!("sslmode=verify-ca&sslrootcert={cert}"),
            accepted: false,
            why: "UnknownIssuer",
        },
    ];
    agree(&cases, &pg).await;
}

/// A self-signed key and certificate for `localhost`, valid for `days` from now (0: from now
/// until now, so expired a second later), of X.509 `version` 1 (no extensions; what Citus
/// generates) or 3.
fn self_signed(dir: &TempDir, name: &str, version: u8, days: &str) -> (String, String) {
    let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ],
    );
    let mut args = vec!["x509", "-req", "-in", &csr, "-signkey", &key, "-days", days, "-out", &crt];
    let extensions = format!("{name}.ext");
    if version == 3 {
        std::fs::write(dir.join(&extensions), "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\n")
            .unwrap();
        args.extend(["-extfile", &extensions]);
    }
    openssl(dir, &args);
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.join(&crt))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("Version: {version} ")), "{text}");
    (path(dir, &crt), path(dir, &key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_and_require_connect_to_a_version_1_or_expired_certificate_and_verify_ca_refuses_it() {
    let dir = temp_dir();
    for version in [1, 3] {
        let (crt, key) = self_signed(&dir, &format!("v{version}"), version, "0");
        let pg = OwnPostgres::serving_tls(&crt, &key, "hostssl all all 127.0.0.1/32 trust");
        let authority = format!("postgres@localhost:{}", pg.port);
        let cases = [
            Case {
                what: "prefer (the default)",
                authority: authority.clone(),
                query: "application_name=tls-test".into(),
                accepted: true,
                why: "",
            },
            Case {
                what: "require",
                authority: authority.clone(),
                query: "sslmode=require".into(),
                accepted: true,
                why: "",
            },
            Case {
                what: "verify-ca with it as its own root: expired",
                authority: authority.clone(),
                query: format!("sslmode=verify-ca&sslrootcert={crt}"),
                accepted: false,
                why: "certificate expired",
            },
        ];
        agree(&cases, &pg).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_certificate_within_its_dates_passes_verify_full_as_its_own_root() {
    let dir = temp_dir();
    let (crt, key) = self_signed(&dir, "v1", 1, "1");
    let pg = OwnPostgres::serving_tls(&crt, &key, "hostssl all all 127.0.0.1/32 trust");
    let cases = [
        Case {
            what: "verify-full by the Common Name of a version-1 certificate",
            authority: format!("postgres@localhost:{}", pg.port),
            query: format!("sslmode=verify-full&sslrootcert={crt}"),
            accepted: true,
            why: "",
        },
        Case {
            what: "verify-full by another name",
            authority: format!("postgres@elsewhere.example:{}", pg.port),
            query: format!("hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={crt}"),
            accepted: false,
            why: "not valid for name \"elsewhere.example\"",
        },
    ];
    agree(&cases, &pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_binding_is_offered_required_or_refused_as_libpq_does() {
    let mut pg = OwnPostgres::init();
    pg.install_file(&format!("{FIXTURES}/cert.pem"), "server.crt");
    pg.install_file(&format!("{FIXTURES}/key.pem"), "server.key");
    pg.configure("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'");
    // SCRAM over TLS and over plain TCP; the socket stays trusted, to set the password.
    pg.hba_first("host all all 127.0.0.1/32 scram-sha-256");
    pg.start();
    let socket = format!("postgresql:///postgres?host={}&port={}&user=postgres", pg.dir.display(), pg.port);
    let status = std::process::Command::new("psql")
        .args([&socket, "-X", "-q", "-c", "ALTER ROLE postgres PASSWORD 'channel-secret'"])
        .status()
        .unwrap();
    assert!(status.success());
    let authority = format!("postgres:channel-secret@localhost:{}", pg.port);
    let case = |what, query: &str, accepted, why| Case {
        what,
        authority: authority.clone(),
        query: query.to_owned(),
        accepted,
        why,
    };
    let cases = [
        // Only SCRAM-SHA-256-PLUS with the server certificate's hash satisfies require: this
        // connecting proves the binding data is the one the server computes.
        case("require over TLS", "sslmode=require&channel_binding=require", true, ""),
        case(
            "require over verify-full",
            &format!("sslmode=verify-full&sslrootcert={FIXTURES}/ca.pem&channel_binding=require"),
            true,
            "",
        ),
        case("prefer (the default) over TLS", "sslmode=require", true, ""),
        case("disable over TLS", "sslmode=require&channel_binding=disable", true, ""),
        case("prefer without TLS: plain SCRAM", "sslmode=disable", true, ""),
        case("require without TLS", "sslmode=disable&channel_binding=require", false, "channel binding"),
    ];
    agree(&cases, &pg).await;

    // With a method that cannot bind the channel (trust), require refuses the server.
    pg.stop();
    pg.hba_first("hostssl all all 127.0.0.1/32 trust");
    pg.start();
    let trusted =
        [case("require against trust", "sslmode=require&channel_binding=require", false, "channel binding")];
    agree(&trusted, &pg).await;
}
