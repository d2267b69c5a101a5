//! Range-vector functions: rates and deltas, `*_over_time`, smoothing.

use lookout_model::Sample;

use super::Window;
use crate::numeric::{avg_over, kahan_inc};

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
    let mut to_start = (first.t - w.start) as f64 / 1000.0;
    let mut to_end = (w.end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (s.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if is_counter {
        let mut to_zero = to_start;
        if result > 0.0 && first.v >= 0.0 {
            to_zero = sampled * (first.v / result);
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
        factor /= w.range as f64 / 1000.0;
    }
    Some(result * factor)
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

pub(super) fn over_time(name: &str, s: &[Sample]) -> f64 {
    match name {
        "avg_over_time" => avg_over(s),
        "min_over_time" => s
            .iter()
            .skip(1)
            .fold(s[0].v, |m, p| if m > p.v || m.is_nan() { p.v } else { m }),
        "max_over_time" => s
            .iter()
            .skip(1)
            .fold(s[0].v, |m, p| if m < p.v || m.is_nan() { p.v } else { m }),
        "sum_over_time" => {
            let (mut sum, mut c) = (0.0, 0.0);
            for p in s {
                (sum, c) = kahan_inc(p.v, sum, c);
            }
            if sum.is_infinite() { sum } else { sum + c }
        }
        "count_over_time" => s.len() as f64,
        "last_over_time" => s[s.len() - 1].v,
        "present_over_time" => 1.0,
        _ => f64::NAN,
    }
}

/// Holt's linear smoothing as Prometheus's `double_exponential_smoothing`.
pub(super) fn double_exponential_smoothing(x: &[Sample], sf: f64, tf: f64) -> f64 {
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
