//! Status snapshots the parts of Lookout publish and the HTTP layer shows: the head's
//! cardinality, each collector's last run, each scrape target's state and the
//! PostgreSQL collectors' top statements. Plain data, so the server can show them
//! without knowing the store or the collectors that produce them.

use std::time::{Duration, SystemTime};

use crate::Labels;

/// The head's cardinality, as Prometheus's `/api/v1/status/tsdb` reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeadStatus {
    /// Series in the head.
    pub num_series: u64,
    /// Distinct label pairs.
    pub num_label_pairs: u64,
    /// Chunks in the head.
    pub chunk_count: u64,
    /// Earliest sample time (ms), if any.
    pub min_time: Option<i64>,
    /// Latest sample time (ms), if any.
    pub max_time: Option<i64>,
    /// Series per metric name, descending.
    pub series_by_metric: Vec<(String, u64)>,
    /// Distinct values per label name, descending.
    pub values_by_label: Vec<(String, u64)>,
    /// Bytes of label values per label name, descending.
    pub memory_by_label: Vec<(String, u64)>,
    /// Series per `name=value` pair, descending.
    pub series_by_pair: Vec<(String, u64)>,
}

/// What the last run of one collector did.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorStatus {
    /// The collector's name.
    pub name: String,
    /// Its run interval.
    pub interval: Duration,
    /// When the last run started.
    pub last_run: Option<SystemTime>,
    /// How long the last run took.
    pub last_duration: Option<Duration>,
    /// The last run's error, if it failed.
    pub last_error: Option<String>,
    /// Samples the last run stored.
    pub last_samples: usize,
    /// Runs so far.
    pub runs: u64,
    /// Failed runs so far.
    pub failures: u64,
    /// What the last run could not read although it worked (the collector's notes).
    pub notes: Vec<String>,
}

impl CollectorStatus {
    /// The status of a collector that has not run yet.
    pub fn new(name: impl Into<String>, interval: Duration) -> Self {
        Self {
            name: name.into(),
            interval,
            last_run: None,
            last_duration: None,
            last_error: None,
            last_samples: 0,
            runs: 0,
            failures: 0,
            notes: Vec::new(),
        }
    }
}

/// One target after relabeling.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Labels every scraped sample gets (`job`, `instance`, …).
    pub labels: Labels,
    /// Labels before relabeling (`__address__`, `__meta_*`, …).
    pub discovered: Labels,
    /// The URL scraped.
    pub url: String,
    /// Time between scrapes.
    pub interval: Duration,
    /// Longest one scrape may take.
    pub timeout: Duration,
}

/// The state of one target, for `/api/v1/targets`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    /// The job.
    pub job: String,
    /// The target.
    pub target: Target,
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: &'static str,
    /// Why the last scrape failed.
    pub last_error: String,
    /// When the last scrape started.
    pub last_scrape: Option<SystemTime>,
    /// How long it took.
    pub last_duration: Option<Duration>,
}

/// One statement of `pg_stat_statements`, with its text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Statement {
    /// The instance it was read from.
    pub instance: String,
    /// The database.
    pub datname: String,
    /// The role that ran it.
    pub user: String,
    /// pg_stat_statements' query id.
    pub queryid: String,
    /// The normalised query text.
    pub query: String,
    /// Times run.
    pub calls: f64,
    /// Total execution time in seconds.
    pub total_seconds: f64,
    /// Mean execution time in seconds.
    pub mean_seconds: f64,
    /// Rows returned or affected.
    pub rows: f64,
}
