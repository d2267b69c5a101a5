//! The head: every series in memory with its samples, and an inverted index over labels.

use std::collections::{BTreeMap, HashMap};

use lookout_model::{Labels, MatchOp, Matcher, Sample};

/// One series in the head.
#[derive(Debug)]
pub(crate) struct MemSeries {
    pub(crate) labels: Labels,
    pub(crate) samples: Vec<Sample>,
}

/// In-memory series registry with postings (label pair → sorted series refs).
#[derive(Debug, Default)]
pub(crate) struct Head {
    pub(crate) series: Vec<MemSeries>,
    by_labels: HashMap<Labels, u64>,
    postings: BTreeMap<String, BTreeMap<String, Vec<u64>>>,
    pub(crate) samples: u64,
}

/// Intersects two sorted lists.
fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

impl Head {
    /// The ref of `labels`, if the series exists.
    pub(crate) fn get_ref(&self, labels: &Labels) -> Option<u64> {
        self.by_labels.get(labels).copied()
    }

    /// The ref the next created series will get.
    pub(crate) fn next_ref(&self) -> u64 {
        self.series.len() as u64
    }

    /// Creates a series with ref `sref`, which must equal [`Head::next_ref`].
    pub(crate) fn create(&mut self, sref: u64, labels: Labels) {
        debug_assert_eq!(sref, self.next_ref());
        for l in &labels {
            self.postings
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default()
                .push(sref);
        }
        self.by_labels.insert(labels.clone(), sref);
        self.series.push(MemSeries {
            labels,
            samples: Vec::new(),
        });
    }

    /// Appends a sample; the caller has checked ordering.
    pub(crate) fn push(&mut self, sref: u64, s: Sample) {
        if let Some(ms) = self.series.get_mut(sref as usize) {
            ms.samples.push(s);
            self.samples += 1;
        }
    }

    /// Series refs whose labels satisfy every matcher, ascending.
    pub(crate) fn postings_for(&self, matchers: &[Matcher]) -> Vec<u64> {
        let mut acc: Option<Vec<u64>> = None;
        for m in matchers {
            // Only matchers that cannot match a missing label narrow by postings.
            if m.matches_empty() {
                continue;
            }
            let Some(values) = self.postings.get(&m.name) else {
                return Vec::new();
            };
            let list: Vec<u64> = match m.op {
                MatchOp::Equal => values.get(&m.value).cloned().unwrap_or_default(),
                _ => {
                    let mut v: Vec<u64> = values
                        .iter()
                        .filter(|(val, _)| m.matches(val))
                        .flat_map(|(_, refs)| refs.iter().copied())
                        .collect();
                    v.sort_unstable();
                    v
                }
            };
            acc = Some(match acc {
                None => list,
                Some(a) => intersect(&a, &list),
            });
        }
        let candidates = acc.unwrap_or_else(|| (0..self.series.len() as u64).collect());
        candidates
            .into_iter()
            .filter(|r| {
                let ls = &self.series[*r as usize].labels;
                matchers.iter().all(|m| m.matches_labels(ls))
            })
            .collect()
    }

    /// Drops samples before `mint` and series left empty; refs are renumbered.
    pub(crate) fn truncate(&mut self, mint: i64) -> Head {
        let mut fresh = Head::default();
        for ms in self.series.drain(..) {
            let keep: Vec<Sample> = ms.samples.into_iter().filter(|s| s.t >= mint).collect();
            if keep.is_empty() {
                continue;
            }
            let r = fresh.next_ref();
            fresh.create(r, ms.labels);
            fresh.samples += keep.len() as u64;
            fresh.series[r as usize].samples = keep;
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_serve_all_matcher_kinds() {
        let mut h = Head::default();
        for (i, job) in ["a", "b", "c"].iter().enumerate() {
            h.create(
                i as u64,
                Labels::from_pairs([("__name__", "up"), ("job", *job)]),
            );
        }
        h.create(3, Labels::from_pairs([("__name__", "other")]));
        let q = |ms: Vec<Matcher>| h.postings_for(&ms);
        let name = Matcher::equal("__name__", "up");
        assert_eq!(q(vec![name.clone(), Matcher::equal("job", "b")]), vec![1]);
        assert_eq!(
            q(vec![
                name.clone(),
                Matcher::new(MatchOp::NotEqual, "job", "b").unwrap()
            ]),
            vec![0, 2]
        );
        assert_eq!(
            q(vec![Matcher::new(MatchOp::Regex, "job", "a|c").unwrap()]),
            vec![0, 2]
        );
        assert_eq!(
            q(vec![
                name,
                Matcher::new(MatchOp::NotRegex, "job", "a|b").unwrap()
            ]),
            vec![2]
        );
        // `job=""` selects series without the label.
        assert_eq!(q(vec![Matcher::equal("job", "")]), vec![3]);
    }
}
