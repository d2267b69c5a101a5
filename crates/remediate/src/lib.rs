//! Remediation: allow-listed actions Lookout runs when matching alerts fire — cancel or
//! terminate PostgreSQL sessions, `ANALYZE` a table, delete old files in one directory,
//! run one executable with the alert on its standard input, call a webhook — off unless
//! configured, each rule a dry run unless it says otherwise, with a cooldown, a limit
//! per hour, and an audit record of every run: what was (or would have been) done, to
//! what, and how it went.
//!
//! This crate owns the rules (`config`), the actions (`actions`) and the audit trail;
//! it takes the rules' firing alerts through [`Sink`], a [`lookout_rules::AlertSink`]
//! that hands them on, and knows nothing of HTTP (the server serves [`Remediator::records`]
//! at `/api/v1/lookout/remediations`).
//!
//! Nothing an action touches comes from the alert: instances, directories, executables
//! and URLs are the configuration's; the alert only triggers the run and is passed as
//! data (JSON on stdin, the webhook's body).

mod actions;
pub mod config;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use config::{ActionConfig, PgTarget, RuleConfig};
use lookout_model::{Labels, Matcher};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule cannot be used; names the rule and the problem.
    #[error("remediation {rule:?}: {problem}")]
    Invalid {
        /// The rule.
        rule: String,
        /// What is wrong.
        problem: String,
    },
    /// The audit file cannot be written.
    #[error("remediation audit {}: {source}", path.display())]
    Audit {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How the remediator is set up.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The rules.
    pub rules: Vec<RuleConfig>,
    /// PostgreSQL instances by collector name.
    pub postgres: BTreeMap<String, PgTarget>,
    /// Where audit records are appended (JSON lines); `None` keeps them in memory only.
    pub audit_file: Option<PathBuf>,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// When the run started (Unix seconds).
    pub at: f64,
    /// The rule.
    pub rule: String,
    /// The action's kind (`postgres_cancel_queries`, …).
    pub action: String,
    /// The labels of the alert that triggered it.
    pub alert: BTreeMap<String, String>,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// `done`, `dry_run` (what would have been done), `nothing_to_do`, `skipped` (the
    /// hourly limit) or `failed`.
    pub outcome: String,
    /// What happened, in words.
    pub detail: String,
    /// What it acted on (or would have): sessions, files, …
    pub targets: Vec<String>,
    /// How long the run took, in seconds.
    pub seconds: f64,
}

/// Records kept in memory (and read back from the audit file at start).
const KEEP_RECORDS: usize = 1000;
/// The audit file is rewritten with the kept records past this size.
const MAX_AUDIT_BYTES: u64 = 8 * 1024 * 1024;

struct Rule {
    cfg: RuleConfig,
    matchers: Vec<Matcher>,
}

#[derive(Default)]
struct RuleState {
    last: Option<Instant>,
    runs: VecDeque<Instant>,
    /// Whether the last refusal for the hourly limit has been recorded.
    limit_recorded: bool,
}

