//! Backtesting: rule groups evaluated over stored history, step by step as they would
//! have run (each group at its interval, `for` and `keep_firing_for` honoured), to tell
//! how often each alerting rule would have fired and for how long — so an operator
//! tunes a rule's noise before enabling it.
//!
//! Recording rules are evaluated but what they record is not written (history is read
//! only); alerting rules that read a recording rule's output see it only where it was
//! recorded at the time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lookout_model::Labels;
use lookout_storage::{Appendable, Appender, SeriesRef};

use crate::rule::{AlertState, EvalContext, Rule};
use crate::{Error, Group};

/// The most evaluations of one group a backtest makes.
pub const MAX_STEPS: u64 = 200_000;
/// The most group evaluations of a whole backtest (every group's steps added up).
pub const MAX_TOTAL_STEPS: u64 = 2_000_000;
/// Firing episodes listed per rule (all are counted).
const MAX_EPISODES: usize = 100;

/// What to backtest over.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestOptions {
    /// First evaluation (ms).
    pub from: i64,
    /// Last evaluation (ms).
    pub to: i64,
    /// The step; `None`: each group's own interval.
    pub step: Option<Duration>,
}

/// One time an alert fired.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Episode {
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// When it started firing (ms).
    pub start: i64,
    /// When it stopped (ms; the backtest's end when it was still firing).
    pub end: i64,
}

/// How one alerting rule would have behaved.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleReport {
    /// The group.
    pub group: String,
    /// The alert's name.
    pub alert: String,
    /// Its expression.
    pub expr: String,
    /// How many times an alert started firing.
    pub firings: u64,
    /// Alerts that went pending but never fired (`for` held them back).
    pub pending_only: u64,
    /// Seconds spent firing, summed over alerts.
    pub firing_seconds: f64,
    /// The longest single firing, in seconds.
    pub longest_firing_seconds: f64,
    /// Share of the range with at least one alert of the rule firing.
    pub firing_share: f64,
    /// Distinct label sets that fired.
    pub series: usize,
    /// Evaluations that failed, and the last error.
    pub errors: u64,
    /// The last error.
    pub last_error: Option<String>,
    /// The first firings, in time order (at most 100).
    pub episodes: Vec<Episode>,
}

/// An [`Appendable`] that keeps nothing: a backtest writes no history.
struct Discard;

struct DiscardAppender;

impl Appender for DiscardAppender {
    fn append(&mut self, _: &Labels, _: i64, _: f64) -> lookout_storage::Result<SeriesRef> {
        Ok(0)
    }
    fn commit(self: Box<Self>) -> lookout_storage::Result<()> {
        Ok(())
    }
    fn rollback(self: Box<Self>) {}
}

impl Appendable for Discard {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(DiscardAppender)
    }
}

/// Groups from a rule file's text (as `promtool check rules` reads it), `file` naming it.
pub fn groups_from_text(
    text: &str,
    file: &Path,
    default_interval: Duration,
) -> Result<Vec<Group>, Vec<String>> {
    let f = crate::file::parse_text(text, false).map_err(|e| vec![e.to_string()])?;
    let problems = crate::file::validate(&f);
    if !problems.is_empty() {
        return Err(problems);
    }
    f.groups
        .iter()
        .map(|g| Group::from_spec(g, file, default_interval).map_err(|e| vec![e.to_string()]))
        .collect()
}

struct Tracking {
    report: RuleReport,
    /// Firing alerts by labels: since when.
    open: BTreeMap<Labels, i64>,
    /// Pending alerts seen, by labels, and whether they fired.
    pending: BTreeMap<Labels, bool>,
    fired_series: std::collections::BTreeSet<Labels>,
    /// Time with at least one alert firing (ms).
    any_firing_ms: i64,
}

fn close(t: &mut Tracking, labels: &Labels, start: i64, end: i64) {
    let secs = (end - start).max(0) as f64 / 1000.0;
    t.report.firing_seconds += secs;
    t.report.longest_firing_seconds = t.report.longest_firing_seconds.max(secs);
    if t.report.episodes.len() < MAX_EPISODES {
        t.report.episodes.push(Episode {
            labels: labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect(),
            start,
            end,
        });
    }
}

