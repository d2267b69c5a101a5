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
                go_float(q)
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

/// Prometheus's `extrapolatedRate` for float samples.
///
/// `no_resets` says the caller knows the window holds no counter reset (then the scan for
/// them is skipped; the result is the same).
fn extrapolated_rate(
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
        "sin" => v.sin(),
        "cos" => v.cos(),
        "tan" => v.tan(),
        "asin" => v.asin(),
        "acos" => v.acos(),
        "atan" => v.atan(),
        "sinh" => v.sinh(),
        "cosh" => v.cosh(),
        "tanh" => v.tanh(),
        "asinh" => v.asinh(),
        "acosh" => v.acosh(),
        "atanh" => v.atanh(),
        "deg" => v * 180.0 / std::f64::consts::PI,
        "rad" => v * std::f64::consts::PI / 180.0,
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

/// Formats a float as Go's `strconv.FormatFloat(f, 'f', -1, 64)`.
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{f}")
    }
}

/// Civil date of a Unix time in seconds: (year, month 1–12, day 1–31, day of year 1–366,
/// weekday 0 = Sunday, hour, minute).
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = lookout_model::civil_from_days(days);
    let yday = days - lookout_model::days_from_civil(y, 1, 1) + 1;
    let wday = (days + 4).rem_euclid(7);
    (y, m, d, yday, wday, rem / 3600, rem % 3600 / 60)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Prometheus's `linearRegression` (Kahan sums), x in seconds relative to `intercept_t`.
