//! PromQL functions. Each follows the Prometheus function of the same name
//! (`promql/functions.go`): same edge cases, same dropping of the metric name.

mod date;
mod histogram;
mod labels;
mod math;
mod range;

use lookout_model::Sample;
use lookout_model::gofmt::format_f;
use promql_parser::parser::{Call, Expr};

use crate::engine::{Evaluator, NodeId, offset_ms};
use crate::error::{Result, exec};
use crate::value::{RangeSeries, Value, VecSample};

use crate::numeric::{go_max, go_min, linear_regression, stdvar_over};
use date::{civil, days_in_month};
use histogram::{
    bucket_fraction, bucket_quantile, check_buckets, histogram_groups, histogram_quantile,
};
use labels::{absent_labels, natural_less};
use math::math;
use range::{double_exponential_smoothing, extrapolated_rate, instant_value, over_time};

/// Whether the expression is a sort function at the top.
pub(crate) fn is_sort(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => is_sort(&p.expr),
        Expr::Call(c) => matches!(
            c.func.name,
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
        ),
        _ => false,
    }
}

/// Warns when a quantile is outside [0, 1] (as Prometheus's `NewInvalidQuantileWarning`).
pub(crate) fn check_quantile(ev: &Evaluator<'_>, q: f64, about: &Expr) {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        ev.warn_at(
            format!(
                "quantile value should be between 0 and 1, got {}",
                format_f(q)
            ),
            about,
        );
    }
}

/// Whether a metric name looks like a counter's (Prometheus's possible-non-counter check).
fn counter_like(name: &str) -> bool {
    ["_total", "_sum", "_count", "_bucket"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Whether a query's result order is meaningful (`sort`, `sort_desc` at the top).
pub(crate) fn is_ordered(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => is_ordered(&p.expr),
        Expr::Call(c) => matches!(
            c.func.name,
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
        ),
        Expr::Aggregate(a) => matches!(
            a.op.id(),
            promql_parser::parser::token::T_TOPK | promql_parser::parser::token::T_BOTTOMK
        ),
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

fn string_arg(ev: &Evaluator<'_>, e: &Expr, ts: i64) -> Result<String> {
    match ev.eval(e, ts)? {
        Value::String(s) => Ok(s),
        other => exec(format!("expected a string, got {}", other.type_name())),
    }
}

fn map_vector(v: Vec<VecSample>, f: impl Fn(f64) -> f64) -> Vec<VecSample> {
    v.into_iter()
        .map(|s| VecSample {
            labels: s.labels.clone(),
            drop_name: true,
            v: f(s.v),
        })
        .collect()
}

/// Range-vector functions whose value depends only on one series' window; a range query
/// computes them for all steps at once ([`batched`]).
const WINDOW_FNS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "present_over_time",
    "first_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "mad_over_time",
    "changes",
    "resets",
    "deriv",
    "predict_linear",
];

/// The position of the range-vector argument of window function `name`.
fn window_arg(name: &str) -> usize {
    usize::from(name == "quantile_over_time")
}

/// The scalar parameter of window function `name`, if it has one.
fn window_param(name: &str, args: &[Box<Expr>]) -> Option<usize> {
    match name {
        "quantile_over_time" => Some(0),
        "predict_linear" => Some(1),
        _ => None,
    }
    .filter(|i| *i < args.len())
}

/// The value of window function `name` (one of [`WINDOW_FNS`]) over one series' samples
/// in `w` (never empty), evaluated at `ts` with scalar parameter `param`; `None` where
/// the function needs more samples. `no_resets` as for [`extrapolated_rate`].
fn window_fn(
    name: &str,
    w: &Window,
    x: &[Sample],
    ts: i64,
    param: f64,
    no_resets: bool,
) -> Option<f64> {
    match name {
        "rate" => extrapolated_rate(w, x, true, true, no_resets),
        "increase" => extrapolated_rate(w, x, true, false, no_resets),
        "delta" => extrapolated_rate(w, x, false, false, false),
        "irate" => instant_value(x, true),
        "idelta" => instant_value(x, false),
        "first_over_time" => Some(x[0].v),
        "quantile_over_time" => Some(crate::aggregate::quantile(
            param,
            x.iter().map(|p| p.v).collect(),
        )),
        "stdvar_over_time" => Some(stdvar_over(x)),
        "stddev_over_time" => Some(stdvar_over(x).sqrt()),
        "mad_over_time" => {
            let med = crate::aggregate::quantile(0.5, x.iter().map(|p| p.v).collect());
            Some(crate::aggregate::quantile(
                0.5,
                x.iter().map(|p| (p.v - med).abs()).collect(),
            ))
        }
        "changes" => Some(
            x.windows(2)
                .filter(|w| !(w[0].v == w[1].v || (w[0].v.is_nan() && w[1].v.is_nan())))
                .count() as f64,
        ),
        "resets" => Some(x.windows(2).filter(|w| w[1].v < w[0].v).count() as f64),
        "deriv" if x.len() >= 2 => Some(linear_regression(x, x[0].t).0),
        "predict_linear" if x.len() >= 2 => {
            let (slope, intercept) = linear_regression(x, ts);
            Some(slope * param + intercept)
        }
        "deriv" | "predict_linear" => None,
        _ => Some(over_time(name, x)),
    }
}

/// Whether an expression has the same value at every step (numbers and arithmetic on
/// them), so a batched evaluation may compute it once.
fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::NumberLiteral(_) => true,
        Expr::Paren(p) => is_constant(&p.expr),
        Expr::Unary(u) => is_constant(&u.expr),
        Expr::Binary(b) => is_constant(&b.lhs) && is_constant(&b.rhs),
        _ => false,
    }
}

