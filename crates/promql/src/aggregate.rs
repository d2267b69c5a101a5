//! Aggregation operators (`sum`, `avg`, `min`, `max`, `count`) with `by`/`without`,
//! following Prometheus's `aggregation` in `promql/engine.go`.

use lookout_model::gofmt::format_f;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use lookout_model::{Labels, METRIC_NAME_LABEL};
use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMIT_RATIO, T_LIMITK, T_MAX, T_MIN,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use crate::engine::{Evaluator, NodeId};
use crate::error::{Result, exec};
use crate::functions::HistogramSum;
use crate::numeric::kahan_inc;
use crate::value::{Value, VecSample};

#[derive(Default)]
struct Group {
    labels: Labels,
    value: f64,
    comp: f64,
    mean: f64,
    count: f64,
    incremental: bool,
    /// Some member's name was to be dropped (matters only when grouping by `__name__`).
    drop_name: bool,
}

/// The grouping key's labels for a sample.
fn group_labels(ls: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        None => Labels::empty(),
        Some(LabelModifier::Include(by)) => ls.keep(&by.labels),
        Some(LabelModifier::Exclude(without)) => {
            let mut drop: Vec<&str> = without.labels.iter().map(String::as_str).collect();
            drop.push(METRIC_NAME_LABEL);
            ls.without(&drop)
        }
    }
}

/// Prometheus's `quantile` over values (NaN sorts first), used by `quantile` and
/// `quantile_over_time`.
pub(crate) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).expect("not NaN"),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn scalar_param(ev: &Evaluator<'_>, p: &Option<Box<Expr>>, ts: i64) -> Result<f64> {
    match p.as_deref().map(|e| ev.eval(e, ts)).transpose()? {
        Some(Value::Scalar(v)) => Ok(v),
        _ => exec("aggregation parameter must be a scalar"),
    }
}

/// Prometheus's `labels.Hash()`: xxHash64 of every `name 0xff value 0xff`.
fn prometheus_label_hash(ls: &Labels) -> u64 {
    let mut buf = Vec::with_capacity(128);
    for l in ls {
        buf.extend_from_slice(l.name.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(l.value.as_bytes());
        buf.push(0xff);
    }
    xxhash_rust::xxh64::xxh64(&buf, 0)
}

/// `limit_ratio`: keeps the series whose label hash falls in the first `r` share of the
/// hash space (or, for negative `r`, in the last `-r` share), as Prometheus's
/// `HashRatioSampler`, so the choice is stable across steps and queries.
fn limit_ratio(
    ev: &Evaluator<'_>,
    a: &AggregateExpr,
    input: Vec<VecSample>,
    ts: i64,
) -> Result<Value> {
    let mut r = scalar_param(ev, &a.param, ts)?;
    if r.is_nan() {
        return exec("Ratio value is NaN");
    }
    if !(-1.0..=1.0).contains(&r) {
        let capped = r.clamp(-1.0, 1.0);
        let msg = format!(
            "ratio value should be between -1 and 1, got {}, capping to {}",
            format_f(r),
            format_f(capped)
        );
        match &a.param {
            Some(p) => ev.warn_at(msg, p),
            None => ev.warn(msg),
        }
        r = capped;
    }
    let keep = |s: &VecSample| {
        let offset = prometheus_label_hash(&s.labels) as f64 / u64::MAX as f64;
        (r >= 0.0 && offset < r) || (r < 0.0 && offset >= 1.0 + r)
    };
    Ok(Value::Vector(input.into_iter().filter(keep).collect()))
}

/// `topk`, `bottomk`, `limitk`: keeps up to k samples per group, with their own labels.
fn select_k(
    ev: &Evaluator<'_>,
    a: &AggregateExpr,
    input: Vec<VecSample>,
    ts: i64,
) -> Result<Value> {
    let op = a.op.id();
    let param = scalar_param(ev, &a.param, ts)?;
    if param.is_nan() {
        return exec("Parameter value is NaN");
    }
    let k = if param >= 9.2e18 {
        i64::MAX
    } else {
        param as i64
    };
    if k < 1 {
        return Ok(Value::Vector(Vec::new()));
    }
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<VecSample>> = HashMap::new();
    for s in input {
        let key = group_labels(&s.labels, &a.modifier);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(s);
    }
    let mut out = Vec::new();
    for key in order {
        let mut g = groups.remove(&key).expect("group exists");
        if op != T_LIMITK {
            // NaN is the smallest value for topk and the largest for bottomk.
            let desc = op == T_TOPK;
            g.sort_by(|x, y| match (x.v.is_nan(), y.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => y.v.partial_cmp(&x.v).expect("not NaN"),
                _ => x.v.partial_cmp(&y.v).expect("not NaN"),
            });
        }
        out.extend(g.into_iter().take(usize::try_from(k).unwrap_or(usize::MAX)));
    }
    Ok(Value::Vector(out))
}

fn count_values(
    ev: &Evaluator<'_>,
    a: &AggregateExpr,
    input: Vec<VecSample>,
    ts: i64,
) -> Result<Value> {
    let label = match a.param.as_deref().map(|e| ev.eval(e, ts)).transpose()? {
        Some(Value::String(s)) => s,
        _ => return exec("count_values needs a label name"),
    };
    if !lookout_model::is_valid_label_name(&label) {
        // Named as Prometheus names it: Go's quoting of the bytes the literal wrote (a
        // `\xc5` is a byte there, which a Rust string cannot hold alone).
        let named = a
            .param
            .as_deref()
            .and_then(|p| ev.source_of(p))
            .and_then(crate::position::go_quote_literal)
            .unwrap_or_else(|| format!("{label:?}"));
        return exec(format!("invalid label name {named}"));
    }
    let mut order: Vec<Labels> = Vec::new();
    let mut counts: HashMap<Labels, f64> = HashMap::new();
    for s in input {
        let value = match &s.h {
            Some(h) => crate::functions::go_string(h),
            None => format_f(s.v),
        };
        let key = group_labels(&s.labels, &a.modifier).with(&label, &value);
        *counts.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            0.0
        }) += 1.0;
    }
    Ok(Value::Vector(
        order
            .into_iter()
            .map(|k| {
                let v = counts[&k];
                VecSample::new(k, v)
            })
            .collect(),
    ))
}

