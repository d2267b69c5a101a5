//! Real servers for tests: a PostgreSQL (run as the `postgres` user when the tests run as
//! root, since PostgreSQL refuses root) and a Redis, each on a free loopback port with its
//! data in a temporary directory, stopped by PID when dropped. The binaries come from
//! Debian's packages, which `scripts/test` installs.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An exporter process (Debian's packages), killed and reaped when dropped.
#[allow(dead_code)] // each test binary uses its own part of this module
pub struct Exporter(pub Child);

#[allow(dead_code)]
impl Exporter {
    /// Starts `program` with `args` and `env`, its stderr silenced; a missing program
    /// fails the test naming the package to install.
    pub fn start(program: &str, args: &[String], env: &[(&str, String)]) -> Self {
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} is not installed (run ./scripts/test): {e}"));
        Self(child)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The directory of PostgreSQL's server binaries (the newest installed version), or
/// `LOOKOUT_PG_BIN`.
fn pg_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LOOKOUT_PG_BIN") {
        return PathBuf::from(p);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (run ./scripts/test, which installs it)")
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().expect("no PostgreSQL version installed").1
}

/// Runs `cmd` as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Waits (at most 30 s, polling every 50 ms) until `ready` holds; panics naming `what`.
pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temporary directory the postgres user can reach.
fn postgres_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    dir
}

/// The value of the first metric named `name` with `labels` among `out`.
#[allow(dead_code)]
pub fn value_in(
    out: &[lookout_collect::Metric],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    out.iter()
        .find(|m| {
            m.labels.metric_name() == Some(name)
                && labels.iter().all(|(k, v)| m.labels.get(k) == Some(*v))
        })
        .map(|m| m.value)
}

/// A PostgreSQL server with pg_stat_statements preloaded.
pub struct PgServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    pid: Option<i32>,
}

impl PgServer {
    /// Creates a cluster (trust authentication on loopback) and starts it.
    pub fn start() -> Self {
        let bin = pg_bin();
        let dir = postgres_dir("lookout-pg-");
        let data = dir.path().join("data");
        let st = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running initdb");
        assert!(st.success(), "initdb failed");
        Self::started(dir, bin)
    }

    /// A streaming standby of `primary`, copied with `pg_basebackup` through a new
    /// physical replication slot named `slot`, started on a port of its own.
    #[allow(dead_code)] // each test binary uses its own part of this module
    pub fn standby_of(primary: &PgServer, slot: &str) -> Self {
        let bin = pg_bin();
        let dir = postgres_dir("lookout-pg-standby-");
        let out = as_postgres(&bin.join("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-R", "-X", "stream", "-C", "-S", slot, "--no-sync"])
            .output()
            .expect("running pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::started(dir, bin)
    }

    /// Starts the cluster in `dir` on a free port.
    fn started(dir: tempfile::TempDir, bin: PathBuf) -> Self {
        let mut s = Self {
            port: free_port(),
            dir,
            bin,
            pid: None,
        };
        s.start_again();
        s
    }

    /// Starts the (stopped) server again on the same port and data.
    pub fn start_again(&mut self) {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements -c fsync=off -c pg_stat_statements.track=all",
            self.port,
            self.dir.path().display()
        );
        let st = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .status()
            .expect("running pg_ctl");
        assert!(
            st.success(),
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
        let pid: i32 = std::fs::read_to_string(data.join("postmaster.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        self.pid = Some(pid);
        let port = self.port;
        wait_for("PostgreSQL", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops the server (fast shutdown, by PID) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            let proc = PathBuf::from(format!("/proc/{pid}"));
            wait_for("PostgreSQL shutdown", || !proc.exists());
        }
    }

    /// A URL DSN for database `db` as the superuser.
    pub fn dsn(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Runs SQL with psql; panics with its output on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Adds `line` to the server's `postgresql.conf` and reloads it.
    pub fn configure(&self, line: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("data/postgresql.conf"))
            .expect("postgresql.conf");
        writeln!(f, "{line}").expect("writing postgresql.conf");
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    /// Starts psql running `sql` and returns at once; the caller waits for (or kills)
    /// the child.
    pub fn psql_background(&self, db: &str, sql: &str) -> std::process::Child {
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-At", "-q"])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("running psql")
    }

    /// Runs pgbench with `args` against database `db`.
    pub fn pgbench(&self, db: &str, args: &[&str]) {
        let out = Command::new("pgbench")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
                &self.port.to_string(),
            ])
            .args(args)
            .arg(db)
            .output()
            .expect("running pgbench");
        assert!(
            out.status.success(),
            "pgbench {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis server without persistence.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on a free port.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lookout-redis-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (run ./scripts/test, which installs it)");
        wait_for("Redis", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs redis-benchmark with `args`.
    pub fn benchmark(&self, args: &[&str]) {
        let st = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("running redis-benchmark");
        assert!(st.success(), "redis-benchmark failed");
    }

    /// Runs one redis-cli command.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("running redis-cli");
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
