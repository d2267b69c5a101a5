//! What a database is opened with: sync policy, limits, block range and the rest.

use std::time::Duration;

/// When the WAL is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// After every commit.
    Always,
    /// Periodically, and at close.
    Interval(Duration),
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self::Interval(Duration::from_secs(1))
    }
}

/// Limits on what may be stored; exceeding one is a named error and a counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most series in the head (`None`: unlimited).
    pub max_series: Option<usize>,
    /// Most labels per series, `__name__` included.
    pub max_labels: usize,
    /// Longest label name in bytes.
    pub max_label_name_len: usize,
    /// Longest label value in bytes.
    pub max_label_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_series: None,
            max_labels: 128,
            max_label_name_len: 1024,
            max_label_value_len: 16 * 1024,
        }
    }
}

/// How a [`crate::Tsdb`] is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long samples are kept (default 15 d); whole blocks past it are deleted.
    pub retention: Duration,
    /// Most bytes blocks and WAL may use together (`None`: no size limit); the oldest
    /// blocks are deleted past it.
    pub retention_size: Option<u64>,
    /// WAL fsync policy.
    pub sync: SyncPolicy,
    /// Time range of a block cut from the head (default 2 h).
    pub block_range: Duration,
    /// How far behind the newest sample an out-of-order sample may be (default 10 min).
    pub ooo_window: Duration,
    /// How far ahead of the wall clock a sample may be (default 10 min); later ones are
    /// rejected with [`crate::Error::TooFarInFuture`], so one bad timestamp cannot move the
    /// head's time range (and with it every block cut) past the present.
    pub future_tolerance: Duration,
    /// Limits.
    pub limits: Limits,
    /// Largest WAL segment file (default 32 MiB).
    pub wal_segment_size: u64,
    /// How often the background thread cuts blocks, compacts and applies retention
    /// (`None`: only when [`crate::Tsdb::maintain`] is called).
    pub maintenance_interval: Option<Duration>,
    /// Most exemplars kept (default 100,000, as Prometheus's
    /// `storage.exemplars.max_exemplars`); the oldest go first; 0 keeps none.
    pub max_exemplars: usize,
    /// Bytes of decompressed block pages kept for queries (default 64 MiB; 0: none).
    /// Shared by every store in the process; the last one opened sets it.
    pub page_cache_bytes: usize,
    /// Retention per series, applied to blocks at each maintenance pass: the first rule
    /// matching a series sets how long it is kept; the rest follow `retention`.
    pub retention_rules: Vec<RetentionRule>,
    /// Downsampling tiers, finest first: each keeps per-window rollups of the data
    /// older than its `after`, made at maintenance from the next finer tier (or the
    /// samples), kept for its own `retention` whatever the raw retention.
    pub downsampling: Vec<Tier>,
}

/// One downsampling tier ([`Options::downsampling`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// Data older than this is rolled up into the tier.
    pub after: Duration,
    /// The tier's window (must divide `block_range`; each tier's divides the next's).
    pub resolution: Duration,
    /// How long the tier's windows are kept.
    pub retention: Duration,
}

/// How long the series a selector matches are kept.
#[derive(Debug, Clone)]
pub struct RetentionRule {
    /// The selector as written (shown by stats).
    pub selector: String,
    /// Its matchers (all must match).
    pub matchers: Vec<lookout_model::Matcher>,
    /// How long the series are kept.
    pub retention: Duration,
}

impl RetentionRule {
    /// Whether the series `ls` is this rule's.
    pub fn matches(&self, ls: &lookout_model::Labels) -> bool {
        self.matchers.iter().all(|m| m.matches_labels(ls))
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(15 * 24 * 3600),
            retention_size: None,
            sync: SyncPolicy::default(),
            block_range: Duration::from_secs(2 * 3600),
            ooo_window: Duration::from_secs(600),
            future_tolerance: Duration::from_secs(600),
            limits: Limits::default(),
            wal_segment_size: 32 << 20,
            maintenance_interval: Some(Duration::from_secs(60)),
            max_exemplars: 100_000,
            retention_rules: Vec::new(),
            downsampling: Vec::new(),
            page_cache_bytes: 64 << 20,
        }
    }
}
