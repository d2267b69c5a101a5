//! Source positions of the expressions annotations point at.
//!
//! Prometheus ends each warning and info with the `line:col` of the argument it is
//! about (`… "node_load1" (1:6)`). promql-parser's AST carries no positions, so this
//! module recovers them from the query text: a small scanner finds every call site
//! (`name(` or an aggregation keyword) in source order, which is the order a pre-order
//! walk of the AST meets `Call` and `Aggregate` nodes; each node's arguments start after
//! its `(` and after each top-level comma. When the two sequences disagree (a query the
//! scanner reads differently from the parser), no positions are given rather than wrong
//! ones.

use std::collections::HashMap;

use promql_parser::parser::Expr;

use crate::engine::NodeId;

const AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Words followed by `(` that are not calls.
const NOT_CALLS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

#[derive(Debug, PartialEq)]
enum Tok<'a> {
    Ident(&'a str),
    Open,
    Close,
    Comma,
    At,
    Other,
}

/// Splits `text` into the tokens the position search needs, with their byte offsets.
/// Strings, `{…}` matchers and `[…]` ranges are single tokens.
/// Where the string literal opened by the quote at `open` ends: the index of its closing
/// quote, or the end of the text. Backquoted strings have no escapes.
pub(crate) fn string_end(b: &[u8], open: usize) -> usize {
    let q = b[open];
    let mut i = open + 1;
    while i < b.len() && b[i] != q {
        if b[i] == b'\\' && q != b'`' {
            i += 1;
        }
        i += 1;
    }
    i.min(b.len())
}

/// Go's `%q` of the string literal `src` starts with (quotes included): the bytes its
/// escapes stand for, quoted as Go's `strconv.Quote` does (valid UTF-8 kept, other bytes
/// as `\xNN`, control characters escaped). `None` when `src` does not start with one.
pub(crate) fn go_quote_literal(src: &str) -> Option<String> {
    let b = src.as_bytes();
    let q = *b.first().filter(|c| matches!(c, b'"' | b'\'' | b'`'))?;
    let end = string_end(b, 0);
    if end >= b.len() {
        return None;
    }
    let body = &b[1..end];
    let mut bytes = Vec::with_capacity(body.len());
    let mut i = 0;
    let hex = |s: &[u8]| {
        std::str::from_utf8(s)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    while i < body.len() {
        let c = body[i];
        if c != b'\\' || q == b'`' {
            bytes.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        i += 2;
        match e {
            b'a' => bytes.push(7),
            b'b' => bytes.push(8),
            b'f' => bytes.push(12),
            b'n' => bytes.push(b'\n'),
            b'r' => bytes.push(b'\r'),
            b't' => bytes.push(b'\t'),
            b'v' => bytes.push(11),
            b'x' => {
                bytes.push(u8::try_from(hex(body.get(i..i + 2)?)?).ok()?);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let c = char::from_u32(hex(body.get(i..i + n)?)?)?;
                bytes.extend_from_slice(c.to_string().as_bytes());
                i += n;
            }
            b'0'..=b'7' => {
                let oct = std::str::from_utf8(body.get(i - 1..i + 2)?).ok()?;
                bytes.push(u8::from_str_radix(oct, 8).ok()?);
                i += 2;
            }
            other => bytes.push(other),
        }
    }
    let mut out = String::from("\"");
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_quoted(&mut out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                push_quoted(&mut out, std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len()).max(1);
                for x in &bad[..n] {
                    out.push_str(&format!("\\x{x:02x}"));
                }
                rest = &bad[n..];
            }
        }
    }
    out.push('"');
    Some(out)
}

