//! Arithmetic on float native histograms, as PromQL and the test notation need it:
//! adding and subtracting histograms of different resolutions and zero buckets, scaling,
//! merging buckets to a coarser schema, and telling a counter reset from growth — with
//! the results Prometheus's engine gives (its rules for reconciling zero buckets and
//! schemas, and for counter-reset hints).
//!
//! Written here rather than taken from a crate: no Rust crate implements Prometheus's
//! native-histogram semantics, and these are the evaluator's inner loops.

use std::collections::BTreeMap;

use super::{CounterResetHint, FloatHistogram, bucket_upper};

/// Most rounds [`FloatHistogram::reconcile_zero`] takes: each widens a zero bucket to a
/// populated bucket's bound, so real histograms need a handful; a hostile one (NaN
/// thresholds) stops here instead of looping.
const MAX_ZERO_ROUNDS: usize = 256;

/// The bucket index at `to` (coarser) that bucket `index` at `from` falls into: each
/// step down in schema merges pairs of buckets, `(1, 2]` with `(2, 4]` being indexes
/// 1 and 2 at schema 0 and index 1 at schema −1.
fn coarser_index(index: i32, from: i32, to: i32) -> i32 {
    let shift = (from - to).clamp(0, 62) as u32;
    (((i64::from(index) - 1) >> shift) + 1) as i32
}

/// One side's buckets merged from schema `from` down to `to` (unchanged unless `to` is
/// coarser).
fn reduce_side(side: &BTreeMap<i32, f64>, from: i32, to: i32) -> BTreeMap<i32, f64> {
    if to >= from {
        return side.clone();
    }
    let mut out = BTreeMap::new();
    for (&i, &c) in side {
        *out.entry(coarser_index(i, from, to)).or_insert(0.0) += c;
    }
    out
}

/// The bounds two custom-bucket histograms share, ascending.
fn shared_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].partial_cmp(&b[j]) {
            Some(std::cmp::Ordering::Equal) => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
            Some(std::cmp::Ordering::Less) => i += 1,
            _ => j += 1,
        }
    }
    out
}

/// Custom buckets with bounds `from` moved onto the coarser bounds `to` (a subset):
/// each bucket goes to the first bucket of `to` whose upper bound is at or above its
/// own.
fn remap_custom(side: &BTreeMap<i32, f64>, from: &[f64], to: &[f64]) -> BTreeMap<i32, f64> {
    let mut out = BTreeMap::new();
    for (&i, &c) in side {
        let upper = usize::try_from(i)
            .ok()
            .and_then(|i| from.get(i))
            .copied()
            .unwrap_or(f64::INFINITY);
        let j = to.partition_point(|b| *b < upper);
        *out.entry(j as i32).or_insert(0.0) += c;
    }
    out
}

/// What an addition or subtraction says about counter resets, as Prometheus decides:
/// the same hint stays, a gauge makes a gauge, unknown makes unknown, and a reset meeting
/// a non-reset makes unknown ([`FloatHistogram::hints_collide`] tells that case).
fn combined_hint(a: CounterResetHint, b: CounterResetHint) -> CounterResetHint {
    use CounterResetHint::*;
    match (a, b) {
        (a, b) if a == b => a,
        (Gauge, _) | (_, Gauge) => Gauge,
        _ => Unknown,
    }
}

impl FloatHistogram {
    /// Whether the two can be added or compared: both exponential, or both with custom
    /// buckets.
    pub fn compatible(&self, other: &Self) -> bool {
        self.is_custom() == other.is_custom()
    }

    /// Whether both have custom buckets with different bounds (combining them keeps
    /// only the bounds they share; PromQL says so).
    pub fn bounds_differ(&self, other: &Self) -> bool {
        self.is_custom() && other.is_custom() && self.custom_values != other.custom_values
    }

    /// Whether one of the two says "counter reset" and the other "no reset": adding them
    /// is then suspect (PromQL warns).
    pub fn hints_collide(&self, other: &Self) -> bool {
        use CounterResetHint::*;
        matches!(
            (self.hint, other.hint),
            (Reset, NotReset) | (NotReset, Reset)
        )
    }

    /// The histogram with its buckets merged to the coarser `schema` (a copy unchanged
    /// when `schema` is not coarser).
    pub fn reduced(&self, schema: i32) -> Self {
        if schema >= self.schema || self.is_custom() {
            return self.clone();
        }
        Self {
            positive: reduce_side(&self.positive, self.schema, schema),
            negative: reduce_side(&self.negative, self.schema, schema),
            schema,
            ..self.clone()
        }
    }

