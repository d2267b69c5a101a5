//! Label matchers: `=`, `!=`, `=~`, `!~`, with fully anchored regular expressions.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

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

/// Compiled patterns, by pattern: a rule or a dashboard panel evaluates the same
/// selectors again and again, and compiling a regex costs far more than matching with it.
/// Bounded in entries and in pattern length, so distinct patterns sent by clients only
/// churn it; emptied when full.
static COMPILED: Mutex<Option<HashMap<String, Regex>>> = Mutex::new(None);
/// Most patterns kept compiled.
const MAX_COMPILED: usize = 512;
/// Longest pattern kept compiled (longer ones are compiled each time).
const MAX_CACHED_PATTERN: usize = 256;

/// The anchored regex of `value`, compiled once while it stays in [`COMPILED`].
fn anchored(value: &str) -> Result<Regex, MatcherError> {
    let cacheable = value.len() <= MAX_CACHED_PATTERN;
    if cacheable
        && let Some(re) = COMPILED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|m| m.get(value))
    {
        return Ok(re.clone());
    }
    let re = Regex::new(&format!("^(?s:{value})$")).map_err(|e| MatcherError {
        pattern: value.to_string(),
        message: e.to_string(),
    })?;
    if cacheable {
        let mut cache = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
        let m = cache.get_or_insert_with(HashMap::new);
        if m.len() >= MAX_COMPILED {
            m.clear();
        }
        m.insert(value.to_string(), re.clone());
    }
    Ok(re)
}

impl Matcher {
    /// Builds a matcher, compiling the anchored regex for `=~` and `!~` (or taking it
    /// from the patterns compiled lately).
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Self, MatcherError> {
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(anchored(value)?),
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
        // Refused patterns are not kept: the same one is refused again.
        assert!(Matcher::new(MatchOp::Regex, "a", "(").is_err());
    }

    #[test]
    fn compiled_patterns_are_reused_and_the_cache_stays_bounded() {
        for i in 0..MAX_COMPILED * 2 {
            let m = Matcher::new(MatchOp::Regex, "i", &format!("n{i}|x")).unwrap();
            assert!(m.matches(&format!("n{i}")) && m.matches("x") && !m.matches("n"));
        }
        let kept = COMPILED.lock().unwrap().as_ref().map_or(0, HashMap::len);
        assert!(kept <= MAX_COMPILED, "{kept}");
        // A long pattern works, uncached.
        let long = "a".repeat(MAX_CACHED_PATTERN + 1);
        let m = Matcher::new(MatchOp::NotRegex, "l", &long).unwrap();
        assert!(!m.matches(&long) && m.matches("a"));
    }
}
