//! A runner for Prometheus's PromQL test scripts (`load`, `clear`, `eval`), the format of
//! `promql/promqltest` upstream, so any file written for Prometheus runs against Lookout.
//!
//! ```
//! use lookout_promql::{Engine, promqltest};
//!
//! let script = "load 1m\n  up{job=\"a\"} 1+1x5\n\neval instant at 2m up\n  up{job=\"a\"} 3\n";
//! let report = promqltest::run_script(&Engine::default(), "inline", script);
//! assert_eq!((report.passed, report.failures.len()), (1, 0));
//! ```
//!
//! Not supported yet, and reported as failures rather than skipped: native histogram
//! values (`{{…}}`), and `expect warn` / `expect info` (annotations are not produced yet).

use std::path::Path;

use lookout_model::{Labels, METRIC_NAME_LABEL, Sample, stale_nan};
use lookout_storage::{Appendable, MemStorage};

use crate::{Engine, Value};

/// One failed `eval` (or a line that could not be run).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// 1-based line of the command.
    pub line: usize,
    /// What went wrong.
    pub message: String,
}

/// The outcome of one script.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The script's name (its path for files).
    pub file: String,
    /// `eval` commands that passed.
    pub passed: usize,
    /// Commands that failed, in order.
    pub failures: Vec<Failure>,
}

/// Runs a script file.
pub fn run_file(engine: &Engine, path: &Path) -> std::io::Result<Report> {
    let text = std::fs::read_to_string(path)?;
    Ok(run_script(engine, &path.display().to_string(), &text))
}

/// Prometheus's `almost.Equal` with its default epsilon; NaN equals NaN.
pub fn almost_equal(a: f64, b: f64) -> bool {
    almost_equal_eps(a, b, 0.000001)
}

/// Prometheus's `almost.Equal` with epsilon `eps`.
pub fn almost_equal_eps(a: f64, b: f64, eps: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < eps * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let ms = match body.parse::<f64>() {
        Ok(n) => (n * 1000.0).round() as i64,
        Err(_) => lookout_model::parse_duration(body)?.as_millis() as i64,
    };
    Ok(if neg { -ms } else { ms })
}

fn parse_number(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        // No hex here: in series notation `0x59` means 0 repeated.
        _ => s.parse::<f64>().ok(),
    }
}

/// Expands value notation (`1+2x3`, `_x2`, `stale`, …) into optional values (`None`
/// for `_`), as `load` and promtool's `input_series` write them.
pub fn expand_values(tokens: &[&str]) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for &tok in tokens {
        if tok.starts_with("{{") {
            return Err("native histogram values are not supported yet".into());
        }
        if tok == "_" {
            out.push(None);
            continue;
        }
        if tok == "stale" {
            out.push(Some(stale_nan()));
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("bad repetition {tok:?}"))?;
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        if let Some(v) = parse_number(tok) {
            out.push(Some(v));
            continue;
        }
        let (head, times) = tok
            .rsplit_once('x')
            .ok_or_else(|| format!("bad value {tok:?}"))?;
        let times: u64 = times.parse().map_err(|_| format!("bad value {tok:?}"))?;
        // Split head into start and signed delta at the last +/- that is not a sign or exponent.
        let bytes = head.as_bytes();
        let mut split = None;
        for i in (1..bytes.len()).rev() {
            if (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E') {
                split = Some(i);
                break;
            }
        }
        let (start, delta) = match split {
            Some(i) => {
                let start = parse_number(&head[..i]).ok_or_else(|| format!("bad value {tok:?}"))?;
                let mut delta =
                    parse_number(&head[i + 1..]).ok_or_else(|| format!("bad value {tok:?}"))?;
                if bytes[i] == b'-' {
                    delta = -delta;
                }
                (start, delta)
            }
            None => (
                parse_number(head).ok_or_else(|| format!("bad value {tok:?}"))?,
                0.0,
            ),
        };
        let mut v = start;
        for _ in 0..=times {
            out.push(Some(v));
            v += delta;
        }
    }
    Ok(out)
}

