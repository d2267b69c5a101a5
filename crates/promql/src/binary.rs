//! Binary operators: arithmetic, comparison (with `bool`), `atan2` and the set operators,
//! with vector matching (`on`/`ignoring`, `group_left`/`group_right`), following
//! Prometheus's `VectorBinop`, `VectorscalarBinop` and `vectorElemBinop`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use lookout_model::{FloatHistogram, Labels, METRIC_NAME_LABEL};
use promql_parser::parser::token::*;
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::engine::{Evaluator, NodeId};
use crate::error::{Result, exec};
use crate::value::{Value, VecSample};

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Prometheus drops the metric name for arithmetic, not for comparisons or set operators.
fn drops_name(op: u16) -> bool {
    !is_comparison(op) && !matches!(op, T_LAND | T_LOR | T_LUNLESS)
}

/// The result of `lhs op rhs` and whether to keep it (comparisons filter).
fn elem(op: u16, l: f64, r: f64) -> (f64, bool) {
    match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

/// One operand: a float, or a native histogram.
type Operand<'a> = (f64, Option<&'a Arc<FloatHistogram>>);

/// The name Prometheus's messages give an operator.
fn op_name(op: u16) -> &'static str {
    match op {
        T_ADD => "+",
        T_SUB => "-",
        T_MUL => "*",
        T_DIV => "/",
        T_POW => "^",
        T_MOD => "%",
        T_ATAN2 => "atan2",
        T_EQLC => "==",
        T_NEQ => "!=",
        T_GTR => ">",
        T_LSS => "<",
        T_GTE => ">=",
        T_LTE => "<=",
        _ => "?",
    }
}

/// `lhs op rhs` where either side may be a native histogram, as Prometheus's
/// `vectorElemBinop`: histograms add and subtract, scale by a float (`*`, and `/` on the
/// left), and compare for (in)equality; other pairings give no sample at all (not even
/// with `bool`) and an info.
fn elem_any(
    ev: &Evaluator<'_>,
    node: NodeId,
    op: u16,
    l: Operand<'_>,
    r: Operand<'_>,
) -> Option<(f64, Option<Arc<FloatHistogram>>, bool)> {
    let incompatible = |a: &str, b: &str| {
        ev.note_at_node(
            format!(
                "incompatible sample types encountered for binary operator {:?}: {a} {} {b}",
                op_name(op),
                op_name(op)
            ),
            node,
            true,
        );
        None
    };
    let h = |x: FloatHistogram| Some(Arc::new(x.compacted()));
    match (l.1, r.1) {
        (None, None) => {
            let (v, keep) = elem(op, l.0, r.0);
            Some((v, None, keep))
        }
        (None, Some(rh)) => match op {
            T_MUL => Some((0.0, h(rh.scaled(l.0)), true)),
            _ => incompatible("float", "histogram"),
        },
        (Some(lh), None) => match op {
            T_MUL => Some((0.0, h(lh.scaled(r.0)), true)),
            T_DIV => Some((0.0, h(lh.divided(r.0)), true)),
            _ => incompatible("histogram", "float"),
        },
        (Some(lh), Some(rh)) => match op {
            T_ADD | T_SUB => {
                let what = if op == T_ADD {
                    "addition"
                } else {
                    "subtraction"
                };
                if !lh.compatible(rh) {
                    ev.note_at_node(
                        format!(
                            "incompatible bucket layout encountered for binary operator {}",
                            op_name(op)
                        ),
                        node,
                        false,
                    );
                    return None;
                }
                if lh.bounds_differ(rh) {
                    ev.note_at_node(
                        format!("mismatched custom buckets were reconciled during {what}"),
                        node,
                        true,
                    );
                }
                if lh.hints_collide(rh) {
                    ev.note_at_node(
                        format!("conflicting counter resets during histogram {what}"),
                        node,
                        false,
                    );
                }
                let mut x = if op == T_ADD { lh.add(rh) } else { lh.sub(rh) };
                if op == T_SUB {
                    x.hint = lookout_model::CounterResetHint::Gauge;
                }
                Some((0.0, h(x), true))
            }
            T_EQLC => Some((0.0, Some(Arc::clone(lh)), lh.identical(rh))),
            T_NEQ => Some((0.0, Some(Arc::clone(lh)), !lh.identical(rh))),
            _ => incompatible("histogram", "histogram"),
        },
    }
}