/// Runs the rules' actions and keeps the audit trail.
pub struct Remediator {
    rules: Vec<Rule>,
    postgres: BTreeMap<String, PgTarget>,
    audit_file: Option<PathBuf>,
    records: Mutex<VecDeque<Record>>,
    state: Mutex<HashMap<String, RuleState>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Remediator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remediator")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Checks one rule; the problem in words.
fn check(r: &RuleConfig, postgres: &BTreeMap<String, PgTarget>) -> Result<Vec<Matcher>, String> {
    if r.name.is_empty() {
        return Err("a rule needs a name".into());
    }
    if r.matchers.is_empty() {
        return Err("matchers: at least one is needed (a rule matching every alert would act on all of them)".into());
    }
    let matchers = r
        .matchers
        .iter()
        .map(|m| lookout_notify::matchers::parse_matcher(m).map_err(|e| format!("matchers: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if r.cooldown.is_zero() {
        return Err("cooldown must be positive".into());
    }
    if r.max_per_hour == 0 || r.max_per_hour > 3600 {
        return Err(format!(
            "max_per_hour {} is outside 1 to 3600",
            r.max_per_hour
        ));
    }
    let instance_known = |i: &str| {
        if postgres.contains_key(i) {
            Ok(())
        } else {
            Err(format!(
                "instance {i:?} is not a configured PostgreSQL collector (collectors.postgres)"
            ))
        }
    };
    match &r.action {
        ActionConfig::PostgresCancelQueries {
            instance,
            running_longer_than,
            ..
        } => {
            instance_known(instance)?;
            if *running_longer_than < Duration::from_secs(1) {
                return Err("running_longer_than must be at least 1s".into());
            }
        }
        ActionConfig::PostgresTerminateIdleInTransaction {
            instance,
            idle_longer_than,
            ..
        } => {
            instance_known(instance)?;
            if *idle_longer_than < Duration::from_secs(1) {
                return Err("idle_longer_than must be at least 1s".into());
            }
        }
        ActionConfig::PostgresAnalyze { instance, table } => {
            instance_known(instance)?;
            actions::table_ident(table)?;
        }
        ActionConfig::DeleteOldFiles {
            directory,
            older_than,
            max_files,
        } => {
            if !directory.is_absolute() || directory.parent().is_none() {
                return Err(format!(
                    "directory {} must be an absolute path below /",
                    directory.display()
                ));
            }
            if directory
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(format!(
                    "directory {} must not contain ..",
                    directory.display()
                ));
            }
            if older_than.is_zero() || *max_files == 0 {
                return Err("older_than and max_files must be positive".into());
            }
        }
        ActionConfig::RunExecutable { path, timeout, .. } => {
            if !path.is_absolute() {
                return Err(format!("path {} must be absolute", path.display()));
            }
            if timeout.is_zero() {
                return Err("timeout must be positive".into());
            }
        }
        ActionConfig::Webhook { url, timeout } => {
            let u = reqwest::Url::parse(url).map_err(|e| format!("url {url:?}: {e}"))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(format!("url {url:?}: only http and https"));
            }
            if timeout.is_zero() {
                return Err("timeout must be positive".into());
            }
        }
    }
    Ok(matchers)
}

impl Remediator {
    /// Checks every rule (each problem named with its rule) and reads back the audit
    /// file's newest records (lines that do not parse are skipped).
    pub fn new(o: Options) -> Result<Self, Error> {
        let mut rules = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for r in o.rules {
            if !names.insert(r.name.clone()) {
                return Err(Error::Invalid {
                    rule: r.name,
                    problem: "the name is used twice".into(),
                });
            }
            let matchers = check(&r, &o.postgres).map_err(|problem| Error::Invalid {
                rule: r.name.clone(),
                problem,
            })?;
            rules.push(Rule { cfg: r, matchers });
        }
        let mut records = VecDeque::new();
        if let Some(path) = &o.audit_file
            && let Ok(text) = std::fs::read_to_string(path)
        {
            for line in text.lines() {
                if let Ok(r) = serde_json::from_str::<Record>(line) {
                    records.push_back(r);
                    if records.len() > KEEP_RECORDS {
                        records.pop_front();
                    }
                }
            }
        }
        let http = lookout_http::client(&lookout_http::HttpConfig::default()).map_err(|e| {
            Error::Invalid {
                rule: String::new(),
                problem: e.to_string(),
            }
        })?;
        Ok(Self {
            rules,
            postgres: o.postgres,
            audit_file: o.audit_file,
            records: Mutex::new(records),
            state: Mutex::default(),
            http,
        })
    }

    /// The audit records, the newest first.
    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .expect("lock poisoned")
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Whether any rule is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn record(&self, r: Record) {
        tracing::info!(rule = %r.rule, action = %r.action, outcome = %r.outcome, dry_run = r.dry_run, detail = %r.detail, "Remediation");
        if let Some(path) = &self.audit_file
            && let Err(e) = self.append(path, &r)
        {
            tracing::warn!(error = %e, "Writing the remediation audit record failed");
        }
        let mut records = self.records.lock().expect("lock poisoned");
        records.push_back(r);
        if records.len() > KEEP_RECORDS {
            records.pop_front();
        }
    }

