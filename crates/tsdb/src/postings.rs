//! Postings (sorted lists of series references) and how matchers resolve against them.
//!
//! Regex matchers that are literal alternations (`a|b|c`) become direct lookups, and
//! literal prefixes (`node_.*`) a range scan of the sorted values; only other patterns run
//! the regex over a label's values.

use std::cmp::Ordering;

/// How a regex can be resolved against a sorted value list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegexPlan {
    /// Exactly these values.
    Literals(Vec<String>),
    /// Every value starting with this prefix (`prefix.*`).
    Prefix(String),
    /// Run the regex over every value.
    Scan,
}

fn is_literal(s: &str) -> bool {
    !s.chars().any(|c| "\\.+*?()[]{}^$|".contains(c))
}

/// Plans a (PromQL, fully anchored) regex.
pub(crate) fn plan(pattern: &str) -> RegexPlan {
    if let Some(prefix) = pattern.strip_suffix(".*")
        && is_literal(prefix)
    {
        return RegexPlan::Prefix(prefix.to_string());
    }
    let parts: Vec<&str> = pattern.split('|').collect();
    if parts.iter().all(|p| is_literal(p)) {
        let mut v: Vec<String> = parts.into_iter().map(str::to_string).collect();
        v.sort();
        v.dedup();
        return RegexPlan::Literals(v);
    }
    RegexPlan::Scan
}

/// Intersection of two ascending lists.
pub(crate) fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(a.len().min(b.len())));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `a` without the elements of `b` (both ascending).
pub(crate) fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut j, mut out) = (0, Vec::with_capacity(a.len()));
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j < b.len() && b[j] == x {
            continue;
        }
        out.push(x);
    }
    out
}

/// Union of several ascending lists.
pub(crate) fn union(lists: Vec<&[u32]>) -> Vec<u32> {
    let mut out: Vec<u32> = lists.into_iter().flatten().copied().collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_literal_alternations_and_prefixes() {
        assert_eq!(
            plan("a|b|a"),
            RegexPlan::Literals(vec!["a".into(), "b".into()])
        );
        assert_eq!(plan("node_.*"), RegexPlan::Prefix("node_".into()));
        assert_eq!(plan(".*"), RegexPlan::Prefix(String::new()));
        assert_eq!(plan("a.c"), RegexPlan::Scan);
        assert_eq!(plan("(a|b)"), RegexPlan::Scan);
    }

    #[test]
    fn set_operations() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 7]), vec![3, 7]);
        assert_eq!(subtract(&[1, 3, 5, 7], &[3, 4, 7]), vec![1, 5]);
        assert_eq!(union(vec![&[1, 5], &[2, 5, 9]]), vec![1, 2, 5, 9]);
    }
}

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use lookout_model::{MatchOp, Matcher};

/// An inverted index: label name → sorted values → ascending series references.
#[derive(Debug, Default)]
pub(crate) struct Index {
    map: HashMap<Arc<str>, BTreeMap<Arc<str>, Vec<u32>>>,
}

impl Index {
    /// Adds `r` to the postings of `name=value`; refs must be added in ascending order.
    pub(crate) fn add(&mut self, name: Arc<str>, value: Arc<str>, r: u32) {
        self.map
            .entry(name)
            .or_default()
            .entry(value)
            .or_default()
            .push(r);
    }

    /// Removes every series in `gone` from every list, dropping emptied entries.
    pub(crate) fn remove_refs(&mut self, gone: &std::collections::HashSet<u32>) {
        if gone.is_empty() {
            return;
        }
        self.map.retain(|_, values| {
            values.retain(|_, list| {
                list.retain(|x| !gone.contains(x));
                !list.is_empty()
            });
            !values.is_empty()
        });
    }

    /// Postings of series whose `m.name` label satisfies `m` (for matchers that reject "").
    pub(crate) fn postings_for(&self, m: &Matcher) -> Vec<u32> {
        let Some(values) = self.map.get(m.name.as_str()) else {
            return Vec::new();
        };
        let scan = || {
            union(
                values
                    .iter()
                    .filter(|(v, _)| m.matches(v))
                    .map(|(_, l)| l.as_slice())
                    .collect(),
            )
        };
        match m.op {
            MatchOp::Equal => values.get(m.value.as_str()).cloned().unwrap_or_default(),
            MatchOp::Regex => match plan(&m.value) {
                RegexPlan::Literals(lits) => union(
                    lits.iter()
                        .filter_map(|l| values.get(l.as_str()).map(Vec::as_slice))
                        .collect(),
                ),
                RegexPlan::Prefix(p) => union(
                    values
                        .range::<str, _>((
                            std::ops::Bound::Included(p.as_str()),
                            std::ops::Bound::Unbounded,
                        ))
                        .take_while(|(v, _)| v.starts_with(p.as_str()))
                        .map(|(_, l)| l.as_slice())
                        .collect(),
                ),
                RegexPlan::Scan => scan(),
            },
            _ => scan(),
        }
    }

    /// References matching every matcher, ascending; `all` lists every reference and
    /// `value_of(r, name)` reads one label of a series. An empty matcher list matches nothing.
    pub(crate) fn select<'a>(
        &self,
        matchers: &[Matcher],
        all: impl FnOnce() -> Vec<u32>,
        value_of: impl Fn(u32, &str) -> Option<&'a str>,
    ) -> Vec<u32> {
        select(matchers, |m| self.postings_for(m), all, value_of)
    }

    /// Every (name, value, number of series) in the index.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str, usize)> {
        self.map
            .iter()
            .flat_map(|(n, vs)| vs.iter().map(move |(v, l)| (&**n, &**v, l.len())))
    }
}

/// References matching every matcher, ascending, for any index: `postings_for(m)` lists the
/// series a matcher that rejects "" selects, `all` lists every reference and
/// `value_of(r, name)` reads one label of a series. An empty matcher list matches nothing.
pub(crate) fn select<'a>(
    matchers: &[Matcher],
    postings_for: impl Fn(&Matcher) -> Vec<u32>,
    all: impl FnOnce() -> Vec<u32>,
    value_of: impl Fn(u32, &str) -> Option<&'a str>,
) -> Vec<u32> {
    if matchers.is_empty() {
        return Vec::new();
    }
    let mut acc: Option<Vec<u32>> = None;
    let mut rest: Vec<&Matcher> = Vec::new();
    for m in matchers {
        if m.matches_empty() {
            rest.push(m);
            continue;
        }
        let list = postings_for(m);
        acc = Some(match acc {
            None => list,
            Some(a) => intersect(&a, &list),
        });
        if acc.as_ref().is_some_and(Vec::is_empty) {
            return Vec::new();
        }
    }
    let mut cands = acc.unwrap_or_else(all);
    for m in rest {
        let positive = match m.op {
            MatchOp::NotEqual if !m.value.is_empty() => Some(Matcher::equal(&m.name, &m.value)),
            MatchOp::NotRegex => Matcher::new(MatchOp::Regex, &m.name, &m.value)
                .ok()
                .filter(|p| !p.matches_empty()),
            _ => None,
        };
        match positive {
            // `name != "x"` and `name !~ "a|b"` subtract postings.
            Some(p) => cands = subtract(&cands, &postings_for(&p)),
            None => cands.retain(|r| m.matches(value_of(*r, &m.name).unwrap_or(""))),
        }
    }
    cands
}
