//! Health checks: the [`HealthCheck`] trait an engine implements (or the built-in
//! [`MemoryCheck`], [`DiskSpaceCheck`], [`CpuCheck`] and [`DatabaseCheck`] over the
//! [`MonitoredDatabase`] trait), and the [`HealthChecker`] that runs them on an interval,
//! each within a timeout, caches the results and aggregates them: any unhealthy →
//! unhealthy, else any degraded → degraded, else any unknown (a check that timed out or
//! has not run) → unknown, else healthy. The JSON ([`Report`]) is Lookout's own `/health`
//! shape: `{"status", "checks": [{"name", "status", "message", "duration_ms",
//! "details"}]}`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A check's (or the whole service's) state, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Working as intended.
    Healthy,
    /// Not known (timed out, not run yet).
    Unknown,
    /// Working, but something needs attention.
    Degraded,
    /// Not working.
    Unhealthy,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The state.
    pub status: Status,
    /// A sentence an operator can act on.
    pub message: String,
    /// Figures behind it.
    pub details: BTreeMap<String, serde_json::Value>,
}

impl Outcome {
    /// An outcome without details.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: BTreeMap::new(),
        }
    }

    /// This outcome with one more detail.
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// A boxed future, as [`HealthCheck::check`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A health check.
pub trait HealthCheck: Send + Sync {
    /// A short stable name (`disk_space`, `database`).
    fn name(&self) -> &str;
    /// Runs the check.
    fn check(&self) -> BoxFuture<'_, Outcome>;
    /// Whether a failure makes the service not ready (default true).
    fn readiness(&self) -> bool {
        true
    }
}

/// One check's last result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckReport {
    /// The check.
    pub name: String,
    /// Its state.
    pub status: Status,
    /// What it found.
    pub message: String,
    /// How long it took.
    pub duration_ms: f64,
    /// Figures behind it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, serde_json::Value>,
    /// Whether it gates readiness.
    #[serde(skip)]
    pub readiness: bool,
}

impl CheckReport {
    /// `check`'s report of `outcome`, which took `duration_ms`.
    fn of(check: &dyn HealthCheck, outcome: Outcome, duration_ms: f64) -> Self {
        Self {
            name: check.name().to_string(),
            status: outcome.status,
            message: outcome.message,
            duration_ms,
            details: outcome.details,
            readiness: check.readiness(),
        }
    }
}

/// Every check's last result and the aggregate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// The aggregate.
    pub status: Status,
    /// The checks.
    pub checks: Vec<CheckReport>,
}

impl Report {
    fn of(checks: Vec<CheckReport>) -> Self {
        let status = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Healthy);
        Self { status, checks }
    }

    /// Only the checks that gate readiness.
    pub fn readiness(&self) -> Self {
        Self::of(
            self.checks
                .iter()
                .filter(|c| c.readiness)
                .cloned()
                .collect(),
        )
    }
}