/// [`elem_any`] of two vector samples.
fn elem_samples(
    memo: &Memo<'_>,
    op: u16,
    l: &VecSample,
    r: &VecSample,
) -> Option<(f64, Option<Arc<FloatHistogram>>, bool)> {
    elem_any(
        memo.ev,
        memo.node,
        op,
        (l.v, l.h.as_ref()),
        (r.v, r.h.as_ref()),
    )
}

/// [`outcome`] for a value that may be a histogram; `bool` comparisons give floats.
fn outcome_any(
    value: f64,
    h: Option<Arc<FloatHistogram>>,
    keep: bool,
    return_bool: bool,
) -> Option<(f64, Option<Arc<FloatHistogram>>)> {
    if return_bool {
        return outcome(value, keep, true).map(|v| (v, None));
    }
    keep.then_some((value, h))
}

/// Per-node memo of match signatures and result label sets: a range query sees the same
/// series at every step, so each is computed once.
pub(crate) struct Memo<'a> {
    ev: &'a Evaluator<'a>,
    node: NodeId,
}

impl Memo<'_> {
    fn sig(&self, ls: &Labels, matching: &Option<LabelModifier>) -> Labels {
        self.ev
            .memo_labels((self.node, ls.clone(), None), || signature(ls, matching))
    }

    fn result(
        &self,
        l: &Labels,
        r: &Labels,
        op: u16,
        matching: &Option<LabelModifier>,
        card: &VectorMatchCardinality,
    ) -> Labels {
        self.ev
            .memo_labels((self.node, l.clone(), Some(r.clone())), || {
                result_labels(l, r, op, matching, card)
            })
    }
}

fn signature(ls: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => ls.keep(&on.labels),
        Some(LabelModifier::Exclude(ign)) => {
            let mut drop: Vec<&str> = ign.labels.iter().map(String::as_str).collect();
            drop.push(METRIC_NAME_LABEL);
            ls.without(&drop)
        }
        None => ls.without_metric_name(),
    }
}

/// Evaluates a binary expression at `ts`.
/// The value an output sample gets from `elem`'s `(value, keep)`, or `None` when a
/// comparison filters it out; with `bool`, comparisons give 1 or 0 and filter nothing.
fn outcome(value: f64, keep: bool, return_bool: bool) -> Option<f64> {
    if return_bool {
        Some(if keep { 1.0 } else { 0.0 })
    } else {
        keep.then_some(value)
    }
}

pub(crate) fn eval(ev: &Evaluator<'_>, b: &BinaryExpr, ts: i64) -> Result<Value> {
    let op = b.op.id();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    let memo = Memo {
        ev,
        node: NodeId::of(b),
    };
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = elem(op, l, r);
            Ok(Value::Scalar(if is_comparison(op) {
                if keep { 1.0 } else { 0.0 }
            } else {
                v
            }))
        }
        (Value::Vector(v), Value::Scalar(s)) => vector_scalar(&memo, op, v, s, false, return_bool),
        (Value::Scalar(s), Value::Vector(v)) => vector_scalar(&memo, op, v, s, true, return_bool),
        (Value::Vector(l), Value::Vector(r)) => {
            let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
            let card = b
                .modifier
                .as_ref()
                .map(|m| m.card.clone())
                .unwrap_or(VectorMatchCardinality::OneToOne);
            match op {
                T_LAND | T_LOR | T_LUNLESS => Ok(Value::Vector(set_op(&memo, op, l, r, &matching))),
                _ => {
                    vector_vector(&memo, op, l, r, &matching, &card, return_bool).map(Value::Vector)
                }
            }
        }
        (l, r) => exec(format!(
            "binary operator between {} and {} is not supported",
            l.type_name(),
            r.type_name()
        )),
    }
}

