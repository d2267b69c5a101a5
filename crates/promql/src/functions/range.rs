//! Range-vector functions: rates and deltas, `*_over_time`, smoothing.

use lookout_model::{Labels, Sample};
use promql_parser::parser::Expr;

use super::labels::absent_labels;
use super::{Args, FnCall, Window, check_quantile};
use crate::engine::Evaluator;
use crate::error::{Result, exec};
use crate::numeric::{avg_over, kahan_inc, linear_regression, stdvar_over};
use crate::value::{Value, VecSample};

/// The window functions: each a function of one series' samples in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowFn {
    /// `rate`.
    Rate,
    /// `increase`.
    Increase,
    /// `delta`.
    Delta,
    /// `irate`.
    Irate,
    /// `idelta`.
    Idelta,
    /// `avg_over_time`.
    Avg,
    /// `min_over_time`.
    Min,
    /// `max_over_time`.
    Max,
    /// `sum_over_time`.
    Sum,
    /// `count_over_time`.
    Count,
    /// `last_over_time`.
    Last,
    /// `present_over_time`.
    Present,
    /// `first_over_time`.
    First,
    /// `quantile_over_time`.
    Quantile,
    /// `stddev_over_time`.
    Stddev,
    /// `stdvar_over_time`.
    Stdvar,
    /// `mad_over_time`.
    Mad,
    /// `changes`.
    Changes,
    /// `resets`.
    Resets,
    /// `deriv`.
    Deriv,
    /// `predict_linear`.
    PredictLinear,
}

impl WindowFn {
    /// The position of the range-vector argument.
    pub(crate) fn range_arg(self) -> usize {
        usize::from(self == Self::Quantile)
    }

    /// The position of the scalar parameter, if there is one.
    pub(crate) fn param(self) -> Option<usize> {
        match self {
            Self::Quantile => Some(0),
            Self::PredictLinear => Some(1),
            _ => None,
        }
    }

    /// Whether it reads its series as counters (`rate`, `increase`).
    pub(crate) fn is_counter(self) -> bool {
        matches!(self, Self::Rate | Self::Increase)
    }
}

/// The value of `f` over one series' samples in `w` (never empty), evaluated at `ts` with
/// scalar parameter `param`; `None` where the function needs more samples. `no_resets` as
/// for [`extrapolated_rate`].
pub(super) fn window_fn(
    f: WindowFn,
    w: &Window,
    x: &[Sample],
    ts: i64,
    param: f64,
    no_resets: bool,
) -> Option<f64> {
    use WindowFn as W;
    Some(match f {
        W::Rate => return extrapolated_rate(w, x, true, true, no_resets),
        W::Increase => return extrapolated_rate(w, x, true, false, no_resets),
        W::Delta => return extrapolated_rate(w, x, false, false, false),
        W::Irate => return instant_value(x, true),
        W::Idelta => return instant_value(x, false),
        W::First => x[0].v,
        W::Quantile => crate::aggregate::quantile(param, x.iter().map(|p| p.v).collect()),
        W::Stdvar => stdvar_over(x),
        W::Stddev => stdvar_over(x).sqrt(),
        // A NaN makes the deviation NaN rather than being sorted away.
        W::Mad if x.iter().any(|p| p.v.is_nan()) => f64::NAN,
        W::Mad => {
            let med = crate::aggregate::quantile(0.5, x.iter().map(|p| p.v).collect());
            crate::aggregate::quantile(0.5, x.iter().map(|p| (p.v - med).abs()).collect())
        }
        W::Changes => x
            .windows(2)
            .filter(|w| !(w[0].v == w[1].v || (w[0].v.is_nan() && w[1].v.is_nan())))
            .count() as f64,
        W::Resets => x.windows(2).filter(|w| w[1].v < w[0].v).count() as f64,
        W::Deriv if x.len() >= 2 => linear_regression(x, x[0].t).0,
        W::PredictLinear if x.len() >= 2 => {
            let (slope, intercept) = linear_regression(x, ts);
            slope * param + intercept
        }
        W::Deriv | W::PredictLinear => return None,
        W::Avg => avg_over(x),
        W::Min => x
            .iter()
            .skip(1)
            .fold(x[0].v, |m, p| if m > p.v || m.is_nan() { p.v } else { m }),
        W::Max => x
            .iter()
            .skip(1)
            .fold(x[0].v, |m, p| if m < p.v || m.is_nan() { p.v } else { m }),
        W::Sum => {
            let (mut sum, mut c) = (0.0, 0.0);
            for p in x {
                (sum, c) = kahan_inc(p.v, sum, c);
            }
            if sum.is_infinite() { sum } else { sum + c }
        }
        W::Count => x.len() as f64,
        W::Last => x[x.len() - 1].v,
        W::Present => 1.0,
    })
}

