//! PostgreSQL: postgres_exporter's default families, under its names and labels, read
//! with tokio-postgres over one connection kept between runs (reconnected after a
//! failure).
//!
//! Families (labels as the exporter gives them; `job`/`instance` come from the
//! scheduler): `pg_up`, `pg_static`, `pg_database_size_bytes`, `pg_locks_count`,
//! `pg_stat_activity_count`/`_max_tx_duration`, `pg_stat_database_*`,
//! `pg_stat_database_conflicts_*`, `pg_stat_bgwriter_*` (the `_total` names and the older
//! un-suffixed ones), `pg_stat_checkpointer_*` (PostgreSQL 17+), `pg_stat_archiver_*`,
//! `pg_replication_*`, `pg_stat_replication_*`, `pg_replication_slots_*`,
//! `pg_stat_user_tables_*`, `pg_statio_user_tables_*`, `pg_settings_*` (units converted
//! to seconds and bytes, as the exporter does), `pg_wal_*`, and the top statements of
//! `pg_stat_statements` (`pg_stat_statements_*`, labelled by `user`, `datname` and
//! `queryid`, never by the query text, which goes to [`PostgresBoard`] instead), and
//! Lookout's own per-interval figures of the busiest statements
//! (`pg_stat_statements_interval_*`, see `pg_statements`).
//!
//! The exporter's `server` label is not written: it repeats `instance`, and the exporter
//! itself sets it on some families only and is phasing it out.
//!
//! Each query stands alone: one that fails for lack of an extension or a privilege is
//! reported in [`AsyncCollector::notes`] and the rest are still read. Losing the
//! connection ends the run with `pg_up 0` and an error.
//!
//! Wait events, Lookout's own: every second, over the same connection, the client
//! sessions of `pg_stat_activity` (not idle, not this one) are counted by
//! `wait_event_type`, `wait_event`, `state`, `datname` and `usename`; a running session
//! without a wait event counts as `CPU`. Each run writes the running totals as
//! `pg_wait_event_samples_total` (one per session per second, so its `rate` is the
//! average number of sessions in that state: "what are sessions waiting on"), the last
//! second's counts as `pg_wait_event_sessions`, and `pg_wait_event_sampling_runs_total`.
//! The same sample keeps the sessions themselves on the [`PostgresBoard`] (age of their
//! transaction, statement and state, the statement's text, and for those waiting on a
//! lock, who blocks them and since when), from which the API serves the lock tree and
//! the long and idle-in-transaction sessions; `pg_blocked_sessions` and
//! `pg_lock_wait_max_seconds` count the blocked and their longest wait.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use lookout_model::status::{
    LockNode, PgAdvice, PgAdvisorReport, PgSession, PgSessions, Statement,
};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};

use crate::pg_advisor;
use crate::pg_statements::{self, Tracker};
use crate::{AsyncCollector, CollectFuture, Error, Metric, Result};

/// How to reach one PostgreSQL server.
#[derive(Debug, Clone)]
pub struct PostgresTarget {
    /// The configured name (the `instance` label).
    pub name: String,
    /// A libpq connection string or URL.
    pub dsn: String,
    /// The password, when not in the DSN (read from a file or an environment variable).
    pub password: Option<String>,
    /// How many statements of `pg_stat_statements` become metrics.
    pub top_statements: usize,
    /// Whether the session sampler and the maintenance advisor run (Lookout's own
    /// diagnostics beyond the exporter's families).
    pub diagnostics: bool,
}

/// What the PostgreSQL collectors saw last, by instance name, for the HTTP API: the top
/// statements with their text (`/api/v1/lookout/slow_queries`) and the sampled sessions
/// (`/api/v1/lookout/postgres/locks`, `…/transactions`). Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct PostgresBoard {
    statements: Arc<RwLock<BTreeMap<String, Vec<Statement>>>>,
    sessions: Arc<RwLock<BTreeMap<String, PgSessions>>>,
    advisor: Arc<RwLock<BTreeMap<String, PgAdvisorReport>>>,
}

