//! Process collectors, from /proc: [`ProcessCollector`] gives the `process_*` metrics of
//! the Prometheus client libraries for one process (by default Lookout itself);
//! [`ProcessGroupCollector`] gives process-exporter's `namedprocess_namegroup_*` metrics
//! for every process with a configured name (`postgres`, `redis-server`), summed per name.

use procfs::process::Process;

use crate::{Collector, Error, Metric, Result, push_family};

/// Reads `process_*` metrics of one process.
#[derive(Debug)]
pub struct ProcessCollector {
    pid: Option<i32>,
}

impl ProcessCollector {
    /// Collects this process.
    pub fn myself() -> Self {
        Self { pid: None }
    }

    /// Collects the process with this pid.
    pub fn pid(pid: i32) -> Self {
        Self { pid: Some(pid) }
    }

    /// Reads the figures once.
    pub fn read(&self) -> Result<Vec<Metric>> {
        let mut out = Vec::new();
        self.collect(&mut out)?;
        Ok(out)
    }
}

fn err(e: procfs::ProcError) -> Error {
    Error::Read {
        what: "/proc/<pid>",
        message: e.to_string(),
    }
}

impl Collector for ProcessCollector {
    fn name(&self) -> &str {
        "process"
    }

    fn collect(&self, out: &mut Vec<Metric>) -> Result<()> {
        let p = match self.pid {
            None => Process::myself(),
            Some(pid) => Process::new(pid),
        }
        .map_err(err)?;
        let stat = p.stat().map_err(err)?;
        let tps = procfs::ticks_per_second() as f64;
        let boot = procfs::boot_time_secs().map_err(err)? as f64;
        push_family(
            out,
            &[],
            [
                (
                    "process_cpu_seconds_total",
                    (stat.utime + stat.stime) as f64 / tps,
                ),
                (
                    "process_resident_memory_bytes",
                    (stat.rss * procfs::page_size()) as f64,
                ),
                ("process_virtual_memory_bytes", stat.vsize as f64),
                (
                    "process_start_time_seconds",
                    boot + stat.starttime as f64 / tps,
                ),
                ("process_threads", stat.num_threads as f64),
            ],
        );
        if let Ok(n) = p.fd_count() {
            out.push(Metric::new("process_open_fds", &[], n as f64));
        }
        if let Ok(l) = p.limits()
            && let procfs::process::LimitValue::Value(v) = l.max_open_files.soft_limit
        {
            out.push(Metric::new("process_max_fds", &[], v as f64));
        }
        if let Ok(io) = p.io() {
            push_family(
                out,
                &[],
                [
                    ("process_io_read_bytes_total", io.read_bytes as f64),
                    ("process_io_write_bytes_total", io.write_bytes as f64),
                ],
            );
        }
        Ok(())
    }
}

/// process-exporter's `namedprocess_namegroup_*` metrics for processes by name: a
/// process belongs to a group when its command name (`comm`) or the file name of its
/// executable equals the group's name. CPU and I/O are the sums over the group's current
/// processes, so they drop when a process exits (process-exporter keeps them monotonic by
/// tracking exits; rate() treats the drop as a reset).
#[derive(Debug)]
pub struct ProcessGroupCollector {
    names: Vec<String>,
}

impl ProcessGroupCollector {
    /// A collector for these process names.
    pub fn new(names: Vec<String>) -> Self {
        Self { names }
    }
}

#[derive(Default)]
struct Group {
    procs: f64,
    user: f64,
    system: f64,
    resident: f64,
    virt: f64,
    fds: f64,
    threads: f64,
    oldest: Option<f64>,
    read: f64,
    write: f64,
}

impl Collector for ProcessGroupCollector {
    fn name(&self) -> &str {
        "processes"
    }

