//! Collectors: where samples come from. Each [`Collector`] reads one source (this host's
//! /proc and /sys, this process, later PostgreSQL, Redis and scrape targets) and returns
//! samples named as the matching Prometheus exporter names them, so existing dashboards
//! and rules find them. The [`Scheduler`] runs every collector on its own task with its
//! own timeout and writes results only through [`lookout_storage::Appendable`].
//!
//! ```
//! use lookout_collect::{Collector, HostCollector};
//!
//! let mut out = Vec::new();
//! HostCollector::default().collect(&mut out).unwrap();
//! assert!(out.iter().any(|m| m.labels.metric_name() == Some("node_load1")));
//! ```

mod host;
mod node_more;
mod own;
mod pg_advisor;
mod pg_statements;
mod pipeline;
mod postgres;
mod process;
mod redis_diag;
mod redis_server;
mod scheduler;
pub mod scrape;
mod top;

pub use host::HostCollector;
pub use own::{OwnMetrics, RegistryCell};
pub use pipeline::RunMetrics;
pub use postgres::{
    LockNode, PgAdvice, PgAdvisorReport, PgSession, PgSessions, PostgresBoard, PostgresCollector,
    PostgresTarget, Statement,
};
pub use process::{ProcessCollector, ProcessGroupCollector, SelfMetrics};
pub use redis_server::{BigKeysOptions, RedisBoard, RedisCollector, RedisTarget};
pub use scheduler::{ChangeHook, CollectorStatus, Scheduler, SchedulerOptions, StatusBoard};
pub use top::{TopProcess, top_processes};

use std::future::Future;
use std::pin::Pin;

use lookout_model::Labels;

/// A sample a collector produced; the scheduler adds the timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Full label set including `__name__`.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

impl Metric {
    /// Builds a metric from a name and label pairs.
    pub fn new(name: &str, labels: &[(&str, &str)], value: f64) -> Self {
        Self {
            labels: Labels::from_pairs(
                std::iter::once((lookout_model::METRIC_NAME_LABEL, name))
                    .chain(labels.iter().copied()),
            ),
            value,
        }
    }
}

/// Pushes one metric per `(name, value)`, all with the same labels.
pub(crate) fn push_family<const N: usize>(
    out: &mut Vec<Metric>,
    labels: &[(&str, &str)],
    values: [(&str, f64); N],
) {
    out.extend(values.map(|(name, v)| Metric::new(name, labels, v)));
}

/// Type and help of a metric family a built-in collector writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyMeta {
    /// Metric name as stored (counters with `_total`).
    pub name: &'static str,
    /// Declared type.
    pub kind: lookout_model::MetricType,
    /// Help text, as the matching exporter words it.
    pub help: &'static str,
}

