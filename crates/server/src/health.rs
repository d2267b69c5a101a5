//! Health: checks that report healthy / degraded / unhealthy / unknown with a message, and
//! the checks Lookout ships for its own parts (collectors, free disk space). Storage is
//! checked through a [`FnCheck`] the binary builds over the tsdb.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::CollectionView;
use serde::Serialize;

/// The state of a check or of the whole process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working as intended.
    Healthy,
    /// Not known yet (e.g. a collector has not run).
    Unknown,
    /// Working, but something needs attention.
    Degraded,
    /// Not working.
    Unhealthy,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// The state.
    pub status: HealthStatus,
    /// What was found, in a sentence an operator can act on.
    pub message: String,
    /// Structured findings (`details` in the JSON), when the check has any.
    pub details: Option<serde_json::Value>,
}

impl CheckResult {
    /// A result with this status and message.
    pub fn new(status: HealthStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: None,
        }
    }

    /// This result with structured findings.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

/// A health check. `check` may block briefly (it is run off the async runtime).
pub trait HealthCheck: Send + Sync {
    /// A short stable name (`storage`, `collectors`, `disk_space`).
    fn name(&self) -> &str;
    /// Runs the check.
    fn check(&self) -> CheckResult;
    /// Whether the check gates readiness (`/health/ready`, `/-/ready`).
    fn gates_readiness(&self) -> bool {
        false
    }
}

/// A check from a closure.
pub struct FnCheck<F> {
    name: String,
    readiness: bool,
    f: F,
}

impl<F> std::fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnCheck").field("name", &self.name).finish()
    }
}

impl<F: Fn() -> CheckResult + Send + Sync> FnCheck<F> {
    /// A check named `name` running `f`; `readiness` makes it gate readiness.
    pub fn new(name: &str, readiness: bool, f: F) -> Self {
        Self {
            name: name.to_string(),
            readiness,
            f,
        }
    }
}

impl<F: Fn() -> CheckResult + Send + Sync> HealthCheck for FnCheck<F> {
    fn name(&self) -> &str {
        &self.name
    }
    fn check(&self) -> CheckResult {
        (self.f)()
    }
    fn gates_readiness(&self) -> bool {
        self.readiness
    }
}

/// Collectors are healthy when every one's last run succeeded recently: a failed last run
/// is degraded, none in three intervals is unhealthy, never run yet is unknown.
pub struct CollectorsCheck {
    view: Arc<dyn CollectionView>,
}

impl std::fmt::Debug for CollectorsCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorsCheck").finish_non_exhaustive()
    }
}

impl CollectorsCheck {
    /// A check over the collectors' statuses.
    pub fn new(view: Arc<dyn CollectionView>) -> Self {
        Self { view }
    }
}

impl HealthCheck for CollectorsCheck {
    fn name(&self) -> &str {
        "collectors"
    }

    fn check(&self) -> CheckResult {
        let now = SystemTime::now();
        let mut worst = HealthStatus::Healthy;
        let mut notes = Vec::new();
        let statuses = self.view.collectors();
        if statuses.is_empty() {
            return CheckResult::new(HealthStatus::Healthy, "no collectors configured");
        }
        for s in &statuses {
            let (st, note) = match s.last_run {
                None => (HealthStatus::Unknown, format!("{} has not run yet", s.name)),
                Some(t)
                    if now.duration_since(t).unwrap_or_default()
                        > s.interval * 3 + Duration::from_secs(5) =>
                {
                    (
                        HealthStatus::Unhealthy,
                        format!(
                            "{} last ran {}s ago (interval {}s)",
                            s.name,
                            now.duration_since(t).unwrap_or_default().as_secs(),
                            s.interval.as_secs()
                        ),
                    )
                }
                Some(_) => match &s.last_error {
                    Some(e) => (HealthStatus::Degraded, format!("{} failed: {e}", s.name)),
                    None => (HealthStatus::Healthy, String::new()),
                },
            };
            worst = worst.max(st);
            if !note.is_empty() {
                notes.push(note);
            }
        }
        let msg = if notes.is_empty() {
            format!("{} collectors ran successfully", statuses.len())
        } else {
            notes.join("; ")
        };
        CheckResult::new(worst, msg)
    }
}

/// One collector (a database, a scrape target): unhealthy when its last run failed or it
/// has not run in three intervals, degraded when the run worked but could not read
/// everything (its notes say what and why), unknown before its first run.
pub struct CollectorCheck {
    view: Arc<dyn CollectionView>,
    name: String,
}

impl std::fmt::Debug for CollectorCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorCheck")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CollectorCheck {
    /// A check of the collector `name`.
    pub fn new(view: Arc<dyn CollectionView>, name: impl Into<String>) -> Self {
        Self {
            view,
            name: name.into(),
        }
    }
}

impl HealthCheck for CollectorCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckResult {
        let Some(s) = self
            .view
            .collectors()
            .into_iter()
            .find(|s| s.name == self.name)
        else {
            return CheckResult::new(HealthStatus::Unknown, "not configured");
        };
        let Some(t) = s.last_run else {
            return CheckResult::new(HealthStatus::Unknown, "has not run yet");
        };
        let age = SystemTime::now().duration_since(t).unwrap_or_default();
        if age > s.interval * 3 + Duration::from_secs(5) {
            return CheckResult::new(
                HealthStatus::Unhealthy,
                format!("last ran {}s ago", age.as_secs()),
            );
        }
        if let Some(e) = &s.last_error {
            return CheckResult::new(HealthStatus::Unhealthy, e.clone());
        }
        if !s.notes.is_empty() {
            return CheckResult::new(HealthStatus::Degraded, s.notes.join("; "));
        }
        CheckResult::new(
            HealthStatus::Healthy,
            format!("{} samples in the last run", s.last_samples),
        )
    }
}

