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

pub use error::{Error, Result};
pub use memory::MemStorage;

use std::sync::Arc;

use lookout_model::{FloatHistogram, Labels, Matcher, Sample};

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
    /// Makes every appended sample durable (per the store's sync policy) and visible.
    fn commit(self: Box<Self>) -> Result<()>;
    /// Discards every appended sample.
    fn rollback(self: Box<Self>);
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
