//! The rule manager: loads the rule files, evaluates every group on its own interval,
//! reloads on request or when a file changes, keeps alert state across restarts and
//! hands alerts to a notifier.
//!
//! - **Loading** expands `rule_files` patterns (relative to the config file's directory),
//!   reads and validates every file; any error keeps the rules already running and is
//!   reported by [`Manager::reload_status`]. Groups that survive a reload (same file and
//!   name) keep their alerts, so a reload never resets a `for` clock.
//! - **Running**: one task per group, evaluating at a fixed offset within its interval
//!   (derived from the group's identity, as Prometheus spreads groups), on the blocking
//!   pool since evaluation is CPU-bound. One slow group never delays another.
//! - **State**: after each evaluation the alerts of every group are written to a state
//!   file (JSON, replaced atomically). On start they are restored with Prometheus's
//!   rules: a pending alert's time spent pending before the restart counts, the downtime
//!   does not, and an alert close to firing waits at least the grace period; state older
//!   than the outage tolerance is dropped. Firing alerts held by `keep_firing_for` stay
//!   firing. The file is written at most every five seconds while rules run, and when
//!   the manager stops.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use lookout_storage::Appendable;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::file;
use crate::group::{Group, rule_key};
use crate::rule::{Alert, EvalContext, Health, RestorePolicy};

/// The least time between two writes of the alert state file when an alert changed
/// state (it is also written when the manager stops).
pub const STATE_WRITE_INTERVAL: Duration = Duration::from_secs(5);

/// How stale the state file's evaluation times may grow when no alert changed state: the
/// file is rewritten (with an fsync) only this often then, not after every evaluation.
pub const STATE_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Receives the alerts to notify about after each evaluation (firing ones again every
/// resend delay, resolved ones while they are retained).
pub trait AlertSink: Send + Sync {
    /// Takes the alerts of one group's evaluation, each with its rule's expression.
    fn send(&self, alerts: Vec<(Alert, String)>);
}

/// What the manager runs.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// `rule_files` patterns.
    pub files: Vec<String>,
    /// Built-in rule packs to run besides the files (see [`crate::packs`]).
    pub packs: Vec<crate::packs::Pack>,
    /// Directory relative patterns are resolved against (the config file's).
    pub base_dir: Option<PathBuf>,
    /// Interval of groups that name none (`global.evaluation_interval`).
    pub default_interval: Duration,
    /// Where alert state is kept between runs; `None`: not kept.
    pub state_file: Option<PathBuf>,
    /// How often a firing alert is re-sent (Prometheus: 1m).
    pub resend_delay: Duration,
    /// How restoring treats downtime.
    pub restore: RestorePolicy,
    /// How often rule files are checked for changes; `None`: never.
    pub watch_interval: Option<Duration>,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            files: Vec::new(),
            packs: Vec::new(),
            base_dir: None,
            default_interval: Duration::from_secs(60),
            state_file: None,
            resend_delay: Duration::from_secs(60),
            restore: RestorePolicy::default(),
            watch_interval: Some(Duration::from_secs(5)),
        }
    }
}

/// The outcome of the last (re)load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReloadStatus {
    /// Whether it succeeded.
    pub success: bool,
    /// Its errors, one per problem.
    pub errors: Vec<String>,
    /// When it happened (ms).
    pub at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedGroup {
    last_evaluation: i64,
    rules: BTreeMap<String, Vec<Alert>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    groups: BTreeMap<String, SavedGroup>,
}

/// Whether two groups' saved alerts are the same alerts in the same states, whatever
/// their values, annotations and sending times (which change at every evaluation and are
/// refreshed on disk every [`STATE_REFRESH_INTERVAL`]).
fn same_alerts(a: &BTreeMap<String, Vec<Alert>>, b: &BTreeMap<String, Vec<Alert>>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
            ka == kb
                && va.len() == vb.len()
                && va.iter().zip(vb).all(|(x, y)| {
                    x.labels == y.labels
                        && x.state == y.state
                        && x.active_at == y.active_at
                        && x.fired_at == y.fired_at
                        && x.resolved_at == y.resolved_at
                        && x.keep_firing_since == y.keep_firing_since
                })
        })
}

type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// Loads and runs rule groups.
pub struct Manager {
    opts: ManagerOptions,
    ctx: EvalContext,
    out: Arc<dyn Appendable>,
    sink: Option<Arc<dyn AlertSink>>,
    groups: RwLock<Vec<Arc<Mutex<Group>>>>,
    status: Mutex<ReloadStatus>,
    fingerprint: Mutex<Fingerprint>,
    saved: Mutex<StateFile>,
    /// The state differs from the file (if only in evaluation times or values).
    dirty: AtomicBool,
    /// An alert changed state since the file was written ([`same_alerts`]).
    urgent: AtomicBool,
    last_write: AtomicI64,
    generation: watch::Sender<u64>,
    /// Metric names whose series just changed state, numbered (see [`Manager::kick`]).
    kicks: watch::Sender<(u64, Vec<String>)>,
}