/// The grouping key of `ls`, memoised per aggregation node for the whole query.
fn group_key(ev: &Evaluator<'_>, a: &AggregateExpr, ls: &Labels) -> Labels {
    ev.memo_labels((NodeId::of(a), ls.clone(), None), || {
        group_labels(ls, &a.modifier)
    })
}

/// Which group each input sample falls in, for one list of input series: a range query
/// usually aggregates the same series at every step, so the grouping is computed once.
pub(crate) struct GroupPlan {
    input: Vec<Labels>,
    /// The group of each input position.
    slots: Vec<u32>,
    /// Group labels, in order of first appearance.
    keys: Vec<Labels>,
}

fn group_plan(ev: &Evaluator<'_>, a: &AggregateExpr, input: &[VecSample]) -> Rc<GroupPlan> {
    let node = NodeId::of(a);
    if let Some(p) = ev.cache.group_plans.borrow().get(&node)
        && p.input.len() == input.len()
        && p.input.iter().zip(input).all(|(x, y)| x.ptr_eq(&y.labels))
    {
        return p.clone();
    }
    let mut index: HashMap<Labels, u32> = HashMap::new();
    let mut keys = Vec::new();
    let slots = input
        .iter()
        .map(|s| {
            let key = group_key(ev, a, &s.labels);
            *index.entry(key.clone()).or_insert_with(|| {
                keys.push(key);
                keys.len() as u32 - 1
            })
        })
        .collect();
    let p = Rc::new(GroupPlan {
        input: input.iter().map(|s| s.labels.clone()).collect(),
        slots,
        keys,
    });
    ev.cache.group_plans.borrow_mut().insert(node, p.clone());
    p
}

/// Evaluates an aggregation at `ts`.
pub(crate) fn eval(ev: &Evaluator<'_>, a: &AggregateExpr, ts: i64) -> Result<Value> {
    let op = a.op.id();
    if !matches!(
        op,
        T_SUM
            | T_AVG
            | T_MIN
            | T_MAX
            | T_COUNT
            | T_GROUP
            | T_STDDEV
            | T_STDVAR
            | T_TOPK
            | T_BOTTOMK
            | T_LIMITK
            | T_QUANTILE
            | T_COUNT_VALUES
            | T_LIMIT_RATIO
    ) {
        return exec(format!("aggregation {} is not supported yet", a.op));
    }
    let input = match ev.eval(&a.expr, ts)? {
        Value::Vector(v) => v,
        other => return exec(format!("aggregation over a {}", other.type_name())),
    };
    if input.iter().any(|s| s.h.is_some()) {
        return with_histograms(ev, a, input, ts);
    }
    aggregate(ev, a, input, ts)
}