    fn append(&self, path: &std::path::Path, r: &Record) -> Result<(), Error> {
        let err = |source| Error::Audit {
            path: path.to_path_buf(),
            source,
        };
        if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_AUDIT_BYTES) {
            let kept = self.records.lock().expect("lock poisoned").clone();
            let mut text = String::new();
            for k in kept {
                text.push_str(&serde_json::to_string(&k).unwrap_or_default());
                text.push('\n');
            }
            lookout_model::durable::replace_file(path, text.as_bytes()).map_err(err)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let mut line = serde_json::to_string(r).unwrap_or_default();
        line.push('\n');
        f.write_all(line.as_bytes()).map_err(err)?;
        f.sync_data().map_err(err)
    }

    /// Takes firing alerts (labels, annotations): each rule some alert matches runs once,
    /// unless it is cooling down or has reached its hourly limit (recorded as
    /// `skipped`, once per limit reached). Runs happen on `runtime`.
    pub fn on_firing(
        self: &Arc<Self>,
        alerts: &[(Labels, BTreeMap<String, String>)],
        runtime: &tokio::runtime::Handle,
    ) {
        for (k, rule) in self.rules.iter().enumerate() {
            let Some((labels, annotations)) = alerts
                .iter()
                .find(|(l, _)| rule.matchers.iter().all(|m| m.matches_labels(l)))
            else {
                continue;
            };
            let alert: BTreeMap<String, String> = labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            let now = Instant::now();
            {
                let mut states = self.state.lock().expect("lock poisoned");
                let st = states.entry(rule.cfg.name.clone()).or_default();
                if st
                    .last
                    .is_some_and(|t| now.duration_since(t) < rule.cfg.cooldown)
                {
                    continue;
                }
                while st
                    .runs
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600))
                {
                    st.runs.pop_front();
                }
                if st.runs.len() >= rule.cfg.max_per_hour as usize {
                    if !st.limit_recorded {
                        st.limit_recorded = true;
                        drop(states);
                        self.record(Record {
                            at: now_secs(),
                            rule: rule.cfg.name.clone(),
                            action: rule.cfg.action.kind().into(),
                            alert,
                            dry_run: rule.cfg.dry_run,
                            outcome: "skipped".into(),
                            detail: format!(
                                "max_per_hour ({}) reached: not run until an hour after the oldest run",
                                rule.cfg.max_per_hour
                            ),
                            targets: vec![],
                            seconds: 0.0,
                        });
                    }
                    continue;
                }
                st.last = Some(now);
                st.runs.push_back(now);
                st.limit_recorded = false;
            }
            let me = Arc::clone(self);
            let payload = serde_json::json!({
                "rule": rule.cfg.name,
                "dry_run": rule.cfg.dry_run,
                "labels": alert,
                "annotations": annotations,
            });
            runtime.spawn(async move {
                let rule = &me.rules[k];
                let started = Instant::now();
                let at = now_secs();
                let done = actions::run(&me, &rule.cfg, &payload).await;
                me.record(Record {
                    at,
                    rule: rule.cfg.name.clone(),
                    action: rule.cfg.action.kind().into(),
                    alert,
                    dry_run: rule.cfg.dry_run,
                    outcome: done.outcome.into(),
                    detail: done.detail,
                    targets: done.targets,
                    seconds: started.elapsed().as_secs_f64(),
                });
            });
        }
    }
}

/// A rule-alert sink that runs the remediations of the firing alerts it sees, then
/// hands every alert on.
pub struct Sink {
    /// Where the alerts go next.
    pub inner: Option<Arc<dyn lookout_rules::AlertSink>>,
    /// The remediator.
    pub remediator: Arc<Remediator>,
    /// Where the actions run.
    pub runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

impl lookout_rules::AlertSink for Sink {
    fn send(&self, alerts: Vec<(lookout_rules::Alert, String)>) {
        let firing: Vec<(Labels, BTreeMap<String, String>)> = alerts
            .iter()
            .filter(|(a, _)| a.fired_at.is_some() && a.resolved_at.is_none())
            .map(|(a, _)| (a.labels.clone(), a.annotations.clone()))
            .collect();
        if !firing.is_empty() {
            self.remediator.on_firing(&firing, &self.runtime);
        }
        if let Some(inner) = &self.inner {
            inner.send(alerts);
        }
    }
}
