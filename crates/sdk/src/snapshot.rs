//! A performance snapshot over a sliding window, for an engine's own status pages and
//! admin commands: [`PerfWindow::record`] each operation (its latency and whether it
//! failed), [`PerfWindow::snapshot`] gives QPS, mean/p50/p95/p99 latency and the error
//! rate over the last `window` seconds, with the storage figures the engine reports.
//!
//! Kept per second in a ring; latencies in log-spaced buckets (about 4% apart, 1 µs to
//! ~100 s), so a percentile is exact to a bucket's width and recording is a few adds
//! under one short lock, with no allocation (a second's slot is cleared in place).

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::health::DatabaseStats;

/// Buckets per power of two (2^(1/16) ≈ 4.4% apart).
const PER_OCTAVE: f64 = 16.0;
/// Smallest latency kept apart (1 µs); smaller ones share the first bucket.
const MIN_SECONDS: f64 = 1e-6;
const BUCKETS: usize = 16 * 27;

#[derive(Clone)]
struct Second {
    at: u64,
    count: u64,
    errors: u64,
    sum: f64,
    buckets: Vec<u32>,
}

impl Second {
    fn empty() -> Self {
        Self {
            at: 0,
            count: 0,
            errors: 0,
            sum: 0.0,
            buckets: vec![0; BUCKETS],
        }
    }
}

/// Operations of the last `window` seconds.
pub struct PerfWindow {
    ring: Mutex<Vec<Second>>,
}

impl std::fmt::Debug for PerfWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerfWindow").finish_non_exhaustive()
    }
}

/// What [`PerfWindow::snapshot`] returns (serializes as JSON for an admin endpoint).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// The window, in seconds.
    pub window_seconds: u64,
    /// Operations per second over it.
    pub qps: f64,
    /// Operations in it.
    pub operations: u64,
    /// Failed operations ÷ operations (0 without operations).
    pub error_rate: f64,
    /// Mean latency (seconds).
    pub mean_seconds: f64,
    /// Median latency (seconds).
    pub p50_seconds: f64,
    /// 95th percentile (seconds).
    pub p95_seconds: f64,
    /// 99th percentile (seconds).
    pub p99_seconds: f64,
    /// Storage figures the engine reported, if any.
    pub storage_bytes: Option<u64>,
    /// Its cache hit ratio, if any.
    pub cache_hit_ratio: Option<f64>,
    /// Its open connections, if reported.
    pub connections: Option<u64>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn bucket_of(seconds: f64) -> usize {
    if seconds.is_nan() || seconds <= MIN_SECONDS {
        return 0;
    }
    (((seconds / MIN_SECONDS).log2() * PER_OCTAVE) as usize + 1).min(BUCKETS - 1)
}

/// The upper bound of bucket `i` (seconds).
fn bucket_upper(i: usize) -> f64 {
    MIN_SECONDS * 2f64.powf(i as f64 / PER_OCTAVE)
}

impl PerfWindow {
    /// A window of `seconds` (at least 1, at most an hour).
    pub fn new(seconds: u64) -> Self {
        let n = seconds.clamp(1, 3600) as usize;
        Self {
            ring: Mutex::new(vec![Second::empty(); n]),
        }
    }

    /// Records one operation that took `seconds` and failed or not.
    pub fn record(&self, seconds: f64, failed: bool) {
        self.record_at(now_secs(), seconds, failed);
    }

    fn record_at(&self, now: u64, seconds: f64, failed: bool) {
        let mut ring = self.ring.lock().expect("window lock");
        let n = ring.len() as u64;
        let slot = &mut ring[(now % n) as usize];
        if slot.at != now {
            slot.at = now;
            slot.count = 0;
            slot.errors = 0;
            slot.sum = 0.0;
            slot.buckets.fill(0);
        }
        slot.count += 1;
        slot.errors += u64::from(failed);
        if seconds.is_finite() && seconds >= 0.0 {
            slot.sum += seconds;
        }
        slot.buckets[bucket_of(seconds)] += 1;
    }

    /// The figures of the last `window` seconds, with `db`'s storage figures.
    pub fn snapshot(&self, db: Option<&DatabaseStats>) -> Snapshot {
        self.snapshot_at(now_secs(), db)
    }

    fn snapshot_at(&self, now: u64, db: Option<&DatabaseStats>) -> Snapshot {
        let ring = self.ring.lock().expect("window lock");
        let n = ring.len() as u64;
        let live = ring.iter().filter(|s| s.at + n > now && s.at <= now);
        let (mut count, mut errors, mut sum) = (0u64, 0u64, 0.0);
        let mut buckets = vec![0u64; BUCKETS];
        for s in live {
            count += s.count;
            errors += s.errors;
            sum += s.sum;
            for (b, c) in buckets.iter_mut().zip(&s.buckets) {
                *b += u64::from(*c);
            }
        }
        drop(ring);
        let quantile = |q: f64| -> f64 {
            if count == 0 {
                return 0.0;
            }
            let rank = (q * count as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in buckets.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_upper(i);
                }
            }
            bucket_upper(BUCKETS - 1)
        };
        Snapshot {
            window_seconds: n,
            qps: count as f64 / n as f64,
            operations: count,
            error_rate: if count == 0 {
                0.0
            } else {
                errors as f64 / count as f64
            },
            mean_seconds: if count == 0 { 0.0 } else { sum / count as f64 },
            p50_seconds: quantile(0.5),
            p95_seconds: quantile(0.95),
            p99_seconds: quantile(0.99),
            storage_bytes: db.map(|d| d.storage_bytes),
            cache_hit_ratio: db.and_then(|d| d.cache_hit_ratio),
            connections: db.map(|d| d.connections),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates_follow_what_was_recorded() {
        let w = PerfWindow::new(10);
        // 1,000 operations over 10 seconds: 1 ms each, the slowest 1% at 100 ms, 2% failed.
        for i in 0..1000u64 {
            let secs = if i % 100 == 0 { 0.1 } else { 0.001 };
            w.record_at(1000 + i % 10, secs, i % 50 == 0);
        }
        let s = w.snapshot_at(1009, None);
        assert_eq!(s.operations, 1000);
        assert!((s.qps - 100.0).abs() < 1e-9);
        assert!((s.error_rate - 0.02).abs() < 1e-9);
        assert!((s.mean_seconds - (990.0 * 0.001 + 10.0 * 0.1) / 1000.0).abs() < 1e-9);
        for (got, want) in [
            (s.p50_seconds, 0.001),
            (s.p95_seconds, 0.001),
            (s.p99_seconds, 0.001),
        ] {
            assert!(got >= want && got < want * 1.05, "{got} vs {want}");
        }
        // Past the window, old seconds no longer count.
        let later = w.snapshot_at(1015, None);
        assert_eq!(later.operations, 400);
        let empty = w.snapshot_at(5000, None);
        assert_eq!((empty.operations, empty.p99_seconds), (0, 0.0));
        // Hostile values land in a bucket without panicking.
        w.record_at(6000, f64::NAN, false);
        w.record_at(6000, -1.0, true);
        w.record_at(6000, 1e12, false);
        let s = w.snapshot_at(
            6000,
            Some(&DatabaseStats {
                storage_bytes: 7,
                ..Default::default()
            }),
        );
        assert_eq!((s.operations, s.storage_bytes), (3, Some(7)));
        assert!(s.p99_seconds > 10.0);
    }
}
