//! `lookout-bench sdk`: what `lookout-sdk` costs a database end to end. The SDK's example
//! store (`crates/sdk/examples/kvstore.rs`: B+tree over pages, page cache, WAL with group
//! commit, three Raft nodes) runs the same fixed number of operations twice per round:
//! instrumented (every metric set, the health checker on its interval, `/metrics`
//! scraped once a second as Lookout would) and `--uninstrumented` (no metric set, no
//! health checker, no endpoint). Each run prints its CPU seconds and peak RSS on exit;
//! the medians over the rounds give the added CPU (as a share of the baseline's) and the
//! added memory. With `--time-one-in N,…` (default 16 and 64) each round has a run timing
//! one operation in N (`Options::time_one_in`), reported against the same baseline. The
//! runs alternate, so drift on the machine hits every side alike.
//!
//! Separate runs on a shared VM differ by ±10% of CPU from one to the next, more than the
//! effect measured; so each round also runs every instrumented mode `--interleave`d: the
//! instrumented store and an uninstrumented twin run the same operations on one thread, a
//! batch of 200 each in turn, and each side's time is summed. Both sides see the machine's
//! moment-to-moment speed alike, which makes the per-round figure good to about half a
//! percent; a control run (an uninstrumented store against its twin) shows the method's
//! own bias and spread. These figures cover the workload's thread (the recording); the
//! separate runs add the endpoint, the scrapes and the health checker.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Options of `lookout-bench sdk`.
#[derive(Debug, clap::Args)]
pub(crate) struct SdkOptions {
    /// The example's binary (default: `examples/kvstore` beside this binary; build it
    /// with `cargo build --release -p lookout-sdk --example kvstore`).
    #[arg(long)]
    example: Option<PathBuf>,
    /// Operations per run.
    #[arg(long, default_value_t = 3_000_000)]
    ops: u64,
    /// Rounds (one uninstrumented and one or two instrumented runs each).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Also run the example timing about one operation in N (the latency histograms a
    /// sample, every operation counted), for each N given; 1 adds nothing.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64])]
    time_one_in: Vec<u32>,
    /// Where the store's files go (default: the system's temporary directory; a tmpfs
    /// such as /dev/shm takes the disk's noise out of the system time).
    #[arg(long)]
    work: Option<PathBuf>,
}

/// How a run records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `--uninstrumented`: the baseline.
    Off,
    /// Every metric set, timing every operation.
    Every,
    /// Every metric set, timing one operation in N.
    Sampled(u32),
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Off => "uninstrumented".into(),
            Mode::Every => "instrumented".into(),
            Mode::Sampled(n) => format!("timing 1 in {n}"),
        }
    }
}

/// What one run printed on exit.
#[derive(Debug, Clone, Copy)]
struct Figures {
    cpu: f64,
    user: f64,
    rss: u64,
    wall: f64,
    scrapes: u64,
    /// CPU seconds of every thread but the workload's (the endpoint, the health checker).
    others: f64,
    /// Interleaved runs: seconds in the store's batches and in its twin's.
    sides: Option<(f64, f64)>,
}

fn example_exe(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let exe = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .with_file_name("examples")
            .join("kvstore"),
    };
    anyhow::ensure!(
        exe.is_file(),
        "{} not found: cargo build --release -p lookout-sdk --example kvstore, or pass --example",
        exe.display()
    );
    Ok(exe)
}

/// What the last line says: CPU, user CPU, peak RSS, the other threads' CPU and, from
/// interleaved runs, the two sides' seconds.
type Printed = (f64, f64, u64, f64, Option<(f64, f64)>);

