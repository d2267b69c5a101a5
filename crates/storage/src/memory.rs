//! [`MemStorage`]: an in-memory store implementing both seams, for tests of upper layers.

use std::collections::BTreeMap;
use std::sync::RwLock;

use std::sync::Arc;

use lookout_model::{Exemplar, FloatHistogram, Labels, Matcher, Sample};

use crate::{
    Appendable, Appender, Error, ExemplarSeries, HistogramSample, HistogramSeries, Querier,
    Queryable, Result, SelectHints, Series, SeriesRef,
};

/// In-memory storage: a sorted map from labels to samples. Accepts samples in any order
/// (tests load data out of order); a duplicate timestamp replaces the earlier value.
#[derive(Debug, Default)]
pub struct MemStorage {
    series: RwLock<BTreeMap<Labels, Vec<Sample>>>,
    histograms: RwLock<BTreeMap<Labels, Vec<HistogramSample>>>,
    exemplars: RwLock<BTreeMap<Labels, Vec<Exemplar>>>,
    /// What [`Querier::rollup_resolutions`] answers ([`MemStorage::set_rollup_resolutions`]).
    resolutions: RwLock<Vec<i64>>,
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes its queriers offer rollups at these resolutions (ms), made from the samples
    /// on demand, so readers' rollup paths can be tested against their raw answers.
    pub fn set_rollup_resolutions(&self, mut resolutions: Vec<i64>) {
        resolutions.retain(|r| *r > 0);
        resolutions.sort_unstable();
        resolutions.dedup();
        *self.resolutions.write().unwrap_or_else(|e| e.into_inner()) = resolutions;
    }

    /// Removes all data.
    pub fn clear(&self) {
        self.series.write().expect("lock poisoned").clear();
        self.histograms.write().expect("lock poisoned").clear();
        self.exemplars.write().expect("lock poisoned").clear();
    }

    /// Number of series stored.
    pub fn series_count(&self) -> usize {
        self.series.read().expect("lock poisoned").len()
    }
}

impl Appendable for MemStorage {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(MemAppender {
            db: self,
            pending: Vec::new(),
            pending_h: Vec::new(),
            pending_e: Vec::new(),
        })
    }
}

struct MemAppender<'a> {
    db: &'a MemStorage,
    pending: Vec<(Labels, Sample)>,
    pending_h: Vec<(Labels, HistogramSample)>,
    pending_e: Vec<(Labels, Exemplar)>,
}

impl Appender for MemAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<SeriesRef> {
        if labels.is_empty() {
            return Err(Error::InvalidLabels {
                labels: labels.to_string(),
                reason: "empty label set".into(),
            });
        }
        self.pending.push((labels.clone(), Sample::new(t, v)));
        Ok(0)
    }

    fn append_histogram(
        &mut self,
        labels: &Labels,
        t: i64,
        h: &FloatHistogram,
    ) -> Result<SeriesRef> {
        if labels.is_empty() {
            return Err(Error::InvalidLabels {
                labels: labels.to_string(),
                reason: "empty label set".into(),
            });
        }
        self.pending_h.push((
            labels.clone(),
            HistogramSample {
                t,
                h: Arc::new(h.clone()),
            },
        ));
        Ok(0)
    }

    /// Kept without the checks a real store makes (any series, any order).
    fn append_exemplar(&mut self, labels: &Labels, e: &Exemplar) -> Result<()> {
        self.pending_e.push((labels.clone(), e.clone()));
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<()> {
        merge(&self.db.exemplars, self.pending_e, |e| e.t);
        merge(&self.db.histograms, self.pending_h, |s| s.t);
        merge(&self.db.series, self.pending, |s| s.t);
        Ok(())
    }

    fn rollback(self: Box<Self>) {}
}

impl Queryable for MemStorage {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier + '_>> {
        Ok(Box::new(MemQuerier {
            db: self,
            mint,
            maxt,
        }))
    }
}

struct MemQuerier<'a> {
    db: &'a MemStorage,
    mint: i64,
    maxt: i64,
}

