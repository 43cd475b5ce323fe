//! The release server as a child process, and its resource use read from /proc.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::{BoxError, Options};

pub struct Server {
    child: Child,
    pid: u32,
    pub api: SocketAddr,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    peak_rss_kib: Arc<AtomicU64>,
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port")
}

impl Server {
    pub async fn start(
        options: &Options,
        database_url: &str,
        env: &[(&str, &str)],
    ) -> Result<Server, BoxError> {
        let (api, grpc, http) = (free_addr(), free_addr(), free_addr());
        let mut command = Command::new(&options.server_binary);
        command
            .env(
                "DATABASE_URL",
                match &options.database_options {
                    Some(query) => format!("{database_url}?{query}"),
                    None => database_url.to_owned(),
                },
            )
            .env("REDIS_URL", &options.redis_url)
            .env("API_ADDR", api.to_string())
            .env("OTLP_GRPC_ADDR", grpc.to_string())
            .env("OTLP_HTTP_ADDR", http.to_string())
            .env("LOG_LEVEL", "ERROR")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        for (key, value) in &options.server_env {
            command.env(key, value);
        }
        let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", options.server_binary))?;
        let pid = child.id().ok_or("server exited at once")?;
        let http_client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http_client.get(format!("http://{api}/health/ready")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if Instant::now() > deadline {
                return Err("server not ready within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let peak_rss_kib = Arc::new(AtomicU64::new(0));
        let sampler = peak_rss_kib.clone();
        tokio::spawn(async move {
            while let Some(rss) = rss_kib(pid) {
                sampler.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Ok(Server { child, pid, api, grpc, http, peak_rss_kib })
    }

    /// CPU seconds (user + system) the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here. 100 ticks/s.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        rss_kib(self.pid).unwrap_or(0) as f64 / 1024.0
    }

    /// Peak resident memory since the last reset, in MiB.
    pub fn take_peak_rss_mib(&self) -> f64 {
        let peak = self.peak_rss_kib.swap(rss_kib(self.pid).unwrap_or(0), Ordering::Relaxed);
        peak as f64 / 1024.0
    }

    pub async fn stop(mut self) -> Result<(), BoxError> {
        std::process::Command::new("kill").args(["-TERM", &self.pid.to_string()]).status()?;
        tokio::time::timeout(Duration::from_secs(40), self.child.wait()).await??;
        Ok(())
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// CPU seconds of every PostgreSQL process on this machine (backends, WAL writer, checkpointer):
/// what the database spent, where it runs beside us. Processes that exit in between are missed.
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| stat.contains("(postgres)"))
        .map(|stat| {
            let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
            (ticks(11) + ticks(12)) / 100.0
        })
        .sum()
}