fn vector_scalar(
    memo: &Memo<'_>,
    op: u16,
    v: Vec<VecSample>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Value> {
    let mut out = Vec::with_capacity(v.len());
    for smp in v {
        let mine = (smp.v, smp.h.as_ref());
        let (l, r) = if swap {
            ((s, None), mine)
        } else {
            (mine, (s, None))
        };
        let Some((value, h, keep)) = elem_any(memo.ev, memo.node, op, l, r) else {
            continue;
        };
        // A filtering comparison keeps the vector's own value, on either side.
        let (value, h) = if is_comparison(op) && swap {
            (r.0, r.1.cloned())
        } else {
            (value, h)
        };
        if let Some((v, h)) = outcome_any(value, h, keep, return_bool) {
            out.push(VecSample {
                labels: smp.labels,
                v,
                drop_name: smp.drop_name || drops_name(op) || return_bool,
                h,
            });
        }
    }
    Ok(Value::Vector(out))
}

/// Formats labels as Go's `labels.String()`: `{__name__="m", a="b"}`.
fn braced(ls: &Labels) -> String {
    let parts: Vec<String> = ls
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn set_op(
    memo: &Memo<'_>,
    op: u16,
    l: Vec<VecSample>,
    r: Vec<VecSample>,
    matching: &Option<LabelModifier>,
) -> Vec<VecSample> {
    match op {
        T_LAND => {
            let sigs: HashSet<Labels> = r.iter().map(|s| memo.sig(&s.labels, matching)).collect();
            l.into_iter()
                .filter(|s| sigs.contains(&memo.sig(&s.labels, matching)))
                .collect()
        }
        T_LUNLESS => {
            let sigs: HashSet<Labels> = r.iter().map(|s| memo.sig(&s.labels, matching)).collect();
            l.into_iter()
                .filter(|s| !sigs.contains(&memo.sig(&s.labels, matching)))
                .collect()
        }
        _ => {
            let sigs: HashSet<Labels> = l.iter().map(|s| memo.sig(&s.labels, matching)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !sigs.contains(&memo.sig(&s.labels, matching))),
            );
            out
        }
    }
}

fn result_labels(
    l: &Labels,
    r: &Labels,
    op: u16,
    matching: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
) -> Labels {
    let mut ls = if drops_name(op) {
        l.without_metric_name()
    } else {
        l.clone()
    };
    match card {
        VectorMatchCardinality::OneToOne => match matching {
            Some(LabelModifier::Include(on)) => ls = ls.keep(&on.labels),
            Some(LabelModifier::Exclude(ign)) => ls = ls.without(&ign.labels),
            None => {}
        },
        VectorMatchCardinality::ManyToOne(include) | VectorMatchCardinality::OneToMany(include) => {
            for name in &include.labels {
                ls = ls.with(name, r.get_or_empty(name));
            }
        }
        VectorMatchCardinality::ManyToMany => {}
    }
    ls
}

/// The pairs a vector match produced for one pair of input series lists: while a range
/// query's steps bring the same series in the same order on both sides, later steps
/// reuse it and only compute values. A plan is made only when every candidate pair
/// matches uniquely, so any subset a comparison keeps is valid too (the checks that
/// depend on values cannot fail).
pub(crate) struct MatchPlan {
    lhs: Vec<Labels>,
    rhs: Vec<Labels>,
    /// (index on the "many" side, index on the "one" side, result labels).
    pairs: Vec<(u32, u32, Labels)>,
}

impl MatchPlan {
    fn fits(&self, lhs: &[VecSample], rhs: &[VecSample]) -> bool {
        fn same(a: &[Labels], b: &[VecSample]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.ptr_eq(&y.labels))
        }
        same(&self.lhs, lhs) && same(&self.rhs, rhs)
    }
}

/// Builds the plan for `lhs op rhs` (already swapped for `group_right`), or `None` when
/// some match is not unique regardless of values.
fn plan(
    memo: &Memo<'_>,
    op: u16,
    many: &[VecSample],
    one: &[VecSample],
    matching: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
) -> Option<Vec<(u32, u32, Labels)>> {
    let mut right: HashMap<Labels, u32> = HashMap::with_capacity(one.len());
    for (j, s) in one.iter().enumerate() {
        if right
            .insert(memo.sig(&s.labels, matching), j as u32)
            .is_some()
        {
            return None;
        }
    }
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut seen: HashSet<(Labels, Labels)> = HashSet::with_capacity(many.len());
    let mut sigs: HashSet<Labels> = HashSet::new();
    let mut pairs = Vec::with_capacity(many.len());
    for (i, ls) in many.iter().enumerate() {
        let sig = memo.sig(&ls.labels, matching);
        let Some(&j) = right.get(&sig) else { continue };
        if one_to_one && !sigs.insert(sig.clone()) {
            return None;
        }
        let labels = memo.result(&ls.labels, &one[j as usize].labels, op, matching, card);
        if !seen.insert((sig, labels.clone())) {
            return None;
        }
        pairs.push((i as u32, j, labels));
    }
    Some(pairs)
}

