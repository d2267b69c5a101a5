//! One pipeline for every collection run, whatever produced the samples (a built-in
//! collector or a scrape of a Prometheus target): the samples are appended in one
//! commit with the run's report series (`up`, `scrape_duration_seconds`, …, as
//! Prometheus records them for every target), each series the previous run wrote and
//! this one did not is ended with a staleness marker, what the store refused is counted,
//! and the run is recorded in one set of metrics (`lookout_collector_*`, labelled by
//! collector or `job/instance`). The scheduler and the scrape loops differ only in how
//! they get their samples.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use lookout_model::{Exemplar, FloatHistogram, Labels, METRIC_NAME_LABEL, stale_nan};
use lookout_storage::Appendable;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The report series every run writes, as Prometheus names them.
pub(crate) const REPORT: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// What one run produced.
#[derive(Debug)]
pub(crate) struct Run {
    /// Samples (labels, timestamp in ms, value), target labels applied.
    pub(crate) samples: Vec<(Labels, i64, f64)>,
    /// Exemplars, each with the index of its sample in `samples`, ascending.
    pub(crate) exemplars: Vec<(usize, Exemplar)>,
    /// Created timestamps (ms), each with the index of its sample, ascending.
    pub(crate) created: Vec<(usize, i64)>,
    /// Native-histogram samples (labels, timestamp in ms, histogram), target labels
    /// applied.
    pub(crate) histograms: Vec<(Labels, i64, FloatHistogram)>,
    /// Samples the source exposed before relabeling.
    pub(crate) scraped: usize,
    /// Whether the source answered (`up`).
    pub(crate) up: bool,
    /// How long the run took.
    pub(crate) duration: Duration,
}

/// What writing one run did.
#[derive(Debug)]
pub(crate) struct Written {
    /// Series written.
    pub(crate) series: usize,
    /// Samples the store refused.
    pub(crate) rejected: u64,
    /// Why the commit failed, if it did.
    pub(crate) commit_error: Option<lookout_storage::Error>,
}

/// One source's series between runs: writes a run, ends the series it stops writing.
#[derive(Debug)]
pub(crate) struct Pipeline {
    /// The source's target labels (`job`, `instance`); report series carry only these.
    target: Labels,
    previous: HashSet<Labels>,
    /// The native-histogram series the last run wrote (ended with a histogram staleness
    /// marker).
    previous_hist: HashSet<Labels>,
    /// A source's own label sets of the last run and this one, each with its target
    /// labels added ([`Pipeline::labelled`]).
    labelled: HashMap<Labels, Labels>,
    labelled_now: HashMap<Labels, Labels>,
}

impl Pipeline {
    /// A pipeline for the source with `target` labels, nothing written yet.
    pub(crate) fn new(target: Labels) -> Self {
        Self {
            target,
            previous: HashSet::new(),
            previous_hist: HashSet::new(),
            labelled: HashMap::new(),
            labelled_now: HashMap::new(),
        }
    }

    /// `own` (a collector's label set) with the target labels it lacks added. A set
    /// the last run also produced gets back the very set it got then, so it costs one
    /// lookup instead of a copy, and every later comparison of it (here, in the store,
    /// in remote write) is a pointer comparison. Only this run's and the last run's
    /// sets are remembered.
    pub(crate) fn labelled(&mut self, own: &Labels) -> Labels {
        let out = match self.labelled.get(own) {
            Some(l) => l.clone(),
            None => own.with_missing(&self.target),
        };
        self.labelled_now.insert(own.clone(), out.clone());
        out
    }

