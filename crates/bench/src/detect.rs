//! `lookout-bench detect`: from a database going away to the webhook, Lookout against the
//! classic stack in the same run. A real Redis (Debian's redis-server) is watched by
//! Lookout (its Redis collector, the rule, its notifier) and by redis_exporter +
//! Prometheus + Alertmanager, both collecting and evaluating every `--interval` and
//! waiting `--group-wait`, with the same rule (`redis_up == 0`) and webhook receivers
//! served here. Each round starts everything fresh (no notifier state carries over),
//! waits until both see Redis up, kills Redis and times each side's first webhook
//! request naming the alert. Medians over the rounds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::overhead::spawn;
use super::queries::{free_port, median};

/// Options of `lookout-bench detect`.
#[derive(Debug, clap::Args)]
pub(crate) struct DetectOptions {
    /// Rounds (each with fresh processes).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Collection and evaluation interval of both sides.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration_arg)]
    interval: Duration,
    /// The notifiers' group_wait.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration_arg)]
    group_wait: Duration,
}

/// Webhook requests received: (path, when), for bodies naming RedisDown firing.
type Received = Arc<Mutex<Vec<(String, Instant)>>>;

/// A webhook receiver on a free port, on a background thread.
fn receiver() -> anyhow::Result<(u16, Received)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    let got: Received = Arc::default();
    let g = Arc::clone(&got);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let g = Arc::clone(&g);
            std::thread::spawn(move || {
                let mut r = BufReader::new(&s);
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len.min(1 << 20)];
                let _ = r.read_exact(&mut body);
                let text = String::from_utf8_lossy(&body);
                if text.contains("RedisDown") && text.contains("\"firing\"") {
                    g.lock().expect("lock").push((path, Instant::now()));
                }
                let _ = (&s).write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    Ok((port, got))
}

const RULES: &str = "groups:\n- name: redis\n  rules:\n  - alert: RedisDown\n    expr: redis_up == 0\n    labels: {severity: critical}\n";

/// Whether `url`'s instant query for `redis_up` answers 1.
fn redis_up(client: &reqwest::blocking::Client, base: &str) -> bool {
    let Ok(r) = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", "redis_up")])
        .send()
    else {
        return false;
    };
    let Ok(v) = r.json::<serde_json::Value>() else {
        return false;
    };
    v["data"]["result"][0]["value"][1] == "1"
}

/// One round: both sides fresh, Redis killed; the seconds until each webhook.
fn round(o: &DetectOptions, dir: &std::path::Path) -> anyhow::Result<(f64, f64)> {
    let iv = lookout_model::format_duration(o.interval);
    let gw = lookout_model::format_duration(o.group_wait);
    let (hook, got) = receiver()?;
    let write = |name: &str, text: String| -> anyhow::Result<std::path::PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    };
    let rp = free_port()?;
    let redis = spawn(
        "redis-server",
        Command::new("redis-server")
            .args(["--port", &rp.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir),
    )?;
    let redis_url = format!("redis://127.0.0.1:{rp}");
    write("rules.yml", RULES.to_string())?;
    let am_file = |path: &str| {
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: {gw}\n  group_interval: 5m\nreceivers:\n  - name: hook\n    webhook_configs: [ {{ url: \"http://127.0.0.1:{hook}/{path}\", send_resolved: false }} ]\n"
        )
    };
    write("lookout-am.yml", am_file("lookout"))?;
    let lcfg = write(
        "lookout.yml",
        format!(
            "global:\n  scrape_interval: {iv}\n  evaluation_interval: {iv}\ncollectors:\n  host: {{ enabled: false }}\n  process: {{ enabled: false }}\n  redis:\n    - name: cache\n      url: \"{redis_url}\"\nrule_packs: []\nrule_files: [rules.yml]\nnotifier:\n  config_file: lookout-am.yml\nsnapshots: {{ on_alert_severities: [] }}\n"
        ),
    )?;
    let lport = free_port()?;
    let _lookout = spawn(
        "lookout",
        Command::new(crate::lookout_exe()?)
            .args(["serve", "--config"])
            .arg(&lcfg)
            .arg("--data")
            .arg(dir.join("lookout-data"))
            .args(["--listen", &format!("127.0.0.1:{lport}")]),
    )?;
    let (xp, ap, pp) = (free_port()?, free_port()?, free_port()?);
    let _exporter = spawn(
        "prometheus-redis-exporter",
        Command::new("prometheus-redis-exporter")
            .args(["-redis.addr", &redis_url])
            .args(["-web.listen-address", &format!("127.0.0.1:{xp}")]),
    )?;
    let amcfg = write("alertmanager.yml", am_file("stack"))?;
    let _am = spawn(
        "prometheus-alertmanager",
        Command::new("prometheus-alertmanager")
            .arg(format!("--web.listen-address=127.0.0.1:{ap}"))
            .arg("--cluster.listen-address=")
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--config.file={}", amcfg.display())),
    )?;
    let pcfg = write(
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: {iv}\n  evaluation_interval: {iv}\nrule_files: [ {} ]\nalerting:\n  alertmanagers:\n    - static_configs: [ {{ targets: [\"127.0.0.1:{ap}\"] }} ]\nscrape_configs:\n  - job_name: redis\n    static_configs: [ {{ targets: [\"127.0.0.1:{xp}\"] }} ]\n",
            dir.join("rules.yml").display()
        ),
    )?;
    let _prom = spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", pcfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{pp}")),
    )?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let (lbase, pbase) = (
        format!("http://127.0.0.1:{lport}"),
        format!("http://127.0.0.1:{pp}"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(redis_up(&client, &lbase) && redis_up(&client, &pbase)) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "both sides did not see Redis up in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Past a couple of evaluations, so both sides are in their steady cycle.
    std::thread::sleep(o.interval * 2);
    let killed = Instant::now();
    drop(redis);
    let limit = killed + o.interval * 4 + o.group_wait * 2 + Duration::from_secs(30);
    let first = |side: &str| {
        got.lock()
            .expect("lock")
            .iter()
            .find(|(p, _)| p.trim_start_matches('/') == side)
            .map(|(_, t)| t.duration_since(killed).as_secs_f64())
    };
    loop {
        if let (Some(l), Some(s)) = (first("lookout"), first("stack")) {
            return Ok((l, s));
        }
        anyhow::ensure!(
            Instant::now() < limit,
            "no notification in time (lookout: {:?}, stack: {:?})",
            first("lookout"),
            first("stack")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn run(o: DetectOptions) -> anyhow::Result<()> {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for k in 0..o.rounds {
        let dir = tempfile::Builder::new()
            .prefix("lookout-bench-detect-")
            .tempdir()?;
        let (l, s) = round(&o, dir.path())?;
        eprintln!(
            "round {}: Redis killed → webhook: lookout {l:.2} s, classic stack {s:.2} s",
            k + 1
        );
        ours.push(l);
        theirs.push(s);
    }
    let (l, s) = (median(ours.clone()), median(theirs.clone()));
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("{lo:.2}–{hi:.2} s")
    };
    println!(
        "Redis killed → webhook, {} rounds, collection/evaluation every {}, group_wait {}:",
        o.rounds,
        lookout_model::format_duration(o.interval),
        lookout_model::format_duration(o.group_wait)
    );
    println!("lookout:       median {l:.2} s ({})", range(&ours));
    println!("classic stack: median {s:.2} s ({})", range(&theirs));
    println!(
        "ratio: {:.2}× ; lookout within group_wait + 1 s: {}",
        l / s,
        if l <= o.group_wait.as_secs_f64() + 1.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
