//! Rule groups: rules evaluated in order at one time, their output written through the
//! storage seam, staleness markers for series a rule stopped producing.
//!
//! Each rule's output is committed before the next rule runs, so a later rule sees an
//! earlier rule's series, as in Prometheus.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lookout_model::{FloatHistogram, Labels, stale_nan};
use lookout_promql::VecSample;
use lookout_storage::Appendable;

use crate::file::GroupSpec;
use crate::rule::{Alert, AlertingRule, EvalContext, Health, RecordingRule, Rule};

/// A rule and what its last evaluation left behind.
#[derive(Debug, Clone)]
pub struct RuleEntry {
    /// The rule.
    pub rule: Rule,
    /// Health after the last evaluation.
    pub health: Health,
    /// The last evaluation's error.
    pub last_error: Option<String>,
    /// When it was last evaluated (ms); 0 before the first.
    pub last_evaluation: i64,
    /// How long the last evaluation took.
    pub evaluation_time: Duration,
    previous: HashSet<Labels>,
    /// Which of `previous` were native histograms (their staleness marker is one).
    previous_histograms: HashSet<Labels>,
}

impl RuleEntry {
    fn new(rule: Rule) -> Self {
        Self {
            rule,
            health: Health::Unknown,
            last_error: None,
            last_evaluation: 0,
            evaluation_time: Duration::ZERO,
            previous: HashSet::new(),
            previous_histograms: HashSet::new(),
        }
    }
}

/// A group of rules from one file.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// How often it runs.
    pub interval: Duration,
    /// Most series or alerts per rule; 0: none.
    pub limit: usize,
    /// How far back queries look from the evaluation time.
    pub query_offset: Duration,
    /// The rules, in order.
    pub rules: Vec<RuleEntry>,
    /// When the group last ran (ms).
    pub last_evaluation: i64,
    /// How long the last run took.
    pub evaluation_time: Duration,
}

/// Samples written by one evaluation that storage refused (out of order, duplicates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Samples written.
    pub written: usize,
    /// Samples refused.
    pub refused: usize,
}