/// Whether window function `name` keeps the metric name (`last_over_time`,
/// `first_over_time`).
fn keeps_name(name: &str) -> bool {
    matches!(name, "last_over_time" | "first_over_time")
}

/// Prometheus's possible-non-counter info for `rate`/`increase` over a series whose name
/// does not look like a counter's.
fn note_non_counter(ev: &Evaluator<'_>, name: &str, labels: &lookout_model::Labels, about: &Expr) {
    if matches!(name, "rate" | "increase")
        && let Some(n) = labels.metric_name()
        && !counter_like(n)
    {
        ev.info_at(format!(
            "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"
        ), about);
    }
}

/// In a range query, evaluates `f(selector[range])` for every step in one pass per series
/// (sliding the window instead of searching it at each step, as Prometheus's `rangeEval`
/// does for matrix selectors), caches the steps and returns the one at `ts`. `None` when
/// the call does not qualify (instant query, `@`, subquery argument, time off the grid).
fn batched(ev: &Evaluator<'_>, c: &Call, ts: i64) -> Option<Vec<VecSample>> {
    let name = c.func.name;
    // The grid of the innermost subquery being evaluated, or the range query's own.
    let grid = ev.grids.borrow().last().copied();
    let (g_start, g_end, g_step) = match grid {
        Some(g) => g,
        None if ev.step > 0 => (ev.start, ev.end, ev.step),
        None => return None,
    };
    if !WINDOW_FNS.contains(&name) || ts < g_start || ts > g_end || (ts - g_start) % g_step != 0 {
        return None;
    }
    let args = &c.args.args;
    let mut arg = &**args.get(window_arg(name))?;
    while let Expr::Paren(p) = arg {
        arg = &p.expr;
    }
    let Expr::MatrixSelector(ms) = arg else {
        return None;
    };
    if ms.vs.at.is_some() {
        return None;
    }
    let node = NodeId::of(c);
    if let Some(v) = ev.cache.range_steps.borrow_mut().remove(&(node, ts)) {
        return Some(v);
    }
    let param = match window_param(name, args) {
        Some(i) if !is_constant(&args[i]) => return None,
        Some(i) => match scalar_arg(ev, &args[i], ts) {
            Ok(v) => v,
            Err(_) => return None,
        },
        None => 0.0,
    };
    if name == "quantile_over_time" {
        check_quantile(ev, param, &args[0]);
    }
    let off = offset_ms(&ms.vs.offset);
    let range = ms.range.as_millis() as i64;
    let steps: Vec<i64> = (0..)
        .map(|k| g_start + k * g_step)
        .take_while(|t| *t <= g_end)
        .collect();
    let mut per_step: Vec<Vec<VecSample>> = steps.iter().map(|_| Vec::new()).collect();
    let mut buf: Vec<Sample> = Vec::new();
    let counter = matches!(name, "rate" | "increase");
    let mut drops: Vec<u32> = Vec::new();
    for s in ev.series_of(&ms.vs) {
        note_non_counter(ev, name, &s.labels, &args[window_arg(name)]);
        let smp = &s.samples;
        let has_stale = smp.iter().any(|x| lookout_model::is_stale_nan(x.v));
        // drops[i]: counter resets among samples 1..=i, so a window's count is one
        // subtraction and reset-free windows skip the scan.
        drops.clear();
        if counter && !has_stale {
            let mut n = 0u32;
            drops.push(0);
            for p in smp.windows(2) {
                n += u32::from(p[1].v < p[0].v);
                drops.push(n);
            }
        }
        let (mut a, mut b) = (0usize, 0usize);
        for (i, &t) in steps.iter().enumerate() {
            let end = t - off;
            let start = end - range;
            while b < smp.len() && smp[b].t <= end {
                b += 1;
            }
            while a < b && smp[a].t <= start {
                a += 1;
            }
            let window: &[Sample] = if has_stale {
                buf.clear();
                buf.extend(
                    smp[a..b]
                        .iter()
                        .filter(|x| !lookout_model::is_stale_nan(x.v)),
                );
                &buf
            } else {
                &smp[a..b]
            };
            if window.is_empty() {
                continue;
            }
            let w = Window {
                series: Vec::new(),
                start,
                end,
                range,
            };
            let no_resets = !drops.is_empty() && drops[b - 1] == drops[a];
            if let Some(v) = window_fn(name, &w, window, t, param, no_resets) {
                per_step[i].push(VecSample {
                    labels: s.labels.clone(),
                    v,
                    drop_name: !keeps_name(name),
                });
            }
        }
    }
    let mut current = Vec::new();
    let mut cache = ev.cache.range_steps.borrow_mut();
    for (t, v) in steps.into_iter().zip(per_step) {
        if t == ts {
            current = v;
        } else {
            cache.insert((node, t), v);
        }
    }
    Some(current)
}

