//! Status snapshots the parts of Lookout publish and the HTTP layer shows: the head's
//! cardinality, each collector's last run, each scrape target's state, the
//! PostgreSQL collectors' top statements and their sessions (who blocks whom, which
//! transactions are old). Plain data, so the server can show them
//! without knowing the store or the collectors that produce them.

use std::time::{Duration, SystemTime};

use crate::Labels;

/// The head's cardinality, as Prometheus's `/api/v1/status/tsdb` reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeadStatus {
    /// Series in the head.
    pub num_series: u64,
    /// Distinct label pairs.
    pub num_label_pairs: u64,
    /// Chunks in the head.
    pub chunk_count: u64,
    /// Earliest sample time (ms), if any.
    pub min_time: Option<i64>,
    /// Latest sample time (ms), if any.
    pub max_time: Option<i64>,
    /// Series per metric name, descending.
    pub series_by_metric: Vec<(String, u64)>,
    /// Distinct values per label name, descending.
    pub values_by_label: Vec<(String, u64)>,
    /// Bytes of label values per label name, descending.
    pub memory_by_label: Vec<(String, u64)>,
    /// Series per `name=value` pair, descending.
    pub series_by_pair: Vec<(String, u64)>,
}

/// What the last run of one collector did.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorStatus {
    /// The collector's name.
    pub name: String,
    /// Its run interval.
    pub interval: Duration,
    /// When the last run started.
    pub last_run: Option<SystemTime>,
    /// How long the last run took.
    pub last_duration: Option<Duration>,
    /// The last run's error, if it failed.
    pub last_error: Option<String>,
    /// Samples the last run stored.
    pub last_samples: usize,
    /// Runs so far.
    pub runs: u64,
    /// Failed runs so far.
    pub failures: u64,
    /// What the last run could not read although it worked (the collector's notes).
    pub notes: Vec<String>,
}

impl CollectorStatus {
    /// The status of a collector that has not run yet.
    pub fn new(name: impl Into<String>, interval: Duration) -> Self {
        Self {
            name: name.into(),
            interval,
            last_run: None,
            last_duration: None,
            last_error: None,
            last_samples: 0,
            runs: 0,
            failures: 0,
            notes: Vec::new(),
        }
    }
}

/// One target after relabeling.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Labels every scraped sample gets (`job`, `instance`, …).
    pub labels: Labels,
    /// Labels before relabeling (`__address__`, `__meta_*`, …).
    pub discovered: Labels,
    /// The URL scraped.
    pub url: String,
    /// Time between scrapes.
    pub interval: Duration,
    /// Longest one scrape may take.
    pub timeout: Duration,
}

/// The state of one target, for `/api/v1/targets`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    /// The job.
    pub job: String,
    /// The target.
    pub target: Target,
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: &'static str,
    /// Why the last scrape failed.
    pub last_error: String,
    /// When the last scrape started.
    pub last_scrape: Option<SystemTime>,
    /// How long it took.
    pub last_duration: Option<Duration>,
}

/// One statement of `pg_stat_statements`, with its text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Statement {
    /// The instance it was read from.
    pub instance: String,
    /// The database.
    pub datname: String,
    /// The role that ran it.
    pub user: String,
    /// pg_stat_statements' query id.
    pub queryid: String,
    /// The normalised query text.
    pub query: String,
    /// Times run.
    pub calls: f64,
    /// Total execution time in seconds.
    pub total_seconds: f64,
    /// Mean execution time in seconds.
    pub mean_seconds: f64,
    /// Rows returned or affected.
    pub rows: f64,
}

/// One PostgreSQL client session that was not idle, as `pg_stat_activity` showed it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PgSession {
    /// The backend's process id.
    pub pid: i64,
    /// The database.
    pub datname: String,
    /// The role.
    pub user: String,
    /// `application_name`.
    pub application: String,
    /// The client's address (empty for a Unix socket).
    pub client: String,
    /// `active`, `idle in transaction`, `idle in transaction (aborted)`, …
    pub state: String,
    /// The wait event's type; `CPU` for a running session without one.
    pub wait_event_type: String,
    /// The wait event; `CPU` for a running session without one.
    pub wait_event: String,
    /// Seconds since its transaction began, if it is in one.
    pub transaction_seconds: Option<f64>,
    /// Seconds since its current (or last) statement began.
    pub query_seconds: Option<f64>,
    /// Seconds since its state last changed (how long it has been idle in transaction).
    pub state_seconds: Option<f64>,
    /// Seconds it has waited for the lock it waits for (PostgreSQL 14 and later).
    pub lock_wait_seconds: Option<f64>,
    /// The sessions holding (or queued before it for) the lock it waits for.
    pub blocked_by: Vec<i64>,
    /// The statement's text as PostgreSQL keeps it (`track_activity_query_size`).
    pub query: String,
}