/// Runs checks on an interval, each within a timeout, and keeps the last results.
pub struct HealthChecker {
    checks: Mutex<Vec<Arc<dyn HealthCheck>>>,
    last: RwLock<Vec<CheckReport>>,
    interval: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HealthChecker {
    /// A checker running every check each `interval`, each given `timeout`.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            checks: Mutex::new(Vec::new()),
            last: RwLock::new(Vec::new()),
            interval,
            timeout,
        }
    }

    /// Adds a check (reported as unknown until it first runs).
    pub fn add(&self, check: impl HealthCheck + 'static) {
        let check: Arc<dyn HealthCheck> = Arc::new(check);
        self.last
            .write()
            .expect("health lock")
            .push(CheckReport::of(
                &*check,
                Outcome::new(Status::Unknown, "not run yet"),
                0.0,
            ));
        self.checks.lock().expect("health lock").push(check);
    }

    /// Runs every check now (concurrently, each within the timeout), keeps and returns
    /// the results. A check that panics is reported `unknown` with the panic's message, as
    /// one that timed out: it stays in the report rather than vanishing from it.
    pub async fn run(&self) -> Report {
        let checks: Vec<Arc<dyn HealthCheck>> = self.checks.lock().expect("health lock").clone();
        let timeout = self.timeout;
        let runs = checks.iter().map(|c| {
            let c = Arc::clone(c);
            async move {
                let started = Instant::now();
                let outcome = match tokio::time::timeout(timeout, c.check()).await {
                    Ok(o) => o,
                    Err(_) => Outcome::new(
                        Status::Unknown,
                        format!("timed out after {} ms", timeout.as_millis()),
                    ),
                };
                let ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
                CheckReport::of(&*c, outcome, ms)
            }
        });
        let mut reports = Vec::with_capacity(checks.len());
        let handles: Vec<_> = runs.map(tokio::spawn).collect();
        for (h, c) in handles.into_iter().zip(&checks) {
            reports.push(match h.await {
                Ok(r) => r,
                Err(e) => CheckReport::of(
                    &**c,
                    Outcome::new(
                        Status::Unknown,
                        format!("check failed: {}", panic_message(e)),
                    ),
                    0.0,
                ),
            });
        }
        *self.last.write().expect("health lock") = reports.clone();
        Report::of(reports)
    }

    /// The last results (unknown for checks not run yet).
    pub fn report(&self) -> Report {
        Report::of(self.last.read().expect("health lock").clone())
    }

    /// Runs the checks every interval in the background.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            loop {
                tick.tick().await;
                self.run().await;
            }
        })
    }
}

/// What a check's task ended with when it did not return: its panic's message if it was
/// a string.
fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .map_or_else(|| "panicked".into(), |m| format!("panicked: {m}")),
        Err(e) => e.to_string(),
    }
}

/// The process's resident memory against a limit: degraded past `degraded_ratio` of it,
/// unhealthy past the limit.
#[derive(Debug)]
pub struct MemoryCheck {
    limit_bytes: u64,
    degraded_ratio: f64,
}

impl MemoryCheck {
    /// Checks resident memory against `limit_bytes` (degraded from 90%).
    pub fn new(limit_bytes: u64) -> Self {
        Self {
            limit_bytes,
            degraded_ratio: 0.9,
        }
    }
}

impl HealthCheck for MemoryCheck {
    fn name(&self) -> &str {
        "memory"
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let Some(p) = crate::sets::process_figures() else {
                return Outcome::new(Status::Unknown, "/proc/self is not readable");
            };
            let rss = p.resident_bytes;
            let limit = self.limit_bytes as f64;
            let status = if rss > limit {
                Status::Unhealthy
            } else if rss > limit * self.degraded_ratio {
                Status::Degraded
            } else {
                Status::Healthy
            };
            Outcome::new(
                status,
                format!(
                    "{:.0} MiB resident of a {:.0} MiB limit",
                    rss / 1048576.0,
                    limit / 1048576.0
                ),
            )
            .detail("resident_bytes", rss)
            .detail("limit_bytes", self.limit_bytes)
        })
    }
}

/// Free space on the filesystem holding a path: degraded below `min_free_ratio`,
/// unhealthy below a quarter of it.
#[derive(Debug)]
pub struct DiskSpaceCheck {
    path: PathBuf,
    min_free_ratio: f64,
}

impl DiskSpaceCheck {
    /// Checks the filesystem of `path`.
    pub fn new(path: impl Into<PathBuf>, min_free_ratio: f64) -> Self {
        Self {
            path: path.into(),
            min_free_ratio,
        }
    }
}

