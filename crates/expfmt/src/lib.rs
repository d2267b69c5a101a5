//! Exposition formats: parsing Prometheus text format and OpenMetrics, line by line.
//!
//! Written by hand rather than with a parser library because it is hot: every scrape and
//! every imported sample goes through it. A [`Line`] borrows from the input where it can;
//! errors carry what went wrong and the caller adds the line number.
//!
//! ```
//! use lookout_expfmt::{parse_line, Format, Line};
//!
//! let line = parse_line(r#"http_requests_total{code="200",method="get"} 1027 1395066363.000"#, Format::OpenMetrics).unwrap();
//! let Line::Sample(s) = line else { panic!() };
//! assert_eq!(s.name, "http_requests_total");
//! assert_eq!(s.labels[0], ("code", "200".into()));
//! assert_eq!(s.timestamp_ms, Some(1_395_066_363_000));
//! ```

use std::borrow::Cow;

pub mod nhcb;
pub mod proto;

/// Which format a line is in: the timestamp unit differs (ms in Prometheus text, seconds
/// in OpenMetrics), and OpenMetrics ends with `# EOF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleLine<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Labels in the order written.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The value.
    pub value: f64,
    /// Timestamp in ms, if given.
    pub timestamp_ms: Option<i64>,
    /// The sample's exemplar (OpenMetrics `# {labels} value [timestamp]`), if any.
    pub exemplar: Option<ExemplarLine<'a>>,
}

/// An exemplar written after a sample (OpenMetrics).
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarLine<'a> {
    /// The exemplar's labels in the order written.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// Its value.
    pub value: f64,
    /// Its timestamp in ms, if given.
    pub timestamp_ms: Option<i64>,
}

/// A parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// `# HELP name text`.
    Help {
        /// Metric family name.
        name: &'a str,
        /// Help text (escapes not yet resolved).
        text: &'a str,
    },
    /// `# TYPE name type`.
    Type {
        /// Metric family name.
        name: &'a str,
        /// Declared type.
        kind: &'a str,
    },
    /// `# UNIT name unit`.
    Unit {
        /// Metric family name.
        name: &'a str,
        /// Declared unit.
        unit: &'a str,
    },
    /// `# EOF` (OpenMetrics).
    Eof,
    /// A comment or an empty line.
    Empty,
    /// A sample.
    Sample(SampleLine<'a>),
}

/// A line does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    is_name_start(c) || c.is_ascii_digit()
}

/// Parses a float as both formats write them (`NaN`, `+Inf`, `-Inf`, Go floats).
pub fn parse_float(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => {
            let b = s.as_bytes();
            // Reject what Rust accepts but the formats do not ("infinity", "1_0").
            if b.is_empty()
                || b.iter()
                    .any(|c| !(c.is_ascii_digit() || b"+-.eE".contains(c)))
            {
                return None;
            }
            s.parse().ok()
        }
    }
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn name(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if !self.peek().is_some_and(is_name_start) {
            return None;
        }
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        Some(&self.s[start..self.pos])
    }

    /// A label set `{name="value",…}`, the cursor on its `{`.
    fn labels(&mut self) -> Result<Vec<(&'a str, Cow<'a, str>)>, ParseError> {
        let mut labels: Vec<(&'a str, Cow<'a, str>)> = Vec::new();
        self.pos += 1;
        loop {
            self.skip_spaces();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(labels);
            }
            let Some(ln) = self.name() else {
                return err("invalid label name");
            };
            self.skip_spaces();
            if self.peek() != Some(b'=') {
                return err(format!("expected '=' after label name {ln:?}"));
            }
            self.pos += 1;
            self.skip_spaces();
            let v = self.quoted()?;
            if labels.iter().any(|(n, _)| *n == ln) {
                return err(format!("duplicate label name {ln:?}"));
            }
            labels.push((ln, v));
            self.skip_spaces();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(labels);
                }
                _ => return err("expected ',' or '}' after a label"),
            }
        }
    }

    /// An OpenMetrics exemplar, ` # {labels} value [timestamp]`, the cursor on its `#`.
    fn exemplar(&mut self) -> Result<ExemplarLine<'a>, ParseError> {
        self.pos += 1;
        if self.peek() != Some(b' ') {
            return err("expected a space after the exemplar's '#'");
        }
        self.skip_spaces();
        if self.peek() != Some(b'{') {
            return err("expected the exemplar's label set");
        }
        let labels = self.labels()?;
        self.skip_spaces();
        let vs = self.token();
        let Some(value) = parse_float(vs) else {
            return err(format!("invalid exemplar value {vs:?}"));
        };
        self.skip_spaces();
        let mut timestamp_ms = None;
        if self.peek().is_some() {
            timestamp_ms = Some(timestamp(self.token(), Format::OpenMetrics)?);
            self.skip_spaces();
        }
        if self.peek().is_some() {
            return err("unexpected text after the exemplar");
        }
        Ok(ExemplarLine {
            labels,
            value,
            timestamp_ms,
        })
    }

    /// A double-quoted string with `\\`, `\"` and `\n` escapes. Scans bytes: neither
    /// `"` nor `\` occurs inside a multi-byte UTF-8 character.
    fn quoted(&mut self) -> Result<Cow<'a, str>, ParseError> {
        if self.peek() != Some(b'"') {
            return err("expected a quoted label value");
        }
        self.pos += 1;
        let bytes = self.s.as_bytes();
        let mut start = self.pos;
        let mut owned: Option<String> = None;
        while let Some(&c) = bytes.get(self.pos) {
            match c {
                b'"' => {
                    let v = match owned {
                        Some(mut o) => {
                            o.push_str(&self.s[start..self.pos]);
                            Cow::Owned(o)
                        }
                        None => Cow::Borrowed(&self.s[start..self.pos]),
                    };
                    self.pos += 1;
                    return Ok(v);
                }
                b'\\' => {
                    let o = owned.get_or_insert_with(String::new);
                    o.push_str(&self.s[start..self.pos]);
                    match bytes.get(self.pos + 1) {
                        Some(b'\\') => o.push('\\'),
                        Some(b'"') => o.push('"'),
                        Some(b'n') => o.push('\n'),
                        _ => return err("invalid escape in label value"),
                    }
                    self.pos += 2;
                    start = self.pos;
                }
                _ => self.pos += 1,
            }
        }
        err("unterminated label value")
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|c| c != b' ' && c != b'\t') {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }
}

