//! `lookout-bench gen`, `storage` and `live`: the node_exporter-like dataset, import
//! size and speed against promtool, append throughput, memory per series and WAL replay
//! speed; and the helpers the other benchmarks share (a local exposition server, the
//! resident memory of a process).

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use lookout_model::Labels;
use lookout_storage::Appendable;
use lookout_tsdb::{Options, Tsdb};
use prometheus_client::registry::Registry;

/// Reads an HTTP request's head from `r`; returns its `Content-Length` (0 if none).
pub(crate) fn read_request_head(r: &mut impl std::io::BufRead) -> usize {
    let mut line = String::new();
    let mut len = 0;
    while r.read_line(&mut line).is_ok_and(|n| n > 2) {
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        line.clear();
    }
    len
}

/// Serves the exposition text `body()` returns to every HTTP request on a free port, on
/// background threads; returns the port.
pub(crate) fn serve_exposition<B: AsRef<str>>(
    body: impl Fn() -> B + Send + Sync + 'static,
) -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    let body = std::sync::Arc::new(body);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let body = std::sync::Arc::clone(&body);
            std::thread::spawn(move || {
                let mut s = s;
                let mut r = std::io::BufReader::new(s.try_clone().expect("clone socket"));
                read_request_head(&mut r);
                let b = body();
                let b = b.as_ref();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                );
            });
        }
    });
    Ok(port)
}

