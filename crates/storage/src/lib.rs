//! The storage seams every layer meets at.
//!
//! - Write side: [`Appendable::appender`] hands out an [`Appender`]; samples added with
//!   [`Appender::append`] become visible together on [`Appender::commit`], or are dropped by
//!   [`Appender::rollback`]. Both take the appender by value, so it cannot be reused.
//! - Read side: [`Queryable::querier`] opens a [`Querier`] over a time range; its
//!   [`Querier::select`] takes label matchers and returns the matching series, sorted by labels.
//!
//! Collectors write only through [`Appendable`]; PromQL reads only through [`Queryable`].
//! [`MemStorage`] implements both in memory for tests of the layers above.
//!
//! ```
//! use lookout_model::{Labels, Matcher};
//! use lookout_storage::{Appendable, MemStorage, Queryable, SelectHints};
//!
//! let db = MemStorage::new();
//! let mut app = db.appender();
//! app.append(&Labels::from_pairs([("__name__", "up")]), 1000, 1.0).unwrap();
//! app.commit().unwrap();
//! let q = db.querier(0, 2000).unwrap();
//! let got = q.select(&SelectHints::default(), &[Matcher::equal("__name__", "up")]).unwrap();
//! assert_eq!(got[0].samples[0].v, 1.0);
//! ```

mod error;
mod memory;
pub mod rollup;

pub use error::{Error, Result};
pub use memory::MemStorage;
pub use rollup::{Rollup, RollupSeries};

use std::sync::Arc;

use lookout_model::{Exemplar, FloatHistogram, Labels, Matcher, Sample};

/// A stable reference to a series within one storage instance.
pub type SeriesRef = u64;

/// Something that accepts samples.
///
/// Implementations are thread safe: any number of appenders may be open at once, each used
/// from one thread.
pub trait Appendable: Send + Sync {
    /// Opens a new appender (a batch).
    fn appender(&self) -> Box<dyn Appender + '_>;
}

/// A batch of samples being written.
///
/// Samples appended are not visible to queries until [`Appender::commit`]. Validation
/// errors that concern one sample (out of order, duplicate, limits) are returned by
/// `append` for that sample and do not poison the batch; errors from `commit` (I/O) mean
/// nothing of the batch was stored.
pub trait Appender: Send {
    /// Adds one sample of the series `labels` at `t` (milliseconds) with value `v`.
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<SeriesRef>;
    /// Adds one native-histogram sample; stores that do not keep histograms yet refuse
    /// it with [`Error::Unsupported`].
    fn append_histogram(
        &mut self,
        labels: &Labels,
        t: i64,
        h: &FloatHistogram,
    ) -> Result<SeriesRef> {
        let _ = (labels, t, h);
        Err(Error::Unsupported("native histograms"))
    }
    /// Attaches an exemplar to the series `labels`, which must have a sample in this
    /// batch or in the store. Stores that keep no exemplars refuse it with
    /// [`Error::Unsupported`]; a store that keeps them drops a duplicate of the series'
    /// newest exemplar silently and refuses an older one or invalid labels.
    fn append_exemplar(&mut self, labels: &Labels, e: &Exemplar) -> Result<()> {
        let _ = (labels, e);
        Err(Error::Unsupported("exemplars"))
    }
    /// Tells the store when the series `labels` (a counter, histogram or summary) was
    /// created (ms): OpenMetrics `_created`, OTLP's start time, remote write 2.0's
    /// created timestamp. Stores that do not keep it ignore it (the default); remote
    /// write sends it on with 2.0.
    fn append_created(&mut self, labels: &Labels, created_ms: i64) -> Result<()> {
        let _ = (labels, created_ms);
        Ok(())
    }
    /// Makes every appended sample durable (per the store's sync policy) and visible.
    fn commit(self: Box<Self>) -> Result<()>;
    /// Discards every appended sample.
    fn rollback(self: Box<Self>);
}