/// Appends valid UTF-8 as Go's `strconv.Quote` writes it.
fn push_quoted(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

fn scan(text: &str) -> Vec<(usize, Tok<'_>)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' | b'`' => {
                i = string_end(b, i) + 1;
                out.push((start, Tok::Other));
                continue;
            }
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                while i < b.len() && b[i] != close {
                    if matches!(b[i], b'"' | b'\'' | b'`') {
                        i = string_end(b, i);
                    }
                    i += 1;
                }
                i += 1;
                out.push((start, Tok::Other));
                continue;
            }
            b'(' => out.push((start, Tok::Open)),
            b')' => out.push((start, Tok::Close)),
            b',' => out.push((start, Tok::Comma)),
            b'@' => out.push((start, Tok::At)),
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                out.push((start, Tok::Ident(&text[start..i])));
                continue;
            }
            c if c.is_ascii_digit() || c == b'.' => {
                // Numbers, durations, hex and exponents: one token.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                out.push((start, Tok::Other));
                continue;
            }
            _ => out.push((start, Tok::Other)),
        }
        i += 1;
    }
    out
}

/// A call site: its name and the byte offset where each argument starts.
struct Site<'a> {
    name: &'a str,
    args: Vec<usize>,
}

/// Every call site in source order.
fn sites<'a>(toks: &[(usize, Tok<'a>)]) -> Vec<Site<'a>> {
    let mut out = Vec::new();
    for (i, (_, t)) in toks.iter().enumerate() {
        let Tok::Ident(name) = *t else { continue };
        if i > 0 && toks[i - 1].1 == Tok::At {
            continue; // `@ start()` / `@ end()`
        }
        let lower = name.to_ascii_lowercase();
        let is_agg = AGGREGATIONS.contains(&lower.as_str());
        let mut j = i + 1;
        match toks.get(j).map(|t| &t.1) {
            Some(Tok::Open) if !NOT_CALLS.contains(&lower.as_str()) => {}
            Some(Tok::Ident(kw))
                if is_agg && matches!(kw.to_ascii_lowercase().as_str(), "by" | "without") =>
            {
                // `sum by (a, b) (…)`: skip the grouping to the arguments.
                j += 1;
                let Some(after) = skip_parens(toks, j) else {
                    continue;
                };
                j = after;
                if toks.get(j).map(|t| &t.1) != Some(&Tok::Open) {
                    continue;
                }
            }
            _ => continue,
        }
        out.push(Site {
            name,
            args: arg_starts(toks, j),
        });
    }
    out
}

