//! Backfilling: writes samples straight into blocks, in one pass, with memory bounded by
//! one series' samples plus each block's index entries (not by the input's size).
//!
//! Samples must arrive grouped by series (as `promtool tsdb dump-openmetrics` and metric
//! exporters write them) and in time order within a series. A series that appears again
//! later is written as a second entry; queries and compaction merge such entries. Blocks
//! are built in temporary directories and only moved into place by [`Importer::finish`];
//! [`Importer::abort`] leaves the data directory as it was.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lookout_model::{Labels, Sample};

use crate::block::{BlockError, BlockWriter};

/// The server's default `storage.future_tolerance`.
const DEFAULT_FUTURE_TOLERANCE: Duration = Duration::from_secs(600);

fn future_limit(tolerance: Duration) -> i64 {
    lookout_model::now_ms().saturating_add(i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX))
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A sample is not after the previous one of its series.
    #[error("out of order sample for {series}: timestamp {t} is not after {last_t}")]
    OutOfOrder {
        /// The series.
        series: String,
        /// Its timestamp.
        t: i64,
        /// The previous timestamp.
        last_t: i64,
    },
    /// A sample is further ahead of the wall clock than the future tolerance: a block in
    /// the future would make the server reject every live sample before it.
    #[error(
        "sample for {series} is too far in the future: timestamp {t} is after {max_t} (now + {tolerance:?}); fix the input's timestamps"
    )]
    TooFarInFuture {
        /// The series.
        series: String,
        /// Its timestamp.
        t: i64,
        /// The latest accepted timestamp.
        max_t: i64,
        /// The tolerance in force.
        tolerance: Duration,
    },
    /// Writing blocks failed.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The data directory cannot be used.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What an import wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Blocks written.
    pub blocks: usize,
    /// Series entries written (a series split across blocks counts once per block).
    pub series: u64,
    /// Samples written.
    pub samples: u64,
}

/// Writes imported samples into blocks.
pub struct Importer {
    data: PathBuf,
    created_data: bool,
    range: i64,
    writers: BTreeMap<i64, BlockWriter>,
    current: Option<(Labels, Vec<Sample>)>,
    summary: ImportSummary,
    tolerance: Duration,
    max_t: i64,
    _lock: File,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("data", &self.data)
            .finish()
    }
}

impl Importer {
    /// Starts an import into the data directory `data` (created if absent), cutting blocks
    /// of `block_range`. Takes the directory's lock, so no server may be running on it.
    pub fn new(data: &Path, block_range: Duration) -> Result<Self, ImportError> {
        let io = |context: String| move |source| ImportError::Io { context, source };
        let created_data = !data.exists();
        std::fs::create_dir_all(data.join("blocks"))
            .map_err(io(format!("creating {}", data.display())))?;
        let lock_path = data.join("lock");
        let lock =
            File::create(&lock_path).map_err(io(format!("creating {}", lock_path.display())))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| ImportError::Io {
                context: format!("locking {} (is a Lookout server using it?)", data.display()),
                source: e.into(),
            },
        )?;
        Ok(Self {
            data: data.to_path_buf(),
            created_data,
            range: block_range.as_millis().max(1) as i64,
            writers: BTreeMap::new(),
            current: None,
            summary: ImportSummary::default(),
            tolerance: DEFAULT_FUTURE_TOLERANCE,
            max_t: future_limit(DEFAULT_FUTURE_TOLERANCE),
            _lock: lock,
        })
    }

    /// Accepts samples up to `tolerance` ahead of the wall clock (default 10 minutes, as
    /// the server's `storage.future_tolerance`).
    pub fn future_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self.max_t = future_limit(tolerance);
        self
    }

    /// Adds one sample.
    pub fn add(&mut self, labels: Labels, t: i64, v: f64) -> Result<(), ImportError> {
        if t > self.max_t {
            return Err(ImportError::TooFarInFuture {
                series: labels.to_string(),
                t,
                max_t: self.max_t,
                tolerance: self.tolerance,
            });
        }
        if let Some((ls, samples)) = &mut self.current
            && *ls == labels
        {
            let last = samples.last().expect("never empty").t;
            if t <= last {
                return Err(ImportError::OutOfOrder {
                    series: labels.to_string(),
                    t,
                    last_t: last,
                });
            }
            samples.push(Sample::new(t, v));
            return Ok(());
        }
        self.flush()?;
        self.current = Some((labels, vec![Sample::new(t, v)]));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ImportError> {
        let Some((labels, samples)) = self.current.take() else {
            return Ok(());
        };
        let blocks = self.data.join("blocks");
        let mut start = 0;
        while start < samples.len() {
            let w = samples[start].t.div_euclid(self.range);
            let end = start + samples[start..].partition_point(|s| s.t.div_euclid(self.range) == w);
            let writer = match self.writers.entry(w) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let mut b = BlockWriter::new(&blocks, w * self.range, (w + 1) * self.range, 1)?;
                    b.set_imported(true);
                    e.insert(b)
                }
            };
            writer.add(labels.clone(), &samples[start..end])?;
            self.summary.series += 1;
            self.summary.samples += (end - start) as u64;
            start = end;
        }
        Ok(())
    }

    /// Writes every block and moves them into place.
    pub fn finish(mut self) -> Result<ImportSummary, ImportError> {
        self.flush()?;
        let writers = std::mem::take(&mut self.writers);
        for (_, w) in writers {
            if w.finish()?.is_some() {
                self.summary.blocks += 1;
            }
        }
        Ok(self.summary.clone())
    }

    /// Abandons the import: removes every temporary block (and the data directory if the
    /// import created it).
    pub fn abort(mut self) {
        for (_, w) in std::mem::take(&mut self.writers) {
            w.abort();
        }
        if self.created_data {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}