/// Whether a metric name looks like a counter's (Prometheus's possible-non-counter check).
fn counter_like(name: &str) -> bool {
    ["_total", "_sum", "_count", "_bucket"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Prometheus's possible-non-counter info for `rate`/`increase` over a series whose name
/// does not look like a counter's.
pub(super) fn note_non_counter(ev: &Evaluator<'_>, f: WindowFn, labels: &Labels, about: &Expr) {
    if f.is_counter()
        && let Some(n) = labels.metric_name()
        && !counter_like(n)
    {
        ev.info_at(format!(
            "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"
        ), about);
    }
}

/// A window function at one time, over its evaluated arguments.
pub(super) fn window_call(
    c: &FnCall<'_, '_>,
    f: WindowFn,
    keeps_name: bool,
    mut args: Args,
) -> Result<Value> {
    let param = match f.param().filter(|i| *i < args.len()) {
        Some(i) => args.scalar(i)?,
        None => 0.0,
    };
    if f == WindowFn::Quantile {
        check_quantile(c.ev, param, &c.exprs[0]);
    }
    let w = args.matrix(f.range_arg())?;
    let about = &c.exprs[f.range_arg()];
    let mut out = Vec::with_capacity(w.series.len());
    for s in &w.series {
        if !s.samples.is_empty() {
            note_non_counter(c.ev, f, &s.labels, about);
        }
        let drop_name = !keeps_name || s.drop_name;
        if !s.histograms.is_empty() {
            if let Some(v) = super::native::window(c.ev, f, &w, s, c.ts, param, about) {
                out.push(v.sample(s.labels.clone(), drop_name));
            }
        } else if !s.samples.is_empty()
            && let Some(v) = window_fn(f, &w, &s.samples, c.ts, param, false)
        {
            out.push(VecSample {
                labels: s.labels.clone(),
                v,
                drop_name,
                h: None,
            });
        }
    }
    Ok(Value::Vector(out))
}

/// `absent_over_time(v[range])`.
pub(super) fn absent_over_time(c: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let w = args.matrix(0)?;
    Ok(Value::Vector(if w.series.is_empty() {
        vec![VecSample::new(absent_labels(&c.exprs[0]), 1.0)]
    } else {
        Vec::new()
    }))
}

/// `double_exponential_smoothing(v[range], sf, tf)`.
pub(super) fn double_exponential_smoothing(_: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let w = args.matrix(0)?;
    let sf = args.scalar(1)?;
    let tf = args.scalar(2)?;
    if sf <= 0.0 || sf >= 1.0 {
        return exec(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        ));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return exec(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        ));
    }
    Ok(Value::Vector(
        w.series
            .iter()
            .filter(|s| s.samples.len() >= 2)
            .map(|s| VecSample {
                labels: s.labels.clone(),
                v: holt(&s.samples, sf, tf),
                drop_name: true,
                h: None,
            })
            .collect(),
    ))
}

/// Prometheus's `extrapolatedRate` for float samples.
///
/// `no_resets` says the caller knows the window holds no counter reset (then the scan for
/// them is skipped; the result is the same).
pub(super) fn extrapolated_rate(
    w: &Window,
    s: &[Sample],
    is_counter: bool,
    is_rate: bool,
    no_resets: bool,
) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let first = s[0];
    let last = s[s.len() - 1];
    let mut result = last.v - first.v;
    if is_counter && !no_resets {
        let mut prev = first.v;
        for p in &s[1..] {
            if p.v < prev {
                result += prev;
            }
            prev = p.v;
        }
    }
    Some(extrapolate(
        (w.start, w.end, w.range),
        (first, last, s.len()),
        result,
        is_counter,
        is_rate,
    ))
}

/// Prometheus's extrapolation of `result`, the change from `first` to `last` over `n`
/// samples (at least 2) in the window `(start, end]` of `range` ms, to the whole window
/// (per second when `is_rate`).
pub(super) fn extrapolate(
    window: (i64, i64, i64),
    (first, last, n): (Sample, Sample, usize),
    result: f64,
    is_counter: bool,
    is_rate: bool,
) -> f64 {
    let counter = is_counter.then_some((first.v, result));
    result * extrapolation_factor(window, (first, last, n), counter, is_rate)
}

/// What [`extrapolate`] multiplies the change by. `counter`, for a float counter, is its
/// first value and the change: a counter is not extrapolated below zero (histograms are
/// not held to that, as in Prometheus).
pub(super) fn extrapolation_factor(
    (start, end, range): (i64, i64, i64),
    (first, last, n): (Sample, Sample, usize),
    counter: Option<(f64, f64)>,
    is_rate: bool,
) -> f64 {
    let mut to_start = (first.t - start) as f64 / 1000.0;
    let mut to_end = (end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (n - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if let Some((first_v, result)) = counter {
        let mut to_zero = to_start;
        if result > 0.0 && first_v >= 0.0 {
            to_zero = sampled * (first_v / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    factor
}

/// Prometheus's `instantValue` (irate, idelta).
pub(super) fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (a, b) = (s[s.len() - 2], s[s.len() - 1]);
    let interval = b.t - a.t;
    if interval == 0 {
        return None;
    }
    let mut v = b.v;
    if !is_rate || b.v >= a.v || b.v.is_nan() || a.v.is_nan() {
        v = b.v - a.v;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Holt's linear smoothing as Prometheus's `double_exponential_smoothing`.
fn holt(x: &[Sample], sf: f64, tf: f64) -> f64 {
    let trend = |i: usize, s0: f64, s1: f64, b: f64| {
        if i == 0 {
            b
        } else {
            tf * (s1 - s0) + (1.0 - tf) * b
        }
    };
    let (mut s0, mut s1) = (0.0, x[0].v);
    let mut b = x[1].v - x[0].v;
    for (i, p) in x.iter().enumerate().skip(1) {
        let xs = sf * p.v;
        b = trend(i - 1, s0, s1, b);
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, xs + y);
    }
    s1
}
