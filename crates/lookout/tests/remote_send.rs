//! Issue 16, sending: Lookout remote-writes what it stores to Debian's Prometheus 2.42
//! (`--web.enable-remote-write-receiver`) and Debian's VictoriaMetrics (`/api/v1/write`),
//! and loses nothing when both are down for two minutes while Lookout is SIGKILLed and
//! restarted; remote write 2.0, write relabeling, external labels, refused batches and
//! the per-remote figures and health check, against a second Lookout.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A receiver process that can be stopped (SIGTERM, waited for) and started again on the
/// same port and data; killed by PID when dropped.
struct Receiver {
    program: &'static str,
    args: Vec<String>,
    child: Option<Child>,
    port: u16,
}

impl Receiver {
    fn start(program: &'static str, args: Vec<String>, port: u16) -> Self {
        let mut r = Self {
            program,
            args,
            child: None,
            port,
        };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let child = Command::new(self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} (./scripts/test installs it): {e}", self.program));
        self.child = Some(child);
        let port = self.port;
        wait_until(
            &format!("{} answers on {port}", self.program),
            Duration::from_secs(60),
            || {
                http()
                    .get(format!("http://127.0.0.1:{port}/api/v1/status/buildinfo"))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
                    || http()
                        .get(format!("http://127.0.0.1:{port}/health"))
                        .send()
                        .is_ok_and(|r| r.status().is_success())
            },
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = rustix::process::Pid::from_raw(c.id() as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn prometheus_receiver(dir: &std::path::Path) -> Receiver {
    let port = free_port();
    let cfg = dir.join("receiver.yml");
    std::fs::write(&cfg, "global: { scrape_interval: 1m }\n").unwrap();
    Receiver::start(
        "prometheus",
        vec![
            format!("--config.file={}", cfg.display()),
            format!("--storage.tsdb.path={}", dir.join("prom").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".into(),
        ],
        port,
    )
}

fn victoria_receiver(dir: &std::path::Path) -> Receiver {
    let port = free_port();
    Receiver::start(
        "victoria-metrics",
        vec![
            format!("-storageDataPath={}", dir.join("vm").display()),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            "-retentionPeriod=1y".into(),
        ],
        port,
    )
}

type Samples = BTreeMap<String, Vec<(i64, f64)>>;

fn key(metric: &Value) -> String {
    let m: BTreeMap<&str, &str> = metric
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    format!("{m:?}")
}

/// Every non-NaN sample in `(start, end]` through a Prometheus-compatible query API
/// (`name{}[range]` at `end`).
fn via_query_api(base: &str, start: f64, end: f64) -> Samples {
    let q = format!(r#"{{__name__=~".+"}}[{}s]"#, (end - start).round() as i64);
    let v: Value = http()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", q.as_str()), ("time", &format!("{end:.3}"))])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["status"], "success", "{base}: {v}");
    let mut out = Samples::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let vals: Vec<(i64, f64)> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                    p[1].as_str().unwrap().parse::<f64>().unwrap(),
                )
            })
            .filter(|(_, v)| !v.is_nan())
            .collect();
        if !vals.is_empty() {
            out.insert(key(&s["metric"]), vals);
        }
    }
    out
}

/// Every non-NaN sample in `(start, end]` from VictoriaMetrics' raw export.
fn via_vm_export(base: &str, start: f64, end: f64) -> Samples {
    let text = http()
        .get(format!("{base}/api/v1/export"))
        .query(&[
            ("match[]", r#"{__name__=~".+"}"#),
            ("start", &format!("{:.3}", start + 0.001)),
            ("end", &format!("{end:.3}")),
        ])
        .send()
        .unwrap()
        .text()
        .unwrap();
    let mut out = Samples::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let s: Value = serde_json::from_str(line).unwrap();
        let ts = s["timestamps"].as_array().unwrap();
        let vs = s["values"].as_array().unwrap();
        let mut vals: Vec<(i64, f64)> = ts
            .iter()
            .zip(vs)
            .map(|(t, v)| (t.as_i64().unwrap(), v.as_f64().unwrap_or(f64::NAN)))
            .filter(|(_, v)| !v.is_nan())
            .collect();
        vals.sort_by_key(|p| p.0);
        if !vals.is_empty() {
            out.entry(key(&s["metric"])).or_default().extend(vals);
        }
    }
    out
}

/// Where two sample sets differ (at most a few lines), with `close` deciding values.
fn differences(ours: &Samples, theirs: &Samples, close: impl Fn(f64, f64) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for (k, a) in ours {
        match theirs.get(k) {
            None => out.push(format!("missing series {k} ({} samples)", a.len())),
            Some(b) => {
                let ta: Vec<i64> = a.iter().map(|p| p.0).collect();
                let tb: Vec<i64> = b.iter().map(|p| p.0).collect();
                if ta != tb {
                    let missing: Vec<&i64> =
                        ta.iter().filter(|t| !tb.contains(t)).take(5).collect();
                    let extra: Vec<&i64> = tb.iter().filter(|t| !ta.contains(t)).take(5).collect();
                    out.push(format!(
                        "{k}: {} vs {} samples; missing {missing:?}, extra {extra:?}",
                        a.len(),
                        b.len()
                    ));
                } else if let Some((x, y)) = a.iter().zip(b).find(|(x, y)| !close(x.1, y.1)) {
                    out.push(format!(
                        "{k}: value at {} is {} here, {} there",
                        x.0, x.1, y.1
                    ));
                }
            }
        }
    }
    for k in theirs.keys().filter(|k| !ours.contains_key(*k)) {
        out.push(format!("extra series {k}"));
    }
    out.truncate(12);
    out
}

fn metric_sum(lk: &Lookout, name: &str, filter: &str) -> f64 {
    let (_, text) = lk.get("/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn issue_16_nothing_is_lost_across_a_two_minute_outage_and_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut prom = prometheus_receiver(dir.path());
    let mut vm = victoria_receiver(dir.path());
    let cfg = write_config(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\ncollectors:\n  process: {{ enabled: false }}\nremote_write:\n  - url: http://127.0.0.1:{}/api/v1/write\n    name: prom\n    queue_config: {{ batch_send_deadline: 1s, max_backoff: 1s }}\n  - url: http://127.0.0.1:{}/api/v1/write\n    name: vm\n    queue_config: {{ batch_send_deadline: 1s, max_backoff: 1s, max_samples_per_send: 500 }}\n",
            prom.port, vm.port
        ),
    );
    let data = dir.path().join("data");
    let start = now_secs();
    let lk = Lookout::start(&data, &cfg);
    let prom_base = format!("http://127.0.0.1:{}", prom.port);
    wait_until("samples reach Prometheus", Duration::from_secs(60), || {
        !via_query_api(&prom_base, start - 1.0, now_secs()).is_empty()
    });
    // Both receivers go away for two minutes; Lookout keeps collecting, is killed
    // (SIGKILL: no chance to flush anything) half-way and started again.
    prom.stop();
    vm.stop();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(40));
    let pending = metric_sum(&lk, "prometheus_remote_storage_samples_pending", "");
    assert!(pending > 0.0, "samples wait while the receivers are down");
    let (_, health) = lk.get("/health");
    assert!(health.contains("remote_write/prom"), "{health}");
    drop(lk);
    let lk = Lookout::start(&data, &cfg);
    std::thread::sleep(Duration::from_secs(120).saturating_sub(down.elapsed()));
    prom.restart();
    vm.restart();
    // Catch-up: both remotes have sent everything stored up to `end`.
    let end = now_secs() - 2.0;
    wait_until("both remotes catch up", Duration::from_secs(120), || {
        ["prom", "vm"].iter().all(|r| {
            metric_sum(
                &lk,
                "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
                &format!("remote_name=\"{r}\""),
            ) > end + 1.0
        })
    });
    let ours = via_query_api(&lk.base, start - 1.0, end);
    let samples: usize = ours.values().map(Vec::len).sum();
    assert!(
        ours.len() > 100 && samples > 20_000,
        "{} series, {samples} samples",
        ours.len()
    );
    let theirs = via_query_api(&prom_base, start - 1.0, end);
    let diff = differences(&ours, &theirs, |a, b| a.to_bits() == b.to_bits());
    assert!(
        diff.is_empty(),
        "Prometheus differs from Lookout:\n{}",
        diff.join("\n")
    );
    // VictoriaMetrics makes new data searchable within seconds; it keeps values as
    // decimals, so they are compared to 12 significant digits.
    let vm_base = format!("http://127.0.0.1:{}", vm.port);
    let close = |a: f64, b: f64| a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
    let mut diff = Vec::new();
    wait_until(
        "VictoriaMetrics holds the same samples",
        Duration::from_secs(60),
        || {
            diff = differences(&ours, &via_vm_export(&vm_base, start - 1.0, end), close);
            diff.is_empty()
        },
    );
    assert_eq!(
        metric_sum(&lk, "prometheus_remote_storage_samples_dropped_total", ""),
        0.0
    );
    assert_eq!(
        metric_sum(&lk, "prometheus_remote_storage_samples_failed_total", ""),
        0.0
    );
    assert!(lk.terminate().success());
}

#[test]
fn issue_16_18_exemplars_reach_prometheus_through_remote_write() {
    // Prometheus 2.42 keeps exemplars with its exemplar-storage feature; Lookout receives
    // some with remote write and sends them on (send_exemplars).
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start_with(
        dir.path(),
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=exemplar-storage",
        ],
        |_| "global:\n  scrape_interval: 1h\n".into(),
    );
    let cfg = write_config(
        dir.path(),
        &format!(
            "collectors:\n  host: {{ enabled: false }}\n  process: {{ enabled: false }}\nremote_write:\n  - url: http://127.0.0.1:{}/api/v1/write\n    send_exemplars: true\n    queue_config: {{ batch_send_deadline: 1s }}\n",
            prom.port
        ),
    );
    let lk = Lookout::start_with(
        &dir.path().join("data"),
        &cfg,
        &["--web.enable-remote-write-receiver"],
    );
    let t = (now_secs() * 1000.0) as i64;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let body = lookout_remote::encode_write_request(&[lookout_remote::Series {
        labels: lookout_model::Labels::from_pairs([
            ("__name__", "checkout_seconds_bucket"),
            ("le", "0.5"),
        ]),
        samples: vec![(t - 1000, 3.0), (t, 4.0)],
        exemplars: vec![lookout_model::Exemplar {
            labels: lookout_model::Labels::from_pairs([("trace_id", trace)]),
            value: 0.42,
            t: t - 200,
        }],
        created: 0,
    }]);
    let r = http()
        .post(format!("{}/api/v1/write", lk.base))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let url = format!(
        "http://127.0.0.1:{}/api/v1/query_exemplars?query=checkout_seconds_bucket&start={}&end={}",
        prom.port,
        t / 1000 - 60,
        t / 1000 + 60
    );
    let mut got = Value::Null;
    wait_until(
        "Prometheus holds the exemplar",
        Duration::from_secs(60),
        || {
            got = http()
                .get(&url)
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .unwrap_or_default();
            got["data"][0]["exemplars"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
    );
    let e = &got["data"][0]["exemplars"][0];
    assert_eq!(e["labels"]["trace_id"], trace, "{got}");
    assert_eq!(e["value"], "0.42", "{got}");
    assert_eq!(got["data"][0]["seriesLabels"]["le"], "0.5", "{got}");
    // Lookout answers the same.
    let (_, mine) = lk.get(&format!(
        "/api/v1/query_exemplars?query=checkout_seconds_bucket&start={}&end={}",
        t / 1000 - 60,
        t / 1000 + 60
    ));
    let mine: Value = serde_json::from_str(&mine).unwrap();
    assert_eq!(mine["data"][0]["exemplars"], got["data"][0]["exemplars"]);
    assert!(
        metric_sum(&lk, "prometheus_remote_storage_exemplars_total", "") >= 1.0,
        "counted"
    );
    assert!(lk.terminate().success());
}

#[test]
fn issue_20_native_histograms_reach_prometheus_through_remote_write() {
    // Lookout receives native histograms over remote write 1.0 and sends them on
    // (send_native_histograms) to Prometheus 2.42 with its native-histograms feature:
    // both answer the same histogram.
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start_with(
        dir.path(),
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
        |_| "global:\n  scrape_interval: 1h\n".into(),
    );
    let cfg = write_config(
        dir.path(),
        &format!(
            "collectors:\n  host: {{ enabled: false }}\n  process: {{ enabled: false }}\nremote_write:\n  - url: http://127.0.0.1:{}/api/v1/write\n    send_native_histograms: true\n    queue_config: {{ batch_send_deadline: 1s }}\n",
            prom.port
        ),
    );
    let lk = Lookout::start_with(
        &dir.path().join("data"),
        &cfg,
        &["--web.enable-remote-write-receiver"],
    );
    let t = (now_secs() * 1000.0) as i64;
    let h = |text: &str| lookout_model::FloatHistogram::parse(text).unwrap();
    let body = lookout_remote::encode_write_request_all(
        &[],
        &[lookout_remote::HistogramSeries {
            labels: lookout_model::Labels::from_pairs([
                ("__name__", "rpc_seconds"),
                ("job", "api"),
            ]),
            samples: vec![
                (
                    t - 1000,
                    h(
                        "{{schema:1 count:6 sum:7.5 z_bucket:1 z_bucket_w:0.001 offset:-1 buckets:[1 2 0 1] n_offset:2 n_buckets:[1]}}",
                    ),
                ),
                (
                    t,
                    h(
                        "{{schema:1 count:9 sum:11 z_bucket:2 z_bucket_w:0.001 offset:-1 buckets:[2 3 0 1] n_offset:2 n_buckets:[1]}}",
                    ),
                ),
            ],
        }],
        &[],
    );
    let r = http()
        .post(format!("{}/api/v1/write", lk.base))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text());
    let q = format!("/api/v1/query?query=rpc_seconds&time={}", t as f64 / 1000.0);
    let prom_url = format!("http://127.0.0.1:{}{q}", prom.port);
    let mut got = Value::Null;
    wait_until(
        "Prometheus holds the histogram",
        Duration::from_secs(60),
        || {
            got = http()
                .get(&prom_url)
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .unwrap_or_default();
            got["data"]["result"][0]["histogram"].is_array()
        },
    );
    let (code, mine) = lk.get(&q);
    assert_eq!(code, 200, "{mine}");
    let mine: Value = serde_json::from_str(&mine).unwrap();
    // The same histogram: count, sum and every bucket's rule and count exactly; bounds
    // of positive schemas within a few ulps (Prometheus reads them from a table of its
    // own, Lookout computes them).
    let (a, b) = (
        &mine["data"]["result"][0]["histogram"],
        &got["data"]["result"][0]["histogram"],
    );
    assert_eq!(a[0], b[0]);
    assert_eq!(a[1]["count"], b[1]["count"]);
    assert_eq!(a[1]["sum"], b[1]["sum"]);
    let (ab, bb) = (
        a[1]["buckets"].as_array().unwrap(),
        b[1]["buckets"].as_array().unwrap(),
    );
    assert_eq!(ab.len(), bb.len(), "{a} vs {b}");
    let num = |v: &Value| -> f64 { v.as_str().unwrap().parse().unwrap() };
    for (x, y) in ab.iter().zip(bb) {
        assert_eq!(x[0], y[0], "{a} vs {b}");
        assert_eq!(x[3], y[3], "{a} vs {b}");
        for k in 1..3 {
            let (p, q) = (num(&x[k]), num(&y[k]));
            assert!((p - q).abs() <= q.abs() * 1e-15, "{a} vs {b}");
        }
    }
    assert_eq!(got["data"]["result"][0]["histogram"][1]["count"], "9");
    assert!(
        metric_sum(&lk, "prometheus_remote_storage_histograms_total", "") >= 2.0,
        "counted"
    );
    assert!(lk.terminate().success());
}

#[test]
fn issue_16_remote_write_2_0_relabels_refusals_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = write_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\ncollectors:\n  host: { enabled: false }\n  process: { enabled: false }\n",
    );
    let receiver = Lookout::start_with(
        &dir.path().join("receiver"),
        &quiet,
        &["--web.enable-remote-write-receiver"],
    );
    let sender_dir = dir.path().join("sender");
    std::fs::create_dir_all(&sender_dir).unwrap();
    let cfg = write_config(
        &sender_dir,
        &format!(
            r#"global:
  scrape_interval: 1s
  external_labels: {{ site: lab }}
collectors:
  process: {{ enabled: false }}
remote_write:
  - url: {base}/api/v1/write
    name: v2
    protobuf_message: io.prometheus.write.v2.Request
    headers: {{ X-Scope-OrgID: tenant-1 }}
    queue_config: {{ batch_send_deadline: 1s }}
    write_relabel_configs:
      - source_labels: [__name__]
        regex: node_cpu_seconds_total
        action: drop
  - url: {base}/no/such/path
    name: refused
    queue_config: {{ batch_send_deadline: 1s }}
    max_lag: 1h
"#,
            base = receiver.base
        ),
    );
    let sender = Lookout::start(&sender_dir.join("data"), &cfg);
    let got = receiver.wait_for(
        r#"node_load1{site="lab",job="node"}"#,
        Duration::from_secs(60),
    );
    assert_eq!(got.len(), 1);
    receiver.wait_for(
        r#"count_over_time(up{site="lab"}[1m]) > 2"#,
        Duration::from_secs(30),
    );
    assert!(
        receiver.query("node_cpu_seconds_total").is_empty(),
        "write_relabel_configs dropped it"
    );
    assert!(
        !sender.query("node_cpu_seconds_total").is_empty(),
        "but it is stored locally"
    );
    wait_until("figures", Duration::from_secs(30), || {
        metric_sum(
            &sender,
            "prometheus_remote_storage_samples_total",
            "remote_name=\"v2\"",
        ) > 0.0
            && metric_sum(
                &sender,
                "prometheus_remote_storage_samples_failed_total",
                "remote_name=\"refused\"",
            ) > 0.0
            && metric_sum(
                &sender,
                "prometheus_remote_storage_samples_dropped_total",
                "reason=\"relabel\"",
            ) > 0.0
    });
    // A 404 drops the batch (counted and named in the check), never retries forever.
    let (_, health) = sender.get("/health");
    let checks: Value = serde_json::from_str(&health).unwrap();
    let text = checks.to_string();
    assert!(
        text.contains("remote_write/v2") && text.contains("remote_write/refused"),
        "{text}"
    );
    assert!(text.contains("404"), "the refusal is named: {text}");
    assert!(sender.terminate().success());
}

