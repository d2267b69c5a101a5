//! Label functions' helpers: `absent()` labels, natural sort order of label values.

use promql_parser::parser::Expr;

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