    fn collect(&self, out: &mut Vec<Metric>) -> Result<()> {
        let tps = procfs::ticks_per_second() as f64;
        let boot = procfs::boot_time_secs().map_err(err)? as f64;
        let page = procfs::page_size() as f64;
        let mut groups: Vec<Group> = self.names.iter().map(|_| Group::default()).collect();
        for p in procfs::process::all_processes().map_err(err)?.flatten() {
            // A process may exit while it is read: skip it.
            let Ok(stat) = p.stat() else { continue };
            let exe = p
                .exe()
                .ok()
                .and_then(|e| e.file_name().map(|f| f.to_string_lossy().into_owned()));
            let Some(i) = self
                .names
                .iter()
                .position(|n| *n == stat.comm || exe.as_deref() == Some(n.as_str()))
            else {
                continue;
            };
            let g = &mut groups[i];
            g.procs += 1.0;
            g.user += stat.utime as f64 / tps;
            g.system += stat.stime as f64 / tps;
            g.resident += stat.rss as f64 * page;
            g.virt += stat.vsize as f64;
            g.threads += stat.num_threads as f64;
            let start = boot + stat.starttime as f64 / tps;
            g.oldest = Some(g.oldest.map_or(start, |o: f64| o.min(start)));
            if let Ok(n) = p.fd_count() {
                g.fds += n as f64;
            }
            if let Ok(io) = p.io() {
                g.read += io.read_bytes as f64;
                g.write += io.write_bytes as f64;
            }
        }
        for (name, g) in self.names.iter().zip(groups) {
            let l = [("groupname", name.as_str())];
            push_family(
                out,
                &l,
                [
                    ("namedprocess_namegroup_num_procs", g.procs),
                    ("namedprocess_namegroup_open_filedesc", g.fds),
                    ("namedprocess_namegroup_num_threads", g.threads),
                    ("namedprocess_namegroup_read_bytes_total", g.read),
                    ("namedprocess_namegroup_write_bytes_total", g.write),
                ],
            );
            if let Some(t) = g.oldest {
                out.push(Metric::new(
                    "namedprocess_namegroup_oldest_start_time_seconds",
                    &l,
                    t,
                ));
            }
            for (mode, v) in [("user", g.user), ("system", g.system)] {
                out.push(Metric::new(
                    "namedprocess_namegroup_cpu_seconds_total",
                    &[("groupname", name), ("mode", mode)],
                    v,
                ));
            }
            for (memtype, v) in [("resident", g.resident), ("virtual", g.virt)] {
                out.push(Metric::new(
                    "namedprocess_namegroup_memory_bytes",
                    &[("groupname", name), ("memtype", memtype)],
                    v,
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn reads_own_process() {
        let out = ProcessCollector::myself().read().unwrap();
        let get = |n: &str| {
            out.iter()
                .find(|m| m.labels.metric_name() == Some(n))
                .map(|m| m.value)
        };
        assert!(get("process_resident_memory_bytes").unwrap() > 0.0);
        assert!(get("process_open_fds").unwrap() >= 3.0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = get("process_start_time_seconds").unwrap();
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "start {start} now {now}"
        );
    }

    #[test]
    fn groups_processes_by_name() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // Right after exec the kernel may still report 0 resident pages (RSS counters
        // are synced lazily): wait until the child's own figure shows, so the
        // assertion below reads a settled process (this raced in CI-like runs).
        let me = procfs::process::Process::new(child.id() as i32).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while me.stat().map_or(0, |s| s.rss) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let c = ProcessGroupCollector::new(vec!["sleep".into(), "no-such-process".into()]);
        let mut out = Vec::new();
        c.collect(&mut out).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let get = |name: &str, l: &[(&str, &str)]| {
            out.iter()
                .find(|m| m.labels == Metric::new(name, l, 0.0).labels)
                .map(|m| m.value)
        };
        assert!(
            get(
                "namedprocess_namegroup_num_procs",
                &[("groupname", "sleep")]
            )
            .unwrap()
                >= 1.0
        );
        assert!(
            get(
                "namedprocess_namegroup_memory_bytes",
                &[("groupname", "sleep"), ("memtype", "resident")]
            )
            .unwrap()
                > 0.0
        );
        assert_eq!(
            get(
                "namedprocess_namegroup_num_procs",
                &[("groupname", "no-such-process")]
            ),
            Some(0.0)
        );
    }
}

/// Lookout's own `process_*` metrics for its `/metrics` endpoint, read on every scrape.
#[derive(Debug, Default)]
pub struct SelfMetrics;

impl prometheus_client::collector::Collector for SelfMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let Ok(metrics) = ProcessCollector::myself().read() else {
            return Ok(());
        };
        for m in metrics {
            let Some(full) = m.labels.metric_name() else {
                continue;
            };
            let (name, kind) = match full.strip_suffix("_total") {
                Some(base) => (base, MetricType::Counter),
                None => (full, MetricType::Gauge),
            };
            let help = match name {
                "process_cpu_seconds" => "Total user and system CPU time spent in seconds.",
                "process_resident_memory_bytes" => "Resident memory size in bytes.",
                "process_virtual_memory_bytes" => "Virtual memory size in bytes.",
                "process_start_time_seconds" => {
                    "Start time of the process since unix epoch in seconds."
                }
                "process_open_fds" => "Number of open file descriptors.",
                "process_max_fds" => "Maximum number of open file descriptors.",
                "process_threads" => "Number of OS threads in the process.",
                _ => "Process statistic.",
            };
            let enc = encoder.encode_descriptor(name, help, None, kind)?;
            match kind {
                MetricType::Counter => ConstCounter::new(m.value).encode(enc)?,
                _ => ConstGauge::new(m.value).encode(enc)?,
            }
        }
        Ok(())
    }
}