/// The name Prometheus's messages give an aggregation.
fn op_name(op: u16) -> &'static str {
    match op {
        T_SUM => "sum",
        T_AVG => "avg",
        T_MIN => "min",
        T_MAX => "max",
        T_STDDEV => "stddev",
        T_STDVAR => "stdvar",
        T_TOPK => "topk",
        T_BOTTOMK => "bottomk",
        T_QUANTILE => "quantile",
        _ => "aggregation",
    }
}

/// An aggregation over input holding native histograms, as Prometheus does: `sum` and
/// `avg` add histograms (a group mixing them with floats gives nothing and a warning),
/// `count`, `group`, `limitk` and `limit_ratio` take them as any sample, the others
/// ignore them (with an info).
fn with_histograms(
    ev: &Evaluator<'_>,
    a: &AggregateExpr,
    input: Vec<VecSample>,
    ts: i64,
) -> Result<Value> {
    let op = a.op.id();
    match op {
        T_COUNT | T_GROUP | T_LIMITK | T_LIMIT_RATIO | T_COUNT_VALUES => {
            return aggregate(ev, a, input, ts);
        }
        T_SUM | T_AVG => {}
        _ => {
            ev.info_at(
                format!("ignored histogram in {} aggregation", op_name(op)),
                &a.expr,
            );
            let floats = input.into_iter().filter(|s| s.h.is_none()).collect();
            return aggregate(ev, a, floats, ts);
        }
    }
    let plan = group_plan(ev, a, &input);
    // Per group: has floats, the histogram sum, members, some name dropped.
    let mut groups: Vec<(bool, Option<HistogramSum>, f64, bool)> = (0..plan.keys.len())
        .map(|_| (false, None, 0.0, false))
        .collect();
    for (s, &slot) in input.iter().zip(&plan.slots) {
        let g = &mut groups[slot as usize];
        g.3 |= s.drop_name;
        match &s.h {
            None => g.0 = true,
            Some(h) => {
                g.2 += 1.0;
                match &mut g.1 {
                    None => g.1 = Some(HistogramSum::new(h)),
                    Some(sum) => sum.add(h),
                }
            }
        }
    }
    if groups
        .iter()
        .any(|g| g.1.as_ref().is_some_and(|s| s.reconciled))
    {
        ev.info_at(
            "mismatched custom buckets were reconciled during aggregation",
            &a.expr,
        );
    }
    if groups
        .iter()
        .any(|g| g.1.as_ref().is_some_and(HistogramSum::collided))
    {
        ev.warn_at(
            "conflicting counter resets during histogram aggregation",
            &a.expr,
        );
    }
    // An average may need its members again (a total that overflows).
    let mut members: Vec<Vec<&lookout_model::FloatHistogram>> = Vec::new();
    if op == T_AVG {
        members.resize_with(groups.len(), Vec::new);
        for (s, &slot) in input.iter().zip(&plan.slots) {
            if let Some(h) = &s.h {
                members[slot as usize].push(h);
            }
        }
    }
    let mut out = Vec::new();
    let mut floats = Vec::new();
    for (slot, (has_floats, sum, n, drop_name)) in groups.into_iter().enumerate() {
        match (has_floats, sum) {
            (true, Some(_)) => ev.warn_at(
                "encountered a mix of histograms and floats for aggregation",
                &a.expr,
            ),
            (false, Some(sum)) if sum.incompatible => {
                crate::functions::mixed_schemas(ev, &plan.keys[slot], &a.expr);
            }
            (false, Some(sum)) => {
                let h = if op == T_AVG {
                    sum.mean(n as usize, members[slot].iter().copied())
                } else {
                    sum.total()
                };
                let labels = plan.keys[slot].clone();
                out.push(VecSample {
                    drop_name: drop_name && labels.metric_name().is_some(),
                    ..VecSample::histogram(labels, Arc::new(h.compacted()))
                });
            }
            _ => floats.push(slot),
        }
    }
    if !floats.is_empty() {
        let only: Vec<VecSample> = input
            .into_iter()
            .zip(plan.slots.iter())
            .filter(|(_, slot)| floats.contains(&(**slot as usize)))
            .map(|(s, _)| s)
            .collect();
        if let Value::Vector(v) = aggregate(ev, a, only, ts)? {
            out.extend(v);
        }
    }
    Ok(Value::Vector(out))
}

