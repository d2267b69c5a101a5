//! Recording and alerting rules: one evaluation each, at a given time, with Prometheus's
//! semantics.
//!
//! An alerting rule keeps its active alerts between evaluations. A series the
//! expression returns becomes a *pending* alert; it *fires* once it has been active for
//! `for`; when the expression stops returning it, a firing alert stays firing for
//! `keep_firing_for`, then resolves and is kept (inactive) for 15 minutes so receivers
//! hear about the resolution. Each evaluation writes `ALERTS{alertstate=…}` and
//! `ALERTS_FOR_STATE` (the active-since time in seconds) for every pending or firing alert.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lookout_model::{Labels, METRIC_NAME_LABEL};
use lookout_promql::{Engine, Expr, Value, VecSample};
use lookout_storage::Queryable;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::template::{self, QueryFn, TemplateData};

/// How long a resolved alert is kept (and re-sent) after it resolves.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);

/// A rule's health after its last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not evaluated yet.
    #[default]
    Unknown,
    /// The last evaluation succeeded.
    Ok,
    /// The last evaluation failed.
    Err,
}

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Resolved (kept for a while so the resolution is sent).
    Inactive,
    /// Active for less than `for`.
    Pending,
    /// Active for at least `for`.
    Firing,
}

impl AlertState {
    /// Prometheus's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of an alerting rule. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Labels: the series' labels (without `__name__`), the rule's labels, `alertname`.
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// Current state.
    pub state: AlertState,
    /// The expression's value when last evaluated.
    pub value: f64,
    /// When the alert became active.
    pub active_at: i64,
    /// When it started firing.
    pub fired_at: Option<i64>,
    /// When it resolved.
    pub resolved_at: Option<i64>,
    /// When it was last sent to the notifier.
    pub last_sent_at: Option<i64>,
    /// Until when the last sending holds (the notifier's `endsAt` for a firing alert).
    pub valid_until: i64,
    /// Since when it has been kept firing by `keep_firing_for`.
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    /// Whether the notifier should hear about this alert at `ts`.
    fn needs_sending(&self, ts: i64, resend_delay: Duration) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last = self.last_sent_at.unwrap_or(i64::MIN);
        if self.resolved_at.is_some_and(|r| r > last) {
            return true;
        }
        last.saturating_add(resend_delay.as_millis() as i64) <= ts
    }
}