/// Parses `ops=… cpu_seconds=… user_seconds=… max_rss_bytes=…` and, if present,
/// `other_threads_cpu_seconds=…` and `instrumented_seconds=… twin_seconds=…`.
fn parse_figures(line: &str) -> Option<Printed> {
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
    };
    let sides = match (field("instrumented_seconds"), field("twin_seconds")) {
        (Some(a), Some(b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        _ => None,
    };
    Some((
        field("cpu_seconds")?.parse().ok()?,
        field("user_seconds")?.parse().ok()?,
        field("max_rss_bytes")?.parse().ok()?,
        field("other_threads_cpu_seconds").map_or(Some(0.0), |v| v.parse().ok())?,
        sides,
    ))
}

fn run_once(
    exe: &Path,
    ops: u64,
    mode: Mode,
    interleave: bool,
    dir: &Path,
) -> anyhow::Result<Figures> {
    let instrumented = mode != Mode::Off;
    let data = dir.join(if instrumented { "on" } else { "off" });
    let _ = std::fs::remove_dir_all(&data);
    let mut cmd = Command::new(exe);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--ops",
        &ops.to_string(),
        "--data",
    ])
    .arg(&data)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if interleave {
        cmd.arg("--interleave");
    }
    match mode {
        Mode::Off => {
            cmd.arg("--uninstrumented");
        }
        Mode::Every => {}
        Mode::Sampled(n) => {
            cmd.args(["--time-one-in", &n.to_string()]);
        }
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let first = lines.next().context("the example printed nothing")??;
    let addr = first
        .strip_prefix("listening on http://")
        .with_context(|| format!("unexpected first line {first:?}"))?
        .to_string();
    // Lookout's part: a scrape of /metrics every second while the workload runs.
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = instrumented.then(|| {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ok = client
                    .get(format!("http://{addr}/metrics"))
                    .send()
                    .and_then(|r| r.error_for_status())
                    .and_then(|r| r.bytes())
                    .is_ok();
                n += u64::from(ok);
                std::thread::sleep(Duration::from_secs(1));
            }
            n
        })
    });
    let mut figures = None;
    for line in lines {
        if let Some(f) = parse_figures(&line?) {
            figures = Some(f);
        }
    }
    let status = child.wait()?;
    let wall = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let scrapes = scraper.map_or(0, |h| h.join().unwrap_or(0));
    let _ = std::fs::remove_dir_all(&data);
    let Some((cpu, user, rss, others, sides)) = figures else {
        bail!("the example exited ({status}) without its figures");
    };
    if interleave && sides.is_none() {
        bail!("the interleaved run printed no sides");
    }
    if instrumented && wall > 3.0 && scrapes == 0 {
        bail!("no scrape of the instrumented example succeeded");
    }
    Ok(Figures {
        cpu,
        user,
        rss,
        wall,
        scrapes,
        others,
        sides,
    })
}

/// Each round's added CPU as a share of the same round's baseline: drift on the machine
/// between rounds cancels out of each pair.
fn paired(off: &[Figures], on: &[Figures]) -> Vec<f64> {
    off.iter()
        .zip(on)
        .map(|(a, b)| b.cpu / a.cpu - 1.0)
        .collect()
}

