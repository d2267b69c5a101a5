//! The notifier's core: the alert store, aggregation groups and their timers, the
//! notification pipeline (inhibition, time intervals, silences, deduplication against
//! the notification log, acknowledgements), and escalation.
//!
//! It is a state machine driven by the caller's clock: [`Core::put_alerts`] takes
//! alerts, [`Core::tick`] returns the notifications due at a time, and
//! [`Core::record`] is told of each successful delivery. Sending (with retries) is the
//! caller's business ([`crate::receivers`]), so the whole pipeline runs under test without
//! sleeping.
//!
//! Grouping and timing are Alertmanager's: a new group waits `group_wait` (or flushes at
//! once if its first alert started longer ago), then flushes every `group_interval`; a
//! flush notifies an integration when its firing set grew, when alerts resolved (with
//! `send_resolved`), or when `repeat_interval` has passed since it was last told. An
//! acknowledged alert stops that repetition until it resolves or the acknowledgement
//! expires; new alerts in its group are still sent.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lookout_model::{Labels, Matcher};
use serde_json::json;

use crate::alert::{Alert, fingerprint_hex};
use crate::audit::Audit;
use crate::config::{Config, Receiver};
use crate::history::{DeliveredAlert, Delivery, History};
use crate::nflog::{self, Entry, NotificationLog};
pub use crate::notification::Notification;
pub use crate::oncall::Ack;
use crate::oncall::{EscState, OnCall};
pub use crate::receivers::Integration;
use crate::route::Route;
use crate::silence::Silences;
use crate::template::Templates;
use crate::timeinterval::TimeInterval;
use crate::{Error, Result};

/// One level of an escalation policy.
#[derive(Debug, Clone)]
pub struct Level {
    /// Receivers (names from the Alertmanager configuration) notified at this level.
    pub receivers: Vec<String>,
    /// How long the level waits for an acknowledgement before the next one is notified.
    pub timeout: Duration,
}

/// An escalation policy: alerts matching `matchers` go through `levels` until
/// acknowledged or resolved.
#[derive(Debug, Clone)]
pub struct EscalationPolicy {
    /// Name, for the audit log.
    pub name: String,
    /// Alerts it applies to (all must match).
    pub matchers: Vec<Matcher>,
    /// Levels, first to last.
    pub levels: Vec<Level>,
}

/// One escalation policy as the escalations page shows it.
#[derive(Debug, Clone)]
pub struct EscalationView {
    /// The policy's name.
    pub name: String,
    /// Its levels.
    pub levels: Vec<Level>,
    /// The alerts going through it, highest level first.
    pub alerts: Vec<EscalatedAlert>,
}

/// An alert under an escalation policy.
#[derive(Debug, Clone)]
pub struct EscalatedAlert {
    /// Its fingerprint (hex).
    pub fingerprint: String,
    /// Its labels.
    pub labels: Labels,
    /// Its level, 1-based.
    pub level: usize,
    /// When it reached that level (ms).
    pub since: i64,
    /// When the next level is due (ms), if one is.
    pub next_due: Option<i64>,
    /// Whether it is acknowledged (which stops escalation).
    pub acknowledged: bool,
}

/// What the notifier is configured with besides the Alertmanager file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The URL notifications link back to (`externalURL`).
    pub external_url: String,
    /// Where the notification log, silences and audit log are kept; `None`: memory only.
    pub data_dir: Option<PathBuf>,
    /// Escalation policies.
    pub escalations: Vec<EscalationPolicy>,
    /// Directory of the Alertmanager configuration (for relative `templates:`).
    pub config_dir: Option<PathBuf>,
    /// How long the notification history keeps deliveries (default
    /// [`crate::history::RETENTION`]).
    pub history_retention: Option<Duration>,
}

/// Most alerts the notifier holds; new ones past it are refused (and counted by the
/// caller), updates of known ones are always taken.
pub const MAX_ALERTS: usize = 100_000;

#[derive(Debug, Clone)]
struct Group {
    key: String,
    receiver: String,
    labels: Labels,
    alerts: BTreeMap<u64, Alert>,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
    mute: Vec<String>,
    active: Vec<String>,
    next_flush: i64,
    flushed: bool,
    /// Notifications of this group's last flushes still being delivered.
    inflight: u32,
    /// Whether one of them failed: resolved alerts then stay until a flush succeeds.
    failed: bool,
}