/// The points in time a selection is read at, when the reader only wants the newest
/// sample at or before each point (PromQL's instant selectors: each step reads one
/// sample per series). A store may then return only those samples; one that ignores
/// the grid and returns every sample is also correct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// First point (ms).
    pub first: i64,
    /// Last point (ms, at least `first`).
    pub last: i64,
    /// Distance between points (ms); 0 or less: `first` is the only point.
    pub step: i64,
}

impl Grid {
    /// The first point at or after `t`, if any.
    fn point_at_or_after(&self, t: i64) -> Option<i64> {
        if t <= self.first {
            return (self.first <= self.last).then_some(self.first);
        }
        if self.step <= 0 {
            return None;
        }
        let (t, first, step) = (i128::from(t), i128::from(self.first), i128::from(self.step));
        let p = first + (t - first + step - 1) / step * step;
        (p <= i128::from(self.last)).then_some(p as i64)
    }

    /// The samples of `s` (ascending) that are the newest at or before some point: for
    /// every point, the newest sample at or before it is the same in `s` and in the
    /// result. At most one sample per point is kept.
    pub fn thin(&self, s: &[Sample]) -> Vec<Sample> {
        let mut out = Vec::new();
        // The first point at or after the current sample; samples ascend, so it only
        // moves forward, and is recomputed only when a sample passes it.
        let mut p = i64::MIN;
        for (i, x) in s.iter().enumerate() {
            if x.t > p {
                match self.point_at_or_after(x.t) {
                    Some(q) => p = q,
                    None => break,
                }
            }
            if s.get(i + 1).is_none_or(|n| n.t > p) {
                out.push(*x);
            }
        }
        out
    }
}

/// Hints for a select: the range and function the caller needs, so stores can skip data.
#[derive(Debug, Clone, Default)]
pub struct SelectHints {
    /// Earliest timestamp needed (inclusive, ms); 0 together with `end == 0` means "the querier's range".
    pub start: i64,
    /// Latest timestamp needed (inclusive, ms).
    pub end: i64,
    /// Name of the PromQL function the data feeds, if any.
    pub func: Option<String>,
    /// The points the samples are read at, when only the newest at or before each is
    /// needed ([`Grid::thin`]).
    pub grid: Option<Grid>,
}

impl SelectHints {
    /// `[lo, hi]` narrowed to the hints' range when they give one (`start` and `end`
    /// both 0 means "the querier's range").
    pub fn within(&self, lo: i64, hi: i64) -> (i64, i64) {
        if self.start != 0 || self.end != 0 {
            (lo.max(self.start), hi.min(self.end))
        } else {
            (lo, hi)
        }
    }
}

/// A series with its samples in ascending time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// Samples, sorted by time, without duplicates.
    pub samples: Vec<Sample>,
}

/// A native-histogram sample.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// Timestamp (ms).
    pub t: i64,
    /// The histogram.
    pub h: Arc<FloatHistogram>,
}

/// A series of native-histogram samples, ascending by time.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Its samples.
    pub samples: Vec<HistogramSample>,
}

/// A series' exemplars, ascending by time.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Its exemplars.
    pub exemplars: Vec<Exemplar>,
}

/// Something that can be read.
pub trait Queryable: Send + Sync {
    /// Opens a querier over `[mint, maxt]` (milliseconds, inclusive).
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier + '_>>;
}