#[test]
fn issue_16_lookout_reads_prometheus_through_remote_read() {
    let dir = tempfile::tempdir().unwrap();
    // A Prometheus holding data Lookout never collected: its own metrics.
    let prom = Prometheus::start(dir.path(), |port| {
        format!(
            "global: {{ scrape_interval: 1s, external_labels: {{ dc: west }} }}\nscrape_configs:\n  - job_name: prom\n    static_configs: [ {{ targets: ['127.0.0.1:{port}'] }} ]\n"
        )
    });
    wait_until("Prometheus has data", Duration::from_secs(60), || {
        !prom.query(r#"up{job="prom"}"#).is_empty()
    });
    let dead = format!("http://127.0.0.1:{}/api/v1/read", free_port());
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"global:
  scrape_interval: 1s
collectors:
  process: {{ enabled: false }}
rule_packs: []
remote_read:
  - url: http://127.0.0.1:{port}/api/v1/read
    name: prom
    read_recent: true
  - url: {dead}
    name: down
    read_recent: true
  - url: {dead}
    name: gated
    read_recent: true
    required_matchers: {{ job: never }}
  - url: {dead}
    name: old-only
"#,
            port = prom.port
        ),
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    lk.wait_for(r#"up{job="node"}"#, Duration::from_secs(30));
    // Prometheus's series answer through Lookout, merged with Lookout's own; the dead
    // remote costs only its part.
    let got = lk.wait_for(
        r#"count_over_time(prometheus_build_info{job="prom"}[1m]) > 2"#,
        Duration::from_secs(60),
    );
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["metric"]["dc"], "west",
        "Prometheus answers with its external labels"
    );
    let both = lk.query(r#"count by (job) (up)"#);
    assert_eq!(both.len(), 2, "{both:?}");
    let failures = |name: &str| {
        metric_sum(
            &lk,
            "lookout_remote_read_failures_total",
            &format!("remote_name=\"{name}\""),
        )
    };
    assert!(failures("down") > 0.0);
    assert_eq!(failures("prom"), 0.0);
    assert_eq!(failures("gated"), 0.0, "asked only with job=\"never\"");
    lk.query(r#"up{job="never"}"#);
    assert!(failures("gated") > 0.0);
    // Without read_recent, a range the local store holds is not asked for; an older one is.
    std::thread::sleep(Duration::from_secs(3));
    let (old, down) = (failures("old-only"), failures("down"));
    lk.query(r#"count_over_time(up{job="node"}[2s])"#);
    assert_eq!(
        failures("old-only"),
        old,
        "not asked for what the local store holds"
    );
    assert!(failures("down") > down, "read_recent remotes are");
    lk.query(r#"count_over_time(up{job="node"}[1h])"#);
    assert!(failures("old-only") > old);
    assert!(lk.terminate().success());
}

/// The XOR chunks Lookout streams to remote-read clients are the ones Prometheus writes:
/// samples remote-written into Debian's Prometheus come back, in the head chunk file it
/// writes when it cuts a chunk, as exactly the bytes `lookout_remote::xor` encodes.
#[test]
fn issue_16_xor_chunks_match_the_ones_prometheus_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut prom = prometheus_receiver(dir.path());
    // Timestamps with every delta-of-delta width, values with every XOR case.
    let mut t = now_secs() as i64 * 1000 - 3_600_000;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let samples: Vec<(i64, f64)> = (0..400)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            t += [1000, 1000, 1001, 997, 9000, 70_000, 600_000, 1][i % 8];
            let v = match i % 6 {
                0 => i as f64,
                1 => (seed % 1000) as f64 / 7.0,
                2 => 42.0,
                3 => f64::from_bits(seed >> 2),
                4 => -(i as f64) * 1e-9,
                _ => 42.0,
            };
            (t, v)
        })
        .collect();
    let series = lookout_remote::Series {
        labels: lookout_model::Labels::from_pairs([("__name__", "xor_oracle")]),
        samples: samples.clone(),
        exemplars: Vec::new(),
        created: 0,
    };
    let r = http()
        .post(format!("http://127.0.0.1:{}/api/v1/write", prom.port))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(lookout_remote::encode_write_request(&[series]))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    prom.stop();
    let file = std::fs::read(dir.path().join("prom/chunks_head/000001"))
        .expect("Prometheus's head chunk file");
    assert_eq!(&file[..4], &[0x01, 0x30, 0xbc, 0x91], "head chunks magic");
    let mut at = 8;
    let mut compared = 0;
    let mut offset = 0;
    while at + 25 < file.len() {
        let mint = i64::from_be_bytes(file[at + 8..at + 16].try_into().unwrap());
        let maxt = i64::from_be_bytes(file[at + 16..at + 24].try_into().unwrap());
        let encoding = file[at + 24];
        at += 25;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = file[at];
            at += 1;
            len |= ((b & 0x7f) as usize) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        if len == 0 {
            break;
        }
        let data = &file[at..at + len];
        at += len + 4;
        assert_eq!(encoding, 1, "XOR");
        let n = u16::from_be_bytes([data[0], data[1]]) as usize;
        let mine = &samples[offset..offset + n];
        assert_eq!((mint, maxt), (mine[0].0, mine[n - 1].0));
        assert_eq!(
            lookout_remote::xor::encode(mine),
            data,
            "chunk of {n} samples from {offset}"
        );
        offset += n;
        compared += 1;
    }
    assert!(compared >= 2, "Prometheus cut {compared} chunks");
}