impl PgSession {
    /// Whether it sits in an open transaction doing nothing.
    pub fn idle_in_transaction(&self) -> bool {
        self.state.starts_with("idle in transaction")
    }
}

/// The non-idle client sessions of one PostgreSQL instance, sampled at one moment.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PgSessions {
    /// The instance (the collector's name).
    pub instance: String,
    /// When they were sampled (Unix seconds).
    pub at: f64,
    /// The sessions.
    pub sessions: Vec<PgSession>,
}

/// A session in the lock tree with the sessions it blocks directly.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LockNode {
    /// The session.
    #[serde(flatten)]
    pub session: PgSession,
    /// The sessions waiting on it, each with those waiting on them.
    pub blocks: Vec<LockNode>,
}

impl PgSessions {
    /// Who blocks whom: one tree per session that blocks others without waiting on
    /// anyone itself (the root cause to act on), longest waits first. Sessions in a
    /// cycle (a deadlock PostgreSQL has not broken yet) are rooted at their lowest pid;
    /// a session appears once however many it waits on (under the first of its blockers
    /// the walk reaches).
    pub fn lock_tree(&self) -> Vec<LockNode> {
        use std::collections::{BTreeMap, BTreeSet};
        let by_pid: BTreeMap<i64, &PgSession> = self.sessions.iter().map(|s| (s.pid, s)).collect();
        let mut children: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let mut waiting: BTreeSet<i64> = BTreeSet::new();
        for s in &self.sessions {
            for b in &s.blocked_by {
                if by_pid.contains_key(b) && *b != s.pid {
                    children.entry(*b).or_default().push(s.pid);
                    waiting.insert(s.pid);
                }
            }
        }
        let roots: Vec<i64> = children
            .keys()
            .copied()
            .filter(|p| !waiting.contains(p))
            .collect();
        let mut placed = BTreeSet::new();
        fn build(
            pid: i64,
            by_pid: &BTreeMap<i64, &PgSession>,
            children: &BTreeMap<i64, Vec<i64>>,
            placed: &mut BTreeSet<i64>,
        ) -> LockNode {
            placed.insert(pid);
            let mut blocks = Vec::new();
            for c in children.get(&pid).into_iter().flatten() {
                if !placed.contains(c) {
                    blocks.push(build(*c, by_pid, children, placed));
                }
            }
            let wait = |n: &LockNode| n.session.lock_wait_seconds.or(n.session.query_seconds);
            blocks.sort_by(|a, b| wait(b).unwrap_or(0.0).total_cmp(&wait(a).unwrap_or(0.0)));
            LockNode {
                session: by_pid[&pid].clone(),
                blocks,
            }
        }
        let mut out: Vec<LockNode> = Vec::new();
        for r in roots {
            out.push(build(r, &by_pid, &children, &mut placed));
        }
        // Cycles: blockers that also wait, none of them placed from a root.
        for p in children.keys() {
            if !placed.contains(p) {
                out.push(build(*p, &by_pid, &children, &mut placed));
            }
        }
        let oldest = |n: &LockNode| n.session.transaction_seconds.unwrap_or(0.0);
        out.sort_by(|a, b| oldest(b).total_cmp(&oldest(a)));
        out
    }

    /// Sessions in a transaction open at least `min_seconds`, oldest first.
    pub fn long_transactions(&self, min_seconds: f64) -> Vec<PgSession> {
        let mut v: Vec<PgSession> = self
            .sessions
            .iter()
            .filter(|s| s.transaction_seconds.is_some_and(|t| t >= min_seconds))
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            b.transaction_seconds
                .unwrap_or(0.0)
                .total_cmp(&a.transaction_seconds.unwrap_or(0.0))
        });
        v
    }
}

/// One line of the PostgreSQL maintenance advisor: what to do, on what, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PgAdvice {
    /// The instance (the collector's name).
    pub instance: String,
    /// The database.
    pub datname: String,
    /// `wraparound`, `vacuum`, `analyze`, `table_bloat`, `index_bloat`, `unused_index`
    /// or `duplicate_index`.
    pub kind: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// What it is about: a database, or a table or index as quoted SQL.
    pub target: String,
    /// What to run.
    pub action: String,
    /// Why, in words, with the numbers.
    pub reason: String,
    /// The numbers behind it, by name.
    pub figures: std::collections::BTreeMap<String, f64>,
}

/// The advisor's latest findings for one PostgreSQL instance.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PgAdvisorReport {
    /// The instance (the collector's name).
    pub instance: String,
    /// When the catalog was read (Unix seconds).
    pub at: f64,
    /// The advice, the most severe first.
    pub advice: Vec<PgAdvice>,
}

/// One process in a snapshot's top list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopProcess {
    /// Its process id.
    pub pid: i64,
    /// Its command name.
    pub comm: String,
    /// Its command line (truncated).
    pub cmdline: String,
    /// CPU used over the sampling interval, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    /// Resident memory in bytes.
    pub rss_bytes: f64,
}