/// The index after the parenthesised group opening at `j`.
fn skip_parens(toks: &[(usize, Tok<'_>)], j: usize) -> Option<usize> {
    if toks.get(j).map(|t| &t.1) != Some(&Tok::Open) {
        return None;
    }
    let mut depth = 0usize;
    for (k, (_, t)) in toks.iter().enumerate().skip(j) {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return Some(k + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Start offsets of the arguments in the parentheses opening at `open`.
fn arg_starts(toks: &[(usize, Tok<'_>)], open: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut expect_arg = false;
    for (off, t) in &toks[open..] {
        if expect_arg && !matches!(t, Tok::Close) {
            out.push(*off);
            expect_arg = false;
        }
        match t {
            Tok::Open => {
                depth += 1;
                if depth == 1 {
                    expect_arg = true;
                }
            }
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Tok::Comma if depth == 1 => expect_arg = true,
            _ => {}
        }
    }
    out
}

/// Calls and aggregations in pre-order, children in source order.
fn nodes<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::Aggregate(a) => {
            out.push(e);
            if let Some(p) = &a.param {
                nodes(p, out);
            }
            nodes(&a.expr, out);
        }
        Expr::Call(c) => {
            out.push(e);
            for a in &c.args.args {
                nodes(a, out);
            }
        }
        Expr::Unary(u) => nodes(&u.expr, out),
        Expr::Binary(b) => {
            nodes(&b.lhs, out);
            nodes(&b.rhs, out);
        }
        Expr::Paren(p) => nodes(&p.expr, out),
        Expr::Subquery(s) => nodes(&s.expr, out),
        _ => {}
    }
}

/// Byte offsets of function and aggregation arguments in `text`, by node address.
pub(crate) fn locate(text: &str, expr: &Expr) -> HashMap<NodeId, usize> {
    let toks = scan(text);
    let sites = sites(&toks);
    let mut calls = Vec::new();
    nodes(expr, &mut calls);
    let mut out = HashMap::new();
    if sites.len() != calls.len() {
        return out;
    }
    for (site, node) in sites.iter().zip(calls) {
        let args: Vec<&Expr> = match node {
            Expr::Call(c) if c.func.name == site.name => c.args.args.iter().map(|a| &**a).collect(),
            Expr::Aggregate(a) if a.op.to_string().eq_ignore_ascii_case(site.name) => {
                a.param.iter().map(|p| &**p).chain([&*a.expr]).collect()
            }
            _ => return HashMap::new(),
        };
        if args.len() != site.args.len() {
            return HashMap::new();
        }
        for (a, off) in args.into_iter().zip(&site.args) {
            out.insert(NodeId::of(a), *off);
        }
    }
    out
}

/// Where the expression in `text` starts (after leading blanks and comments).
pub(crate) fn start(text: &str) -> usize {
    scan(text).first().map_or(0, |t| t.0)
}

/// Prometheus's `line:col` of a byte offset (both from 1).
pub(crate) fn line_col(text: &str, pos: usize) -> String {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = pos as i64 - before.rfind('\n').map_or(-1, |i| i as i64);
    format!("{line}:{col}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted_as_go_quotes_their_bytes() {
        let q = |s: &str| go_quote_literal(s);
        assert_eq!(q(r#""a\xc5z", version)"#).as_deref(), Some(r#""a\xc5z""#));
        assert_eq!(q(r#""Åb\n\"x" rest"#).as_deref(), Some(r#""Åb\n\"x""#));
        assert_eq!(q(r#"'\101\u00e9'"#).as_deref(), Some(r#""Aé""#));
        assert_eq!(q("`a\\xc5`").as_deref(), Some(r#""a\\xc5""#));
        assert_eq!(q(r#""unterminated"#), None);
        assert_eq!(q(r#""bad \x"#), None);
        assert_eq!(q("version"), None);
    }

    fn pos_of_arg(query: &str, pick: impl Fn(&Expr) -> &Expr) -> Option<String> {
        let e = promql_parser::parser::parse(query).unwrap();
        let m = locate(query, &e);
        m.get(&NodeId::of(pick(&e))).map(|p| line_col(query, *p))
    }

    fn call_arg(e: &Expr, i: usize) -> &Expr {
        match e {
            Expr::Call(c) => &c.args.args[i],
            _ => panic!("not a call"),
        }
    }

    #[test]
    fn arguments_of_calls() {
        assert_eq!(
            pos_of_arg("rate(node_load1[5m])", |e| call_arg(e, 0)).as_deref(),
            Some("1:6")
        );
        assert_eq!(
            pos_of_arg("histogram_quantile(NaN, non_existent)", |e| call_arg(e, 0)).as_deref(),
            Some("1:20")
        );
        assert_eq!(
            pos_of_arg(
                "histogram_quantile(0.9,\n  sum by (le) (rate(x_bucket{a=\"(,\"}[5m])))",
                |e| call_arg(e, 1)
            )
            .as_deref(),
            Some("2:3")
        );
    }

    #[test]
    fn nested_and_aggregated() {
        let q = "sum by (le) (rate(a[1m])) / on() group_left quantile(2, rate(b[1m]))";
        let e = promql_parser::parser::parse(q).unwrap();
        let m = locate(q, &e);
        // rate(a…) arg, sum's expr, quantile's param and expr, rate(b…) arg.
        let mut offs: Vec<usize> = m.values().copied().collect();
        offs.sort();
        let want: Vec<usize> = ["rate(a", "a[1m]", "2, rate", "rate(b", "b[1m]"]
            .iter()
            .map(|s| q.find(s).unwrap())
            .collect();
        assert_eq!(offs, want);
    }

    #[test]
    fn at_modifiers_are_not_calls() {
        assert_eq!(
            pos_of_arg("rate(x[1m] @ start())", |e| call_arg(e, 0)).as_deref(),
            Some("1:6")
        );
    }
}