/// Runs `groups` over `[from, to]`; `cancel` stops it (with an error).
pub fn run(
    groups: Vec<Group>,
    ctx: &EvalContext,
    o: &BacktestOptions,
    cancel: Option<&AtomicBool>,
) -> Result<Vec<RuleReport>, Error> {
    if o.to <= o.from {
        return Err(Error::Backtest("the end must be after the start".into()));
    }
    let steps_of = |g: &Group| {
        let step = o.step.unwrap_or(g.interval).as_millis().max(1) as i64;
        (o.to.saturating_sub(o.from) / step) as u64 + 1
    };
    let total: u64 = groups.iter().map(steps_of).sum();
    if total > MAX_TOTAL_STEPS {
        return Err(Error::Backtest(format!(
            "{total} group evaluations over the range; at most {MAX_TOTAL_STEPS} in all (fewer groups, a larger step or a shorter range)"
        )));
    }
    let mut out = Vec::new();
    for mut g in groups {
        let step = o.step.unwrap_or(g.interval).as_millis().max(1) as i64;
        let steps = (o.to.saturating_sub(o.from) / step) as u64 + 1;
        if steps > MAX_STEPS {
            return Err(Error::Backtest(format!(
                "group {:?}: {steps} evaluations over the range at {}s; at most {MAX_STEPS} (a larger step or a shorter range)",
                g.name,
                step / 1000
            )));
        }
        let mut tracks: Vec<Option<Tracking>> = g
            .rules
            .iter()
            .map(|e| match &e.rule {
                Rule::Alerting(_) => Some(Tracking {
                    report: RuleReport {
                        group: g.name.clone(),
                        alert: e.rule.name().to_string(),
                        expr: e.rule.expr().to_string(),
                        firings: 0,
                        pending_only: 0,
                        firing_seconds: 0.0,
                        longest_firing_seconds: 0.0,
                        firing_share: 0.0,
                        series: 0,
                        errors: 0,
                        last_error: None,
                        episodes: Vec::new(),
                    },
                    open: BTreeMap::new(),
                    pending: BTreeMap::new(),
                    fired_series: Default::default(),
                    any_firing_ms: 0,
                }),
                Rule::Recording(_) => None,
            })
            .collect();
        let mut t = o.from;
        let mut prev_t = o.from;
        while t <= o.to {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Backtest("cancelled".into()));
            }
            g.eval(ctx, &Discard, t);
            for (e, track) in g.rules.iter().zip(tracks.iter_mut()) {
                let (Rule::Alerting(a), Some(tr)) = (&e.rule, track.as_mut()) else {
                    continue;
                };
                if let Some(err) = &e.last_error {
                    tr.report.errors += 1;
                    tr.report.last_error = Some(err.clone());
                }
                if !tr.open.is_empty() {
                    tr.any_firing_ms += t - prev_t;
                }
                let mut firing_now = std::collections::BTreeSet::new();
                for al in a.alerts() {
                    match al.state {
                        AlertState::Firing if al.resolved_at.is_none() => {
                            firing_now.insert(al.labels.clone());
                            if !tr.open.contains_key(&al.labels) {
                                tr.open.insert(al.labels.clone(), t);
                                tr.report.firings += 1;
                                tr.fired_series.insert(al.labels.clone());
                                tr.pending.insert(al.labels.clone(), true);
                            }
                        }
                        AlertState::Pending => {
                            tr.pending.entry(al.labels.clone()).or_insert(false);
                        }
                        _ => {}
                    }
                }
                let ended: Vec<(Labels, i64)> = tr
                    .open
                    .iter()
                    .filter(|(l, _)| !firing_now.contains(*l))
                    .map(|(l, s)| (l.clone(), *s))
                    .collect();
                for (l, s) in ended {
                    tr.open.remove(&l);
                    close(tr, &l, s, t);
                }
                // An alert no longer active that never fired was pending only.
                let active: std::collections::BTreeSet<Labels> = a
                    .alerts()
                    .into_iter()
                    .filter(|x| x.state != AlertState::Inactive)
                    .map(|x| x.labels)
                    .collect();
                let gone: Vec<Labels> = tr
                    .pending
                    .keys()
                    .filter(|l| !active.contains(*l))
                    .cloned()
                    .collect();
                for l in gone {
                    if tr.pending.remove(&l) == Some(false) {
                        tr.report.pending_only += 1;
                    }
                }
            }
            prev_t = t;
            t += step;
        }
        let end = prev_t;
        for tr in tracks.iter_mut().flatten() {
            let open: Vec<(Labels, i64)> = std::mem::take(&mut tr.open).into_iter().collect();
            if !open.is_empty() {
                tr.any_firing_ms += (o.to - end).max(0);
            }
            for (l, s) in open {
                close(tr, &l, s, o.to.max(end));
            }
            tr.report.pending_only += tr.pending.values().filter(|f| !**f).count() as u64;
            tr.report.series = tr.fired_series.len();
            tr.report.firing_share = tr.any_firing_ms as f64 / o.to.saturating_sub(o.from) as f64;
            tr.report.episodes.sort_by_key(|e| e.start);
            out.push(tr.report.clone());
        }
    }
    Ok(out)
}