/// How long a kicked group waits for more changes before it evaluates (a collector
/// going down changes several series within moments).
const KICK_DEBOUNCE: Duration = Duration::from_millis(200);

/// Whether a group whose rules select `selectors` reads any of `names`: a selector reads
/// a name its `__name__` matchers accept (a selector without one may read any).
fn reads_any(selectors: &[Vec<lookout_model::Matcher>], names: &[String]) -> bool {
    selectors.iter().any(|sel| {
        let by_name: Vec<&lookout_model::Matcher> =
            sel.iter().filter(|m| m.name == "__name__").collect();
        by_name.is_empty() || names.iter().any(|n| by_name.iter().all(|m| m.matches(n)))
    })
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok();
            (
                p.clone(),
                m.as_ref().and_then(|m| m.modified().ok()),
                m.map_or(0, |m| m.len()),
            )
        })
        .collect()
}

/// A stable offset in `[0, interval)` for a group, so groups do not all run at once.
fn offset(key: &str, interval: Duration) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let iv = interval.as_millis().max(1) as u64;
    (h % iv) as i64
}

impl Manager {
    /// A manager evaluating through `ctx` and writing to `out`; call [`Manager::reload`]
    /// to load the files.
    pub fn new(
        opts: ManagerOptions,
        ctx: EvalContext,
        out: Arc<dyn Appendable>,
        sink: Option<Arc<dyn AlertSink>>,
    ) -> Self {
        let saved = opts
            .state_file
            .as_deref()
            .and_then(|p| match std::fs::read(p) {
                Ok(b) => match serde_json::from_slice::<StateFile>(&b) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "Alert state file is unreadable; starting without it");
                        None
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "Cannot read the alert state file");
                    None
                }
            })
            .unwrap_or_default();
        Self {
            opts,
            ctx,
            out,
            sink,
            groups: RwLock::new(Vec::new()),
            status: Mutex::new(ReloadStatus::default()),
            fingerprint: Mutex::new(Vec::new()),
            saved: Mutex::new(saved),
            dirty: AtomicBool::new(false),
            urgent: AtomicBool::new(false),
            last_write: AtomicI64::new(0),
            generation: watch::channel(0).0,
            kicks: watch::channel((0, Vec::new())).0,
        }
    }

    /// Reads the rule files again. On any error the running rules stay as they are and the
    /// errors are returned (and kept for [`Manager::reload_status`]).
    pub fn reload(&self, now: i64) -> Result<(), Vec<String>> {
        let res = self.load();
        let mut st = self.status.lock().expect("lock");
        *st = ReloadStatus {
            success: res.is_ok(),
            errors: res.clone().err().unwrap_or_default(),
            at: now,
        };
        match &res {
            Ok(()) => tracing::info!(
                groups = self.groups.read().expect("lock").len(),
                "Rules loaded"
            ),
            Err(errs) => {
                for e in errs {
                    tracing::error!(error = %e, "Rule files not loaded; the previous rules keep running");
                }
            }
        }
        res
    }

    fn load(&self) -> Result<(), Vec<String>> {
        let paths = file::expand_patterns(&self.opts.files, self.opts.base_dir.as_deref())
            .map_err(|e| vec![e.to_string()])?;
        *self.fingerprint.lock().expect("lock") = fingerprint(&paths);
        let mut errs = Vec::new();
        let mut new = Vec::new();
        for pack in &self.opts.packs {
            let path = PathBuf::from(crate::packs::display_path(pack.name));
            let f = file::parse_text(pack.text, false).map_err(|e| vec![e.to_string()])?;
            for g in &f.groups {
                match Group::from_spec(g, &path, self.opts.default_interval) {
                    Ok(g) => new.push(g),
                    Err(e) => errs.push(format!("{}: {e}", path.display())),
                }
            }
        }
        for p in &paths {
            match file::load_file(p, false) {
                Ok(l) => {
                    for g in &l.file.groups {
                        match Group::from_spec(g, p, self.opts.default_interval) {
                            Ok(g) => new.push(g),
                            Err(e) => errs.push(format!("{}: {e}", p.display())),
                        }
                    }
                }
                Err(e) => errs.extend(e),
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut groups = self.groups.write().expect("lock");
        let first_load = groups.is_empty();
        let old: HashMap<String, Arc<Mutex<Group>>> = groups
            .iter()
            .map(|g| (g.lock().expect("lock").key(), Arc::clone(g)))
            .collect();
        let saved = self.saved.lock().expect("lock");
        for g in &mut new {
            if let Some(o) = old.get(&g.key()) {
                g.take_state(&o.lock().expect("lock"));
            } else if first_load && let Some(s) = saved.groups.get(&g.key()) {
                for r in g.alerting_rules_mut() {
                    if let Some(alerts) = s.rules.get(&rule_key(r)) {
                        r.restore_from(alerts.clone(), s.last_evaluation, self.opts.restore);
                    }
                }
            }
        }
        drop(saved);
        *groups = new.into_iter().map(|g| Arc::new(Mutex::new(g))).collect();
        drop(groups);
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// The outcome of the last (re)load.
    pub fn reload_status(&self) -> ReloadStatus {
        self.status.lock().expect("lock").clone()
    }

    /// A copy of every group as it stands, in load order.
    pub fn groups(&self) -> Vec<Group> {
        self.groups
            .read()
            .expect("lock")
            .iter()
            .map(|g| g.lock().expect("lock").clone())
            .collect()
    }

    /// `f` applied to every group in load order, without copying them (for figures such
    /// as metrics and health, read often).
    pub fn map_groups<R>(&self, mut f: impl FnMut(&Group) -> R) -> Vec<R> {
        self.groups
            .read()
            .expect("lock")
            .iter()
            .map(|g| f(&g.lock().expect("lock")))
            .collect()
    }

    /// Every pending, firing or recently resolved alert.
    pub fn alerts(&self) -> Vec<Alert> {
        self.groups
            .read()
            .expect("lock")
            .iter()
            .flat_map(|g| g.lock().expect("lock").alerts())
            .collect()
    }

    /// Names of rules whose last evaluation failed, with the error.
    pub fn failing_rules(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for g in self.groups.read().expect("lock").iter() {
            let g = g.lock().expect("lock");
            for r in &g.rules {
                if r.health == Health::Err {
                    out.push((
                        format!("{}/{}", g.name, r.rule.name()),
                        r.last_error.clone().unwrap_or_default(),
                    ));
                }
            }
        }
        out
    }

    /// Whether a rule file changed (content, size or set of files) since the last load.
    pub fn files_changed(&self) -> bool {
        let Ok(paths) = file::expand_patterns(&self.opts.files, self.opts.base_dir.as_deref())
        else {
            return false;
        };
        *self.fingerprint.lock().expect("lock") != fingerprint(&paths)
    }

    /// Evaluates one group at `ts` (ms), sends its alerts and saves the state.
    fn eval_group(&self, g: &Mutex<Group>, ts: i64) {
        let (alerts, key, saved) = {
            let mut g = g.lock().expect("lock");
            g.eval(&self.ctx, self.out.as_ref(), ts);
            let alerts = self
                .sink
                .as_ref()
                .map(|_| g.alerts_to_send(ts, self.opts.resend_delay))
                .unwrap_or_default();
            (
                alerts,
                g.key(),
                SavedGroup {
                    last_evaluation: ts,
                    rules: g.saved_state(),
                },
            )
        };
        if let Some(sink) = &self.sink
            && !alerts.is_empty()
        {
            sink.send(alerts);
        }
        self.update_state(key, saved);
    }

    /// Evaluates every group once at `ts` (ms), in load order: for tests and tools that
    /// drive time themselves.
    pub fn eval_all(&self, ts: i64) {
        let groups: Vec<_> = self.groups.read().expect("lock").clone();
        for g in &groups {
            self.eval_group(g, ts);
        }
    }

    /// Files a group's alerts for the state file. It is written when an alert changed
    /// state and the last write is older than [`STATE_WRITE_INTERVAL`], or when only
    /// times and values changed and it is older than [`STATE_REFRESH_INTERVAL`]; the
    /// supervisor and drop write the rest. A group without alerts that had none costs
    /// nothing.
    fn update_state(&self, key: String, group: SavedGroup) {
        if self.opts.state_file.is_none() {
            return;
        }
        let mut saved = self.saved.lock().expect("lock");
        let urgent = match saved.groups.get(&key) {
            None if group.rules.is_empty() => return,
            None => true,
            Some(old) => !same_alerts(&old.rules, &group.rules),
        };
        if group.rules.is_empty() {
            saved.groups.remove(&key);
        } else {
            saved.groups.insert(key, group);
        }
        drop(saved);
        self.dirty.store(true, Ordering::Release);
        if urgent {
            self.urgent.store(true, Ordering::Release);
        }
        self.write_state_if_due();
    }

    /// Writes the state file if the policy of [`Manager::update_state`] says it is due.
    fn write_state_if_due(&self) {
        let since = lookout_model::now_ms() - self.last_write.load(Ordering::Acquire);
        let due = if self.urgent.load(Ordering::Acquire) {
            STATE_WRITE_INTERVAL
        } else {
            STATE_REFRESH_INTERVAL
        };
        if since >= due.as_millis() as i64 {
            self.write_state();
        }
    }

    /// Writes the alert state file now if anything changed since the last write.
    pub fn write_state(&self) {
        let Some(path) = &self.opts.state_file else {
            return;
        };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        self.urgent.store(false, Ordering::Release);
        self.last_write
            .store(lookout_model::now_ms(), Ordering::Release);
        let mut saved = self.saved.lock().expect("lock");
        saved.version = 1;
        let bytes = serde_json::to_vec(&*saved).unwrap_or_default();
        drop(saved);
        if let Err(e) = lookout_model::durable::replace_file(path, &bytes) {
            tracing::warn!(path = %path.display(), error = %e, "Saving alert state failed");
        }
    }

    /// Says the series of these metric names just changed state (a collector went down
    /// or came back): the groups whose rules read any of them are evaluated at once (after
    /// a short debounce), besides their schedule, so an alert without `for` reaches the
    /// notifier within moments of the fault rather than an evaluation interval later.
    pub fn kick(&self, names: Vec<String>) {
        self.kicks.send_modify(|(n, v)| {
            *n += 1;
            *v = names;
        });
    }

    /// Runs every group on its interval, and reloads when a rule file changes, until
    /// `stop` turns true.
    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.supervise(stop).await })
    }

    async fn supervise(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut generation = self.generation.subscribe();
        let mut tasks = self.start_groups(&stop);
        let mut check = self.opts.watch_interval.map(tokio::time::interval);
        loop {
            let tick = async {
                match &mut check {
                    Some(i) => {
                        i.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => break,
                r = generation.changed() => {
                    if r.is_err() { break; }
                    for t in tasks.drain(..) { t.abort(); }
                    tasks = self.start_groups(&stop);
                }
                _ = tick => {
                    self.write_state_if_due();
                    if self.files_changed() {
                        tracing::info!("A rule file changed; reloading");
                        let me = Arc::clone(&self);
                        let now = lookout_model::now_ms();
                        let _ = tokio::task::spawn_blocking(move || me.reload(now)).await;
                    }
                }
            }
        }
        for t in tasks {
            t.abort();
        }
        self.write_state();
    }

    fn start_groups(
        self: &Arc<Self>,
        stop: &watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let groups: Vec<_> = self.groups.read().expect("lock").clone();
        groups
            .into_iter()
            .map(|g| {
                let me = Arc::clone(self);
                let mut stop = stop.clone();
                let mut kicks = self.kicks.subscribe();
                kicks.mark_unchanged();
                tokio::spawn(async move {
                    let (interval, off, selectors) = {
                        let g = g.lock().expect("lock");
                        let selectors: Vec<Vec<lookout_model::Matcher>> = g
                            .rules
                            .iter()
                            .filter_map(|e| lookout_promql::parse(e.rule.expr()).ok())
                            .filter_map(|x| lookout_promql::selectors(&x).ok())
                            .flatten()
                            .collect();
                        (g.interval, offset(&g.key(), g.interval), selectors)
                    };
                    let iv = interval.as_millis().max(1) as i64;
                    loop {
                        let now = lookout_model::now_ms();
                        // The next slot at `off` within the interval.
                        let mut next = now - now.rem_euclid(iv) + off;
                        if next <= now {
                            next += iv;
                        }
                        let wait = Duration::from_millis((next - now) as u64);
                        let mut at = next;
                        tokio::select! {
                            _ = stop.changed() => return,
                            _ = tokio::time::sleep(wait) => {}
                            r = kicks.changed() => {
                                if r.is_err() {
                                    return;
                                }
                                let names = kicks.borrow_and_update().1.clone();
                                if !reads_any(&selectors, &names) {
                                    continue;
                                }
                                tokio::time::sleep(KICK_DEBOUNCE).await;
                                kicks.mark_unchanged();
                                at = lookout_model::now_ms();
                                tracing::debug!(?names, "Evaluating a rule group early: its series changed");
                            }
                        }
                        let me2 = Arc::clone(&me);
                        let g2 = Arc::clone(&g);
                        if tokio::task::spawn_blocking(move || me2.eval_group(&g2, at))
                            .await
                            .is_err()
                        {
                            tracing::error!("A rule group evaluation panicked");
                        }
                    }
                })
            })
            .collect()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.write_state();
    }
}
