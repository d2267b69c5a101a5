//! `lookout-bench dashboard`: how long a large dashboard takes to open in a real browser.
//!
//! One host's node_exporter-like data for `hours` is imported into a fresh data
//! directory; the shipped host overview is copied `copies` times into one dashboard (each
//! copy's queries made distinct, so deduplication does not hide their cost), provisioned
//! through `dashboards.paths`, and opened `loads` times in headless Chromium (Debian's
//! chromium and chromium-driver, over WebDriver). Reported per load: the time from
//! navigation until every panel settled (`data-settled-at`, the page's own clock), the
//! panels by state, the queries asked. The baseline, measured in the same run: the same
//! queries the page asked, sent one after another by this process.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::overhead::spawn;
use super::queries::{free_port, median, wait_ready};

/// What to run (the command line of `lookout-bench dashboard`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DashboardOptions {
    /// Copies of the host overview's panels in the dashboard (21 each).
    #[arg(long, default_value_t = 6)]
    pub(crate) copies: usize,
    /// Hours of data, and the dashboard's time range.
    #[arg(long, default_value_t = 24.0)]
    pub(crate) hours: f64,
    /// Page loads measured (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub(crate) loads: usize,
    /// chromedriver to drive Chromium with.
    #[arg(long, default_value = "/usr/bin/chromedriver")]
    pub(crate) chromedriver: PathBuf,
    /// The Chromium binary.
    #[arg(long, default_value = "/usr/bin/chromium")]
    pub(crate) chromium: PathBuf,
}

/// The shipped host overview, `copies` times, for the dataset's one host.
fn big_dashboard(copies: usize) -> anyhow::Result<Value> {
    let lib = lookout_dashboards::Library::open(lookout_dashboards::DashboardsOptions {
        shipped: vec!["host".into()],
        ..Default::default()
    })?;
    let host = lib
        .get("lookout-host")
        .context("no shipped host dashboard")?;
    let panels = host["panels"].as_array().cloned().unwrap_or_default();
    let height = panels
        .iter()
        .map(|p| p["gridPos"]["y"].as_i64().unwrap_or(0) + p["gridPos"]["h"].as_i64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    for k in 0..copies {
        for p in &panels {
            let mut p = p.clone();
            p["id"] = json!(k as i64 * 1000 + p["id"].as_i64().unwrap_or(0));
            p["gridPos"]["y"] = json!(k as i64 * height + p["gridPos"]["y"].as_i64().unwrap_or(0));
            if let Some(ts) = p["targets"].as_array_mut() {
                for t in ts {
                    let e = t["expr"].as_str().unwrap_or_default().replace(
                        "job=~\"$job\",instance=~\"$instance\"",
                        "job=\"node\",instance=\"host-0000:9100\"",
                    );
                    t["expr"] = json!(format!("{e} + {k} * 0"));
                }
            }
            out.push(p);
        }
    }
    Ok(json!({
        "uid": "bench", "title": "Benchmark", "schemaVersion": 39,
        "time": {"from": "now-24h", "to": "now"}, "panels": out,
    }))
}

pub(crate) fn run(o: DashboardOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        o.chromedriver.exists() && o.chromium.exists(),
        "needs {} and {} (Debian's chromium-driver and chromium)",
        o.chromedriver.display(),
        o.chromium.display()
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("host.om");
    super::storage::generate(&file, 1, o.hours, 11)?;
    let exe = crate::lookout_exe()?;
    let data = dir.path().join("data");
    let st = Command::new(&exe)
        .args(["import", "openmetrics"])
        .arg(&file)
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(st.success(), "lookout import failed");
    let dash = big_dashboard(o.copies)?;
    let panels = dash["panels"].as_array().map_or(0, Vec::len);
    std::fs::create_dir(dir.path().join("dashboards"))?;
    std::fs::write(dir.path().join("dashboards/bench.json"), dash.to_string())?;
    let cfg = dir.path().join("lookout.yml");
    std::fs::write(
        &cfg,
        "collectors:\n  host: { enabled: false }\n  process: { enabled: false }\nstorage:\n  retention: 30d\ndashboards:\n  paths: [ 'dashboards/*.json' ]\n",
    )?;
    let port = free_port()?;
    let _server = spawn(
        "lookout",
        Command::new(&exe)
            .args(["serve", "--config"])
            .arg(&cfg)
            .arg("--data")
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{port}")]),
    )?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    wait_ready(&client, &base, "lookout")?;
    let dport = free_port()?;
    let _driver = spawn(
        "chromedriver",
        Command::new(&o.chromedriver).arg(format!("--port={dport}")),
    )?;
    let driver = format!("http://127.0.0.1:{dport}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{driver}/status")).send().is_err() {
        anyhow::ensure!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = dir.path().join("profile");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (settles, asked) = rt.block_on(load_times(&o, &driver, &profile, &base))?;
    // The baseline: the page's queries, one after another.
    let started = Instant::now();
    for url in &asked {
        let r = client.get(url).send()?;
        anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
        r.bytes()?;
    }
    let serial = started.elapsed().as_secs_f64() * 1e3;
    let med = median(settles.clone());
    println!(
        "dashboard: {panels} panels over {} h of one host, {} queries per load; settled in median {med:.0} ms (max {:.0} ms over {} loads); the same queries one after another {serial:.0} ms; ratio {:.2}",
        o.hours,
        asked.len(),
        settles.iter().cloned().fold(0.0, f64::max),
        settles.len(),
        med / serial.max(1.0),
    );
    Ok(())
}

/// Loads the dashboard `loads + 1` times (the first warms caches), returning the settle
/// times of the measured loads and the query URLs of the last one.
async fn load_times(
    o: &DashboardOptions,
    driver: &str,
    profile: &std::path::Path,
    base: &str,
) -> anyhow::Result<(Vec<f64>, Vec<String>)> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": o.chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1600,1000", format!("--user-data-dir={}", profile.display())],
        }),
    );
    let b =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(driver)
            .await
            .context("a Chromium session")?;
    let mut settles = Vec::new();
    let mut asked = Vec::new();
    for i in 0..=o.loads {
        b.goto(&format!("{base}/d/bench?from=now-{}h&to=now", o.hours))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let v = loop {
            let v = b
                .execute(
                    "const p = document.getElementById('page'); const s = {}; for (const e of document.querySelectorAll('[data-panel-id]')) s[e.dataset.panelState] = (s[e.dataset.panelState] || 0) + 1; return [p.dataset.dashboardState || '', Number(p.dataset.settledAt || 0), s, performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/api/v1/query'))]",
                    vec![],
                )
                .await?;
            if v[0] == "settled" || v[0] == "error" {
                break v;
            }
            anyhow::ensure!(Instant::now() < deadline, "the dashboard did not settle");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        anyhow::ensure!(v[0] == "settled", "the page failed");
        anyhow::ensure!(v[2].get("error").is_none(), "panels in error: {}", v[2]);
        eprintln!("load {i}: settled at {} ms, panels {}", v[1], v[2]);
        if i > 0 {
            settles.push(v[1].as_f64().unwrap_or(0.0));
        }
        asked = v[3]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
    }
    b.close().await?;
    Ok((settles, asked))
}
