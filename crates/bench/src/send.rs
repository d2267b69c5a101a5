//! `lookout-bench send`: remote-write sending, Lookout against Debian's Prometheus 2.42,
//! each scraping the same generated target and remote-writing to the same receiver (a
//! counting sink in this process) in the same run.
//!
//! - Steady state: `series` series scraped every `interval`; over `steady` the figures
//!   are samples the sink acknowledged per second and per CPU-second of the sender's
//!   process (scraping, storing and sending together: both do the same work).
//! - Catch-up: the sink answers 503 for `outage` while the target is scraped every
//!   `catchup_interval` (240 scrapes at 1 s are the samples of an hour at 15 s); then it
//!   accepts, and the figures are how long the sender takes to deliver everything it
//!   scraped up to that moment, samples per second and per CPU-second meanwhile.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::overhead::{cpu_seconds, spawn};
use super::queries::{free_port, wait_ready};

/// What to run (the command line of `lookout-bench send`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SendOptions {
    /// Series the target exposes.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) series: usize,
    /// Scrape interval in the steady state, in seconds.
    #[arg(long, default_value_t = 15)]
    pub(crate) interval: u64,
    /// How long the steady state is measured, in seconds.
    #[arg(long, default_value_t = 120)]
    pub(crate) steady: u64,
    /// Scrape interval during the outage, in seconds.
    #[arg(long, default_value_t = 1)]
    pub(crate) catchup_interval: u64,
    /// How long the receiver is down, in seconds.
    #[arg(long, default_value_t = 240)]
    pub(crate) outage: u64,
    /// Prometheus to compare with.
    #[arg(long, default_value = "prometheus")]
    pub(crate) prometheus: String,
}

/// The sink's counters.
#[derive(Default)]
struct Sink {
    refuse: AtomicBool,
    samples: AtomicU64,
    /// Newest sample timestamp acknowledged (ms).
    newest: AtomicI64,
}

/// Serves the target (`/metrics`) and the sink (`/write`) on `port`, on a runtime of
/// its own thread.
fn serve(port: u16, series: usize, sink: Arc<Sink>) -> anyhow::Result<()> {
    use axum::routing::{get, post};
    let mut text = String::with_capacity(series * 64);
    text.push_str("# TYPE bench_value gauge\n");
    for i in 0..series {
        text.push_str(&format!(
            "bench_value{{id=\"{i}\",shard=\"{}\"}} {}\n",
            i % 50,
            i % 97
        ));
    }
    let text = Arc::new(text);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let t = Arc::clone(&text);
                async move { t.as_str().to_owned() }
            }),
        )
        .route(
            "/write",
            post(move |body: axum::body::Bytes| {
                let sink = Arc::clone(&sink);
                async move {
                    if sink.refuse.load(Ordering::Relaxed) {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let Ok(raw) = snap::raw::Decoder::new().decompress_vec(&body) else {
                        return axum::http::StatusCode::BAD_REQUEST;
                    };
                    let Ok(req) =
                        <lookout_remote::WriteRequest as prost::Message>::decode(raw.as_slice())
                    else {
                        return axum::http::StatusCode::BAD_REQUEST;
                    };
                    let mut n = 0;
                    let mut newest = i64::MIN;
                    for ts in &req.timeseries {
                        n += ts.samples.len() as u64;
                        if let Some(s) = ts.samples.last() {
                            newest = newest.max(s.timestamp);
                        }
                    }
                    sink.samples.fetch_add(n, Ordering::Relaxed);
                    sink.newest.fetch_max(newest, Ordering::Relaxed);
                    axum::http::StatusCode::OK
                }
            }),
        );
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(l, app).await;
        });
    });
    Ok(())
}

/// Starts `who` scraping `target` every `interval` and writing to `sink`.
fn start(
    who: &'static str,
    o: &SendOptions,
    dir: &std::path::Path,
    target: &str,
    sink: &str,
    interval: u64,
) -> anyhow::Result<(super::overhead::Proc, String)> {
    let port = free_port()?;
    let data = dir.join(format!("{who}-{interval}"));
    let job = format!(
        "scrape_configs:\n  - job_name: target\n    scrape_interval: {interval}s\n    scrape_timeout: {}s\n    static_configs: [ {{ targets: ['{target}'] }} ]\nremote_write:\n  - url: {sink}\n",
        interval.min(10)
    );
    let proc = if who == "lookout" {
        let cfg = dir.join(format!("lookout-{interval}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "collectors:\n  host: {{ enabled: false }}\n  process: {{ enabled: false }}\n{job}"
            ),
        )?;
        spawn(
            "lookout",
            Command::new(crate::lookout_exe()?)
                .args(["serve", "--config"])
                .arg(&cfg)
                .arg("--data")
                .arg(&data)
                .args(["--listen", &format!("127.0.0.1:{port}")]),
        )?
    } else {
        let cfg = dir.join(format!("prometheus-{interval}.yml"));
        std::fs::write(&cfg, job)?;
        spawn(
            "prometheus",
            Command::new(&o.prometheus)
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        )
        .with_context(|| format!("starting {}", o.prometheus))?
    };
    Ok((proc, format!("http://127.0.0.1:{port}")))
}

