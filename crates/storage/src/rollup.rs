//! Rollups: what a store keeps of a series per window of a fixed resolution once it
//! downsamples, and how windows are made from samples and from finer windows.
//!
//! A window ending at `end` holds the samples in `(end - resolution, end]` (left-open,
//! right-closed, as PromQL's range selectors are since Prometheus 3), and windows end at
//! multiples of the resolution. A range `(t - range, t]` whose `t` and `range` are
//! multiples of the resolution is then exactly a run of whole windows, and what PromQL
//! computes over it follows from them: `count`, `sum`, `min`, `max`, `first`, `last`
//! and the counter-aware `increase` are each exact per window and combine exactly
//! ([`Rollup::merge`]), which is what `rate`, `increase`, `delta` and the `*_over_time`
//! aggregations read. Staleness markers are left out of all of those, as range selectors
//! leave them out; a window notes only whether its last sample was one
//! ([`Rollup::ends_stale`]), which with `last` is what an instant selector reads at a
//! window's end.

use lookout_model::{Labels, Sample, is_stale_nan};

/// One window's summary of a series' samples (at least one sample, maybe only a
/// staleness marker: then `count` is 0 and the other figures mean nothing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rollup {
    /// The window's end (ms): it holds the samples in `(end - resolution, end]`.
    pub end: i64,
    /// How many samples, staleness markers left out.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest value (NaN only when every value is NaN, as `min_over_time`).
    pub min: f64,
    /// The largest value (NaN only when every value is NaN, as `max_over_time`).
    pub max: f64,
    /// The first sample.
    pub first: Sample,
    /// The last sample.
    pub last: Sample,
    /// The increase from `first` to `last` read as a counter: each fall is a reset, after
    /// which the value counts from zero (`rate`'s counter correction).
    pub increase: f64,
    /// Whether the window's last sample is a staleness marker (the series had ended).
    pub ends_stale: bool,
}

/// The smaller of a running minimum and a value, as `min_over_time` folds (a NaN so
/// far gives way to anything; a NaN value never replaces a number).
fn fold_min(m: f64, v: f64) -> f64 {
    if m > v || m.is_nan() { v } else { m }
}

/// The larger, as `max_over_time` folds.
fn fold_max(m: f64, v: f64) -> f64 {
    if m < v || m.is_nan() { v } else { m }
}

/// What a counter gained from `a` to the next value `b`.
fn gain(a: f64, b: f64) -> f64 {
    if b < a { b } else { b - a }
}

impl Rollup {
    /// The window ending at `end` holding one sample.
    pub fn of(end: i64, s: Sample) -> Self {
        Rollup {
            end,
            count: 1,
            sum: s.v,
            min: s.v,
            max: s.v,
            first: s,
            last: s,
            increase: 0.0,
            ends_stale: false,
        }
    }

    /// The window ending at `end` holding only a staleness marker.
    pub fn stale(end: i64) -> Self {
        let nothing = Sample {
            t: end,
            v: f64::NAN,
        };
        Rollup {
            count: 0,
            sum: 0.0,
            min: f64::NAN,
            max: f64::NAN,
            first: nothing,
            last: nothing,
            ..Rollup::of(end, nothing)
        }
        .with_stale_end()
    }

    fn with_stale_end(mut self) -> Self {
        self.ends_stale = true;
        self
    }

    /// Adds the samples of `next`, which all follow this one's (`end` is left as it is).
    pub fn merge(&mut self, next: &Rollup) {
        self.ends_stale = next.ends_stale;
        if next.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = Rollup {
                end: self.end,
                ..*next
            };
            return;
        }
        self.count += next.count;
        self.sum += next.sum;
        self.min = fold_min(self.min, next.min);
        self.max = fold_max(self.max, next.max);
        self.increase += gain(self.last.v, next.first.v) + next.increase;
        self.last = next.last;
    }
}

/// The end of the window of `resolution` that holds `t`.
pub fn window_end(t: i64, resolution: i64) -> i64 {
    let r = resolution.max(1);
    // (end - r, end]: a time on a multiple is the end of its window.
    t.div_euclid(r) * r + if t.rem_euclid(r) == 0 { 0 } else { r }
}

/// The windows of `resolution` over `samples` (ascending).
pub fn rollup(samples: &[Sample], resolution: i64) -> Vec<Rollup> {
    let mut out: Vec<Rollup> = Vec::new();
    for s in samples {
        let end = window_end(s.t, resolution);
        let one = if is_stale_nan(s.v) {
            Rollup::stale(end)
        } else {
            Rollup::of(end, *s)
        };
        match out.last_mut() {
            Some(w) if w.end == end => w.merge(&one),
            _ => out.push(one),
        }
    }
    out
}

/// What an instant selector reads at the end of any of `windows`: each window's last
/// sample, and a staleness marker at its end where its last sample was one.
pub fn latest_samples(windows: &[Rollup]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(windows.len());
    for w in windows {
        if w.count > 0 {
            out.push(w.last);
        }
        if w.ends_stale {
            out.push(Sample {
                t: w.end,
                v: lookout_model::stale_nan(),
            });
        }
    }
    out
}

