//! Go text/template for Lookout, over the `gtmpl` crate: Go's number formatting and
//! `printf` (gtmpl's own mangle floats: see [`fmt`]), the functions Prometheus's and
//! Alertmanager's templates share ([`funcs`]), and template construction with
//! error messages in Go's shape. Used by the rules (alert labels and annotations) and the
//! notifier (notification templates).

pub mod fmt;
pub mod funcs;

pub use funcs::Func;
pub use gtmpl::{Context, FuncError, Template, Value};

/// What can go wrong with a template. Every variant displays in Go's shape,
/// `template: NAME: message` (or `template: NAME:LINE: message`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is longer than [`MAX_TEMPLATE_LENGTH`].
    #[error("template: {name}: {len} bytes, more than the limit of {MAX_TEMPLATE_LENGTH}")]
    TooLong {
        /// The template's name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// Text refused before gtmpl sees it (see [`parse`]).
    #[error("template: {name}:{line}: {problem}")]
    Refused {
        /// The template's name.
        name: String,
        /// The line (from 1) the problem starts on.
        line: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// The parser refused the text.
    #[error("template: {name}: {message}")]
    Parse {
        /// The template's name.
        name: String,
        /// The parser's message, without its own prefix.
        message: String,
    },
    /// Executing the template failed.
    #[error("template: {name}: {message}")]
    Execute {
        /// The template's name.
        name: String,
        /// The executor's message, without its own prefix.
        message: String,
    },
}

impl Error {
    /// A parse error from gtmpl's message.
    pub fn parse(name: &str, gtmpl_message: &str) -> Self {
        Self::Parse {
            name: name.to_string(),
            message: clean_message(name, gtmpl_message),
        }
    }

    /// An execution error from gtmpl's message.
    pub fn execute(name: &str, gtmpl_message: &str) -> Self {
        Self::Execute {
            name: name.to_string(),
            message: clean_message(name, gtmpl_message),
        }
    }
}

/// gtmpl's message without its `template: [NAME]:N:` prefix, in Go's words.
fn clean_message(name: &str, e: &str) -> String {
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
    match e.strip_prefix("undefined variable ") {
        Some(v) if !v.starts_with('"') => format!("undefined variable {v:?}"),
        _ => e.to_string(),
    }
}

/// Most bytes of template text accepted.
pub const MAX_TEMPLATE_LENGTH: usize = 256 * 1024;

/// Refuses text gtmpl cannot be trusted with, before it sees it: longer than
/// [`MAX_TEMPLATE_LENGTH`]; ending inside an action (`{{ x`), on which gtmpl's lexer can
/// loop forever (its `backup` steps back a byte even after reading nothing at the end of
/// input); or a non-ASCII character inside an action outside a string, on which it steps
/// back into the middle of the character and panics.
fn check_text(name: &str, text: &str) -> Result<(), Error> {
    if text.len() > MAX_TEMPLATE_LENGTH {
        return Err(Error::TooLong {
            name: name.to_string(),
            len: text.len(),
        });
    }
    let b = text.as_bytes();
    let refused = |i: usize, problem| Error::Refused {
        name: name.to_string(),
        line: b[..i].iter().filter(|c| **c == b'\n').count() + 1,
        problem,
    };
    let mut i = 0;
    let mut open: Option<usize> = None;
    while i < b.len() {
        match open {
            None => {
                if b[i..].starts_with(b"{{") {
                    open = Some(i);
                    i += 2;
                    continue;
                }
            }
            Some(_) if b[i..].starts_with(b"}}") => {
                open = None;
                i += 2;
                continue;
            }
            Some(_) if matches!(b[i], b'"' | b'\'' | b'`') => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                        // gtmpl slices escapes by byte and panics on `\é`; Go rejects it.
                        if b.get(i).is_some_and(|c| !c.is_ascii()) {
                            return Err(refused(i - 1, "invalid escape in a string"));
                        }
                    }
                    i += 1;
                }
            }
            Some(start) if !b[i].is_ascii() => {
                // Inside a comment anything goes.
                if !b[start..].starts_with(b"{{/*") && !b[start..].starts_with(b"{{- /*") {
                    return Err(refused(
                        i,
                        "unrecognized character in action (only ASCII outside strings)",
                    ));
                }
            }
            Some(_) => {}
        }
        i += 1;
    }
    match open {
        Some(start) => Err(refused(start, "unclosed action")),
        None => Ok(()),
    }
}

/// A template named `name` with the common functions and `extra` ones, parsed from `text`.
pub fn parse(name: &str, text: &str, extra: &[(&str, Func)]) -> Result<Template, Error> {
    check_text(name, text)?;
    let mut t = Template::with_name(name);
    for (n, f) in funcs::COMMON.iter().chain(extra) {
        t.add_func(n, *f);
    }
    t.parse(text)
        .map_err(|e| Error::parse(name, &e.to_string()))?;
    Ok(t)
}

/// Like [`parse`], with `defs` (template definitions, never executed themselves) made
/// available to `text`.
pub fn parse_with_definitions(
    name: &str,
    defs: &str,
    text: &str,
    extra: &[(&str, Func)],
) -> Result<Template, Error> {
    check_text("definitions", defs)?;
    check_text(name, text)?;
    let mut t = Template::with_name(name);
    for (n, f) in funcs::COMMON.iter().chain(extra) {
        t.add_func(n, *f);
    }
    t.add_template("__definitions", defs)
        .map_err(|e| Error::parse("definitions", &e.to_string()))?;
    t.parse(text)
        .map_err(|e| Error::parse(name, &e.to_string()))?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12 (found by `lookout bench fuzz`): gtmpl's lexer never returned on an
    /// action left open after a space at the end of the text, so one bad annotation in a
    /// rule file hung rule loading. Each case runs on its own thread so a regression fails
    /// instead of hanging the suite.
    #[test]
    fn issue_12_an_unclosed_action_ending_in_a_space_is_an_error_not_a_hang() {
        for t in [
            "{{ ",
            "{{ a ",
            "x {{ $labels.job\t",
            "{{ \"}}\" ",
            "{{- a ",
            "{{ (x ",
            "{{ range $i, $\ne $labels.\n",
            "{{ $a",
            "{{/* never closed",
        ] {
            let (tx, rx) = std::sync::mpsc::channel();
            let text = t.to_string();
            std::thread::spawn(move || {
                let _ = tx.send(parse("t", &text, &[]).map(|_| ()));
            });
            let r = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("{t:?} hung the parser"));
            let e = r.unwrap_err().to_string();
            assert!(e.contains("unclosed action"), "{t:?}: {e}");
        }
        // Closed actions followed by spaces, and spaces in strings, still parse.
        for t in [
            "{{ .x }} ",
            "a {{ \"{{ \" }}  ",
            "{{/* c é */}}\t",
            "é {{ \"ü\" }} ö",
        ] {
            assert!(parse("t", t, &[]).is_ok(), "{t:?}");
        }
        assert!(
            parse("t", "{{ .é }}", &[])
                .err()
                .unwrap()
                .to_string()
                .contains("unrecognized")
        );
        // Found by the fuzzer: gtmpl panicked unquoting a backslash before a multi-byte
        // character.
        let e = parse("t", "{{ reReplaceAll \"\\é\" \"\" \"x\" }}", &[])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("invalid escape"), "{e}");
        let long = "x".repeat(MAX_TEMPLATE_LENGTH + 1);
        assert!(matches!(
            parse("t", &long, &[]),
            Err(Error::TooLong { len, .. }) if len == MAX_TEMPLATE_LENGTH + 1
        ));
    }
}
