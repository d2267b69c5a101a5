//! `lookout-bench pgcost`: what monitoring costs a PostgreSQL server, with Lookout's
//! diagnostics on (the one-second session sampler, per-interval statements, the
//! advisor) and off (the exporter's families only), in the same run, under pgbench at a
//! fixed rate. Two Lookout processes watch the same server as two roles; after
//! `--duration`, for each: the server CPU its backend used (from /proc, the server runs
//! here) and the execution time `pg_stat_statements` counted for its role, both as a
//! share of one core, and Lookout's own CPU and peak RSS.
//!
//! The DSN must be a superuser's on a server with `pg_stat_statements` loaded; the bench
//! creates the roles `lookout_bench_plain` and `lookout_bench_diag` and the database
//! `lookout_bench`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::overhead::{cpu_seconds, spawn};
use super::queries::free_port;

/// Options of `lookout-bench pgcost`.
#[derive(Debug, clap::Args)]
pub(crate) struct PgCostOptions {
    /// A superuser's DSN (URL form: postgres://user@host:port/db).
    #[arg(long)]
    dsn: String,
    /// How long to measure.
    #[arg(long, default_value = "120s", value_parser = crate::parse_duration_arg)]
    duration: Duration,
    /// pgbench transactions per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// The collectors' interval.
    #[arg(long, default_value = "15s", value_parser = crate::parse_duration_arg)]
    interval: Duration,
}

