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
mod process;
mod scheduler;

pub use host::HostCollector;
pub use process::{ProcessCollector, SelfMetrics};
pub use scheduler::{CollectorStatus, Scheduler, SchedulerOptions, StatusBoard};

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
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A source of samples. `collect` is blocking and is run off the async runtime; it appends
/// every sample it could read to `out` and returns an error naming what failed. Samples
/// appended before an error are still stored.
pub trait Collector: Send + Sync + 'static {
    /// A short stable name (`host`, `process`), used in status, health and self-metrics.
    fn name(&self) -> &str;
    /// Reads the source once.
    fn collect(&self, out: &mut Vec<Metric>) -> Result<()>;
}