fn matches_all(ls: &Labels, ms: &[Matcher]) -> bool {
    ms.iter().all(|m| m.matches_labels(ls))
}

/// Inserts samples in time order; a sample at an existing timestamp replaces it.
fn merge<T>(
    map: &RwLock<BTreeMap<Labels, Vec<T>>>,
    pending: Vec<(Labels, T)>,
    t: impl Fn(&T) -> i64,
) {
    let mut map = map.write().expect("lock poisoned");
    for (ls, s) in pending {
        let samples = map.entry(ls).or_default();
        match samples.binary_search_by(|x| t(x).cmp(&t(&s))) {
            Ok(i) => samples[i] = s,
            Err(i) => samples.insert(i, s),
        }
    }
}

impl MemQuerier<'_> {
    /// The series of `map` matching `matchers` with samples in the querier's range (as
    /// narrowed by `hints`), built by `make`.
    fn select_from<T: Clone, S>(
        &self,
        map: &RwLock<BTreeMap<Labels, Vec<T>>>,
        hints: &SelectHints,
        matchers: &[Matcher],
        t: impl Fn(&T) -> i64,
        make: impl Fn(Labels, Vec<T>) -> S,
    ) -> Vec<S> {
        if matchers.is_empty() {
            return Vec::new();
        }
        let (lo, hi) = hints.within(self.mint, self.maxt);
        let map = map.read().expect("lock poisoned");
        map.iter()
            .filter(|(ls, _)| matches_all(ls, matchers))
            .filter_map(|(ls, samples)| {
                let a = samples.partition_point(|s| t(s) < lo);
                let b = samples.partition_point(|s| t(s) <= hi);
                (a < b).then(|| make(ls.clone(), samples[a..b].to_vec()))
            })
            .collect()
    }
}

impl Querier for MemQuerier<'_> {
    fn rollup_resolutions(&self) -> Vec<i64> {
        self.db
            .resolutions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>> {
        let mut out = self.select_from(
            &self.db.series,
            hints,
            matchers,
            |s| s.t,
            |labels, samples| Series { labels, samples },
        );
        // Honoured as the tsdb does, so engine tests over this store see what it sees.
        if let Some(g) = &hints.grid {
            for s in &mut out {
                s.samples = g.thin(&s.samples);
            }
            out.retain(|s| !s.samples.is_empty());
        }
        Ok(out)
    }

    fn select_histograms(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<HistogramSeries>> {
        Ok(self.select_from(
            &self.db.histograms,
            hints,
            matchers,
            |s| s.t,
            |labels, samples| HistogramSeries { labels, samples },
        ))
    }

    fn select_exemplars(&self, matchers: &[Matcher]) -> Result<Vec<ExemplarSeries>> {
        Ok(self.select_from(
            &self.db.exemplars,
            &SelectHints::default(),
            matchers,
            |e| e.t,
            |labels, exemplars| ExemplarSeries { labels, exemplars },
        ))
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        let map = self.db.series.read().expect("lock poisoned");
        let mut names: Vec<String> = map
            .keys()
            .filter(|ls| matches_all(ls, matchers))
            .flat_map(|ls| ls.iter().map(|l| l.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        let map = self.db.series.read().expect("lock poisoned");
        let mut values: Vec<String> = map
            .keys()
            .filter(|ls| matches_all(ls, matchers))
            .filter_map(|ls| ls.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_discards_and_range_filters() {
        let db = MemStorage::new();
        let ls = Labels::from_pairs([("__name__", "a")]);
        let mut app = db.appender();
        app.append(&ls, 10, 1.0).unwrap();
        app.rollback();
        assert_eq!(db.series_count(), 0);
        let mut app = db.appender();
        for t in [10, 20, 30] {
            app.append(&ls, t, t as f64).unwrap();
        }
        app.commit().unwrap();
        let q = db.querier(15, 30).unwrap();
        let got = q
            .select(&SelectHints::default(), &[Matcher::equal("__name__", "a")])
            .unwrap();
        assert_eq!(got[0].samples.len(), 2);
        assert!(q.select(&SelectHints::default(), &[]).unwrap().is_empty());
    }
}