    /// The zero count this histogram would have with a zero bucket at least `larger`
    /// wide, and that width: when `larger` falls inside a populated bucket, the width
    /// grows to that bucket's far bound and its count joins the zero bucket.
    fn zero_count_for(&self, larger: f64) -> (f64, f64) {
        let mut larger = larger;
        if larger == self.zero_threshold {
            return (self.zero_count, larger);
        }
        'again: for _ in 0..MAX_ZERO_ROUNDS {
            let mut count = self.zero_count;
            for (side, positive) in [(&self.positive, true), (&self.negative, false)] {
                for (&i, &c) in side {
                    let lower = bucket_upper(self.schema, i.saturating_sub(1));
                    if lower >= larger {
                        break;
                    }
                    count += c;
                    let upper = bucket_upper(self.schema, i);
                    if upper > larger {
                        if c != 0.0 {
                            larger = upper;
                            if !positive {
                                // The positive side was counted for a narrower bucket.
                                continue 'again;
                            }
                        }
                        break;
                    }
                }
            }
            return (count, larger);
        }
        (self.zero_count, larger)
    }

    /// Drops the buckets inside the zero bucket (their counts already in it).
    fn trim_inside_zero(&mut self) {
        let (schema, zt) = (self.schema, self.zero_threshold);
        for side in [&mut self.positive, &mut self.negative] {
            side.retain(|&i, _| bucket_upper(schema, i.saturating_sub(1)) >= zt);
        }
    }

    /// Widens this histogram's zero bucket and `other`'s (in thought) until both are the
    /// same, with no populated bucket straddling it; returns `other`'s zero count at that
    /// width.
    fn reconcile_zero(&mut self, other: &Self) -> f64 {
        let (mut count, mut width) = (other.zero_count, other.zero_threshold);
        for _ in 0..MAX_ZERO_ROUNDS {
            if width == self.zero_threshold || width.is_nan() || self.zero_threshold.is_nan() {
                break;
            }
            if self.zero_threshold > width {
                (count, width) = other.zero_count_for(self.zero_threshold);
            }
            if width > self.zero_threshold {
                (self.zero_count, self.zero_threshold) = self.zero_count_for(width);
                self.trim_inside_zero();
            }
        }
        count
    }

    /// `self + sign × other` for custom buckets: by index when the bounds are the same,
    /// otherwise on the bounds both share.
    fn combined_custom(&self, other: &Self, sign: f64) -> Self {
        let mut out = self.clone();
        out.hint = combined_hint(self.hint, other.hint);
        out.count += sign * other.count;
        out.sum += sign * other.sum;
        let theirs = if self.custom_values == other.custom_values {
            other.positive.clone()
        } else {
            let shared = shared_bounds(&self.custom_values, &other.custom_values);
            out.positive = remap_custom(&self.positive, &self.custom_values, &shared);
            let theirs = remap_custom(&other.positive, &other.custom_values, &shared);
            out.custom_values = shared;
            theirs
        };
        for (i, c) in theirs {
            *out.positive.entry(i).or_insert(0.0) += sign * c;
        }
        out
    }

    /// `self + sign × other`: the coarser schema and the wider zero bucket win. An
    /// exponential and a custom-bucket histogram do not combine ([`Self::compatible`]):
    /// `self` is returned unchanged.
    fn combined(&self, other: &Self, sign: f64) -> Self {
        if self.is_custom() || other.is_custom() {
            if !self.compatible(other) {
                return self.clone();
            }
            return self.combined_custom(other, sign);
        }
        let mut out = self.clone();
        out.hint = combined_hint(self.hint, other.hint);
        let their_zero = out.reconcile_zero(other);
        out.zero_count += sign * their_zero;
        out.count += sign * other.count;
        out.sum += sign * other.sum;
        let schema = self.schema.min(other.schema);
        if out.schema > schema {
            out.positive = reduce_side(&out.positive, out.schema, schema);
            out.negative = reduce_side(&out.negative, out.schema, schema);
            out.schema = schema;
        }
        let zt = out.zero_threshold;
        for (mine, theirs) in [
            (&mut out.positive, &other.positive),
            (&mut out.negative, &other.negative),
        ] {
            for (i, c) in reduce_side(theirs, other.schema, schema) {
                if bucket_upper(schema, i) <= zt {
                    continue;
                }
                *mine.entry(i).or_insert(0.0) += sign * c;
            }
        }
        out
    }

    /// `self + other`, at the coarser of the two schemas and the wider zero bucket.
    pub fn add(&self, other: &Self) -> Self {
        self.combined(other, 1.0)
    }

    /// `self − other`, at the coarser of the two schemas and the wider zero bucket (the
    /// hint as for [`FloatHistogram::add`]; PromQL's `-` operator makes it a gauge).
    pub fn sub(&self, other: &Self) -> Self {
        self.combined(other, -1.0)
    }

    /// Every count and the sum times `factor`; a negative factor makes a gauge.
    pub fn scaled(&self, factor: f64) -> Self {
        let mut out = self.clone();
        out.zero_count *= factor;
        out.count *= factor;
        out.sum *= factor;
        for side in [&mut out.positive, &mut out.negative] {
            for c in side.values_mut() {
                *c *= factor;
            }
        }
        if factor < 0.0 {
            out.hint = CounterResetHint::Gauge;
        }
        out
    }

    /// Every count and the sum divided by `divisor`; dividing by zero keeps no buckets
    /// (the counts become infinite or NaN), a negative divisor makes a gauge.
    pub fn divided(&self, divisor: f64) -> Self {
        if divisor == 0.0 {
            let mut out = self.clone();
            out.zero_count /= divisor;
            out.count /= divisor;
            out.sum /= divisor;
            out.positive.clear();
            out.negative.clear();
            return out;
        }
        let mut out = self.clone();
        out.zero_count /= divisor;
        out.count /= divisor;
        out.sum /= divisor;
        for side in [&mut out.positive, &mut out.negative] {
            for c in side.values_mut() {
                *c /= divisor;
            }
        }
        if divisor < 0.0 {
            out.hint = CounterResetHint::Gauge;
        }
        out
    }

    /// Without its empty buckets.
    pub fn compacted(mut self) -> Self {
        for side in [&mut self.positive, &mut self.negative] {
            side.retain(|_, c| *c != 0.0);
        }
        self
    }

    /// Whether this histogram, following `previous` in a counter, shows a reset: its
    /// hint says so, or a count (total, zero bucket or any bucket, not the sum) went
    /// down, a populated bucket vanished, the resolution went up or the zero bucket
    /// narrowed. A hint of "no reset" is believed.
    pub fn detect_reset(&self, previous: &Self) -> bool {
        match self.hint {
            CounterResetHint::Reset => return true,
            CounterResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < previous.count || !self.compatible(previous) {
            return true;
        }
        if self.is_custom() {
            // On the bounds both share, no bucket may have lost observations.
            let shared = shared_bounds(&self.custom_values, &previous.custom_values);
            let now = remap_custom(&self.positive, &self.custom_values, &shared);
            let before = remap_custom(&previous.positive, &previous.custom_values, &shared);
            return before
                .into_iter()
                .filter(|&(_, c)| c != 0.0)
                .any(|(i, c)| now.get(&i).is_none_or(|n| *n < c));
        }
        if self.schema > previous.schema || self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let (their_zero, width) = previous.zero_count_for(self.zero_threshold);
        if width != self.zero_threshold || self.zero_count < their_zero {
            return true;
        }
        let zt = self.zero_threshold;
        [
            (&self.positive, &previous.positive),
            (&self.negative, &previous.negative),
        ]
        .into_iter()
        .any(|(now, before)| {
            reduce_side(before, previous.schema, self.schema)
                .into_iter()
                .filter(|&(i, c)| c != 0.0 && bucket_upper(self.schema, i) > zt)
                .any(|(i, c)| now.get(&i).is_none_or(|n| *n < c))
        })
    }

    /// Equal in every field and in the bucket layout (an empty bucket differs from an
    /// absent one), comparing floats by their bits: what `changes()` counts as a change.
    pub fn identical(&self, other: &Self) -> bool {
        let bits = |m: &BTreeMap<i32, f64>| -> Vec<(i32, u64)> {
            m.iter().map(|(k, v)| (*k, v.to_bits())).collect()
        };
        self.schema == other.schema
            && self.zero_threshold.to_bits() == other.zero_threshold.to_bits()
            && self.zero_count.to_bits() == other.zero_count.to_bits()
            && self.count.to_bits() == other.count.to_bits()
            && self.sum.to_bits() == other.sum.to_bits()
            && bits(&self.positive) == bits(&other.positive)
            && bits(&self.negative) == bits(&other.negative)
            && self.custom_values == other.custom_values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> FloatHistogram {
        FloatHistogram::parse(s).unwrap()
    }

    #[test]
    fn adding_reduces_to_the_coarser_schema() {
        // As upstream's low_res_histogram: schema -1 plus schema 0.
        let a = h("{{schema:-1 sum:4 count:1 buckets:[1] offset:1}}");
        let b = h("{{schema:0 sum:4 count:4 buckets:[2 2] offset:1}}");
        let got = a.add(&b);
        assert!(
            got.same_as(&h("{{schema:-1 count:5 sum:8 offset:1 buckets:[5]}}")),
            "{got}"
        );
        // The other way round, too.
        assert!(b.add(&a).compacted().same_as(&got), "{}", b.add(&a));
        assert_eq!(coarser_index(-1, 0, -1), 0);
        assert_eq!(coarser_index(0, 0, -1), 0);
        assert_eq!(
            coarser_index(i32::MIN, 8, -4),
            coarser_index(i32::MIN, 8, -4)
        );
    }

    #[test]
    fn zero_buckets_widen_to_the_larger() {
        let a = h("{{schema:0 z_bucket:1 z_bucket_w:0.5 sum:1 count:3 buckets:[2] offset:0}}");
        // (0.5, 1] and (0.25, 0.5] in b: the second falls in a's zero bucket.
        let b = h("{{schema:0 sum:1 count:2 buckets:[1 1] offset:-1}}");
        let got = a.add(&b);
        assert_eq!(got.zero_threshold, 0.5);
        assert_eq!(got.zero_count, 2.0);
        assert_eq!(got.positive.get(&0), Some(&3.0));
        assert_eq!(got.count, 5.0);
        // A zero bucket ending inside a populated bucket widens to its bound.
        let c = h("{{schema:0 z_bucket:1 z_bucket_w:0.7 count:1}}");
        let got = b.add(&c);
        assert_eq!(got.zero_threshold, 1.0);
        assert_eq!(got.zero_count, 3.0);
        assert!(got.positive.is_empty());
        // NaN widths do not loop.
        let mut n = c.clone();
        n.zero_threshold = f64::NAN;
        let _ = n.add(&b);
        let _ = b.add(&n);
    }

    #[test]
    fn resets_are_found_where_counts_fall() {
        let a = h("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}");
        let more = h("{{schema:0 sum:7 count:5 buckets:[1 3 1]}}");
        assert!(!more.detect_reset(&a));
        assert!(a.detect_reset(&more));
        // A bucket gone while the count grows.
        let moved = h("{{schema:0 sum:7 count:5 buckets:[1 4] offset:0}}");
        assert!(moved.detect_reset(&a));
        // Finer resolution means a reset; coarser is compared merged.
        let coarse = h("{{schema:-1 sum:9 count:6 buckets:[3 3] offset:0}}");
        assert!(!coarse.detect_reset(&a));
        assert!(a.detect_reset(&coarse));
        let mut hinted = a.clone();
        hinted.hint = CounterResetHint::NotReset;
        assert!(!hinted.detect_reset(&more));
    }

    #[test]
    fn custom_buckets_add_on_shared_bounds() {
        let a = h("{{schema:-53 sum:6 count:4 custom_values:[1 2 5] buckets:[1 1 1 1]}}");
        let same = a.add(&a);
        assert_eq!(same.custom_values, vec![1.0, 2.0, 5.0]);
        assert_eq!(same.positive.get(&3), Some(&2.0));
        // (1, 2] and (2, 5] of a fall in (1, 5] of b; +Inf buckets meet.
        let b = h("{{schema:-53 sum:1 count:3 custom_values:[1 5] buckets:[1 1 1]}}");
        let got = a.add(&b);
        assert_eq!(got.custom_values, vec![1.0, 5.0]);
        assert_eq!(
            got.positive.into_iter().collect::<Vec<_>>(),
            vec![(0, 2.0), (1, 3.0), (2, 2.0)]
        );
        assert!(a.bounds_differ(&b) && !a.bounds_differ(&a));
        let e = h("{{schema:0 sum:1 count:1 buckets:[1]}}");
        assert!(!a.compatible(&e));
        assert!(a.add(&e).same_as(&a), "incompatible: unchanged");
        assert!(a.detect_reset(&a.add(&a)));
        assert!(!a.add(&a).detect_reset(&a));
        assert!(e.detect_reset(&a));
    }

    #[test]
    fn scaling_and_dividing() {
        let a = h("{{schema:0 sum:5 count:4 z_bucket:1 buckets:[1 2]}}");
        let d = a.scaled(-2.0);
        assert_eq!((d.count, d.sum, d.zero_count), (-8.0, -10.0, -2.0));
        assert_eq!(d.hint, CounterResetHint::Gauge);
        let z = a.divided(0.0);
        assert!(z.positive.is_empty() && z.count.is_infinite());
        assert_eq!(a.divided(2.0).positive.get(&1), Some(&1.0));
        assert!(a.sub(&a).compacted().positive.is_empty());
        assert!(a.identical(&a) && !a.identical(&a.scaled(1.5)));
    }
}