/// What a rule evaluation needs besides the rule.
#[derive(Clone)]
pub struct EvalContext {
    /// The engine queries run on.
    pub engine: Engine,
    /// Where queries read.
    pub db: Arc<dyn Queryable>,
    /// `$externalLabels` in templates.
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL` in templates.
    pub external_url: String,
}

impl std::fmt::Debug for EvalContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalContext")
            .field("external_labels", &self.external_labels)
            .field("external_url", &self.external_url)
            .finish_non_exhaustive()
    }
}

impl EvalContext {
    /// Evaluates `expr` at `t` (ms) as a rule does: a vector (floats and native
    /// histograms), or a scalar as one sample without labels.
    pub fn samples(&self, text: &str, expr: &Expr, t: i64) -> crate::Result<Vec<VecSample>> {
        let r = self
            .engine
            .instant_query(self.db.as_ref(), text, expr, t, None)?;
        match r.value {
            Value::Vector(v) => Ok(v),
            Value::Scalar(v) => Ok(vec![VecSample::new(Labels::empty(), v)]),
            other => Err(Error::ResultType(other.type_name())),
        }
    }

    /// [`EvalContext::samples`] as label sets and float values; a native histogram's
    /// value is 0, as in Prometheus's alerts and templates.
    pub fn query(&self, text: &str, expr: &Expr, t: i64) -> crate::Result<Vec<(Labels, f64)>> {
        Ok(self
            .samples(text, expr, t)?
            .into_iter()
            .map(|s| (s.labels, s.v))
            .collect())
    }

    /// A `query` function for templates, evaluating at `t`.
    fn query_fn(&self, t: i64) -> QueryFn {
        let ctx = self.clone();
        Arc::new(move |q: &str| {
            let expr = lookout_promql::parse(q)?;
            ctx.query(q, &expr, t)
        })
    }
}

/// Applies rule labels: an empty value removes the label.
fn apply_labels(base: &Labels, labels: &BTreeMap<String, String>) -> Labels {
    let mut l = base.clone();
    for (k, v) in labels {
        l = l.with(k, v);
    }
    l
}

/// A recording rule.
#[derive(Debug, Clone)]
pub struct RecordingRule {
    /// The series name written.
    pub name: String,
    /// The expression as written.
    pub expr_text: String,
    expr: Expr,
    /// Labels set on every output series (group labels merged in).
    pub labels: BTreeMap<String, String>,
}

impl RecordingRule {
    /// A rule from parts already validated.
    pub fn new(name: &str, expr: &str, labels: BTreeMap<String, String>) -> crate::Result<Self> {
        Ok(Self {
            name: name.into(),
            expr_text: expr.into(),
            expr: lookout_promql::parse(expr)?,
            labels,
        })
    }

    /// Evaluates at `t` (ms): the series to write (floats and native histograms).
    pub fn eval(&self, ctx: &EvalContext, t: i64, limit: usize) -> crate::Result<Vec<VecSample>> {
        let res = ctx.samples(&self.expr_text, &self.expr, t)?;
        let mut seen = HashSet::with_capacity(res.len());
        let mut out = Vec::with_capacity(res.len());
        for s in res {
            let l = apply_labels(&s.labels.with(METRIC_NAME_LABEL, &self.name), &self.labels);
            if !seen.insert(l.clone()) {
                return Err(Error::DuplicateLabelset("rule"));
            }
            out.push(VecSample { labels: l, ..s });
        }
        if limit > 0 && out.len() > limit {
            return Err(Error::SeriesLimit {
                limit,
                found: out.len(),
            });
        }
        Ok(out)
    }
}

/// Saved state of one alert, for restoring after a restart.
pub type SavedAlerts = Vec<Alert>;

/// An alerting rule and its active alerts.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    /// The alert's name.
    pub name: String,
    /// The expression as written.
    pub expr_text: String,
    expr: Expr,
    /// `for`.
    pub hold: Duration,
    /// `keep_firing_for`.
    pub keep_firing_for: Duration,
    /// Labels (templates), group labels merged in.
    pub labels: BTreeMap<String, String>,
    /// Annotations (templates).
    pub annotations: BTreeMap<String, String>,
    active: HashMap<Labels, Alert>,
    restore: Option<Restore>,
}

#[derive(Debug, Clone)]
struct Restore {
    saved_at: i64,
    policy: RestorePolicy,
    alerts: HashMap<Labels, Alert>,
}

/// How restoring after a restart treats time (Prometheus's `--rules.alert.*` flags).
#[derive(Debug, Clone, Copy)]
pub struct RestorePolicy {
    /// Longest downtime after which state is still restored (Prometheus: 1h).
    pub outage_tolerance: Duration,
    /// Least time a restored pending alert waits before firing (Prometheus: 10m).
    pub for_grace_period: Duration,
}

impl Default for RestorePolicy {
    fn default() -> Self {
        Self {
            outage_tolerance: Duration::from_secs(3600),
            for_grace_period: Duration::from_secs(600),
        }
    }
}

impl AlertingRule {
    /// A rule from parts already validated.
    pub fn new(
        name: &str,
        expr: &str,
        hold: Duration,
        keep_firing_for: Duration,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> crate::Result<Self> {
        Ok(Self {
            name: name.into(),
            expr_text: expr.into(),
            expr: lookout_promql::parse(expr)?,
            hold,
            keep_firing_for,
            labels,
            annotations,
            active: HashMap::new(),
            restore: None,
        })
    }

    /// The alerts now pending, firing or recently resolved, sorted by labels.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.active.values().cloned().collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// The rule's state: the highest state among its alerts.
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// Takes over the alerts of an earlier copy of this rule (on reload).
    pub fn take_state(&mut self, old: &AlertingRule) {
        self.active = old.active.clone();
    }

    /// Arranges for the next evaluation to restore `saved` alerts, last evaluated at
    /// `saved_at` (ms), under `policy`.
    pub fn restore_from(&mut self, saved: SavedAlerts, saved_at: i64, policy: RestorePolicy) {
        self.restore = Some(Restore {
            saved_at,
            policy,
            alerts: saved
                .into_iter()
                .filter(|a| a.state != AlertState::Inactive)
                .map(|a| (a.labels.clone(), a))
                .collect(),
        });
    }

    /// Saved alerts adjusted to a first evaluation at `ts`, as Prometheus restores
    /// `ALERTS_FOR_STATE`: time spent pending before the restart counts, the downtime does
    /// not, and an alert about to fire still waits the grace period.
    fn restored(&self, r: Restore, ts: i64) -> HashMap<Labels, Alert> {
        if r.saved_at < ts - r.policy.outage_tolerance.as_millis() as i64 {
            tracing::info!(alert = %self.name, "Saved alert state is older than the outage tolerance; not restored");
            return HashMap::new();
        }
        let hold = self.hold.as_millis() as i64;
        let grace = r.policy.for_grace_period.as_millis() as i64;
        let mut out = r.alerts;
        for a in out.values_mut() {
            if a.state != AlertState::Pending || hold < grace {
                continue;
            }
            let remaining = hold - (r.saved_at - a.active_at);
            if remaining <= 0 {
                continue;
            }
            if remaining < grace {
                a.active_at = ts + grace - hold;
            } else {
                a.active_at += ts - r.saved_at;
            }
        }
        out
    }

    fn template_data(&self, ctx: &EvalContext, labels: &Labels, value: f64) -> TemplateData {
        TemplateData {
            labels: labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
            external_labels: ctx.external_labels.clone(),
            external_url: ctx.external_url.clone(),
            value,
        }
    }

    /// Evaluates at `ts` (ms), querying at `ts - offset`; returns the `ALERTS` and
    /// `ALERTS_FOR_STATE` samples to write.
    pub fn eval(
        &mut self,
        ctx: &EvalContext,
        ts: i64,
        offset: Duration,
        limit: usize,
    ) -> crate::Result<Vec<(Labels, f64)>> {
        let qt = ts - offset.as_millis() as i64;
        let res = ctx.query(&self.expr_text, &self.expr, qt)?;
        let tmpl_name = format!("__alert_{}", self.name);
        let mut found: HashMap<Labels, Alert> = HashMap::with_capacity(res.len());
        for (series, v) in res {
            let data = self.template_data(ctx, &series, v);
            let expand = |text: &str| {
                template::expand(&tmpl_name, text, &data, Some(ctx.query_fn(qt))).unwrap_or_else(
                    |e| {
                        tracing::warn!(alert = %self.name, error = %e, "Expanding alert template failed");
                        format!("<error expanding template: {e}>")
                    },
                )
            };
            let mut labels = series.without_metric_name();
            for (k, t) in &self.labels {
                labels = labels.with(k, &expand(t));
            }
            labels = labels.with("alertname", &self.name);
            let annotations: BTreeMap<String, String> = self
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), expand(t)))
                .collect();
            if found.contains_key(&labels) {
                return Err(Error::DuplicateLabelset("alert"));
            }
            found.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value: v,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    last_sent_at: None,
                    valid_until: 0,
                    keep_firing_since: None,
                },
            );
        }
        if let Some(r) = self.restore.take() {
            for (l, s) in &self.restored(r, ts) {
                if let Some(a) = found.get_mut(l) {
                    a.active_at = s.active_at;
                    a.fired_at = s.fired_at;
                    // Sent again at once: the notifier's log drops what it already sent,
                    // and a notification pending at the restart is not lost.
                    a.last_sent_at = None;
                    a.valid_until = s.valid_until;
                    if s.state == AlertState::Firing {
                        a.state = AlertState::Firing;
                    }
                } else if s.state == AlertState::Firing && !self.keep_firing_for.is_zero() {
                    // Kept firing before the restart: it goes on doing so here.
                    let mut s = s.clone();
                    s.last_sent_at = None;
                    self.active.insert(l.clone(), s);
                }
            }
        }
        let returned: HashSet<Labels> = found.keys().cloned().collect();
        for (l, a) in found {
            match self.active.get_mut(&l) {
                Some(old) if old.state != AlertState::Inactive => {
                    old.value = a.value;
                    old.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(l, a);
                }
            }
        }
        let hold = self.hold.as_millis() as i64;
        let keep = self.keep_firing_for.as_millis() as i64;
        let mut out = Vec::new();
        let mut active_count = 0;
        let mut remove = Vec::new();
        for (l, a) in &mut self.active {
            if !returned.contains(l) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts - since < keep;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION.as_millis() as i64)
                {
                    remove.push(l.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            active_count += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= hold {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            let base = a.labels.with("alertstate", a.state.as_str());
            out.push((base.with(METRIC_NAME_LABEL, "ALERTS"), 1.0));
            out.push((
                a.labels.with(METRIC_NAME_LABEL, "ALERTS_FOR_STATE"),
                (a.active_at / 1000) as f64,
            ));
        }
        for l in remove {
            self.active.remove(&l);
        }
        if limit > 0 && active_count > limit {
            self.active.clear();
            return Err(Error::AlertLimit {
                limit,
                found: active_count,
            });
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The alerts the notifier should hear about at `ts`, marked as sent. A sent alert
    /// is valid for four times the longer of `resend_delay` and `interval`.
    pub fn alerts_to_send(
        &mut self,
        ts: i64,
        resend_delay: Duration,
        interval: Duration,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        let valid = 4 * resend_delay.max(interval).as_millis() as i64;
        for a in self.active.values_mut() {
            if a.needs_sending(ts, resend_delay) {
                a.last_sent_at = Some(ts);
                a.valid_until = ts + valid;
                out.push(a.clone());
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// A rule of either kind.
#[derive(Debug, Clone)]
pub enum Rule {
    /// A recording rule.
    Recording(RecordingRule),
    /// An alerting rule.
    Alerting(AlertingRule),
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording(r) => &r.name,
            Rule::Alerting(r) => &r.name,
        }
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        match self {
            Rule::Recording(r) => &r.expr_text,
            Rule::Alerting(r) => &r.expr_text,
        }
    }

    /// The rule's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        match self {
            Rule::Recording(r) => &r.labels,
            Rule::Alerting(r) => &r.labels,
        }
    }
}
