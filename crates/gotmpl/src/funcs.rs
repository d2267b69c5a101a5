//! Template functions shared by alert templates (Prometheus) and notification templates
//! (Alertmanager): number humanizing, times, strings and regular expressions, with
//! Prometheus's and Alertmanager's exact output.

use gtmpl::{FuncError, Value};

use crate::fmt::as_number;

/// A template function.
pub type Func = fn(&[Value]) -> Result<Value, FuncError>;

/// Go's `%.Ng` for floats: shortest of `%e` and `%f` with `prec` significant digits,
/// trailing zeros removed.
pub fn format_g(v: f64, prec: usize) -> String {
    if let Some(s) = crate::fmt::special(v) {
        return s;
    }
    let prec = prec.max(1);
    let e = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = e.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    if exp < -4 || exp >= prec as i32 {
        let mant = trim_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A template value as a float: numbers and numeric strings.
pub fn to_f64(v: &Value) -> Result<f64, FuncError> {
    as_number(v).ok_or_else(|| match v {
        Value::String(s) => {
            FuncError::Generic(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))
        }
        other => FuncError::Generic(format!("cannot convert {other} to float")),
    })
}

/// Argument `i` of exactly `n`.
pub fn arg<'a>(args: &'a [Value], i: usize, name: &str, n: usize) -> Result<&'a Value, FuncError> {
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs(name.into(), n));
    }
    Ok(&args[i])
}

/// Argument `i` of exactly `n`, as a string.
pub fn string_arg(args: &[Value], i: usize, name: &str, n: usize) -> Result<String, FuncError> {
    Ok(match arg(args, i, name, n)? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Template function `humanize`.
pub fn humanize(args: &[Value]) -> Result<Value, FuncError> {
    let mut v = to_f64(arg(args, 0, "humanize", 1)?)?;
    if v == 0.0 || !v.is_finite() {
        return Ok(Value::from(format_g(v, 4)));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    Ok(Value::from(format!("{}{prefix}", format_g(v, 4))))
}

/// Template function `humanize1024`.
pub fn humanize1024(args: &[Value]) -> Result<Value, FuncError> {
    let mut v = to_f64(arg(args, 0, "humanize1024", 1)?)?;
    if v.abs() <= 1.0 || !v.is_finite() {
        return Ok(Value::from(format_g(v, 4)));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    Ok(Value::from(format!("{}{prefix}", format_g(v, 4))))
}

/// Prometheus's `humanizeDuration` of a number of seconds.
pub fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return format_g(v, 4);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", format_g(v, 4))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g(v, 4))
}

/// Template function `humanize_duration_fn`.
pub fn humanize_duration_fn(args: &[Value]) -> Result<Value, FuncError> {
    let v = to_f64(arg(args, 0, "humanizeDuration", 1)?)?;
    Ok(Value::from(humanize_duration(v)))
}

/// Template function `humanize_percentage`.
pub fn humanize_percentage(args: &[Value]) -> Result<Value, FuncError> {
    let v = to_f64(arg(args, 0, "humanizePercentage", 1)?)?;
    Ok(Value::from(format!("{}%", format_g(v * 100.0, 4))))
}

/// Go's `time.Time.String()` in UTC for Unix seconds: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn go_time_string(secs: f64) -> String {
    // Prometheus goes through model.Time: whole milliseconds.
    let ms = ((secs * 1e9) as i64).div_euclid(1_000_000);
    let whole = ms.div_euclid(1000);
    let nanos = ms.rem_euclid(1000) * 1_000_000;
    let (days, rem) = (whole.div_euclid(86400), whole.rem_euclid(86400));
    let (y, mo, d) = lookout_model::civil_from_days(days);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// Template function `humanize_timestamp`.
pub fn humanize_timestamp(args: &[Value]) -> Result<Value, FuncError> {
    let v = to_f64(arg(args, 0, "humanizeTimestamp", 1)?)?;
    if !v.is_finite() {
        return Ok(Value::from(format_g(v, 4)));
    }
    Ok(Value::from(go_time_string(v)))
}

/// Template function `to_time`.
pub fn to_time(args: &[Value]) -> Result<Value, FuncError> {
    humanize_timestamp(args)
}

/// Template function `to_duration`.
pub fn to_duration(args: &[Value]) -> Result<Value, FuncError> {
    humanize_duration_fn(args)
}

/// Template function `parse_duration_fn`.
pub fn parse_duration_fn(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "parseDuration", 1)?;
    let d = lookout_model::parse_duration(&s).map_err(FuncError::Generic)?;
    Ok(Value::from(d.as_secs_f64()))
}

/// Template function `now`.
pub fn now(args: &[Value]) -> Result<Value, FuncError> {
    if !args.is_empty() {
        return Err(FuncError::ExactlyXArgs("now".into(), 0));
    }
    Ok(Value::from(lookout_model::now_ms() as f64 / 1000.0))
}

/// Template function `title`.
pub fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "title", 1)?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric() && c != '\'' && c != '_';
    }
    Ok(Value::from(out))
}

