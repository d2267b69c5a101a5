//! Limits on query text, checked before the parser sees it.
//!
//! The parser builds, and the evaluator walks, the expression tree recursively, so a
//! query's nesting decides how much stack both need: 60,000 parentheses overflow any
//! thread's stack and abort the process, and 20,000 chained `+` take seconds to parse.
//! [`check`] bounds both with one pass over the text, without parsing it: the length in
//! bytes, and an upper bound of the tree's depth (the deepest nesting of brackets plus
//! every operator, since a chain `a + b + c` nests one level per operator). Queries under
//! the limits parse and evaluate in a few milliseconds on a thread with a few MiB of
//! stack; the server runs them on threads with 16 MiB.

use crate::error::{Error, Result};

/// Longest query text accepted, in bytes.
pub const MAX_QUERY_LENGTH: usize = 256 * 1024;

/// Evaluation times a query may reach, in ms either side of the epoch (offsets, ranges
/// and `@` included): about 73 million years. The HTTP API refuses time parameters
/// beyond it, so no time arithmetic can overflow.
pub const MAX_TIME_MS: i64 = i64::MAX / 4;

/// Deepest expression tree accepted: nested parentheses, brackets and braces, plus
/// operators (each binary or unary operator may add a level).
pub const MAX_QUERY_DEPTH: usize = 1000;

/// Fails with [`Error::Parse`] when `query` is longer than [`MAX_QUERY_LENGTH`] or may
/// nest deeper than [`MAX_QUERY_DEPTH`].
pub fn check(query: &str) -> Result<()> {
    if query.len() > MAX_QUERY_LENGTH {
        return Err(Error::Parse(format!(
            "query is {} bytes long, more than the limit of {MAX_QUERY_LENGTH} bytes",
            query.len()
        )));
    }
    let depth = depth_bound(query);
    if depth > MAX_QUERY_DEPTH {
        return Err(Error::Parse(format!(
            "query nests too deeply: up to {depth} levels of parentheses and operators, more than the limit of {MAX_QUERY_DEPTH}"
        )));
    }
    Ok(())
}

/// Operator words that combine two expressions.
const WORD_OPERATORS: [&str; 4] = ["and", "or", "unless", "atan2"];

/// An upper bound of the expression tree's depth: the deepest bracket nesting plus the
/// number of operators outside label matchers, string literals and comments.
fn depth_bound(query: &str) -> usize {
    let b = query.as_bytes();
    let (mut open, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    let mut braces = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => i = crate::position::string_end(b, i),
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                open += 1;
                deepest = deepest.max(open);
                braces += usize::from(c == b'{');
            }
            b')' | b']' | b'}' => {
                open = open.saturating_sub(1);
                if c == b'}' {
                    braces = braces.saturating_sub(1);
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' if braces == 0 => {
                operators += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i + 1 < b.len() && (b[i + 1].is_ascii_alphanumeric() || b[i + 1] == b'_') {
                    i += 1;
                }
                let word = &query[start..=i];
                if braces == 0 && WORD_OPERATORS.iter().any(|w| w.eq_ignore_ascii_case(word)) {
                    operators += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    deepest + operators
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_queries_pass() {
        for q in [
            "up",
            r#"sum by (job) (rate(http_requests_total{code=~"5..", path!="/-/x"}[5m])) / on (job) group_left sum(x)"#,
            "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) > 0.5 and up == 1",
            "max_over_time(rate(x[1m])[1h:1m]) # a comment with ((((( and ++++",
            "label_replace(up, \"a\", \"$1\", \"b\", \"((((((((((((\")",
        ] {
            check(q).unwrap();
        }
    }

    #[test]
    fn bound_counts_brackets_and_operators() {
        assert_eq!(depth_bound("1"), 0);
        assert_eq!(depth_bound("((1))"), 2);
        assert_eq!(depth_bound("1 + 2 * 3"), 2);
        assert_eq!(depth_bound("a and b or c unless d"), 3);
        assert_eq!(depth_bound(r#"x{a="((((", b!~"-+"}"#), 1);
        assert_eq!(depth_bound("sum(rate(x[5m]))"), 3);
        assert_eq!(depth_bound("- - -1"), 3);
    }

    #[test]
    fn deep_and_long_queries_are_refused_by_name() {
        let parens = format!("{}1{}", "(".repeat(60_000), ")".repeat(60_000));
        let e = check(&parens).unwrap_err().to_string();
        assert!(e.contains("nests too deeply") && e.contains("1000"), "{e}");
        let chain = vec!["1"; 20_000].join("+");
        assert!(
            check(&chain)
                .unwrap_err()
                .to_string()
                .contains("nests too deeply")
        );
        let neg = format!("{}1", "-".repeat(5_000));
        assert!(check(&neg).is_err());
        let long = format!("up{{a=\"{}\"}}", "x".repeat(MAX_QUERY_LENGTH));
        let e = check(&long).unwrap_err().to_string();
        assert!(e.contains("bytes long"), "{e}");
        // Right at the limit still parses and evaluates.
        let at = format!(
            "{}1{}",
            "(".repeat(MAX_QUERY_DEPTH),
            ")".repeat(MAX_QUERY_DEPTH)
        );
        check(&at).unwrap();
    }

    #[test]
    fn unterminated_strings_and_stray_closers_do_not_panic() {
        for q in ["\"abc", "'\\", "`", ")))((", "}}}{", "#", "\\", "é(ü)"] {
            let _ = check(q);
        }
    }
}
