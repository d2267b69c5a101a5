//! Exemplars kept beside the head: a ring of at most `max_exemplars` entries (the oldest
//! goes first), as Prometheus's circular exemplar storage, logged in the WAL and its
//! checkpoints so they survive a restart.
//!
//! Each entry holds its series' label set (shared, not copied), so exemplars of a series
//! the head has since dropped can still be answered until the ring moves past them. Per
//! series the newest exemplar is remembered: a repeat of it is dropped silently and an
//! older one refused, as Prometheus does.

use std::collections::{HashMap, VecDeque};

use lookout_model::{Exemplar, Labels, Matcher};
use lookout_storage::ExemplarSeries;

/// The ring.
#[derive(Debug)]
pub(crate) struct Exemplars {
    max: usize,
    ring: VecDeque<(Labels, Exemplar)>,
    /// Newest exemplar per series still in the ring: (timestamp, value bits, labels).
    newest: HashMap<Labels, (i64, u64, Labels)>,
}

/// What adding one exemplar did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Added {
    /// Kept.
    Kept,
    /// The same as the series' newest: nothing to do.
    Duplicate,
}

impl Exemplars {
    /// A ring of at most `max` exemplars (0: none are kept).
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            ring: VecDeque::new(),
            newest: HashMap::new(),
        }
    }

    /// Exemplars held.
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether `e` may be added to `series`: a duplicate of its newest, or older than it,
    /// is named. Checked before the WAL is written.
    pub(crate) fn check(&self, series: &Labels, e: &Exemplar) -> Result<Added, String> {
        match self.newest.get(series) {
            Some((t, v, l)) if *t == e.t && *v == e.value.to_bits() && *l == e.labels => {
                Ok(Added::Duplicate)
            }
            Some((t, _, _)) if e.t <= *t => Err(format!(
                "out of order: timestamp {} is not after the newest exemplar's {t}",
                e.t
            )),
            _ => Ok(Added::Kept),
        }
    }

    /// Adds `e` to `series` unless [`Exemplars::check`] refuses it; the oldest entry goes
    /// when the ring is full.
    pub(crate) fn add(&mut self, series: &Labels, e: Exemplar) -> Result<Added, String> {
        if self.max == 0 {
            return Ok(Added::Duplicate);
        }
        if self.check(series, &e)? == Added::Duplicate {
            return Ok(Added::Duplicate);
        }
        while self.ring.len() >= self.max {
            let Some((s, old)) = self.ring.pop_front() else {
                break;
            };
            if self.newest.get(&s).is_some_and(|(t, _, _)| *t == old.t) {
                self.newest.remove(&s);
            }
        }
        self.newest
            .insert(series.clone(), (e.t, e.value.to_bits(), e.labels.clone()));
        self.ring.push_back((series.clone(), e));
        Ok(Added::Kept)
    }

    /// Every entry, oldest first (for checkpoints).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(Labels, Exemplar)> {
        self.ring.iter()
    }

    /// Exemplars in `[mint, maxt]` of series matching all `matchers`, sorted by series.
    pub(crate) fn select(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> Vec<ExemplarSeries> {
        if matchers.is_empty() {
            return Vec::new();
        }
        // Matching is decided once per series, not once per entry.
        let mut matched: HashMap<&Labels, bool> = HashMap::new();
        let mut out: std::collections::BTreeMap<&Labels, Vec<Exemplar>> = Default::default();
        for (s, e) in &self.ring {
            if e.t < mint || e.t > maxt {
                continue;
            }
            let m = *matched
                .entry(s)
                .or_insert_with(|| matchers.iter().all(|m| m.matches_labels(s)));
            if m {
                out.entry(s).or_default().push(e.clone());
            }
        }
        out.into_iter()
            .map(|(labels, mut exemplars)| {
                exemplars.sort_by_key(|e| e.t);
                ExemplarSeries {
                    labels: labels.clone(),
                    exemplars,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(t: i64, trace: &str) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value: t as f64,
            t,
        }
    }

    #[test]
    fn keeps_the_newest_within_the_bound_and_refuses_older_ones() {
        let a = Labels::from_pairs([("__name__", "lat_bucket"), ("le", "1")]);
        let b = Labels::from_pairs([("__name__", "lat_bucket"), ("le", "2")]);
        let mut r = Exemplars::new(3);
        assert_eq!(r.add(&a, ex(1, "x")), Ok(Added::Kept));
        assert_eq!(r.add(&a, ex(1, "x")), Ok(Added::Duplicate));
        assert!(r.add(&a, ex(1, "y")).unwrap_err().contains("out of order"));
        assert!(r.add(&a, ex(0, "y")).is_err());
        r.add(&b, ex(2, "y")).unwrap();
        r.add(&a, ex(3, "z")).unwrap();
        r.add(&b, ex(4, "w")).unwrap();
        assert_eq!(r.len(), 3);
        let all = r.select(
            i64::MIN,
            i64::MAX,
            &[Matcher::equal("__name__", "lat_bucket")],
        );
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].labels, a);
        assert_eq!(all[0].exemplars, vec![ex(3, "z")]);
        assert_eq!(all[1].exemplars, vec![ex(2, "y"), ex(4, "w")]);
        // The range and the matchers select.
        let some = r.select(3, 3, &[Matcher::equal("le", "1")]);
        assert_eq!(some[0].exemplars, vec![ex(3, "z")]);
        assert!(r.select(5, 9, &[Matcher::equal("le", "1")]).is_empty());
        assert!(r.select(0, 9, &[]).is_empty());
        // A series whose exemplars all left the ring accepts any timestamp again.
        let mut r = Exemplars::new(1);
        r.add(&a, ex(5, "x")).unwrap();
        r.add(&b, ex(6, "x")).unwrap();
        assert_eq!(r.add(&a, ex(1, "x")), Ok(Added::Kept));
        // Zero keeps nothing.
        let mut r = Exemplars::new(0);
        r.add(&a, ex(1, "x")).unwrap();
        assert_eq!(r.len(), 0);
    }
}
