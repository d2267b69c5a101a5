//! Maintenance: cutting blocks from the head, checkpointing the WAL, compacting
//! blocks, retention and deletion. Runs on the maintenance thread (or when asked), one
//! pass at a time.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use lookout_model::{Labels, Matcher, Sample};
use lookout_storage::{Error, HistogramSample, Result};

use crate::block::{Block, BlockWriter, PageCache};
use crate::options::{Options, RetentionRule};
use crate::wal::{self, Record};
use crate::{Inner, block_err, head, io_err, ms};

/// What [`Inner::merge_blocks`] does to each series' samples.
pub(crate) type Prune<'a> = dyn Fn(&Labels, &mut Vec<Sample>) + Sync + 'a;

/// What retention does to one block.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Delete,
    /// Rewrite it without the samples past their series' retention.
    Prune,
}

/// The retention rules with the time each keeps data from, rounded down to a multiple of
/// the block range: a block is rewritten at most once per block range for a rule, and
/// data is kept up to one block range longer than its rule says (as whole-block
/// retention keeps a block until its newest sample is past).
struct RuleCutoffs<'a> {
    rules: Vec<(&'a RetentionRule, i64)>,
    /// Whether some rule keeps series longer than the global retention.
    longer: bool,
}

impl<'a> RuleCutoffs<'a> {
    fn new(opts: &'a Options, now: i64) -> Self {
        let step = ms(opts.block_range).max(1);
        Self {
            rules: opts
                .retention_rules
                .iter()
                .map(|r| {
                    let c = now.saturating_sub(ms(r.retention));
                    (r, c.div_euclid(step).saturating_mul(step))
                })
                .collect(),
            longer: opts
                .retention_rules
                .iter()
                .any(|r| r.retention > opts.retention),
        }
    }

    /// Where the first rule matching `ls` keeps it from, if one does.
    fn cutoff_of(&self, ls: &Labels) -> Option<i64> {
        self.rules
            .iter()
            .find(|(r, _)| r.matches(ls))
            .map(|(_, c)| *c)
    }

    /// Keep, delete or prune `b`; `past` says it is past the global retention.
    fn verdict(&self, b: &Block, past: bool) -> Verdict {
        if self.rules.is_empty() || (past && !self.longer) {
            return if past { Verdict::Delete } else { Verdict::Keep };
        }
        // No rule reaches into a block inside the global retention: nothing to select.
        if !past && self.rules.iter().all(|(_, c)| b.meta.min_time >= *c) {
            return Verdict::Keep;
        }
        // Each series goes to the first rule that matches it.
        let mut claimed: HashSet<u32> = HashSet::new();
        let (mut keep, mut drop) = (false, false);
        for (rule, c) in &self.rules {
            if b.meta.min_time >= *c && !past {
                // Nothing of this block is past this rule; its series still claim.
                claimed.extend(b.select(&rule.matchers));
                continue;
            }
            for r in b.select(&rule.matchers) {
                if !claimed.insert(r) {
                    continue;
                }
                drop |= b.overlaps(r, i64::MIN, c.saturating_sub(1));
                keep |= b.overlaps(r, *c, i64::MAX);
            }
        }
        if past {
            // The series no rule claims are past the global retention.
            drop |= claimed.len() < b.num_series();
            match (keep, drop) {
                (false, _) => Verdict::Delete,
                (true, true) => Verdict::Prune,
                (true, false) => Verdict::Keep,
            }
        } else if drop {
            Verdict::Prune
        } else {
            Verdict::Keep
        }
    }
}

