//! `lookout-bench soak`: the real server under a day's work, compressed or not.
//!
//! `lookout serve` runs as a child process on a temporary data directory, scraping an
//! endpoint served here with `series` active series, of which a `churn` share is replaced
//! every hour (continuously: one series at a time gets a new `pod` label), with recording
//! and alerting rules and the notifier (sending to a local webhook) on. Four threads send
//! `qps` queries a second between them, mixed: instant and range PromQL over one shard
//! (2% of the series, as a dashboard panel asks) or the recording rules, series and
//! label lookups, and every `all_series_every`-th request one over every series (an
//! hour's `count`, a `sum by`, every `pod` value). The alert fires per shard on the
//! recording rule, so alerts do not churn faster than the series. A probe asks `/-/healthy` and a one-series query every second: a stall is
//! the server not answering it. Every `window` the benchmark prints the server's resident
//! memory (min/max) next to what the store says it holds (head series, blocks and their
//! index memory, so growth can be told from data kept), query latency (p50/p99/max, the slowest panel query, how many panel
//! queries took over a second), the slowest probe, the longest gap between two scrapes
//! of the target as the server recorded them, and samples rejected. A flat RSS, no
//! stall and no panel query over a second, and nothing rejected are the goals; the
//! queries over every series are reported, not held to a second (on two cores one reads
//! 100k series × an hour).
//!
//! Blocks are cut every `block_duration` (default 10m rather than the server's 2h), so
//! within an hour the head reaches the size it keeps (1.5 blocks) and compaction and
//! block queries are part of the run.

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::overhead::spawn;
use super::queries::free_port;

/// What to run (the command line of `lookout-bench soak`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SoakOptions {
    /// Active series scraped.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) series: usize,
    /// Share of the series replaced per hour.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) churn: f64,
    /// Queries per second (mixed instant, range, series, label values).
    #[arg(long, default_value_t = 20.0)]
    pub(crate) qps: f64,
    /// How long to run (a Prometheus duration).
    #[arg(long, default_value = "1h", value_parser = crate::parse_duration_arg)]
    pub(crate) duration: Duration,
    /// Report every.
    #[arg(long, default_value = "10m", value_parser = crate::parse_duration_arg)]
    pub(crate) window: Duration,
    /// Scrape interval of the target.
    #[arg(long, default_value = "15s", value_parser = crate::parse_duration_arg)]
    pub(crate) scrape_interval: Duration,
    /// One request in this many reads every series (an hour's range, all label values,
    /// an aggregation over everything); the rest read one shard (2% of the series), as a
    /// dashboard panel does.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) all_series_every: u64,
    /// The server's `storage.block_duration`.
    #[arg(long, default_value = "10m", value_parser = crate::parse_duration_arg)]
    pub(crate) block_duration: Duration,
}

/// The exposition body at `elapsed`: series slot `i` carries its generation in `pod`.
fn body(series: usize, replaced: u64) -> String {
    let mut out = String::with_capacity(series * 64);
    out.push_str("# TYPE soak_value gauge\n");
    for i in 0..series as u64 {
        let generation = if replaced > i {
            (replaced - 1 - i) / series as u64 + 1
        } else {
            0
        };
        let v = (i * 7 + replaced) % 101;
        out.push_str(&format!(
            "soak_value{{shard=\"{}\",pod=\"p{i}-{generation}\"}} {v}\n",
            i % 50
        ));
    }
    out
}

/// Serves the churning exposition on a free port.
fn serve_target(series: usize, churn: f64, started: Instant) -> anyhow::Result<u16> {
    super::serve_exposition(move || {
        let hours = started.elapsed().as_secs_f64() / 3600.0;
        body(series, (hours * churn * series as f64) as u64)
    })
}

/// A webhook receiver that counts what it gets.
fn serve_sink(count: Arc<AtomicU64>) -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut s = s;
                let mut r = BufReader::new(s.try_clone().expect("clone socket"));
                let len = super::read_request_head(&mut r);
                let mut b = vec![0u8; len];
                let _ = std::io::Read::read_exact(&mut r, &mut b);
                count.fetch_add(1, Ordering::Relaxed);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    Ok(port)
}