fn parse_meta(rest: &str) -> Result<Line<'_>, ParseError> {
    let mut parts = rest.splitn(3, ' ');
    let kw = parts.next().unwrap_or("");
    let name = parts.next().unwrap_or("");
    let text = parts.next().unwrap_or("");
    match kw {
        "HELP" | "TYPE" | "UNIT" if name.is_empty() => err(format!("# {kw} without a metric name")),
        "HELP" => Ok(Line::Help { name, text }),
        "TYPE" => match text {
            "counter" | "gauge" | "histogram" | "gaugehistogram" | "summary" | "info"
            | "stateset" | "unknown" | "untyped" => Ok(Line::Type { name, kind: text }),
            other => err(format!("invalid metric type {other:?}")),
        },
        "UNIT" => Ok(Line::Unit { name, unit: text }),
        _ => Ok(Line::Empty),
    }
}

/// Parses one line (without its newline).
pub fn parse_line(line: &str, format: Format) -> Result<Line<'_>, ParseError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return match format {
            Format::OpenMetrics => err("empty line (not allowed in OpenMetrics)"),
            Format::Prometheus => Ok(Line::Empty),
        };
    }
    if let Some(rest) = line.strip_prefix('#') {
        if rest == " EOF" {
            return Ok(Line::Eof);
        }
        return match rest.strip_prefix(' ') {
            Some(r) => parse_meta(r),
            None => Ok(Line::Empty),
        };
    }
    let mut c = Cursor { s: line, pos: 0 };
    let Some(name) = c.name() else {
        return err(format!("invalid metric name at {:?}", truncate(line)));
    };
    let labels = if c.peek() == Some(b'{') {
        c.labels()?
    } else {
        Vec::new()
    };
    if !matches!(c.peek(), Some(b' ' | b'\t')) {
        return err("expected a space before the value");
    }
    c.skip_spaces();
    let vs = c.token();
    let Some(value) = parse_float(vs) else {
        return err(format!("invalid value {vs:?}"));
    };
    c.skip_spaces();
    let mut timestamp_ms = None;
    if c.peek().is_some() && c.peek() != Some(b'#') {
        timestamp_ms = Some(timestamp(c.token(), format)?);
        c.skip_spaces();
    }
    let mut exemplar = None;
    match c.peek() {
        None => {}
        Some(b'#') if format == Format::OpenMetrics => exemplar = Some(c.exemplar()?),
        Some(_) => {
            return err(format!(
                "unexpected text after the sample: {:?}",
                truncate(&line[c.pos..])
            ));
        }
    }
    Ok(Line::Sample(SampleLine {
        name,
        labels,
        value,
        timestamp_ms,
        exemplar,
    }))
}