fn vector_vector(
    memo: &Memo<'_>,
    op: u16,
    lhs: Vec<VecSample>,
    rhs: Vec<VecSample>,
    matching: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
) -> Result<Vec<VecSample>> {
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    if let Some(p) = memo.ev.cache.match_plans.borrow().get(&memo.node)
        && p.fits(&many, &one)
    {
        let mut out = Vec::with_capacity(p.pairs.len());
        for (i, j, labels) in &p.pairs {
            let (ls, rs) = (&many[*i as usize], &one[*j as usize]);
            let (l, r) = if one_to_many { (rs, ls) } else { (ls, rs) };
            let Some((value, h, keep)) = elem_samples(memo, op, l, r) else {
                continue;
            };
            if let Some((v, h)) = outcome_any(value, h, keep, return_bool) {
                out.push(VecSample {
                    labels: labels.clone(),
                    v,
                    drop_name: ls.drop_name || return_bool,
                    h,
                });
            }
        }
        return Ok(out);
    }
    if memo.ev.step > 0
        && let Some(pairs) = plan(memo, op, &many, &one, matching, card)
    {
        let p = MatchPlan {
            lhs: many.iter().map(|s| s.labels.clone()).collect(),
            rhs: one.iter().map(|s| s.labels.clone()).collect(),
            pairs,
        };
        memo.ev.cache.match_plans.borrow_mut().insert(memo.node, p);
    }
    vector_match(memo, op, many, one, matching, card, return_bool)
}

/// Matches the "many" side against the "one" side step by step, with Prometheus's
/// errors for non-unique matches.
fn vector_match(
    memo: &Memo<'_>,
    op: u16,
    lhs: Vec<VecSample>,
    rhs: Vec<VecSample>,
    matching: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
) -> Result<Vec<VecSample>> {
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let mut right: HashMap<Labels, VecSample> = HashMap::with_capacity(rhs.len());
    for s in rhs {
        let sig = memo.sig(&s.labels, matching);
        if let Some(prev) = right.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            let (mut a, mut b) = (braced(&prev.labels), braced(&s.labels));
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            return exec(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{a}, {b}];many-to-many matching not allowed: matching labels must be unique on one side",
                braced(&sig)
            ));
        }
        right.insert(sig, s);
    }
    if matches!(card, VectorMatchCardinality::OneToOne) {
        // Prometheus reports a many side even when the operator would filter it all away.
        let mut seen = HashSet::new();
        for ls in &lhs {
            let sig = memo.sig(&ls.labels, matching);
            if right.contains_key(&sig) && !seen.insert(sig) {
                return exec(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                );
            }
        }
    }
    let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for ls in lhs {
        let sig = memo.sig(&ls.labels, matching);
        let Some(rs) = right.get(&sig) else { continue };
        let (l, r) = if one_to_many { (rs, &ls) } else { (&ls, rs) };
        let Some((value, h, keep)) = elem_samples(memo, op, l, r) else {
            continue;
        };
        let Some((value, h)) = outcome_any(value, h, keep, return_bool) else {
            continue;
        };
        // Arithmetic removes the name at once (as upstream's resultMetric does even with
        // delayed name removal); comparisons with `bool` mark it.
        let labels = memo.result(&ls.labels, &rs.labels, op, matching, card);
        let drop_name = ls.drop_name || return_bool;
        match matched.get_mut(&sig) {
            Some(_) if matches!(card, VectorMatchCardinality::OneToOne) => {
                return exec(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                );
            }
            Some(seen) => {
                if !seen.insert(labels.clone()) {
                    return exec(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    );
                }
            }
            None => {
                matched.insert(sig, HashSet::from([labels.clone()]));
            }
        }
        out.push(VecSample {
            labels,
            v: value,
            drop_name,
            h,
        });
    }
    Ok(out)
}