/// Template function `to_upper`.
pub fn to_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(
        string_arg(args, 0, "toUpper", 1)?.to_uppercase(),
    ))
}

/// Template function `to_lower`.
pub fn to_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(
        string_arg(args, 0, "toLower", 1)?.to_lowercase(),
    ))
}

fn go_regex(pattern: &str) -> Result<regex::Regex, FuncError> {
    regex::Regex::new(pattern)
        .map_err(|e| FuncError::Generic(format!("invalid regex {pattern:?}: {e}")))
}

/// Template function `match_fn`.
pub fn match_fn(args: &[Value]) -> Result<Value, FuncError> {
    let re = go_regex(&string_arg(args, 0, "match", 2)?)?;
    let s = string_arg(args, 1, "match", 2)?;
    Ok(Value::Bool(re.is_match(&s)))
}

/// Template function `re_replace_all`.
pub fn re_replace_all(args: &[Value]) -> Result<Value, FuncError> {
    let re = go_regex(&string_arg(args, 0, "reReplaceAll", 3)?)?;
    let repl = string_arg(args, 1, "reReplaceAll", 3)?;
    let s = string_arg(args, 2, "reReplaceAll", 3)?;
    Ok(Value::from(re.replace_all(&s, repl.as_str()).into_owned()))
}

/// Template function `safe_html`.
pub fn safe_html(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(string_arg(args, 0, "safeHtml", 1)?))
}

/// `join`: joins a list of strings with a separator (`{{ join ", " .List }}`).
pub fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string_arg(args, 0, "join", 2)?;
    match &args[1] {
        Value::Array(a) => Ok(Value::from(
            a.iter()
                .map(crate::fmt::display)
                .collect::<Vec<_>>()
                .join(&sep),
        )),
        other => Err(FuncError::Generic(format!(
            "join needs a list, got {other}"
        ))),
    }
}

/// `len`, for every kind of value (gtmpl's leaves out maps).
pub fn len(args: &[Value]) -> Result<Value, FuncError> {
    let v = arg(args, 0, "len", 1)?;
    let n = match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.len(),
        Value::Map(m) | Value::Object(m) => m.len(),
        other => return Err(FuncError::Generic(format!("len of {other} is undefined"))),
    };
    Ok(Value::from(n as u64))
}

/// `stringSlice`: its arguments as a list.
pub fn string_slice(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Array(args.to_vec()))
}

/// `trimSpace`.
pub fn trim_space(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(
        string_arg(args, 0, "trimSpace", 1)?.trim().to_string(),
    ))
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Functions both template dialects have, with Go-compatible replacements for gtmpl's
/// own `printf` and comparisons.
pub const COMMON: &[(&str, Func)] = &[
    ("printf", crate::fmt::printf),
    ("len", len),
    ("eq", crate::fmt::eq),
    ("ne", crate::fmt::ne),
    ("lt", crate::fmt::lt),
    ("le", crate::fmt::le),
    ("gt", crate::fmt::gt),
    ("ge", crate::fmt::ge),
    ("title", title),
    ("toUpper", to_upper),
    ("toLower", to_lower),
    ("match", match_fn),
    ("reReplaceAll", re_replace_all),
    ("safeHtml", safe_html),
    ("humanizeDuration", humanize_duration_fn),
];