    /// Writes `run` at `t` (ms) in one commit: its samples, its report series, and
    /// staleness markers for the series the previous run wrote and this one did not.
    pub(crate) fn write(&mut self, db: &dyn Appendable, t: i64, run: &Run) -> Written {
        // A series the last run wrote keeps the label set it had then, so every later
        // comparison (stale detection here, the store's and remote write's lookups) is
        // a pointer comparison instead of one over every label.
        let mut current: HashSet<Labels> = HashSet::with_capacity(run.samples.len());
        let mut added = 0;
        let mut app = db.appender();
        let mut rejected = 0u64;
        let mut exemplars = run.exemplars.iter().peekable();
        let mut created = run.created.iter().peekable();
        for (i, (ls, ts, v)) in run.samples.iter().enumerate() {
            let (ls, known) = match self.previous.get(ls) {
                Some(known) => (known.clone(), true),
                None => (ls.clone(), false),
            };
            if app.append(&ls, *ts, *v).is_err() {
                rejected += 1;
            }
            if let Some((_, ct)) = created.next_if(|(at, _)| *at == i) {
                let _ = app.append_created(&ls, *ct);
            }
            while let Some((_, e)) = exemplars.next_if(|(at, _)| *at == i) {
                // A refused exemplar costs only itself, as in Prometheus.
                if let Err(err) = app.append_exemplar(&ls, e) {
                    tracing::debug!(series = %ls, error = %err, "Exemplar not stored");
                }
            }
            if current.insert(ls) && !known {
                added += 1;
            }
        }
        let mut current_hist: HashSet<Labels> = HashSet::with_capacity(run.histograms.len());
        for (ls, ts, h) in &run.histograms {
            let (ls, known) = match self.previous_hist.get(ls) {
                Some(known) => (known.clone(), true),
                None => (ls.clone(), false),
            };
            if app.append_histogram(&ls, *ts, h).is_err() {
                rejected += 1;
            }
            if current_hist.insert(ls) && !known {
                added += 1;
            }
        }
        for gone in self.previous.difference(&current) {
            if app.append(gone, t, stale_nan()).is_err() {
                rejected += 1;
            }
        }
        for gone in self.previous_hist.difference(&current_hist) {
            if app
                .append_histogram(gone, t, &FloatHistogram::stale())
                .is_err()
            {
                rejected += 1;
            }
        }
        let report = [
            if run.up { 1.0 } else { 0.0 },
            run.duration.as_secs_f64(),
            run.scraped as f64,
            (run.samples.len() + run.histograms.len()) as f64,
            added as f64,
        ];
        for (n, v) in REPORT.iter().zip(report) {
            if app
                .append(&self.target.with(METRIC_NAME_LABEL, n), t, v)
                .is_err()
            {
                rejected += 1;
            }
        }
        let commit_error = app.commit().err();
        let series = current.len() + current_hist.len();
        self.previous = current;
        self.previous_hist = current_hist;
        self.labelled = std::mem::take(&mut self.labelled_now);
        Written {
            series,
            rejected,
            commit_error,
        }
    }

    /// Ends every series the last run wrote, report series included (the source went
    /// away or Lookout stops).
    pub(crate) fn end(&mut self, db: &dyn Appendable, t: i64) {
        let mut app = db.appender();
        for gone in self.previous.drain() {
            let _ = app.append(&gone, t, stale_nan());
        }
        for gone in self.previous_hist.drain() {
            let _ = app.append_histogram(&gone, t, &FloatHistogram::stale());
        }
        for n in REPORT {
            let _ = app.append(&self.target.with(METRIC_NAME_LABEL, n), t, stale_nan());
        }
        let _ = app.commit();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    collector: String,
}

/// Lookout's own figures about collection runs, one set for collectors and scrapes:
/// `lookout_collector_{duration_seconds,runs_total,failures_total,samples_rejected_total}`.
#[derive(Debug, Clone, Default)]
pub struct RunMetrics {
    duration: Family<SourceLabel, Gauge<f64, AtomicU64>>,
    runs: Family<SourceLabel, Counter>,
    failures: Family<SourceLabel, Counter>,
    rejected: Family<SourceLabel, Counter>,
}

impl RunMetrics {
    /// The families, registered in `reg`.
    pub fn new(reg: &mut Registry) -> Self {
        let m = Self::default();
        let reg = reg.sub_registry_with_prefix("lookout_collector");
        reg.register(
            "duration_seconds",
            "Duration of the last run",
            m.duration.clone(),
        );
        reg.register("runs", "Collector runs", m.runs.clone());
        reg.register(
            "failures",
            "Collector runs that failed or timed out",
            m.failures.clone(),
        );
        reg.register(
            "samples_rejected",
            "Samples the store rejected (out of order, duplicate, invalid)",
            m.rejected.clone(),
        );
        m
    }

