//! Label matchers: `=`, `!=`, `=~`, `!~`, with fully anchored regular expressions.

use std::fmt;

use regex::Regex;

use crate::Labels;

/// The four matcher kinds of PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: equal.
    Equal,
    /// `!=`: not equal.
    NotEqual,
    /// `=~`: matches the anchored regex.
    Regex,
    /// `!~`: does not match the anchored regex.
    NotRegex,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
        })
    }
}

/// A regex matcher's pattern did not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?}: {message}")]
pub struct MatcherError {
    /// The pattern as given.
    pub pattern: String,
    /// What the regex engine said.
    pub message: String,
}

/// A label matcher. A missing label matches as the empty string, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The kind of match.
    pub op: MatchOp,
    /// The value or (unanchored) pattern as written.
    pub value: String,
    re: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher, compiling the anchored regex for `=~` and `!~`.
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Self, MatcherError> {
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?s:{value})$")).map_err(|e| MatcherError {
                    pattern: value.to_string(),
                    message: e.to_string(),
                })?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// An equality matcher (cannot fail).
    pub fn equal(name: &str, value: &str) -> Self {
        Self {
            name: name.to_string(),
            op: MatchOp::Equal,
            value: value.to_string(),
            re: None,
        }
    }

    /// Whether the value `v` satisfies this matcher.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => self.value == v,
            MatchOp::NotEqual => self.value != v,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Whether this matcher accepts the empty string (so it also matches series lacking the label).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Whether the label set satisfies this matcher.
    pub fn matches_labels(&self, ls: &Labels) -> bool {
        self.matches(ls.get_or_empty(&self.name))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_missing_label_is_empty() {
        let m = Matcher::new(MatchOp::Regex, "job", "no").unwrap();
        assert!(!m.matches("node"));
        assert!(m.matches("no"));
        let nr = Matcher::new(MatchOp::NotRegex, "x", ".+").unwrap();
        assert!(nr.matches_labels(&Labels::empty()));
    }

    #[test]
    fn bad_regex_names_the_pattern() {
        let e = Matcher::new(MatchOp::Regex, "a", "(").unwrap_err();
        assert!(e.to_string().contains("\"(\""));
    }
}