/// Windows of a coarser `resolution` (a multiple of theirs) from `windows` (ascending).
pub fn coarsen(windows: &[Rollup], resolution: i64) -> Vec<Rollup> {
    let mut out: Vec<Rollup> = Vec::new();
    for w in windows {
        let end = window_end(w.end, resolution);
        match out.last_mut() {
            Some(c) if c.end == end => c.merge(w),
            _ => out.push(Rollup { end, ..*w }),
        }
    }
    out
}

/// A series' windows, ascending by end.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Its windows (only those holding samples).
    pub windows: Vec<Rollup>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: i64, v: f64) -> Sample {
        Sample { t, v }
    }

    #[test]
    fn windows_are_left_open_and_right_closed() {
        assert_eq!(window_end(300, 300), 300);
        assert_eq!(window_end(301, 300), 600);
        assert_eq!(window_end(1, 300), 300);
        assert_eq!(window_end(0, 300), 0);
        assert_eq!(window_end(-1, 300), 0);
        assert_eq!(window_end(-300, 300), -300);
        let w = rollup(&[s(0, 1.0), s(100, 2.0), s(300, 3.0), s(301, 4.0)], 300);
        let ends: Vec<i64> = w.iter().map(|w| w.end).collect();
        assert_eq!(ends, [0, 300, 600]);
        assert_eq!(w[1].count, 2);
        assert_eq!(w[1].first, s(100, 2.0));
        assert_eq!(w[1].last, s(300, 3.0));
    }

    #[test]
    fn a_counter_reset_counts_from_zero_within_and_across_windows() {
        let x = [
            s(10, 5.0),
            s(20, 8.0),
            s(30, 2.0),
            s(40, 4.0),
            s(310, 1.0),
            s(320, 3.0),
        ];
        let w = rollup(&x, 300);
        assert_eq!(w[0].increase, 3.0 + 2.0 + 2.0);
        let c = coarsen(&w, 600);
        assert_eq!(c.len(), 1);
        // 4 → 1 is a reset: +1, then +2.
        assert_eq!(c[0].increase, 7.0 + 1.0 + 2.0);
        assert_eq!(c[0].count, 6);
        assert_eq!(c[0].min, 1.0);
        assert_eq!(c[0].max, 8.0);
        assert_eq!(c[0].sum, 23.0);
        assert_eq!((c[0].first, c[0].last), (s(10, 5.0), s(320, 3.0)));
    }

    #[test]
    fn nan_never_replaces_a_number_and_staleness_is_left_out() {
        let x = [
            s(1, f64::NAN),
            s(2, 3.0),
            s(3, lookout_model::stale_nan()),
            s(4, f64::NAN),
        ];
        let w = rollup(&x, 10);
        assert_eq!(w[0].count, 3);
        assert_eq!((w[0].min, w[0].max), (3.0, 3.0));
        assert!(rollup(&[s(1, f64::NAN)], 10)[0].max.is_nan());
        let only = rollup(&[s(1, lookout_model::stale_nan())], 10);
        assert_eq!(
            (only.len(), only[0].count, only[0].ends_stale),
            (1, 0, true)
        );
        assert!(!w[0].ends_stale);
    }

    #[test]
    fn a_window_ending_stale_reads_as_a_marker_and_merges_past_it() {
        let stale = lookout_model::stale_nan();
        let x = [
            s(10, 5.0),
            s(20, stale),
            s(310, 1.0),
            s(320, 4.0),
            s(610, stale),
        ];
        let w = rollup(&x, 300);
        assert_eq!(w.len(), 3);
        assert!(w[0].ends_stale && !w[1].ends_stale && w[2].ends_stale);
        assert_eq!(w[2].count, 0);
        let latest = latest_samples(&w);
        assert_eq!(latest.len(), 4);
        assert_eq!((latest[0], latest[1].t), (s(10, 5.0), 300));
        assert!(lookout_model::is_stale_nan(latest[1].v));
        assert_eq!((latest[2], latest[3].t), (s(320, 4.0), 900));
        // Range functions skip the markers: 5 → 1 is a reset.
        let c = coarsen(&w, 900);
        assert_eq!(
            (c[0].count, c[0].increase, c[0].last),
            (3, 1.0 + 3.0, s(320, 4.0))
        );
        assert!(c[0].ends_stale);
        // A window holding only a marker, then samples: the samples' figures.
        let c = coarsen(&rollup(&[s(5, stale), s(310, 2.0)], 300), 600);
        assert_eq!(
            (c[0].count, c[0].first, c[0].ends_stale),
            (1, s(310, 2.0), false)
        );
    }

    #[test]
    fn coarsening_equals_rolling_up_the_samples_at_once() {
        let mut x = Vec::new();
        let mut v = 0.0;
        for i in 0..1000i64 {
            v = if i % 137 == 0 {
                1.0
            } else {
                v + (i % 7) as f64
            };
            x.push(s(i * 15 - 3000, v));
        }
        let fine = rollup(&x, 300);
        let coarse = coarsen(&fine, 3600);
        let direct = rollup(&x, 3600);
        assert_eq!(coarse.len(), direct.len());
        for (a, b) in coarse.iter().zip(&direct) {
            assert_eq!(
                (a.end, a.count, a.first, a.last),
                (b.end, b.count, b.first, b.last)
            );
            assert_eq!((a.min, a.max), (b.min, b.max));
            assert!((a.sum - b.sum).abs() <= 1e-9 * b.sum.abs());
            assert!((a.increase - b.increase).abs() <= 1e-9 * b.increase.abs());
        }
    }
}
