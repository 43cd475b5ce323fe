//! The real `prodsentinel` binary as a child process: started on ports of its own, its log lines
//! collected, stopped by signal, restarted on the same ports, its peak memory read from `/proc`.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::helpers::{free_port, wait_for, TestDb};

/// Every setting the service reads (its environment variables), as its flags declare them:
/// the tests start it with none of them inherited.
pub fn settings() -> Vec<String> {
    use clap::CommandFactory;
    let command = prodsentinel::config::Cli::command();
    let names: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    assert!(names.len() >= 40, "the service's settings: {names:?}");
    names
}

/// Every setting of `prodsentinel canary`, by its environment variable.
pub fn canary_settings() -> Vec<String> {
    use clap::CommandFactory;
    let command = prodsentinel::config::Cli::command();
    let canary = command.find_subcommand("canary").expect("the canary subcommand");
    canary
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect()
}

/// The binary with none of our settings inherited, run in `dir`.
pub fn prodsentinel(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prodsentinel"));
    for setting in settings() {
        command.env_remove(setting);
    }
    command.current_dir(dir).stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// A fresh directory under the temp directory (the binary reads `.env` from its working dir),
/// removed when dropped.
pub struct TempDir(std::path::PathBuf);

pub fn temp_dir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("prodsentinel-it-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running binary and the addresses of its three listeners (`host:port`).
pub struct ServerProcess {
    /// `None` only before the first start.
    child: Option<Child>,
    pub api: String,
    pub grpc: String,
    pub http: String,
    /// Every log line it wrote to stderr, over all its (re)starts.
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The task copying the current run's stderr into `logs`; it ends at end of file, which
    /// comes only after the process has exited and its last line has been read.
    drain: Option<JoinHandle<()>>,
    env: Vec<(String, String)>,
    database_url: String,
    dir: TempDir,
}

impl ServerProcess {
    /// Starts the binary against `db` on three free ports with `env` on top of the test
    /// defaults, and waits until it is ready.
    pub async fn start(db: &TestDb, env: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::start_at(db.url(), env).await
    }

    /// The same against the database at `database_url` (a PostgreSQL of the test's own).
    pub async fn start_at(database_url: String, env: &[(&str, &str)]) -> ServerProcess {
        let loopback = |port: u16| format!("127.0.0.1:{port}");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut server = ServerProcess {
            child: None,
            api: loopback(free_port()),
            grpc: loopback(free_port()),
            http: loopback(free_port()),
            logs: Arc::default(),
            drain: None,
            env,
            database_url,
            dir: temp_dir(),
        };
        server.restart().await;
        server
    }

    /// Starts it again, same ports and settings (after it exited or was killed).
    pub async fn restart(&mut self) {
        // The previous run's last lines first, so that `logs` stays in order.
        self.finish_drain().await;
        let mut command = prodsentinel(&self.dir);
        command
            .env("DATABASE_URL", &self.database_url)
            .env("API_ADDR", &self.api)
            .env("OTLP_GRPC_ADDR", &self.grpc)
            .env("OTLP_HTTP_ADDR", &self.http)
            .env("LOG_FORMAT", "json")
            .env("SHUTDOWN_TIMEOUT_SECONDS", "10")
            // As for the in-process apps (helpers::test_config): fixtures from 2024 are kept.
            .env("RETENTION_TRACES", "0")
            .env("RETENTION_LOGS", "0")
            .env("RETENTION_METRICS", "0")
            // No Redis unless a test names one: the outbox waits, ingestion is unaffected.
            .env("REDIS_URL", "redis://127.0.0.1:1/0")
            .stderr(Stdio::piped());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        self.child = Some(child);
        // Keep draining its logs so it never blocks on a full pipe.
        let collected = self.logs.clone();
        self.drain = Some(tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collected.lock().unwrap().push(line);
            }
        }));
        let ready = format!("http://{}/health/ready", self.api);
        wait_for("the binary to be ready", Duration::from_secs(30), || {
            let url = ready.clone();
            async move { reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("started")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).expect("running")
    }

    fn signal(&self, name: &str) {
        let pid = self.pid().to_string();
        let status = std::process::Command::new("kill").args([name, &pid]).status().unwrap();
        assert!(status.success(), "kill {name} {pid}");
    }

    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    pub fn sigint(&self) {
        self.signal("-INT");
    }

    /// `kill -9`, and waits for the process to be gone and its output read to the end.
    pub async fn kill9(&mut self) {
        self.signal("-KILL");
        let status = self.child().wait().await.unwrap();
        assert_eq!(status.code(), None, "killed by a signal");
        self.finish_drain().await;
    }

    /// Its exit code, failing the test if it has not exited within `timeout`. Once this
    /// returns, `log_lines` holds every line the process wrote.
    pub async fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let code = tokio::time::timeout(timeout, self.child().wait())
            .await
            .unwrap_or_else(|_| panic!("the binary did not exit within {timeout:?}"))
            .unwrap()
            .code();
        self.finish_drain().await;
        code
    }

    /// Waits for the drain task to reach end of file. The process has exited, so the pipe's
    /// write end is closed once the kernel has handed over the last bytes: this is bounded.
    async fn finish_drain(&mut self) {
        if let Some(drain) = self.drain.take() {
            tokio::time::timeout(Duration::from_secs(30), drain)
                .await
                .expect("the exited binary's stderr reaches end of file")
                .expect("the log drain task");
        }
    }

    /// Peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/pid/status");
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// The lines collected so far: all of them after `exit_code` or `kill9`, the ones read
    /// until now while it runs.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}