impl PostgresBoard {
    /// Every instance's statements, slowest (by total time) first within each instance.
    pub fn statements(&self) -> Vec<Statement> {
        self.statements
            .read()
            .expect("lock poisoned")
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    /// Every instance's latest session sample.
    pub fn sessions(&self) -> Vec<PgSessions> {
        self.sessions
            .read()
            .expect("lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Every instance's latest maintenance advice.
    pub fn advisor(&self) -> Vec<PgAdvisorReport> {
        self.advisor
            .read()
            .expect("lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    fn set_advisor(&self, v: PgAdvisorReport) {
        self.advisor
            .write()
            .expect("lock poisoned")
            .insert(v.instance.clone(), v);
    }

    fn set_statements(&self, instance: &str, v: Vec<Statement>) {
        self.statements
            .write()
            .expect("lock poisoned")
            .insert(instance.to_string(), v);
    }

    fn set_sessions(&self, v: PgSessions) {
        self.sessions
            .write()
            .expect("lock poisoned")
            .insert(v.instance.clone(), v);
    }
}

/// The PostgreSQL collector for one server.
pub struct PostgresCollector {
    target: PostgresTarget,
    collector_name: String,
    config: tokio_postgres::Config,
    client: Arc<tokio::sync::Mutex<Option<Client>>>,
    notes: Mutex<Vec<String>>,
    slow: PostgresBoard,
    waits: Arc<Mutex<WaitSamples>>,
    sampling: std::sync::atomic::AtomicBool,
    /// The server's `server_version_num`, once read (the sampler's query depends on it).
    version: Arc<AtomicU32>,
    /// The statements' figures at the last run, and their texts.
    statements: Mutex<Tracker>,
    /// When the advisor last read the catalog.
    advised: Mutex<Option<std::time::Instant>>,
    /// Notified when the connection drops between runs.
    wake: Arc<tokio::sync::Notify>,
}

/// How often sessions are sampled for their wait events.
const WAIT_SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Most (wait event, state, database, user) combinations kept; later ones are not.
const MAX_WAIT_KEYS: usize = 10_000;

/// One combination of the wait-event sample's labels: wait_event_type, wait_event,
/// state, datname, usename.
type WaitKey = [String; 5];

/// The wait-event samples taken so far.
#[derive(Debug, Default)]
struct WaitSamples {
    /// Session-samples per combination since the collector started.
    total: BTreeMap<WaitKey, u64>,
    /// The last sample's sessions per combination.
    last: BTreeMap<WaitKey, u64>,
    /// Samples taken.
    runs: u64,
    /// Sessions waiting on another's lock in the last sample.
    blocked: u64,
    /// The longest of their waits (seconds).
    max_lock_wait: f64,
}

/// The non-idle client sessions, one row each (at most [`MAX_SESSIONS`]); the blockers
/// and the lock wait's start are read only for sessions waiting on a lock, so a quiet
/// server pays for neither. `{waitstart}` is the lock wait's age where PostgreSQL has
/// `pg_locks.waitstart` (14 and later), NULL before.
const SESSIONS_SQL: &str = "SELECT a.pid::text AS pid, coalesce(a.usename, '') AS usename, \
     coalesce(a.datname, '') AS datname, coalesce(a.application_name, '') AS application, \
     coalesce(host(a.client_addr), '') AS client, coalesce(a.state, '') AS state, \
     CASE WHEN a.wait_event_type IS NULL AND a.state = 'active' THEN 'CPU' ELSE coalesce(a.wait_event_type, '') END AS wait_event_type, \
     CASE WHEN a.wait_event IS NULL AND a.state = 'active' THEN 'CPU' ELSE coalesce(a.wait_event, '') END AS wait_event, \
     extract(epoch FROM now() - a.xact_start)::float8 AS xact_seconds, \
     extract(epoch FROM now() - a.query_start)::float8 AS query_seconds, \
     extract(epoch FROM now() - a.state_change)::float8 AS state_seconds, \
     CASE WHEN a.wait_event_type = 'Lock' THEN array_to_string(pg_blocking_pids(a.pid), ',') END AS blocked_by, \
     {waitstart} AS lock_wait_seconds, a.query \
     FROM pg_stat_activity a WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() \
     AND a.state IS DISTINCT FROM 'idle' LIMIT {limit}";

/// The lock wait's age, from PostgreSQL 14's `pg_locks.waitstart`.
const WAITSTART_SQL: &str = "CASE WHEN a.wait_event_type = 'Lock' THEN (SELECT extract(epoch FROM now() - min(l.waitstart))::float8 \
     FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted) END";

/// Most sessions read per sample (beyond any sane `max_connections`).
const MAX_SESSIONS: usize = 10_000;
/// Most bytes of a session's statement kept (PostgreSQL's own default
/// `track_activity_query_size` is 1 kB).
const MAX_QUERY_BYTES: usize = 4096;

/// The session query for a server of `version` (`server_version_num`).
fn sessions_sql(version: u32) -> String {
    SESSIONS_SQL
        .replace(
            "{waitstart}",
            if version >= 140000 {
                WAITSTART_SQL
            } else {
                "NULL::float8"
            },
        )
        .replace("{limit}", &MAX_SESSIONS.to_string())
}

/// A session from one row of [`SESSIONS_SQL`].
fn session(r: &SimpleQueryRow) -> PgSession {
    let text = |c: &str| r.get(c).unwrap_or("").to_string();
    let mut query = text("query");
    lookout_model::truncate_utf8(&mut query, MAX_QUERY_BYTES);
    PgSession {
        pid: r.get("pid").and_then(|p| p.parse().ok()).unwrap_or(0),
        datname: text("datname"),
        user: text("usename"),
        application: text("application"),
        client: text("client"),
        state: text("state"),
        wait_event_type: text("wait_event_type"),
        wait_event: text("wait_event"),
        transaction_seconds: num(r.get("xact_seconds")),
        query_seconds: num(r.get("query_seconds")),
        state_seconds: num(r.get("state_seconds")),
        lock_wait_seconds: num(r.get("lock_wait_seconds")),
        blocked_by: r
            .get("blocked_by")
            .unwrap_or("")
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect(),
        query,
    }
}

impl WaitSamples {
    /// Adds one sample's sessions.
    fn add(&mut self, sessions: &[PgSession]) {
        self.runs += 1;
        self.last.clear();
        for s in sessions {
            let key: WaitKey = [
                s.wait_event_type.clone(),
                s.wait_event.clone(),
                s.state.clone(),
                s.datname.clone(),
                s.user.clone(),
            ];
            if !self.total.contains_key(&key) && self.total.len() >= MAX_WAIT_KEYS {
                continue;
            }
            *self.total.entry(key.clone()).or_default() += 1;
            *self.last.entry(key).or_default() += 1;
        }
        self.blocked = sessions.iter().filter(|s| !s.blocked_by.is_empty()).count() as u64;
        self.max_lock_wait = sessions
            .iter()
            .filter(|s| !s.blocked_by.is_empty())
            .filter_map(|s| s.lock_wait_seconds.or(s.query_seconds))
            .fold(0.0, f64::max);
    }

    /// The figures, as metrics.
    fn emit(&self, out: &mut Vec<Metric>) {
        let labels = |k: &WaitKey| -> [(&'static str, String); 5] {
            [
                ("wait_event_type", k[0].clone()),
                ("wait_event", k[1].clone()),
                ("state", k[2].clone()),
                ("datname", k[3].clone()),
                ("usename", k[4].clone()),
            ]
        };
        for (name, map) in [
            ("pg_wait_event_samples_total", &self.total),
            ("pg_wait_event_sessions", &self.last),
        ] {
            for (k, n) in map {
                let l = labels(k);
                let pairs: Vec<(&str, &str)> = l.iter().map(|(a, b)| (*a, b.as_str())).collect();
                out.push(Metric::new(name, &pairs, *n as f64));
            }
        }
        out.push(Metric::new(
            "pg_wait_event_sampling_runs_total",
            &[],
            self.runs as f64,
        ));
        out.push(Metric::new("pg_blocked_sessions", &[], self.blocked as f64));
        out.push(Metric::new(
            "pg_lock_wait_max_seconds",
            &[],
            self.max_lock_wait,
        ));
    }
}

/// What the one-second sampler shares with its collector (held weakly, so the sampler
/// ends when the collector is dropped).
struct Sampler {
    instance: String,
    client: std::sync::Weak<tokio::sync::Mutex<Option<Client>>>,
    waits: std::sync::Weak<Mutex<WaitSamples>>,
    version: std::sync::Weak<AtomicU32>,
    board: PostgresBoard,
}

impl Sampler {
    /// Samples the sessions every [`WAIT_SAMPLE_EVERY`] over the collector's connection
    /// (when it has one; a run holding it delays the sample): their wait events are
    /// counted, the sessions themselves go to the board.
    async fn run(self) {
        let mut tick = tokio::time::interval(WAIT_SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let (Some(client), Some(waits), Some(version)) = (
                self.client.upgrade(),
                self.waits.upgrade(),
                self.version.upgrade(),
            ) else {
                return;
            };
            let sql = sessions_sql(version.load(Ordering::Relaxed));
            let sessions = {
                let guard = client.lock().await;
                let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) else {
                    continue;
                };
                match c.simple_query(&sql).await {
                    Ok(msgs) => msgs
                        .iter()
                        .filter_map(|m| match m {
                            SimpleQueryMessage::Row(r) => Some(session(r)),
                            _ => None,
                        })
                        .collect::<Vec<_>>(),
                    Err(e) => {
                        tracing::debug!(instance = %self.instance, error = %describe(&e), "Sampling PostgreSQL sessions failed");
                        continue;
                    }
                }
            };
            waits.lock().expect("lock poisoned").add(&sessions);
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.board.set_sessions(PgSessions {
                instance: self.instance.clone(),
                at,
                sessions,
            });
        }
    }
}

impl std::fmt::Debug for PostgresCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCollector")
            .field("name", &self.target.name)
            .finish()
    }
}

impl PostgresCollector {
    /// A collector for `target`; statements and sessions go to `slow`. Fails when the DSN does not
    /// parse.
    pub fn new(target: PostgresTarget, slow: PostgresBoard) -> Result<Self> {
        let mut config: tokio_postgres::Config =
            target
                .dsn
                .parse()
                .map_err(|e: tokio_postgres::Error| Error::Server {
                    server: format!("postgres {}", target.name),
                    message: format!("invalid dsn: {e}"),
                })?;
        if let Some(p) = &target.password {
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("lookout");
        // A monitoring query must never wait behind a user's lock (an exclusively locked
        // table would hold the whole run, and every second's wait-event sample, until
        // it is released) or run unbounded: it fails after a second of waiting for a
        // lock, ten of running, is noted, and the run goes on. A DSN's own `options`
        // come first and win.
        let mut opts = config.get_options().map(str::to_string).unwrap_or_default();
        for o in ["lock_timeout=1000", "statement_timeout=10000"] {
            let key = o.split('=').next().unwrap_or_default();
            if !opts.contains(key) {
                opts.push_str(&format!(" -c {o}"));
            }
        }
        config.options(opts.trim());
        Ok(Self {
            collector_name: format!("postgres/{}", target.name),
            target,
            config,
            client: Arc::new(tokio::sync::Mutex::new(None)),
            notes: Mutex::new(Vec::new()),
            slow,
            waits: Arc::default(),
            sampling: std::sync::atomic::AtomicBool::new(false),
            version: Arc::default(),
            statements: Mutex::default(),
            advised: Mutex::default(),
            wake: Arc::default(),
        })
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Server {
            server: format!("postgres {}", self.target.name),
            message: message.into(),
        }
    }

    async fn run(&self, out: &mut Vec<Metric>) -> Result<()> {
        if self.target.diagnostics
            && !self
                .sampling
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let sampler = Sampler {
                instance: self.target.name.clone(),
                client: Arc::downgrade(&self.client),
                waits: Arc::downgrade(&self.waits),
                version: Arc::downgrade(&self.version),
                board: self.slow.clone(),
            };
            tokio::spawn(sampler.run());
        }
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            match self.config.connect(NoTls).await {
                Ok((client, conn)) => {
                    let name = self.target.name.clone();
                    let wake = Arc::downgrade(&self.wake);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(instance = %name, error = %e, "PostgreSQL connection closed");
                        }
                        // The server went away (or closed the session): run now, so
                        // pg_up 0 is written at once rather than at the next tick.
                        if let Some(w) = wake.upgrade() {
                            w.notify_one();
                        }
                    });
                    *guard = Some(client);
                }
                Err(e) => {
                    out.push(Metric::new("pg_up", &[], 0.0));
                    return Err(self.err(format!("connecting: {}", describe(&e))));
                }
            }
        }
        let client = guard.as_ref().expect("connected above");
        let mut r = Reader {
            client,
            out,
            notes: Vec::new(),
        };
        let (version, full) = match r.rows("version", VERSION_SQL).await {
            Some(rows) if !rows.is_empty() => (
                num(rows[0].get("server_version_num")).unwrap_or(0.0) as u32,
                rows[0].get("version").unwrap_or("").to_string(),
            ),
            _ => {
                let closed = client.is_closed();
                drop(r);
                *guard = None;
                out.push(Metric::new("pg_up", &[], 0.0));
                return Err(self.err(if closed {
                    "connection lost".to_string()
                } else {
                    "cannot read the server version".to_string()
                }));
            }
        };
        self.version.store(version, Ordering::Relaxed);
        r.out.push(Metric::new("pg_up", &[], 1.0));
        if self.target.diagnostics {
            self.waits.lock().expect("lock poisoned").emit(r.out);
        }
        r.collect_all(
            version,
            &full,
            self.target.top_statements,
            &self.target.name,
            &self.slow,
            &self.statements,
        )
        .await;
        let due = self.target.diagnostics && {
            let mut at = self.advised.lock().expect("lock poisoned");
            let due = at.is_none_or(|t| t.elapsed() >= pg_advisor::ADVISOR_EVERY);
            if due {
                *at = Some(std::time::Instant::now());
            }
            due
        };
        r.maintenance(&self.target.name, &self.slow, due).await;
        let notes = std::mem::take(&mut r.notes);
        drop(r);
        let lost = client.is_closed();
        *self.notes.lock().expect("lock poisoned") = notes;
        if lost {
            *guard = None;
            return Err(self.err("connection lost during the run"));
        }
        Ok(())
    }
}