impl HealthCheck for DiskSpaceCheck {
    fn name(&self) -> &str {
        "disk_space"
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let st = match rustix::fs::statvfs(&self.path) {
                Ok(st) => st,
                Err(e) => {
                    return Outcome::new(
                        Status::Unhealthy,
                        format!("{}: {e}", self.path.display()),
                    );
                }
            };
            let total = st.f_blocks as f64 * st.f_frsize as f64;
            let free = st.f_bavail as f64 * st.f_frsize as f64;
            let ratio = if total > 0.0 { free / total } else { 0.0 };
            let status = if ratio < self.min_free_ratio / 4.0 {
                Status::Unhealthy
            } else if ratio < self.min_free_ratio {
                Status::Degraded
            } else {
                Status::Healthy
            };
            Outcome::new(
                status,
                format!("{:.1}% free on {}", ratio * 100.0, self.path.display()),
            )
            .detail("free_bytes", free)
            .detail("total_bytes", total)
        })
    }
}

/// The one-minute load average per CPU: degraded above `max_load_per_cpu`.
#[derive(Debug)]
pub struct CpuCheck {
    max_load_per_cpu: f64,
}

impl CpuCheck {
    /// Degraded when the load per CPU passes `max_load_per_cpu` (e.g. 1.5).
    pub fn new(max_load_per_cpu: f64) -> Self {
        Self { max_load_per_cpu }
    }
}

impl HealthCheck for CpuCheck {
    fn name(&self) -> &str {
        "cpu"
    }

    fn readiness(&self) -> bool {
        false
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let load = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
            });
            let Some(load) = load else {
                return Outcome::new(Status::Unknown, "/proc/loadavg is not readable");
            };
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let per = load / cpus;
            let status = if per > self.max_load_per_cpu {
                Status::Degraded
            } else {
                Status::Healthy
            };
            Outcome::new(status, format!("load {load:.2} on {cpus} CPUs"))
                .detail("load1", load)
                .detail("cpus", cpus)
        })
    }
}

/// Figures a database reports about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatabaseStats {
    /// Open client connections.
    pub connections: u64,
    /// Queries served since start.
    pub queries: u64,
    /// Bytes of data on disk.
    pub storage_bytes: u64,
    /// Page or block cache hit ratio (0–1), if it has a cache.
    pub cache_hit_ratio: Option<f64>,
}

/// What an engine implements so [`DatabaseCheck`] can watch it.
pub trait MonitoredDatabase: Send + Sync {
    /// Answers when the engine serves requests (a no-op read, a ping).
    fn ping(&self) -> BoxFuture<'_, Result<(), String>>;
    /// The engine's own figures.
    fn stats(&self) -> BoxFuture<'_, DatabaseStats>;
}

/// Connectivity and responsiveness of a [`MonitoredDatabase`]: unhealthy when the ping
/// fails, degraded when it takes longer than `slow`.
pub struct DatabaseCheck<D> {
    db: Arc<D>,
    slow: Duration,
}

impl<D> std::fmt::Debug for DatabaseCheck<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseCheck")
            .field("slow", &self.slow)
            .finish_non_exhaustive()
    }
}

impl<D: MonitoredDatabase> DatabaseCheck<D> {
    /// Checks `db`, degraded when a ping takes longer than `slow`.
    pub fn new(db: Arc<D>, slow: Duration) -> Self {
        Self { db, slow }
    }
}