impl Inner {
    pub(crate) fn maintain(&self, now: i64) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let _g = self.maint.lock().expect("lock poisoned");
        let r = ms(self.opts.block_range);
        let mut cut = false;
        loop {
            let range = self.head.read().expect("lock poisoned").time_range();
            let Some((lo, hi)) = range else { break };
            // Cut by the wall clock, not only by the newest sample: a sample from the
            // future (one that slipped in before the tolerance existed, or a clock that
            // jumped back) must not cut blocks up to it and reject everything after.
            let hi = hi.min(now);
            let start = lo.div_euclid(r) * r;
            if hi - start < r + r / 2 {
                break;
            }
            self.cut_block(start, start + r)?;
            cut = true;
        }
        if cut {
            self.checkpoint()?;
        }
        self.compact()?;
        // Roll up before retention deletes: a span whose tier block is due is read
        // while its samples are still there.
        self.downsample(now)?;
        self.retention(now)?;
        Ok(())
    }

    /// Applies each tier's retention, then makes its missing blocks: every span that
    /// ended `after` ago, whose samples are all in blocks (no sample at or before its
    /// end can still be appended), and for which some block or finer tier has data.
    pub(crate) fn downsample(&self, now: i64) -> Result<()> {
        let min_valid = self.min_valid.load(Ordering::Acquire);
        for (i, level) in self.tiers.iter().enumerate() {
            let cutoff = now.saturating_sub(level.retention);
            let doomed: Vec<Arc<crate::tiers::TierBlock>> = {
                let mut blocks = level.blocks.write().expect("lock poisoned");
                let (old, kept) = blocks.drain(..).partition(|b| b.to <= cutoff);
                *blocks = kept;
                old
            };
            for b in doomed {
                tracing::info!(resolution_ms = level.resolution, id = %b.block.meta.id, "Tier block deleted by its retention");
                std::fs::remove_dir_all(&b.block.dir)
                    .map_err(io_err(format!("deleting {}", b.block.dir.display())))?;
            }
            let horizon = now
                .saturating_sub(level.after)
                .min(min_valid.saturating_sub(1));
            let finer: Vec<&crate::tiers::Level> = self.tiers[..i].iter().rev().collect();
            // Every source's time range [a, b) and when its data last changed.
            let mut sources: Vec<(i64, i64, i64)> = self
                .blocks
                .read()
                .expect("lock poisoned")
                .iter()
                .map(|b| (b.meta.min_time, b.meta.max_time, b.meta.arrived))
                .collect();
            for l in &finer {
                sources.extend(
                    l.blocks
                        .read()
                        .expect("lock poisoned")
                        .iter()
                        .map(|b| (b.from + 1, b.to + 1, b.block.meta.arrived)),
                );
            }
            let changes = self.changes.lock().expect("lock poisoned").clone();
            let span = level.span;
            // Only spans that may be made now: ended by the horizon (`from ≤ horizon −
            // span`) and not yet past the tier's retention (`from + span > cutoff`).
            let (least, most) = (
                cutoff.div_euclid(span).saturating_mul(span),
                horizon.saturating_sub(span),
            );
            let mut spans = BTreeSet::new();
            for &(a, b, _) in &sources {
                // Spans (from, from + span] holding some time of [a, b).
                let mut from = a
                    .saturating_sub(1)
                    .div_euclid(span)
                    .saturating_mul(span)
                    .max(least);
                while from < b.saturating_sub(1) && from <= most && spans.len() < 100_000 {
                    spans.insert(from);
                    let Some(next) = from.checked_add(span) else {
                        break;
                    };
                    from = next;
                }
            }
            // What a span's sources say: the newest change to its data, and whether its
            // start is still held (raw retention or a finer tier's has not taken it).
            let state = |from: i64| {
                let over = |&&(a, b, _): &&(i64, i64, i64)| a <= from + span && b > from + 1;
                let newest = sources
                    .iter()
                    .chain(&changes)
                    .filter(over)
                    .map(|s| s.2)
                    .max()
                    .unwrap_or(0);
                let whole = sources
                    .iter()
                    .filter(over)
                    .map(|s| s.0)
                    .min()
                    .is_some_and(|a| a <= from + 1);
                (newest, whole)
            };
            let have: BTreeMap<i64, i64> = level
                .blocks
                .read()
                .expect("lock poisoned")
                .iter()
                .map(|b| (b.from, b.block.meta.arrived))
                .chain(
                    level
                        .empty
                        .lock()
                        .expect("lock poisoned")
                        .iter()
                        .map(|(f, t)| (*f, *t)),
                )
                .collect();
            for from in spans {
                let to = from + span;
                // A span already made stays, unless a block over it changed since (an
                // import, a deletion) while its samples are still all there to make it
                // again from.
                let replaces = match have.get(&from) {
                    None => false,
                    Some(&made) => {
                        let (newest, whole) = state(from);
                        if made == 0 || newest <= made || !whole {
                            continue;
                        }
                        true
                    }
                };
                let started = std::time::Instant::now();
                let q = self.querier(from + 1, to);
                if let Some(b) = crate::tiers::build(self, level, &finer, &q, from)? {
                    tracing::info!(
                        resolution_ms = level.resolution,
                        from,
                        to,
                        series = b.block.meta.stats.series,
                        elapsed = ?started.elapsed(),
                        "Tier block written"
                    );
                    if replaces {
                        drop_tier_span(level, from)?;
                    }
                    let mut blocks = level.blocks.write().expect("lock poisoned");
                    blocks.push(Arc::new(b));
                    blocks.sort_by_key(|b| b.from);
                    level.empty.lock().expect("lock poisoned").remove(&from);
                } else {
                    if replaces {
                        drop_tier_span(level, from)?;
                    }
                    // Nothing to roll up (a source touching the span's edge): looked at
                    // again only when a block over it changes.
                    level
                        .empty
                        .lock()
                        .expect("lock poisoned")
                        .insert(from, lookout_model::now_ms());
                }
            }
        }
        Ok(())
    }

    /// Writes the head's samples in `[start, end)` into a block, then drops them from the head.
    pub(crate) fn cut_block(&self, start: i64, end: i64) -> Result<()> {
        {
            // From now on, appends below `end` are out of bounds: the block will hold them.
            let _head = self.head.write().expect("lock poisoned");
            self.min_valid.fetch_max(end, Ordering::AcqRel);
        }
        let started = std::time::Instant::now();
        let parent = self.dir.join("blocks");
        let mut w = BlockWriter::new(&parent, start, end, 1).map_err(block_err)?;
        let refs = self.head.read().expect("lock poisoned").refs();
        for r in refs {
            let (labels, data) = {
                let head = self.head.read().expect("lock poisoned");
                (head.labels_of(r), head.data(r, start, end - 1))
            };
            let (Some(labels), Some(data)) = (labels, data) else {
                continue;
            };
            let hist = self
                .head
                .read()
                .expect("lock poisoned")
                .hist_data(r, start, end - 1);
            let decoded = data.decode(start, end - 1).and_then(|s| {
                let h = hist.map_or(Ok(Vec::new()), |h| h.decode(start, end - 1))?;
                Ok((s, h))
            });
            let (samples, histograms) = match decoded {
                Ok(s) => s,
                Err(e) => {
                    w.abort();
                    return Err(Error::Io {
                        context: format!("reading head series {labels}"),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    });
                }
            };
            if let Err(e) = w.add_with_histograms(labels, &samples, &histograms) {
                w.abort();
                return Err(block_err(e));
            }
        }
        if let Some(meta) = w.finish().map_err(block_err)? {
            let b = Block::open(&parent.join(&meta.id)).map_err(block_err)?;
            tracing::info!(
                id = %meta.id,
                min_time = start,
                max_time = end,
                series = meta.stats.series,
                samples = meta.stats.samples,
                bytes = b.chunks_bytes + b.index_bytes,
                elapsed = ?started.elapsed(),
                "Block written from head"
            );
            let mut blocks = self.blocks.write().expect("lock poisoned");
            blocks.push(Arc::new(b));
            blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time));
            self.metrics.set_blocks(&blocks);
        }
        let mut head = self.head.write().expect("lock poisoned");
        head.truncate_before(end);
        self.metrics.head_series.set(head.num_series() as i64);
        self.metrics.head_symbols.set(head.num_symbols() as i64);
        Ok(())
    }

    /// Rotates the WAL and replaces every finished segment with a checkpoint of the head.
    ///
    /// The WAL stays locked from the rotation to the end of the snapshot, so the snapshot
    /// holds exactly what segments up to the rotated one hold; the head is only read-locked
    /// (queries go on), sealed chunks are shared rather than copied, and the checkpoint is
    /// written with no lock held.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let (done, recs) = {
            let mut wal = self.wal.lock().expect("lock poisoned");
            let done = wal.rotate().map_err(io_err("rotating WAL segment"))?;
            let head = self.head.read().expect("lock poisoned");
            let mut recs = Vec::new();
            for r in head.refs() {
                let (Some(labels), Some(s)) = (head.labels_of(r), head.get(r)) else {
                    continue;
                };
                recs.push(Record::Series {
                    sref: r as u64,
                    labels,
                });
                for c in &s.chunks {
                    recs.push(Record::Chunk {
                        sref: r as u64,
                        data: Arc::clone(&c.data),
                    });
                }
                if !s.open.is_empty() {
                    recs.push(Record::Chunk {
                        sref: r as u64,
                        data: s.open.seal().into(),
                    });
                }
                if !s.ooo.is_empty() {
                    recs.push(Record::Samples(
                        s.ooo.iter().map(|x| (r as u64, x.t, x.v)).collect(),
                    ));
                }
                if let Some(h) = s.hist.as_deref() {
                    for c in &h.chunks {
                        recs.push(Record::Chunk {
                            sref: r as u64,
                            data: Arc::clone(&c.data),
                        });
                    }
                    if h.open.len() > 0 {
                        recs.push(Record::Chunk {
                            sref: r as u64,
                            data: h.open.finish().into(),
                        });
                    }
                    if !h.ooo.is_empty() {
                        recs.push(Record::Histograms(
                            h.ooo.iter().map(|x| (r as u64, x.clone())).collect(),
                        ));
                    }
                }
            }
            // Exemplars of the series the head still has (the others are not replayed).
            let ring = self.exemplars.lock().expect("lock poisoned");
            let kept: Vec<(u64, lookout_model::Exemplar)> = ring
                .iter()
                .filter_map(|(series, e)| Some((u64::from(head.get_ref(series)?), e.clone())))
                .collect();
            if !kept.is_empty() {
                recs.push(Record::Exemplars(kept));
            }
            (done, recs)
        };
        let dir = self.wal.lock().expect("lock poisoned").dir().to_path_buf();
        wal::write_checkpoint(&dir, done, recs.into_iter())
            .map_err(io_err("writing WAL checkpoint"))?;
        let size = self.wal.lock().expect("lock poisoned").size();
        self.metrics.wal_bytes.set(size as i64);
        Ok(())
    }

    /// Compacts adjacent blocks inside one 12 h (then 3 d) window once the head has moved past it.
    pub(crate) fn compact(&self) -> Result<()> {
        let r = ms(self.opts.block_range);
        for window in [r * 6, r * 36] {
            loop {
                let group: Vec<Arc<Block>> = {
                    let blocks = self.blocks.read().expect("lock poisoned");
                    // Windows below the newest block's end (imported blocks included) hold
                    // no more head data; queries merge anything that overlaps anyway.
                    let limit = self.min_valid.load(Ordering::Acquire).max(
                        blocks
                            .iter()
                            .map(|b| b.meta.max_time)
                            .max()
                            .unwrap_or(i64::MIN),
                    );
                    let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
                    for b in blocks.iter() {
                        if b.meta.max_time - b.meta.min_time >= window {
                            continue;
                        }
                        let k = b.meta.min_time.div_euclid(window);
                        if b.meta.max_time > (k + 1) * window {
                            continue;
                        }
                        groups.entry(k).or_default().push(Arc::clone(b));
                    }
                    groups
                        .into_iter()
                        .find(|(k, g)| g.len() >= 2 && (k + 1) * window <= limit)
                        .map(|(_, g)| g)
                        .unwrap_or_default()
                };
                if group.is_empty() {
                    break;
                }
                self.merge_blocks(&group, None, true)?;
            }
        }
        Ok(())
    }

    /// Writes one block holding every sample of `group`, each series' samples passed
    /// through `prune` when given (a series left without samples is left out), then swaps
    /// it in. Without `prune` it is a compaction (one level up). With `keeps_arrival` the
    /// new block keeps its parents' [`crate::block::BlockMeta::arrived`] (the data did not
    /// change for the tiers); otherwise it changed now.
    pub(crate) fn merge_blocks(
        &self,
        group: &[Arc<Block>],
        prune: Option<&Prune<'_>>,
        keeps_arrival: bool,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let min = group.iter().map(|b| b.meta.min_time).min().unwrap_or(0);
        let max = group.iter().map(|b| b.meta.max_time).max().unwrap_or(0);
        let level =
            group.iter().map(|b| b.meta.level).max().unwrap_or(1) + u32::from(prune.is_none());
        let parent = self.dir.join("blocks");
        let mut w = BlockWriter::new(&parent, min, max, level).map_err(block_err)?;
        w.set_parents(group.iter().map(|b| b.meta.id.clone()).collect());
        w.set_imported(group.iter().all(|b| b.meta.imported));
        if keeps_arrival {
            // Tiers built from the parents stay true.
            w.set_arrived(group.iter().map(|b| b.meta.arrived).max().unwrap_or(0));
        } else {
            let mut changes = self.changes.lock().expect("lock poisoned");
            if changes.len() >= crate::MAX_CHANGES {
                changes.remove(0);
            }
            changes.push((min, max, lookout_model::now_ms()));
        }
        let all = vec![
            Matcher::new(
                lookout_model::MatchOp::Regex,
                lookout_model::METRIC_NAME_LABEL,
                ".*",
            )
            .expect("valid regex"),
        ];
        let mut labels: BTreeMap<Labels, Vec<(usize, u32)>> = BTreeMap::new();
        for (i, b) in group.iter().enumerate() {
            for r in b.select(&all) {
                labels.entry(b.labels(r)).or_default().push((i, r));
            }
        }
        let mut cache = PageCache::default();
        for (ls, refs) in labels {
            let mut samples: Vec<Sample> = Vec::new();
            let mut histograms: Vec<HistogramSample> = Vec::new();
            for (i, r) in refs {
                let b = &group[i];
                let s = b
                    .samples(r, i64::MIN, i64::MAX, &mut cache)
                    .map_err(block_err)?;
                samples = head::merge(samples, s);
                if b.hist_overlaps(r, i64::MIN, i64::MAX) {
                    let h = b
                        .histograms(r, i64::MIN, i64::MAX, &mut cache)
                        .map_err(block_err)?;
                    histograms = head::merge(histograms, h);
                }
            }
            if let Some(prune) = prune {
                prune(&ls, &mut samples);
                if !histograms.is_empty() {
                    // Prunes decide by series and time: what they keep of the histograms'
                    // timestamps is what stays.
                    let mut times: Vec<Sample> =
                        histograms.iter().map(|h| Sample::new(h.t, 0.0)).collect();
                    prune(&ls, &mut times);
                    let kept: HashSet<i64> = times.iter().map(|s| s.t).collect();
                    histograms.retain(|h| kept.contains(&h.t));
                }
                if samples.is_empty() && histograms.is_empty() {
                    continue;
                }
            }
            w.add_with_histograms(ls, &samples, &histograms)
                .map_err(block_err)?;
        }
        let meta = w.finish().map_err(block_err)?;
        let new = match &meta {
            Some(m) => Some(Arc::new(
                Block::open(&parent.join(&m.id)).map_err(block_err)?,
            )),
            None => None,
        };
        {
            let mut blocks = self.blocks.write().expect("lock poisoned");
            blocks.retain(|b| !group.iter().any(|g| Arc::ptr_eq(b, g)));
            if let Some(n) = &new {
                blocks.push(Arc::clone(n));
            }
            blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time));
            self.metrics.set_blocks(&blocks);
        }
        for b in group {
            let _ = std::fs::remove_dir_all(&b.dir);
        }
        self.metrics.compactions.inc();
        tracing::info!(
            sources = group.len(),
            min_time = min,
            max_time = max,
            level,
            elapsed = ?started.elapsed(),
            "Blocks compacted"
        );
        Ok(())
    }

    pub(crate) fn retention(&self, now: i64) -> Result<()> {
        let cutoff = now.saturating_sub(ms(self.opts.retention));
        let rules = RuleCutoffs::new(&self.opts, now);
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        let mut pruned: Vec<Arc<Block>> = Vec::new();
        {
            let mut blocks = self.blocks.write().expect("lock poisoned");
            blocks.retain(|b| {
                let past = b.meta.max_time <= cutoff;
                match rules.verdict(b, past) {
                    Verdict::Delete => {
                        doomed.push(Arc::clone(b));
                        false
                    }
                    Verdict::Prune => {
                        pruned.push(Arc::clone(b));
                        true
                    }
                    Verdict::Keep => true,
                }
            });
            if let Some(limit) = self.opts.retention_size {
                let wal = self.wal.lock().expect("lock poisoned").size();
                let mut total: u64 = wal
                    + blocks
                        .iter()
                        .map(|b| b.chunks_bytes + b.index_bytes)
                        .sum::<u64>();
                while total > limit && !blocks.is_empty() {
                    let b = blocks.remove(0);
                    total -= b.chunks_bytes + b.index_bytes;
                    pruned.retain(|p| !Arc::ptr_eq(p, &b));
                    doomed.push(b);
                }
            }
            self.metrics.set_blocks(&blocks);
        }
        for b in &doomed {
            tracing::info!(id = %b.meta.id, max_time = b.meta.max_time, "Block deleted by retention");
            std::fs::remove_dir_all(&b.dir)
                .map_err(io_err(format!("deleting {}", b.dir.display())))?;
        }
        for b in pruned {
            let prune = |ls: &Labels, samples: &mut Vec<Sample>| {
                let c = rules.cutoff_of(ls).unwrap_or(cutoff);
                samples.retain(|s| s.t >= c);
            };
            tracing::info!(id = %b.meta.id, "Block rewritten by retention rules");
            // Retention is the raw data's: the tiers keep what they rolled up.
            self.merge_blocks(std::slice::from_ref(&b), Some(&prune), true)?;
        }
        Ok(())
    }

    pub(crate) fn delete_series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<usize> {
        let _g = self.maint.lock().expect("lock poisoned");
        let mut touched: HashSet<Labels> = HashSet::new();
        {
            // The WAL before the head, as commits take them; the deletion is logged (and
            // fsynced) with only a read lock on the head, then applied.
            let mut wal = self.wal.lock().expect("lock poisoned");
            let refs = self.head.read().expect("lock poisoned").select(matchers);
            let recs: Vec<Record> = refs
                .iter()
                .map(|r| Record::Delete {
                    sref: *r as u64,
                    mint,
                    maxt,
                })
                .collect();
            if !recs.is_empty() {
                let res = wal.append(&recs).and_then(|()| wal.sync());
                self.record_io(res.as_ref().err());
                res.map_err(io_err("logging deletion to the WAL"))?;
            }
            let mut head = self.head.write().expect("lock poisoned");
            drop(wal);
            for r in refs {
                if let Some(ls) = head.labels_of(r) {
                    touched.insert(ls);
                }
                head.delete_range(r, mint, maxt);
            }
        }
        let affected: Vec<Arc<Block>> = self
            .blocks
            .read()
            .expect("lock poisoned")
            .iter()
            .filter(|b| b.meta.min_time <= maxt && b.meta.max_time > mint)
            .filter(|b| {
                let refs = b.select(matchers);
                refs.iter().for_each(|r| {
                    touched.insert(b.labels(*r));
                });
                refs.iter().any(|r| b.overlaps(*r, mint, maxt))
            })
            .cloned()
            .collect();
        for b in affected {
            let deleted: HashSet<Labels> = b
                .select(matchers)
                .into_iter()
                .map(|r| b.labels(r))
                .collect();
            let prune = |ls: &Labels, samples: &mut Vec<Sample>| {
                if deleted.contains(ls) {
                    samples.retain(|s| s.t < mint || s.t > maxt);
                }
            };
            // A deletion changes the data: tiers over it are made again.
            self.merge_blocks(std::slice::from_ref(&b), Some(&prune), false)?;
        }
        Ok(touched.len())
    }
}

/// Removes `level`'s block of the span starting at `from` (it is made again).
fn drop_tier_span(level: &crate::tiers::Level, from: i64) -> Result<()> {
    let gone: Vec<Arc<crate::tiers::TierBlock>> = {
        let mut blocks = level.blocks.write().expect("lock poisoned");
        let (gone, kept) = blocks.drain(..).partition(|x| x.from == from);
        *blocks = kept;
        gone
    };
    for o in gone {
        tracing::info!(resolution_ms = level.resolution, id = %o.block.meta.id, "Tier block replaced: a block over its span changed");
        std::fs::remove_dir_all(&o.block.dir)
            .map_err(io_err(format!("deleting {}", o.block.dir.display())))?;
    }
    Ok(())
}