/// The PromQL of requests 0 to 5 (mod 8) of each loop: even ones instant, odd ones
/// ranges over the last hour; requests 6 and 7 are a series and a label-values lookup.
/// What a dashboard panel asks: one shard (2% of the series), or the recording rules.
const QUERIES: [&str; 6] = [
    "sum by (pod) (soak_value{shard=\"3\"})",
    "avg_over_time(soak_value{shard=\"7\"}[5m])",
    "topk(5, soak_value{shard=\"11\"})",
    "count(soak_value{shard=\"13\"})",
    "max by (pod) (max_over_time(soak_value{shard=\"19\"}[10m]))",
    "sum(shard:soak_value:sum)",
];

/// One query's outcome: its latency, whether it answered 2xx, whether it read all series.
#[derive(Debug, Clone, Copy)]
struct Took {
    secs: f64,
    ok: bool,
    all: bool,
}

/// Sends `per_thread_qps` requests a second until `stop`; every `all_every`-th reads
/// every series (what a fleet overview asks, in turn), the rest one shard.
fn query_loop(
    base: String,
    per_thread_qps: f64,
    all_every: u64,
    stop: Arc<AtomicBool>,
    lat: Arc<Mutex<Vec<Took>>>,
) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let every = Duration::from_secs_f64(1.0 / per_thread_qps.max(0.01));
    let mut i = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = lookout_model::now_ms() as f64 / 1000.0;
        let hour = [
            ("start", format!("{}", now - 3600.0)),
            ("end", format!("{now}")),
            ("step", "60".to_string()),
        ];
        let shard = i % 50;
        let all = (i + 1).is_multiple_of(all_every);
        let req = if all {
            match (i / all_every) % 3 {
                0 => client
                    .get(format!("{base}/api/v1/query_range"))
                    .query(&[("query", "count(soak_value)")])
                    .query(&hour),
                1 => client
                    .get(format!("{base}/api/v1/query"))
                    .query(&[("query", "sum by (shard) (soak_value)")]),
                _ => client.get(format!("{base}/api/v1/label/pod/values")),
            }
        } else {
            match (i % 8) as usize {
                6 => client.get(format!("{base}/api/v1/series")).query(&[
                    ("match[]", format!("soak_value{{shard=\"{shard}\"}}")),
                    ("start", format!("{}", now - 600.0)),
                ]),
                7 => client
                    .get(format!("{base}/api/v1/label/pod/values"))
                    .query(&[("match[]", format!("soak_value{{shard=\"{shard}\"}}"))]),
                k if k % 2 == 1 => client
                    .get(format!("{base}/api/v1/query_range"))
                    .query(&[("query", QUERIES[k])])
                    .query(&hour),
                k => client
                    .get(format!("{base}/api/v1/query"))
                    .query(&[("query", QUERIES[k])]),
            }
        };
        let t = Instant::now();
        let ok = req.send().is_ok_and(|r| r.status().is_success());
        let secs = t.elapsed().as_secs_f64();
        lat.lock().expect("lock").push(Took { secs, ok, all });
        i += 1;
        next += every;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
}

/// Every second, `/-/healthy` and a one-series instant query; records the slower of the
/// two (a failure counts as 60 s).
fn probe_loop(base: String, stop: Arc<AtomicBool>, probes: Arc<Mutex<Vec<f64>>>) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let healthy = client
            .get(format!("{base}/-/healthy"))
            .send()
            .is_ok_and(|r| r.status().is_success());
        let a = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let query = client
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", "up{job=\"soak\"}")])
            .send()
            .is_ok_and(|r| r.status().is_success());
        let b = t.elapsed().as_secs_f64();
        let worst = if healthy && query { a.max(b) } else { 60.0 };
        probes.lock().expect("lock").push(worst);
        std::thread::sleep(Duration::from_secs(1).saturating_sub(Duration::from_secs_f64(a + b)));
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The longest gap (s) between two consecutive `up` samples of the target in the last
/// `secs` seconds, as the server stored them.
fn longest_scrape_gap(client: &reqwest::blocking::Client, base: &str, secs: u64) -> Option<f64> {
    let v: Value = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", format!("up{{job=\"soak\"}}[{secs}s]"))])
        .send()
        .ok()?
        .json()
        .ok()?;
    let values = v["data"]["result"][0]["values"].as_array()?;
    let ts: Vec<f64> = values.iter().filter_map(|p| p[0].as_f64()).collect();
    ts.windows(2).map(|w| w[1] - w[0]).reduce(f64::max)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Runs the soak and prints one line per window and a summary.
