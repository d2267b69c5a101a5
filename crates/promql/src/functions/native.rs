//! Native histograms in functions: `histogram_count`, `histogram_sum`, `histogram_avg`,
//! `histogram_stddev`, `histogram_stdvar`, the native side of `histogram_quantile` and
//! `histogram_fraction` (exponential interpolation inside buckets, linear in the zero
//! bucket), and the window functions over histogram samples (`rate`, `increase`,
//! `delta`, `irate`, `idelta`, `sum`/`avg`/`count`/`last`/`first`/`present_over_time`,
//! `changes`, `resets`), with Prometheus's annotations.

use std::sync::Arc;

use lookout_model::{CounterResetHint, FloatHistogram, Labels, Sample, bucket_upper};
use lookout_storage::HistogramSample;
use promql_parser::parser::Expr;

use super::range::{WindowFn, extrapolation_factor};
use super::{Args, FnCall, Window};
use crate::engine::Evaluator;
use crate::error::Result;
use crate::numeric::kahan_inc;
use crate::value::{RangeSeries, Value, VecSample};

/// One bucket with its bounds as Prometheus's bucket iterators give them.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    lower: f64,
    upper: f64,
    count: f64,
    /// −1 for a negative bucket, 0 for the zero bucket, 1 for a positive one.
    side: i8,
}

/// Every bucket from the most negative up: negative buckets, the zero bucket (when it
/// holds observations), positive buckets; a bucket's bound inside the zero bucket is
/// moved to its edge.
fn all_buckets(h: &FloatHistogram) -> Vec<Bucket> {
    if h.is_custom() {
        return h
            .positive
            .iter()
            .map(|(&i, &count)| {
                let (lower, upper) = h.bucket_bounds(i);
                Bucket {
                    lower,
                    upper,
                    count,
                    side: 1,
                }
            })
            .collect();
    }
    let (s, zt) = (h.schema, h.zero_threshold);
    let mut out = Vec::with_capacity(h.positive.len() + h.negative.len() + 1);
    for (&i, &count) in h.negative.iter().rev() {
        out.push(Bucket {
            lower: -bucket_upper(s, i),
            upper: (-bucket_upper(s, i.saturating_sub(1))).min(-zt),
            count,
            side: -1,
        });
    }
    if h.zero_count > 0.0 {
        out.push(Bucket {
            lower: -zt,
            upper: zt,
            count: h.zero_count,
            side: 0,
        });
    }
    for (&i, &count) in &h.positive {
        out.push(Bucket {
            lower: bucket_upper(s, i.saturating_sub(1)).max(zt),
            upper: bucket_upper(s, i),
            count,
            side: 1,
        });
    }
    out
}

/// The zero bucket's bounds narrowed to one side when only that side has buckets.
fn one_sided(h: &FloatHistogram, mut b: Bucket) -> Bucket {
    if b.lower < 0.0 && b.upper > 0.0 {
        if h.negative.is_empty() && !h.positive.is_empty() {
            b.lower = 0.0;
        } else if h.positive.is_empty() && !h.negative.is_empty() {
            b.upper = 0.0;
        }
    }
    b
}

