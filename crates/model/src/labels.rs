//! Label sets: sorted name/value pairs identifying a series.

use std::fmt;
use std::sync::Arc;

use crate::METRIC_NAME_LABEL;

/// One label: a name and a value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// The label name.
    pub name: String,
    /// The label value; never empty in a stored series (an empty value means "absent").
    pub value: String,
}

/// A set of labels, kept sorted by name with unique names. Immutable and shared: cloning
/// is a reference-count increment, so query results can carry their series' labels at
/// every step without copying strings.
///
/// Ordering compares label by label (name, then value), as Prometheus's `labels.Compare`
/// does, so sorted series lists match Prometheus's order.
#[derive(Debug, Clone)]
pub struct Labels(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    labels: Box<[Label]>,
    /// Computed once, so hashing a label set is O(1).
    hash: u64,
}

fn hash_of(labels: &[Label]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = labels.len() as u64;
    for l in labels {
        for part in [l.name.as_bytes(), l.value.as_bytes()] {
            for c in part.chunks(8) {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
            }
            h = (h.rotate_left(5) ^ (part.len() as u64 | 0xff00)).wrapping_mul(K);
        }
    }
    h
}

impl Labels {
    fn from_sorted(v: Vec<Label>) -> Self {
        let hash = hash_of(&v);
        Self(Arc::new(Inner {
            labels: v.into_boxed_slice(),
            hash,
        }))
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.hash == other.0.hash && self.0.labels == other.0.labels)
    }
}

impl Eq for Labels {}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl Default for Labels {
    fn default() -> Self {
        Self::empty()
    }
}

impl Labels {
    /// Whether both share one allocation (then they are equal; the converse does not hold).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The empty label set.
    pub fn empty() -> Self {
        Self::from_sorted(Vec::new())
    }

    /// Builds a label set from pairs; sorts them, drops empty values, and keeps the last
    /// of duplicate names.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut v: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label {
                name: n.into(),
                value: v.into(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(v.len());
        for l in v {
            if let Some(last) = out.last_mut()
                && last.name == l.name
            {
                *last = l;
                continue;
            }
            out.push(l);
        }
        out.retain(|l| !l.value.is_empty());
        Self::from_sorted(out)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.labels.len()
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.0.labels.is_empty()
    }

    /// Iterates labels in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.labels.iter()
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .labels
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0.labels[i].value.as_str())
    }

    /// The value of `name`, or "" when absent (PromQL's view of a missing label).
    pub fn get_or_empty(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// The metric name, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME_LABEL)
    }

    /// This set with the labels of `other` it lacks added (a target's `job` and
    /// `instance` under a collector's own labels): the same set, shared, when it lacks
    /// none; one merge of the two sorted lists otherwise. Empty values in `other` add
    /// nothing.
    pub fn with_missing(&self, other: &Labels) -> Self {
        let missing = |l: &&Label| !l.value.is_empty() && self.get(&l.name).is_none();
        if !other.iter().any(|l| missing(&l)) {
            return self.clone();
        }
        let mut out = Vec::with_capacity(self.len() + other.len());
        let mut add = other.iter().filter(missing).peekable();
        for l in self {
            while let Some(a) = add.next_if(|a| a.name < l.name) {
                out.push(a.clone());
            }
            out.push(l.clone());
        }
        out.extend(add.cloned());
        Self::from_sorted(out)
    }

    /// Returns a copy with `name` set to `value` (removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Self {
        let mut v = self.0.labels.to_vec();
        match v.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                v.remove(i);
            }
            Ok(i) => v[i].value = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => v.insert(
                i,
                Label {
                    name: name.to_string(),
                    value: value.to_string(),
                },
            ),
        }
        Self::from_sorted(v)
    }

    /// Returns a copy without the metric name (the same set, shared, if it has none).
    pub fn without_metric_name(&self) -> Self {
        if self.metric_name().is_none() {
            return self.clone();
        }
        self.without(&[METRIC_NAME_LABEL])
    }

    /// Returns a copy without the named labels.
    pub fn without<S: AsRef<str>>(&self, names: &[S]) -> Self {
        if !self
            .0
            .labels
            .iter()
            .any(|l| names.iter().any(|n| n.as_ref() == l.name))
        {
            return self.clone();
        }
        Self::from_sorted(
            self.0
                .labels
                .iter()
                .filter(|l| !names.iter().any(|n| n.as_ref() == l.name))
                .cloned()
                .collect(),
        )
    }

    /// Returns a copy with only the named labels.
    pub fn keep<S: AsRef<str>>(&self, names: &[S]) -> Self {
        Self::from_sorted(
            self.0
                .labels
                .iter()
                .filter(|l| names.iter().any(|n| n.as_ref() == l.name))
                .cloned()
                .collect(),
        )
    }

    /// The labels in name order, as a vector.
    pub fn into_vec(self) -> Vec<Label> {
        self.0.labels.to_vec()
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        for (a, b) in self.0.labels.iter().zip(other.0.labels.iter()) {
            let c = a.name.cmp(&b.name).then_with(|| a.value.cmp(&b.value));
            if c != std::cmp::Ordering::Equal {
                return c;
            }
        }
        self.0.labels.len().cmp(&other.0.labels.len())
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.labels.iter()
    }
}

