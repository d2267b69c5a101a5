//! PromQL functions. Each follows the Prometheus function of the same name
//! (`promql/functions.go`): same edge cases, same dropping of the metric name.

use lookout_model::Sample;
use promql_parser::parser::{Call, Expr};

use crate::engine::{Evaluator, offset_ms};
use crate::error::{Result, exec};
use crate::value::{RangeSeries, Value, VecSample};

/// Neumaier-compensated addition, as Prometheus's `kahanSumInc`.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Whether a query's result order is meaningful (`sort`, `sort_desc` at the top).
pub(crate) fn is_ordered(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => is_ordered(&p.expr),
        Expr::Call(c) => matches!(c.func.name, "sort" | "sort_desc"),
        _ => false,
    }
}

/// A range-vector argument with the window it was taken over.
struct Window {
    series: Vec<RangeSeries>,
    start: i64,
    end: i64,
    range: i64,
}

fn matrix_arg(ev: &Evaluator<'_>, e: &Expr, ts: i64) -> Result<Window> {
    match e {
        Expr::Paren(p) => matrix_arg(ev, &p.expr, ts),
        Expr::MatrixSelector(ms) => {
            let end = ev.at_time(&ms.vs.at).unwrap_or(ts) - offset_ms(&ms.vs.offset);
            let range = ms.range.as_millis() as i64;
            Ok(Window {
                series: ev.select_range(&ms.vs, end, range),
                start: end - range,
                end,
                range,
            })
        }
        Expr::Subquery(sq) => {
            let end = ev.at_time(&sq.at).unwrap_or(ts) - offset_ms(&sq.offset);
            let range = sq.range.as_millis() as i64;
            Ok(Window {
                series: ev.subquery(sq, ts)?,
                start: end - range,
                end,
                range,
            })
        }
        _ => exec("expected a range vector argument"),
    }
}

fn vector_arg(ev: &Evaluator<'_>, e: &Expr, ts: i64) -> Result<Vec<VecSample>> {
    match ev.eval(e, ts)? {
        Value::Vector(v) => Ok(v),
        other => exec(format!(
            "expected an instant vector, got {}",
            other.type_name()
        )),
    }
}

fn scalar_arg(ev: &Evaluator<'_>, e: &Expr, ts: i64) -> Result<f64> {
    match ev.eval(e, ts)? {
        Value::Scalar(v) => Ok(v),
        other => exec(format!("expected a scalar, got {}", other.type_name())),
    }
}

