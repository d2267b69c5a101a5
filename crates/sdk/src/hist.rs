//! [`Histogram`]: a classic (bucketed) histogram whose observation is a binary search and
//! two plain adds to the calling thread's own cells ([`crate::cells`]), registered and
//! encoded through `prometheus-client` like its own metrics.
//!
//! Written here rather than taken from `prometheus-client` because it is the SDK's hottest
//! path: a database observes a latency on every B+tree operation, page read and WAL
//! append. `prometheus-client`'s histogram takes a mutex per observation and searches its
//! buckets linearly (about 25 ns uncontended on this machine, and its lock is contended when
//! several threads observe the same series); this one takes no lock and runs no locked
//! instruction, and threads observing the same series share no cache line.
//!
//! A scrape sums the threads' cells one by one while observations go on, so it may see an
//! observation in its bucket and not yet in the sum (or the other way round); the count
//! is the sum of the buckets it read, so `_count` always equals the `+Inf` bucket, which
//! is what PromQL's `histogram_quantile` and `rate(_count)` rely on.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::cells::{Cells, add, add_f64};

/// A classic histogram with fixed upper bounds (`le`) and a `+Inf` bucket; cheap to clone
/// (clones share the counts).
#[derive(Clone, Debug)]
pub struct Histogram {
    /// Finite upper bounds, ascending, without duplicates; one allocation for every
    /// histogram with the same bounds, so a set's latency histograms search one line.
    bounds: Arc<[f64]>,
    /// Per thread: one count per bound, then the `+Inf` bucket's, then the sum of the
    /// observations as `f64` bits.
    cells: Cells,
}

/// Every distinct bucket layout made so far (by the bounds' bits): a program has a
/// handful, fixed in its code.
static LAYOUTS: Mutex<Vec<Arc<[f64]>>> = Mutex::new(Vec::new());

/// The shared allocation of `bounds`.
fn layout(bounds: Vec<f64>) -> Arc<[f64]> {
    let mut all = LAYOUTS.lock().unwrap_or_else(|e| e.into_inner());
    let same = |l: &Arc<[f64]>| {
        l.len() == bounds.len()
            && l.iter()
                .zip(&bounds)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    };
    if let Some(l) = all.iter().find(|l| same(l)) {
        return Arc::clone(l);
    }
    let l: Arc<[f64]> = bounds.into();
    all.push(Arc::clone(&l));
    l
}

impl Histogram {
    /// A histogram with these upper bounds (sorted here; NaN, `+Inf` and duplicates are
    /// left out, `+Inf` is always the last bucket; at most the lowest 1,022 are kept).
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let mut b: Vec<f64> = bounds
            .into_iter()
            .filter(|v| !v.is_nan() && *v != f64::INFINITY)
            .collect();
        b.sort_by(f64::total_cmp);
        b.dedup();
        b.truncate(crate::cells::CHUNK - 2);
        let cells = Cells::new(b.len() + 2);
        Histogram {
            bounds: layout(b),
            cells,
        }
    }

    /// Records one observation: it counts in the first bucket whose bound is at least
    /// `v` (NaN counts in `+Inf` only, as Prometheus's clients do) and adds to the sum.
    #[inline]
    pub fn observe(&self, v: f64) {
        let b = self.bucket_of(v);
        let (cells, shared) = self.cells.mine();
        add(&cells[b], 1, shared);
        add_f64(&cells[cells.len() - 1], v, shared);
    }

    /// The bucket index `v` counts in (the last is `+Inf`). NaN compares false with every
    /// bound, so it is sent to `+Inf` by hand.
    #[inline]
    pub(crate) fn bucket_of(&self, v: f64) -> usize {
        if v.is_nan() {
            self.bounds.len()
        } else {
            self.bounds.partition_point(|b| *b < v)
        }
    }

    /// The sum, the count and the per-bucket (not cumulative) counts with their upper
    /// bounds, the last `+Inf`, as `prometheus-client`'s encoders take them.
    pub fn get(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let n = self.bounds.len() + 1;
        let mut counts = vec![0u64; n];
        let mut sum = 0.0;
        self.cells.each(|cells| {
            for (c, cell) in counts.iter_mut().zip(cells) {
                *c = c.wrapping_add(cell.load(Ordering::Relaxed));
            }
            sum += f64::from_bits(cells[n].load(Ordering::Relaxed));
        });
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(counts)
            .collect();
        let count = buckets.iter().map(|(_, c)| *c).fold(0, u64::wrapping_add);
        (sum, count, buckets)
    }

    /// Encodes this histogram, with `exemplars` by bucket index where given.
    pub(crate) fn encode_with<S: prometheus_client::encoding::EncodeLabelSet>(
        &self,
        encoder: &mut MetricEncoder,
        exemplars: Option<&std::collections::HashMap<usize, Exemplar<S, f64>>>,
    ) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.get();
        encoder.encode_histogram(sum, count, &buckets, exemplars)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.encode_with::<NoLabelSet>(&mut encoder, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    #[test]
    fn observations_land_in_their_buckets_and_encode_cumulatively() {
        let h = Histogram::new([1.0, 0.5, 2.0, 2.0, f64::INFINITY, f64::NAN]);
        for v in [0.1, 0.5, 0.6, 2.0, 3.0, f64::NAN, -1.0] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.get();
        assert_eq!(count, 7);
        assert!(
            sum.is_nan(),
            "a NaN observation makes the sum NaN, as Prometheus's"
        );
        assert_eq!(
            buckets,
            vec![(0.5, 3), (1.0, 1), (2.0, 1), (f64::INFINITY, 2)],
            "le is inclusive; NaN counts in +Inf only"
        );
        let mut r = Registry::default();
        r.register("lat_seconds", "Latency.", h.clone());
        let mut text = String::new();
        encode(&mut text, &r).unwrap();
        for line in [
            "# TYPE lat_seconds histogram",
            "lat_seconds_count 7",
            "lat_seconds_bucket{le=\"0.5\"} 3",
            "lat_seconds_bucket{le=\"1.0\"} 4",
            "lat_seconds_bucket{le=\"2.0\"} 5",
            "lat_seconds_bucket{le=\"+Inf\"} 7",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn threads_observing_one_series_lose_nothing() {
        let h = Histogram::new(crate::LATENCY_BUCKETS);
        std::thread::scope(|s| {
            for t in 0..4 {
                let h = h.clone();
                s.spawn(move || {
                    for k in 0..50_000u32 {
                        h.observe(f64::from(k % 100 + t) * 1e-5);
                    }
                });
            }
        });
        let (sum, count, buckets) = h.get();
        assert_eq!(count, 200_000);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 200_000);
        // Σ over threads t of 500 × Σ_{k<100} (k + t) × 1e-5.
        let want: f64 = (0..4)
            .map(|t| 500.0 * (4950.0 + 100.0 * t as f64) * 1e-5)
            .sum();
        assert!((sum - want).abs() < 1e-6, "{sum} vs {want}");
        assert_eq!(h.bucket_of(1e-5), 0);
        assert_eq!(h.bucket_of(1e9), crate::LATENCY_BUCKETS.len());
    }
}