/// A sample's or exemplar's timestamp: integer ms in Prometheus text, float seconds in
/// OpenMetrics; out of the i64 range is an error, not a wrap.
fn timestamp(ts: &str, format: Format) -> Result<i64, ParseError> {
    let bad = || ParseError(format!("invalid timestamp {ts:?}"));
    match format {
        Format::Prometheus => ts.parse::<i64>().map_err(|_| bad()),
        Format::OpenMetrics => {
            let ms = parse_float(ts).filter(|f| f.is_finite()).ok_or_else(bad)? * 1000.0;
            // i64::MAX as f64 rounds up to 2^63, which does not fit: refuse it.
            if !(-9.223_372_036_854_775e18..9.223_372_036_854_775e18).contains(&ms) {
                return Err(bad());
            }
            Ok(ms.round() as i64)
        }
    }
}

/// A line of a whole exposition failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A whole exposition: its samples in order and what its metadata lines declared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition<'a> {
    /// Every sample (OpenMetrics `_created` series left out, as Prometheus does).
    pub samples: Vec<SampleLine<'a>>,
    /// The OpenMetrics `_created` lines of counters, histograms and summaries, with
    /// the family they belong to: when each series was created (the value, seconds).
    pub created: Vec<(&'a str, SampleLine<'a>)>,
    /// `# TYPE` per family.
    pub types: Vec<(&'a str, &'a str)>,
    /// `# HELP` per family.
    pub help: Vec<(&'a str, &'a str)>,
    /// `# UNIT` per family (OpenMetrics).
    pub units: Vec<(&'a str, &'a str)>,
}

/// What Prometheus sends as `Accept` when it scrapes: OpenMetrics preferred, then the
/// Prometheus text format.
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// The format a response's `Content-Type` announces (Prometheus text when it is not
/// OpenMetrics, as Prometheus decides).
pub fn format_for_content_type(content_type: &str) -> Format {
    if content_type.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/openmetrics-text")
    }) {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

/// Parses a whole exposition (a scrape body). OpenMetrics must end with `# EOF` and have
/// nothing after it. Errors name the line.
pub fn parse(body: &str, format: Format) -> Result<Exposition<'_>, LineError> {
    let mut out = Exposition::default();
    let mut eof_at = None;
    let mut created_skip: Option<&str> = None;
    let mut lines = body.split('\n').enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let n = i + 1;
        // The final newline leaves one empty piece: not a line.
        if line.is_empty() && lines.peek().is_none() {
            break;
        }
        if let Some(at) = eof_at {
            return Err(LineError {
                line: n,
                message: format!("text after # EOF (line {at})"),
            });
        }
        let parsed = parse_line(line, format).map_err(|e| LineError {
            line: n,
            message: e.0,
        })?;
        match parsed {
            Line::Sample(s) => {
                if let Some(fam) = created_skip
                    && s.name.len() == fam.len() + "_created".len()
                    && s.name.starts_with(fam)
                    && s.name.ends_with("_created")
                {
                    out.created.push((fam, s));
                    continue;
                }
                out.samples.push(s);
            }
            Line::Type { name, kind } => {
                created_skip = (format == Format::OpenMetrics
                    && matches!(kind, "counter" | "histogram" | "summary" | "gaugehistogram"))
                .then_some(name);
                out.types.push((name, kind));
            }
            Line::Help { name, text } => out.help.push((name, text)),
            Line::Unit { name, unit } => out.units.push((name, unit)),
            Line::Eof if format == Format::OpenMetrics => eof_at = Some(n),
            Line::Eof | Line::Empty => {}
        }
    }
    if format == Format::OpenMetrics && eof_at.is_none() {
        return Err(LineError {
            line: body.lines().count().max(1),
            message: "OpenMetrics exposition does not end with # EOF".into(),
        });
    }
    Ok(out)
}

