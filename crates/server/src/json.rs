//! Prometheus HTTP API JSON, byte for byte: numbers as Prometheus prints them (sample
//! values as strings: "NaN", "+Inf", "1e-07"; timestamps as seconds with up to three
//! decimals), the `{status, data, errorType, error, warnings}` envelope.
//!
//! Written by hand rather than through serde because Prometheus's number formatting (Go's
//! `strconv` shortest representation, seconds without a trailing `.0`) is part of the
//! contract and serde_json would print `1700000000.0`.

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
    out.push_str(itoa::Buffer::new().format(t / 1000));
    let frac = t % 1000;
    if frac != 0 {
        out.push('.');
        out.push((b'0' + (frac / 100) as u8) as char);
        out.push((b'0' + (frac / 10 % 10) as u8) as char);
        out.push((b'0' + (frac % 10) as u8) as char);
    }
}

/// Formats a float as Go's `strconv.FormatFloat(f, 'f' or 'e', -1, 64)` the way
/// Prometheus's `MarshalFloat` chooses: exponent form below 1e-6 and from 1e21.
///
/// The digits are the shortest that round-trip, with ties broken to even, as Go's Ryū
/// port does (the `ryu` crate gives the same digits; Rust's `Display` breaks ties up).
pub fn format_float(f: f64) -> String {
    let mut out = String::with_capacity(24);
    push_float(&mut out, f);
    out
}

/// Appends [`format_float`]'s text to `out` without allocating.
pub(crate) fn push_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    let mut b = ryu::Buffer::new();
    let s = b.format_finite(f.abs()).as_bytes();
    // Split ryu's output into significant digits and a decimal exponent E, so that
    // |f| = 0.DIGITS × 10^E.
    let (mant, exp) = match s.iter().position(|c| *c == b'e' || *c == b'E') {
        Some(i) => (
            &s[..i],
            std::str::from_utf8(&s[i + 1..])
                .ok()
                .and_then(|e| e.parse::<i32>().ok())
                .unwrap_or(0),
        ),
        None => (s, 0),
    };
    let mut buf = [0u8; 32];
    let (mut n, mut point) = (0usize, None);
    for (i, &c) in mant.iter().enumerate() {
        if c == b'.' {
            point = Some(i);
        } else if n < buf.len() {
            buf[n] = c;
            n += 1;
        }
    }
    let point = point.unwrap_or(n) as i32;
    let lead = buf[..n].iter().take_while(|c| **c == b'0').count();
    let mut end = n;
    while end > lead && buf[end - 1] == b'0' {
        end -= 1;
    }
    let digits = std::str::from_utf8(&buf[lead..end]).expect("ASCII digits");
    let e = point + exp - lead as i32;
    if f < 0.0 {
        out.push('-');
    }
    let abs = f.abs();
    if (1e-6..1e21).contains(&abs) {
        let nd = digits.len() as i32;
        if e <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-e) as usize));
            out.push_str(digits);
        } else if e >= nd {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', (e - nd) as usize));
        } else {
            out.push_str(&digits[..e as usize]);
            out.push('.');
            out.push_str(&digits[e as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let x = e - 1;
        out.push('e');
        out.push(if x < 0 { '-' } else { '+' });
        if x.abs() < 10 {
            out.push('0');
        }
        out.push_str(itoa::Buffer::new().format(x.abs()));
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
    fn ties_round_to_even_like_go() {
        // Exactly -766395478193889.25: Go (and Python, and ryu) print .2.
        assert_eq!(format_float(-7.663954781938893e14), "-766395478193889.2");
        assert_eq!(format_float(1e20), "100000000000000000000");
        assert_eq!(format_float(1.25e-5), "0.0000125");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(123e-9), "1.23e-07");
        assert_eq!(format_float(5e300), "5e+300");
    }

    #[test]
    fn round_trips_and_matches_display_except_ties() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let v = f64::from_bits(rng);
            if !v.is_finite() {
                continue;
            }
            let s = format_float(v);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
        }
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