struct Figures {
    steady_rate: f64,
    steady_per_cpu: f64,
    catchup_secs: f64,
    catchup_rate: f64,
    catchup_per_cpu: f64,
}

fn measure(
    who: &'static str,
    o: &SendOptions,
    dir: &std::path::Path,
    target: &str,
    sink_url: &str,
    sink: &Sink,
) -> anyhow::Result<Figures> {
    let client = reqwest::blocking::Client::new();
    // Steady state.
    sink.refuse.store(false, Ordering::Relaxed);
    let (proc, base) = start(who, o, dir, target, sink_url, o.interval)?;
    wait_ready(&client, &base, who)?;
    // Let the first scrapes and the first sends happen before measuring.
    std::thread::sleep(Duration::from_secs(o.interval * 2));
    let (s0, c0, t0) = (
        sink.samples.load(Ordering::Relaxed),
        cpu_seconds(proc.pid()),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(o.steady));
    let (s1, c1) = (
        sink.samples.load(Ordering::Relaxed),
        cpu_seconds(proc.pid()),
    );
    let secs = t0.elapsed().as_secs_f64();
    let sent = (s1 - s0) as f64;
    let steady_rate = sent / secs;
    let steady_per_cpu = sent / (c1 - c0).max(1e-3);
    eprintln!(
        "{who:>10} steady: {sent:.0} samples in {secs:.0} s = {steady_rate:.0}/s; CPU {:.2} s = {steady_per_cpu:.0} samples per CPU-second",
        c1 - c0
    );
    drop(proc);
    // Catch-up after an outage.
    sink.refuse.store(true, Ordering::Relaxed);
    let (proc, base) = start(who, o, dir, target, sink_url, o.catchup_interval)?;
    wait_ready(&client, &base, who)?;
    eprintln!("{who:>10} outage: the sink refuses for {} s", o.outage);
    std::thread::sleep(Duration::from_secs(o.outage));
    let back_ms = lookout_model::now_ms();
    let (s0, c0, t0) = (
        sink.samples.load(Ordering::Relaxed),
        cpu_seconds(proc.pid()),
        Instant::now(),
    );
    sink.refuse.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(o.outage * 10 + 300);
    while sink.newest.load(Ordering::Relaxed) < back_ms {
        anyhow::ensure!(Instant::now() < deadline, "{who} did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let catchup_secs = t0.elapsed().as_secs_f64();
    let (s1, c1) = (
        sink.samples.load(Ordering::Relaxed),
        cpu_seconds(proc.pid()),
    );
    let sent = (s1 - s0) as f64;
    let f = Figures {
        steady_rate,
        steady_per_cpu,
        catchup_secs,
        catchup_rate: sent / catchup_secs,
        catchup_per_cpu: sent / (c1 - c0).max(1e-3),
    };
    eprintln!(
        "{who:>10} catch-up: {sent:.0} samples in {catchup_secs:.1} s = {:.0}/s; CPU {:.2} s = {:.0} samples per CPU-second",
        f.catchup_rate,
        c1 - c0,
        f.catchup_per_cpu
    );
    drop(proc);
    Ok(f)
}

pub(crate) fn run(o: SendOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sink = Arc::new(Sink::default());
    let port = free_port()?;
    serve(port, o.series, Arc::clone(&sink))?;
    let target = format!("127.0.0.1:{port}");
    let sink_url = format!("http://127.0.0.1:{port}/write");
    let mut all = Vec::new();
    for who in ["lookout", "prometheus"] {
        sink.newest.store(i64::MIN, Ordering::Relaxed);
        all.push((
            who,
            measure(who, &o, dir.path(), &target, &sink_url, &sink)?,
        ));
    }
    for (who, f) in &all {
        println!(
            "{who:>10}: steady {:.0} samples/s, {:.0} per CPU-second; catch-up after {} s × {} series at {} s: {:.1} s, {:.0} samples/s, {:.0} per CPU-second",
            f.steady_rate,
            f.steady_per_cpu,
            o.outage,
            o.series,
            o.catchup_interval,
            f.catchup_secs,
            f.catchup_rate,
            f.catchup_per_cpu
        );
    }
    if let [(_, l), (_, p)] = &all[..] {
        println!(
            "send: Lookout/Prometheus steady {:.2}× samples per CPU-second; catch-up {:.2}× faster, {:.2}× samples per CPU-second",
            l.steady_per_cpu / p.steady_per_cpu,
            p.catchup_secs / l.catchup_secs,
            l.catchup_per_cpu / p.catchup_per_cpu
        );
    }
    Ok(())
}
