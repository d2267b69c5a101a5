//! Page cache and storage metrics:
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `storage_page_reads_total`, `storage_page_writes_total` | counter | |
//! | `storage_cache_hits_total`, `storage_cache_misses_total`, `storage_cache_evictions_total` | counter | |
//! | `storage_cache_dirty_pages` | gauge | |
//! | `storage_buffer_pool_bytes`, `storage_buffer_pool_used_bytes` | gauge | |
//! | `storage_flushes_total`, `storage_fsyncs_total` | counter | |
//! | `storage_flush_duration_seconds`, `storage_fsync_duration_seconds` | histogram | |
//! | `storage_disk_io_duration_seconds` | histogram | `op` (`read`, `write`) |
//! | `storage_compactions_total`, `storage_compaction_bytes_total` | counter | |
//! | `storage_compaction_duration_seconds` | histogram | |
//! | `storage_wal_appends_total`, `storage_wal_bytes_total` | counter | |
//! | `storage_wal_append_size_bytes` | histogram | |
//!
//! The latency methods take `Option<f64>` as well as `f64`: `None` (a [`Stopwatch`] not
//! in the sample, [`crate::Options::time_one_in`]) counts the event without observing a
//! latency. `storage_wal_append_size_bytes` holds the same sample of the appends (every
//! one is counted and its bytes added in the counters).

use crate::Counter;
use crate::Gauge;
use crate::Histogram;

use super::{LatencyHistogram, handle, latency_family, observe_latency};
use crate::{LATENCY_BUCKETS, Metrics, Stopwatch, Timing};

/// The page cache and storage metric set. The handles an engine touches on every
/// operation come first, in declaration order (`repr(C)`), so they share two cache lines.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct StorageMetrics {
    hits: Counter,
    misses: Counter,
    page_reads: Counter,
    timing: Timing,
    evictions: Counter,
    page_writes: Counter,
    wal_appends: Counter,
    wal_bytes: Counter,
    dirty: Gauge,
    io_read: LatencyHistogram,
    io_write: LatencyHistogram,
    wal_size: Histogram,
    pool: Gauge,
    pool_used: Gauge,
    flushes: Counter,
    flush_seconds: Histogram,
    fsyncs: Counter,
    fsync_seconds: Histogram,
    compactions: Counter,
    compaction_bytes: Counter,
    compaction_seconds: Histogram,
}

impl StorageMetrics {
    pub(crate) fn new(m: &Metrics) -> Self {
        let io = m.shared(
            "storage_disk_io_duration_seconds",
            "Disk I/O latency, by operation (read, write)",
            latency_family,
        );
        let wal_size = m.shared(
            "storage_wal_append_size_bytes",
            "Size of WAL appends",
            || crate::histogram(&crate::SIZE_BUCKETS),
        );
        Self {
            page_reads: m.counter("storage_page_reads", "Pages read from disk"),
            page_writes: m.counter("storage_page_writes", "Pages written to disk"),
            hits: m.counter(
                "storage_cache_hits",
                "Page cache lookups that found the page",
            ),
            misses: m.counter(
                "storage_cache_misses",
                "Page cache lookups that went to disk",
            ),
            evictions: m.counter(
                "storage_cache_evictions",
                "Pages evicted from the page cache",
            ),
            dirty: m.gauge(
                "storage_cache_dirty_pages",
                "Pages changed in memory, not yet written",
            ),
            pool: m.gauge("storage_buffer_pool_bytes", "Size of the buffer pool"),
            pool_used: m.gauge(
                "storage_buffer_pool_used_bytes",
                "Bytes of the buffer pool in use",
            ),
            flushes: m.counter("storage_flushes", "Flushes of dirty pages"),
            flush_seconds: m.histogram(
                "storage_flush_duration_seconds",
                "Flush latency",
                &LATENCY_BUCKETS,
            ),
            fsyncs: m.counter("storage_fsyncs", "fsync calls"),
            fsync_seconds: m.histogram(
                "storage_fsync_duration_seconds",
                "fsync latency",
                &LATENCY_BUCKETS,
            ),
            io_read: handle(&io, &[("op", "read")]),
            io_write: handle(&io, &[("op", "write")]),
            compactions: m.counter("storage_compactions", "Compactions run"),
            compaction_bytes: m.counter("storage_compaction_bytes", "Bytes written by compactions"),
            compaction_seconds: m.histogram(
                "storage_compaction_duration_seconds",
                "Compaction duration",
                &LATENCY_BUCKETS,
            ),
            wal_appends: m.counter(
                "storage_wal_appends",
                "Records appended to the write-ahead log",
            ),
            wal_bytes: m.counter("storage_wal_bytes", "Bytes appended to the write-ahead log"),
            wal_size,
            timing: m.timing(),
        }
    }

    /// A page read from disk, with how long the read took.
    #[inline]
    pub fn page_read(&self, seconds: impl Into<Option<f64>>) {
        self.page_reads.inc();
        observe_latency(&self.io_read, seconds.into());
    }

    /// A page written to disk, with how long the write took.
    #[inline]
    pub fn page_write(&self, seconds: impl Into<Option<f64>>) {
        self.page_writes.inc();
        observe_latency(&self.io_write, seconds.into());
    }

    /// Starts timing an I/O, if it is in the sample ([`crate::Options::time_one_in`]).
    #[inline]
    pub fn stopwatch(&self) -> Stopwatch {
        self.timing.start()
    }

    /// A page cache hit.
    #[inline]
    pub fn cache_hit(&self) {
        self.hits.inc();
    }

    /// A page cache miss.
    #[inline]
    pub fn cache_miss(&self) {
        self.misses.inc();
    }

    /// A page evicted.
    #[inline]
    pub fn eviction(&self) {
        self.evictions.inc();
    }

    /// Dirty pages now.
    #[inline]
    pub fn set_dirty_pages(&self, n: u64) {
        self.dirty.set(n as i64);
    }

    /// The buffer pool's size and the bytes in use now.
    #[inline]
    pub fn set_buffer_pool(&self, size: u64, used: u64) {
        self.pool.set(size as i64);
        self.pool_used.set(used as i64);
    }

    /// A flush that took `seconds`.
    pub fn flush(&self, seconds: impl Into<Option<f64>>) {
        self.flushes.inc();
        if let Some(s) = seconds.into() {
            self.flush_seconds.observe(s);
        }
    }

    /// An fsync that took `seconds`.
    pub fn fsync(&self, seconds: impl Into<Option<f64>>) {
        self.fsyncs.inc();
        if let Some(s) = seconds.into() {
            self.fsync_seconds.observe(s);
        }
    }

    /// A compaction that wrote `bytes` in `seconds`.
    pub fn compaction(&self, bytes: u64, seconds: f64) {
        self.compactions.inc();
        self.compaction_bytes.inc_by(bytes);
        self.compaction_seconds.observe(seconds);
    }

    /// A WAL append of `bytes`.
    #[inline]
    pub fn wal_append(&self, bytes: u64) {
        self.wal_appends.inc();
        self.wal_bytes.inc_by(bytes);
        if self.timing.sampled() {
            self.wal_size.observe(bytes as f64);
        }
    }
}
