//! `lookout-bench alerting`: rule evaluation and notification latency.
//!
//! 1. **Evaluation**: one exposition endpoint (served here) with N series is scraped
//!    every 5 s by Lookout and by Debian's Prometheus, each evaluating the same rule file
//!    (R alerting rules in groups of 100, each rule selecting N/100 series) every 5 s.
//!    Once both fire the same alerts (steady state), the sum of the groups'
//!    `evaluationTime` from `/api/v1/rules` (the same API on both) is sampled per cycle;
//!    medians are compared, and the number of firing alerts must still agree.
//! 2. **Notification**: the notifier in this process with G groups of alerts; after the
//!    groups' `group_wait`, the time from the flush (the tick that finds them due) until
//!    a local webhook receiver has every payload.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::overhead::spawn;
use super::queries::{free_port, median};

/// Serves `body` to every HTTP request on a free port, on a background thread.
fn serve_static(body: String) -> anyhow::Result<u16> {
    let body: Arc<str> = body.into();
    super::serve_exposition(move || Arc::clone(&body))
}

fn payload(series: usize) -> String {
    let groups = 100;
    let mut out = String::from("# TYPE bench_value gauge\n");
    let mut rng = super::dataset::Rng::new(7);
    for i in 0..series {
        let v = (rng.f() * 100.0).floor();
        out.push_str(&format!(
            "bench_value{{group=\"g{:03}\",series=\"{}\"}} {v}\n",
            i % groups,
            i / groups
        ));
    }
    out
}

fn rules(rules: usize) -> String {
    let mut out = String::from("groups:\n");
    for g in 0..rules.div_ceil(100) {
        out.push_str(&format!("- name: bench{g}\n  rules:\n"));
        for r in (g * 100)..((g + 1) * 100).min(rules) {
            out.push_str(&format!(
                "  - alert: Bench{r}\n    expr: bench_value{{group=\"g{:03}\"}} > {}\n    labels: {{severity: warning}}\n    annotations: {{summary: 'value {{{{ $value }}}} on {{{{ $labels.series }}}}'}}\n",
                r % 100,
                90 + r % 10
            ));
        }
    }
    out
}

fn rules_eval_seconds(client: &reqwest::blocking::Client, base: &str) -> Option<(f64, String)> {
    let v: Value = client
        .get(format!("{base}/api/v1/rules"))
        .send()
        .ok()?
        .json()
        .ok()?;
    let groups = v["data"]["groups"].as_array()?;
    let total: f64 = groups
        .iter()
        .filter_map(|g| g["evaluationTime"].as_f64())
        .sum();
    let last: Vec<String> = groups
        .iter()
        .map(|g| g["lastEvaluation"].as_str().unwrap_or("").to_string())
        .collect();
    Some((total, last.join(",")))
}

fn firing(client: &reqwest::blocking::Client, base: &str) -> Option<usize> {
    let v: Value = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", "count(ALERTS{alertstate=\"firing\"})")])
        .send()
        .ok()?
        .json()
        .ok()?;
    v["data"]["result"][0]["value"][1]
        .as_str()?
        .parse::<f64>()
        .ok()
        .map(|f| f as usize)
}