/// Metadata of every family the host and process collectors write.
pub fn builtin_metadata() -> Vec<FamilyMeta> {
    use lookout_model::MetricType::{Counter, Gauge};
    let f = |name, kind, help| FamilyMeta { name, kind, help };
    vec![
        f(
            "node_cpu_seconds_total",
            Counter,
            "Seconds the CPUs spent in each mode.",
        ),
        f(
            "node_memory_MemTotal_bytes",
            Gauge,
            "Memory information field MemTotal_bytes.",
        ),
        f(
            "node_memory_MemAvailable_bytes",
            Gauge,
            "Memory information field MemAvailable_bytes.",
        ),
        f(
            "node_memory_MemFree_bytes",
            Gauge,
            "Memory information field MemFree_bytes.",
        ),
        f(
            "node_memory_Buffers_bytes",
            Gauge,
            "Memory information field Buffers_bytes.",
        ),
        f(
            "node_memory_Cached_bytes",
            Gauge,
            "Memory information field Cached_bytes.",
        ),
        f(
            "node_memory_SwapTotal_bytes",
            Gauge,
            "Memory information field SwapTotal_bytes.",
        ),
        f(
            "node_memory_SwapFree_bytes",
            Gauge,
            "Memory information field SwapFree_bytes.",
        ),
        f("node_load1", Gauge, "1m load average."),
        f("node_load5", Gauge, "5m load average."),
        f("node_load15", Gauge, "15m load average."),
        f(
            "node_filesystem_size_bytes",
            Gauge,
            "Filesystem size in bytes.",
        ),
        f(
            "node_filesystem_free_bytes",
            Gauge,
            "Filesystem free space in bytes.",
        ),
        f(
            "node_filesystem_avail_bytes",
            Gauge,
            "Filesystem space available to non-root users in bytes.",
        ),
        f(
            "node_filesystem_files",
            Gauge,
            "Filesystem total file nodes.",
        ),
        f(
            "node_filesystem_files_free",
            Gauge,
            "Filesystem total free file nodes.",
        ),
        f(
            "node_filesystem_readonly",
            Gauge,
            "Filesystem read-only status.",
        ),
        f(
            "node_network_receive_bytes_total",
            Counter,
            "Network device statistic receive_bytes.",
        ),
        f(
            "node_network_receive_packets_total",
            Counter,
            "Network device statistic receive_packets.",
        ),
        f(
            "node_network_receive_errs_total",
            Counter,
            "Network device statistic receive_errs.",
        ),
        f(
            "node_network_receive_drop_total",
            Counter,
            "Network device statistic receive_drop.",
        ),
        f(
            "node_network_transmit_bytes_total",
            Counter,
            "Network device statistic transmit_bytes.",
        ),
        f(
            "node_network_transmit_packets_total",
            Counter,
            "Network device statistic transmit_packets.",
        ),
        f(
            "node_network_transmit_errs_total",
            Counter,
            "Network device statistic transmit_errs.",
        ),
        f(
            "node_network_transmit_drop_total",
            Counter,
            "Network device statistic transmit_drop.",
        ),
        f(
            "node_disk_read_bytes_total",
            Counter,
            "The total number of bytes read successfully.",
        ),
        f(
            "node_disk_written_bytes_total",
            Counter,
            "The total number of bytes written successfully.",
        ),
        f(
            "node_disk_reads_completed_total",
            Counter,
            "The total number of reads completed successfully.",
        ),
        f(
            "node_disk_writes_completed_total",
            Counter,
            "The total number of writes completed successfully.",
        ),
        f(
            "node_disk_io_time_seconds_total",
            Counter,
            "Total seconds spent doing I/Os.",
        ),
        f(
            "node_boot_time_seconds",
            Gauge,
            "Node boot time, in unixtime.",
        ),
        f(
            "node_time_seconds",
            Gauge,
            "System time in seconds since epoch (1970).",
        ),
        f(
            "node_context_switches_total",
            Counter,
            "Total number of context switches.",
        ),
        f("node_forks_total", Counter, "Total number of forks."),
        f(
            "node_procs_running",
            Gauge,
            "Number of processes in runnable state.",
        ),
        f(
            "node_procs_blocked",
            Gauge,
            "Number of processes blocked waiting for I/O to complete.",
        ),
        f(
            "process_cpu_seconds_total",
            Counter,
            "Total user and system CPU time spent in seconds.",
        ),
        f(
            "process_resident_memory_bytes",
            Gauge,
            "Resident memory size in bytes.",
        ),
        f(
            "process_virtual_memory_bytes",
            Gauge,
            "Virtual memory size in bytes.",
        ),
        f(
            "process_start_time_seconds",
            Gauge,
            "Start time of the process since unix epoch in seconds.",
        ),
        f(
            "process_open_fds",
            Gauge,
            "Number of open file descriptors.",
        ),
        f(
            "process_max_fds",
            Gauge,
            "Maximum number of open file descriptors.",
        ),
        f(
            "process_threads",
            Gauge,
            "Number of OS threads in the process.",
        ),
        f(
            "up",
            Gauge,
            "1 if the collector's last run succeeded, 0 otherwise.",
        ),
    ]
}

/// A collector failed to read its source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file under /proc or /sys failed.
    #[error("reading {what}: {message}")]
    Read {
        /// What was being read.
        what: &'static str,
        /// The underlying error.
        message: String,
    },
    /// A server (PostgreSQL, Redis, a scrape target) could not be reached or answered
    /// with an error.
    #[error("{server}: {message}")]
    Server {
        /// Which server (`postgres main`, `redis cache`).
        server: String,
        /// What went wrong.
        message: String,
    },
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The future an [`AsyncCollector`] returns.
pub type CollectFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// A source read over the network (PostgreSQL, Redis, scrape targets): `collect` is async
/// and runs on the runtime under the scheduler's timeout. Like [`Collector::collect`], it
/// appends what it could read and returns an error naming what failed.
pub trait AsyncCollector: Send + Sync + 'static {
    /// A short stable name (`postgres/main`), used in status, health and self-metrics.
    fn name(&self) -> &str;
    /// Reads the source once.
    fn collect<'a>(&'a self, out: &'a mut Vec<Metric>) -> CollectFuture<'a>;
    /// What the last run could not read although the run as a whole worked (a missing
    /// extension or privilege): shown by health checks as degraded.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Notified by the collector when it learns its source failed between runs (the
    /// connection it holds dropped): the scheduler then runs it at once instead of at
    /// the next tick, so `*_up 0` is written within moments of the fault.
    fn wake(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

/// A source of samples. `collect` is blocking and is run off the async runtime; it appends
/// every sample it could read to `out` and returns an error naming what failed. Samples
/// appended before an error are still stored.
pub trait Collector: Send + Sync + 'static {
    /// A short stable name (`host`, `process`), used in status, health and self-metrics.
    fn name(&self) -> &str;
    /// Reads the source once.
    fn collect(&self, out: &mut Vec<Metric>) -> Result<()>;
}