    /// Records one run of `source`.
    pub(crate) fn record(&self, source: &str, duration: Duration, failed: bool, rejected: u64) {
        let l = SourceLabel {
            collector: source.to_string(),
        };
        self.duration.get_or_create(&l).set(duration.as_secs_f64());
        self.runs.get_or_create(&l).inc();
        self.rejected.get_or_create(&l).inc_by(rejected);
        if failed {
            self.failures.get_or_create(&l).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_model::Matcher;
    use lookout_storage::{MemStorage, Queryable, SelectHints};

    fn latest(db: &MemStorage, name: &str) -> Option<f64> {
        let q = db.querier(0, i64::MAX).unwrap();
        let s = q
            .select(&SelectHints::default(), &[Matcher::equal("__name__", name)])
            .unwrap();
        s.first().and_then(|s| s.samples.last()).map(|p| p.v)
    }

    #[test]
    fn a_run_writes_report_series_and_ends_what_the_next_run_lacks() {
        let db = MemStorage::new();
        let target = Labels::from_pairs([("job", "j"), ("instance", "i")]);
        let mut p = Pipeline::new(target.clone());
        let s = |n: &str, t| (target.with(METRIC_NAME_LABEL, n), t, 1.0);
        let w = p.write(
            &db,
            1000,
            &Run {
                samples: vec![s("a", 1000), s("b", 1000)],
                exemplars: Vec::new(),
                created: Vec::new(),
                histograms: Vec::new(),
                scraped: 3,
                up: true,
                duration: Duration::from_millis(5),
            },
        );
        assert_eq!((w.series, w.rejected), (2, 0));
        assert_eq!(latest(&db, "scrape_series_added"), Some(2.0));
        assert_eq!(latest(&db, "scrape_samples_scraped"), Some(3.0));
        let w = p.write(
            &db,
            2000,
            &Run {
                samples: vec![s("a", 2000)],
                exemplars: Vec::new(),
                created: Vec::new(),
                histograms: Vec::new(),
                scraped: 1,
                up: false,
                duration: Duration::ZERO,
            },
        );
        assert_eq!(w.series, 1);
        assert!(lookout_model::is_stale_nan(latest(&db, "b").unwrap()));
        assert_eq!(latest(&db, "up"), Some(0.0));
        assert_eq!(latest(&db, "scrape_series_added"), Some(0.0));
        p.end(&db, 3000);
        assert!(lookout_model::is_stale_nan(latest(&db, "a").unwrap()));
        assert!(lookout_model::is_stale_nan(latest(&db, "up").unwrap()));
    }

    #[test]
    fn a_set_the_last_run_labelled_is_given_back_shared_and_forgotten_when_gone() {
        let db = MemStorage::new();
        let mut p = Pipeline::new(Labels::from_pairs([("job", "j"), ("instance", "i")]));
        let own = |n: &str| Labels::from_pairs([("__name__", n), ("mode", "idle")]);
        let run = |p: &mut Pipeline, names: &[&str]| {
            let samples: Vec<_> = names
                .iter()
                .map(|n| (p.labelled(&own(n)), 1, 1.0))
                .collect();
            p.write(
                &db,
                1,
                &Run {
                    samples: samples.clone(),
                    exemplars: Vec::new(),
                    created: Vec::new(),
                    histograms: Vec::new(),
                    scraped: names.len(),
                    up: true,
                    duration: Duration::ZERO,
                },
            );
            samples.into_iter().map(|s| s.0).collect::<Vec<_>>()
        };
        let first = run(&mut p, &["a", "b"]);
        assert_eq!(first[0].get("job"), Some("j"));
        assert_eq!(first[0].get("mode"), Some("idle"));
        let second = run(&mut p, &["a"]);
        // Built afresh by the collector, yet the same set as last time: shared.
        assert!(std::ptr::eq(
            first[0].iter().as_slice(),
            second[0].iter().as_slice()
        ));
        assert_eq!(p.labelled.len(), 1, "b was not produced by the last run");
    }
}
