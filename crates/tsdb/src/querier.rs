//! Reading: a querier over blocks and head, merging each series' parts.

use std::collections::BTreeMap;
use std::sync::Arc;

use lookout_model::{Labels, Matcher, Sample};
use lookout_storage::{
    Error, ExemplarSeries, HistogramSample, HistogramSeries, Querier, Queryable, Result,
    RollupSeries, SelectHints, Series,
};

use crate::block::{Block, PageCache};
use crate::head::{self, Head};
use crate::{Inner, Tsdb};

impl Queryable for Tsdb {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier + '_>> {
        Ok(Box::new(self.inner.querier(mint, maxt)))
    }
}

impl Inner {
    /// A querier over `[mint, maxt]`: the blocks it overlaps, the head, the tiers.
    pub(crate) fn querier(&self, mint: i64, maxt: i64) -> TsdbQuerier<'_> {
        let blocks: Vec<Arc<Block>> = self
            .blocks
            .read()
            .expect("lock poisoned")
            .iter()
            .filter(|b| b.meta.max_time > mint && b.meta.min_time <= maxt)
            .cloned()
            .collect();
        TsdbQuerier {
            db: self,
            blocks,
            mint,
            maxt,
        }
    }
}

pub(crate) struct TsdbQuerier<'a> {
    db: &'a Inner,
    blocks: Vec<Arc<Block>>,
    mint: i64,
    maxt: i64,
}