impl AsyncCollector for PostgresCollector {
    fn name(&self) -> &str {
        &self.collector_name
    }

    fn collect<'a>(&'a self, out: &'a mut Vec<Metric>) -> CollectFuture<'a> {
        Box::pin(self.run(out))
    }

    fn notes(&self) -> Vec<String> {
        self.notes.lock().expect("lock poisoned").clone()
    }

    fn wake(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(Arc::clone(&self.wake))
    }
}

/// The message of a tokio-postgres error with its cause (the bare error often says only
/// "error connecting to server").
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    match std::error::Error::source(e) {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    }
}

fn num(v: Option<&str>) -> Option<f64> {
    match v? {
        "t" => Some(1.0),
        "f" => Some(0.0),
        s => s.parse().ok(),
    }
}

/// A row's value as the exporter reports it: NULL is NaN.
fn value(row: &SimpleQueryRow, col: &str) -> f64 {
    num(row.get(col)).unwrap_or(f64::NAN)
}

const VERSION_SQL: &str =
    "SELECT current_setting('server_version_num') AS server_version_num, version() AS version";

struct Reader<'a> {
    client: &'a Client,
    out: &'a mut Vec<Metric>,
    notes: Vec<String>,
}

impl Reader<'_> {
    /// Runs one query; a failure becomes a note naming `what`.
    async fn rows(&mut self, what: &str, sql: &str) -> Option<Vec<SimpleQueryRow>> {
        match self.client.simple_query(sql).await {
            Ok(msgs) => Some(
                msgs.into_iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(r) => Some(r),
                        _ => None,
                    })
                    .collect(),
            ),
            Err(e) => {
                if !self.client.is_closed() {
                    self.notes.push(format!("{what}: {}", describe(&e)));
                }
                None
            }
        }
    }

    /// One metric per row and value column: `prefix + column` (or the renamed suffix),
    /// labelled with the label columns.
    fn emit(
        &mut self,
        rows: &[SimpleQueryRow],
        labels: &[&str],
        values: &[(&str, &str)],
        prefix: &str,
    ) {
        for row in rows {
            let ls: Vec<(&str, &str)> = labels
                .iter()
                .map(|l| (*l, row.get(*l).unwrap_or("")))
                .collect();
            for (col, suffix) in values {
                let name = format!("{prefix}{suffix}");
                self.out.push(Metric::new(&name, &ls, value(row, col)));
            }
        }
    }

    async fn table(
        &mut self,
        what: &str,
        sql: &str,
        labels: &[&str],
        values: &[(&str, &str)],
        prefix: &str,
    ) {
        if let Some(rows) = self.rows(what, sql).await {
            self.emit(&rows, labels, values, prefix);
        }
    }

    async fn collect_all(
        &mut self,
        version: u32,
        full_version: &str,
        top: usize,
        instance: &str,
        slow: &PostgresBoard,
        tracker: &Mutex<Tracker>,
    ) {
        let short = format!("{}.{}.0", version / 10000, version % 100);
        self.out.push(Metric::new(
            "pg_static",
            &[("short_version", &short), ("version", full_version)],
            1.0,
        ));
        self.table(
            "pg_database_size",
            "SELECT datname, pg_database_size(datname)::float8 AS size_bytes FROM pg_database",
            &["datname"],
            &[("size_bytes", "size_bytes")],
            "pg_database_",
        )
        .await;
        self.table(
            "pg_locks",
            LOCKS_SQL,
            &["datname", "mode"],
            &[("count", "count")],
            "pg_locks_",
        )
        .await;
        self.table(
            "pg_stat_activity",
            ACTIVITY_SQL,
            &["datname", "state"],
            &[("count", "count"), ("max_tx_duration", "max_tx_duration")],
            "pg_stat_activity_",
        )
        .await;
        self.stat_database(version).await;
        self.table(
            "pg_stat_database_conflicts",
            "SELECT datid::text, datname, confl_tablespace, confl_lock, confl_snapshot, \
             confl_bufferpin, confl_deadlock FROM pg_stat_database_conflicts",
            &["datid", "datname"],
            &[
                ("confl_tablespace", "confl_tablespace"),
                ("confl_lock", "confl_lock"),
                ("confl_snapshot", "confl_snapshot"),
                ("confl_bufferpin", "confl_bufferpin"),
                ("confl_deadlock", "confl_deadlock"),
            ],
            "pg_stat_database_conflicts_",
        )
        .await;
        self.bgwriter(version).await;
        self.table(
            "pg_stat_archiver",
            "SELECT archived_count, failed_count, \
             extract(epoch FROM now() - last_archived_time)::float8 AS last_archive_age \
             FROM pg_stat_archiver",
            &[],
            &[
                ("archived_count", "archived_count"),
                ("failed_count", "failed_count"),
                ("last_archive_age", "last_archive_age"),
            ],
            "pg_stat_archiver_",
        )
        .await;
        self.replication().await;
        self.user_tables().await;
        self.settings().await;
        self.table(
            "pg_wal",
            "SELECT count(*) AS segments, coalesce(sum(size), 0)::float8 AS size_bytes \
             FROM pg_ls_waldir()",
            &[],
            &[("segments", "segments"), ("size_bytes", "size_bytes")],
            "pg_wal_",
        )
        .await;
        self.statements(version, top, instance, slow, tracker).await;
    }

    async fn stat_database(&mut self, version: u32) {
        let mut cols = vec![
            "numbackends",
            "xact_commit",
            "xact_rollback",
            "blks_read",
            "blks_hit",
            "tup_returned",
            "tup_fetched",
            "tup_inserted",
            "tup_updated",
            "tup_deleted",
            "conflicts",
            "temp_files",
            "temp_bytes",
            "deadlocks",
            "blk_read_time",
            "blk_write_time",
        ];
        if version >= 120000 {
            cols.push("checksum_failures");
        }
        if version >= 140000 {
            cols.extend([
                "session_time",
                "active_time",
                "idle_in_transaction_time",
                "sessions",
                "sessions_abandoned",
                "sessions_fatal",
                "sessions_killed",
            ]);
        }
        let mut select: Vec<String> = cols.iter().map(|c| format!("{c}::float8 AS {c}")).collect();
        select.push("extract(epoch FROM stats_reset)::float8 AS stats_reset".into());
        if version >= 120000 {
            select.push(
                "extract(epoch FROM checksum_last_failure)::float8 AS checksum_last_failure".into(),
            );
            cols.push("checksum_last_failure");
        }
        cols.push("stats_reset");
        let sql = format!(
            "SELECT datid::text, coalesce(datname, '') AS datname, {} FROM pg_stat_database",
            select.join(", ")
        );
        let values: Vec<(&str, &str)> = cols.iter().map(|c| (*c, *c)).collect();
        self.table(
            "pg_stat_database",
            &sql,
            &["datid", "datname"],
            &values,
            "pg_stat_database_",
        )
        .await;
    }

    async fn bgwriter(&mut self, version: u32) {
        let (sql, cols): (&str, &[&str]) = if version >= 170000 {
            (
                "SELECT buffers_clean, maxwritten_clean, buffers_alloc, \
                 extract(epoch FROM stats_reset)::float8 AS stats_reset FROM pg_stat_bgwriter",
                &[
                    "buffers_clean",
                    "maxwritten_clean",
                    "buffers_alloc",
                    "stats_reset",
                ],
            )
        } else {
            (
                "SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time, \
                 checkpoint_sync_time, buffers_checkpoint, buffers_clean, maxwritten_clean, \
                 buffers_backend, buffers_backend_fsync, buffers_alloc, \
                 extract(epoch FROM stats_reset)::float8 AS stats_reset FROM pg_stat_bgwriter",
                &[
                    "checkpoints_timed",
                    "checkpoints_req",
                    "checkpoint_write_time",
                    "checkpoint_sync_time",
                    "buffers_checkpoint",
                    "buffers_clean",
                    "maxwritten_clean",
                    "buffers_backend",
                    "buffers_backend_fsync",
                    "buffers_alloc",
                    "stats_reset",
                ],
            )
        };
        if let Some(rows) = self.rows("pg_stat_bgwriter", sql).await {
            // The exporter's current names end in `_total`; dashboards written for its
            // older query file use the bare column names. Both are written.
            let total: Vec<(String, String)> = cols
                .iter()
                .map(|c| (c.to_string(), format!("{c}_total")))
                .collect();
            let total: Vec<(&str, &str)> = total
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            let bare: Vec<(&str, &str)> = cols.iter().map(|c| (*c, *c)).collect();
            self.emit(&rows, &[], &total, "pg_stat_bgwriter_");
            self.emit(&rows, &[], &bare, "pg_stat_bgwriter_");
        }
        if version >= 170000 {
            self.table(
                "pg_stat_checkpointer",
                "SELECT num_timed, num_requested, restartpoints_timed, restartpoints_req, \
                 restartpoints_done, write_time, sync_time, buffers_written, \
                 extract(epoch FROM stats_reset)::float8 AS stats_reset \
                 FROM pg_stat_checkpointer",
                &[],
                &[
                    ("num_timed", "num_timed_total"),
                    ("num_requested", "num_requested_total"),
                    ("restartpoints_timed", "restartpoints_timed_total"),
                    ("restartpoints_req", "restartpoints_req_total"),
                    ("restartpoints_done", "restartpoints_done_total"),
                    ("write_time", "write_time_total"),
                    ("sync_time", "sync_time_total"),
                    ("buffers_written", "buffers_written_total"),
                    ("stats_reset", "stats_reset_total"),
                ],
                "pg_stat_checkpointer_",
            )
            .await;
        }
    }

    async fn replication(&mut self) {
        self.table(
            "pg_replication",
            "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 \
             WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
             ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp())) \
             END::float8 AS lag, \
             CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END AS is_replica, \
             greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8 \
             AS last_replay",
            &[],
            &[
                ("lag", "lag_seconds"),
                ("is_replica", "is_replica"),
                ("last_replay", "last_replay_seconds"),
            ],
            "pg_replication_",
        )
        .await;
        self.table(
            "pg_stat_replication",
            "SELECT coalesce(application_name, '') AS application_name, \
             coalesce(client_addr::text, '') AS client_addr, coalesce(state, '') AS state, \
             coalesce(sync_state, '') AS sync_state, \
             (CASE WHEN pg_is_in_recovery() THEN NULL \
              ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') END)::float8 \
             AS current_wal_lsn_bytes, \
             (CASE WHEN pg_is_in_recovery() THEN NULL \
              ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) END)::float8 \
             AS wal_lsn_diff, \
             extract(epoch FROM replay_lag)::float8 AS replay_lag_seconds, \
             extract(epoch FROM write_lag)::float8 AS write_lag_seconds, \
             extract(epoch FROM flush_lag)::float8 AS flush_lag_seconds \
             FROM pg_stat_replication",
            &["application_name", "client_addr", "state", "sync_state"],
            &[
                ("current_wal_lsn_bytes", "pg_current_wal_lsn_bytes"),
                ("wal_lsn_diff", "pg_wal_lsn_diff"),
                ("replay_lag_seconds", "replay_lag_seconds"),
                ("write_lag_seconds", "write_lag_seconds"),
                ("flush_lag_seconds", "flush_lag_seconds"),
            ],
            "pg_stat_replication_",
        )
        .await;
        self.table(
            "pg_replication_slots",
            "SELECT slot_name, coalesce(database, '') AS database, \
             (CASE WHEN active THEN 1 ELSE 0 END) AS active, \
             (CASE WHEN pg_is_in_recovery() THEN NULL \
              ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) END)::float8 \
             AS pg_wal_lsn_diff FROM pg_replication_slots",
            &["slot_name", "database"],
            &[("active", "active"), ("pg_wal_lsn_diff", "pg_wal_lsn_diff")],
            "pg_replication_slots_",
        )
        .await;
    }

    async fn user_tables(&mut self) {
        let counters = [
            "seq_scan",
            "seq_tup_read",
            "idx_scan",
            "idx_tup_fetch",
            "n_tup_ins",
            "n_tup_upd",
            "n_tup_del",
            "n_tup_hot_upd",
            "n_live_tup",
            "n_dead_tup",
            "n_mod_since_analyze",
            "vacuum_count",
            "autovacuum_count",
            "analyze_count",
            "autoanalyze_count",
        ];
        let times = [
            "last_vacuum",
            "last_autovacuum",
            "last_analyze",
            "last_autoanalyze",
        ];
        let mut select: Vec<String> = counters
            .iter()
            .map(|c| format!("coalesce({c}, 0)::float8 AS {c}"))
            .collect();
        select.extend(
            times
                .iter()
                .map(|c| format!("coalesce(extract(epoch FROM {c}), 0)::float8 AS {c}")),
        );
        select.push("pg_indexes_size(relid)::float8 AS index_size_bytes".into());
        select.push("pg_table_size(relid)::float8 AS table_size_bytes".into());
        let sql = format!(
            "SELECT current_database() AS datname, schemaname, relname, {} \
             FROM pg_stat_user_tables",
            select.join(", ")
        );
        let mut values: Vec<(&str, &str)> = counters.iter().map(|c| (*c, *c)).collect();
        values.extend(times.iter().map(|c| (*c, *c)));
        values.push(("index_size_bytes", "index_size_bytes"));
        values.push(("table_size_bytes", "table_size_bytes"));
        self.table(
            "pg_stat_user_tables",
            &sql,
            &["datname", "schemaname", "relname"],
            &values,
            "pg_stat_user_tables_",
        )
        .await;
        let io = [
            ("heap_blks_read", "heap_blocks_read"),
            ("heap_blks_hit", "heap_blocks_hit"),
            ("idx_blks_read", "idx_blocks_read"),
            ("idx_blks_hit", "idx_blocks_hit"),
            ("toast_blks_read", "toast_blocks_read"),
            ("toast_blks_hit", "toast_blocks_hit"),
            ("tidx_blks_read", "tidx_blocks_read"),
            ("tidx_blks_hit", "tidx_blocks_hit"),
        ];
        let sql = format!(
            "SELECT current_database() AS datname, schemaname, relname, {} \
             FROM pg_statio_user_tables",
            io.iter()
                .map(|(c, _)| format!("coalesce({c}, 0)::float8 AS {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.table(
            "pg_statio_user_tables",
            &sql,
            &["datname", "schemaname", "relname"],
            &io,
            "pg_statio_user_tables_",
        )
        .await;
    }

    async fn settings(&mut self) {
        let Some(rows) = self
            .rows(
                "pg_settings",
                "SELECT name, setting, coalesce(unit, '') AS unit, vartype FROM pg_settings \
                 WHERE vartype IN ('bool', 'integer', 'real') \
                 AND name != 'sync_commit_cancel_wait'",
            )
            .await
        else {
            return;
        };
        for row in rows {
            let (Some(name), Some(setting)) = (row.get("name"), row.get("setting")) else {
                continue;
            };
            if let Some((metric, v)) = setting_metric(
                name,
                setting,
                row.get("unit").unwrap_or(""),
                row.get("vartype").unwrap_or(""),
            ) {
                self.out.push(Metric::new(&metric, &[], v));
            }
        }
    }

    /// Every database's transaction-id ages as metrics; when `due`, the advisor's
    /// catalog reads and its advice, to the board.
    async fn maintenance(&mut self, instance: &str, board: &PostgresBoard, due: bool) {
        let dbs = match self
            .rows("pg_database ages", pg_advisor::DATABASES_SQL)
            .await
        {
            Some(rows) => pg_advisor::databases(&rows),
            None => Vec::new(),
        };
        for d in &dbs {
            let l = [("datname", d.datname.as_str())];
            self.out
                .push(Metric::new("pg_database_xid_age", &l, d.xid_age));
            self.out
                .push(Metric::new("pg_database_mxid_age", &l, d.mxid_age));
        }
        if !due {
            return;
        }
        let tables = match self.rows("advisor tables", &pg_advisor::tables_sql()).await {
            Some(rows) => pg_advisor::tables(&rows),
            None => Vec::new(),
        };
        let indexes = match self
            .rows("advisor indexes", &pg_advisor::indexes_sql())
            .await
        {
            Some(rows) => pg_advisor::indexes(&rows),
            None => Vec::new(),
        };
        board.set_advisor(PgAdvisorReport {
            instance: instance.to_string(),
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            advice: pg_advisor::advise(instance, &dbs, &tables, &indexes),
        });
    }

    async fn statements(
        &mut self,
        version: u32,
        top: usize,
        instance: &str,
        slow: &PostgresBoard,
        tracker: &Mutex<Tracker>,
    ) {
        if top == 0 {
            return;
        }
        let Some(rows) = self
            .rows("pg_stat_statements", &pg_statements::scan_sql(version))
            .await
        else {
            slow.set_statements(instance, Vec::new());
            return;
        };
        // Taken out while the texts are read (no lock held across an await).
        let mut t = std::mem::take(&mut *tracker.lock().expect("lock poisoned"));
        let update = t.update(&rows, top, std::time::Instant::now(), self.out);
        if let Some(sql) = pg_statements::text_sql(update.missing.iter().map(String::as_str))
            && let Some(rows) = self.rows("pg_stat_statements texts", &sql).await
        {
            t.add_texts(&rows);
        }
        slow.set_statements(instance, t.statements(instance, &update));
        *tracker.lock().expect("lock poisoned") = t;
    }
}

/// The exporter's `pg_settings_*` metric for one setting: the name with dots as
/// underscores, a `_seconds` or `_bytes` suffix for units of time or size with the value
/// converted (except the special value -1), booleans as 1/0.
fn setting_metric(name: &str, setting: &str, unit: &str, vartype: &str) -> Option<(String, f64)> {
    let base = format!("pg_settings_{}", name.replace(['.', '-'], "_"));
    if vartype == "bool" {
        return Some((base, if setting == "on" { 1.0 } else { 0.0 }));
    }
    let v: f64 = setting.parse().ok()?;
    let (suffix, factor) = match unit {
        "" => ("", 1.0),
        "ms" => ("_seconds", 0.001),
        "s" => ("_seconds", 1.0),
        "min" => ("_seconds", 60.0),
        "h" => ("_seconds", 3600.0),
        "d" => ("_seconds", 86400.0),
        "B" => ("_bytes", 1.0),
        "kB" => ("_bytes", 1024.0),
        "MB" => ("_bytes", 1024.0 * 1024.0),
        "GB" => ("_bytes", 1024.0 * 1024.0 * 1024.0),
        "TB" => ("_bytes", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        u => {
            // Block units: "8kB", "16MB", …
            let (n, rest) = u.split_at(u.find(|c: char| !c.is_ascii_digit())?);
            let n: f64 = n.parse().ok()?;
            let m = match rest {
                "kB" => 1024.0,
                "MB" => 1024.0 * 1024.0,
                "B" => 1.0,
                _ => return None,
            };
            ("_bytes", n * m)
        }
    };
    let v = if v == -1.0 { v } else { v * factor };
    Some((format!("{base}{suffix}"), v))
}

const LOCKS_SQL: &str = "SELECT pg_database.datname, tmp.mode, coalesce(count, 0) AS count \
     FROM (VALUES ('accesssharelock'), ('rowsharelock'), ('rowexclusivelock'), \
     ('shareupdateexclusivelock'), ('sharelock'), ('sharerowexclusivelock'), \
     ('exclusivelock'), ('accessexclusivelock'), ('sireadlock')) AS tmp(mode) \
     CROSS JOIN pg_database \
     LEFT JOIN (SELECT database, lower(mode) AS mode, count(*) AS count FROM pg_locks \
     WHERE database IS NOT NULL GROUP BY database, lower(mode)) AS tmp2 \
     ON tmp.mode = tmp2.mode AND pg_database.oid = tmp2.database ORDER BY 1";

const ACTIVITY_SQL: &str = "SELECT pg_database.datname, tmp.state, \
     coalesce(count, 0) AS count, coalesce(max_tx_duration, 0)::float8 AS max_tx_duration \
     FROM (VALUES ('active'), ('idle'), ('idle in transaction'), \
     ('idle in transaction (aborted)'), ('fastpath function call'), ('disabled')) AS tmp(state) \
     CROSS JOIN pg_database \
     LEFT JOIN (SELECT datname, state, count(*) AS count, \
     max(extract(epoch FROM now() - xact_start))::float8 AS max_tx_duration \
     FROM pg_stat_activity GROUP BY datname, state) AS tmp2 \
     ON tmp.state = tmp2.state AND pg_database.datname = tmp2.datname";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_exporter() {
        let m = |n, s, u, t| setting_metric(n, s, u, t).unwrap();
        assert_eq!(
            m("shared_buffers", "16384", "8kB", "integer"),
            ("pg_settings_shared_buffers_bytes".into(), 134_217_728.0)
        );
        assert_eq!(
            m("autovacuum_vacuum_cost_delay", "2", "ms", "real"),
            (
                "pg_settings_autovacuum_vacuum_cost_delay_seconds".into(),
                0.002
            )
        );
        assert_eq!(
            m("log_min_duration_statement", "-1", "ms", "integer"),
            (
                "pg_settings_log_min_duration_statement_seconds".into(),
                -1.0
            )
        );
        assert_eq!(
            m("max_wal_size", "1024", "MB", "integer"),
            ("pg_settings_max_wal_size_bytes".into(), 1_073_741_824.0)
        );
        assert_eq!(
            m("pg_stat_statements.save", "on", "", "bool"),
            ("pg_settings_pg_stat_statements_save".into(), 1.0)
        );
        assert_eq!(
            m("log_rotation_age", "1440", "min", "integer"),
            ("pg_settings_log_rotation_age_seconds".into(), 86400.0)
        );
    }
}
