//! Classic-histogram functions: `histogram_quantile`, `histogram_quantiles`,
//! `histogram_fraction`, and bucket grouping; native histograms in the same call go to
//! [`super::native`].

use lookout_model::gofmt::format_f;
use promql_parser::parser::Expr;

use super::{Args, FnCall, check_quantile};
use crate::engine::Evaluator;
use crate::error::Result;
use crate::value::{Value, VecSample};

/// Groups classic-histogram bucket samples by their labels without `le` and the name.
pub(super) fn histogram_groups(v: Vec<VecSample>) -> Vec<(lookout_model::Labels, Vec<(f64, f64)>)> {
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
pub(super) fn bucket_fraction(lower: f64, upper: f64, b: Vec<(f64, f64)>) -> f64 {
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
pub(super) fn check_buckets(ev: &Evaluator<'_>, v: &[VecSample], about: &Expr) {
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
    groups: Vec<(lookout_model::Labels, Vec<(f64, f64)>)>,
    about: &Expr,
) -> Vec<VecSample> {
    groups
        .into_iter()
        .map(|(k, b)| {
            let v = bucket_quantile(ev, k.metric_name(), q, b, about);
            VecSample {
                labels: k,
                v,
                drop_name: true,
                h: None,
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
pub(super) fn bucket_quantile(
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

/// `histogram_fraction(lower, upper, buckets)`.
pub(super) fn fraction(c: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let lo = args.scalar(0)?;
    let hi = args.scalar(1)?;
    let (v, mut natives) = super::native::split(args.vector(2)?);
    check_buckets(c.ev, &v, &c.exprs[2]);
    let groups = classic_groups(c, v, &mut natives, 2);
    for n in natives
        .iter()
        .filter(|n| n.h.as_ref().is_some_and(|h| h.sum.is_nan()))
    {
        c.ev.info_at(
            format!(
                "input to histogram_fraction has NaN observations, which are excluded from all fractions for metric name {:?}",
                n.labels.metric_name().unwrap_or("")
            ),
            &c.exprs[2],
        );
    }
    let mut out = native_values(&natives, |h| super::native::fraction(lo, hi, h));
    out.extend(groups.into_iter().map(|(k, b)| VecSample {
        labels: k,
        v: bucket_fraction(lo, hi, b),
        drop_name: true,
        h: None,
    }));
    Ok(Value::Vector(out))
}

/// A float of each native-histogram sample, its name dropped.
fn native_values(
    natives: &[VecSample],
    f: impl Fn(&lookout_model::FloatHistogram) -> f64,
) -> Vec<VecSample> {
    natives
        .iter()
        .filter_map(|s| {
            Some(VecSample {
                labels: s.labels.clone(),
                v: f(s.h.as_deref()?),
                drop_name: true,
                h: None,
            })
        })
        .collect()
}

/// The classic histograms among bucket samples `v`; where a native histogram has the
/// same labels, Prometheus warns of the mix and answers for neither.
fn classic_groups(
    c: &FnCall<'_, '_>,
    v: Vec<VecSample>,
    natives: &mut Vec<VecSample>,
    arg: usize,
) -> Vec<(lookout_model::Labels, Vec<(f64, f64)>)> {
    let mut groups = histogram_groups(v);
    if natives.is_empty() {
        return groups;
    }
    let mut clashed = Vec::new();
    groups.retain(|(k, _)| {
        let clash = natives.iter().any(|n| &n.labels == k);
        if clash {
            clashed.push(k.clone());
        }
        if clash {
            c.ev.warn_at(
                format!(
                    "vector contains a mix of classic and native histograms for metric name {:?}",
                    k.metric_name().unwrap_or("")
                ),
                &c.exprs[arg],
            );
        }
        !clash
    });
    natives.retain(|n| !clashed.contains(&n.labels));
    groups
}

/// `histogram_quantiles(buckets, label, q...)`: one series per quantile, labelled.
pub(super) fn quantiles(c: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let v = args.vector(0)?;
    let label = args.string(1)?;
    let mut qs = Vec::new();
    for i in 2..args.len() {
        qs.push(args.scalar(i)?);
    }
    for (q, a) in qs.iter().zip(&c.exprs[2..]) {
        check_quantile(c.ev, *q, a);
    }
    let (v, mut natives) = super::native::split(v);
    check_buckets(c.ev, &v, &c.exprs[0]);
    let groups = classic_groups(c, v, &mut natives, 0);
    let q_label = |q: f64| {
        let mut s = format_f(q);
        if !s.contains(['.', 'e', 'I', 'N']) {
            s.push_str(".0");
        }
        s
    };
    let mut out = Vec::new();
    for n in &natives {
        let Some(h) = n.h.as_deref() else { continue };
        for q in &qs {
            let v = super::native::quantile(*q, h);
            note_nan_observations(c, n, v, 0);
            out.push(VecSample {
                labels: n.labels.with(&label, &q_label(*q)),
                v,
                drop_name: true,
                h: None,
            });
        }
    }
    for (k, b) in groups {
        for q in &qs {
            out.push(VecSample {
                labels: k.with(&label, &q_label(*q)),
                v: bucket_quantile(c.ev, k.metric_name(), *q, b.clone(), &c.exprs[0]),
                drop_name: true,
                h: None,
            });
        }
    }
    Ok(Value::Vector(out))
}

/// The info Prometheus gives for a quantile of a native histogram with NaN
/// observations (a NaN sum): the result is NaN, or skewed high.
fn note_nan_observations(c: &FnCall<'_, '_>, n: &VecSample, result: f64, arg: usize) {
    if n.h.as_ref().is_some_and(|h| h.sum.is_nan()) {
        let what = if result.is_nan() {
            "is NaN"
        } else {
            "is skewed higher"
        };
        c.ev.info_at(
            format!(
                "input to histogram_quantile has NaN observations, result {what} for metric name {:?}",
                n.labels.metric_name().unwrap_or("")
            ),
            &c.exprs[arg],
        );
    }
}

/// `histogram_quantile(q, buckets)`.
pub(super) fn quantile(c: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let q = args.scalar(0)?;
    check_quantile(c.ev, q, &c.exprs[0]);
    let (v, mut natives) = super::native::split(args.vector(1)?);
    check_buckets(c.ev, &v, &c.exprs[1]);
    let groups = classic_groups(c, v, &mut natives, 1);
    let mut out = native_values(&natives, |h| super::native::quantile(q, h));
    for (n, s) in natives.iter().zip(&out) {
        note_nan_observations(c, n, s.v, 1);
    }
    out.extend(histogram_quantile(c.ev, q, groups, &c.exprs[1]));
    Ok(Value::Vector(out))
}
