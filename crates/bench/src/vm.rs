//! VictoriaMetrics as a third column of `lookout-bench queries` and `storage`: Debian's
//! `victoria-metrics` (single node) started on a free port over its own directory, the
//! generated dataset loaded through `/api/v1/import/prometheus` (the OpenMetrics file's
//! second timestamps rewritten as milliseconds), flushed, and merged on request so its
//! directory is measured as it settles. Queries go to its Prometheus-compatible API with
//! its result cache off, so every run computes its answer as Lookout and Prometheus do.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A running VictoriaMetrics, stopped (by PID) when dropped.
pub(crate) struct Vm {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// Its data directory.
    pub(crate) dir: PathBuf,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes of one import request.
const CHUNK: usize = 16 << 20;

impl Vm {
    /// Starts `exe` over `dir` and waits until it answers.
    pub(crate) fn start(exe: &str, dir: &Path) -> anyhow::Result<Self> {
        let port = crate::queries::free_port()?;
        let child = Command::new(exe)
            .arg(format!("-storageDataPath={}", dir.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .args([
                "-retentionPeriod=100y",
                "-search.disableCache",
                "-search.latencyOffset=0s",
                "-search.maxUniqueTimeseries=10000000",
                "-loggerLevel=ERROR",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {exe} (install Debian's victoria-metrics package)")
            })?;
        let vm = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
        };
        let client = client()?;
        crate::queries::wait_ready(&client, &vm.base, "victoria-metrics")?;
        Ok(vm)
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Loads the OpenMetrics dataset `file` and flushes it so queries see all of it;
    /// returns the time taken.
    pub(crate) fn import(&self, file: &Path) -> anyhow::Result<Duration> {
        let client = client()?;
        let started = Instant::now();
        let r = BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
        );
        let mut body = String::with_capacity(CHUNK + 4096);
        let send = |body: &mut String| -> anyhow::Result<()> {
            if body.is_empty() {
                return Ok(());
            }
            let r = client
                .post(format!("{}/api/v1/import/prometheus", self.base))
                .body(std::mem::take(body))
                .send()?;
            anyhow::ensure!(
                r.status().is_success(),
                "victoria-metrics refused the import: {}",
                r.status()
            );
            Ok(())
        };
        for line in r.lines() {
            let line = line?;
            if let Some(l) = prometheus_line(&line) {
                body.push_str(&l);
                body.push('\n');
                if body.len() >= CHUNK {
                    send(&mut body)?;
                }
            }
        }
        send(&mut body)?;
        let r = client
            .get(format!("{}/internal/force_flush", self.base))
            .send()?;
        anyhow::ensure!(r.status().is_success(), "force_flush: {}", r.status());
        Ok(started.elapsed())
    }

    /// Merges its parts (as it would in the background over time), waits until the
    /// directory stops changing, and returns its size in bytes.
    pub(crate) fn merged_size(&self) -> anyhow::Result<u64> {
        let r = client()?
            .get(format!("{}/internal/force_merge", self.base))
            .send()?;
        anyhow::ensure!(r.status().is_success(), "force_merge: {}", r.status());
        // The merge runs in the background: wait for the size to hold for 5 s.
        let mut last = crate::storage::dir_bytes(&self.dir, &|_| true);
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut steady = 0;
        while steady < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            let now = crate::storage::dir_bytes(&self.dir, &|_| true);
            steady = if now == last { steady + 1 } else { 0 };
            last = now;
        }
        Ok(last)
    }
}

fn client() -> anyhow::Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?)
}

/// One OpenMetrics sample line of the generated dataset (`name{labels} value s.mmm`) as
/// a Prometheus text line with a millisecond timestamp; `None` for comments and `# EOF`.
fn prometheus_line(line: &str) -> Option<String> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (rest, ts) = line.rsplit_once(' ')?;
    let (secs, millis) = ts.split_once('.').unwrap_or((ts, "0"));
    let ms = secs.parse::<i64>().ok()? * 1000 + format!("{millis:0<3}")[..3].parse::<i64>().ok()?;
    Some(format!("{} {ms}", rest.replacen("{}", "", 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_lines_get_millisecond_timestamps() {
        assert_eq!(
            prometheus_line(r#"node_load1{instance="h:9100"} 0.5 1700000000.250"#).as_deref(),
            Some(r#"node_load1{instance="h:9100"} 0.5 1700000000250"#)
        );
        assert_eq!(
            prometheus_line("up{} 1 1700000000.5").as_deref(),
            Some("up 1 1700000000500")
        );
        assert_eq!(prometheus_line("# TYPE up gauge"), None);
        assert_eq!(prometheus_line("# EOF"), None);
    }
}