/// An aggregation over float samples (or samples whose value it does not read).
fn aggregate(
    ev: &Evaluator<'_>,
    a: &AggregateExpr,
    input: Vec<VecSample>,
    ts: i64,
) -> Result<Value> {
    let op = a.op.id();
    match op {
        T_TOPK | T_BOTTOMK | T_LIMITK => return select_k(ev, a, input, ts),
        T_LIMIT_RATIO => return limit_ratio(ev, a, input, ts),
        T_COUNT_VALUES => return count_values(ev, a, input, ts),
        T_QUANTILE => {
            let q = scalar_param(ev, &a.param, ts)?;
            if let Some(p) = &a.param {
                crate::functions::check_quantile(ev, q, p);
            }
            let plan = group_plan(ev, a, &input);
            let mut groups: Vec<Vec<f64>> = vec![Vec::new(); plan.keys.len()];
            for (s, &slot) in input.iter().zip(&plan.slots) {
                groups[slot as usize].push(s.v);
            }
            return Ok(Value::Vector(
                plan.keys
                    .iter()
                    .zip(groups)
                    .map(|(k, vals)| VecSample::new(k.clone(), quantile(q, vals)))
                    .collect(),
            ));
        }
        _ => {}
    }
    let plan = group_plan(ev, a, &input);
    let mut groups: Vec<Option<Group>> = (0..plan.keys.len()).map(|_| None).collect();
    for (s, &slot) in input.iter().zip(&plan.slots) {
        let slot = slot as usize;
        let Some(g) = groups[slot].as_mut() else {
            let stat = matches!(op, T_STDDEV | T_STDVAR);
            groups[slot] = Some(Group {
                labels: plan.keys[slot].clone(),
                // A group seeded with NaN or ±Inf has an undefined deviation.
                value: if op == T_GROUP {
                    1.0
                } else if stat {
                    if s.v.is_finite() { 0.0 } else { f64::NAN }
                } else {
                    s.v
                },
                mean: s.v,
                count: 1.0,
                drop_name: s.drop_name,
                ..Group::default()
            });
            continue;
        };
        g.count += 1.0;
        g.drop_name |= s.drop_name;
        match op {
            T_SUM => (g.value, g.comp) = kahan_inc(s.v, g.value, g.comp),
            T_AVG => {
                if !g.incremental {
                    let (nv, nc) = kahan_inc(s.v, g.value, g.comp);
                    if !nv.is_infinite() {
                        g.value = nv;
                        g.comp = nc;
                        continue;
                    }
                    g.incremental = true;
                    g.mean = g.value / (g.count - 1.0);
                    g.comp /= g.count - 1.0;
                }
                if g.mean.is_infinite() {
                    if s.v.is_infinite() && (g.mean > 0.0) == (s.v > 0.0) {
                        continue;
                    }
                    if !s.v.is_infinite() && !s.v.is_nan() {
                        continue;
                    }
                }
                let current = g.mean + g.comp;
                (g.mean, g.comp) = kahan_inc(s.v / g.count - current / g.count, g.mean, g.comp);
            }
            T_STDDEV | T_STDVAR => {
                let delta = s.v - g.mean;
                g.mean += delta / g.count;
                g.value += delta * (s.v - g.mean);
            }
            T_MAX if g.value < s.v || g.value.is_nan() => g.value = s.v,
            T_MIN if g.value > s.v || g.value.is_nan() => g.value = s.v,
            _ => {}
        }
    }
    let out = groups
        .into_iter()
        .map(|g| {
            let g = g.expect("every group has a member");
            let v = match op {
                T_SUM => g.value + g.comp,
                T_AVG if g.incremental => g.mean + g.comp,
                T_AVG => g.value / g.count + g.comp / g.count,
                T_COUNT => g.count,
                T_STDVAR => g.value / g.count,
                T_STDDEV => (g.value / g.count).sqrt(),
                _ => g.value,
            };
            let drop_name = g.drop_name && g.labels.metric_name().is_some();
            VecSample {
                labels: g.labels,
                v,
                drop_name,
                h: None,
            }
        })
        .collect();
    Ok(Value::Vector(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_hash_is_xxhash64_of_prometheus_bytes() {
        assert_eq!(xxhash_rust::xxh64::xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash_rust::xxh64::xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        let ls = Labels::from_pairs([("a", "b")]);
        assert_eq!(
            prometheus_label_hash(&ls),
            xxhash_rust::xxh64::xxh64(b"a\xffb\xff", 0)
        );
    }
}