/// Resident and peak resident memory of a process, in bytes, from /proc.
pub(crate) fn rss(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs a command, returning wall time and peak RSS (polled).
fn run_measured(cmd: &mut Command) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id().to_string();
    let mut peak = 0;
    loop {
        if let Some(st) = child.try_wait()? {
            anyhow::ensure!(st.success(), "{cmd:?} failed: {st}");
            return Ok((started.elapsed(), peak));
        }
        peak = peak.max(rss(&pid).1);
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn dir_bytes(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            total += dir_bytes(&p, keep);
        } else if keep(&p) {
            total += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    total
}

/// (chunk bytes, index bytes) of blocks under `dir`, for both Lookout's and Prometheus's layouts.
fn block_bytes(dir: &Path) -> (u64, u64) {
    let chunks = dir_bytes(dir, &|p| {
        p.file_name().is_some_and(|n| n == "chunks")
            || p.parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "chunks")
    });
    let index = dir_bytes(dir, &|p| p.file_name().is_some_and(|n| n == "index"));
    (chunks, index)
}

/// Writes the dataset to `out`.
pub(crate) fn generate(
    out: &Path,
    series: usize,
    hours: f64,
    seed: u64,
) -> anyhow::Result<(u64, u64)> {
    let per_host = crate::dataset::series_per_host();
    let hosts = series.div_ceil(per_host);
    let points = (hours * 240.0).ceil() as usize + 1;
    let end = lookout_model::now_ms();
    let f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = BufWriter::with_capacity(4 << 20, f);
    let started = Instant::now();
    let (s, n) = crate::dataset::write(&mut w, hosts, points, end, seed)?;
    w.flush()?;
    eprintln!(
        "generated {n} samples of {s} series ({hosts} hosts × {per_host}, {points} points at 15 s) in {:.1?} → {} ({:.0} MiB)",
        started.elapsed(),
        out.display(),
        std::fs::metadata(out).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0
    );
    Ok((s, n))
}

/// `lookout-bench storage`.
pub(crate) fn storage(
    file: Option<PathBuf>,
    series: usize,
    hours: f64,
    promtool: &str,
    victoria_metrics: &str,
    work: Option<PathBuf>,
) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("lookout-bench-")
        .tempdir_in(work.unwrap_or_else(std::env::temp_dir))?;
    let file = match file {
        Some(f) => f,
        None => {
            let f = tmp.path().join("dataset.om");
            generate(&f, series, hours, 42)?;
            f
        }
    };
    let exe = crate::lookout_exe()?;
    let ours = tmp.path().join("lookout");
    eprintln!("importing with lookout…");
    let (our_time, our_peak) = run_measured(
        Command::new(&exe)
            .args(["import", "openmetrics"])
            .arg(&file)
            .arg("--data")
            .arg(&ours)
            .stdout(std::process::Stdio::null()),
    )?;
    let st_out = Command::new(&exe)
        .args(["tsdb", "stats", "--json", "--data"])
        .arg(&ours)
        .output()?;
    let st: serde_json::Value =
        serde_json::from_slice(&st_out.stdout).context("reading lookout tsdb stats")?;
    let samples = st["samples"].as_u64().unwrap_or(0).max(1);
    let (oc, oi) = block_bytes(&ours.join("blocks"));

    let theirs = tmp.path().join("promtool");
    eprintln!("importing with {promtool}…");
    let prom = run_measured(
        Command::new(promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&file)
            .arg(&theirs)
            .stdout(std::process::Stdio::null()),
    );
    eprintln!("importing into {victoria_metrics}…");
    let vm = crate::vm::Vm::start(victoria_metrics, &tmp.path().join("victoria-metrics")).and_then(
        |vm| {
            let took = vm.import(&file)?;
            eprintln!("merging victoria-metrics' parts…");
            let bytes = vm.merged_size()?;
            Ok((took, bytes))
        },
    );
    let input = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!(
        "dataset: {} ({:.0} MiB), {} series, {samples} samples",
        file.display(),
        input as f64 / 1048576.0,
        st["series"]
    );
    println!();
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "", "lookout", "promtool", "ratio"
    );
    match prom {
        Ok((their_time, their_peak)) => {
            let (tc, ti) = block_bytes(&theirs);
            let bps = |c: u64, i: u64| (c + i) as f64 / samples as f64;
            let row = |name: &str, a: f64, b: f64, unit: &str| {
                println!(
                    "{name:<28} {:>11.3} {unit:<2} {:>11.3} {unit:<2} {:>9.3}×",
                    a,
                    b,
                    a / b
                );
            };
            row("bytes/sample (chunks+index)", bps(oc, oi), bps(tc, ti), "B");
            row(
                "  chunks bytes/sample",
                oc as f64 / samples as f64,
                tc as f64 / samples as f64,
                "B",
            );
            row(
                "  index bytes/sample",
                oi as f64 / samples as f64,
                ti as f64 / samples as f64,
                "B",
            );
            row(
                "import wall time",
                our_time.as_secs_f64(),
                their_time.as_secs_f64(),
                "s",
            );
            row(
                "import peak RSS",
                our_peak as f64 / 1048576.0,
                their_peak as f64 / 1048576.0,
                "MB",
            );
            println!();
            println!(
                "goals: bytes/sample ≤ 0.35× promtool ({}), import time ≤ 0.25× promtool ({})",
                if bps(oc, oi) <= 0.35 * bps(tc, ti) {
                    "met"
                } else {
                    "NOT met"
                },
                if our_time.as_secs_f64() <= their_time.as_secs_f64() / 4.0 {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
        Err(e) => {
            println!(
                "bytes/sample (chunks+index)  {:>11.3} B",
                (oc + oi) as f64 / samples as f64
            );
            println!(
                "import wall time             {:>11.3} s",
                our_time.as_secs_f64()
            );
            println!(
                "import peak RSS              {:>11.1} MB",
                our_peak as f64 / 1048576.0
            );
            println!("(no promtool baseline: {e:#}; install Debian's prometheus package)");
        }
    }
    println!();
    match vm {
        Ok((took, bytes)) => {
            let ours = (oc + oi) as f64 / samples as f64;
            let theirs = bytes as f64 / samples as f64;
            println!(
                "{:<28} {:>14} {:>14} {:>10}",
                "", "lookout", "victoria-m.", "ratio"
            );
            println!(
                "{:<28} {ours:>11.3} B  {theirs:>11.3} B  {:>9.3}×",
                "bytes/sample (vm: its dir)",
                ours / theirs
            );
            println!(
                "{:<28} {:>11.3} s  {:>11.3} s  {:>9.3}×",
                "import wall time (vm: HTTP)",
                our_time.as_secs_f64(),
                took.as_secs_f64(),
                our_time.as_secs_f64() / took.as_secs_f64()
            );
            println!(
                "goal: bytes/sample ≤ 0.8× victoria-metrics' directory after its merge ({})",
                if ours <= 0.8 * theirs {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
        Err(e) => println!(
            "(no VictoriaMetrics baseline: {e:#}; install Debian's victoria-metrics package)"
        ),
    }
    Ok(())
}

fn series_labels(i: usize) -> Labels {
    let host = i / 100;
    let k = i % 100;
    Labels::from_pairs([
        ("__name__", format!("node_metric_{}", k % 25)),
        ("cpu", (k / 25).to_string()),
        ("instance", format!("host-{host:05}:9100")),
        ("job", "node".to_string()),
        (
            "mode",
            ["idle", "user", "system", "iowait"][k % 4].to_string(),
        ),
    ])
}

/// `lookout-bench live`.
pub(crate) fn live(
    series: usize,
    throughput_series: usize,
    rounds: usize,
    replay_samples: usize,
) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let opts = || Options {
        maintenance_interval: None,
        ..Options::default()
    };
    let pid = std::process::id().to_string();
    // 1. Append throughput on one core: a scrape-like loop of batches.
    {
        let db = Tsdb::open(&tmp.path().join("tput"), opts(), &mut Registry::default())?;
        let labels: Vec<Labels> = (0..throughput_series).map(series_labels).collect();
        let mut rng = crate::dataset::Rng::new(7);
        let started = Instant::now();
        let mut n = 0u64;
        for r in 0..rounds {
            let t = 1_700_000_000_000 + r as i64 * 15_000;
            for batch in labels.chunks(10_000) {
                let mut app = db.appender();
                for ls in batch {
                    app.append(ls, t, (r as f64) * 10.0 + (rng.f() * 100.0).round() / 100.0)?;
                    n += 1;
                }
                app.commit()?;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "append into head + WAL: {n} samples ({throughput_series} series × {rounds} scrapes) in {secs:.2} s = {:.0} samples/s on one core",
            n as f64 / secs
        );
        db.close()?;
        drop(db);
        let started = Instant::now();
        let db = Tsdb::open(&tmp.path().join("tput"), opts(), &mut Registry::default())?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "WAL replay ({throughput_series} series × {rounds} samples): {n} samples in {secs:.2} s = {:.0} samples/s (goal ≥ 2,000,000: {})",
            n as f64 / secs,
            if n as f64 / secs >= 2e6 {
                "met"
            } else {
                "NOT met"
            }
        );
        db.close()?;
    }
    // 2. Memory per active series, and 3. WAL replay.
    let dir = tmp.path().join("rss");
    let (rss0, _) = rss(&pid);
    let appended;
    {
        let db = Tsdb::open(&dir, opts(), &mut Registry::default())?;
        let mut n = 0u64;
        for r in 0..2 {
            let t = 1_700_000_000_000 + r * 15_000;
            for start in (0..series).step_by(10_000) {
                let mut app = db.appender();
                for i in start..(start + 10_000).min(series) {
                    app.append(&series_labels(i), t, i as f64)?;
                    n += 1;
                }
                app.commit()?;
            }
        }
        appended = n;
        let (rss1, _) = rss(&pid);
        let per = (rss1.saturating_sub(rss0)) as f64 / series as f64;
        println!(
            "resident memory: {} series with 2 samples each: +{:.0} MiB RSS = {:.0} bytes per active series (goal ≤ 1024: {})",
            series,
            (rss1.saturating_sub(rss0)) as f64 / 1048576.0,
            per,
            if per <= 1024.0 { "met" } else { "NOT met" }
        );
        db.close()?;
    }
    let started = Instant::now();
    let db = Tsdb::open(&dir, opts(), &mut Registry::default())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "WAL replay ({series} series × 2 samples, dominated by creating series): {appended} samples in {secs:.2} s = {:.0} samples/s",
        appended as f64 / secs
    );
    db.close()?;
    drop(db);
    restart(tmp.path(), series, replay_samples)
}

/// The restart figure (`live`'s fourth): one process appends `series` × `samples` and stops without
/// closing (as a crash or SIGKILL leaves the store: everything in the WAL), then a fresh
/// process opens the store, replaying it. The replay's peak is that process's
/// high-water mark, its steady state the memory it holds once replay is over.
fn restart(tmp: &Path, series: usize, samples: usize) -> anyhow::Result<()> {
    let dir = tmp.join("restart");
    let exe = std::env::current_exe()?;
    let probe = |args: &[String]| -> anyhow::Result<HashMap<String, f64>> {
        let out = Command::new(&exe)
            .arg("live-probe")
            .args(args)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running live-probe")?;
        anyhow::ensure!(out.status.success(), "live-probe {args:?} failed");
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect())
    };
    let d = dir.display().to_string();
    let fill = probe(&[
        "fill".into(),
        d.clone(),
        "--series".into(),
        series.to_string(),
        "--samples".into(),
        samples.to_string(),
    ])?;
    let replay = probe(&["replay".into(), d])?;
    let mib = |k: &str, m: &HashMap<String, f64>| m.get(k).copied().unwrap_or(0.0) / 1048576.0;
    // The steady state is the store holding every series, as the replaying process
    // keeps it once replay is over; the appending process's own memory (with its label
    // sets and the allocator's leftovers) is printed beside it.
    let (before, peak, after) = (mib("rss", &fill), mib("hwm", &replay), mib("rss", &replay));
    let secs = replay.get("secs").copied().unwrap_or(f64::NAN);
    println!(
        "restart: {series} active series × {samples} samples in the WAL ({:.0} MiB, appended in {:.1} s): replayed in {secs:.2} s (goal ≤ 30 s: {}); peak RSS during replay {peak:.0} MiB against {after:.0} MiB once replayed = {:.2}× (goal ≤ 1.2×: {}); the appending process held {before:.0} MiB",
        mib("wal_bytes", &fill),
        fill.get("fill_secs").copied().unwrap_or(f64::NAN),
        if secs <= 30.0 { "met" } else { "NOT met" },
        peak / after,
        if peak / after <= 1.2 {
            "met"
        } else {
            "NOT met"
        },
    );
    Ok(())
}

/// `lookout-bench live-probe`: one side of [`restart`], printing `key=value` figures.
pub(crate) fn live_probe(
    mode: &str,
    dir: &Path,
    series: usize,
    samples: usize,
) -> anyhow::Result<()> {
    let opts = Options {
        maintenance_interval: None,
        ..Options::default()
    };
    let pid = std::process::id().to_string();
    match mode {
        "fill" => {
            let db = Tsdb::open(dir, opts, &mut Registry::default())?;
            let labels: Vec<Labels> = (0..series).map(series_labels).collect();
            let started = Instant::now();
            for r in 0..samples {
                let t = 1_700_000_000_000 + r as i64 * 15_000;
                for batch in labels.chunks(10_000) {
                    let mut app = db.appender();
                    for (i, ls) in batch.iter().enumerate() {
                        app.append(ls, t, (r * 7 + i) as f64)?;
                    }
                    app.commit()?;
                }
            }
            drop(labels);
            let (rss, _) = rss(&pid);
            let wal: u64 = crate::blocks::walk_bytes(&dir.join("wal"));
            println!(
                "rss={rss} wal_bytes={wal} fill_secs={:.3}",
                started.elapsed().as_secs_f64()
            );
            // Out without closing: what a crash leaves.
            std::process::exit(0);
        }
        "replay" => {
            let started = Instant::now();
            let db = Tsdb::open(dir, opts, &mut Registry::default())?;
            let secs = started.elapsed().as_secs_f64();
            let (rss, hwm) = rss(&pid);
            println!("secs={secs:.3} rss={rss} hwm={hwm}");
            db.close()?;
            Ok(())
        }
        other => anyhow::bail!("live-probe: unknown mode {other:?} (fill or replay)"),
    }
}
