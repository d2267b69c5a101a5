//! Downsampling ([`crate::Options::downsampling`]): tiers of rollups
//! ([`lookout_storage::rollup`]) kept beside the blocks, each under
//! `tiers/<resolution>ms/`, made at maintenance and kept for the tier's own retention.
//!
//! A tier block is an ordinary block ([`Block`], so it has the same checksums, page cache
//! and crash safety) holding the windows ending in `(from, to]`, a span of the tier
//! ([`span`]) aligned to multiples of it. Each series is stored field after field: its
//! window counts, then sums, minimums, maximums, first sample offsets and values, last
//! sample offsets and values, counter increases and whether the window ended with a
//! staleness marker, each field at `from + field × span + (end - from)`, so the codec sees
//! ten smooth streams rather than ten interleaved quantities, and the index has one entry
//! per series. The block's `minTime` is `from + 1` and its `maxTime` `from + 10 × span +
//! 1`.
//!
//! A tier's block for a span is made once the span ended `after` ago and its samples
//! are in blocks, from the finest data that covers it: the next finer tier's windows,
//! coarsened, and the samples where no tier has any ([`windows`]). The same function
//! answers queries ([`lookout_storage::Querier::select_rollups`]), so a query reads
//! each part of its range from the coarsest data that lines up with it.
//!
//! Samples written into a span after its tier block was made (an import of old data)
//! are not rolled up into it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use lookout_model::{Labels, MatchOp, Matcher, Sample};
use lookout_storage::rollup::{coarsen, rollup};
use lookout_storage::{Querier, Rollup, RollupSeries, SelectHints};

use crate::block::{Block, BlockError, BlockWriter, PageCache};
use crate::options::Tier;
use crate::{Inner, block_err, ms};

/// Fields stored per window.
pub(crate) const FIELDS: i64 = 10;

/// The span of one block of a tier of `resolution` (ms) over blocks of `block_range`:
/// at least 36 block ranges (the largest compacted block, 3 d by default) and 288
/// windows (12 d of 1 h windows), a multiple of 36 block ranges.
pub(crate) fn span(resolution: i64, block_range: i64) -> i64 {
    let unit = block_range.max(1).saturating_mul(36);
    let want = resolution.max(1).saturating_mul(288);
    let units = want / unit + i64::from(want % unit != 0);
    units.max(1).saturating_mul(unit)
}

/// One tier block: the windows ending in `(from, to]`.
#[derive(Debug)]
pub(crate) struct TierBlock {
    pub(crate) block: Block,
    pub(crate) from: i64,
    pub(crate) to: i64,
}

impl TierBlock {
    fn open(dir: &Path) -> Result<Self, BlockError> {
        let block = Block::open(dir)?;
        let (min, max) = (block.meta.min_time, block.meta.max_time);
        let len = max.saturating_sub(min) / FIELDS;
        if len <= 0 || max.saturating_sub(min) % FIELDS != 0 {
            return Err(BlockError::Corrupt {
                path: dir.join("meta.json"),
                what: format!("time range [{min}, {max}) is not a tier block's"),
            });
        }
        Ok(TierBlock {
            from: min - 1,
            to: min - 1 + len,
            block,
        })
    }

    /// Series `r`'s windows ending in `(lo, hi]` (within the block's span).
    fn windows(
        &self,
        r: u32,
        lo: i64,
        hi: i64,
        pages: &mut PageCache,
    ) -> Result<Vec<Rollup>, BlockError> {
        let (lo, hi) = (lo.max(self.from), hi.min(self.to));
        let len = self.to - self.from;
        let mut fields: Vec<Vec<Sample>> = Vec::with_capacity(FIELDS as usize);
        for f in 0..FIELDS {
            let base = self.from + f * len;
            fields.push(self.block.samples(
                r,
                base + (lo - self.from) + 1,
                base + (hi - self.from),
                pages,
            )?);
        }
        let n = fields[0].len();
        if fields.iter().any(|f| f.len() != n) {
            return Err(BlockError::Corrupt {
                path: self.block.dir.join("chunks"),
                what: "a series' window fields differ in length".into(),
            });
        }
        Ok((0..n)
            .map(|i| {
                let end = fields[0][i].t;
                let v = |f: usize| fields[f][i].v;
                Rollup {
                    end,
                    count: v(0) as u64,
                    sum: v(1),
                    min: v(2),
                    max: v(3),
                    first: Sample {
                        t: end - v(4) as i64,
                        v: v(5),
                    },
                    last: Sample {
                        t: end - v(6) as i64,
                        v: v(7),
                    },
                    increase: v(8),
                    ends_stale: v(9) != 0.0,
                }
            })
            .collect())
    }
}

