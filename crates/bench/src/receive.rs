//! `lookout-bench receive`: how many remote-written samples a receiver takes per second
//! and per CPU-second, Lookout against Debian's Prometheus 2.42
//! (`--web.enable-remote-write-receiver`) fed the same requests in the same run.
//!
//! The requests are built once (remote write 1.0, snappy): `series` series × `rounds`
//! samples 15 s apart ending now, `per_request` series per request, as a sender's
//! shards send them; `shards` threads post them. Each receiver starts empty; its CPU is
//! read from /proc before and after.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use lookout_model::Labels;
use lookout_remote::{Series, encode_write_request};

use super::overhead::{cpu_seconds, spawn};
use super::queries::{free_port, wait_ready};

/// What to run (the command line of `lookout-bench receive`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReceiveOptions {
    /// Series written.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) series: usize,
    /// Samples per series (15 s apart, ending now).
    #[arg(long, default_value_t = 60)]
    pub(crate) rounds: usize,
    /// Series per request.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) per_request: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 4)]
    pub(crate) shards: usize,
    /// Prometheus to compare with.
    #[arg(long, default_value = "prometheus")]
    pub(crate) prometheus: String,
}

/// The requests, in the order a sender would send them (round by round).
fn requests(o: &ReceiveOptions) -> Vec<Vec<u8>> {
    let end = lookout_model::now_ms() / 15_000 * 15_000;
    let mut out = Vec::new();
    for r in 0..o.rounds {
        let t = end - (o.rounds - 1 - r) as i64 * 15_000;
        for chunk in (0..o.series)
            .collect::<Vec<_>>()
            .chunks(o.per_request.max(1))
        {
            let series: Vec<Series> = chunk
                .iter()
                .map(|&i| {
                    let id = i.to_string();
                    let shard = (i % 50).to_string();
                    Series {
                        labels: Labels::from_pairs([
                            ("__name__", "bench_requests_total"),
                            ("job", "bench"),
                            ("instance", "host-1:9100"),
                            ("shard", shard.as_str()),
                            ("id", id.as_str()),
                        ]),
                        samples: vec![(t, (r * (i % 7 + 1)) as f64)],
                        exemplars: Vec::new(),
                        created: 0,
                    }
                })
                .collect();
            out.push(encode_write_request(&series));
        }
    }
    out
}

/// Sends every request to `url` from `shards` threads, round by round (a round's requests
/// finish before the next round's start, as samples of one series must arrive in order).
fn send(url: &str, reqs: &[Vec<u8>], per_round: usize, shards: usize) -> anyhow::Result<Duration> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let started = Instant::now();
    for round in reqs.chunks(per_round.max(1)) {
        let next = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| -> anyhow::Result<()> {
            let handles: Vec<_> = (0..shards.max(1))
                .map(|_| {
                    let (client, next) = (client.clone(), Arc::clone(&next));
                    s.spawn(move || -> anyhow::Result<()> {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(body) = round.get(i) else {
                                return Ok(());
                            };
                            let r = client
                                .post(url)
                                .header("content-type", "application/x-protobuf")
                                .header("content-encoding", "snappy")
                                .header("x-prometheus-remote-write-version", "0.1.0")
                                .body(body.clone())
                                .send()?;
                            anyhow::ensure!(
                                r.status().is_success(),
                                "{url}: {} {}",
                                r.status(),
                                r.text().unwrap_or_default()
                            );
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a sender panicked"))??;
            }
            Ok(())
        })?;
    }
    Ok(started.elapsed())
}

pub(crate) fn run(o: ReceiveOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reqs = requests(&o);
    let per_round = o.series.div_ceil(o.per_request.max(1));
    let samples = o.series * o.rounds;
    let bytes: usize = reqs.iter().map(Vec::len).sum();
    eprintln!(
        "{} requests, {samples} samples, {:.1} MiB compressed",
        reqs.len(),
        bytes as f64 / 1048576.0
    );
    let client = reqwest::blocking::Client::new();
    let mut results = Vec::new();
    for who in ["lookout", "prometheus"] {
        let port = free_port()?;
        let data = dir.path().join(who);
        let proc = if who == "lookout" {
            let cfg = dir.path().join("lookout.yml");
            std::fs::write(
                &cfg,
                "collectors:\n  host: { enabled: false }\n  process: { enabled: false }\n",
            )?;
            spawn(
                "lookout",
                Command::new(crate::lookout_exe()?)
                    .args(["serve", "--web.enable-remote-write-receiver", "--config"])
                    .arg(&cfg)
                    .arg("--data")
                    .arg(&data)
                    .args(["--listen", &format!("127.0.0.1:{port}")]),
            )?
        } else {
            let cfg = dir.path().join("prometheus.yml");
            std::fs::write(&cfg, "global: {}\n")?;
            spawn(
                "prometheus",
                Command::new(&o.prometheus)
                    .arg(format!("--config.file={}", cfg.display()))
                    .arg(format!("--storage.tsdb.path={}", data.display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .arg("--web.enable-remote-write-receiver"),
            )
            .with_context(|| format!("starting {}", o.prometheus))?
        };
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&client, &base, who)?;
        let cpu0 = cpu_seconds(proc.pid());
        let took = send(&format!("{base}/api/v1/write"), &reqs, per_round, o.shards)?;
        let cpu = cpu_seconds(proc.pid()) - cpu0;
        let rate = samples as f64 / took.as_secs_f64();
        let per_cpu = samples as f64 / cpu.max(1e-3);
        println!(
            "{who:>10}: {samples} samples in {:.2} s = {:.0} samples/s; receiver CPU {:.2} s = {:.0} samples per CPU-second",
            took.as_secs_f64(),
            rate,
            cpu,
            per_cpu
        );
        results.push((rate, per_cpu));
        drop(proc);
    }
    if let [(lr, lc), (pr, pc)] = results[..] {
        println!(
            "receive: Lookout/Prometheus {:.2}× samples/s, {:.2}× samples per CPU-second",
            lr / pr,
            lc / pc
        );
    }
    Ok(())
}
