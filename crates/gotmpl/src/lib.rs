//! Go text/template for Lookout, over the `gtmpl` crate: Go's number formatting and
//! `printf` (gtmpl's own mangle floats: see [`fmt`]), the functions Prometheus's and
//! Alertmanager's templates share ([`funcs`]), and template construction with
//! error messages in Go's shape. Used by the rules (alert labels and annotations) and the
//! notifier (notification templates).

pub mod fmt;
pub mod funcs;

pub use funcs::Func;
pub use gtmpl::{Context, FuncError, Template, Value};

/// Error text in Go's shape: `template: NAME: message`.
pub fn clean_error(name: &str, e: &str) -> String {
    // gtmpl says `template: [NAME]:N:msg`, where N is not a line of the text as written
    // when a prelude was prepended; keep the name and the message.
    let e = e.strip_prefix("template: ").unwrap_or(e);
    let e = e.strip_prefix(name).unwrap_or(e);
    let e = e.strip_prefix(':').unwrap_or(e);
    let e = match e.split_once(':') {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => e,
    };
    // Go quotes the variable: `undefined variable "$x"`.
    let e = e.trim_start();
    let e = match e.strip_prefix("undefined variable ") {
        Some(v) if !v.starts_with('"') => format!("undefined variable {v:?}"),
        _ => e.to_string(),
    };
    format!("template: {name}: {e}")
}

/// A template named `name` with the common functions and `extra` ones, parsed from `text`.
pub fn parse(name: &str, text: &str, extra: &[(&str, Func)]) -> Result<Template, String> {
    let mut t = Template::with_name(name);
    for (n, f) in funcs::COMMON.iter().chain(extra) {
        t.add_func(n, *f);
    }
    t.parse(text)
        .map_err(|e| clean_error(name, &e.to_string()))?;
    Ok(t)
}

/// Like [`parse`], with `defs` (template definitions, never executed themselves) made
/// available to `text`.
pub fn parse_with_definitions(
    name: &str,
    defs: &str,
    text: &str,
    extra: &[(&str, Func)],
) -> Result<Template, String> {
    let mut t = Template::with_name(name);
    for (n, f) in funcs::COMMON.iter().chain(extra) {
        t.add_func(n, *f);
    }
    t.add_template("__definitions", defs)
        .map_err(|e| clean_error("definitions", &e.to_string()))?;
    t.parse(text)
        .map_err(|e| clean_error(name, &e.to_string()))?;
    Ok(t)
}
