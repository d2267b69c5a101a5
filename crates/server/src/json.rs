//! Prometheus HTTP API JSON, byte for byte: numbers as Prometheus prints them (sample
//! values as strings: "NaN", "+Inf", "1e-07"; timestamps as seconds with up to three
//! decimals), the `{status, data, errorType, error, warnings}` envelope.
//!
//! Written by hand rather than through serde because Prometheus's number formatting (Go's
//! `strconv` shortest representation, seconds without a trailing `.0`) is part of the
//! contract and serde_json would print `1700000000.0`.

use std::fmt::Write;

use lookout_model::Labels;
use lookout_promql::Value;

/// Appends a JSON string literal.
pub(crate) fn string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("strings serialize"));
}

/// Appends a timestamp (ms) as Prometheus's `MarshalTimestamp`: whole seconds, then, if
/// the milliseconds are not zero, a dot and the milliseconds padded to three digits
/// (`1700000000`, `1700000000.050`).
pub(crate) fn timestamp(out: &mut String, t: i64) {
    let (neg, t) = if t < 0 { (true, -t) } else { (false, t) };
    if neg {
        out.push('-');
    }
    let _ = write!(out, "{}", t / 1000);
    let frac = t % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

/// Formats a float as Go's `strconv.FormatFloat(f, 'f' or 'e', -1, 64)` the way
/// Prometheus's `MarshalFloat` chooses: exponent form below 1e-6 and from 1e21.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust prints `1e-7`; Go prints `1e-07` (at least two exponent digits, explicit sign).
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').expect("exponent form");
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mant}e{sign}{digits:0>2}");
    }
    let s = format!("{f}");
    if s == "-0" { "-0".into() } else { s }
}

/// Appends a sample value as a JSON string.
pub(crate) fn value(out: &mut String, v: f64) {
    out.push('"');
    out.push_str(&format_float(v));
    out.push('"');
}

/// Appends a label set as a JSON object.
pub(crate) fn labels(out: &mut String, ls: &Labels) {
    out.push('{');
    for (i, l) in ls.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, &l.name);
        out.push(':');
        string(out, &l.value);
    }
    out.push('}');
}

/// Appends the `data` object of a query result evaluated at `t` (ms).
pub(crate) fn query_data(out: &mut String, v: &Value, t: i64) {
    out.push_str("{\"resultType\":");
    string(out, v.type_name());
    out.push_str(",\"result\":");
    match v {
        Value::Scalar(f) => {
            out.push('[');
            timestamp(out, t);
            out.push(',');
            value(out, *f);
            out.push(']');
        }
        Value::String(s) => {
            out.push('[');
            timestamp(out, t);
            out.push(',');
            string(out, s);
            out.push(']');
        }
        Value::Vector(vs) => {
            out.push('[');
            for (i, s) in vs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                labels(out, &s.labels);
                out.push_str(",\"value\":[");
                timestamp(out, t);
                out.push(',');
                value(out, s.v);
                out.push_str("]}");
            }
            out.push(']');
        }
        Value::Matrix(ms) => {
            out.push('[');
            for (i, s) in ms.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                labels(out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push('[');
                    timestamp(out, p.t);
                    out.push(',');
                    value(out, p.v);
                    out.push(']');
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
}

/// Wraps `data` (already JSON) in a success envelope.
pub(crate) fn success(data: &str, warnings: &[String]) -> String {
    success_annotated(data, warnings, &[])
}

/// Wraps `data` in a success envelope with Prometheus's `warnings` and `infos`.
pub(crate) fn success_annotated(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 40);
    out.push_str("{\"status\":\"success\",\"data\":");
    out.push_str(data);
    if !warnings.is_empty() {
        out.push_str(",\"warnings\":");
        out.push_str(&serde_json::to_string(warnings).expect("strings serialize"));
    }
    if !infos.is_empty() {
        out.push_str(",\"infos\":");
        out.push_str(&serde_json::to_string(infos).expect("strings serialize"));
    }
    out.push('}');
    out
}

/// An error envelope.
pub(crate) fn error(error_type: &str, message: &str) -> String {
    let mut out = String::from("{\"status\":\"error\",\"errorType\":");
    string(&mut out, error_type);
    out.push_str(",\"error\":");
    string(&mut out, message);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_as_go_does() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(1e6), "1000000");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(1e-7), "1e-07");
        assert_eq!(format_float(1.5e21), "1.5e+21");
        assert_eq!(format_float(-2.5e-10), "-2.5e-10");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(123456789.125), "123456789.125");
    }

    #[test]
    fn timestamps_format_as_go_does() {
        let f = |t| {
            let mut s = String::new();
            timestamp(&mut s, t);
            s
        };
        assert_eq!(f(1_700_000_000_000), "1700000000");
        assert_eq!(f(1_700_000_000_050), "1700000000.050");
        assert_eq!(f(-1500), "-1.500");
    }
}
