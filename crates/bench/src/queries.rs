//! `lookout-bench queries`: the same dataset served by Lookout, by Prometheus and by
//! VictoriaMetrics, the same PromQL queries against their HTTP APIs: per-query median
//! latency, the totals and their ratios, each server's peak RSS during the query workload
//! (its high-water mark reset when the workload starts), and whether every Lookout answer
//! is Prometheus's (relative tolerance 1e-9, NaN equal to NaN). VictoriaMetrics answers
//! in MetricsQL's semantics (`rate` without extrapolation, among others), so only its
//! latency and memory are compared.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

/// The queries: rates, aggregations, histogram quantiles, *_over_time, binary operators
/// with matching, offsets, subqueries, regex matchers, set operators.
pub(crate) const QUERIES: &[&str] = &[
    "node_load1",
    "rate(node_cpu_seconds_total[5m])",
    "sum by (instance) (rate(node_cpu_seconds_total[5m]))",
    "sum by (mode) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m]))",
    "avg by (instance) (1 - rate(node_cpu_seconds_total{mode=\"idle\"}[5m]))",
    "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    "topk(5, rate(node_network_receive_bytes_total[5m]))",
    "bottomk(3, node_filesystem_avail_bytes / node_filesystem_size_bytes)",
    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, sum by (le, instance) (rate(http_request_duration_seconds_bucket[5m])))",
    "avg_over_time(node_load1[30m])",
    "max_over_time(node_load5[1h])",
    "min_over_time(node_memory_MemFree_bytes[15m])",
    "sum_over_time(node_load15[10m])",
    "count_over_time(node_load1[1h])",
    "quantile_over_time(0.9, node_load1[1h])",
    "stddev_over_time(node_load1[1h])",
    "increase(node_network_transmit_bytes_total[1h])",
    "irate(node_disk_read_bytes_total[5m])",
    "delta(node_memory_Cached_bytes[30m])",
    "deriv(node_memory_MemAvailable_bytes[30m])",
    "predict_linear(node_filesystem_avail_bytes[1h], 4 * 3600)",
    "rate(node_cpu_seconds_total[5m] offset 1h)",
    "node_load1 offset 30m",
    "max_over_time(rate(node_cpu_seconds_total{mode=\"user\"}[5m])[30m:1m])",
    "avg_over_time(sum by (instance) (rate(node_network_receive_bytes_total[5m]))[1h:5m])",
    "rate(node_cpu_seconds_total{instance=~\"host-000[0-4].*\"}[5m])",
    "node_filesystem_avail_bytes{mountpoint!~\"/run|/var/lib/postgresql\"}",
    "sum by (instance) (node_network_receive_bytes_total{device=~\"eth.*\"})",
    "count by (mode) (node_cpu_seconds_total)",
    "quantile(0.5, node_load1)",
    "stddev(node_load5)",
    "node_load1 > 1.5",
    "node_load1 > bool 1",
    "rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])",
    "rate(node_cpu_seconds_total[5m]) * on(instance) group_left() node_load1",
    "sum by (instance, cpu) (rate(node_cpu_seconds_total[5m])) / ignoring(cpu) group_left() sum by (instance) (rate(node_cpu_seconds_total[5m]))",
    "(node_load1 and node_load5 > 1) or node_load15",
    "node_load1 unless node_load5 > 2",
    "abs(delta(node_load1[10m]))",
    "clamp_max(node_load1, 1)",
    "changes(node_memory_MemFree_bytes[1h])",
    "resets(node_network_receive_bytes_total[1h])",
    "label_replace(node_load1, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "sum by (instance) (rate(node_disk_written_bytes_total[5m]))",
    "vector(1) + scalar(sum(node_load1))",
];

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits (up to 5 minutes) until the server at `base` answers a query.
pub(crate) fn wait_ready(
    client: &reqwest::blocking::Client,
    base: &str,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(r) = client.get(format!("{base}/api/v1/query?query=1")).send()
            && r.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not become ready at {base}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A result normalised for comparison: label set → points (instant results have one).
type Normalized = BTreeMap<String, Vec<(f64, f64)>>;

fn num(v: &Value) -> f64 {
    match v.as_str() {
        Some("NaN") => f64::NAN,
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap_or(f64::NAN),
        None => v.as_f64().unwrap_or(f64::NAN),
    }
}

fn normalize(body: &Value) -> anyhow::Result<(String, Normalized)> {
    anyhow::ensure!(
        body["status"] == "success",
        "query failed: {}",
        body["error"]
    );
    let kind = body["data"]["resultType"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut out = Normalized::new();
    let res = &body["data"]["result"];
    match kind.as_str() {
        "scalar" => {
            out.insert(String::new(), vec![(num(&res[0]), num(&res[1]))]);
        }
        "vector" => {
            for s in res.as_array().into_iter().flatten() {
                out.insert(
                    s["metric"].to_string(),
                    vec![(num(&s["value"][0]), num(&s["value"][1]))],
                );
            }
        }
        _ => {
            for s in res.as_array().into_iter().flatten() {
                let pts = s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| (num(&p[0]), num(&p[1])))
                    .collect();
                out.insert(s["metric"].to_string(), pts);
            }
        }
    }
    Ok((kind, out))
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The first difference between two answers, if any.
fn diff(a: &(String, Normalized), b: &(String, Normalized)) -> Option<String> {
    if a.0 != b.0 {
        return Some(format!("result types {} vs {}", a.0, b.0));
    }
    for k in a.1.keys().chain(b.1.keys()) {
        match (a.1.get(k), b.1.get(k)) {
            (Some(x), Some(y)) => {
                if x.len() != y.len() {
                    return Some(format!("{k}: {} points vs {}", x.len(), y.len()));
                }
                for (p, q) in x.iter().zip(y) {
                    if p.0 != q.0 || !close(p.1, q.1) {
                        return Some(format!("{k} at {}: {} vs {}", p.0, p.1, q.1));
                    }
                }
            }
            (Some(_), None) => return Some(format!("{k} only in Lookout's answer")),
            (None, Some(_)) => return Some(format!("{k} only in Prometheus's answer")),
            (None, None) => {}
        }
    }
    None
}

/// The median (the upper one of an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN latencies"));
    v[v.len() / 2]
}

/// Runs the benchmark.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    series: usize,
    hours: f64,
    runs: usize,
    (prometheus, promtool, victoria_metrics): (&str, &str, &str),
    work: Option<PathBuf>,
) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("lookout-bench-q-")
        .tempdir_in(work.unwrap_or_else(std::env::temp_dir))?;
    let file = tmp.path().join("dataset.om");
    super::generate(&file, series, hours, 7)?;
    let end_ms = lookout_model::now_ms();
    let exe = crate::lookout_exe()?;
    let ours = tmp.path().join("lookout");
    let theirs = tmp.path().join("prometheus");
    eprintln!("loading the dataset into both…");
    let st = Command::new(&exe)
        .args(["import", "openmetrics"])
        .arg(&file)
        .arg("--data")
        .arg(&ours)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(st.success(), "lookout import failed");
    let st = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(&theirs)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {promtool}"))?;
    anyhow::ensure!(st.success(), "promtool failed");
    let vm = crate::vm::Vm::start(victoria_metrics, &tmp.path().join("victoria-metrics"))?;
    vm.import(&file)?;
    std::fs::remove_file(&file)?;

    let (pp, lp) = (free_port()?, free_port()?);
    let pcfg = tmp.path().join("prometheus.yml");
    std::fs::write(&pcfg, "global:\n  scrape_interval: 15s\n")?;
    let prom = Server {
        child: Command::new(prometheus)
            .arg(format!("--config.file={}", pcfg.display()))
            .arg(format!("--storage.tsdb.path={}", theirs.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{pp}"))
            .arg("--storage.tsdb.retention.time=90d")
            .arg("--query.max-samples=1000000000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {prometheus}"))?,
        base: format!("http://127.0.0.1:{pp}"),
    };
    let lcfg = tmp.path().join("lookout.yml");
    std::fs::write(
        &lcfg,
        "collectors:\n  host: { enabled: false }\n  process: { enabled: false }\nstorage:\n  retention: 90d\n",
    )?;
    let look = Server {
        child: Command::new(&exe)
            .args(["serve", "--config"])
            .arg(&lcfg)
            .arg("--data")
            .arg(&ours)
            .args(["--listen", &format!("127.0.0.1:{lp}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
        base: format!("http://127.0.0.1:{lp}"),
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    wait_ready(&client, &prom.base, "prometheus")?;
    wait_ready(&client, &look.base, "lookout")?;

    // Times off the 15 s grid, so no sample sits exactly on a window boundary (Prometheus 2
    // closes windows on the left, Prometheus 3 and Lookout open them).
    let t = (end_ms - 30 * 60_000 + 7_500) as f64 / 1000.0;
    let (rs, re) = (
        (end_ms - 3 * 3_600_000 + 3_700) as f64 / 1000.0,
        (end_ms - 300) as f64 / 1000.0,
    );
    let pids = [
        look.child.id().to_string(),
        prom.child.id().to_string(),
        vm.pid().to_string(),
    ];
    for pid in &pids {
        // Resets the peak RSS, so it covers the query workload only.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
    let mut rows = Vec::new();
    let (mut tot_l, mut tot_p, mut tot_v, mut mismatches) = (0.0, 0.0, 0.0, Vec::new());
    for q in QUERIES {
        for kind in ["instant", "range"] {
            let params: Vec<(&str, String)> = if kind == "instant" {
                vec![("query", q.to_string()), ("time", format!("{t:.3}"))]
            } else {
                vec![
                    ("query", q.to_string()),
                    ("start", format!("{rs:.3}")),
                    ("end", format!("{re:.3}")),
                    ("step", "60".into()),
                ]
            };
            let path = if kind == "instant" {
                "query"
            } else {
                "query_range"
            };
            let mut lat = [Vec::new(), Vec::new(), Vec::new()];
            let mut bodies = [Value::Null, Value::Null, Value::Null];
            for _ in 0..runs {
                for (i, base) in [&look.base, &prom.base, &vm.base].iter().enumerate() {
                    let started = Instant::now();
                    let r = client
                        .post(format!("{base}/api/v1/{path}"))
                        .form(&params)
                        .send()?;
                    // The server's latency: until the whole body has arrived. Decoding
                    // the JSON is the client's work and stays outside the timing.
                    let raw = r.bytes()?;
                    lat[i].push(started.elapsed().as_secs_f64() * 1000.0);
                    bodies[i] = serde_json::from_slice(&raw)?;
                }
            }
            let (ml, mp, mv) = (
                median(lat[0].clone()),
                median(lat[1].clone()),
                median(lat[2].clone()),
            );
            tot_l += ml;
            tot_p += mp;
            tot_v += mv;
            let verdict = match (normalize(&bodies[0]), normalize(&bodies[1])) {
                (Ok(a), Ok(b)) => match diff(&a, &b) {
                    None => "same".to_string(),
                    Some(d) => {
                        mismatches.push(format!("{kind} {q}: {d}"));
                        "DIFFERENT".to_string()
                    }
                },
                (a, b) => {
                    let d = format!(
                        "lookout: {:?}; prometheus: {:?}",
                        a.err().map(|e| e.to_string()),
                        b.err().map(|e| e.to_string())
                    );
                    mismatches.push(format!("{kind} {q}: {d}"));
                    "ERROR".to_string()
                }
            };
            rows.push((q.to_string(), kind, [ml, mp, mv], verdict));
        }
    }
    let peaks = pids.map(|pid| crate::storage::rss(&pid).1);
    println!(
        "{:<8} {:>10} {:>12} {:>7} {:>8} {:>7}  {:<9} query",
        "kind", "lookout ms", "prometheus ms", "ratio", "vm ms", "ratio", "answer"
    );
    for (q, kind, [ml, mp, mv], v) in &rows {
        println!(
            "{kind:<8} {ml:>10.2} {mp:>12.2} {:>6.2}× {mv:>8.2} {:>6.2}×  {v:<9} {q}",
            ml / mp,
            ml / mv
        );
    }
    println!();
    let slower: Vec<&str> = rows
        .iter()
        .filter(|r| r.2[0] > r.2[1])
        .map(|r| r.0.as_str())
        .collect();
    println!(
        "total of medians: lookout {tot_l:.1} ms, victoria-metrics {tot_v:.1} ms → {:.3}× (goal ≤ 0.8×: {})",
        tot_l / tot_v,
        if tot_l / tot_v <= 0.8 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "queries slower than Prometheus: {} of {}{}",
        slower.len(),
        rows.len(),
        if slower.is_empty() {
            String::new()
        } else {
            format!(" ({})", slower.join("; "))
        }
    );
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "peak RSS during the queries: lookout {:.1} MiB, prometheus {:.1} MiB ({:.2}×, goal ≤ 0.5×: {}), victoria-metrics {:.1} MiB",
        mib(peaks[0]),
        mib(peaks[1]),
        peaks[0] as f64 / peaks[1] as f64,
        if peaks[0] * 2 <= peaks[1] {
            "met"
        } else {
            "NOT met"
        },
        mib(peaks[2])
    );
    println!(
        "{} queries × {{instant, range}}, median of {runs} runs each: lookout {tot_l:.1} ms, prometheus {tot_p:.1} ms → {:.3}× (goal ≤ 0.35×: {})",
        QUERIES.len(),
        tot_l / tot_p,
        if tot_l / tot_p <= 0.35 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "identical answers: {}/{}",
        rows.len() - mismatches.len(),
        rows.len()
    );
    for m in &mismatches {
        println!("  differs: {m}");
    }
    Ok(())
}
