//! The process and runtime collectors, read when scraped:
//!
//! | name | type |
//! | --- | --- |
//! | `process_cpu_seconds_total` | counter |
//! | `process_resident_memory_bytes`, `process_virtual_memory_bytes` | gauge |
//! | `process_open_fds`, `process_max_fds`, `process_threads` | gauge |
//! | `process_start_time_seconds` | gauge |
//! | `tokio_workers`, `tokio_alive_tasks`, `tokio_global_queue_depth` | gauge |
//! | `tokio_worker_busy_seconds_total` | counter |
//!
//! The process figures are Prometheus's client libraries' own names, so the dashboards
//! made for them work; they are read from `/proc/self` (Linux).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The process's figures (Prometheus's `process_*` names).
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc/self` says.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProcessFigures {
    pub(crate) cpu_seconds: f64,
    pub(crate) resident_bytes: f64,
    pub(crate) virtual_bytes: f64,
    pub(crate) threads: f64,
    pub(crate) start_time_seconds: f64,
    pub(crate) open_fds: f64,
    pub(crate) max_fds: f64,
}

/// Reads the process's figures; `None` off Linux or when `/proc` is not mounted.
pub(crate) fn read_process() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let ticks = procfs::ticks_per_second() as f64;
    let page = rustix::param::page_size() as f64;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(3)
                        .and_then(|v| v.parse::<f64>().ok())
                })
        })
        .unwrap_or(0.0);
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
    Some(ProcessFigures {
        cpu_seconds: (num(11) + num(12)) / ticks,
        threads: num(17),
        start_time_seconds: boot + num(19) / ticks,
        virtual_bytes: num(20),
        resident_bytes: num(21) * page,
        open_fds,
        max_fds,
    })
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let Some(p) = read_process() else {
            return Ok(());
        };
        counter(
            &mut e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        )?;
        gauge(
            &mut e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_bytes,
        )?;
        gauge(
            &mut e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_bytes,
        )?;
        gauge(
            &mut e,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        )?;
        gauge(
            &mut e,
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds,
        )?;
        gauge(
            &mut e,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds,
        )?;
        gauge(
            &mut e,
            "process_threads",
            "Number of OS threads in the process.",
            p.threads,
        )
    }
}

/// A tokio runtime's figures, where the runtime exposes them.
#[derive(Debug)]
pub struct RuntimeCollector {
    handle: tokio::runtime::Handle,
}

impl RuntimeCollector {
    /// The figures of the runtime `handle` belongs to.
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        Self { handle }
    }
}

impl Collector for RuntimeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = self.handle.metrics();
        let workers = m.num_workers();
        let busy: f64 = (0..workers)
            .map(|w| m.worker_total_busy_duration(w).as_secs_f64())
            .sum();
        gauge(
            &mut e,
            "tokio_workers",
            "Worker threads of the tokio runtime.",
            workers as f64,
        )?;
        gauge(
            &mut e,
            "tokio_alive_tasks",
            "Tasks alive in the tokio runtime.",
            m.num_alive_tasks() as f64,
        )?;
        gauge(
            &mut e,
            "tokio_global_queue_depth",
            "Tasks waiting in the runtime's global queue.",
            m.global_queue_depth() as f64,
        )?;
        counter(
            &mut e,
            "tokio_worker_busy_seconds",
            "Time the runtime's workers spent busy, summed over workers (rate ÷ tokio_workers is the busy ratio).",
            busy,
        )
    }
}
