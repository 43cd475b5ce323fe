//! A PostgreSQL server of the benchmark's own (initdb in a temporary directory, a free port),
//! so that it can be restarted with other settings without touching the machine's cluster.
//! Run as root, the server runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::BoxError;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct OwnPostgres {
    dir: PathBuf,
    pub port: u16,
    running: bool,
}

fn as_postgres(program: &str) -> Command {
    let path = Path::new(BIN).join(program);
    // initdb and postgres refuse to run as root: switch to the postgres user when we are root.
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn run(mut command: Command, what: &str) -> Result<(), BoxError> {
    let output = command.output().map_err(|e| format!("{what}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

impl OwnPostgres {
    /// A new cluster in a temporary directory (not started).
    pub fn init() -> Result<OwnPostgres, BoxError> {
        OwnPostgres::init_in(&std::env::temp_dir())
    }

    /// A new cluster in a new directory under `parent` (a small file system, say).
    pub fn init_in(parent: &Path) -> Result<OwnPostgres, BoxError> {
        let dir = parent.join(format!("prodsentinel-bench-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres"]).arg(&dir);
                    c
                },
                "chown",
            )?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut initdb = as_postgres("initdb");
        initdb
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-sync", "-D"])
            .arg(dir.join("data"));
        run(initdb, "initdb")?;
        Ok(OwnPostgres { dir, port, running: false })
    }

    /// Starts it with `settings` (`name = value` pairs given as `-c` options; others stock).
    pub fn start(&mut self, settings: &[(&str, &str)]) -> Result<(), BoxError> {
        let mut options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.display()
        );
        for (name, value) in settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let mut pg_ctl = as_postgres("pg_ctl");
        pg_ctl.arg("-D").arg(self.dir.join("data")).args(["-w", "-t", "120", "-o", &options, "-l"]);
        pg_ctl.arg(self.dir.join("server.log")).arg("start");
        run(pg_ctl, "pg_ctl start")?;
        self.running = true;
        Ok(())
    }

    pub fn stop(&mut self) -> Result<(), BoxError> {
        if self.running {
            let mut pg_ctl = as_postgres("pg_ctl");
            pg_ctl.arg("-D").arg(self.dir.join("data")).args(["-w", "-t", "300", "-m", "fast", "stop"]);
            run(pg_ctl, "pg_ctl stop")?;
            self.running = false;
        }
        Ok(())
    }

    /// The server's log, for a run that went wrong.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// CPU seconds (user + system) this server has used: its postmaster, the processes it
    /// runs now and those that exited (the postmaster's reaped children's times), so that
    /// backends of connections closed in between are counted.
    pub fn cpu_seconds(&self) -> f64 {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap_or_default();
        let Some(postmaster) = pid.lines().next().and_then(|l| l.trim().parse::<u32>().ok()) else {
            return 0.0;
        };
        let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
        let mut ticks = 0.0;
        for entry in entries.filter_map(Result::ok) {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // Fields after the command name (which may hold spaces) start after the last ')':
            // ppid is field 4 of the line (1 here), utime to cstime fields 14 to 17 (11 to 14).
            let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
            if pid == postmaster {
                ticks += field(11) + field(12) + field(13) + field(14);
            } else if field(1) as u32 == postmaster {
                ticks += field(11) + field(12);
            }
        }
        ticks / 100.0
    }

    /// `postgres://postgres@127.0.0.1:<port>`, without a database name.
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        if let Err(why) = self.stop() {
            eprintln!("bench: could not stop the benchmark's PostgreSQL: {why}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
