//! Reading: a querier over blocks and head, merging each series' parts.

use std::collections::BTreeMap;
use std::sync::Arc;

use lookout_model::{Labels, Matcher, Sample};
use lookout_storage::{Error, ExemplarSeries, Querier, Queryable, Result, SelectHints, Series};

use crate::block::{Block, PageCache};
use crate::head::{self, Head};
use crate::{Inner, Tsdb};

impl Queryable for Tsdb {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier + '_>> {
        let blocks: Vec<Arc<Block>> = self
            .inner
            .blocks
            .read()
            .expect("lock poisoned")
            .iter()
            .filter(|b| b.meta.max_time > mint && b.meta.min_time <= maxt)
            .cloned()
            .collect();
        Ok(Box::new(TsdbQuerier {
            db: &self.inner,
            blocks,
            mint,
            maxt,
        }))
    }
}

struct TsdbQuerier<'a> {
    db: &'a Inner,
    blocks: Vec<Arc<Block>>,
    mint: i64,
    maxt: i64,
}

impl Querier for TsdbQuerier<'_> {
    fn select_exemplars(&self, matchers: &[Matcher]) -> Result<Vec<ExemplarSeries>> {
        Ok(self
            .db
            .exemplars
            .lock()
            .expect("lock poisoned")
            .select(self.mint, self.maxt, matchers))
    }

    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>> {
        if matchers.is_empty() {
            return Ok(Vec::new());
        }
        let (mut lo, mut hi) = (self.mint, self.maxt);
        if hints.start != 0 || hints.end != 0 {
            lo = lo.max(hints.start);
            hi = hi.min(hints.end);
        }
        // Each series' parts (blocks in time order, then the head) are appended to its
        // list as they are read, each part exactly sized ([`head::append`]): the list of
        // parts is never held beside their join, so a query needs about one copy of its
        // samples, not two. Series are keyed by their label strings as the blocks and the
        // head hold them, so a series found in several blocks gets its `Labels` built
        // once, not once per block.
        let head_labels: Vec<Labels>;
        type Key<'k> = Vec<(&'k str, &'k str)>;
        let mut out: BTreeMap<Key<'_>, (Option<Labels>, Vec<Sample>)> = BTreeMap::new();
        let mut key: Key<'_> = Vec::new();
        let mut cache = PageCache::for_queries();
        for b in &self.blocks {
            if b.meta.max_time <= lo || b.meta.min_time > hi {
                continue;
            }
            for r in b.read_order(b.select(matchers), lo, hi) {
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
                if s.is_empty() {
                    continue;
                }
                key.clear();
                key.extend(b.label_pairs(r));
                match out.get_mut(key.as_slice()) {
                    Some(e) => head::append(&mut e.1, s),
                    None => {
                        out.insert(key.clone(), (None, s));
                    }
                }
            }
        }
        let head_data: Vec<head::SeriesData>;
        (head_labels, head_data) = {
            let head = self.db.head.read().expect("lock poisoned");
            head.select(matchers)
                .into_iter()
                .filter(|r| head.overlaps(*r, lo, hi))
                .filter_map(|r| Some((head.labels_of(r)?, head.data(r, lo, hi)?)))
                .unzip()
        };
        for (ls, d) in head_labels.iter().zip(head_data) {
            let s = d.decode(lo, hi).map_err(|e| Error::Io {
                context: format!("decoding head chunk of {ls}"),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            // Parts thinned apart keep, together, the newest sample before every point.
            let s = match &hints.grid {
                Some(g) => g.thin(&s),
                None => s,
            };
            if s.is_empty() {
                continue;
            }
            let e = out
                .entry(
                    ls.iter()
                        .map(|l| (l.name.as_str(), l.value.as_str()))
                        .collect(),
                )
                .or_default();
            e.0 = Some(ls.clone());
            head::append(&mut e.1, s);
        }
        Ok(out
            .into_iter()
            .map(|(key, (labels, samples))| Series {
                labels: labels.unwrap_or_else(|| Labels::from_pairs(key)),
                samples,
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