/// Prometheus's `extrapolatedRate` for float samples.
fn extrapolated_rate(w: &Window, s: &[Sample], is_counter: bool, is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let first = s[0];
    let last = s[s.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
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
fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
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

fn avg_over(s: &[Sample]) -> f64 {
    let (mut sum, mut count) = (s[0].v, 1.0f64);
    let (mut mean, mut c) = (0.0f64, 0.0f64);
    let mut incremental = false;
    for (i, p) in s[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(p.v, sum, c);
            if !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(p.v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn over_time(name: &str, s: &[Sample]) -> f64 {
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

fn math(name: &str, v: f64) -> Option<f64> {
    Some(match name {
        "abs" => v.abs(),
        "ceil" => v.ceil(),
        "floor" => v.floor(),
        "exp" => v.exp(),
        "sqrt" => v.sqrt(),
        "ln" => v.ln(),
        "log2" => v.log2(),
        "log10" => v.log10(),
        "sgn" => {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }
        _ => return None,
    })
}

/// Go's `math.Max`: NaN if either is NaN.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN if either is NaN.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn map_vector(v: Vec<VecSample>, f: impl Fn(f64) -> f64) -> Vec<VecSample> {
    v.into_iter()
        .map(|s| VecSample {
            labels: s.labels.without_metric_name(),
            v: f(s.v),
        })
        .collect()
}

/// Evaluates a function call at `ts`.
pub(crate) fn call(ev: &Evaluator<'_>, c: &Call, ts: i64) -> Result<Value> {
    let name = c.func.name;
    let args = &c.args.args;
    let out = match name {
        "rate" | "increase" | "delta" | "irate" | "idelta" => {
            let w = matrix_arg(ev, &args[0], ts)?;
            let mut out = Vec::with_capacity(w.series.len());
            for s in &w.series {
                let v = match name {
                    "rate" => extrapolated_rate(&w, &s.samples, true, true),
                    "increase" => extrapolated_rate(&w, &s.samples, true, false),
                    "delta" => extrapolated_rate(&w, &s.samples, false, false),
                    "irate" => instant_value(&s.samples, true),
                    _ => instant_value(&s.samples, false),
                };
                if let Some(v) = v {
                    out.push(VecSample {
                        labels: s.labels.without_metric_name(),
                        v,
                    });
                }
            }
            out
        }
        "avg_over_time" | "min_over_time" | "max_over_time" | "sum_over_time"
        | "count_over_time" | "last_over_time" | "present_over_time" => {
            let w = matrix_arg(ev, &args[0], ts)?;
            w.series
                .iter()
                .map(|s| VecSample {
                    labels: if name == "last_over_time" {
                        s.labels.clone()
                    } else {
                        s.labels.without_metric_name()
                    },
                    v: over_time(name, &s.samples),
                })
                .collect()
        }
        "time" => return Ok(Value::Scalar(ts as f64 / 1000.0)),
        "pi" => return Ok(Value::Scalar(std::f64::consts::PI)),
        "vector" => vec![VecSample {
            labels: lookout_model::Labels::empty(),
            v: scalar_arg(ev, &args[0], ts)?,
        }],
        "scalar" => {
            let v = vector_arg(ev, &args[0], ts)?;
            return Ok(Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }));
        }
        "timestamp" => {
            let mut inner = &*args[0];
            while let Expr::Paren(p) = inner {
                inner = &p.expr;
            }
            if let Expr::VectorSelector(vs) = inner {
                let (v, times) = ev.select_instant(vs, ts, true);
                v.into_iter()
                    .zip(times)
                    .map(|(s, t)| VecSample {
                        labels: s.labels.without_metric_name(),
                        v: t as f64 / 1000.0,
                    })
                    .collect()
            } else {
                map_vector(vector_arg(ev, inner, ts)?, |_| ts as f64 / 1000.0)
            }
        }
        "clamp_min" | "clamp_max" => {
            let v = vector_arg(ev, &args[0], ts)?;
            let b = scalar_arg(ev, &args[1], ts)?;
            if name == "clamp_min" {
                map_vector(v, |x| go_max(b, x))
            } else {
                map_vector(v, |x| go_min(b, x))
            }
        }
        "clamp" => {
            let v = vector_arg(ev, &args[0], ts)?;
            let lo = scalar_arg(ev, &args[1], ts)?;
            let hi = scalar_arg(ev, &args[2], ts)?;
            if hi < lo {
                Vec::new()
            } else {
                map_vector(v, |x| go_max(lo, go_min(hi, x)))
            }
        }
        "round" => {
            let v = vector_arg(ev, &args[0], ts)?;
            let to = match args.get(1) {
                Some(a) => scalar_arg(ev, a, ts)?,
                None => 1.0,
            };
            let inv = 1.0 / to;
            map_vector(v, |x| (x * inv + 0.5).floor() / inv)
        }
        "sort" | "sort_desc" => {
            let mut v = vector_arg(ev, &args[0], ts)?;
            // NaN sorts last in both directions, as in Prometheus.
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if name == "sort" => a.v.total_cmp(&b.v),
                _ => b.v.total_cmp(&a.v),
            });
            return Ok(Value::Vector(v));
        }
        other => match math(other, 0.0) {
            Some(_) => {
                let v = vector_arg(ev, &args[0], ts)?;
                map_vector(v, |x| math(other, x).unwrap_or(f64::NAN))
            }
            None => return exec(format!("function {other}() is not supported yet")),
        },
    };
    ev.check_unique(&out)?;
    Ok(Value::Vector(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kahan_keeps_small_terms() {
        let (mut s, mut c) = (0.0, 0.0);
        for v in [1e16, 1.0, -1e16] {
            (s, c) = kahan_inc(v, s, c);
        }
        assert_eq!(s + c, 1.0);
    }

    #[test]
    fn irate_handles_counter_reset() {
        let s = [Sample::new(0, 10.0), Sample::new(10_000, 4.0)];
        assert_eq!(instant_value(&s, true), Some(0.4));
        assert_eq!(instant_value(&s, false), Some(-6.0));
    }
}