/// Prometheus's `HistogramQuantile`: the `q` quantile of `h`, interpolating
/// exponentially inside a bucket (linearly in the zero bucket). A histogram with NaN
/// observations (a NaN sum) answers NaN where the rank falls among them, otherwise a
/// value skewed high (callers say so).
pub(super) fn quantile(q: f64, h: &FloatHistogram) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let buckets = all_buckets(h);
    // NaN observations count in `count` but in no bucket: count from below then.
    let forward = h.sum.is_nan() || q < 0.5;
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut bucket = Bucket::default();
    let order: Box<dyn Iterator<Item = &Bucket>> = if forward {
        Box::new(buckets.iter())
    } else {
        Box::new(buckets.iter().rev())
    };
    for b in order {
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        bucket = *b;
        if count >= rank {
            break;
        }
    }
    let mut bucket = one_sided(h, bucket);
    if h.is_custom() {
        // The first bucket reaches down to −∞: from 0 when its bound is above it;
        // nothing is interpolated in a bucket reaching +∞.
        if bucket.lower == f64::NEG_INFINITY {
            if bucket.upper <= 0.0 {
                return bucket.upper;
            }
            bucket.lower = 0.0;
        } else if bucket.upper == f64::INFINITY {
            return bucket.lower;
        }
    }
    let count = count.min(h.count);
    if count < rank {
        return if h.sum.is_nan() {
            f64::NAN
        } else {
            bucket.upper
        };
    }
    if forward {
        rank -= count - bucket.count;
    } else {
        rank = count - rank;
    }
    let fraction = rank / bucket.count;
    if h.is_custom() || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
        return bucket.lower + (bucket.upper - bucket.lower) * fraction;
    }
    let (lo, hi) = (bucket.lower.abs().log2(), bucket.upper.abs().log2());
    if bucket.lower > 0.0 {
        (lo + (hi - lo) * fraction).exp2()
    } else {
        -(hi + (lo - hi) * (1.0 - fraction)).exp2()
    }
}