impl<D: MonitoredDatabase + 'static> HealthCheck for DatabaseCheck<D> {
    fn name(&self) -> &str {
        "database"
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let started = Instant::now();
            if let Err(e) = self.db.ping().await {
                return Outcome::new(Status::Unhealthy, format!("ping failed: {e}"));
            }
            let took = started.elapsed();
            let stats = self.db.stats().await;
            let status = if took > self.slow {
                Status::Degraded
            } else {
                Status::Healthy
            };
            let mut o = Outcome::new(
                status,
                format!(
                    "ping {:.1} ms, {} connections, {} queries",
                    took.as_secs_f64() * 1000.0,
                    stats.connections,
                    stats.queries
                ),
            )
            .detail("ping_ms", took.as_secs_f64() * 1000.0)
            .detail("connections", stats.connections)
            .detail("queries", stats.queries)
            .detail("storage_bytes", stats.storage_bytes);
            if let Some(r) = stats.cache_hit_ratio {
                o = o.detail("cache_hit_ratio", r);
            }
            o
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Status, Duration);

    impl HealthCheck for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn check(&self) -> BoxFuture<'_, Outcome> {
            Box::pin(async move {
                tokio::time::sleep(self.1).await;
                Outcome::new(self.0, "as told")
            })
        }
    }

    #[tokio::test]
    async fn the_worst_result_wins_and_a_timeout_is_unknown() {
        let h = HealthChecker::new(Duration::from_secs(60), Duration::from_millis(100));
        assert_eq!(h.report().status, Status::Healthy);
        h.add(Fixed(Status::Healthy, Duration::ZERO));
        assert_eq!(h.report().status, Status::Unknown, "not run yet");
        assert_eq!(h.run().await.status, Status::Healthy);
        h.add(Fixed(Status::Healthy, Duration::from_secs(5)));
        let r = h.run().await;
        assert_eq!(r.status, Status::Unknown);
        assert!(r.checks[1].message.contains("timed out"), "{r:?}");
        h.add(Fixed(Status::Degraded, Duration::ZERO));
        assert_eq!(h.run().await.status, Status::Degraded);
        h.add(Fixed(Status::Unhealthy, Duration::ZERO));
        assert_eq!(h.run().await.status, Status::Unhealthy);
        let json = serde_json::to_value(h.report()).unwrap();
        assert_eq!(json["status"], "unhealthy");
        assert_eq!(json["checks"][0]["name"], "fixed");
        assert!(json["checks"][0]["duration_ms"].is_number());
    }

    struct Panics;

    impl HealthCheck for Panics {
        fn name(&self) -> &str {
            "panics"
        }
        fn check(&self) -> BoxFuture<'_, Outcome> {
            Box::pin(async { panic!("replica table poisoned") })
        }
    }

    #[tokio::test]
    async fn a_check_that_panics_is_reported_unknown_and_the_others_still_run() {
        let h = HealthChecker::new(Duration::from_secs(60), Duration::from_secs(5));
        h.add(Fixed(Status::Healthy, Duration::ZERO));
        h.add(Panics);
        h.add(Fixed(Status::Degraded, Duration::ZERO));
        let r = h.run().await;
        assert_eq!(r.checks.len(), 3, "{r:?}");
        assert_eq!(r.checks[1].name, "panics");
        assert_eq!(r.checks[1].status, Status::Unknown);
        assert!(
            r.checks[1].message.contains("replica table poisoned"),
            "{r:?}"
        );
        assert_eq!(r.checks[2].status, Status::Degraded);
        assert_eq!(h.report().checks.len(), 3, "kept for the next report");
        // A second round still runs every check.
        assert_eq!(h.run().await.checks[0].status, Status::Healthy);
    }

    #[tokio::test]
    async fn built_in_checks_answer() {
        let h = HealthChecker::new(Duration::from_secs(60), Duration::from_secs(5));
        h.add(MemoryCheck::new(1 << 40));
        h.add(DiskSpaceCheck::new("/", 0.0));
        h.add(CpuCheck::new(1000.0));
        h.add(DiskSpaceCheck::new("/no/such/dir", 0.1));
        let r = h.run().await;
        assert_eq!(r.checks[0].status, Status::Healthy, "{r:?}");
        assert!(r.checks[0].details["resident_bytes"].as_f64().unwrap() > 0.0);
        assert_eq!(r.checks[1].status, Status::Healthy, "{r:?}");
        assert_eq!(r.checks[2].status, Status::Healthy, "{r:?}");
        assert_eq!(r.checks[3].status, Status::Unhealthy, "{r:?}");
        assert_eq!(r.status, Status::Unhealthy);
        assert!(!r.readiness().checks.iter().any(|c| c.name == "cpu"));
        let tiny = HealthChecker::new(Duration::from_secs(60), Duration::from_secs(5));
        tiny.add(MemoryCheck::new(1));
        assert_eq!(tiny.run().await.status, Status::Unhealthy);
    }
}
