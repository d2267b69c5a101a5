//! The actions themselves. Each returns what it did (or, in a dry run, would have done)
//! and to what; none takes anything from the alert but the JSON it hands on.

use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio_postgres::{Client, NoTls};

use crate::Remediator;
use crate::config::{ActionConfig, PgTarget, RuleConfig};

/// What a run did.
pub(crate) struct Done {
    pub(crate) outcome: &'static str,
    pub(crate) detail: String,
    pub(crate) targets: Vec<String>,
}

fn failed(detail: impl Into<String>) -> Done {
    Done {
        outcome: "failed",
        detail: detail.into(),
        targets: vec![],
    }
}

/// Most bytes of an executable's output kept in the record.
const MAX_OUTPUT: usize = 1024;
/// Most targets listed in a record.
const MAX_TARGETS: usize = 50;

/// `table` or `schema.table` as quoted SQL, when each part is a plain identifier.
pub(crate) fn table_ident(t: &str) -> Result<String, String> {
    let parts: Vec<&str> = t.split('.').collect();
    let plain = |p: &str| {
        let mut c = p.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == '$')
            && p.len() <= 63
    };
    if parts.len() > 2 || !parts.iter().all(|p| plain(p)) {
        return Err(format!(
            "table {t:?}: expected table or schema.table, plain identifiers"
        ));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join("."))
}

pub(crate) async fn run(me: &Remediator, rule: &RuleConfig, payload: &serde_json::Value) -> Done {
    let dry = rule.dry_run;
    match &rule.action {
        ActionConfig::PostgresCancelQueries {
            instance,
            running_longer_than,
            terminate_after,
            database,
            user,
        } => {
            let Some(t) = me.postgres.get(instance) else {
                return failed(format!("no PostgreSQL instance {instance:?}"));
            };
            cancel_queries(
                t,
                *running_longer_than,
                *terminate_after,
                database,
                user,
                dry,
            )
            .await
        }
        ActionConfig::PostgresTerminateIdleInTransaction {
            instance,
            idle_longer_than,
            database,
            user,
        } => {
            let Some(t) = me.postgres.get(instance) else {
                return failed(format!("no PostgreSQL instance {instance:?}"));
            };
            terminate_idle(t, *idle_longer_than, database, user, dry).await
        }
        ActionConfig::PostgresAnalyze { instance, table } => {
            let Some(t) = me.postgres.get(instance) else {
                return failed(format!("no PostgreSQL instance {instance:?}"));
            };
            analyze(t, table, dry).await
        }
        ActionConfig::DeleteOldFiles {
            directory,
            older_than,
            max_files,
        } => {
            let (dir, older, max) = (directory.clone(), *older_than, *max_files);
            tokio::task::spawn_blocking(move || delete_old_files(&dir, older, max, dry))
                .await
                .unwrap_or_else(|e| failed(format!("the deletion stopped: {e}")))
        }
        ActionConfig::RunExecutable {
            path,
            args,
            timeout,
        } => run_executable(path, args, *timeout, payload, dry).await,
        ActionConfig::Webhook { url, timeout } => webhook(me, url, *timeout, payload, dry).await,
    }
}