/// Prometheus's `HistogramFraction`: the share of `h`'s observations between `lower`
/// and `upper`.
pub(super) fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> f64 {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for b in all_buckets(h) {
        let custom = h.is_custom();
        let zero = !custom && b.lower <= 0.0 && b.upper >= 0.0;
        let mut b = if zero { one_sided(h, b) } else { b };
        if custom && b.lower == f64::NEG_INFINITY && b.upper > 0.0 {
            b.lower = 0.0;
        }
        let interpolate = |v: f64| {
            if custom {
                // Nothing is interpolated in a bucket reaching ±∞: its observations lie
                // below any value in the lowest, above it in the highest.
                if b.lower == f64::NEG_INFINITY {
                    return rank + b.count;
                }
                if b.upper == f64::INFINITY {
                    return rank;
                }
            }
            if zero || custom {
                return rank + b.count * (v - b.lower) / (b.upper - b.lower);
            }
            let (lo, hi, lv) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
            let f = if v > 0.0 {
                (lv - lo) / (hi - lo)
            } else {
                1.0 - (lv - hi) / (lo - hi)
            };
            rank + b.count * f
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    // NaN observations (a NaN sum) lie in no bucket and in no fraction.
    let top = if h.sum.is_nan() {
        h.zero_count + h.positive.values().sum::<f64>() + h.negative.values().sum::<f64>()
    } else {
        h.count
    };
    if !lower_set || lower_rank > top {
        lower_rank = top;
    }
    if !upper_set || upper_rank > top {
        upper_rank = top;
    }
    (upper_rank - lower_rank) / h.count
}

/// `h` as Go's `FloatHistogram.String()` prints it (`count_values` labels with it):
/// `{count:20, sum:10, [-2,-1):2, [-0.001,0.001]:2, (1,2]:2}`, populated buckets only.
pub(crate) fn go_string(h: &FloatHistogram) -> String {
    use lookout_model::gofmt::go_float as g;
    let mut out = format!("{{count:{}, sum:{}", g(h.count), g(h.sum));
    for b in all_buckets(h) {
        if b.count == 0.0 {
            continue;
        }
        let (open, close) = match b.side {
            -1 => ('[', ')'),
            0 if !h.is_custom() => ('[', ']'),
            _ => ('(', ']'),
        };
        out.push_str(&format!(
            ", {open}{},{}{close}:{}",
            g(b.lower),
            g(b.upper),
            g(b.count)
        ));
    }
    out.push('}');
    out
}

/// The variance of `h`'s observations estimated from its buckets (each at its geometric
/// mean, the zero bucket at 0), around the mean `sum / count`.
fn variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut v, mut c) = (0.0, 0.0);
    for b in all_buckets(h) {
        if b.count == 0.0 {
            continue;
        }
        let x = if h.is_custom() {
            // The arithmetic mean of the bounds; the first bucket from 0 when above it.
            let lower = if b.lower == f64::NEG_INFINITY && b.upper > 0.0 {
                0.0
            } else {
                b.lower
            };
            (b.upper + lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let g = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 { -g } else { g }
        };
        let d = x - mean;
        (v, c) = kahan_inc(b.count * d * d, v, c);
    }
    (v + c) / h.count
}

/// A function of each histogram sample of its one vector argument; float samples give
/// nothing.
fn per_histogram(mut args: Args, i: usize, f: impl Fn(&FloatHistogram) -> f64) -> Result<Value> {
    Ok(Value::Vector(
        args.vector(i)?
            .into_iter()
            .filter_map(|s| {
                let v = f(s.h.as_deref()?);
                Some(VecSample {
                    v,
                    drop_name: true,
                    h: None,
                    ..s
                })
            })
            .collect(),
    ))
}

/// `histogram_count(v)`.
pub(super) fn count(_: &FnCall<'_, '_>, args: Args) -> Result<Value> {
    per_histogram(args, 0, |h| h.count)
}

/// `histogram_sum(v)`.
pub(super) fn sum(_: &FnCall<'_, '_>, args: Args) -> Result<Value> {
    per_histogram(args, 0, |h| h.sum)
}

/// `histogram_avg(v)`.
pub(super) fn avg(_: &FnCall<'_, '_>, args: Args) -> Result<Value> {
    per_histogram(args, 0, |h| h.sum / h.count)
}

/// `histogram_stddev(v)`.
pub(super) fn stddev(_: &FnCall<'_, '_>, args: Args) -> Result<Value> {
    per_histogram(args, 0, |h| variance(h).sqrt())
}

/// `histogram_stdvar(v)`.
pub(super) fn stdvar(_: &FnCall<'_, '_>, args: Args) -> Result<Value> {
    per_histogram(args, 0, variance)
}

/// Splits a vector into its float samples and native-histogram samples.
pub(super) fn split(v: Vec<VecSample>) -> (Vec<VecSample>, Vec<VecSample>) {
    v.into_iter().partition(|s| s.h.is_none())
}

/// A warning about series `labels`: `what` and its metric name, as Prometheus words it.
fn warn_named(ev: &Evaluator<'_>, what: &str, labels: &Labels, about: &Expr) {
    ev.warn_at(
        format!("{what} {:?}", labels.metric_name().unwrap_or("")),
        about,
    );
}

/// The warning for a series whose window mixes floats and histograms.
fn mixed(ev: &Evaluator<'_>, labels: &Labels, about: &Expr) {
    warn_named(
        ev,
        "encountered a mix of histograms and floats for metric name",
        labels,
        about,
    );
}

fn not_counter(ev: &Evaluator<'_>, labels: &Labels, about: &Expr) {
    warn_named(
        ev,
        "this native histogram metric is not a counter:",
        labels,
        about,
    );
}

fn not_gauge(ev: &Evaluator<'_>, labels: &Labels, about: &Expr) {
    warn_named(
        ev,
        "this native histogram metric is not a gauge:",
        labels,
        about,
    );
}

/// The warning for exponential and custom-bucket histograms in one computation.
pub(crate) fn mixed_schemas(ev: &Evaluator<'_>, labels: &Labels, about: &Expr) {
    warn_named(
        ev,
        "vector contains a mix of histograms with exponential and custom buckets schemas for metric name",
        labels,
        about,
    );
}

/// Prometheus's `histogramRate` without the extrapolation: the change from the first to
/// the last histogram, counter resets added back when `counter`; `None` (and a warning)
/// when exponential and custom-bucket histograms are mixed.
fn change(
    ev: &Evaluator<'_>,
    hs: &[HistogramSample],
    counter: bool,
    labels: &Labels,
    about: &Expr,
) -> Option<FloatHistogram> {
    let last = &hs[hs.len() - 1].h;
    let first = &hs[0].h;
    if counter && (first.hint == CounterResetHint::Gauge || last.hint == CounterResetHint::Gauge) {
        not_counter(ev, labels, about);
    }
    // A reset right after the first sample: its layout does not matter.
    let mut prev: FloatHistogram = (**first).clone();
    if counter && hs.len() > 1 && hs[1].h.detect_reset(&prev) {
        prev = FloatHistogram {
            schema: hs[1].h.schema,
            custom_values: hs[1].h.custom_values.clone(),
            ..FloatHistogram::default()
        };
    }
    if !prev.compatible(last) || hs[1..].iter().any(|p| !p.h.compatible(last)) {
        mixed_schemas(ev, labels, about);
        return None;
    }
    if prev.bounds_differ(last) || hs[1..].iter().any(|p| p.h.bounds_differ(last)) {
        ev.info_at(
            "mismatched custom buckets were reconciled during subtraction",
            about,
        );
    }
    let mut schema = prev.schema.min(last.schema);
    if counter {
        for p in &hs[1..hs.len() - 1] {
            if p.h.hint == CounterResetHint::Gauge {
                not_counter(ev, labels, about);
            }
            schema = schema.min(p.h.schema);
        }
    }
    let mut h = last.reduced(schema).sub(&prev);
    if counter {
        let mut before = &prev;
        for p in &hs[1..] {
            if p.h.detect_reset(before) {
                h = h.add(before);
            }
            before = &p.h;
        }
    } else if first.hint != CounterResetHint::Gauge || last.hint != CounterResetHint::Gauge {
        not_gauge(ev, labels, about);
    }
    h.hint = CounterResetHint::Gauge;
    Some(h.compacted())
}

/// A window function's value: a float or a histogram.
pub(super) enum Out {
    /// A float.
    F(f64),
    /// A native histogram.
    H(FloatHistogram),
}

/// Window function `f` over a series `s` whose window holds histogram samples (and
/// maybe floats), at `ts`; `None` where the function gives nothing (too few samples,
/// floats and histograms mixed where they cannot be, a function of floats only).
pub(super) fn window(
    ev: &Evaluator<'_>,
    f: WindowFn,
    w: &Window,
    s: &RangeSeries,
    ts: i64,
    param: f64,
    about: &Expr,
) -> Option<Out> {
    use WindowFn as W;
    let (fs, hs) = (&s.samples, &s.histograms);
    let both = !fs.is_empty() && !hs.is_empty();
    match f {
        W::Rate | W::Increase | W::Delta => {
            if both {
                mixed(ev, &s.labels, about);
                return None;
            }
            if hs.len() < 2 {
                return None;
            }
            let h = change(ev, hs, f != W::Delta, &s.labels, about)?;
            let (a, b) = (&hs[0], &hs[hs.len() - 1]);
            // A counter is not extrapolated below zero: its count is the measure.
            let counter = (f != W::Delta).then_some((a.h.count, h.count));
            let factor = extrapolation_factor(
                (w.start, w.end, w.range),
                (Sample::new(a.t, 0.0), Sample::new(b.t, 0.0), hs.len()),
                counter,
                f == W::Rate,
            );
            Some(Out::H(h.scaled(factor)))
        }
        W::Irate | W::Idelta => {
            let newest = |k: usize| newest_two(fs, hs).and_then(|two| two.get(k).copied());
            let (Some(a), Some(b)) = (newest(0), newest(1)) else {
                return None;
            };
            match (a, b) {
                (Point::F(_), Point::F(_)) => {
                    let (x, y) = (fs[fs.len() - 2], fs[fs.len() - 1]);
                    super::range::instant_value(&[x, y], f == W::Irate).map(Out::F)
                }
                (Point::H(ta, ha), Point::H(tb, hb)) => {
                    if tb == ta {
                        return None;
                    }
                    // irate across a reset takes the newer histogram as it is.
                    let subtract = f == W::Idelta || !hb.detect_reset(ha);
                    if subtract && !ha.compatible(hb) {
                        mixed_schemas(ev, &s.labels, about);
                        return None;
                    }
                    if subtract && ha.bounds_differ(hb) {
                        ev.info_at(
                            "mismatched custom buckets were reconciled during subtraction",
                            about,
                        );
                    }
                    let gauge =
                        ha.hint == CounterResetHint::Gauge || hb.hint == CounterResetHint::Gauge;
                    if f == W::Irate && gauge {
                        not_counter(ev, &s.labels, about);
                    }
                    let both_gauge =
                        ha.hint == CounterResetHint::Gauge && hb.hint == CounterResetHint::Gauge;
                    if f == W::Idelta && !both_gauge {
                        not_gauge(ev, &s.labels, about);
                    }
                    let mut h = if subtract { hb.sub(ha) } else { (**hb).clone() };
                    h.hint = CounterResetHint::Gauge;
                    if f == W::Irate {
                        h = h.divided((tb - ta) as f64 / 1000.0);
                    }
                    Some(Out::H(h.compacted()))
                }
                _ => {
                    mixed(ev, &s.labels, about);
                    None
                }
            }
        }
        W::Sum | W::Avg => {
            if both {
                mixed(ev, &s.labels, about);
                return None;
            }
            let mut acc = HistogramSum::new(&hs[0].h);
            for p in &hs[1..] {
                acc.add(&p.h);
            }
            if acc.incompatible {
                mixed_schemas(ev, &s.labels, about);
                return None;
            }
            if acc.reconciled {
                ev.info_at(
                    "mismatched custom buckets were reconciled during aggregation",
                    about,
                );
            }
            if acc.collided() {
                ev.warn_at(
                    "conflicting counter resets during histogram aggregation",
                    about,
                );
            }
            let total = if f == W::Avg {
                acc.mean(hs.len(), hs.iter().map(|p| &*p.h))
            } else {
                acc.total()
            };
            Some(Out::H(total.compacted()))
        }
        W::Count => Some(Out::F((fs.len() + hs.len()) as f64)),
        W::Present => Some(Out::F(1.0)),
        W::Last | W::First => {
            let fl = if f == W::Last { fs.last() } else { fs.first() };
            let hl = if f == W::Last { hs.last() } else { hs.first() };
            match (fl, hl) {
                (Some(x), Some(y)) if (f == W::Last) == (x.t > y.t) => Some(Out::F(x.v)),
                (_, Some(y)) => Some(Out::H((*y.h).clone())),
                (Some(x), None) => Some(Out::F(x.v)),
                (None, None) => None,
            }
        }
        W::Changes | W::Resets => {
            let points = merged(fs, hs);
            let n = points
                .windows(2)
                .filter(|p| match (p[0], p[1]) {
                    (Point::F(a), Point::F(b)) if f == W::Changes => {
                        !(a == b || (a.is_nan() && b.is_nan()))
                    }
                    (Point::F(a), Point::F(b)) => b < a,
                    (Point::H(_, a), Point::H(_, b)) if f == W::Changes => !a.identical(b),
                    (Point::H(_, a), Point::H(_, b)) => b.detect_reset(a),
                    // A change of kind is a change, and a reset.
                    _ => true,
                })
                .count();
            Some(Out::F(n as f64))
        }
        // The other functions take floats only.
        _ => {
            if fs.is_empty() {
                return None;
            }
            ev.info_at(
                format!(
                    "ignored histograms in a range containing both floats and histograms for metric name {:?}",
                    s.labels.metric_name().unwrap_or("")
                ),
                about,
            );
            super::range::window_fn(f, w, fs, ts, param, false).map(Out::F)
        }
    }
}

/// Whether a hint says "reset", and whether it says "no reset".
fn hint_flags(h: CounterResetHint) -> (bool, bool) {
    (
        h == CounterResetHint::Reset,
        h == CounterResetHint::NotReset,
    )
}

/// A compensated (Kahan) sum of histograms, as Prometheus sums them in `sum`, `avg`,
/// `sum_over_time` and `avg_over_time`: counts, sum and buckets each carry their
/// compensation while the layout stays; a change of schema or zero bucket folds the
/// compensation in and adds plainly.
pub(crate) struct HistogramSum {
    sum: FloatHistogram,
    comp: FloatHistogram,
    /// Which counter-reset hints the added histograms carried: "reset" and "no reset"
    /// both make the sum suspect ([`HistogramSum::collided`]).
    hints: (bool, bool),
    /// Exponential and custom-bucket histograms were mixed (the sum means nothing).
    pub(crate) incompatible: bool,
    /// Custom buckets with different bounds were added on the bounds they share.
    pub(crate) reconciled: bool,
}

impl HistogramSum {
    /// A sum starting at `h`.
    pub(crate) fn new(h: &FloatHistogram) -> Self {
        Self {
            sum: h.clone(),
            comp: FloatHistogram {
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                custom_values: h.custom_values.clone(),
                ..FloatHistogram::default()
            },
            hints: hint_flags(h.hint),
            incompatible: false,
            reconciled: false,
        }
    }

    /// Whether the added histograms said both "counter reset" and "no reset" (a gauge
    /// or an unknown hint in between does not hide it): Prometheus warns.
    pub(crate) fn collided(&self) -> bool {
        self.hints == (true, true)
    }

    /// Adds `h`.
    pub(crate) fn add(&mut self, h: &FloatHistogram) {
        let (r, n) = hint_flags(h.hint);
        self.hints = (self.hints.0 || r, self.hints.1 || n);
        if !self.sum.compatible(h) {
            self.incompatible = true;
            return;
        }
        self.reconciled |= self.sum.bounds_differ(h);
        if h.schema != self.sum.schema
            || h.zero_threshold != self.sum.zero_threshold
            || h.custom_values != self.sum.custom_values
        {
            let folded = self.total();
            self.sum = folded.add(h);
            self.comp = FloatHistogram {
                schema: self.sum.schema,
                zero_threshold: self.sum.zero_threshold,
                custom_values: self.sum.custom_values.clone(),
                ..FloatHistogram::default()
            };
            return;
        }
        let hint = self
            .sum
            .add(&FloatHistogram {
                hint: h.hint,
                ..FloatHistogram::default()
            })
            .hint;
        let (s, c) = (&mut self.sum, &mut self.comp);
        (s.count, c.count) = kahan_inc(h.count, s.count, c.count);
        (s.sum, c.sum) = kahan_inc(h.sum, s.sum, c.sum);
        (s.zero_count, c.zero_count) = kahan_inc(h.zero_count, s.zero_count, c.zero_count);
        for (mine, comp, theirs) in [
            (&mut s.positive, &mut c.positive, &h.positive),
            (&mut s.negative, &mut c.negative, &h.negative),
        ] {
            for (i, v) in theirs {
                let m = mine.entry(*i).or_insert(0.0);
                let k = comp.entry(*i).or_insert(0.0);
                (*m, *k) = kahan_inc(*v, *m, *k);
            }
        }
        s.hint = hint;
    }

    /// The mean of `inputs` (the histograms added, in order): the total over their
    /// count; where the total overflows (counts near the float range's end), each is
    /// divided first, which keeps the mean finite as Prometheus's does.
    pub(crate) fn mean<'a>(
        &self,
        n: usize,
        inputs: impl Iterator<Item = &'a FloatHistogram>,
    ) -> FloatHistogram {
        let n = n as f64;
        let total = self.total();
        let overflowed = |h: &FloatHistogram| {
            [h.count, h.sum, h.zero_count]
                .into_iter()
                .chain(h.positive.values().copied())
                .chain(h.negative.values().copied())
                .any(f64::is_infinite)
        };
        if !overflowed(&total) {
            return total.divided(n);
        }
        let mut parts = inputs.map(|h| h.divided(n));
        let Some(first) = parts.next() else {
            return total.divided(n);
        };
        let mut acc = HistogramSum::new(&first);
        for p in parts {
            acc.add(&p);
        }
        let mut mean = acc.total();
        mean.hint = total.hint;
        mean
    }

    /// The sum with its compensation applied.
    pub(crate) fn total(&self) -> FloatHistogram {
        let fold = |v: f64, c: f64| if v.is_infinite() { v } else { v + c };
        let mut out = self.sum.clone();
        out.count = fold(out.count, self.comp.count);
        out.sum = fold(out.sum, self.comp.sum);
        out.zero_count = fold(out.zero_count, self.comp.zero_count);
        for (side, comp) in [
            (&mut out.positive, &self.comp.positive),
            (&mut out.negative, &self.comp.negative),
        ] {
            for (i, c) in comp {
                if let Some(v) = side.get_mut(i) {
                    *v = fold(*v, *c);
                }
            }
        }
        out
    }
}

