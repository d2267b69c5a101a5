//! Shared by the end-to-end tests: the real `lookout` binary on port 0 with a temporary
//! data directory, talked to over HTTP as a user would.

#![allow(dead_code, unreachable_pub)]

pub mod browser;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// A running `lookout serve`; killed on drop if the test did not stop it.
pub struct Lookout {
    pub child: Child,
    pub base: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lookout")
}

/// Runs a one-shot `lookout` command to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// A temp path as a command-line argument (temp dirs are UTF-8 here).
pub fn utf8(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

pub fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("lookout.yml");
    std::fs::write(&p, body).unwrap();
    p
}

impl Lookout {
    pub fn start(data: &Path, config: &Path) -> Self {
        Self::start_with(data, config, &[])
    }

    pub fn start_with(data: &Path, config: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--config")
            .arg(config)
            .args(extra)
            .env("LOOKOUT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lookout");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line
                    .find("listening on http://")
                    .or_else(|| line.find("listening on https://"))
                {
                    let addr: String = line[i + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_string();
                    let _ = tx.send(addr);
                }
                log2.lock().unwrap().push(line);
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no 'listening on' line; log: {:?}", log.lock().unwrap()));
        Self { child, base, log }
    }

    /// POSTs `body` with `content_type`; the status and the body of the answer.
    pub fn post(&self, path: &str, content_type: &str, body: impl Into<String>) -> (u16, String) {
        let r = http()
            .post(format!("{}{}", self.base, path))
            .header("content-type", content_type)
            .body(body.into())
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap_or_default())
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let r = http().get(format!("{}{}", self.base, path)).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// The check named `name` in `/health` (its `status`, `message`, `details`).
    pub fn health_check(&self, name: &str) -> Value {
        let (_, body) = self.get("/health");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no check {name} in {v}"))
            .clone()
    }

    pub fn query(&self, q: &str) -> Vec<Value> {
        let url = format!("{}/api/v1/query", self.base);
        let r = http().get(url).query(&[("query", q)]).send().unwrap();
        let v: Value = r.json().unwrap();
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().unwrap().clone()
    }

    /// Polls until `q` returns at least one sample.
    pub fn wait_for(&self, q: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.query(q);
            if !r.is_empty() {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{q} stayed empty; log: {:?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sends SIGTERM and waits for the exit, failing after five seconds.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                if !st.success() {
                    // Say why before the caller's assertion fails: the last log lines.
                    std::thread::sleep(Duration::from_millis(100));
                    let log = self.log.lock().unwrap();
                    let tail = &log[log.len().saturating_sub(20)..];
                    eprintln!(
                        "lookout exited with {st}; last log lines:\n{}",
                        tail.join("\n")
                    );
                }
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "lookout did not exit within 5s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Lookout {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const FAST: &str = "global:\n  scrape_interval: 1s\n";

/// Seconds since the Unix epoch, as the HTTP API takes timestamps.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub fn value_of(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

/// An HTTP client (rustls needs its provider installed first).
pub fn http() -> reqwest::blocking::Client {
    lookout_collect::scrape::install_tls_provider();
    reqwest::blocking::Client::new()
}

/// Polls `f` every 200 ms until it holds, failing after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A tmpfs of a few MiB, unmounted on drop. Needs root (CI and dev sessions run as root);
/// without it the test fails saying so rather than skipping.
pub struct TinyFs(pub std::path::PathBuf);

impl TinyFs {
    pub fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_path_buf())
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

impl TinyFs {
    /// Fills the filesystem with a file (`filler`, in it) until writes fail; returns its
    /// path, to remove when space should come back.
    pub fn fill(&self) -> std::path::PathBuf {
        let filler = self.0.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 << 10];
        while std::io::Write::write_all(&mut f, &block).is_ok() {}
        filler
    }
}

/// The WAL segment files of a data directory, oldest first.
pub fn wal_segments(data: &Path) -> Vec<std::path::PathBuf> {
    let mut segs: Vec<_> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    segs.sort();
    segs
}

/// Writes `alertmanager.yml` in `dir`: one receiver that sends nowhere.
pub fn write_silent_alertmanager(dir: &Path) {
    std::fs::write(
        dir.join("alertmanager.yml"),
        "route: { receiver: nobody }\nreceivers: [ { name: nobody } ]\n",
    )
    .unwrap();
}

/// Debian's Prometheus on a free port with the configuration (YAML) `config` makes for
/// that port, its data in `dir/prom`, stopped by PID when dropped.
pub struct Prometheus {
    child: Child,
    pub port: u16,
}

impl Prometheus {
    pub fn start(dir: &Path, config: impl FnOnce(u16) -> String) -> Self {
        Self::start_with(dir, &[], config)
    }

    /// Started with these extra flags too (`--enable-feature=…`, receivers).
    pub fn start_with(dir: &Path, flags: &[&str], config: impl FnOnce(u16) -> String) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config(port)).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's prometheus (./scripts/test installs it)");
        Self { child, port }
    }

    /// An instant query's result (empty until Prometheus answers).
    pub fn query(&self, q: &str) -> Vec<Value> {
        http()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", q)])
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python with the OpenTelemetry SDK: `LOOKOUT_TEST_PYTHON` (set by `scripts/test`,
/// which installs it into a virtualenv; then it must work), else `python3` if it has it.
pub fn otel_python() -> Option<String> {
    let (py, required) = match std::env::var("LOOKOUT_TEST_PYTHON") {
        Ok(p) => (p, true),
        Err(_) => ("python3".to_string(), false),
    };
    let ok = std::process::Command::new(&py)
        .args([
            "-c",
            "import opentelemetry.sdk.metrics, opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http.trace_exporter",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    assert!(!required, "{py} cannot import the OpenTelemetry SDK");
    eprintln!("SKIPPED: no Python with the OpenTelemetry SDK (./scripts/test installs one)");
    None
}