impl Querier for TsdbQuerier<'_> {
    fn rollup_resolutions(&self) -> Vec<i64> {
        self.db
            .tiers
            .iter()
            .filter(|l| {
                !l.overlapping(self.mint.saturating_sub(1), self.maxt)
                    .is_empty()
            })
            .map(|l| l.resolution)
            .collect()
    }

    fn select_rollups(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
        resolution: i64,
    ) -> Result<Vec<RollupSeries>> {
        // Windows are left-open: the one ending at `mint - 1` holds nothing asked for.
        let (lo, hi) = hints.within(self.mint.saturating_sub(1), self.maxt);
        // Tiers whose windows make up this resolution's, the coarsest first.
        let levels: Vec<&crate::tiers::Level> = self
            .db
            .tiers
            .iter()
            .rev()
            .filter(|l| l.resolution <= resolution && resolution % l.resolution == 0)
            .collect();
        let latest_only = hints.grid.is_some();
        crate::tiers::windows(
            self.db,
            self,
            &levels,
            matchers,
            (lo, hi),
            resolution,
            latest_only,
        )
    }

    fn select_exemplars(&self, matchers: &[Matcher]) -> Result<Vec<ExemplarSeries>> {
        Ok(self
            .db
            .exemplars
            .lock()
            .expect("lock poisoned")
            .select(self.mint, self.maxt, matchers))
    }

    fn select_histograms(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<HistogramSeries>> {
        if matchers.is_empty() {
            return Ok(Vec::new());
        }
        let (lo, hi) = hints.within(self.mint, self.maxt);
        // Few series carry histograms, and a histogram is many numbers: each series' parts
        // (blocks in time order, then the head) are merged as read. Every selector of
        // every query asks, so a block or head without histograms is not searched.
        let mut series: BTreeMap<Labels, Vec<HistogramSample>> = BTreeMap::new();
        let mut cache = PageCache::for_queries();
        for b in &self.blocks {
            if !b.has_histograms || b.meta.max_time <= lo || b.meta.min_time > hi {
                continue;
            }
            for r in b.select(matchers) {
                if !b.hist_overlaps(r, lo, hi) {
                    continue;
                }
                match b.histograms(r, lo, hi, &mut cache) {
                    Ok(h) if !h.is_empty() => {
                        let e = series.entry(b.labels(r)).or_default();
                        *e = head::merge(std::mem::take(e), h);
                    }
                    Ok(_) => {}
                    // A damaged page costs its series' samples in this block.
                    Err(e) => self.db.damaged_chunks(&b.meta.id, &e),
                }
            }
        }
        let head_parts: Vec<(Labels, head::HistSeriesData)> = {
            let head = self.db.head.read().expect("lock poisoned");
            if !head.has_histograms {
                Vec::new()
            } else {
                head.select(matchers)
                    .into_iter()
                    .filter_map(|r| Some((head.labels_of(r)?, head.hist_data(r, lo, hi)?)))
                    .collect()
            }
        };
        for (ls, d) in head_parts {
            let h = d.decode(lo, hi).map_err(|e| Error::Io {
                context: format!("decoding head histogram chunk of {ls}"),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            if !h.is_empty() {
                let e = series.entry(ls).or_default();
                *e = head::merge(std::mem::take(e), h);
            }
        }
        Ok(series
            .into_iter()
            .map(|(labels, samples)| HistogramSeries { labels, samples })
            .collect())
    }

    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>> {
        if matchers.is_empty() {
            return Ok(Vec::new());
        }
        let (lo, hi) = hints.within(self.mint, self.maxt);
        // Each series' parts (blocks in time order, then the head) are appended to its
        // list as they are read, each part exactly sized ([`head::append`]): the list of
        // parts is never held beside their join, so a query needs about one copy of its
        // samples, not two. A first pass over the chunks' time bounds (nothing decoded)
        // finds how much of the range each series covers in all its parts, so its list
        // is sized once, from its first part's sample density, rather than reallocated
        // at every part (which leaves the freed lists scattered between the live ones).
        // Series are keyed by their label strings as the blocks and the head hold them,
        // so a series found in several blocks gets its `Labels` built once.
        type Key<'k> = Vec<(&'k str, &'k str)>;
        /// One series being read: its labels (when the head has them), its samples so
        /// far, the milliseconds of the range its parts cover and the most samples
        /// they can hold (chunks hold at most [`crate::chunk::MAX_SAMPLES`]).
        #[derive(Default)]
        struct Entry {
            labels: Option<Labels>,
            samples: Vec<Sample>,
            covered: (i64, usize),
        }
        fn add(a: (i64, usize), b: (i64, usize)) -> (i64, usize) {
            (a.0.saturating_add(b.0), a.1.saturating_add(b.1))
        }
        let (head_labels, head_data): (Vec<Labels>, Vec<head::SeriesData>) = {
            let head = self.db.head.read().expect("lock poisoned");
            head.select(matchers)
                .into_iter()
                .filter(|r| head.overlaps(*r, lo, hi))
                .filter_map(|r| Some((head.labels_of(r)?, head.data(r, lo, hi)?)))
                .unzip()
        };
        // Series by key (for the result's order), their entries, and each part's entry:
        // the read pass finds its series without looking its key up again.
        let mut index: BTreeMap<Key<'_>, usize> = BTreeMap::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut key: Key<'_> = Vec::new();
        fn entry_of<'k>(
            key: &Key<'k>,
            index: &mut BTreeMap<Key<'k>, usize>,
            entries: &mut Vec<Entry>,
        ) -> usize {
            match index.get(key.as_slice()) {
                Some(&i) => i,
                None => {
                    index.insert(key.clone(), entries.len());
                    entries.push(Entry::default());
                    entries.len() - 1
                }
            }
        }
        let mut plan: Vec<(&Block, Vec<(u32, usize)>)> = Vec::new();
        for b in &self.blocks {
            if b.meta.max_time <= lo || b.meta.min_time > hi {
                continue;
            }
            let refs = b.read_order(b.select(matchers), lo, hi);
            let mut parts = Vec::with_capacity(refs.len());
            for r in refs {
                key.clear();
                key.extend(b.label_pairs(r));
                parts.push((r, entry_of(&key, &mut index, &mut entries)));
            }
            plan.push((b, parts));
        }
        let head_entries: Vec<usize> = head_labels
            .iter()
            .map(|ls| {
                let k: Key<'_> = ls
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str()))
                    .collect();
                entry_of(&k, &mut index, &mut entries)
            })
            .collect();
        for (b, parts) in &plan {
            for &(r, i) in parts {
                entries[i].covered = add(entries[i].covered, b.covered(r, lo, hi));
            }
        }
        for ((ls, d), &i) in head_labels.iter().zip(&head_data).zip(&head_entries) {
            entries[i].labels = Some(ls.clone());
            entries[i].covered = add(entries[i].covered, d.covered);
        }
        let mut cache = PageCache::for_queries();
        for (b, parts) in plan {
            for (r, i) in parts {
                let s = match b.samples(r, lo, hi, &mut cache) {
                    Ok(s) => s,
                    Err(e) => {
                        // A damaged page costs its series' samples in this block, not
                        // the query.
                        self.db.damaged_chunks(&b.meta.id, &e);
                        continue;
                    }
                };
                let s = match &hints.grid {
                    Some(g) => g.thin(&s),
                    None => s,
                };
                if !s.is_empty() {
                    add_part(&mut entries[i], s, b.covered(r, lo, hi));
                }
            }
        }
        for ((ls, d), i) in head_labels.iter().zip(head_data).zip(head_entries) {
            let covered = d.covered;
            let s = d.decode(lo, hi).map_err(|e| Error::Io {
                context: format!("decoding head chunk of {ls}"),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            // Parts thinned apart keep, together, the newest sample before every point.
            let s = match &hints.grid {
                Some(g) => g.thin(&s),
                None => s,
            };
            if !s.is_empty() {
                add_part(&mut entries[i], s, covered);
            }
        }

        /// Appends a part covering `covered` (ms, most samples); the first part also
        /// sizes the list for the rest of the series' coverage at its own density, and
        /// never past what the rest's chunks can hold.
        fn add_part(e: &mut Entry, part: Vec<Sample>, covered: (i64, usize)) {
            if e.samples.is_empty() {
                let rest = e.covered.0.saturating_sub(covered.0);
                let most = e.covered.1.saturating_sub(covered.1);
                let (first, last) = (part[0].t, part[part.len() - 1].t);
                e.samples = part;
                if rest > 0 && last > first {
                    let n = e.samples.len() as f64;
                    // The parts' chunk bounds leave out the gap before each part.
                    let guess = ((n * rest as f64 / (last - first) as f64).ceil() as usize)
                        .saturating_add(4);
                    e.samples.reserve_exact(guess.min(most));
                }
            } else {
                head::append(&mut e.samples, part);
            }
        }
        Ok(index
            .into_iter()
            .filter_map(|(key, i)| {
                let e = std::mem::take(&mut entries[i]);
                (!e.samples.is_empty()).then(|| Series {
                    labels: e.labels.unwrap_or_else(|| Labels::from_pairs(key)),
                    samples: e.samples,
                })
            })
            .collect())
    }

    fn series_labels(&self, matchers: &[Matcher]) -> Result<Vec<Labels>> {
        if matchers.is_empty() {
            return Ok(Vec::new());
        }
        // From the indexes and chunk time ranges only: no sample is decoded.
        let mut out: Vec<Labels> = Vec::new();
        for b in &self.blocks {
            out.extend(
                b.select(matchers)
                    .into_iter()
                    .filter(|r| b.overlaps(*r, self.mint, self.maxt))
                    .map(|r| b.labels(r)),
            );
        }
        {
            let head = self.db.head.read().expect("lock poisoned");
            out.extend(
                head.select(matchers)
                    .into_iter()
                    .filter(|r| head.overlaps(*r, self.mint, self.maxt))
                    .filter_map(|r| head.labels_of(r)),
            );
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        Ok(self.collect_labels(
            matchers,
            |b, refs| b.label_names(refs),
            |h, refs| h.label_names(refs),
        ))
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        Ok(self.collect_labels(
            matchers,
            |b, refs| b.label_values(name, refs),
            |h, refs| h.label_values(name, refs),
        ))
    }
}

impl TsdbQuerier<'_> {
    /// Label names or values across blocks and head, of the series matching `matchers`
    /// (every series when empty), sorted and deduplicated.
    fn collect_labels(
        &self,
        matchers: &[Matcher],
        from_block: impl Fn(&Block, Option<&[u32]>) -> Vec<String>,
        from_head: impl Fn(&Head, &[u32]) -> Vec<String>,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for b in &self.blocks {
            if matchers.is_empty() {
                out.extend(from_block(b, None));
            } else {
                out.extend(from_block(b, Some(&b.select(matchers))));
            }
        }
        let head = self.db.head.read().expect("lock poisoned");
        let refs: Vec<u32> = if matchers.is_empty() {
            head.refs()
        } else {
            head.select(matchers)
        };
        let refs: Vec<u32> = refs
            .into_iter()
            .filter(|r| head.overlaps(*r, self.mint, self.maxt))
            .collect();
        out.extend(from_head(&head, &refs));
        out.sort();
        out.dedup();
        out
    }
}