/// A sample of either kind, for functions that walk both in time order.
#[derive(Clone, Copy)]
enum Point<'a> {
    F(f64),
    H(i64, &'a Arc<FloatHistogram>),
}

/// Floats and histograms of a window in time order.
fn merged<'a>(fs: &[Sample], hs: &'a [HistogramSample]) -> Vec<Point<'a>> {
    let mut out = Vec::with_capacity(fs.len() + hs.len());
    let (mut i, mut j) = (0, 0);
    while i < fs.len() || j < hs.len() {
        if j >= hs.len() || (i < fs.len() && fs[i].t < hs[j].t) {
            out.push(Point::F(fs[i].v));
            i += 1;
        } else {
            out.push(Point::H(hs[j].t, &hs[j].h));
            j += 1;
        }
    }
    out
}

/// The two newest samples of either kind, oldest first.
fn newest_two<'a>(fs: &[Sample], hs: &'a [HistogramSample]) -> Option<[Point<'a>; 2]> {
    let fs = &fs[fs.len().saturating_sub(2)..];
    let hs = &hs[hs.len().saturating_sub(2)..];
    let all = merged(fs, hs);
    match all.as_slice() {
        [.., a, b] => Some([*a, *b]),
        _ => None,
    }
}

impl Out {
    /// The sample of `labels` with this value.
    pub(super) fn sample(self, labels: Labels, drop_name: bool) -> VecSample {
        match self {
            Out::F(v) => VecSample {
                labels,
                v,
                drop_name,
                h: None,
            },
            Out::H(h) => VecSample {
                drop_name,
                ..VecSample::histogram(labels, Arc::new(h))
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> FloatHistogram {
        FloatHistogram::parse(s).unwrap()
    }

    #[test]
    fn quantiles_interpolate_exponentially() {
        let x = h("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}");
        assert!((quantile(0.5, &x) - std::f64::consts::SQRT_2).abs() < 1e-12);
        assert_eq!(quantile(-1.0, &x), f64::NEG_INFINITY);
        assert!(quantile(0.5, &FloatHistogram::default()).is_nan());
        assert_eq!(fraction(1.0, 2.0, &x), 0.5);
        assert_eq!(fraction(0.0, 8.0, &x), 1.0);
        assert!(fraction(0.0, 8.0, &FloatHistogram::default()).is_nan());
        let z = h("{{schema:0 z_bucket:1 z_bucket_w:0.5 sum:0.25 count:1}}");
        // Only a zero bucket: linear between -0.5 and 0.5.
        assert_eq!(quantile(0.5, &z), 0.0);
        assert!(variance(&x) > 0.0);
    }
}