fn truncate(s: &str) -> &str {
    let end = s.char_indices().nth(60).map(|(i, _)| i).unwrap_or(s.len());
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(l: &str, f: Format) -> SampleLine<'_> {
        match parse_line(l, f).unwrap() {
            Line::Sample(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_samples_and_metadata() {
        let s = sample(r#"a{b="x\"y\\z\n",c="d"} -Inf 1500"#, Format::Prometheus);
        assert_eq!(s.labels[0].1, "x\"y\\z\n");
        assert_eq!(s.value, f64::NEG_INFINITY);
        assert_eq!(s.timestamp_ms, Some(1500));
        let s = sample("up 1 1.5", Format::OpenMetrics);
        assert_eq!(s.timestamp_ms, Some(1500));
        assert!(sample("nan_metric NaN", Format::Prometheus).value.is_nan());
        let s = sample(
            r#"foo_bucket{le="0.5"} 3 # {trace_id="a"} 0.4 1.2"#,
            Format::OpenMetrics,
        );
        assert_eq!(s.value, 3.0);
        let e = s.exemplar.unwrap();
        assert_eq!(e.labels, vec![("trace_id", "a".into())]);
        assert_eq!((e.value, e.timestamp_ms), (0.4, Some(1200)));
        let e = sample(r#"foo_total 3 # {} 1"#, Format::OpenMetrics)
            .exemplar
            .unwrap();
        assert_eq!((e.labels.len(), e.value, e.timestamp_ms), (0, 1.0, None));
        // After a timestamp too.
        let s = sample(
            r#"foo_total 3 7 # {span_id="b",trace_id="c"} 1e-3 8"#,
            Format::OpenMetrics,
        );
        assert_eq!(s.timestamp_ms, Some(7000));
        assert_eq!(s.exemplar.unwrap().labels[1].1, "c");
        assert_eq!(
            parse_line("# TYPE foo counter", Format::OpenMetrics).unwrap(),
            Line::Type {
                name: "foo",
                kind: "counter"
            }
        );
        assert_eq!(parse_line("# EOF", Format::OpenMetrics).unwrap(), Line::Eof);
        assert_eq!(
            parse_line("# just a comment", Format::Prometheus).unwrap(),
            Line::Empty
        );
    }

    #[test]
    fn created_lines_are_kept_apart_with_their_family() {
        let body = "# TYPE req counter\nreq_total{code=\"200\"} 5\nreq_created{code=\"200\"} 1700000000.5\n# TYPE lat histogram\nlat_bucket{le=\"1\"} 2\nlat_bucket{le=\"+Inf\"} 3\nlat_count 3\nlat_sum 1.5\nlat_created 1700000001\n# TYPE g gauge\ng_created 7\n# EOF\n";
        let e = parse(body, Format::OpenMetrics).unwrap();
        let names: Vec<&str> = e.samples.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "req_total",
                "lat_bucket",
                "lat_bucket",
                "lat_count",
                "lat_sum",
                "g_created"
            ],
            "a gauge's _created is an ordinary sample"
        );
        let created: Vec<(&str, f64)> = e.created.iter().map(|(f, s)| (*f, s.value)).collect();
        assert_eq!(
            created,
            [("req", 1_700_000_000.5), ("lat", 1_700_000_001.0)]
        );
        assert_eq!(e.created[0].1.labels, vec![("code", "200".into())]);
    }

    #[test]
    fn rejects_malformed_lines_with_a_reason() {
        for (l, why) in [
            ("9bad 1", "metric name"),
            ("a{b=1} 1", "quoted"),
            ("a{b=\"1\" 1", "','"),
            ("a 1x", "invalid value"),
            ("a 1 abc", "timestamp"),
            ("a{b=\"1\",b=\"2\"} 1", "duplicate"),
            ("# TYPE foo bogus", "metric type"),
            ("a 1 2 3", "unexpected"),
        ] {
            let e = parse_line(l, Format::Prometheus).unwrap_err();
            assert!(e.0.contains(why), "{l}: {e}");
        }
        for (l, why) in [
            ("a 1 # {", "label name"),
            ("a 1 #{x=\"y\"} 1", "space after"),
            ("a 1 # x 1", "label set"),
            ("a 1 # {x=\"y\"}", "exemplar value"),
            ("a 1 # {x=\"y\"} one", "exemplar value"),
            ("a 1 # {x=\"y\"} 1 2 3", "after the exemplar"),
            ("a 1 # {x=\"y\"} 1 1e300", "timestamp"),
            ("a 1 1e300", "timestamp"),
            ("a 1 -9.3e15", "timestamp"),
            ("a 1 # {x=\"y\",x=\"z\"} 1", "duplicate"),
        ] {
            let e = parse_line(l, Format::OpenMetrics).unwrap_err();
            assert!(e.0.contains(why), "{l}: {e}");
        }
        // Prometheus text has no exemplars.
        assert!(parse_line("a 1 # {x=\"y\"} 1", Format::Prometheus).is_err());
    }
}
