//! `lookout-bench overhead`: the cost of monitoring this host, one PostgreSQL and one
//! Redis at one interval, side by side with the stack Lookout replaces doing the same job
//! (Debian's prometheus-node-exporter, prometheus-postgres-exporter,
//! prometheus-redis-exporter, prometheus scraping them and evaluating the same host,
//! PostgreSQL and Redis rule packs Lookout ships with, and prometheus-alertmanager;
//! `--stack-without-rules` leaves Prometheus without rules). Both run at the same time against the same servers; CPU is each process's user + system
//! time over the measured window as a share of one core, RSS is sampled every few
//! seconds and summed over each side's processes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::queries::free_port;

/// A benchmark's child process, killed on drop.
pub(crate) struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` with its output discarded.
pub(crate) fn spawn(name: &'static str, cmd: &mut Command) -> anyhow::Result<Proc> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc { name, child })
}

/// User + system CPU seconds of a process so far.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/pid/stat: 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / procfs::ticks_per_second() as f64
}

struct Side {
    procs: Vec<Proc>,
    cpu_start: Vec<f64>,
    rss_sum: Vec<u64>,
    rss_peak: u64,
}

impl Side {
    fn new(procs: Vec<Proc>) -> Self {
        Self {
            procs,
            cpu_start: Vec::new(),
            rss_sum: Vec::new(),
            rss_peak: 0,
        }
    }

    fn start(&mut self) {
        self.cpu_start = self
            .procs
            .iter()
            .map(|p| cpu_seconds(p.child.id()))
            .collect();
    }

    fn sample_rss(&mut self) {
        let total: u64 = self
            .procs
            .iter()
            .map(|p| super::rss(&p.child.id().to_string()).0)
            .sum();
        self.rss_sum.push(total);
        self.rss_peak = self.rss_peak.max(total);
    }

    fn alive(&mut self) -> anyhow::Result<()> {
        for p in &mut self.procs {
            if let Some(st) = p.child.try_wait()? {
                anyhow::bail!("{} exited during the benchmark: {st}", p.name);
            }
        }
        Ok(())
    }

    /// (CPU % of one core per process, total CPU %, mean RSS, peak RSS).
    fn report(&self, secs: f64) -> (Vec<(&'static str, f64)>, f64, f64, u64) {
        let per: Vec<(&'static str, f64)> = self
            .procs
            .iter()
            .zip(&self.cpu_start)
            .map(|(p, s)| (p.name, (cpu_seconds(p.child.id()) - s) / secs * 100.0))
            .collect();
        let total = per.iter().map(|p| p.1).sum();
        let mean = self.rss_sum.iter().sum::<u64>() as f64 / self.rss_sum.len().max(1) as f64;
        (per, total, mean, self.rss_peak)
    }
}

/// Runs both sides for `duration` after `warmup` and prints the figures.
pub(crate) fn run(
    postgres_dsn: &str,
    redis_url: &str,
    interval: Duration,
    warmup: Duration,
    duration: Duration,
    work: Option<&Path>,
    stack_rules: bool,
) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("lookout-bench-overhead-")
        .tempdir_in(work.map_or_else(std::env::temp_dir, Path::to_path_buf))?;
    let iv = lookout_model::format_duration(interval);

    // Lookout: one process doing it all.
    let lcfg = tmp.path().join("lookout.yml");
    std::fs::write(
        &lcfg,
        format!(
            "global:\n  scrape_interval: {iv}\ncollectors:\n  postgres:\n    - name: main\n      dsn: \"{postgres_dsn}\"\n  redis:\n    - name: cache\n      url: \"{redis_url}\"\n"
        ),
    )?;
    let exe = crate::lookout_exe()?;
    let lport = free_port()?;
    let mut ours = Side::new(vec![spawn(
        "lookout",
        Command::new(&exe)
            .args(["serve", "--config"])
            .arg(&lcfg)
            .arg("--data")
            .arg(tmp.path().join("lookout-data"))
            .args(["--listen", &format!("127.0.0.1:{lport}")]),
    )?]);

    // The stack.
    let (np, pp, rp, ap, prp) = (
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
    );
    let node = spawn(
        "prometheus-node-exporter",
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{np}")),
    )?;
    let pg = spawn(
        "prometheus-postgres-exporter",
        Command::new("prometheus-postgres-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{pp}"))
            .env("DATA_SOURCE_NAME", postgres_dsn),
    )?;
    let redis = spawn(
        "prometheus-redis-exporter",
        Command::new("prometheus-redis-exporter")
            .args(["-redis.addr", redis_url])
            .args(["-web.listen-address", &format!("127.0.0.1:{rp}")]),
    )?;
    let am = spawn(
        "prometheus-alertmanager",
        Command::new("prometheus-alertmanager")
            .arg(format!("--web.listen-address=127.0.0.1:{ap}"))
            .arg("--cluster.listen-address=")
            .arg(format!(
                "--storage.path={}",
                tmp.path().join("am").display()
            ))
            .arg(format!(
                "--config.file={}",
                write(
                    &tmp.path().join("alertmanager.yml"),
                    "route:\n  receiver: none\nreceivers:\n  - name: none\n"
                )?
                .display()
            )),
    )?;
    // The same rule packs Lookout evaluates for a host, a PostgreSQL and a Redis (its
    // own `lookout-self` group has no counterpart in the stack).
    let mut rule_files = String::new();
    if stack_rules {
        rule_files.push_str("rule_files:\n");
        for name in ["host", "postgres", "redis"] {
            let pack = lookout_rules::packs::get(name).context("a shipped rule pack")?;
            let f = write(&tmp.path().join(format!("{name}.yml")), pack.text)?;
            rule_files.push_str(&format!("  - {}\n", f.display()));
        }
    }
    let pcfg = write(
        &tmp.path().join("prometheus.yml"),
        &format!(
            "global:\n  scrape_interval: {iv}\n{rule_files}alerting:\n  alertmanagers:\n    - static_configs: [ {{ targets: [\"127.0.0.1:{ap}\"] }} ]\nscrape_configs:\n  - job_name: node\n    static_configs: [ {{ targets: [\"127.0.0.1:{np}\"] }} ]\n  - job_name: postgres\n    static_configs: [ {{ targets: [\"127.0.0.1:{pp}\"] }} ]\n  - job_name: redis\n    static_configs: [ {{ targets: [\"127.0.0.1:{rp}\"] }} ]\n"
        ),
    )?;
    let prom = spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", pcfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prp}")),
    )?;
    let mut theirs = Side::new(vec![node, pg, redis, prom, am]);

    eprintln!(
        "both sides monitor this host, {postgres_dsn} and {redis_url} every {iv}, {}; warming up for {}s…",
        if stack_rules {
            "both evaluating the host, postgres and redis rule packs"
        } else {
            "Lookout with its rule packs, the stack without rules"
        },
        warmup.as_secs()
    );
    std::thread::sleep(warmup);
    ours.alive()?;
    theirs.alive()?;
    ours.start();
    theirs.start();
    let started = Instant::now();
    let mut last_report = Instant::now();
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(5));
        ours.alive()?;
        theirs.alive()?;
        ours.sample_rss();
        theirs.sample_rss();
        if last_report.elapsed() >= Duration::from_secs(60) {
            eprintln!(
                "  {}s of {}s measured",
                started.elapsed().as_secs(),
                duration.as_secs()
            );
            last_report = Instant::now();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let (lp, lcpu, lmean, lpeak) = ours.report(secs);
    let (tp, tcpu, tmean, tpeak) = theirs.report(secs);
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "over {secs:.0} s at a {iv} interval (CPU as % of one core; RSS summed over each side's processes):"
    );
    println!("{:<32} {:>8}", "process", "cpu %");
    for (n, c) in lp.iter().chain(&tp) {
        println!("{n:<32} {c:>8.3}");
    }
    println!();
    println!(
        "lookout: cpu {lcpu:.3}%  rss mean {:.1} MiB peak {:.1} MiB",
        mib(lmean),
        mib(lpeak as f64)
    );
    println!(
        "stack:   cpu {tcpu:.3}%  rss mean {:.1} MiB peak {:.1} MiB",
        mib(tmean),
        mib(tpeak as f64)
    );
    println!(
        "ratio:   cpu {:.2}× (goal ≤ 0.5×: {}), rss {:.2}× ; lookout peak rss {:.1} MB (goal ≤ 40 MB: {})",
        lcpu / tcpu,
        if lcpu / tcpu <= 0.5 { "met" } else { "NOT met" },
        lmean / tmean,
        lpeak as f64 / 1e6,
        if lpeak as f64 / 1e6 <= 40.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

fn write(p: &Path, text: &str) -> anyhow::Result<std::path::PathBuf> {
    std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
    Ok(p.to_path_buf())
}