async fn connect(t: &PgTarget) -> Result<Client, String> {
    let mut cfg: tokio_postgres::Config = t
        .dsn
        .parse()
        .map_err(|e: tokio_postgres::Error| format!("invalid dsn: {e}"))?;
    if let Some(p) = &t.password {
        cfg.password(p);
    }
    cfg.connect_timeout(Duration::from_secs(5));
    cfg.application_name("lookout-remediation");
    cfg.options("-c statement_timeout=30000 -c lock_timeout=5000");
    let (client, conn) = cfg
        .connect(NoTls)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn pg_err(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

/// A session a PostgreSQL action acts on.
struct Session {
    pid: i32,
    datname: String,
    user: String,
    seconds: f64,
    query: String,
    since: String,
}

impl Session {
    fn describe(&self) -> String {
        format!(
            "pid {} ({}@{}, {:.0} s): {}",
            self.pid, self.user, self.datname, self.seconds, self.query
        )
    }
}

/// Client sessions (not Lookout's own) in `states` for longer than `longer` (measured
/// from `since_col`), optionally of one database and role.
async fn sessions(
    c: &Client,
    states: &[&str],
    since_col: &str,
    longer: Duration,
    database: &Option<String>,
    user: &Option<String>,
) -> Result<Vec<Session>, String> {
    let sql = format!(
        "SELECT pid, coalesce(datname, ''), coalesce(usename, ''), \
         extract(epoch FROM now() - {since_col})::float8, left(coalesce(query, ''), 300), \
         {since_col}::text \
         FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
         AND coalesce(application_name, '') NOT LIKE 'lookout%' AND state = ANY($1) \
         AND now() - {since_col} > make_interval(secs => $2) \
         AND ($3::text IS NULL OR datname = $3) AND ($4::text IS NULL OR usename = $4) \
         ORDER BY {since_col} LIMIT 1000"
    );
    let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    let rows = c
        .query(&sql, &[&states, &longer.as_secs_f64(), database, user])
        .await
        .map_err(pg_err)?;
    Ok(rows
        .iter()
        .map(|r| Session {
            pid: r.get(0),
            datname: r.get(1),
            user: r.get(2),
            seconds: r.get(3),
            query: r.get(4),
            since: r.get(5),
        })
        .collect())
}

fn listed(v: &[Session]) -> Vec<String> {
    v.iter().take(MAX_TARGETS).map(Session::describe).collect()
}

/// Calls `func` (`pg_cancel_backend`, `pg_terminate_backend`) on each session; how many
/// it reached.
async fn signal(c: &Client, func: &str, sessions: &[&Session]) -> usize {
    let sql = format!("SELECT {func}($1)");
    let mut n = 0;
    for s in sessions {
        if let Ok(r) = c.query_one(&sql, &[&s.pid]).await
            && r.get::<_, bool>(0)
        {
            n += 1;
        }
    }
    n
}

/// Connects to `t` and lists the sessions an action is about; a finished [`Done`] when
/// that fails or finds none (`none` says what was looked for).
async fn find(
    t: &PgTarget,
    states: &[&str],
    since_col: &str,
    longer: Duration,
    database: &Option<String>,
    user: &Option<String>,
    none: String,
) -> Result<(Client, Vec<Session>), Done> {
    let c = connect(t).await.map_err(failed)?;
    let found = sessions(&c, states, since_col, longer, database, user)
        .await
        .map_err(|e| failed(format!("listing the sessions: {e}")))?;
    if found.is_empty() {
        return Err(Done {
            outcome: "nothing_to_do",
            detail: none,
            targets: vec![],
        });
    }
    Ok((c, found))
}

async fn cancel_queries(
    t: &PgTarget,
    longer: Duration,
    terminate_after: Option<Duration>,
    database: &Option<String>,
    user: &Option<String>,
    dry: bool,
) -> Done {
    let (c, found) = match find(
        t,
        &["active"],
        "query_start",
        longer,
        database,
        user,
        format!("no query running longer than {}s", longer.as_secs()),
    )
    .await
    {
        Ok(x) => x,
        Err(done) => return done,
    };
    if dry {
        return Done {
            outcome: "dry_run",
            detail: format!(
                "would cancel {} quer{} running longer than {}s{}",
                found.len(),
                if found.len() == 1 { "y" } else { "ies" },
                longer.as_secs(),
                terminate_after.map_or(String::new(), |d| format!(
                    ", and terminate those still running {}s later",
                    d.as_secs()
                ))
            ),
            targets: listed(&found),
        };
    }
    let all: Vec<&Session> = found.iter().collect();
    let cancelled = signal(&c, "pg_cancel_backend", &all).await;
    let mut detail = format!("cancelled {cancelled} of {} queries", found.len());
    if let Some(after) = terminate_after {
        tokio::time::sleep(after).await;
        let mut terminated = 0;
        for s in &found {
            // Still the same query (same start): it ignored the cancel.
            let still = c
                .query_opt(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query_start::text = $2",
                    &[&s.pid, &s.since],
                )
                .await
                .ok()
                .flatten()
                .is_some();
            if still
                && let Ok(r) = c
                    .query_one("SELECT pg_terminate_backend($1)", &[&s.pid])
                    .await
                && r.get::<_, bool>(0)
            {
                terminated += 1;
            }
        }
        detail.push_str(&format!(
            "; {terminated} still running after {}s terminated",
            after.as_secs()
        ));
    }
    Done {
        outcome: "done",
        detail,
        targets: listed(&found),
    }
}

async fn terminate_idle(
    t: &PgTarget,
    longer: Duration,
    database: &Option<String>,
    user: &Option<String>,
    dry: bool,
) -> Done {
    let (c, found) = match find(
        t,
        &["idle in transaction", "idle in transaction (aborted)"],
        "state_change",
        longer,
        database,
        user,
        format!(
            "no session idle in transaction longer than {}s",
            longer.as_secs()
        ),
    )
    .await
    {
        Ok(x) => x,
        Err(done) => return done,
    };
    if dry {
        return Done {
            outcome: "dry_run",
            detail: format!(
                "would terminate {} session(s) idle in transaction longer than {}s",
                found.len(),
                longer.as_secs()
            ),
            targets: listed(&found),
        };
    }
    let mut n = 0;
    for s in &found {
        if let Ok(r) = c
            .query_one("SELECT pg_terminate_backend($1)", &[&s.pid])
            .await
            && r.get::<_, bool>(0)
        {
            n += 1;
        }
    }
    Done {
        outcome: "done",
        detail: format!("terminated {n} of {} session(s)", found.len()),
        targets: listed(&found),
    }
}

async fn analyze(t: &PgTarget, table: &str, dry: bool) -> Done {
    let ident = match table_ident(table) {
        Ok(i) => i,
        Err(e) => return failed(e),
    };
    let sql = format!("ANALYZE {ident}");
    if dry {
        return Done {
            outcome: "dry_run",
            detail: format!("would run {sql}"),
            targets: vec![table.to_string()],
        };
    }
    let c = match connect(t).await {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    match c.batch_execute(&sql).await {
        Ok(()) => Done {
            outcome: "done",
            detail: format!("ran {sql}"),
            targets: vec![table.to_string()],
        },
        Err(e) => failed(format!("{sql}: {}", pg_err(e))),
    }
}

fn delete_old_files(dir: &std::path::Path, older: Duration, max: usize, dry: bool) -> Done {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => return failed(format!("reading {}: {e}", dir.display())),
    };
    let cutoff = SystemTime::now() - older;
    let mut old: Vec<(SystemTime, std::path::PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            // Not following links: a link is not a regular file here.
            let m = std::fs::symlink_metadata(e.path()).ok()?;
            let t = m.modified().ok()?;
            (m.file_type().is_file() && t < cutoff).then(|| (t, e.path()))
        })
        .collect();
    old.sort();
    let total = old.len();
    old.truncate(max);
    if old.is_empty() {
        return Done {
            outcome: "nothing_to_do",
            detail: format!(
                "no file older than {}s in {}",
                older.as_secs(),
                dir.display()
            ),
            targets: vec![],
        };
    }
    let names: Vec<String> = old
        .iter()
        .take(MAX_TARGETS)
        .map(|(_, p)| p.display().to_string())
        .collect();
    if dry {
        return Done {
            outcome: "dry_run",
            detail: format!(
                "would delete {} of {total} file(s) older than {}s in {}",
                old.len(),
                older.as_secs(),
                dir.display()
            ),
            targets: names,
        };
    }
    let mut deleted = 0;
    let mut errors = Vec::new();
    let mut bytes = 0u64;
    for (_, p) in &old {
        let size = std::fs::symlink_metadata(p).map_or(0, |m| m.len());
        match std::fs::remove_file(p) {
            Ok(()) => {
                deleted += 1;
                bytes += size;
            }
            Err(e) => errors.push(format!("{}: {e}", p.display())),
        }
    }
    Done {
        outcome: if errors.is_empty() { "done" } else { "failed" },
        detail: format!(
            "deleted {deleted} of {total} file(s) older than {}s in {} ({bytes} bytes){}",
            older.as_secs(),
            dir.display(),
            if errors.is_empty() {
                String::new()
            } else {
                format!("; {}", errors.join("; "))
            }
        ),
        targets: names,
    }
}

fn clip(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(MAX_OUTPUT)]);
    s.trim().to_string()
}

