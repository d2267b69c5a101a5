//! Metric metadata: the type a metric family declares.

use std::fmt;

/// The type of a metric family, as in the Prometheus exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    /// A monotonically increasing value.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A classic histogram (`_bucket`, `_sum`, `_count`).
    Histogram,
    /// A summary (quantiles, `_sum`, `_count`).
    Summary,
    /// An info metric (value 1, labels carry the information).
    Info,
    /// A state set.
    StateSet,
    /// Type not declared.
    #[default]
    Unknown,
}

impl MetricType {
    /// The lower-case name used in exposition text and the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
            Self::Info => "info",
            Self::StateSet => "stateset",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