/// One entry of a Redis server's slow log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RedisSlowEntry {
    /// The entry's id (grows by one per entry; restarts at 0 after a restart or reset).
    pub id: i64,
    /// When the command ran (Unix seconds).
    pub time: i64,
    /// How long it ran, in seconds.
    pub duration_seconds: f64,
    /// The command's name.
    pub command: String,
    /// Its arguments as Redis logged them; empty unless configured to keep them
    /// (`slowlog_arguments: true`): values may hold user data.
    pub arguments: Vec<String>,
    /// How many arguments it had.
    pub argument_count: usize,
    /// The client's address.
    pub client: String,
    /// The client's name (`CLIENT SETNAME`).
    pub client_name: String,
}

/// One key of a big-key sample.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RedisBigKey {
    /// The database number.
    pub db: u32,
    /// The key.
    pub key: String,
    /// Its type (`string`, `hash`, `list`, …).
    pub key_type: String,
    /// `MEMORY USAGE` (bytes, estimated by Redis for collections).
    pub bytes: f64,
}

/// A big-key sample: the largest keys among those scanned.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RedisBigKeys {
    /// When the sample ended (Unix seconds).
    pub at: f64,
    /// Keys looked at.
    pub scanned: u64,
    /// Whether the scan covered every key (false: it stopped at its limit).
    pub complete: bool,
    /// The largest keys, the largest first.
    pub keys: Vec<RedisBigKey>,
}

/// What Lookout knows of one Redis server beyond its metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RedisDiagnostics {
    /// The instance (the collector's name).
    pub instance: String,
    /// When it was last read (Unix seconds).
    pub at: f64,
    /// The slow log, the newest first (kept across runs, up to a bound).
    pub slowlog: Vec<RedisSlowEntry>,
    /// `LATENCY DOCTOR`'s report.
    pub latency_doctor: String,
    /// `MEMORY DOCTOR`'s report.
    pub memory_doctor: String,
    /// The last big-key sample, when enabled.
    pub big_keys: Option<RedisBigKeys>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(pid: i64, blocked_by: &[i64], xact: f64) -> PgSession {
        PgSession {
            pid,
            datname: "app".into(),
            user: "u".into(),
            application: String::new(),
            client: String::new(),
            state: if blocked_by.is_empty() {
                "idle in transaction".into()
            } else {
                "active".into()
            },
            wait_event_type: if blocked_by.is_empty() {
                "Client"
            } else {
                "Lock"
            }
            .into(),
            wait_event: String::new(),
            transaction_seconds: Some(xact),
            query_seconds: Some(xact / 2.0),
            state_seconds: Some(1.0),
            lock_wait_seconds: (!blocked_by.is_empty()).then_some(xact / 2.0),
            blocked_by: blocked_by.to_vec(),
            query: format!("q{pid}"),
        }
    }

    #[test]
    fn the_lock_tree_roots_at_the_blocker_that_waits_on_nobody() {
        let s = PgSessions {
            instance: "main".into(),
            at: 0.0,
            sessions: vec![
                session(10, &[], 100.0),
                session(11, &[10], 50.0),
                session(12, &[11, 10], 20.0),
                session(13, &[10], 80.0),
                session(14, &[], 5.0),
                // A blocker that has left (not sampled) is ignored.
                session(15, &[999], 3.0),
            ],
        };
        let t = s.lock_tree();
        assert_eq!(t.len(), 1, "{t:#?}");
        assert_eq!(t[0].session.pid, 10);
        let kids: Vec<i64> = t[0].blocks.iter().map(|n| n.session.pid).collect();
        assert_eq!(kids, vec![13, 11], "longest wait first");
        let under_11: Vec<i64> = t[0].blocks[1]
            .blocks
            .iter()
            .map(|n| n.session.pid)
            .collect();
        assert_eq!(
            under_11,
            vec![12],
            "12 waits on 11 and 10: shown once, under 11"
        );
        let long = s.long_transactions(50.0);
        assert_eq!(
            long.iter().map(|x| x.pid).collect::<Vec<_>>(),
            vec![10, 13, 11]
        );
        assert!(long[0].idle_in_transaction());
    }

    #[test]
    fn a_cycle_is_shown_once_and_does_not_recurse() {
        let s = PgSessions {
            instance: "main".into(),
            at: 0.0,
            sessions: vec![
                session(1, &[2], 10.0),
                session(2, &[1], 9.0),
                session(3, &[3], 1.0),
            ],
        };
        let t = s.lock_tree();
        assert_eq!(t.len(), 1, "{t:#?}");
        assert_eq!(t[0].session.pid, 1);
        assert_eq!(t[0].blocks[0].session.pid, 2);
        assert!(t[0].blocks[0].blocks.is_empty());
    }
}