/// Free space of the filesystem holding a directory: degraded below one fraction,
/// unhealthy below another (defaults 10% and 2%).
#[derive(Debug)]
pub struct DiskSpaceCheck {
    path: PathBuf,
    degraded_below: f64,
    unhealthy_below: f64,
}

impl DiskSpaceCheck {
    /// A check of `path` with the default thresholds (10%, 2%).
    pub fn new(path: PathBuf) -> Self {
        Self::with_thresholds(path, 0.10, 0.02)
    }

    /// A check with explicit thresholds, as fractions of the filesystem size.
    pub fn with_thresholds(path: PathBuf, degraded_below: f64, unhealthy_below: f64) -> Self {
        Self {
            path,
            degraded_below,
            unhealthy_below,
        }
    }
}

fn human_bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

impl HealthCheck for DiskSpaceCheck {
    fn name(&self) -> &str {
        "disk_space"
    }

    fn check(&self) -> CheckResult {
        let st = match rustix::fs::statvfs(&self.path) {
            Ok(st) => st,
            Err(e) => {
                return CheckResult::new(
                    HealthStatus::Unhealthy,
                    format!("cannot stat {}: {e}", self.path.display()),
                );
            }
        };
        let size = st.f_blocks as f64 * st.f_frsize as f64;
        let avail = st.f_bavail as f64 * st.f_frsize as f64;
        let frac = if size > 0.0 { avail / size } else { 0.0 };
        let status = if frac < self.unhealthy_below {
            HealthStatus::Unhealthy
        } else if frac < self.degraded_below {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        let mut msg = format!(
            "{:.1}% free ({} of {}) on {}",
            frac * 100.0,
            human_bytes(avail),
            human_bytes(size),
            self.path.display()
        );
        if status != HealthStatus::Healthy {
            msg.push_str(&format!(
                "; below the {:.0}% threshold: free space or lower storage.retention",
                if status == HealthStatus::Unhealthy {
                    self.unhealthy_below
                } else {
                    self.degraded_below
                } * 100.0
            ));
        }
        CheckResult::new(status, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use lookout_model::status::{CollectorStatus, Statement, TargetStatus};

    /// Collector statuses a test sets.
    #[derive(Default)]
    struct Board(Mutex<Vec<CollectorStatus>>);

    impl Board {
        fn insert(&self, s: CollectorStatus) {
            let mut v = self.0.lock().unwrap();
            v.retain(|o| o.name != s.name);
            v.push(s);
        }
    }

    impl CollectionView for Board {
        fn collectors(&self) -> Vec<CollectorStatus> {
            self.0.lock().unwrap().clone()
        }
        fn targets(&self) -> Vec<TargetStatus> {
            Vec::new()
        }
        fn slow_queries(&self) -> Vec<Statement> {
            Vec::new()
        }
    }

    fn status(name: &str, ago: Option<u64>, err: Option<&str>) -> CollectorStatus {
        CollectorStatus {
            last_run: ago.map(|a| SystemTime::now() - Duration::from_secs(a)),
            last_duration: Some(Duration::from_millis(3)),
            last_error: err.map(str::to_string),
            last_samples: 1,
            runs: 1,
            ..CollectorStatus::new(name, Duration::from_secs(15))
        }
    }

    #[test]
    fn collectors_check_grades_runs() {
        let board = Arc::new(Board::default());
        let c = CollectorsCheck::new(Arc::clone(&board) as Arc<dyn CollectionView>);
        board.insert(status("host", Some(1), None));
        assert_eq!(c.check().status, HealthStatus::Healthy);
        board.insert(status("process", None, None));
        assert_eq!(c.check().status, HealthStatus::Unknown);
        board.insert(status("process", Some(2), Some("boom")));
        let r = c.check();
        assert_eq!(r.status, HealthStatus::Degraded);
        assert!(r.message.contains("process failed: boom"));
        board.insert(status("host", Some(600), None));
        assert_eq!(c.check().status, HealthStatus::Unhealthy);
    }

    #[test]
    fn disk_space_thresholds_apply_to_the_real_filesystem() {
        let dir = std::env::temp_dir();
        let ok = DiskSpaceCheck::with_thresholds(dir.clone(), 0.0, 0.0).check();
        assert_eq!(ok.status, HealthStatus::Healthy, "{}", ok.message);
        let degraded = DiskSpaceCheck::with_thresholds(dir.clone(), 1.01, 0.0).check();
        assert_eq!(degraded.status, HealthStatus::Degraded);
        assert!(degraded.message.contains("% free"));
        let bad = DiskSpaceCheck::with_thresholds(dir, 1.01, 1.01).check();
        assert_eq!(bad.status, HealthStatus::Unhealthy);
        let missing = DiskSpaceCheck::new("/no/such/dir".into()).check();
        assert_eq!(missing.status, HealthStatus::Unhealthy);
    }
}