/// The samples a series' windows are stored as in a block over `(from, from + len]`.
fn encode(windows: &[Rollup], from: i64, len: i64) -> Vec<Sample> {
    let mut out = Vec::with_capacity(windows.len() * FIELDS as usize);
    for f in 0..FIELDS {
        for w in windows {
            let v = match f {
                0 => w.count as f64,
                1 => w.sum,
                2 => w.min,
                3 => w.max,
                4 => (w.end - w.first.t) as f64,
                5 => w.first.v,
                6 => (w.end - w.last.t) as f64,
                7 => w.last.v,
                8 => w.increase,
                _ => f64::from(u8::from(w.ends_stale)),
            };
            out.push(Sample {
                t: from + f * len + (w.end - from),
                v,
            });
        }
    }
    out
}

/// One tier with its blocks.
#[derive(Debug)]
pub(crate) struct Level {
    pub(crate) resolution: i64,
    pub(crate) after: i64,
    pub(crate) retention: i64,
    pub(crate) span: i64,
    pub(crate) dir: PathBuf,
    /// By `from`.
    pub(crate) blocks: RwLock<Vec<Arc<TierBlock>>>,
    /// Spans (by `from`) found with nothing to roll up, and when (ms since the epoch).
    pub(crate) empty: Mutex<std::collections::BTreeMap<i64, i64>>,
}

impl Level {
    /// Opens (creating) the tier's directory and its blocks; a block that does not open
    /// is left on disk, skipped and reported in `skipped`.
    pub(crate) fn open(
        dir: &Path,
        tier: &Tier,
        block_range: i64,
        skipped: &mut Vec<String>,
    ) -> std::io::Result<Self> {
        let resolution = ms(tier.resolution).max(1);
        let dir = dir.join("tiers").join(format!("{resolution}ms"));
        std::fs::create_dir_all(&dir)?;
        let (mut blocks, failed) =
            crate::block::scan_dirs(&dir, |p| TierBlock::open(p).map(Arc::new))?;
        for (name, err) in failed {
            tracing::error!(block = %name, error = %err, "Tier block is damaged; skipping it (its files are left in place)");
            skipped.push(format!("tiers/{resolution}ms/{name}: {err}"));
        }
        blocks.sort_by_key(|b| b.from);
        // Two blocks for one span (a crash between writing one and removing the other):
        // the newer, by id, stays.
        let mut by_span: BTreeMap<i64, Arc<TierBlock>> = BTreeMap::new();
        for b in blocks {
            if let Some(old) = by_span.insert(b.from, Arc::clone(&b)) {
                let (keep, drop) = if old.block.meta.id > b.block.meta.id {
                    (old, b)
                } else {
                    (b, old)
                };
                let _ = std::fs::remove_dir_all(&drop.block.dir);
                by_span.insert(keep.from, keep);
            }
        }
        Ok(Level {
            resolution,
            after: ms(tier.after),
            retention: ms(tier.retention),
            span: span(resolution, block_range),
            dir,
            blocks: RwLock::new(by_span.into_values().collect()),
            empty: Mutex::new(std::collections::BTreeMap::new()),
        })
    }

    /// Its blocks overlapping `(lo, hi]`.
    pub(crate) fn overlapping(&self, lo: i64, hi: i64) -> Vec<Arc<TierBlock>> {
        self.blocks
            .read()
            .expect("lock poisoned")
            .iter()
            .filter(|b| b.to > lo && b.from < hi)
            .cloned()
            .collect()
    }
}

/// The matcher every series matches.
fn all() -> Matcher {
    Matcher::new(MatchOp::Regex, lookout_model::METRIC_NAME_LABEL, ".*").expect("valid regex")
}

