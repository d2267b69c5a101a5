//! Label functions: `absent`, `label_replace`, `label_join`, `sort_by_label(_desc)`, and
//! their helpers (`absent()` labels, natural sort order of label values).

use promql_parser::parser::Expr;

use super::{Args, FnCall};
use crate::error::{Result, exec};
use crate::value::{Value, VecSample};

/// Natural ("version") order of two strings, as the natsort Prometheus uses.
pub(super) fn natural_less(a: &str, b: &str) -> std::cmp::Ordering {
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

/// Labels `absent()` gives: the equality matchers of a selector, except names matched twice.
pub(super) fn absent_labels(e: &Expr) -> lookout_model::Labels {
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

/// `absent(v)`.
pub(super) fn absent(c: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let v = args.vector(0)?;
    Ok(Value::Vector(if v.is_empty() {
        vec![VecSample::new(absent_labels(&c.exprs[0]), 1.0)]
    } else {
        Vec::new()
    }))
}

/// Gives every sample of `v` the labels `relabel` derives from its own (memoised per call
/// node: the other arguments are literals, so a series gets the same labels at every
/// step); the name is dropped unless `dst` is the name.
fn relabel(
    c: &FnCall<'_, '_>,
    v: Vec<VecSample>,
    dst: &str,
    relabel: impl Fn(&lookout_model::Labels) -> lookout_model::Labels,
) -> Value {
    Value::Vector(
        v.into_iter()
            .map(|s| {
                let labels =
                    c.ev.memo_labels((c.node, s.labels.clone(), None), || relabel(&s.labels));
                VecSample {
                    labels,
                    v: s.v,
                    drop_name: s.drop_name && dst != lookout_model::METRIC_NAME_LABEL,
                    h: None,
                }
            })
            .collect(),
    )
}

/// `label_replace(v, dst, replacement, src, regex)`.
pub(super) fn label_replace(c: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let v = args.vector(0)?;
    let dst = args.string(1)?;
    let repl = args.string(2)?;
    let src = args.string(3)?;
    let re_s = args.string(4)?;
    let re = c.ev.regex(&format!("^(?s:{re_s})$")).ok_or_else(|| {
        crate::Error::Execution(format!(
            "invalid regular expression in label_replace(): {re_s}"
        ))
    })?;
    if !lookout_model::is_valid_label_name(&dst) {
        return exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        ));
    }
    Ok(relabel(c, v, &dst, |ls| {
        match re.captures(ls.get_or_empty(&src)) {
            Some(cap) => {
                let mut out = String::new();
                cap.expand(&repl, &mut out);
                ls.with(&dst, &out)
            }
            None => ls.clone(),
        }
    }))
}

/// `label_join(v, dst, separator, src...)`.
pub(super) fn label_join(c: &FnCall<'_, '_>, mut args: Args) -> Result<Value> {
    let v = args.vector(0)?;
    let dst = args.string(1)?;
    let sep = args.string(2)?;
    let mut srcs = Vec::new();
    for i in 3..args.len() {
        let n = args.string(i)?;
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
    Ok(relabel(c, v, &dst, |ls| {
        let joined: Vec<&str> = srcs.iter().map(|n| ls.get_or_empty(n)).collect();
        ls.with(&dst, &joined.join(&sep))
    }))
}

/// `sort_by_label(v, label...)`: natural order of the labels' values, then of the sets.
pub(super) fn sort_by_label(_: &FnCall<'_, '_>, args: Args) -> Result<Value> {
    by_label(args, false)
}

/// `sort_by_label_desc(v, label...)`.
pub(super) fn sort_by_label_desc(_: &FnCall<'_, '_>, args: Args) -> Result<Value> {
    by_label(args, true)
}

fn by_label(mut args: Args, desc: bool) -> Result<Value> {
    let mut v = args.vector(0)?;
    let mut names = Vec::new();
    for i in 1..args.len() {
        names.push(args.string(i)?);
    }
    v.sort_by(|a, b| {
        let ord = names
            .iter()
            .map(|n| natural_less(a.labels.get_or_empty(n), b.labels.get_or_empty(n)))
            .find(|o| *o != std::cmp::Ordering::Equal)
            .unwrap_or_else(|| a.labels.cmp(&b.labels));
        if desc { ord.reverse() } else { ord }
    });
    Ok(Value::Vector(v))
}