impl Group {
    /// Builds a group from its spec; `default_interval` applies when it names none.
    pub fn from_spec(
        spec: &GroupSpec,
        file: &Path,
        default_interval: Duration,
    ) -> crate::Result<Self> {
        let mut rules = Vec::with_capacity(spec.rules.len());
        for r in &spec.rules {
            let mut labels = spec.labels.clone();
            labels.extend(r.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            let rule = if let Some(rec) = &r.record {
                Rule::Recording(RecordingRule::new(rec, &r.expr, labels)?)
            } else {
                Rule::Alerting(AlertingRule::new(
                    r.alert.as_deref().unwrap_or_default(),
                    &r.expr,
                    r.for_.unwrap_or_default(),
                    r.keep_firing_for.unwrap_or_default(),
                    labels,
                    r.annotations.clone(),
                )?)
            };
            rules.push(RuleEntry::new(rule));
        }
        Ok(Self {
            name: spec.name.clone(),
            file: file.to_path_buf(),
            interval: spec.interval.unwrap_or(default_interval),
            limit: spec.limit,
            query_offset: spec.query_offset.unwrap_or_default(),
            rules,
            last_evaluation: 0,
            evaluation_time: Duration::ZERO,
        })
    }

    /// The group's identity across reloads: file and name.
    pub fn key(&self) -> String {
        format!("{};{}", self.file.display(), self.name)
    }

    /// Carries alert state over from an earlier copy of this group: rules with the same
    /// name, labels and expression keep their active alerts.
    pub fn take_state(&mut self, old: &Group) {
        for e in &mut self.rules {
            let Rule::Alerting(new) = &mut e.rule else {
                continue;
            };
            let same = old.rules.iter().find_map(|o| match &o.rule {
                Rule::Alerting(o)
                    if o.name == new.name
                        && o.labels == new.labels
                        && o.expr_text == new.expr_text =>
                {
                    Some(o)
                }
                _ => None,
            });
            if let Some(o) = same {
                new.take_state(o);
            }
        }
        for (e, o) in self.rules.iter_mut().zip(&old.rules) {
            if e.rule.name() == o.rule.name() && e.rule.expr() == o.rule.expr() {
                e.previous.clone_from(&o.previous);
                e.previous_histograms.clone_from(&o.previous_histograms);
            }
        }
        self.last_evaluation = old.last_evaluation;
    }

    /// Evaluates every rule at `ts` (ms) and writes the results through `out`.
    pub fn eval(&mut self, ctx: &EvalContext, out: &dyn Appendable, ts: i64) -> WriteStats {
        let started = Instant::now();
        let mut stats = WriteStats::default();
        let data_ts = ts - self.query_offset.as_millis() as i64;
        for e in &mut self.rules {
            let t0 = Instant::now();
            let res = match &mut e.rule {
                Rule::Recording(r) => r.eval(ctx, data_ts, self.limit),
                Rule::Alerting(r) => r
                    .eval(ctx, ts, self.query_offset, self.limit)
                    .map(|v| v.into_iter().map(|(l, v)| VecSample::new(l, v)).collect()),
            };
            e.last_evaluation = ts;
            let samples = match res {
                Ok(s) => {
                    e.health = Health::Ok;
                    e.last_error = None;
                    s
                }
                Err(err) => {
                    tracing::warn!(group = %self.name, rule = %e.rule.name(), error = %err, "Rule evaluation failed");
                    e.health = Health::Err;
                    e.last_error = Some(err.to_string());
                    Vec::new()
                }
            };
            let mut app = out.appender();
            let mut now_returned = HashSet::with_capacity(samples.len());
            let mut histograms = HashSet::new();
            for s in samples {
                let l = s.labels;
                let res = match &s.h {
                    Some(h) => {
                        histograms.insert(l.clone());
                        app.append_histogram(&l, data_ts, h)
                    }
                    None => app.append(&l, data_ts, s.v),
                };
                match res {
                    Ok(_) => stats.written += 1,
                    Err(err) => {
                        stats.refused += 1;
                        tracing::debug!(rule = %e.rule.name(), series = %l, error = %err, "Rule sample refused");
                    }
                }
                now_returned.insert(l);
            }
            for gone in e.previous.difference(&now_returned) {
                // A series the rule no longer produces ends now, as Prometheus marks it.
                let _ = if e.previous_histograms.contains(gone) {
                    app.append_histogram(gone, data_ts, &FloatHistogram::stale())
                } else {
                    app.append(gone, data_ts, stale_nan())
                };
            }
            if let Err(err) = app.commit() {
                tracing::warn!(group = %self.name, rule = %e.rule.name(), error = %err, "Writing rule results failed");
                e.health = Health::Err;
                e.last_error = Some(format!("writing results: {err}"));
            }
            e.previous = now_returned;
            e.previous_histograms = histograms;
            e.evaluation_time = t0.elapsed();
        }
        self.last_evaluation = ts;
        self.evaluation_time = started.elapsed();
        stats
    }

    /// Alerts the notifier should hear about after the evaluation at `ts`, each with
    /// its rule's expression.
    pub fn alerts_to_send(&mut self, ts: i64, resend_delay: Duration) -> Vec<(Alert, String)> {
        let interval = self.interval;
        self.rules
            .iter_mut()
            .filter_map(|e| match &mut e.rule {
                Rule::Alerting(r) => Some(
                    r.alerts_to_send(ts, resend_delay, interval)
                        .into_iter()
                        .map(|a| (a, r.expr_text.clone()))
                        .collect::<Vec<_>>(),
                ),
                Rule::Recording(_) => None,
            })
            .flatten()
            .collect()
    }

    /// The active alerts of every alerting rule.
    pub fn alerts(&self) -> Vec<Alert> {
        self.rules
            .iter()
            .filter_map(|e| match &e.rule {
                Rule::Alerting(r) => Some(r.alerts()),
                Rule::Recording(_) => None,
            })
            .flatten()
            .collect()
    }

    /// Alerting rules by name, for restoring saved state.
    pub fn alerting_rules_mut(&mut self) -> impl Iterator<Item = &mut AlertingRule> {
        self.rules.iter_mut().filter_map(|e| match &mut e.rule {
            Rule::Alerting(r) => Some(r),
            Rule::Recording(_) => None,
        })
    }

    /// Saved state: every alerting rule's alerts, keyed by rule name and labels.
    pub fn saved_state(&self) -> BTreeMap<String, Vec<Alert>> {
        let mut m: BTreeMap<String, Vec<Alert>> = BTreeMap::new();
        for e in &self.rules {
            if let Rule::Alerting(r) = &e.rule {
                let alerts = r.alerts();
                if !alerts.is_empty() {
                    m.entry(rule_key(r)).or_default().extend(alerts);
                }
            }
        }
        m
    }
}

/// The key an alerting rule's saved state is filed under.
pub fn rule_key(r: &AlertingRule) -> String {
    let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}{{{}}}", r.name, labels.join(","))
}