async fn run_executable(
    path: &std::path::Path,
    args: &[String],
    timeout: Duration,
    payload: &serde_json::Value,
    dry: bool,
) -> Done {
    let target = std::iter::once(path.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    if dry {
        return Done {
            outcome: "dry_run",
            detail: format!("would run {target} with the alert on its standard input"),
            targets: vec![target],
        };
    }
    let mut child = match tokio::process::Command::new(path)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return failed(format!("starting {}: {e}", path.display())),
    };
    let body = serde_json::to_vec(payload).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        // A program that does not read its input is not an error.
        let _ = stdin.write_all(&body).await;
    }
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Done {
            outcome: "failed",
            detail: format!(
                "{} timed out after {}s and was killed",
                path.display(),
                timeout.as_secs_f64()
            ),
            targets: vec![target],
        },
        Ok(Err(e)) => failed(format!("running {}: {e}", path.display())),
        Ok(Ok(out)) => Done {
            outcome: if out.status.success() {
                "done"
            } else {
                "failed"
            },
            detail: format!(
                "{} exited with {}; stdout: {:?}; stderr: {:?}",
                path.display(),
                out.status,
                clip(&out.stdout),
                clip(&out.stderr)
            ),
            targets: vec![target],
        },
    }
}

async fn webhook(
    me: &Remediator,
    url: &str,
    timeout: Duration,
    payload: &serde_json::Value,
    dry: bool,
) -> Done {
    if dry {
        return Done {
            outcome: "dry_run",
            detail: format!("would POST the alert to {url}"),
            targets: vec![url.to_string()],
        };
    }
    match me
        .http
        .post(url)
        .timeout(timeout)
        .json(payload)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Done {
            outcome: "done",
            detail: format!("POST {url}: {}", r.status()),
            targets: vec![url.to_string()],
        },
        Ok(r) => Done {
            outcome: "failed",
            detail: format!("POST {url}: {}", r.status()),
            targets: vec![url.to_string()],
        },
        Err(e) => failed(format!("POST {url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_make_a_table() {
        assert_eq!(table_ident("orders").unwrap(), "\"orders\"");
        assert_eq!(table_ident("shop.orders").unwrap(), "\"shop\".\"orders\"");
        for bad in ["", "a.b.c", "x; DROP TABLE y", "\"q\"", "1abc", "a..b"] {
            assert!(table_ident(bad).is_err(), "{bad}");
        }
    }
}