/// Formats as Prometheus does: `name{a="1", b="2"}`, values escaped.
/// A label set serializes as a JSON-style map, `{"name": "value", …}`, as the HTTP APIs
/// and state files write it.
impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter().map(|l| (&l.name, &l.value)))
    }
}

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_pairs(std::collections::BTreeMap::<
            String,
            String,
        >::deserialize(d)?))
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(n) = name {
            f.write_str(n)?;
        }
        let rest: Vec<&Label> = self
            .0
            .labels
            .iter()
            .filter(|l| l.name != METRIC_NAME_LABEL)
            .collect();
        if rest.is_empty() && name.is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, l) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=\"", l.name)?;
            for c in l.value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn with_missing_adds_only_what_is_absent_in_order() {
        let own = Labels::from_pairs([("__name__", "m"), ("instance", "own"), ("zone", "z")]);
        let target = Labels::from_pairs([("instance", "t:1"), ("job", "node"), ("a", "1")]);
        let merged = own.with_missing(&target);
        let mut by_with = own.clone();
        for l in &target {
            if own.get(&l.name).is_none() {
                by_with = by_with.with(&l.name, &l.value);
            }
        }
        assert_eq!(merged, by_with);
        assert_eq!(merged.get("instance"), Some("own"));
        let names: Vec<&str> = merged.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "a", "instance", "job", "zone"]);
        // Nothing missing: the same set, shared.
        let same = merged.with_missing(&target);
        assert!(std::ptr::eq(
            same.iter().as_slice(),
            merged.iter().as_slice()
        ));
        assert_eq!(own.with_missing(&Labels::empty()), own);
        assert_eq!(own.with_missing(&Labels::from_pairs([("x", "")])), own);
    }

    use super::*;

    #[test]
    fn pairs_are_sorted_deduplicated_and_empty_values_dropped() {
        let ls = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        let names: Vec<_> = ls
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(names, vec![("a", "1"), ("b", "3")]);
    }

    #[test]
    fn with_inserts_replaces_and_removes() {
        let ls = Labels::from_pairs([("a", "1")]);
        assert_eq!(ls.with("b", "2").get("b"), Some("2"));
        assert_eq!(ls.with("a", "9").get("a"), Some("9"));
        assert!(ls.with("a", "").is_empty());
    }

    #[test]
    fn display_matches_prometheus() {
        let ls = Labels::from_pairs([("__name__", "x"), ("a", "q\"\\")]);
        assert_eq!(ls.to_string(), r#"x{a="q\"\\"}"#);
        assert_eq!(Labels::empty().to_string(), "{}");
    }

    #[test]
    fn ordering_is_label_by_label() {
        let a = Labels::from_pairs([("a", "1"), ("b", "2")]);
        let b = Labels::from_pairs([("a", "1"), ("c", "0")]);
        assert!(a < b);
        assert!(Labels::from_pairs([("a", "1")]) < a);
    }
}