/// Why an alert is not being notified.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Suppression {
    /// Silences muting it.
    pub silenced_by: Vec<String>,
    /// Fingerprints of the alerts inhibiting it.
    pub inhibited_by: Vec<String>,
}

/// Firing alerts matching an inhibition rule's source side: fingerprints and labels.
type Sources = Vec<(u64, Labels)>;

struct InhibitRule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

/// The notifier's state.
pub struct Core {
    config: Config,
    tree: Route,
    intervals: HashMap<String, Vec<TimeInterval>>,
    receivers: BTreeMap<String, Receiver>,
    inhibit: Vec<InhibitRule>,
    alerts: HashMap<u64, Alert>,
    /// Inhibition sources as of a time; cleared when alerts change.
    sources: Option<(i64, Vec<Sources>)>,
    groups: BTreeMap<String, Group>,
    /// Silences.
    pub silences: Silences,
    nflog: NotificationLog,
    oncall: OnCall,
    /// Escalation pages being delivered, by notification-log key.
    esc_inflight: std::collections::HashSet<String>,
    /// State files that were damaged at start (moved aside, started empty).
    damaged: Vec<String>,
    templates: Arc<Templates>,
    /// The audit log.
    pub audit: Audit,
    /// Every delivery's outcome.
    pub history: History,
    opts: Options,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("alerts", &self.alerts.len())
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

fn sort_alerts(v: &mut [Alert]) {
    v.sort_by(|a, b| {
        for k in ["job", "instance"] {
            match (a.labels.get(k), b.labels.get(k)) {
                (Some(x), Some(y)) if x != y => return x.cmp(y),
                _ => {}
            }
        }
        a.labels.cmp(&b.labels)
    });
}

impl Core {
    /// Reads the Alertmanager configuration at `path` and builds its notifier; returns it
    /// with the file's text (which `/api/v2/status` shows). Errors name the file.
    pub fn from_file(path: &std::path::Path, opts: Options) -> Result<(Self, String)> {
        let named = |e: Error| Error::Config(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        let core = Self::new(Config::parse(&text).map_err(named)?, opts).map_err(named)?;
        Ok((core, text))
    }

    /// A notifier for a validated configuration. Fails on receivers it cannot send to,
    /// escalation levels naming unknown receivers, or unreadable state files.
    pub fn new(config: Config, opts: Options) -> Result<Self> {
        let unsupported = config.unsupported();
        if !unsupported.is_empty() {
            return Err(Error::Config(format!(
                "receiver integrations not supported yet: {} (remove them to start; nothing is dropped silently)",
                unsupported.join(", ")
            )));
        }
        for r in &config.receivers {
            let ignored: Vec<&String> = r
                .slack_configs
                .iter()
                .flat_map(|c| c.other.keys())
                .chain(r.pagerduty_configs.iter().flat_map(|c| c.other.keys()))
                .collect();
            if !ignored.is_empty() {
                tracing::warn!(receiver = %r.name, options = ?ignored, "Receiver options Lookout does not send yet are left out of its messages");
            }
        }
        let tree = Route::tree(&config)?;
        let receivers: BTreeMap<String, Receiver> = config
            .receivers
            .iter()
            .map(|r| (r.name.clone(), r.clone()))
            .collect();
        for p in &opts.escalations {
            if p.levels.is_empty() {
                return Err(Error::Config(format!(
                    "escalation {:?} has no levels",
                    p.name
                )));
            }
            for l in &p.levels {
                for r in &l.receivers {
                    if !receivers.contains_key(r) {
                        return Err(Error::Config(format!(
                            "escalation {:?}: undefined receiver {r:?}",
                            p.name
                        )));
                    }
                }
            }
        }
        let intervals = config
            .intervals()
            .map(|n| (n.name.clone(), n.time_intervals.clone()))
            .collect();
        let inhibit = config
            .inhibit_rules
            .iter()
            .map(|r| {
                let (source, target) = r.all_matchers()?;
                Ok(InhibitRule {
                    source,
                    target,
                    equal: r.equal.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let templates = Arc::new(Templates::load(
            &config.templates,
            opts.config_dir.as_deref(),
        )?);
        let file = |n: &str| opts.data_dir.as_ref().map(|d| d.join(n));
        let mut damaged = Vec::new();
        let silences = open_or_set_aside(file("silences.json"), &mut damaged, Silences::open)?;
        let nflog = open_or_set_aside(file("nflog.json"), &mut damaged, NotificationLog::open)?;
        let oncall = open_or_set_aside(file("oncall.json"), &mut damaged, OnCall::open)?;
        Ok(Self {
            silences,
            nflog,
            oncall,
            esc_inflight: Default::default(),
            damaged,
            audit: Audit::new(file("audit.log")),
            history: History::open(
                file("notifications.log"),
                opts.history_retention.unwrap_or(crate::history::RETENTION),
                lookout_model::now_ms(),
            ),
            config,
            tree,
            intervals,
            receivers,
            inhibit,
            alerts: HashMap::new(),
            sources: None,
            groups: BTreeMap::new(),
            templates,
            opts,
        })
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// State files found damaged at start: each was moved aside and started empty.
    pub fn damaged_state(&self) -> &[String] {
        &self.damaged
    }

    /// Takes alerts (from rules or the API) at `now` (ms). An alert without `endsAt`
    /// stays firing for `resolve_timeout` after it was last received. Returns how many
    /// new alerts were refused because [`MAX_ALERTS`] are held already.
    pub fn put_alerts(&mut self, alerts: Vec<Alert>, now: i64) -> usize {
        self.sources = None;
        let timeout = self.config.global.resolve_timeout.0.as_millis() as i64;
        let mut refused = 0;
        for mut a in alerts {
            if a.starts_at == 0 {
                a.starts_at = now;
            }
            if a.ends_at == 0 {
                a.ends_at = now + timeout;
            }
            a.updated_at = now;
            let fp = a.fingerprint();
            if self.alerts.len() >= MAX_ALERTS && !self.alerts.contains_key(&fp) {
                refused += 1;
                continue;
            }
            match self.alerts.get_mut(&fp) {
                Some(old) if !old.resolved_at(now) || a.resolved_at(now) => old.merge(a),
                _ => {
                    self.alerts.insert(fp, a);
                }
            }
            let a = self.alerts[&fp].clone();
            for r in self.tree.matching(&a.labels) {
                let labels = r.group_labels(&a.labels);
                let key = format!("{}:{}", r.key, go_labelset(&labels));
                let g = self
                    .groups
                    .entry(format!("{key}\u{0}{}", r.receiver))
                    .or_insert_with(|| Group {
                        key: key.clone(),
                        receiver: r.receiver.clone(),
                        labels: labels.clone(),
                        alerts: BTreeMap::new(),
                        group_wait: r.group_wait,
                        group_interval: r.group_interval,
                        repeat_interval: r.repeat_interval,
                        mute: r.mute_time_intervals.clone(),
                        active: r.active_time_intervals.clone(),
                        next_flush: now + r.group_wait.as_millis() as i64,
                        flushed: false,
                        inflight: 0,
                        failed: false,
                    });
                if !g.flushed && a.starts_at + (g.group_wait.as_millis() as i64) < now {
                    g.next_flush = g.next_flush.min(now);
                }
                g.alerts.insert(fp, a.clone());
            }
        }
        if refused > 0 {
            tracing::warn!(
                refused,
                limit = MAX_ALERTS,
                "Notifier holds the most alerts it may; new alerts refused"
            );
        }
        refused
    }

    /// How many alerts the notifier holds.
    pub fn alert_count(&self) -> usize {
        self.alerts.len()
    }

    /// Every alert the notifier knows of.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.alerts.values().cloned().collect();
        sort_alerts(&mut v);
        v
    }

    /// Why an alert is suppressed at `now` (empty when it is not).
    pub fn suppression(&mut self, a: &Alert, now: i64) -> Suppression {
        let fp = a.fingerprint();
        Suppression {
            silenced_by: self.silences.mutes(&a.labels, fp, now),
            inhibited_by: self.inhibited_by(a, now),
        }
    }

    /// Per inhibition rule, the firing alerts matching its source side at `now`,
    /// computed once per time and alert set.
    fn inhibit_sources(&mut self, now: i64) -> &[Sources] {
        if self.sources.as_ref().is_none_or(|(t, _)| *t != now) {
            let per_rule = self
                .inhibit
                .iter()
                .map(|r| {
                    self.alerts
                        .iter()
                        .filter(|(_, s)| {
                            !s.resolved_at(now)
                                && r.source.iter().all(|m| m.matches_labels(&s.labels))
                        })
                        .map(|(fp, s)| (*fp, s.labels.clone()))
                        .collect()
                })
                .collect();
            self.sources = Some((now, per_rule));
        }
        &self.sources.as_ref().expect("just computed").1
    }

    fn inhibited_by(&mut self, t: &Alert, now: i64) -> Vec<String> {
        let tfp = t.fingerprint();
        let targets: Vec<bool> = self
            .inhibit
            .iter()
            .map(|r| r.target.iter().all(|m| m.matches_labels(&t.labels)))
            .collect();
        if !targets.contains(&true) {
            return Vec::new();
        }
        let equal: Vec<Vec<String>> = self.inhibit.iter().map(|r| r.equal.clone()).collect();
        let sources = self.inhibit_sources(now);
        let mut out = Vec::new();
        for (i, srcs) in sources.iter().enumerate() {
            if !targets[i] {
                continue;
            }
            for (fp, labels) in srcs {
                if *fp != tfp
                    && equal[i]
                        .iter()
                        .all(|l| labels.get_or_empty(l) == t.labels.get_or_empty(l))
                {
                    out.push(fingerprint_hex(*fp));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn muted(&mut self, a: &Alert, now: i64) -> bool {
        let s = self.suppression(a, now);
        !s.silenced_by.is_empty() || !s.inhibited_by.is_empty()
    }

    fn time_muted(&self, g: &Group, now: i64) -> bool {
        let any = |names: &[String]| {
            names.iter().any(|n| {
                self.intervals
                    .get(n)
                    .is_some_and(|ts| ts.iter().any(|t| t.contains(now)))
            })
        };
        any(&g.mute) || (!g.active.is_empty() && !any(&g.active))
    }

    /// Whether `fp` is acknowledged at `now`.
    pub fn acked(&self, fp: u64, now: i64) -> Option<&Ack> {
        self.oncall
            .acks
            .get(&fp)
            .filter(|a| a.expires_at.is_none_or(|e| e > now))
    }

    /// Acknowledges a firing alert.
    pub fn ack(
        &mut self,
        fp: u64,
        who: &str,
        comment: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<()> {
        let a = self
            .alerts
            .get(&fp)
            .filter(|a| !a.resolved_at(now))
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no firing alert with fingerprint {}",
                    fingerprint_hex(fp)
                ))
            })?;
        if who.trim().is_empty() {
            return Err(Error::Invalid("an acknowledgement needs a who".into()));
        }
        if expires_at.is_some_and(|e| e <= now) {
            return Err(Error::Invalid(
                "the acknowledgement's expiry is in the past".into(),
            ));
        }
        let labels = json!(a.labels);
        let before = self.oncall.acks.insert(
            fp,
            Ack {
                who: who.into(),
                comment: comment.into(),
                at: now,
                expires_at,
            },
        );
        if let Err(e) = self.oncall.save() {
            // Not kept: memory and disk agree, and the caller hears why.
            match before {
                Some(b) => self.oncall.acks.insert(fp, b),
                None => self.oncall.acks.remove(&fp),
            };
            return Err(e);
        }
        self.audit.record(
            now,
            "ack",
            who,
            json!({
                "fingerprint": fingerprint_hex(fp),
                "labels": labels,
                "comment": comment,
                "expiresAt": expires_at.map(crate::alert::go_time),
            }),
        );
        Ok(())
    }

    /// Withdraws an acknowledgement.
    pub fn unack(&mut self, fp: u64, who: &str, now: i64) -> Result<()> {
        let old = self.oncall.acks.remove(&fp).ok_or_else(|| {
            Error::NotFound(format!("alert {} is not acknowledged", fingerprint_hex(fp)))
        })?;
        if let Err(e) = self.oncall.save() {
            self.oncall.acks.insert(fp, old);
            return Err(e);
        }
        self.audit.record(
            now,
            "unack",
            who,
            json!({ "fingerprint": fingerprint_hex(fp) }),
        );
        Ok(())
    }

    fn integrations(&self, receiver: &str) -> Vec<(String, Integration)> {
        let Some(r) = self.receivers.get(receiver) else {
            return Vec::new();
        };
        let g = &self.config.global;
        let mut out: Vec<(String, Integration)> = Vec::new();
        for (i, w) in r.webhook_configs.iter().enumerate() {
            out.push((format!("webhook/{i}"), Integration::Webhook(w.clone())));
        }
        for (i, s) in r.slack_configs.iter().enumerate() {
            out.push((format!("slack/{i}"), Integration::Slack(s.with_defaults(g))));
        }
        for (i, p) in r.pagerduty_configs.iter().enumerate() {
            let p = p.with_defaults(g);
            out.push((format!("pagerduty/{i}"), Integration::Pagerduty(p)));
        }
        for (i, e) in r.email_configs.iter().enumerate() {
            let e = Box::new(e.with_defaults(g));
            out.push((format!("email/{i}"), Integration::Email(e)));
        }
        out
    }

    /// The notifications due at `now`.
    pub fn tick(&mut self, now: i64) -> Vec<Notification> {
        let mut out = Vec::new();
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            let Some(mut g) = self.groups.remove(&id) else {
                continue;
            };
            g.next_flush = now + g.group_interval.as_millis() as i64;
            g.flushed = true;
            if g.inflight == 0 {
                g.failed = false;
            }
            let before = out.len();
            self.flush(&g, now, &mut out);
            for n in &mut out[before..] {
                n.group_id = Some(id.clone());
            }
            g.inflight += (out.len() - before) as u32;
            // As Alertmanager: resolved alerts leave the group only once a flush that
            // carried them was delivered everywhere (see `record`); with nothing to send,
            // at once.
            if g.inflight == 0 && !g.failed {
                g.alerts.retain(|_, a| !a.resolved_at(now));
            }
            if !g.alerts.is_empty() {
                self.groups.insert(id, g);
            }
        }
        self.escalate(now, &mut out);
        // Acknowledgements end with their alert (an alert not seen since a restart keeps
        // its acknowledgement for a grace period, while the rules catch up).
        let firing: std::collections::HashSet<u64> = self
            .alerts
            .iter()
            .filter(|(_, a)| !a.resolved_at(now))
            .map(|(fp, _)| *fp)
            .collect();
        let grace = self.oncall.in_grace(now);
        let alerts = &self.alerts;
        let acks = self.oncall.acks.len();
        self.oncall
            .acks
            .retain(|fp, _| firing.contains(fp) || (grace && !alerts.contains_key(fp)));
        if self.oncall.acks.len() != acks {
            let _ = self.oncall.save();
        }
        for id in self
            .silences
            .expire_resolved(|fp| firing.contains(&fp), now)
        {
            self.audit.record(
                now,
                "silence_expire",
                "lookout",
                json!({ "id": id, "reason": "the alerts it silenced resolved" }),
            );
        }
        // Resolved alerts are forgotten once no group holds them.
        let held: std::collections::HashSet<u64> = self
            .groups
            .values()
            .flat_map(|g| g.alerts.keys().copied())
            .collect();
        self.alerts
            .retain(|fp, a| !a.resolved_at(now) || held.contains(fp));
        out
    }

    fn flush(&mut self, g: &Group, now: i64, out: &mut Vec<Notification>) {
        if self.time_muted(g, now) {
            return;
        }
        let mut alerts: Vec<Alert> = Vec::new();
        for a in g.alerts.values() {
            if !self.muted(a, now) {
                alerts.push(a.clone());
            }
        }
        sort_alerts(&mut alerts);
        let mut firing: Vec<u64> = alerts
            .iter()
            .filter(|a| !a.resolved_at(now))
            .map(Alert::fingerprint)
            .collect();
        let mut resolved: Vec<u64> = alerts
            .iter()
            .filter(|a| a.resolved_at(now))
            .map(Alert::fingerprint)
            .collect();
        firing.sort_unstable();
        resolved.sort_unstable();
        for (name, integ) in self.integrations(&g.receiver) {
            let key = nflog::key(&g.key, &g.receiver, &name);
            let entry = self.nflog.get(&key);
            let send_resolved = integ.send_resolved();
            let needs = match entry {
                None => !firing.is_empty(),
                Some(e) if !e.firing_subset(&firing) => true,
                Some(e) if firing.is_empty() => !e.firing.is_empty(),
                Some(e) if send_resolved && !e.resolved_subset(&resolved) => true,
                Some(e) => {
                    // Only the repeat interval is left: acknowledged alerts do not repeat.
                    let all_acked = firing.iter().all(|fp| self.acked(*fp, now).is_some());
                    !all_acked && e.at + (g.repeat_interval.as_millis() as i64) <= now
                }
            };
            if !needs {
                continue;
            }
            let to_send: Vec<Alert> = alerts
                .iter()
                .filter(|a| send_resolved || !a.resolved_at(now))
                .cloned()
                .collect();
            let log = Entry {
                firing: firing.clone(),
                resolved: resolved.clone(),
                at: now,
            };
            if to_send.is_empty() {
                self.nflog.record(key, log);
                continue;
            }
            out.push(Notification {
                receiver: g.receiver.clone(),
                integration: integ,
                group_key: g.key.clone(),
                group_labels: g.labels.clone(),
                alerts: to_send,
                now,
                retry_for: g.group_interval,
                templates: Arc::clone(&self.templates),
                log: Some((key, log)),
                group_id: None,
            });
        }
    }

    fn escalate(&mut self, now: i64, out: &mut Vec<Notification>) {
        let policies = self.opts.escalations.clone();
        let mut alive: std::collections::HashSet<(String, u64)> = Default::default();
        let mut changed = false;
        let current: Vec<Alert> = self.alerts.values().cloned().collect();
        for p in &policies {
            for a in &current {
                if a.resolved_at(now) || !p.matchers.iter().all(|m| m.matches_labels(&a.labels)) {
                    continue;
                }
                if self.muted(a, now) {
                    continue;
                }
                let fp = a.fingerprint();
                let k = (p.name.clone(), fp);
                alive.insert(k.clone());
                let acked = self.acked(fp, now).is_some();
                let st = match self.oncall.escalation.get(&k).cloned() {
                    None => {
                        changed = true;
                        let st = EscState {
                            level: 0,
                            since: now,
                        };
                        self.oncall.escalation.insert(k.clone(), st.clone());
                        st
                    }
                    Some(s)
                        if !acked
                            && s.level + 1 < p.levels.len()
                            && now - s.since >= p.levels[s.level].timeout.as_millis() as i64 =>
                    {
                        let next = s.level + 1;
                        changed = true;
                        let st = EscState {
                            level: next,
                            since: now,
                        };
                        self.oncall.escalation.insert(k.clone(), st.clone());
                        self.audit.record(
                            now,
                            "escalate",
                            "lookout",
                            json!({
                                "policy": p.name,
                                "fingerprint": fingerprint_hex(fp),
                                "labels": json!(a.labels),
                                "level": next + 1,
                                "receivers": p.levels[next].receivers,
                                "reason": format!("not acknowledged within {}", lookout_model::format_duration(p.levels[s.level].timeout)),
                            }),
                        );
                        st
                    }
                    Some(s) => s,
                };
                if acked {
                    continue;
                }
                // The level's page goes to each of its integrations until delivered (in
                // the notification log since the level began), retried as long as the
                // level is due, so a receiver down for minutes still gets it.
                let group_key = format!("escalation/{}:{}", p.name, fingerprint_hex(fp));
                for r in &p.levels[st.level].receivers {
                    for (name, integ) in self.integrations(r) {
                        let key =
                            nflog::key(&group_key, r, &format!("{name}@level{}", st.level + 1));
                        let delivered = self.nflog.get(&key).is_some_and(|e| e.at >= st.since);
                        if delivered || self.esc_inflight.contains(&key) {
                            continue;
                        }
                        self.esc_inflight.insert(key.clone());
                        out.push(Notification {
                            receiver: r.clone(),
                            integration: integ,
                            group_key: group_key.clone(),
                            group_labels: a.labels.clone(),
                            alerts: vec![a.clone()],
                            now,
                            retry_for: Duration::from_secs(60),
                            templates: Arc::clone(&self.templates),
                            log: Some((
                                key,
                                Entry {
                                    firing: vec![fp],
                                    resolved: Vec::new(),
                                    at: now,
                                },
                            )),
                            group_id: None,
                        });
                    }
                }
            }
        }
        let grace = self.oncall.in_grace(now);
        let alerts = &self.alerts;
        let before = self.oncall.escalation.len();
        self.oncall
            .escalation
            .retain(|k, _| alive.contains(k) || (grace && !alerts.contains_key(&k.1)));
        if changed || before != self.oncall.escalation.len() {
            let _ = self.oncall.save();
        }
    }

    /// Takes over what an earlier notifier knew (on reload): its alerts (grouped again
    /// under the new routes; the notification log keeps receivers from hearing twice),
    /// acknowledgements, and escalation levels of policies that kept their name.
    pub fn take_state(&mut self, old: &mut Core, now: i64) {
        self.history.take(&mut old.history);
        self.oncall.acks = std::mem::take(&mut old.oncall.acks);
        for ((name, fp), st) in std::mem::take(&mut old.oncall.escalation) {
            if self.opts.escalations.iter().any(|p| p.name == name) {
                self.oncall.escalation.insert((name, fp), st);
            }
        }
        self.esc_inflight = std::mem::take(&mut old.esc_inflight);
        let _ = self.oncall.save();
        self.audit.recent = std::mem::take(&mut old.audit.recent);
        let alerts: Vec<Alert> = std::mem::take(&mut old.alerts).into_values().collect();
        self.put_alerts(alerts, now);
    }

    /// The escalation level (1-based) an alert has reached under each policy.
    pub fn escalation_levels(&self, fp: u64) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = self
            .oncall
            .escalation
            .iter()
            .filter(|((_, f), _)| *f == fp)
            .map(|((name, _), s)| (name.clone(), s.level + 1))
            .collect();
        v.sort();
        v
    }

    /// Each escalation policy with its levels and the alerts under it: their level, since
    /// when, and when the next level is due (none at the last level or while the alert is
    /// acknowledged).
    pub fn escalations(&self, now: i64) -> Vec<EscalationView> {
        self.opts
            .escalations
            .iter()
            .map(|p| {
                let mut alerts: Vec<EscalatedAlert> = self
                    .oncall
                    .escalation
                    .iter()
                    .filter(|((name, _), _)| *name == p.name)
                    .filter_map(|((_, fp), st)| {
                        let a = self.alerts.get(fp)?;
                        let acknowledged = self.acked(*fp, now).is_some();
                        let next_due = (!acknowledged && st.level + 1 < p.levels.len())
                            .then(|| st.since + p.levels[st.level].timeout.as_millis() as i64);
                        Some(EscalatedAlert {
                            fingerprint: fingerprint_hex(*fp),
                            labels: a.labels.clone(),
                            level: st.level + 1,
                            since: st.since,
                            next_due,
                            acknowledged,
                        })
                    })
                    .collect();
                alerts.sort_by(|a, b| b.level.cmp(&a.level).then(a.since.cmp(&b.since)));
                EscalationView {
                    name: p.name.clone(),
                    levels: p.levels.clone(),
                    alerts,
                }
            })
            .collect()
    }

    /// Records how a delivery ended (`error` when it failed after its retries) in the
    /// notification history.
    pub fn log_delivery(&mut self, n: &Notification, now: i64, error: Option<String>) {
        let alerts = n
            .alerts
            .iter()
            .map(|a| DeliveredAlert {
                alertname: a.labels.get_or_empty("alertname").to_string(),
                fingerprint: fingerprint_hex(a.fingerprint()),
                status: a.status(n.now).to_string(),
                labels: a
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect(),
            })
            .collect::<Vec<_>>();
        let firing = alerts.iter().any(|a| a.status == "firing");
        self.history.record(
            Delivery {
                time: crate::alert::go_time(now),
                time_ms: now,
                receiver: n.receiver.clone(),
                integration: n.integration.kind().to_string(),
                kind: if n.group_id.is_some() {
                    "notification"
                } else {
                    "escalation"
                }
                .into(),
                group_key: n.group_key.clone(),
                status: if firing { "firing" } else { "resolved" }.into(),
                alerts,
                result: if error.is_some() { "failed" } else { "sent" }.into(),
                error,
            },
            now,
        );
    }

    /// Records a delivered notification in the notification log. When it was the last
    /// one of its group's flush and none failed, the alerts that flush carried as
    /// resolved leave the group.
    pub fn record(&mut self, n: &Notification) {
        if let Some((k, e)) = &n.log {
            self.nflog.record(k.clone(), e.clone());
            self.esc_inflight.remove(k);
        }
        self.delivery_done(n, true);
    }

    /// Tells the core a notification failed after every retry: its group keeps its
    /// resolved alerts for the next flush, an escalation page is sent again next tick.
    pub fn failed(&mut self, n: &Notification) {
        if let Some((k, _)) = &n.log {
            self.esc_inflight.remove(k);
        }
        self.delivery_done(n, false);
    }

    fn delivery_done(&mut self, n: &Notification, ok: bool) {
        let Some(id) = &n.group_id else { return };
        let Some(g) = self.groups.get_mut(id) else {
            return;
        };
        g.inflight = g.inflight.saturating_sub(1);
        g.failed |= !ok;
        if g.inflight == 0 && !g.failed {
            let at = n.now;
            g.alerts
                .retain(|_, a| !(a.resolved_at(at) && a.updated_at <= at));
            if g.alerts.is_empty() {
                self.groups.remove(id);
            }
        }
    }

    /// Drops notification-log entries and expired silences older than five days.
    pub fn gc(&mut self, now: i64) {
        const RETENTION: i64 = 5 * 86_400_000;
        self.nflog.gc(now, RETENTION);
        self.silences.gc(now, RETENTION);
    }

    /// The aggregation groups: (receiver, group labels, alerts), sorted.
    pub fn groups(&self) -> Vec<(String, Labels, Vec<Alert>)> {
        let mut out: Vec<(String, Labels, Vec<Alert>)> = self
            .groups
            .values()
            .map(|g| {
                let mut a: Vec<Alert> = g.alerts.values().cloned().collect();
                sort_alerts(&mut a);
                (g.receiver.clone(), g.labels.clone(), a)
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// Receiver names.
    pub fn receiver_names(&self) -> Vec<String> {
        self.receivers.keys().cloned().collect()
    }

    /// Receivers an alert is routed to.
    pub fn receivers_of(&self, l: &Labels) -> Vec<String> {
        let mut v: Vec<String> = self
            .tree
            .matching(l)
            .iter()
            .map(|r| r.receiver.clone())
            .collect();
        v.dedup();
        v
    }

    /// Integration kind names of a receiver, for status output.
    pub fn integration_kinds(&self, receiver: &str) -> Vec<&'static str> {
        self.integrations(receiver)
            .iter()
            .map(|(_, i)| i.kind())
            .collect()
    }
}

/// Opens a state file with `open`; a file that does not parse is moved aside (to
/// `<name>.damaged`) and an empty state opened in its place, noted in `damaged`, so a bad
/// file never stops the notifier. Only an unreadable directory is an error.
fn open_or_set_aside<T>(
    path: Option<PathBuf>,
    damaged: &mut Vec<String>,
    open: impl Fn(Option<PathBuf>) -> Result<T>,
) -> Result<T> {
    match open(path.clone()) {
        Ok(t) => Ok(t),
        Err(e) => {
            let Some(p) = path.filter(|p| p.is_file()) else {
                return Err(e);
            };
            let aside = p.with_extension("damaged");
            std::fs::rename(&p, &aside).map_err(|re| Error::StateFile {
                path: p.clone(),
                message: format!("{e} (and moving it aside: {re})"),
            })?;
            tracing::error!(file = %p.display(), moved_to = %aside.display(), error = %e, "Notifier state file is damaged; moved it aside and started without it");
            damaged.push(format!("{e}; moved to {}", aside.display()));
            open(Some(p))
        }
    }
}

/// A label set as Go's `model.LabelSet.String()` prints it: `{a="b", c="d"}`.
pub fn go_labelset(l: &Labels) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}