/// A read view over a time range. It sees the data committed before it was opened, or
/// later data; never a partial batch.
pub trait Querier {
    /// Series matching all `matchers` that have at least one sample in range, sorted by
    /// labels, with their samples in range. An empty matcher list selects nothing.
    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>>;
    /// The resolutions (ms, ascending) of the rollups ([`rollup`]) the store keeps for
    /// some of this querier's range: a reader whose windows line up with one may read
    /// [`Querier::select_rollups`] at it instead of every sample. Empty (the default)
    /// when the store keeps none.
    fn rollup_resolutions(&self) -> Vec<i64> {
        Vec::new()
    }
    /// The windows of `resolution` of the series matching all `matchers`, over
    /// `(hints.start, hints.end]` (both multiples of `resolution`), sorted by labels: read
    /// from the store's rollups where it keeps them, made from the samples elsewhere
    /// (the default makes them all from [`Querier::select`]). With `hints.grid` set (its
    /// points the windows' ends), the caller reads only each window's `last` and
    /// `ends_stale`, and samples may be read thinned to the grid ([`Grid::thin`]).
    fn select_rollups(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
        resolution: i64,
    ) -> Result<Vec<RollupSeries>> {
        let raw = SelectHints {
            start: hints.start.saturating_add(1),
            end: hints.end,
            func: None,
            grid: hints.grid,
        };
        Ok(self
            .select(&raw, matchers)?
            .into_iter()
            .map(|s| RollupSeries {
                windows: rollup::rollup(&s.samples, resolution),
                labels: s.labels,
            })
            .filter(|s| !s.windows.is_empty())
            .collect())
    }
    /// Native-histogram series matching all `matchers` with samples in range, sorted by
    /// labels. Stores without histograms have none.
    fn select_histograms(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<HistogramSeries>> {
        let _ = (hints, matchers);
        Ok(Vec::new())
    }
    /// Exemplars in the querier's range of the series matching all `matchers`, sorted by
    /// series labels. Stores without exemplars have none.
    fn select_exemplars(&self, matchers: &[Matcher]) -> Result<Vec<ExemplarSeries>> {
        let _ = matchers;
        Ok(Vec::new())
    }
    /// Label sets of the series matching all `matchers` with data in range, sorted, for
    /// the series API: stores that can answer from their index without reading samples
    /// should. An empty matcher list selects nothing.
    fn series_labels(&self, matchers: &[Matcher]) -> Result<Vec<Labels>> {
        Ok(self
            .select(&SelectHints::default(), matchers)?
            .into_iter()
            .map(|s| s.labels)
            .collect())
    }
    /// Label names of series matching `matchers` (all series if empty), sorted.
    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>>;
    /// Values of label `name` among series matching `matchers` (all if empty), sorted.
    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The newest sample at or before `p`.
    fn newest(s: &[Sample], p: i64) -> Option<Sample> {
        s.iter().rev().find(|x| x.t <= p).copied()
    }

    #[test]
    fn thinning_keeps_the_newest_sample_at_or_before_every_point() {
        // A small linear congruential generator: varied series and grids, reproducibly.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for _ in 0..2000 {
            let mut t = next(50) as i64 - 25;
            let s: Vec<Sample> = (0..next(40))
                .map(|i| {
                    t += 1 + next(20) as i64;
                    Sample::new(t, i as f64)
                })
                .collect();
            let g = Grid {
                first: next(100) as i64 - 30,
                last: 0,
                step: next(25) as i64,
            };
            let g = Grid {
                last: g.first + next(400) as i64,
                ..g
            };
            let thin = g.thin(&s);
            let mut p = g.first;
            let mut points = 0;
            while p <= g.last {
                assert_eq!(newest(&thin, p), newest(&s, p), "{g:?} at {p}: {s:?}");
                points += 1;
                if g.step <= 0 {
                    break;
                }
                p += g.step;
            }
            assert!(
                thin.len() <= points,
                "{g:?}: {} kept for {points} points",
                thin.len()
            );
            assert!(thin.windows(2).all(|w| w[0].t < w[1].t));
        }
        // Far ends of the time axis do not overflow: the points are MIN, -1 and MAX - 1.
        let s = [
            Sample::new(i64::MIN, 1.0),
            Sample::new(i64::MAX - 1, 2.0),
            Sample::new(i64::MAX, 3.0),
        ];
        let g = Grid {
            first: i64::MIN,
            last: i64::MAX,
            step: i64::MAX,
        };
        assert_eq!(g.thin(&s), s[..2].to_vec());
    }
}
