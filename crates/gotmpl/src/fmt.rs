//! Go's number formatting and `fmt` verbs for templates.
//!
//! gtmpl stores an integral float as an integer and turns negative fractions into
//! integers (`-0.5` becomes `0`), and its `printf` refuses `%f` for integers. Prometheus
//! templates lean on `$value` and `printf "%.2f"`, so numbers from queries are handed to
//! templates as strings in Go's `%v` form (`1.234567e+06`, `0.5`), and `printf` and the
//! comparison functions here read numeric strings as numbers, as Go would read a float64.

use std::cmp::Ordering;

use gtmpl::{FuncError, Value};

use lookout_model::gofmt::exp_form;
pub(crate) use lookout_model::gofmt::special;
pub use lookout_model::gofmt::{go_e, go_float};

/// A template value as a float, when it is a number or a numeric string.
pub fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .or_else(|| n.as_i64().map(|i| i as f64))
            .or_else(|| n.as_u64().map(|u| u as f64)),
        Value::String(s) => match s.trim() {
            "+Inf" | "Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            t => t.parse().ok(),
        },
        _ => None,
    }
}

fn is_integer_value(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) if n.as_f64().is_none() => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.trim().parse::<i128>().ok(),
        _ => None,
    }
}

/// A value as `%v` prints it.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) => go_float(f),
            None => n.to_string(),
        },
        Value::NoValue => "<no value>".into(),
        Value::Nil => "<nil>".into(),
        other => other.to_string(),
    }
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(s: String, spec: &Spec, numeric: bool) -> String {
    let Some(w) = spec.width else { return s };
    let len = s.chars().count();
    if len >= w {
        return s;
    }
    let fill = w - len;
    if spec.minus {
        format!("{s}{}", " ".repeat(fill))
    } else if spec.zero && numeric {
        let (sign, digits) = match s.strip_prefix(['-', '+']) {
            Some(d) => (&s[..1], d),
            None => ("", s.as_str()),
        };
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

fn signed(s: String, v: f64, spec: &Spec) -> String {
    if v.is_sign_negative() || s.starts_with('-') {
        s
    } else if spec.plus {
        format!("+{s}")
    } else if spec.space {
        format!(" {s}")
    } else {
        s
    }
}

fn fmt_e(v: f64, prec: usize, upper: bool) -> String {
    if !v.is_finite() {
        return go_float(v);
    }
    let s = format!("{v:.prec$e}");
    let (m, e) = s.split_once('e').expect("exponent");
    let s = exp_form(m, e.parse().expect("exponent digits"));
    if upper { s.to_uppercase() } else { s }
}

fn fmt_g(v: f64, prec: Option<usize>, upper: bool) -> String {
    let s = match prec {
        None => go_float(v),
        Some(p) => crate::funcs::format_g(v, p),
    };
    if upper { s.to_uppercase() } else { s }
}

fn bad(verb: char, v: &Value) -> String {
    let kind = match v {
        Value::String(_) => "string",
        Value::Number(_) => "float64",
        Value::Bool(_) => "bool",
        _ => "value",
    };
    format!("%!{verb}({kind}={})", display(v))
}

fn one(verb: char, spec: &Spec, v: &Value) -> String {
    match verb {
        'v' | 's' => {
            let s = display(v);
            let s = match (verb, spec.prec) {
                ('s', Some(p)) => s.chars().take(p).collect(),
                _ => s,
            };
            pad(s, spec, false)
        }
        'q' => pad(format!("{:?}", display(v)), spec, false),
        't' => match v {
            Value::Bool(b) => pad(b.to_string(), spec, false),
            other => bad('t', other),
        },
        'd' => match is_integer_value(v) {
            Some(i) => pad(signed(i.to_string(), i as f64, spec), spec, true),
            None => bad('d', v),
        },
        'x' | 'X' => {
            let s = match (is_integer_value(v), v) {
                (Some(i), _) => format!("{i:x}"),
                (None, Value::String(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                _ => return bad(verb, v),
            };
            pad(if verb == 'X' { s.to_uppercase() } else { s }, spec, true)
        }
        'f' | 'F' | 'e' | 'E' | 'g' | 'G' => {
            let Some(f) = as_number(v) else {
                return bad(verb, v);
            };
            let s = match verb {
                'f' | 'F' if f.is_finite() => format!("{f:.*}", spec.prec.unwrap_or(6)),
                'f' | 'F' => go_float(f),
                'e' | 'E' => fmt_e(f, spec.prec.unwrap_or(6), verb == 'E'),
                _ => fmt_g(f, spec.prec, verb == 'G'),
            };
            pad(signed(s, f, spec), spec, f.is_finite())
        }
        other => format!("%!{other}(BADVERB)"),
    }
}

/// Go's `fmt.Sprintf` over template values, for the verbs templates use.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(v) => out.push_str(&one(verb, &spec, v)),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
        next += 1;
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..].iter().map(display).collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

/// `printf`.
pub fn printf(args: &[Value]) -> Result<Value, FuncError> {
    match args.first() {
        Some(Value::String(f)) => Ok(Value::String(sprintf(f, &args[1..]))),
        Some(_) => Err(FuncError::Generic("printf requires a format string".into())),
        None => Err(FuncError::AtLeastXArgs("printf".into(), 1)),
    }
}

fn compare(a: &Value, b: &Value) -> Result<Ordering, FuncError> {
    let numeric = matches!(a, Value::Number(_)) || matches!(b, Value::Number(_));
    if numeric && let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
        return x
            .partial_cmp(&y)
            .ok_or_else(|| FuncError::Generic("cannot compare NaN".into()));
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        _ => Err(FuncError::Generic(format!(
            "incompatible types for comparison: {} and {}",
            display(a),
            display(b)
        ))),
    }
}

fn two<'a>(args: &'a [Value], name: &str) -> Result<(&'a Value, &'a Value), FuncError> {
    match args {
        [a, b] => Ok((a, b)),
        _ => Err(FuncError::ExactlyXArgs(name.into(), 2)),
    }
}

/// `eq`: true when the first argument equals any of the others.
pub fn eq(args: &[Value]) -> Result<Value, FuncError> {
    if args.len() < 2 {
        return Err(FuncError::AtLeastXArgs("eq".into(), 2));
    }
    for b in &args[1..] {
        if compare(&args[0], b)? == Ordering::Equal {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

/// `ne`.
pub fn ne(args: &[Value]) -> Result<Value, FuncError> {
    let (a, b) = two(args, "ne")?;
    Ok(Value::Bool(compare(a, b)? != Ordering::Equal))
}

/// `lt`.
pub fn lt(args: &[Value]) -> Result<Value, FuncError> {
    let (a, b) = two(args, "lt")?;
    Ok(Value::Bool(compare(a, b)? == Ordering::Less))
}

/// `le`.
pub fn le(args: &[Value]) -> Result<Value, FuncError> {
    let (a, b) = two(args, "le")?;
    Ok(Value::Bool(compare(a, b)? != Ordering::Greater))
}

/// `gt`.
pub fn gt(args: &[Value]) -> Result<Value, FuncError> {
    let (a, b) = two(args, "gt")?;
    Ok(Value::Bool(compare(a, b)? == Ordering::Greater))
}

/// `ge`.
pub fn ge(args: &[Value]) -> Result<Value, FuncError> {
    let (a, b) = two(args, "ge")?;
    Ok(Value::Bool(compare(a, b)? != Ordering::Less))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_does() {
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(-0.5), "-0.5");
        assert_eq!(go_float(100000.0), "100000");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
        assert_eq!(go_e(1.0), "1e+00");
        assert_eq!(go_e(-1.5e-7), "-1.5e-07");
    }

    #[test]
    fn printf_verbs() {
        let s = |v: &str| Value::String(v.into());
        assert_eq!(sprintf("%.2f%%", &[s("12.3456")]), "12.35%");
        assert_eq!(sprintf("%d items", &[Value::from(3u64)]), "3 items");
        assert_eq!(
            sprintf("%5.1f|%-4s|%04d", &[s("-0.25"), s("ab"), Value::from(7u64)]),
            " -0.2|ab  |0007"
        );
        assert_eq!(
            sprintf("%e %g %v", &[s("1234.5"), s("0.000012"), s("x")]),
            "1.234500e+03 1.2e-05 x"
        );
        assert_eq!(sprintf("%s %q", &[s("a")]), "a %!q(MISSING)");
        assert_eq!(sprintf("%d", &[s("1.5")]), "%!d(string=1.5)");
    }

    #[test]
    fn comparisons_read_numeric_strings() {
        let s = |v: &str| Value::String(v.into());
        assert_eq!(
            gt(&[s("85.5"), Value::from(80u64)]).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            lt(&[s("-0.5"), Value::from(0u64)]).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(eq(&[s("a"), s("b"), s("a")]).unwrap(), Value::Bool(true));
        assert!(gt(&[s("a"), Value::from(1u64)]).is_err());
    }
}