/// The windows of `resolution` of the series matching `matchers` over `(lo, hi]` (both
/// multiples of `resolution`), sorted by labels: from the blocks of `levels` (finest
/// last; each level's resolution divides `resolution`) where they cover a part, the
/// coarsest first, and from `raw`'s samples for the rest — thinned to the windows'
/// ends when only their `last` and `ends_stale` are read (`latest_only`). A series whose
/// windows in a tier block do not decode is left out of that block's span and the
/// damage noted in `db`, as a damaged raw block costs only the samples it held.
pub(crate) fn windows(
    db: &Inner,
    raw: &dyn Querier,
    levels: &[&Level],
    matchers: &[Matcher],
    (lo, hi): (i64, i64),
    resolution: i64,
    latest_only: bool,
) -> lookout_storage::Result<Vec<RollupSeries>> {
    if matchers.is_empty() || hi <= lo {
        return Ok(Vec::new());
    }
    let mut out: BTreeMap<Labels, Vec<Rollup>> = BTreeMap::new();
    // The parts of (lo, hi] no level covered yet.
    let mut open: Vec<(i64, i64)> = vec![(lo, hi)];
    let mut pages = PageCache::for_queries();
    for level in levels {
        for b in level.overlapping(lo, hi) {
            let mut rest = Vec::new();
            for &(a, z) in &open {
                let (x, y) = (a.max(b.from), z.min(b.to));
                if x >= y {
                    rest.push((a, z));
                    continue;
                }
                for r in b.block.select(matchers) {
                    let w = match b.windows(r, x, y, &mut pages) {
                        Ok(w) => w,
                        Err(e) => {
                            db.damaged_chunks(&b.block.meta.id, &e);
                            continue;
                        }
                    };
                    if w.is_empty() {
                        continue;
                    }
                    let w = if level.resolution == resolution {
                        w
                    } else {
                        coarsen(&w, resolution)
                    };
                    out.entry(b.block.labels(r)).or_default().extend(w);
                }
                if a < x {
                    rest.push((a, x));
                }
                if y < z {
                    rest.push((y, z));
                }
            }
            open = rest;
        }
    }
    for (a, z) in open {
        let hints = SelectHints {
            start: a.saturating_add(1),
            end: z,
            func: None,
            grid: latest_only.then_some(lookout_storage::Grid {
                first: a.saturating_add(resolution),
                last: z,
                step: resolution,
            }),
        };
        for s in raw.select(&hints, matchers)? {
            let w = rollup(&s.samples, resolution);
            if !w.is_empty() {
                out.entry(s.labels).or_default().extend(w);
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|(labels, mut windows)| {
            windows.sort_by_key(|w| w.end);
            RollupSeries { labels, windows }
        })
        .collect())
}

/// Writes the tier block of `level` for `(from, from + span]`, series by series, from
/// `finer` (finest last) and `raw`; `None` when there was nothing to roll up.
pub(crate) fn build(
    db: &Inner,
    level: &Level,
    finer: &[&Level],
    raw: &dyn Querier,
    from: i64,
) -> lookout_storage::Result<Option<TierBlock>> {
    let to = from + level.span;
    let err = block_err;
    let mut labels: BTreeSet<Labels> = raw.series_labels(&[all()])?.into_iter().collect();
    for l in finer {
        for b in l.overlapping(from, to) {
            labels.extend(
                b.block
                    .select(&[all()])
                    .into_iter()
                    .map(|r| b.block.labels(r)),
            );
        }
    }
    if labels.is_empty() {
        return Ok(None);
    }
    let len = level.span;
    let mut w = BlockWriter::new(&level.dir, from + 1, from + FIELDS * len + 1, 1).map_err(err)?;
    for ls in labels {
        let exact: Vec<Matcher> = ls
            .iter()
            .map(|l| Matcher::equal(&l.name, &l.value))
            .collect();
        for s in windows(db, raw, finer, &exact, (from, to), level.resolution, false)? {
            // Equality matchers also match series with more labels.
            if s.labels == ls {
                w.add(ls.clone(), &encode(&s.windows, from, len))
                    .map_err(err)?;
            }
        }
    }
    match w.finish().map_err(err)? {
        Some(meta) => Ok(Some(
            TierBlock::open(&level.dir.join(&meta.id)).map_err(err)?,
        )),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_hold_whole_compacted_blocks_and_hundreds_of_windows() {
        let h = 3_600_000;
        assert_eq!(span(300_000, 2 * h), 72 * h);
        assert_eq!(span(h, 2 * h), 288 * h);
        assert_eq!(span(60_000, 2 * h), 72 * h);
        for r in [60_000, 300_000, 900_000, h, 2 * h] {
            assert_eq!(span(r, 2 * h) % r, 0);
            assert_eq!(span(r, 2 * h) % (72 * h), 0);
        }
    }

    #[test]
    fn windows_are_stored_field_after_field_and_read_back() {
        let ws = rollup(
            &(0..1000)
                .map(|i| Sample {
                    t: i * 15_000 + 7,
                    v: (i % 100) as f64,
                })
                .collect::<Vec<_>>(),
            300_000,
        );
        let len = 72 * 3_600_000;
        let s = encode(&ws, 0, len);
        assert!(s.windows(2).all(|p| p[0].t < p[1].t));
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(dir.path(), 1, FIELDS * len + 1, 1).unwrap();
        let ls = Labels::from_pairs([("__name__", "x")]);
        w.add(ls, &s).unwrap();
        let meta = w.finish().unwrap().unwrap();
        let b = TierBlock::open(&dir.path().join(&meta.id)).unwrap();
        assert_eq!((b.from, b.to), (0, len));
        let mut pages = PageCache::default();
        assert_eq!(b.windows(0, 0, len, &mut pages).unwrap(), ws);
        let part = b.windows(0, 600_000, 1_200_000, &mut pages).unwrap();
        assert_eq!(part, ws[2..4].to_vec());
    }
}