/// Runs `sql` with psql against `dsn`; its trimmed output.
fn psql(dsn: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args([dsn, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `dsn` with another user and database.
fn as_user(dsn: &str, user: &str, db: &str) -> anyhow::Result<String> {
    let rest = dsn
        .strip_prefix("postgres://")
        .or_else(|| dsn.strip_prefix("postgresql://"))
        .context("--dsn must be a postgres:// URL")?;
    let (auth_host, _) = rest.split_once('/').unwrap_or((rest, ""));
    let host = auth_host.rsplit_once('@').map_or(auth_host, |(_, h)| h);
    let query = dsn.split_once('?').map_or("", |(_, q)| q);
    Ok(format!(
        "postgres://{user}@{host}/{db}{}{query}",
        if query.is_empty() { "" } else { "?" }
    ))
}

fn f(v: &str) -> f64 {
    v.parse().unwrap_or(0.0)
}

pub(crate) fn run(o: PgCostOptions) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("lookout-bench-pgcost-")
        .tempdir()?;
    for role in ["lookout_bench_plain", "lookout_bench_diag"] {
        psql(
            &o.dsn,
            &format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role} LOGIN; END IF; END $$; GRANT pg_monitor TO {role}"
            ),
        )?;
    }
    if psql(
        &o.dsn,
        "SELECT 1 FROM pg_database WHERE datname = 'lookout_bench'",
    )?
    .is_empty()
    {
        psql(&o.dsn, "CREATE DATABASE lookout_bench")?;
    }
    let bench_dsn = as_user(
        &o.dsn,
        &psql(&o.dsn, "SELECT current_user")?,
        "lookout_bench",
    )?;
    psql(
        &bench_dsn,
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
    )?;
    eprintln!("initialising pgbench (scale 10)…");
    let init = Command::new("pgbench")
        .args(["-i", "-s", "10", "-q", &bench_dsn])
        .output()
        .context("running pgbench -i")?;
    anyhow::ensure!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let iv = lookout_model::format_duration(o.interval);
    let exe = crate::lookout_exe()?;
    let start_lookout = |name: &'static str, role: &str, diagnostics: bool| {
        let dsn = as_user(&o.dsn, role, "lookout_bench")?;
        let cfg = tmp.path().join(format!("{name}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: {iv}\ncollectors:\n  host: {{ enabled: false }}\n  process: {{ enabled: false }}\n  postgres:\n    - name: main\n      dsn: \"{dsn}\"\n      diagnostics: {diagnostics}\nrule_packs: []\n"
            ),
        )?;
        let port = free_port()?;
        spawn(
            name,
            Command::new(&exe)
                .args(["serve", "--config"])
                .arg(&cfg)
                .arg("--data")
                .arg(tmp.path().join(format!("{name}-data")))
                .args(["--listen", &format!("127.0.0.1:{port}")]),
        )
    };
    let plain = start_lookout("lookout-plain", "lookout_bench_plain", false)?;
    let diag = start_lookout("lookout-diagnostics", "lookout_bench_diag", true)?;
    eprintln!(
        "pgbench at {} tx/s; both collectors every {iv}; warming up 20 s…",
        o.rate
    );
    let secs = o.duration.as_secs().max(10) + 30;
    let load = spawn(
        "pgbench",
        Command::new("pgbench").args([
            "-n",
            "-c",
            "4",
            "-j",
            "2",
            "-R",
            &o.rate.to_string(),
            "-T",
            &secs.to_string(),
            &bench_dsn,
        ]),
    )?;
    std::thread::sleep(Duration::from_secs(20));
    // The collectors' backends: one connection each, kept between runs.
    let backends = |role: &str| -> anyhow::Result<Vec<u32>> {
        Ok(psql(
            &o.dsn,
            &format!("SELECT pid FROM pg_stat_activity WHERE usename = '{role}' AND backend_type = 'client backend'"),
        )?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
    };
    let (pb, db) = (
        backends("lookout_bench_plain")?,
        backends("lookout_bench_diag")?,
    );
    anyhow::ensure!(
        !pb.is_empty() && !db.is_empty(),
        "the collectors are not connected"
    );
    let cpu = |pids: &[u32]| pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    psql(&bench_dsn, "SELECT pg_stat_statements_reset()")?;
    let (pb0, db0) = (cpu(&pb), cpu(&db));
    let (lp0, ld0) = (cpu_seconds(plain.pid()), cpu_seconds(diag.pid()));
    let tx0 = f(&psql(
        &o.dsn,
        "SELECT xact_commit FROM pg_stat_database WHERE datname = 'lookout_bench'",
    )?);
    let started = Instant::now();
    let mut peak = (0u64, 0u64);
    while started.elapsed() < o.duration {
        std::thread::sleep(Duration::from_secs(2));
        peak.0 = peak.0.max(super::rss(&plain.pid().to_string()).0);
        peak.1 = peak.1.max(super::rss(&diag.pid().to_string()).0);
    }
    let el = started.elapsed().as_secs_f64();
    let tx = (f(&psql(
        &o.dsn,
        "SELECT xact_commit FROM pg_stat_database WHERE datname = 'lookout_bench'",
    )?) - tx0)
        / el;
    let exec = |role: &str| -> anyhow::Result<f64> {
        Ok(f(&psql(
            &bench_dsn,
            &format!(
                "SELECT coalesce(sum(total_exec_time), 0) / 1000 FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = '{role}'"
            ),
        )?))
    };
    let pct = |s: f64| s / el * 100.0;
    let (pbk, dbk) = (pct(cpu(&pb) - pb0), pct(cpu(&db) - db0));
    let (pex, dex) = (
        pct(exec("lookout_bench_plain")?),
        pct(exec("lookout_bench_diag")?),
    );
    let (lpc, ldc) = (
        pct(cpu_seconds(plain.pid()) - lp0),
        pct(cpu_seconds(diag.pid()) - ld0),
    );
    drop(load);
    println!(
        "over {el:.0} s, pgbench at {tx:.0} tx/s, collectors every {iv} (CPU as % of one core):"
    );
    println!("{:<34} {:>12} {:>12}", "", "plain", "diagnostics");
    println!(
        "{:<34} {:>11.3}% {:>11.3}%",
        "server CPU of the collector's backend", pbk, dbk
    );
    println!(
        "{:<34} {:>11.3}% {:>11.3}%",
        "pg_stat_statements exec time", pex, dex
    );
    println!("{:<34} {:>11.3}% {:>11.3}%", "Lookout CPU", lpc, ldc);
    println!(
        "{:<34} {:>10.1}MB {:>10.1}MB",
        "Lookout peak RSS",
        peak.0 as f64 / 1e6,
        peak.1 as f64 / 1e6
    );
    println!(
        "diagnostics on the server: {dbk:.3}% of a core (goal < 1%: {}), {:.2}× the plain collector's",
        if dbk < 1.0 { "met" } else { "NOT met" },
        dbk / pbk.max(1e-9)
    );
    Ok(())
}