/// Splits `metric{a="b"} 1 2 3` into the series part and the value tokens.
fn split_series(line: &str) -> (&str, Vec<&str>) {
    let line = line.trim();
    let end = if let Some(open) = line.find('{') {
        if line[..open].contains(char::is_whitespace) {
            line.find(char::is_whitespace).unwrap_or(line.len())
        } else {
            let mut in_str = false;
            let mut escaped = false;
            let mut close = line.len();
            for (i, c) in line.char_indices().skip(open) {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if in_str => escaped = true,
                    '"' => in_str = !in_str,
                    '}' if !in_str => {
                        close = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            close
        }
    } else {
        line.find(char::is_whitespace).unwrap_or(line.len())
    };
    let (series, rest) = line.split_at(end);
    (series, rest.split_whitespace().collect())
}

/// Parses a series descriptor (`metric{a="b"}`, `{__name__="m"}`, `{}`) into labels.
pub fn parse_labels(s: &str) -> Result<Labels, String> {
    let bad = |why: &str| format!("bad series {s:?}: {why}");
    let s = s.trim();
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let valid_name = |n: &str| {
        n.chars().enumerate().all(|(i, c)| {
            c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
        })
    };
    if !valid_name(name) {
        return Err(bad("invalid metric name"));
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !name.is_empty() {
        pairs.push((METRIC_NAME_LABEL.into(), name.to_string()));
    }
    if !rest.is_empty() {
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(|| bad("unbalanced braces"))?;
        let mut chars = inner.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut lname = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    break;
                }
                lname.push(c);
                chars.next();
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('=') || !valid_name(&lname) || lname.is_empty() {
                return Err(bad("expected name=\"value\""));
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('"') {
                return Err(bad("expected a quoted value"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err(bad("unterminated value")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => return Err(bad("unterminated value")),
                    },
                    Some(c) => value.push(c),
                }
            }
            pairs.push((lname, value));
        }
    }
    Ok(Labels::from_pairs(pairs))
}

enum Query {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

/// An `expect warn` / `expect info` line.
struct AnnoExpect {
    info: bool,
    matcher: Option<FailMatch>,
}

#[derive(Default)]
struct Expect {
    fail: Option<Option<FailMatch>>,
    ordered: bool,
    annotations: Vec<AnnoExpect>,
    no_warn: bool,
    no_info: bool,
    string: Option<String>,
    range_vector: Option<(i64, i64, i64)>,
}

enum FailMatch {
    Msg(String),
    Regex(regex::Regex),
}

struct ExpectedSeries {
    labels: Option<Labels>,
    values: Vec<Option<f64>>,
}

/// Runs a script given as text.
pub fn run_script(engine: &Engine, name: &str, text: &str) -> Report {
    let mut report = Report {
        file: name.to_string(),
        ..Report::default()
    };
    let db = MemStorage::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    // Whether a load in this section skipped native-histogram series, or was a
    // `load_with_nhcb` whose custom-bucket native histograms we do not create.
    let mut skipped_histograms = false;
    let mut nhcb: Vec<String> = Vec::new();
    let block_end = |start: usize| {
        let mut j = start;
        while j < lines.len() {
            let l = lines[j];
            if l.trim().is_empty() || !l.starts_with(char::is_whitespace) {
                break;
            }
            j += 1;
        }
        j
    };
    while i < lines.len() {
        let raw = lines[i];
        let line = raw.trim();
        let lineno = i + 1;
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let end = block_end(i + 1);
        let body: Vec<(usize, &str)> = (i + 1..end)
            .map(|j| (j + 1, lines[j].trim()))
            .filter(|(_, l)| !l.starts_with('#'))
            .collect();
        i = end;
        let fail = |report: &mut Report, message: String| {
            report.failures.push(Failure {
                line: lineno,
                message,
            })
        };
        let word = line.split_whitespace().next().unwrap_or("");
        match word {
            "clear" => {
                db.clear();
                skipped_histograms = false;
                nhcb.clear();
            }
            w if w.starts_with("load") => {
                if w == "load_with_nhcb" {
                    for (_, l) in &body {
                        let (series, _) = split_series(l);
                        if let Ok(ls) = parse_labels(series)
                            && let Some(base) =
                                ls.metric_name().and_then(|n| n.strip_suffix("_bucket"))
                        {
                            nhcb.push(base.to_string());
                        }
                    }
                }
                if let Err(e) = load(&db, line, &body) {
                    skipped_histograms |= e.contains("native histogram");
                    fail(&mut report, e);
                }
            }
            w if w.starts_with("eval") => match eval(engine, &db, line, &body) {
                Ok(()) => report.passed += 1,
                Err(e) if nhcb.iter().any(|n| mentions(line, n)) => fail(
                    &mut report,
                    format!(
                        "{e} [the query reads the native histograms with custom buckets that load_with_nhcb creates]"
                    ),
                ),
                Err(e) if skipped_histograms => fail(
                    &mut report,
                    format!("{e} [native histogram series of this section were not loaded]"),
                ),
                Err(e) => fail(&mut report, e),
            },
            _ => fail(&mut report, format!("unknown command {line:?}")),
        }
    }
    report
}

/// Whether `query` uses the identifier `name` (not as part of a longer name).
fn mentions(query: &str, name: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    query.match_indices(name).any(|(i, _)| {
        let before = query[..i].chars().next_back();
        let after = query[i + name.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Loads a block; a bad series line is reported but the other series still load.
fn load(db: &MemStorage, line: &str, body: &[(usize, &str)]) -> Result<(), String> {
    let interval = line
        .split_whitespace()
        .nth(1)
        .ok_or("load needs an interval")?;
    let interval = parse_duration_ms(interval)?;
    let mut app = db.appender();
    let mut errors = Vec::new();
    for (lineno, l) in body {
        let (series, tokens) = split_series(l);
        let parsed = parse_labels(series).and_then(|ls| Ok((ls, expand_values(&tokens)?)));
        let (labels, values) = match parsed {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("line {lineno}: {e}"));
                continue;
            }
        };
        for (k, v) in values.into_iter().enumerate() {
            if let Some(v) = v {
                app.append(&labels, k as i64 * interval, v)
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    app.commit().map_err(|e| e.to_string())?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn parse_eval_header(line: &str, exp: &mut Expect) -> Result<(Query, String), String> {
    let mut words = line.splitn(2, char::is_whitespace);
    let cmd = words.next().unwrap_or("");
    let rest = words.next().unwrap_or("").trim();
    match cmd {
        "eval" => {}
        "eval_fail" => exp.fail = Some(None),
        "eval_ordered" => exp.ordered = true,
        "eval_warn" => exp.annotations.push(AnnoExpect {
            info: false,
            matcher: None,
        }),
        "eval_info" => exp.annotations.push(AnnoExpect {
            info: true,
            matcher: None,
        }),
        other => return Err(format!("unknown command {other:?}")),
    }
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let take_expr = |skip: usize| -> String {
        let mut s = rest;
        for _ in 0..skip {
            s = s.trim_start();
            s = &s[s.find(char::is_whitespace).unwrap_or(s.len())..];
        }
        s.trim().to_string()
    };
    match parts.first().copied() {
        Some("instant") if parts.get(1) == Some(&"at") => {
            let t = parse_duration_ms(parts.get(2).ok_or("missing time")?)?;
            Ok((Query::Instant(t), take_expr(3)))
        }
        Some("range") if parts.get(1) == Some(&"from") => {
            let start = parse_duration_ms(parts.get(2).ok_or("missing start")?)?;
            let end = parse_duration_ms(parts.get(4).ok_or("missing end")?)?;
            let step = parse_duration_ms(parts.get(6).ok_or("missing step")?)?;
            Ok((Query::Range { start, end, step }, take_expr(7)))
        }
        _ => Err(format!("bad eval command {line:?}")),
    }
}

fn eval(
    engine: &Engine,
    db: &MemStorage,
    line: &str,
    body: &[(usize, &str)],
) -> Result<(), String> {
    let mut exp = Expect::default();
    let (query, expr) = parse_eval_header(line, &mut exp)?;
    let mut expected: Vec<ExpectedSeries> = Vec::new();
    for (_, l) in body {
        if let Some(e) = l.strip_prefix("expect ") {
            let e = e.trim();
            if e == "fail" {
                exp.fail = Some(None);
            } else if let Some(m) = e.strip_prefix("fail msg:") {
                exp.fail = Some(Some(FailMatch::Msg(m.trim().to_string())));
            } else if let Some(r) = e.strip_prefix("fail regex:") {
                let re = regex::Regex::new(r.trim()).map_err(|e| e.to_string())?;
                exp.fail = Some(Some(FailMatch::Regex(re)));
            } else if e == "ordered" {
                exp.ordered = true;
            } else if e.starts_with("warn") || e.starts_with("info") {
                let info = e.starts_with("info");
                let rest = e[4..].trim();
                let matcher = if let Some(m) = rest.strip_prefix("msg:") {
                    Some(FailMatch::Msg(m.trim().to_string()))
                } else if let Some(r) = rest.strip_prefix("regex:") {
                    Some(FailMatch::Regex(
                        regex::Regex::new(r.trim()).map_err(|e| e.to_string())?,
                    ))
                } else {
                    None
                };
                exp.annotations.push(AnnoExpect { info, matcher });
            } else if e.starts_with("no_warn") {
                exp.no_warn = true;
            } else if e.starts_with("no_info") {
                exp.no_info = true;
            } else if let Some(s) = e.strip_prefix("string ") {
                exp.string = Some(s.trim().trim_matches(|c| c == '"' || c == '`').to_string());
            } else if let Some(r) = e.strip_prefix("range vector from ") {
                let p: Vec<&str> = r.split_whitespace().collect();
                if p.len() != 5 {
                    return Err(format!("bad expectation {l:?}"));
                }
                exp.range_vector = Some((
                    parse_duration_ms(p[0])?,
                    parse_duration_ms(p[2])?,
                    parse_duration_ms(p[4])?,
                ));
            } else {
                return Err(format!("unknown expectation {l:?}"));
            }
            continue;
        }
        if let Some(v) = parse_number(l) {
            expected.push(ExpectedSeries {
                labels: None,
                values: vec![Some(v)],
            });
            continue;
        }
        let (series, tokens) = split_series(l);
        expected.push(ExpectedSeries {
            labels: Some(parse_labels(series)?),
            values: expand_values(&tokens)?,
        });
    }
    let result = crate::parse(&expr).and_then(|e| match query {
        Query::Instant(t) => engine.instant_query(db, &expr, &e, t, None),
        Query::Range { start, end, step } => {
            engine.range_query(db, &expr, &e, start, end, step, None)
        }
    });
    let result = match result {
        Ok(r) => {
            check_annotations(&exp, &r.annotations)?;
            Ok(r.value)
        }
        Err(e) => Err(e),
    };
    let value = match (result, &exp.fail) {
        (Err(e), Some(None)) => {
            let _ = e;
            return Ok(());
        }
        (Err(e), Some(Some(FailMatch::Msg(m)))) => {
            return if e.to_string() == *m {
                Ok(())
            } else {
                Err(format!("expected error {m:?}, got {:?}", e.to_string()))
            };
        }
        (Err(e), Some(Some(FailMatch::Regex(re)))) => {
            return if re.is_match(&e.to_string()) {
                Ok(())
            } else {
                Err(format!(
                    "error {:?} does not match {}",
                    e.to_string(),
                    re.as_str()
                ))
            };
        }
        (Err(e), None) => return Err(format!("query {expr:?} failed: {e}")),
        (Ok(v), Some(_)) => return Err(format!("expected query {expr:?} to fail, got {v:?}")),
        (Ok(v), None) => v,
    };
    if let Some(s) = exp.string {
        return match value {
            Value::String(got) if got == s => Ok(()),
            other => Err(format!("expected string {s:?}, got {other:?}")),
        };
    }
    match (query, value) {
        (Query::Instant(_), Value::Scalar(v)) => match expected.as_slice() {
            [
                ExpectedSeries {
                    labels: None,
                    values,
                },
            ] if values.len() == 1 => {
                let want = values[0].unwrap_or(f64::NAN);
                if almost_equal(want, v) {
                    Ok(())
                } else {
                    Err(format!("expected scalar {want}, got {v}"))
                }
            }
            _ => Err(format!("expected a vector, got scalar {v}")),
        },
        (Query::Instant(_), Value::Vector(got)) => check_vector(&expected, &got, exp.ordered),
        (Query::Instant(_), Value::Matrix(got)) => match exp.range_vector {
            Some((start, _, step)) => check_matrix(&expected, &got, start, step),
            None => Err("got a range vector; add `expect range vector from …`".into()),
        },
        (Query::Range { start, step, .. }, Value::Matrix(got)) => {
            check_matrix(&expected, &got, start, step)
        }
        (_, other) => Err(format!("unexpected result {other:?}")),
    }
}

fn check_annotations(exp: &Expect, got: &crate::Annotations) -> Result<(), String> {
    for a in &exp.annotations {
        let pool = if a.info { &got.infos } else { &got.warnings };
        let kind = if a.info { "info" } else { "warning" };
        let ok = match &a.matcher {
            None => !pool.is_empty(),
            Some(FailMatch::Msg(m)) => pool.iter().any(|g| g == m),
            Some(FailMatch::Regex(r)) => pool.iter().any(|g| r.is_match(g)),
        };
        if !ok {
            return Err(format!("expected an {kind} annotation, got {pool:?}"));
        }
    }
    if exp.no_warn && !got.warnings.is_empty() {
        return Err(format!("expected no warnings, got {:?}", got.warnings));
    }
    if exp.no_info && !got.infos.is_empty() {
        return Err(format!("expected no infos, got {:?}", got.infos));
    }
    Ok(())
}

fn check_vector(
    expected: &[ExpectedSeries],
    got: &[crate::VecSample],
    ordered: bool,
) -> Result<(), String> {
    if expected.len() != got.len() {
        return Err(format!(
            "expected {} samples, got {}: {}",
            expected.len(),
            got.len(),
            got.iter()
                .map(|s| format!("{} {}", s.labels, s.v))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (idx, e) in expected.iter().enumerate() {
        let Some(labels) = &e.labels else {
            return Err("expected a scalar, got a vector".into());
        };
        let want = e.values.first().copied().flatten().unwrap_or(f64::NAN);
        let pos = got.iter().position(|s| &s.labels == labels);
        match pos {
            None => return Err(format!("expected series {labels} not in result")),
            Some(p) => {
                if ordered && p != idx {
                    return Err(format!("series {labels} at position {p}, expected {idx}"));
                }
                if !almost_equal(want, got[p].v) {
                    return Err(format!(
                        "series {labels}: expected {want}, got {}",
                        got[p].v
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_matrix(
    expected: &[ExpectedSeries],
    got: &[crate::RangeSeries],
    start: i64,
    step: i64,
) -> Result<(), String> {
    if expected.len() != got.len() {
        return Err(format!(
            "expected {} series, got {}: {}",
            expected.len(),
            got.len(),
            got.iter()
                .map(|s| s.labels.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for e in expected {
        let labels = e.labels.clone().unwrap_or_default();
        let Some(g) = got.iter().find(|s| s.labels == labels) else {
            return Err(format!("expected series {labels} not in result"));
        };
        let want: Vec<Sample> = e
            .values
            .iter()
            .enumerate()
            .filter_map(|(k, v)| v.map(|v| Sample::new(start + k as i64 * step, v)))
            .collect();
        let same = want.len() == g.samples.len()
            && want
                .iter()
                .zip(&g.samples)
                .all(|(a, b)| a.t == b.t && almost_equal(a.v, b.v));
        if !same {
            return Err(format!(
                "series {labels}: expected {:?}, got {:?}",
                want.iter().map(|s| (s.t, s.v)).collect::<Vec<_>>(),
                g.samples.iter().map(|s| (s.t, s.v)).collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_value_notation() {
        let v = expand_values(&["1+2x3", "_", "1-1x2", "_x2", "5", "-2+1x1", "1e-3+1x1"]).unwrap();
        let got: Vec<Option<f64>> = v;
        assert_eq!(
            got,
            vec![
                Some(1.0),
                Some(3.0),
                Some(5.0),
                Some(7.0),
                None,
                Some(1.0),
                Some(0.0),
                Some(-1.0),
                None,
                None,
                Some(5.0),
                Some(-2.0),
                Some(-1.0),
                Some(0.001),
                Some(1.001)
            ]
        );
    }

    #[test]
    fn splits_series_with_braces_in_values() {
        let (s, t) = split_series(r#"m{a="x}y", b="2"} 1 2"#);
        assert_eq!(s, r#"m{a="x}y", b="2"}"#);
        assert_eq!(t, vec!["1", "2"]);
    }

    #[test]
    fn failing_eval_reports_its_line() {
        let script = "load 1m\n  m 1\n\neval instant at 0m m\n  m 2\n";
        let r = run_script(&Engine::default(), "x", script);
        assert_eq!(r.passed, 0);
        assert_eq!(r.failures[0].line, 4);
    }
}