pub(crate) fn run(o: SoakOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let target = serve_target(o.series, o.churn, started)?;
    let sent = Arc::new(AtomicU64::new(0));
    let sink = serve_sink(Arc::clone(&sent))?;
    let rules = dir.path().join("soak-rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: soak\n    interval: 15s\n    rules:\n      - record: shard:soak_value:sum\n        expr: sum by (shard) (soak_value)\n      - record: shard:soak_value:avg5m\n        expr: avg by (shard) (avg_over_time(soak_value[5m]))\n      - alert: SoakHigh\n        expr: shard:soak_value:sum > 100000\n        for: 1m\n        labels: { severity: warning }\n        annotations: { summary: 'shard {{ $labels.shard }} sums to {{ $value }}' }\n",
    )?;
    std::fs::write(
        dir.path().join("am.yml"),
        format!(
            "route: {{ receiver: sink, group_by: [shard], group_wait: 10s, group_interval: 1m }}\nreceivers: [ {{ name: sink, webhook_configs: [ {{ url: 'http://127.0.0.1:{sink}/' }} ] }} ]\n"
        ),
    )?;
    let port = free_port()?;
    let cfg = dir.path().join("lookout.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: {}s\n  evaluation_interval: 15s\nstorage:\n  block_duration: {}s\nrule_files: [ soak-rules.yml ]\nnotifier:\n  config_file: am.yml\nscrape_configs:\n  - job_name: soak\n    static_configs: [ {{ targets: [ '127.0.0.1:{target}' ] }} ]\n",
            o.scrape_interval.as_secs().max(1),
            o.block_duration.as_secs().max(60)
        ),
    )?;
    let exe = crate::lookout_exe()?;
    let data = dir.path().join("data");
    let child = spawn(
        "lookout",
        std::process::Command::new(&exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&cfg),
    )?;
    let pid = child.pid().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/-/ready")).send().is_err() {
        anyhow::ensure!(Instant::now() < deadline, "lookout did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "soak: {} series, {:.0}% replaced per hour, {} queries/s, blocks of {:?}, for {:?} (report every {:?})",
        o.series,
        o.churn * 100.0,
        o.qps,
        o.block_duration,
        o.duration,
        o.window
    );
    let stop = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (b, s, l) = (base.clone(), Arc::clone(&stop), Arc::clone(&lat));
            let (q, every) = (o.qps / 4.0, o.all_series_every);
            std::thread::spawn(move || query_loop(b, q, every, s, l))
        })
        .collect();
    let probes = Arc::new(Mutex::new(Vec::new()));
    let prober = {
        let (b, s, p) = (base.clone(), Arc::clone(&stop), Arc::clone(&probes));
        std::thread::spawn(move || probe_loop(b, s, p))
    };
    println!(
        "window  rss_min_MiB  rss_max_MiB  queries  p50_ms  p99_ms  max_ms  all_max_ms  panel_max_ms  panel_over_1s  failed  probe_max_ms  scrape_gap_max_s  rejected  notifications  head_series  blocks  index_MiB"
    );
    let mut window_start = Instant::now();
    let (mut rss_min, mut rss_max) = (u64::MAX, 0u64);
    let mut windows = 0;
    let (mut all_max, mut all_over, mut gap_max) = (0.0f64, 0usize, 0.0f64);
    let (mut worst_panel, mut worst_probe) = (0.0f64, 0.0f64);
    let (mut flat_min, mut flat_max) = (u64::MAX, 0u64);
    let soak_start = Instant::now();
    while soak_start.elapsed() < o.duration {
        std::thread::sleep(Duration::from_secs(5).min(o.window));
        let (rss, _) = super::rss(&pid);
        anyhow::ensure!(rss > 0, "lookout exited during the soak");
        rss_min = rss_min.min(rss);
        rss_max = rss_max.max(rss);
        if window_start.elapsed() >= o.window || soak_start.elapsed() >= o.duration {
            windows += 1;
            let l: Vec<Took> = std::mem::take(&mut *lat.lock().expect("lock"));
            let failed = l.iter().filter(|x| !x.ok).count();
            let mut all: Vec<f64> = l.iter().map(|x| x.secs).collect();
            let n = all.len();
            let (p50, p99, max) = (
                percentile(&mut all, 0.5),
                percentile(&mut all, 0.99),
                percentile(&mut all, 1.0),
            );
            let heavy_max = l
                .iter()
                .filter(|x| x.all)
                .map(|x| x.secs)
                .fold(0.0, f64::max);
            let panel_max = l
                .iter()
                .filter(|x| !x.all)
                .map(|x| x.secs)
                .fold(0.0, f64::max);
            let over = l.iter().filter(|x| !x.all && x.secs > 1.0).count();
            let probe_max = std::mem::take(&mut *probes.lock().expect("lock"))
                .into_iter()
                .fold(0.0, f64::max);
            let metrics = client
                .get(format!("{base}/metrics"))
                .send()
                .and_then(|r| r.text())
                .unwrap_or_default();
            let rejected = metric(&metrics, "lookout_tsdb_samples_rejected_total")
                + metric(&metrics, "lookout_tsdb_limit_rejections_total");
            let gap = longest_scrape_gap(&client, &base, o.window.as_secs().max(30)).unwrap_or(0.0);
            println!(
                "{windows:>6}  {:>11.1}  {:>11.1}  {n:>7}  {:>6.1}  {:>6.1}  {:>6.1}  {:>10.1}  {:>12.1}  {over:>13}  {failed:>6}  {:>12.1}  {gap:>16.1}  {rejected:>8}  {:>13}  {:>11}  {:>6}  {:>9.1}",
                rss_min as f64 / 1048576.0,
                rss_max as f64 / 1048576.0,
                p50 * 1e3,
                p99 * 1e3,
                max * 1e3,
                heavy_max * 1e3,
                panel_max * 1e3,
                probe_max * 1e3,
                sent.load(Ordering::Relaxed),
                metric(&metrics, "lookout_tsdb_head_series"),
                metric(&metrics, "lookout_tsdb_blocks_loaded"),
                metric(&metrics, "lookout_tsdb_blocks_index_memory_bytes") / 1048576.0
            );
            all_max = all_max.max(heavy_max);
            worst_panel = worst_panel.max(panel_max);
            worst_probe = worst_probe.max(probe_max);
            all_over += over;
            gap_max = gap_max.max(gap);
            // The first window holds the warm-up (the head filling to its steady size).
            if windows > 1 {
                flat_min = flat_min.min(rss_min);
                flat_max = flat_max.max(rss_max);
            }
            rss_min = u64::MAX;
            rss_max = 0;
            window_start = Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let _ = prober.join();
    drop(child);
    println!(
        "soak: slowest panel query {:.0} ms ({all_over} over 1 s), slowest query over all series {:.0} ms, slowest probe {:.0} ms; longest scrape gap {gap_max:.1} s (interval {}s); RSS after warm-up {:.1}–{:.1} MiB",
        worst_panel * 1e3,
        all_max * 1e3,
        worst_probe * 1e3,
        o.scrape_interval.as_secs(),
        if flat_min == u64::MAX {
            0.0
        } else {
            flat_min as f64 / 1048576.0
        },
        flat_max as f64 / 1048576.0
    );
    Ok(())
}
