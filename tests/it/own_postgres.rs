//! A PostgreSQL server of a test's own: initdb in a temporary directory, a free port, the
//! settings the test needs (TLS, replication), stopped and removed when dropped. Tests never
//! change the shared cluster. Run as root, the server runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct OwnPostgres {
    pub dir: PathBuf,
    pub port: u16,
    running: bool,
    /// The data directory, when it is a file system of its own (unmounted when dropped).
    small_disk: Option<PathBuf>,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// `program` of the PostgreSQL binaries, as the `postgres` user when we are root (initdb and
/// postgres refuse to run as root).
fn as_postgres(program: &str) -> Command {
    let path = Path::new(BIN).join(program);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|why| panic!("{what}: {why}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Gives `path` to the postgres user (when we are root), with `mode`.
fn hand_over(path: &Path, mode: &str) {
    if is_root() {
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres:postgres"]).arg(path);
        run(chown, "chown");
    }
    let mut chmod = Command::new("chmod");
    chmod.arg(mode).arg(path);
    run(chmod, "chmod");
}

/// A new directory the postgres user owns, and a free port.
fn new_place() -> (PathBuf, u16) {
    let dir = std::env::temp_dir().join(format!("prodsentinel-it-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    hand_over(&dir, "700");
    (dir, crate::helpers::free_port())
}

impl OwnPostgres {
    /// A new cluster (not started), trusting local connections.
    pub fn init() -> OwnPostgres {
        let (dir, port) = new_place();
        OwnPostgres::init_in(dir, port, None, &[])
    }

    /// A new cluster (not started) whose data directory is a tmpfs of `megabytes` of its own,
    /// and whose WAL is elsewhere: what fills is the data disk (SQLSTATE 53100), never the WAL
    /// (which would make PostgreSQL PANIC). Needs root, as CI runs; says so otherwise.
    pub fn init_on_small_disk(megabytes: u64) -> OwnPostgres {
        let (dir, port) = new_place();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let owner = |flag: &str| {
            let output = Command::new("id").args([flag, "postgres"]).output().expect("id runs");
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        };
        let options = format!("size={megabytes}m,uid={},gid={},mode=0700", owner("-u"), owner("-g"));
        let mount = Command::new("mount").args(["-t", "tmpfs", "-o", &options, "tmpfs"]).arg(&data).output();
        let mounted = mount.as_ref().is_ok_and(|output| output.status.success());
        assert!(
            mounted,
            "this test needs a small file system of its own for PostgreSQL's data (mount -t tmpfs -o {options}), \
             which only root may mount (CI runs as root): {mount:?}"
        );
        let wal = dir.join("wal").display().to_string();
        OwnPostgres::init_in(dir, port, Some(data), &[&format!("--waldir={wal}")])
    }

    fn init_in(dir: PathBuf, port: u16, small_disk: Option<PathBuf>, extra: &[&str]) -> OwnPostgres {
        let mut initdb = as_postgres("initdb");
        initdb
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-sync"])
            .args(extra)
            .arg("-D")
            .arg(dir.join("data"));
        let server = OwnPostgres { dir, port, running: false, small_disk };
        run(initdb, "initdb");
        server.configure(&format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n",
            server.dir.display()
        ));
        server
    }

    /// A started server with the PEM files `cert` and `key`, refusing every connection without
    /// TLS, and `hba` for the ones with.
    pub fn serving_tls(cert: &str, key: &str, hba: &str) -> OwnPostgres {
        let mut pg = OwnPostgres::init();
        pg.install_file(cert, "server.crt");
        pg.install_file(key, "server.key");
        pg.configure("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'");
        pg.hba_first(&format!("hostnossl all all 0.0.0.0/0 reject\n{hba}"));
        pg.start();
        pg
    }

    /// A streaming replica of `primary` (pg_basebackup, not started).
    pub fn replica_of(primary: &OwnPostgres) -> OwnPostgres {
        let (dir, port) = new_place();
        let mut backup = as_postgres("pg_basebackup");
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-D",
            ])
            .arg(dir.join("data"));
        run(backup, "pg_basebackup");
        let replica = OwnPostgres { dir, port, running: false, small_disk: None };
        replica.configure(&format!(
            "port = {port}\nunix_socket_directories = '{}'\nhot_standby = on\n",
            replica.dir.display()
        ));
        replica
    }

    /// Appends `lines` to postgresql.conf (the last value of a setting wins).
    pub fn configure(&self, lines: &str) {
        self.append("postgresql.conf", lines);
    }

    /// Puts `lines` first in pg_hba.conf (the first matching line wins).
    pub fn hba_first(&self, lines: &str) {
        let path = self.dir.join("data/pg_hba.conf");
        let old = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{lines}\n{old}")).unwrap();
    }

    /// Copies `source` into the data directory as `name`, readable by the server only.
    pub fn install_file(&self, source: &str, name: &str) {
        let target = self.dir.join("data").join(name);
        std::fs::copy(source, &target).unwrap();
        hand_over(&target, "600");
    }

    fn append(&self, file: &str, lines: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(self.dir.join("data").join(file)).unwrap();
        writeln!(f, "{lines}").unwrap();
    }

    pub fn start(&mut self) {
        let mut ctl = as_postgres("pg_ctl");
        ctl.args(["-w", "-t", "60", "-D"])
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .arg("start");
        run(ctl, "pg_ctl start");
        self.running = true;
    }

    /// Stops it at once (as a crash would, for a replica gone away).
    pub fn stop(&mut self) {
        if self.running {
            let mut ctl = as_postgres("pg_ctl");
            ctl.args(["-w", "-t", "30", "-m", "immediate", "-D"]).arg(self.dir.join("data")).arg("stop");
            run(ctl, "pg_ctl stop");
            self.running = false;
        }
    }

    /// The server's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn url(&self, database: &str, query: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}{query}", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
        if let Some(data) = &self.small_disk {
            let _ = Command::new("umount").arg(data).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
