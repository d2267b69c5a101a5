//! Numbers as Go prints them, where Prometheus's and Alertmanager's output is the
//! contract: `%v` of a float64 (templates), `strconv.FormatFloat(v, 'e', -1, 64)` (alert
//! values) and Prometheus's JSON `MarshalFloat` (API sample values). One place, used by
//! the HTTP API, the templates and PromQL's messages.

/// How Go prints NaN, infinities and zeros, whatever the verb.
pub fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else if v == 0.0 {
        Some(if v.is_sign_negative() { "-0" } else { "0" }.into())
    } else {
        None
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(v, 'g', -1, 64)` with fmt's exponent
/// threshold): `0.5`, `100000`, `1e+06`, `1.234567e+06`, `NaN`, `+Inf`.
pub fn go_float(v: f64) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    // fmt's %v: shortest digits, exponent form below 1e-4 and from 1e6 up.
    if !(-4..6).contains(&exp) {
        return exp_form(mant, exp);
    }
    format!("{v}")
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an exponent, as
/// PromQL writes numbers into labels (`count_values`, `le`/`quantile`) and messages.
pub fn format_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: shortest digits in exponent form
/// (`1e+00`, `1.5e-07`), as Prometheus writes alert values.
pub fn go_e(v: f64) -> String {
    if !v.is_finite() {
        return go_float(v);
    }
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').expect("exponent");
    exp_form(m, e.parse().expect("exponent digits"))
}

/// `MANTISSAe±EE`, as Go writes exponents (at least two digits).
pub fn exp_form(mant: &str, exp: i32) -> String {
    format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// Formats a float as Go's `strconv.FormatFloat(f, 'f' or 'e', -1, 64)` the way
/// Prometheus's `MarshalFloat` chooses: exponent form below 1e-6 and from 1e21.
///
/// The digits are the shortest that round-trip, with ties broken to even, as Go's Ryū
/// port does (the `ryu` crate gives the same digits; Rust's `Display` breaks ties up).
pub fn marshal_float(f: f64) -> String {
    let mut out = String::with_capacity(24);
    push_marshal_float(&mut out, f);
    out
}

/// Appends [`marshal_float`]'s text to `out` without allocating.
pub fn push_marshal_float(out: &mut String, f: f64) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_and_e_verbs_print_as_go_does() {
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-0.0), "-0");
        assert_eq!(go_e(1.0), "1e+00");
    }

    #[test]
    fn floats_format_as_go_does() {
        assert_eq!(marshal_float(1.0), "1");
        assert_eq!(marshal_float(1e6), "1000000");
        assert_eq!(marshal_float(0.1), "0.1");
        assert_eq!(marshal_float(1e-7), "1e-07");
        assert_eq!(marshal_float(1.5e21), "1.5e+21");
        assert_eq!(marshal_float(-2.5e-10), "-2.5e-10");
        assert_eq!(marshal_float(f64::NAN), "NaN");
        assert_eq!(marshal_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(marshal_float(123456789.125), "123456789.125");
    }

    #[test]
    fn ties_round_to_even_like_go() {
        // Exactly -766395478193889.25: Go (and Python, and ryu) print .2.
        assert_eq!(marshal_float(-7.663954781938893e14), "-766395478193889.2");
        assert_eq!(marshal_float(1e20), "100000000000000000000");
        assert_eq!(marshal_float(1.25e-5), "0.0000125");
        assert_eq!(marshal_float(-0.0), "-0");
        assert_eq!(marshal_float(123e-9), "1.23e-07");
        assert_eq!(marshal_float(5e300), "5e+300");
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
            let s = marshal_float(v);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
        }
    }
}