/// The first quartile, the median and the third quartile (nearest rank).
fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the comparison and prints the figures.
pub(crate) fn run(o: SdkOptions) -> anyhow::Result<()> {
    let exe = example_exe(o.example)?;
    let dir = match &o.work {
        Some(w) => tempfile::tempdir_in(w)?,
        None => tempfile::tempdir()?,
    };
    let mut modes = vec![Mode::Off, Mode::Every];
    modes.extend(
        o.time_one_in
            .iter()
            .filter(|n| **n > 1)
            .map(|n| Mode::Sampled(*n)),
    );
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); modes.len()];
    // Interleaved: the first is the control (uninstrumented against its twin).
    let mut interleaved: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 1..=o.rounds.max(1) {
        for (i, mode) in modes.iter().enumerate() {
            let f = run_once(&exe, o.ops, *mode, false, dir.path())?;
            eprintln!(
                "round {round}: {:<16} cpu {:.2} s (user {:.2} s), wall {:.2} s, peak RSS {:.1} MB{}",
                mode.name(),
                f.cpu,
                f.user,
                f.wall,
                f.rss as f64 / 1e6,
                if *mode == Mode::Off {
                    String::new()
                } else {
                    format!(", {} scrapes", f.scrapes)
                }
            );
            runs[i].push(f);
        }
        for (i, mode) in modes.iter().enumerate() {
            let f = run_once(&exe, o.ops, *mode, true, dir.path())?;
            let (on, twin) = f.sides.unwrap_or_default();
            let added = on / twin - 1.0;
            eprintln!(
                "round {round}: {:<16} interleaved with an uninstrumented twin: {on:.3} s vs {twin:.3} s ({:+.2}%)",
                mode.name(),
                added * 100.0
            );
            interleaved[i].push(added);
        }
    }
    let medians = |runs: &[Figures]| {
        (
            median(runs.iter().map(|f| f.cpu).collect()),
            median(runs.iter().map(|f| f.user).collect()),
            median(runs.iter().map(|f| f.rss as f64).collect()),
        )
    };
    let (cpu_off, user_off, rss_off) = medians(&runs[0]);
    println!(
        "{} operations per run, median of {} rounds; uninstrumented: cpu {cpu_off:.3} s, user {user_off:.3} s, peak RSS {:.1} MB",
        o.ops,
        runs[0].len(),
        rss_off / 1e6
    );
    let (q1, mid, q3) = quartiles(interleaved[0].clone());
    println!(
        "control, uninstrumented store vs its twin on one thread: median {:+.2}%, middle half {:+.2}% to {:+.2}%",
        mid * 100.0,
        q1 * 100.0,
        q3 * 100.0
    );
    for ((mode, on), inter) in modes.iter().zip(&runs).zip(&interleaved).skip(1) {
        let (cpu_on, user_on, rss_on) = medians(on);
        println!("{}:", mode.name());
        println!(
            "  CPU: {cpu_on:.3} s vs {cpu_off:.3} s: {:+.2}% ({:.0} ns per operation)",
            (cpu_on / cpu_off - 1.0) * 100.0,
            (cpu_on - cpu_off) / o.ops as f64 * 1e9
        );
        let (q1, mid, q3) = quartiles(inter.clone());
        println!(
            "  interleaved with an uninstrumented twin on one thread (the recording): median {:+.2}%, middle half {:+.2}% to {:+.2}%",
            mid * 100.0,
            q1 * 100.0,
            q3 * 100.0
        );
        let others_on = median(on.iter().map(|f| f.others).collect());
        let others_off = median(runs[0].iter().map(|f| f.others).collect());
        println!(
            "  the other threads (endpoint, {} scrapes a run, health checker): {others_on:.3} s vs {others_off:.3} s of CPU: {:+.2}% of the uninstrumented run's",
            median(on.iter().map(|f| f.scrapes as f64).collect()),
            (others_on - others_off) / cpu_off * 100.0
        );
        let (q1, mid, q3) = quartiles(paired(&runs[0], on));
        println!(
            "  CPU added, round by round (against the same round's uninstrumented run): median {:+.2}%, middle half {:+.2}% to {:+.2}%",
            mid * 100.0,
            q1 * 100.0,
            q3 * 100.0
        );
        println!(
            "  user CPU alone (the store's system time is its I/O, the same on every side): {user_on:.3} s vs {user_off:.3} s: {:+.2}% ({:.0} ns per operation)",
            (user_on / user_off - 1.0) * 100.0,
            (user_on - user_off) / o.ops as f64 * 1e9
        );
        println!(
            "  peak RSS: {:.1} MB vs {:.1} MB: {:+.1} MB",
            rss_on / 1e6,
            rss_off / 1e6,
            (rss_on - rss_off) / 1e6
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_read_from_the_last_line() {
        assert_eq!(
            parse_figures("ops=200 cpu_seconds=1.250 user_seconds=0.5 max_rss_bytes=4096"),
            Some((1.25, 0.5, 4096, 0.0, None))
        );
        assert_eq!(
            parse_figures(
                "ops=2 cpu_seconds=1 user_seconds=0.5 max_rss_bytes=1 other_threads_cpu_seconds=0.02 instrumented_seconds=0.3 twin_seconds=0.25"
            ),
            Some((1.0, 0.5, 1, 0.02, Some((0.3, 0.25))))
        );
        assert_eq!(parse_figures("listening on http://127.0.0.1:1"), None);
        assert_eq!(
            parse_figures("ops=1 cpu_seconds=x user_seconds=1 max_rss_bytes=1"),
            None
        );
    }

    #[test]
    fn rounds_are_paired_and_summarised_by_quartiles() {
        let f = |cpu| Figures {
            cpu,
            user: 0.0,
            rss: 0,
            wall: 0.0,
            scrapes: 0,
            others: 0.0,
            sides: None,
        };
        let off = [f(2.0), f(4.0), f(1.0)];
        let on = [f(2.2), f(4.0), f(1.5)];
        let p = paired(&off, &on);
        assert!((p[0] - 0.1).abs() < 1e-12 && p[1] == 0.0 && (p[2] - 0.5).abs() < 1e-12);
        let (q1, mid, q3) = quartiles(p);
        assert!((mid - 0.1).abs() < 1e-12 && q1 <= mid && q3 == 0.5);
        assert_eq!(quartiles(vec![0.5, 0.4, 0.3, 0.2, 0.1]), (0.2, 0.3, 0.4));
        assert_eq!(quartiles(vec![7.0]), (7.0, 7.0, 7.0));
    }
}