fn linear_regression(s: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init = s[0].v;
    let mut const_y = true;
    for (i, p) in s.iter().enumerate() {
        if const_y && i > 0 && p.v != init {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn stdvar_over(s: &[Sample]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in s {
        count += 1.0;
        let delta = p.v - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (p.v - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

/// Natural ("version") order of two strings, as the natsort Prometheus uses.
fn natural_less(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = if x.0 && y.0 {
            let xt = x.1.trim_start_matches('0');
            let yt = y.1.trim_start_matches('0');
            xt.len().cmp(&yt.len()).then_with(|| xt.cmp(yt))
        } else {
            x.1.cmp(y.1)
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

fn string_arg(ev: &Evaluator<'_>, e: &Expr, ts: i64) -> Result<String> {
    match ev.eval(e, ts)? {
        Value::String(s) => Ok(s),
        other => exec(format!("expected a string, got {}", other.type_name())),
    }
}

/// Labels `absent()` gives: the equality matchers of a selector, except names matched twice.
fn absent_labels(e: &Expr) -> lookout_model::Labels {
    let mut inner = e;
    while let Expr::Paren(p) = inner {
        inner = &p.expr;
    }
    let vs = match inner {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return lookout_model::Labels::empty(),
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut dup: Vec<String> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == lookout_model::METRIC_NAME_LABEL {
            continue;
        }
        if let promql_parser::label::MatchOp::Equal = m.op {
            if pairs.iter().any(|(n, _)| *n == m.name) {
                dup.push(m.name.clone());
            }
            pairs.push((m.name.clone(), m.value.clone()));
        } else if pairs.iter().any(|(n, _)| *n == m.name) {
            dup.push(m.name.clone());
        }
    }
    pairs.retain(|(n, _)| !dup.contains(n));
    lookout_model::Labels::from_pairs(pairs)
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

/// Holt's linear smoothing as Prometheus's `double_exponential_smoothing`.
fn double_exponential_smoothing(x: &[Sample], sf: f64, tf: f64) -> f64 {
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

/// Groups classic-histogram bucket samples by their labels without `le` and the name.
fn histogram_groups(v: Vec<VecSample>) -> Vec<(lookout_model::Labels, Vec<(f64, f64)>)> {
    let mut order: Vec<lookout_model::Labels> = Vec::new();
    let mut groups: std::collections::HashMap<lookout_model::Labels, Vec<(f64, f64)>> =
        std::collections::HashMap::new();
    for s in v {
        let Some(le) = s.labels.get(lookout_model::BUCKET_LABEL) else {
            continue;
        };
        let Some(ub) = parse_le(le) else { continue };
        // Keyed with the metric name, which is dropped on the way out: two histograms
        // that differ only by name collide there, as upstream.
        let key = s.labels.without(&[lookout_model::BUCKET_LABEL]);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push((ub, s.v));
    }
    order
        .into_iter()
        .map(|k| {
            let b = groups.remove(&k).expect("group exists");
            (k, b)
        })
        .collect()
}

/// Sorts buckets by upper bound and merges equal bounds; `None` without a `+Inf` bucket.
fn coalesce(mut b: Vec<(f64, f64)>) -> Option<Vec<(f64, f64)>> {
    b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    if !b.last().is_some_and(|x| x.0 == f64::INFINITY) {
        return None;
    }
    let mut c: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for x in b {
        match c.last_mut() {
            Some(last) if last.0 == x.0 => last.1 += x.1,
            _ => c.push(x),
        }
    }
    Some(c)
}

/// Prometheus's `BucketFraction`: the share of observations between `lower` and `upper`,
/// interpolating linearly inside buckets.
fn bucket_fraction(lower: f64, upper: f64, b: Vec<(f64, f64)>) -> f64 {
    let Some(b) = coalesce(b) else {
        return f64::NAN;
    };
    let count = b[b.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, &(ub, c)) in b.iter().enumerate() {
        let lb = if i > 0 {
            b[i - 1].0
        } else if ub > 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        // Inside a bucket of infinite width nothing is interpolated: its observations
        // count as lying below any value in the -Inf bucket and above it in the +Inf one.
        let interp = |v: f64, _is_lower: bool| {
            if lb == f64::NEG_INFINITY {
                c
            } else if ub == f64::INFINITY {
                rank
            } else {
                rank + (c - rank) * (v - lb) / (ub - lb)
            }
        };
        if !lower_set && lb >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lb >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lb < lower && ub > lower {
            lower_rank = interp(lower, true);
            lower_set = true;
        }
        if !upper_set && lb < upper && ub > upper {
            upper_rank = interp(upper, false);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = c;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// Classic-histogram `histogram_quantile`: groups `_bucket` series by their labels without
/// `le`, and interpolates as Prometheus's `BucketQuantile` does (monotonicity enforced,
/// tiny float deltas ignored).
/// Warns about bucket series without a parsable `le` label.
fn check_buckets(ev: &Evaluator<'_>, v: &[VecSample], about: &Expr) {
    for s in v {
        let le = s.labels.get(lookout_model::BUCKET_LABEL);
        if le.and_then(parse_le).is_none() {
            ev.warn_at(format!(
                "bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                le.unwrap_or(""),
                s.labels.metric_name().unwrap_or("")
            ), about);
        }
    }
}

fn histogram_quantile(
    ev: &Evaluator<'_>,
    q: f64,
    v: Vec<VecSample>,
    about: &Expr,
) -> Vec<VecSample> {
    histogram_groups(v)
        .into_iter()
        .map(|(k, b)| {
            let v = bucket_quantile(ev, k.metric_name(), q, b, about);
            VecSample {
                labels: k,
                v,
                drop_name: true,
            }
        })
        .collect()
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// `about` is the bucket argument the monotonicity info points at.
fn bucket_quantile(
    ev: &Evaluator<'_>,
    name: Option<&str>,
    q: f64,
    b: Vec<(f64, f64)>,
    about: &Expr,
) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let Some(mut c) = coalesce(b) else {
        return f64::NAN;
    };
    // Force monotonicity; ignore tiny floating point deltas.
    let mut prev = c[0].1;
    for x in c.iter_mut().skip(1) {
        let cur = x.1;
        if cur == prev {
            continue;
        }
        if crate::promqltest::almost_equal_eps(prev, cur, 1e-12) {
            x.1 = prev;
            continue;
        }
        if cur < prev {
            x.1 = prev;
            ev.info_at(format!(
                "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?}",
                name.unwrap_or("")
            ), about);
            continue;
        }
        prev = cur;
    }
    if c.len() < 2 {
        return f64::NAN;
    }
    let obs = c[c.len() - 1].1;
    if obs == 0.0 || obs.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * obs;
    let idx = c[..c.len() - 1].partition_point(|x| x.1 < rank);
    if idx == c.len() - 1 {
        return c[c.len() - 2].0;
    }
    if idx == 0 && c[0].0 <= 0.0 {
        return c[0].0;
    }
    let (mut start, end, mut count) = (0.0, c[idx].0, c[idx].1);
    if idx > 0 {
        start = c[idx - 1].0;
        count -= c[idx - 1].1;
        rank -= c[idx - 1].1;
    }
    start + (end - start) * (rank / count)
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
    let node = c as *const Call as usize;
    if let Some(v) = ev.step_cache.borrow_mut().remove(&(node, ts)) {
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
    let mut cache = ev.step_cache.borrow_mut();
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
            let node = c as *const Call as usize;
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
            let node = c as *const Call as usize;
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
                    let mut qs_str = go_float(*q);
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
