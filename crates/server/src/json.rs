//! Prometheus HTTP API JSON, byte for byte: numbers as Prometheus prints them (sample
//! values as strings: "NaN", "+Inf", "1e-07"; timestamps as seconds with up to three
//! decimals), the `{status, data, errorType, error, warnings}` envelope.
//!
//! Written by hand rather than through serde because Prometheus's number formatting (Go's
//! `strconv` shortest representation, seconds without a trailing `.0`) is part of the
//! contract and serde_json would print `1700000000.0`.

use lookout_model::Labels;
pub use lookout_model::gofmt::marshal_float as format_float;
use lookout_model::gofmt::push_marshal_float as push_float;
use lookout_promql::Value;

/// Appends a JSON string literal.
pub(crate) fn string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("strings serialize"));
}

/// Appends a timestamp (ms) as Prometheus's `MarshalTimestamp`: whole seconds, then, if
/// the milliseconds are not zero, a dot and the milliseconds padded to three digits
/// (`1700000000`, `1700000000.050`).
pub(crate) fn timestamp(out: &mut String, t: i64) {
    // unsigned_abs: i64::MIN has no positive counterpart.
    if t < 0 {
        out.push('-');
    }
    let t = t.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(t / 1000));
    let frac = t % 1000;
    if frac != 0 {
        out.push('.');
        out.push((b'0' + (frac / 100) as u8) as char);
        out.push((b'0' + (frac / 10 % 10) as u8) as char);
        out.push((b'0' + (frac % 10) as u8) as char);
    }
}

/// Appends a sample value as a JSON string.
pub(crate) fn value(out: &mut String, v: f64) {
    out.push('"');
    push_float(out, v);
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

/// A generous guess of the bytes [`query_data`] writes, so the buffer is allocated once
/// rather than grown (and copied) while a large matrix is written.
pub(crate) fn query_size_hint(v: &Value) -> usize {
    match v {
        Value::Vector(vs) => vs.iter().map(|s| 64 + labels_size(&s.labels)).sum(),
        Value::Matrix(ms) => ms
            .iter()
            .map(|s| 32 + labels_size(&s.labels) + 36 * s.samples.len())
            .sum(),
        _ => 64,
    }
}

fn labels_size(ls: &lookout_model::Labels) -> usize {
    ls.iter()
        .map(|l| l.name.len() + l.value.len() + 6)
        .sum::<usize>()
        + 2
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
    out.push_str(SUCCESS_PREFIX);
    out.push_str(data);
    finish_success(&mut out, warnings, infos);
    out
}

/// What a success envelope starts with; [`finish_success`] closes it.
pub(crate) const SUCCESS_PREFIX: &str = "{\"status\":\"success\",\"data\":";

/// Closes a success envelope whose data has been written after [`SUCCESS_PREFIX`].
pub(crate) fn finish_success(out: &mut String, warnings: &[String], infos: &[String]) {
    if !warnings.is_empty() {
        out.push_str(",\"warnings\":");
        out.push_str(&serde_json::to_string(warnings).expect("strings serialize"));
    }
    if !infos.is_empty() {
        out.push_str(",\"infos\":");
        out.push_str(&serde_json::to_string(infos).expect("strings serialize"));
    }
    out.push('}');
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