/// Runs both figures and prints them.
pub(crate) fn run(
    series: usize,
    rule_count: usize,
    cycles: usize,
    prometheus: &str,
    work: Option<&Path>,
) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("lookout-bench-alerting-")
        .tempdir_in(work.map_or_else(std::env::temp_dir, Path::to_path_buf))?;
    let dir = tmp.path();
    let port = serve_static(payload(series))?;
    std::fs::write(dir.join("rules.yml"), rules(rule_count))?;
    let prom_cfg = format!(
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: bench\n    static_configs: [{{targets: [\"127.0.0.1:{port}\"]}}]\n"
    );
    std::fs::write(dir.join("prometheus.yml"), &prom_cfg)?;
    let lookout_cfg = format!(
        "{prom_cfg}rule_packs: []\ncollectors:\n  host: {{enabled: false}}\n  process: {{enabled: false}}\n"
    );
    std::fs::write(dir.join("lookout.yml"), lookout_cfg)?;
    let (lp, pp) = (free_port()?, free_port()?);
    let exe = crate::lookout_exe()?;
    let _lk = spawn(
        "lookout",
        Command::new(&exe)
            .args(["serve", "--config"])
            .arg(dir.join("lookout.yml"))
            .arg("--data")
            .arg(dir.join("lookout-data"))
            .args(["--listen", &format!("127.0.0.1:{lp}")]),
    )?;
    let _prom = spawn(
        "prometheus (apt-get install prometheus)",
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{pp}")),
    )?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let bases = [
        format!("http://127.0.0.1:{lp}"),
        format!("http://127.0.0.1:{pp}"),
    ];
    eprintln!(
        "{rule_count} alerting rules over {series} series, evaluated every 5 s by Lookout and Prometheus; sampling {cycles} cycles…"
    );
    // Steady state first: both sides have evaluated everything and fire the same alerts.
    let warm = Instant::now() + Duration::from_secs(120);
    loop {
        let (a, b) = (firing(&client, &bases[0]), firing(&client, &bases[1]));
        if a.is_some() && a == b {
            break;
        }
        anyhow::ensure!(
            Instant::now() < warm,
            "no steady state within 2 minutes: lookout {a:?}, prometheus {b:?} alerts firing"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut samples: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut last = [String::new(), String::new()];
    let deadline = Instant::now() + Duration::from_secs(30 + 6 * cycles as u64);
    while samples.iter().any(|s| s.len() < cycles) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        for (i, b) in bases.iter().enumerate() {
            if let Some((t, stamp)) = rules_eval_seconds(&client, b)
                && t > 0.0
                && stamp != last[i]
                && !stamp.contains("0001-01-01")
            {
                last[i] = stamp;
                samples[i].push(t);
            }
        }
    }
    anyhow::ensure!(
        samples.iter().all(|s| s.len() >= cycles.min(3)),
        "too few evaluation cycles observed: {:?}",
        samples.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let (fl, fp) = (firing(&client, &bases[0]), firing(&client, &bases[1]));
    let (ml, mp) = (median(samples[0].clone()), median(samples[1].clone()));
    println!(
        "rule evaluation per cycle ({rule_count} rules, {series} series; median of {} / {} cycles):",
        samples[0].len(),
        samples[1].len()
    );
    println!("  lookout     {:>9.1} ms", ml * 1000.0);
    println!("  prometheus  {:>9.1} ms", mp * 1000.0);
    println!("  ratio       {:>9.2}×", ml / mp);
    println!(
        "  firing alerts: lookout {} prometheus {} ({})",
        fl.map_or("?".into(), |n| n.to_string()),
        fp.map_or("?".into(), |n| n.to_string()),
        if fl == fp && fl.is_some() {
            "identical"
        } else {
            "DIFFERENT"
        }
    );
    notification_latency()?;
    Ok(())
}

/// The notifier in-process: 100 groups of 10 alerts, flushed after `group_wait`, delivered
/// to a local webhook receiver; prints the time from the flush to the last payload.
fn notification_latency() -> anyhow::Result<()> {
    let received = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    let r2 = Arc::clone(&received);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let r2 = Arc::clone(&r2);
            std::thread::spawn(move || {
                let mut s = s;
                let mut r = BufReader::new(s.try_clone().expect("clone socket"));
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    r2.lock().expect("lock").push(Instant::now());
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                }
            });
        }
    });
    let cfg = lookout_notify::Config::parse(&format!(
        "route: {{receiver: hook, group_by: [alertname], group_wait: 1s}}\nreceivers: [{{name: hook, webhook_configs: [{{url: 'http://127.0.0.1:{port}/'}}]}}]\n"
    ))
    .map_err(anyhow::Error::msg)?;
    let core = lookout_notify::Core::new(cfg, lookout_notify::Options::default())
        .map_err(anyhow::Error::msg)?;
    let n = Arc::new(lookout_notify::Notifier::new(
        core,
        "http://bench".into(),
        String::new(),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut lat = Vec::new();
    for round in 0..5 {
        received.lock().expect("lock").clear();
        let now = lookout_model::now_ms();
        let alerts = (0..1000)
            .map(|i| lookout_notify::Alert {
                labels: lookout_model::Labels::from_pairs([
                    ("alertname", format!("A{round}_{}", i % 100)),
                    ("instance", format!("i{i}")),
                ]),
                annotations: Default::default(),
                starts_at: now,
                ends_at: now + 600_000,
                generator_url: String::new(),
                updated_at: 0,
            })
            .collect();
        n.put_alerts(alerts);
        std::thread::sleep(Duration::from_millis(1010));
        let flush = Instant::now();
        rt.block_on(n.tick_and_deliver(lookout_model::now_ms()));
        let got = received.lock().expect("lock").clone();
        anyhow::ensure!(got.len() == 100, "expected 100 payloads, got {}", got.len());
        let last = got.iter().max().copied().unwrap_or(flush);
        lat.push(last.duration_since(flush).as_secs_f64());
    }
    println!(
        "notification: 100 groups × 10 alerts, flush → last webhook payload received (median of 5):"
    );
    println!(
        "  {:.1} ms beyond group_wait (goal ≤ 50 ms)",
        median(lat) * 1000.0
    );
    Ok(())
}