/// Evaluates a function call at `ts`.
pub(crate) fn call(ev: &Evaluator<'_>, c: &Call, ts: i64) -> Result<Value> {
    if let Some(v) = batched(ev, c, ts) {
        return Ok(Value::Vector(v));
    }
    let name = c.func.name;
    let args = &c.args.args;
    let out = match name {
        n if WINDOW_FNS.contains(&n) => {
            let param = match window_param(name, args) {
                Some(i) => scalar_arg(ev, &args[i], ts)?,
                None => 0.0,
            };
            if name == "quantile_over_time" {
                check_quantile(ev, param, &args[0]);
            }
            let w = matrix_arg(ev, &args[window_arg(name)], ts)?;
            let mut out = Vec::with_capacity(w.series.len());
            for s in &w.series {
                note_non_counter(ev, name, &s.labels, &args[window_arg(name)]);
                if let Some(v) = window_fn(name, &w, &s.samples, ts, param, false) {
                    out.push(VecSample {
                        labels: s.labels.clone(),
                        v,
                        drop_name: !keeps_name(name) || s.drop_name,
                    });
                }
            }
            out
        }
        "absent_over_time" => {
            let w = matrix_arg(ev, &args[0], ts)?;
            if w.series.is_empty() {
                vec![VecSample::new(absent_labels(&args[0]), 1.0)]
            } else {
                Vec::new()
            }
        }
        "absent" => {
            let v = vector_arg(ev, &args[0], ts)?;
            if v.is_empty() {
                vec![VecSample::new(absent_labels(&args[0]), 1.0)]
            } else {
                Vec::new()
            }
        }
        "label_replace" => {
            let v = vector_arg(ev, &args[0], ts)?;
            let dst = string_arg(ev, &args[1], ts)?;
            let repl = string_arg(ev, &args[2], ts)?;
            let src = string_arg(ev, &args[3], ts)?;
            let re_s = string_arg(ev, &args[4], ts)?;
            let re = ev.regex(&format!("^(?s:{re_s})$")).ok_or_else(|| {
                crate::Error::Execution(format!(
                    "invalid regular expression in label_replace(): {re_s}"
                ))
            })?;
            if !lookout_model::is_valid_label_name(&dst) {
                return exec(format!(
                    "invalid destination label name in label_replace(): {dst}"
                ));
            }
            // The arguments are string literals: each input series gets the same labels
            // at every step.
            let node = NodeId::of(c);
            v.into_iter()
                .map(|s| {
                    let labels = ev.memo_labels((node, s.labels.clone(), None), || {
                        match re.captures(s.labels.get_or_empty(&src)) {
                            Some(c) => {
                                let mut out = String::new();
                                c.expand(&repl, &mut out);
                                s.labels.with(&dst, &out)
                            }
                            None => s.labels.clone(),
                        }
                    });
                    VecSample {
                        labels,
                        v: s.v,
                        drop_name: s.drop_name && dst != lookout_model::METRIC_NAME_LABEL,
                    }
                })
                .collect()
        }
        "label_join" => {
            let v = vector_arg(ev, &args[0], ts)?;
            let dst = string_arg(ev, &args[1], ts)?;
            let sep = string_arg(ev, &args[2], ts)?;
            let mut srcs = Vec::new();
            for a in &args[3..] {
                let n = string_arg(ev, a, ts)?;
                if !lookout_model::is_valid_label_name(&n) {
                    return exec(format!("invalid source label name in label_join(): {n}"));
                }
                srcs.push(n);
            }
            if !lookout_model::is_valid_label_name(&dst) {
                return exec(format!(
                    "invalid destination label name in label_join(): {dst}"
                ));
            }
            let node = NodeId::of(c);
            v.into_iter()
                .map(|s| {
                    let labels = ev.memo_labels((node, s.labels.clone(), None), || {
                        let joined: Vec<&str> =
                            srcs.iter().map(|n| s.labels.get_or_empty(n)).collect();
                        s.labels.with(&dst, &joined.join(&sep))
                    });
                    VecSample {
                        labels,
                        v: s.v,
                        drop_name: s.drop_name && dst != lookout_model::METRIC_NAME_LABEL,
                    }
                })
                .collect()
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = vector_arg(ev, &args[0], ts)?;
            let mut names = Vec::new();
            for a in &args[1..] {
                names.push(string_arg(ev, a, ts)?);
            }
            v.sort_by(|a, b| {
                for n in &names {
                    let ord = natural_less(a.labels.get_or_empty(n), b.labels.get_or_empty(n));
                    if ord != std::cmp::Ordering::Equal {
                        return if name == "sort_by_label" {
                            ord
                        } else {
                            ord.reverse()
                        };
                    }
                }
                let ord = a.labels.cmp(&b.labels);
                if name == "sort_by_label" {
                    ord
                } else {
                    ord.reverse()
                }
            });
            return Ok(Value::Vector(v));
        }
        "histogram_fraction" => {
            let lo = scalar_arg(ev, &args[0], ts)?;
            let hi = scalar_arg(ev, &args[1], ts)?;
            let v = vector_arg(ev, &args[2], ts)?;
            check_buckets(ev, &v, &args[2]);
            histogram_groups(v)
                .into_iter()
                .map(|(k, b)| VecSample {
                    labels: k,
                    v: bucket_fraction(lo, hi, b),
                    drop_name: true,
                })
                .collect()
        }
        "histogram_quantiles" => {
            let v = vector_arg(ev, &args[0], ts)?;
            let label = string_arg(ev, &args[1], ts)?;
            let mut qs = Vec::new();
            for a in &args[2..] {
                qs.push(scalar_arg(ev, a, ts)?);
            }
            for (q, a) in qs.iter().zip(&args[2..]) {
                check_quantile(ev, *q, a);
            }
            check_buckets(ev, &v, &args[0]);
            let mut out = Vec::new();
            for (k, b) in histogram_groups(v) {
                for q in &qs {
                    let mut qs_str = format_f(*q);
                    if !qs_str.contains(['.', 'e', 'I', 'N']) {
                        qs_str.push_str(".0");
                    }
                    out.push(VecSample {
                        labels: k.with(&label, &qs_str),
                        v: bucket_quantile(ev, k.metric_name(), *q, b.clone(), &args[0]),
                        drop_name: true,
                    });
                }
            }
            out
        }
        "double_exponential_smoothing" => {
            let w = matrix_arg(ev, &args[0], ts)?;
            let sf = scalar_arg(ev, &args[1], ts)?;
            let tf = scalar_arg(ev, &args[2], ts)?;
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
            w.series
                .iter()
                .filter(|s| s.samples.len() >= 2)
                .map(|s| VecSample {
                    labels: s.labels.clone(),
                    v: double_exponential_smoothing(&s.samples, sf, tf),
                    drop_name: true,
                })
                .collect()
        }
        "histogram_quantile" => {
            let q = scalar_arg(ev, &args[0], ts)?;
            check_quantile(ev, q, &args[0]);
            let v = vector_arg(ev, &args[1], ts)?;
            check_buckets(ev, &v, &args[1]);
            histogram_quantile(ev, q, v, &args[1])
        }
        "minute" | "hour" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "month" | "year" => {
            let v = match args.first() {
                Some(a) => vector_arg(ev, a, ts)?,
                None => vec![VecSample::new(
                    lookout_model::Labels::empty(),
                    ts as f64 / 1000.0,
                )],
            };
            map_vector(v, |x| {
                if !x.is_finite() {
                    return f64::NAN;
                }
                let (y, m, d, yd, wd, h, mi) = civil(x as i64);
                (match name {
                    "minute" => mi,
                    "hour" => h,
                    "day_of_month" => d,
                    "day_of_week" => wd,
                    "day_of_year" => yd,
                    "days_in_month" => days_in_month(y, m),
                    "month" => m,
                    _ => y,
                }) as f64
            })
        }
        "time" => return Ok(Value::Scalar(ts as f64 / 1000.0)),
        "pi" => return Ok(Value::Scalar(std::f64::consts::PI)),
        "vector" => vec![VecSample::new(
            lookout_model::Labels::empty(),
            scalar_arg(ev, &args[0], ts)?,
        )],
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
                        labels: s.labels.clone(),
                        drop_name: true,
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
    Ok(Value::Vector(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irate_handles_counter_reset() {
        let s = [Sample::new(0, 10.0), Sample::new(10_000, 4.0)];
        assert_eq!(instant_value(&s, true), Some(0.4));
        assert_eq!(instant_value(&s, false), Some(-6.0));
    }
}
