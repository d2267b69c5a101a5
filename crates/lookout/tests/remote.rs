//! Issue 16 through the real binary: Lookout as a remote-write receiver
//! (`--web.enable-remote-write-receiver`) fed by Debian's Prometheus 2.42 and vmagent
//! (1.0) and by hand-made 2.0 requests, hostile or wrong requests answered with named
//! errors, and Debian's Prometheus federating from Lookout's `/federate`.

mod common;

use std::time::Duration;

use common::*;
use lookout_model::Labels;
use lookout_remote::{Series, encode_v2_request, encode_write_request};

fn post(lk: &Lookout, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut req = http()
        .post(format!("{}/api/v1/write", lk.base))
        .header("content-type", content_type)
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn series(name: &str, samples: &[(i64, f64)]) -> Series {
    Series {
        labels: Labels::from_pairs([("__name__", name), ("job", "pushed")]),
        samples: samples.to_vec(),
        exemplars: Vec::new(),
        created: 0,
    }
}

#[test]
fn issue_16_prometheus_remote_writes_into_lookout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\ncollectors:\n  host: { enabled: false }\n",
    );
    let lk = Lookout::start_with(
        &dir.path().join("data"),
        &cfg,
        &["--web.enable-remote-write-receiver"],
    );
    // Prometheus scrapes itself and remote-writes everything to Lookout.
    let base = lk.base.clone();
    let _prom = Prometheus::start(dir.path(), move |port| {
        format!(
            "global: {{ scrape_interval: 1s, external_labels: {{ replica: a }} }}\nscrape_configs:\n  - job_name: prom\n    static_configs: [ {{ targets: ['127.0.0.1:{port}'] }} ]\nremote_write:\n  - url: {base}/api/v1/write\n    queue_config: {{ batch_send_deadline: 1s }}\n"
        )
    });
    // Prometheus's own series arrive with its external labels, and keep arriving.
    let up = lk.wait_for(
        r#"up{job="prom",replica="a"} == 1"#,
        Duration::from_secs(60),
    );
    assert_eq!(up.len(), 1);
    lk.wait_for(
        r#"count_over_time(prometheus_build_info{replica="a"}[1m]) > 2"#,
        Duration::from_secs(60),
    );
    let sent = lk.query(r#"count({job="prom"})"#);
    assert!(value_of(&sent[0]) > 100.0, "{sent:?}");
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn issue_16_remote_write_requests_get_named_answers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\ncollectors:\n  host: { enabled: false }\n",
    );
    // Off by default, as in Prometheus.
    let off = Lookout::start(&dir.path().join("off"), &cfg);
    let body = encode_write_request(&[series("pushed_total", &[(now_ms(), 1.0)])]);
    let (code, text) = post(&off, "application/x-protobuf", Some("snappy"), body.clone());
    assert_eq!(code, 404, "{text}");
    assert!(
        text.contains("--web.enable-remote-write-receiver"),
        "{text}"
    );
    drop(off);

    let lk = Lookout::start_with(
        &dir.path().join("on"),
        &cfg,
        &["--web.enable-remote-write-receiver"],
    );
    let t = now_ms();
    let body = encode_write_request(&[series("pushed_total", &[(t - 2000, 1.0), (t - 1000, 2.0)])]);
    assert_eq!(
        post(&lk, "application/x-protobuf", Some("snappy"), body).0,
        204
    );
    let got = lk.wait_for(r#"pushed_total{job="pushed"}"#, Duration::from_secs(5));
    assert_eq!(value_of(&got[0]), 2.0);

    // A second value for a stored timestamp: refused and named, the new sample kept.
    let body = encode_write_request(&[series("pushed_total", &[(t - 1000, 9.0), (t, 3.0)])]);
    let (code, text) = post(&lk, "application/x-protobuf", Some("snappy"), body);
    assert_eq!(code, 400, "{text}");
    assert!(
        text.contains("1 of 2 samples refused") && text.contains("duplicate"),
        "{text}"
    );
    let got = lk.wait_for(r#"pushed_total{job="pushed"} == 3"#, Duration::from_secs(5));
    assert_eq!(got.len(), 1);

    // Remote write 2.0: stored, with the written counts in the response headers.
    let send_v2 = |body: Vec<u8>| {
        http()
            .post(format!("{}/api/v1/write", lk.base))
            .header(
                "content-type",
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            )
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-write-version", "2.0.0")
            .body(body)
            .send()
            .unwrap()
    };
    let r = send_v2(encode_v2_request(&[Series {
        exemplars: vec![
            lookout_model::Exemplar {
                labels: Labels::from_pairs([("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]),
                value: 5.5,
                t: t - 500,
            },
            // Too long: refused alone, not counted, the rest stored.
            lookout_model::Exemplar {
                labels: Labels::from_pairs([("trace_id", "x".repeat(200))]),
                value: 5.5,
                t,
            },
        ],
        ..series("pushed_v2", &[(t - 1000, 5.0), (t, 6.0)])
    }]));
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        r.headers()["x-prometheus-remote-write-samples-written"],
        "2"
    );
    assert_eq!(
        r.headers()["x-prometheus-remote-write-histograms-written"],
        "0"
    );
    assert_eq!(
        r.headers()["x-prometheus-remote-write-exemplars-written"],
        "1"
    );
    let got = lk.wait_for(r#"pushed_v2{job="pushed"} == 6"#, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let (code, body) = lk.get(&format!(
        "/api/v1/query_exemplars?query=pushed_v2&start={}&end={}",
        t / 1000 - 60,
        t / 1000 + 60
    ));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"][0]["exemplars"][0]["labels"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{body}"
    );
    assert_eq!(
        v["data"][0]["exemplars"].as_array().unwrap().len(),
        1,
        "{body}"
    );

    // A 2.0 request with a native histogram: stored, counted, and answered by the query
    // API as a histogram; custom buckets (NHCB) with their bounds.
    use lookout_remote::v2;
    let hist_request = |schema: i32, custom: Vec<f64>| {
        let req = v2::Request {
            symbols: vec![
                String::new(),
                "__name__".into(),
                "rpc_duration_seconds".into(),
                "job".into(),
                "pushed".into(),
            ],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                histograms: vec![v2::Histogram {
                    count_int: Some(7),
                    sum: 1.75,
                    schema,
                    zero_threshold: 0.001,
                    zero_count_int: Some(1),
                    positive_spans: vec![v2::BucketSpan {
                        offset: -2,
                        length: 3,
                    }],
                    positive_deltas: vec![1, 2, -1],
                    timestamp: t - 500,
                    custom_values: custom,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        lookout_remote::encode_v2(&req)
    };
    let r = send_v2(hist_request(1, Vec::new()));
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        r.headers()["x-prometheus-remote-write-histograms-written"],
        "1"
    );
    let (code, body) = lk.get(&format!(
        "/api/v1/query?query=rpc_duration_seconds&time={}",
        t / 1000 + 1
    ));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let h = &v["data"]["result"][0]["histogram"];
    assert_eq!(h[1]["count"], "7", "{body}");
    assert_eq!(h[1]["sum"], "1.75", "{body}");
    assert_eq!(
        h[1]["buckets"].as_array().map(Vec::len),
        Some(4),
        "zero bucket and three positive buckets: {body}"
    );
    // Custom buckets have no zero bucket: this one is refused by name.
    let r = send_v2(hist_request(-53, vec![0.1, 1.0]));
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().unwrap();
    assert!(text.contains("no negative or zero buckets"), "{text}");
    let nhcb = v2::Request {
        symbols: vec![
            String::new(),
            "__name__".into(),
            "rpc_duration_seconds".into(),
            "job".into(),
            "nhcb".into(),
        ],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            histograms: vec![v2::Histogram {
                count_int: Some(6),
                sum: 2.5,
                schema: -53,
                custom_values: vec![0.1, 1.0],
                positive_spans: vec![v2::BucketSpan {
                    offset: 0,
                    length: 3,
                }],
                positive_deltas: vec![1, 2, -1],
                timestamp: t - 500,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let r = send_v2(lookout_remote::encode_v2(&nhcb));
    assert_eq!(r.status().as_u16(), 204);
    let (code, body) = lk.get(&format!(
        "/api/v1/query?query=rpc_duration_seconds%7Bjob%3D%22nhcb%22%7D&time={}",
        t / 1000 + 1
    ));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let b = &v["data"]["result"][0]["histogram"][1]["buckets"];
    assert_eq!(
        b,
        &serde_json::json!([
            [0, "-Inf", "0.1", "1"],
            [0, "0.1", "1", "3"],
            [0, "1", "+Inf", "2"]
        ]),
        "{body}"
    );
    // The median: rank 3 of 6 lies two thirds into (0.1, 1], linearly.
    let (code, body) = lk.get(&format!(
        "/api/v1/query?query=histogram_quantile(0.5,rpc_duration_seconds%7Bjob%3D%22nhcb%22%7D)&time={}",
        t / 1000 + 1
    ));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let q: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((q - 0.7).abs() < 1e-12, "{body}");

    let mut huge = vec![0x80, 0x80, 0x80, 0x80, 0x0f];
    huge.extend_from_slice(&[0; 64]);
    let no_name = encode_write_request(&[Series {
        labels: Labels::from_pairs([("job", "x")]),
        samples: vec![(t, 1.0)],
        exemplars: Vec::new(),
        created: 0,
    }]);
    for (ct, enc, body, status, want) in [
        (
            "application/x-protobuf",
            Some("snappy"),
            b"not snappy".to_vec(),
            400,
            "snappy",
        ),
        (
            "application/x-protobuf",
            Some("snappy"),
            huge,
            400,
            "more than the limit",
        ),
        (
            "application/x-protobuf",
            Some("snappy"),
            no_name,
            400,
            "no metric name",
        ),
        (
            "application/x-protobuf;proto=io.prometheus.write.v3.Request",
            Some("snappy"),
            vec![],
            415,
            "io.prometheus.write.v2.Request",
        ),
        (
            "application/json",
            None,
            b"{}".to_vec(),
            415,
            "content type",
        ),
        (
            "application/x-protobuf",
            Some("gzip"),
            vec![],
            415,
            "snappy",
        ),
    ] {
        let (code, text) = post(&lk, ct, enc, body);
        assert_eq!(code, status, "{ct} {enc:?}: {text}");
        assert!(text.contains(want), "{want} not in {text}");
    }
    assert!(lk.terminate().success());
}

fn now_ms() -> i64 {
    (now_secs() * 1000.0) as i64
}

#[test]
fn issue_16_prometheus_federates_from_lookout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\n  external_labels: { site: lab }\n",
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    lk.wait_for(r#"node_load1{job="node"}"#, Duration::from_secs(20));
    let (code, text) = lk.get(
        "/federate?match[]=node_load1&match[]=%7Bjob%3D%22node%22%2C__name__%3D%22node_load1%22%7D",
    );
    assert_eq!(code, 200, "{text}");
    // One line per series even when two selectors match it, with the external label.
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("node_load1{"))
            .count(),
        1,
        "{text}"
    );
    assert!(text.starts_with("# TYPE node_load1 untyped\n"), "{text}");
    assert!(
        text.contains(r#"job="node""#) && text.contains(r#"site="lab""#),
        "{text}"
    );
    let (code, body) = lk.get("/federate");
    assert_eq!(code, 400, "{body}");
    let (code, body) = lk.get("/federate?match[]=%7B");
    assert_eq!(code, 400, "{body}");

    let target = lk.base.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(dir.path(), move |_| {
        format!(
            "scrape_configs:\n  - job_name: federate\n    scrape_interval: 1s\n    honor_labels: true\n    metrics_path: /federate\n    params: {{ 'match[]': ['{{job=\"node\"}}'] }}\n    static_configs: [ {{ targets: ['{target}'] }} ]\n"
        )
    });
    let ask = |q: &str| prom.query(q);
    wait_until(
        "Prometheus federated node_load1 from Lookout",
        Duration::from_secs(60),
        || !ask(r#"node_load1{job="node",site="lab"}"#).is_empty(),
    );
    // Every host family Lookout holds for the job arrives with its own job label.
    let theirs = ask(r#"count(count by (__name__) ({job="node"}))"#);
    let ours = lk.query(r#"count(count by (__name__) ({job="node"}))"#);
    assert!(
        value_of(&theirs[0]) >= value_of(&ours[0]) * 0.9,
        "{theirs:?} vs {ours:?}"
    );
    assert!(lk.terminate().success());
    // The engine's sample limit bounds a federation answer, by name.
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let cfg = write_config(
        &small,
        "global:\n  scrape_interval: 1s\nquery:\n  max_samples: 5\n",
    );
    let lk = Lookout::start(&small.join("data"), &cfg);
    lk.wait_for(r#"node_load1{job="node"}"#, Duration::from_secs(20));
    let (code, body) = lk.get("/federate?match[]=%7Bjob%3D%22node%22%7D");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("more than 5 series"), "{body}");
}

#[test]
fn issue_16_vmagent_remote_writes_into_lookout() {
    let exe = "/usr/bin/vmagent";
    assert!(
        std::path::Path::new(exe).exists(),
        "needs Debian's victoria-metrics package (vmagent; ./scripts/test installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "global:\n  scrape_interval: 1s\n");
    let lk = Lookout::start_with(
        &dir.path().join("data"),
        &cfg,
        &["--web.enable-remote-write-receiver"],
    );
    // vmagent scrapes Lookout's own /metrics and writes them back into it, relabelled.
    let scrape = dir.path().join("scrape.yml");
    std::fs::write(
        &scrape,
        format!(
            "scrape_configs:\n  - job_name: via-vmagent\n    scrape_interval: 1s\n    static_configs: [ {{ targets: ['{}'] }} ]\n",
            lk.base.trim_start_matches("http://")
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _vmagent = ChildGuard(
        std::process::Command::new(exe)
            .arg(format!("-promscrape.config={}", scrape.display()))
            .arg(format!("-remoteWrite.url={}/api/v1/write", lk.base))
            .arg(format!(
                "-remoteWrite.tmpDataPath={}",
                dir.path().join("vmagent").display()
            ))
            .arg("-remoteWrite.flushInterval=1s")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let got = lk.wait_for(
        r#"lookout_tsdb_head_series{job="via-vmagent"}"#,
        Duration::from_secs(60),
    );
    assert!(value_of(&got[0]) > 0.0, "{got:?}");
    lk.wait_for(r#"up{job="via-vmagent"} == 1"#, Duration::from_secs(30));
    assert!(lk.terminate().success());
}

const OTEL_PUSH: &str = r#"
import sys
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.view import View, ExponentialBucketHistogramAggregation

exporter = OTLPMetricExporter(endpoint=sys.argv[1] + "/api/v1/otlp/v1/metrics")
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=60000)
resource = Resource.create({"service.name": "shop", "service.instance.id": "i1", "deployment.environment": "test"})
views = [View(instrument_name="shop.rtt", aggregation=ExponentialBucketHistogramAggregation())]
provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
meter = provider.get_meter("lookout-test")
rtt = meter.create_histogram("shop.rtt", unit="s")
for v in (0.25, 0.5, 1.5, 3.0):
    rtt.record(v, {"region": "eu"})
orders = meter.create_counter("shop.orders", unit="{orders}")
latency = meter.create_histogram("shop.latency", unit="ms")
queue = meter.create_up_down_counter("shop.queue.length")
orders.add(5, {"region": "eu"})
for v in (3, 7, 12):
    latency.record(v, {"region": "eu"})
queue.add(4)
queue.add(-1)
ok = provider.force_flush()
provider.shutdown()
sys.exit(0 if ok else 1)
"#;

#[test]
fn issue_16_the_opentelemetry_sdk_pushes_metrics_over_otlp() {
    let Some(py) = otel_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\ncollectors:\n  host: { enabled: false }\notlp:\n  promote_resource_attributes: [ deployment.environment ]\n",
    );
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "otlp:\n  translation_strategy: KeepEverything\n").unwrap();
    let out = run(&["check", "config", utf8(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("otlp.translation_strategy"),
        "{out:?}"
    );
    let lk = Lookout::start_with(
        &dir.path().join("data"),
        &cfg,
        &["--web.enable-otlp-receiver"],
    );
    let script = dir.path().join("push.py");
    std::fs::write(&script, OTEL_PUSH).unwrap();
    let out = std::process::Command::new(&py)
        .arg(&script)
        .arg(&lk.base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Prometheus 3's default names: unit and type suffixes, job/instance from the service.
    // deployment.environment is promoted onto every series (otlp.promote_resource_attributes).
    let orders = lk.wait_for(
        r#"shop_orders_total{job="shop",instance="i1",region="eu",deployment_environment="test"}"#,
        Duration::from_secs(10),
    );
    assert_eq!(value_of(&orders[0]), 5.0);
    let count = lk.query(r#"shop_latency_milliseconds_count{job="shop"}"#);
    assert_eq!(value_of(&count[0]), 3.0);
    let sum = lk.query(r#"shop_latency_milliseconds_sum{job="shop"}"#);
    assert_eq!(value_of(&sum[0]), 22.0);
    let le10 = lk.query(r#"shop_latency_milliseconds_bucket{job="shop",le="10"}"#);
    assert_eq!(value_of(&le10[0]), 2.0);
    let queue = lk.query(r#"shop_queue_length{job="shop"}"#);
    assert_eq!(value_of(&queue[0]), 3.0);
    let info = lk.query(r#"target_info{job="shop",instance="i1",deployment_environment="test"}"#);
    assert_eq!(info.len(), 1);
    // An exponential histogram arrives as a native histogram.
    let (code, body) = lk.get(&format!(
        "/api/v1/query?query={}",
        url_escape(r#"shop_rtt_seconds{job="shop",region="eu"}"#)
    ));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let h = &v["data"]["result"][0]["histogram"][1];
    assert_eq!(h["count"], "4", "{body}");
    assert_eq!(h["sum"], "5.25", "{body}");
    let buckets = h["buckets"].as_array().expect("buckets");
    let counted: f64 = buckets
        .iter()
        .map(|b| b[3].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(counted, 4.0, "{body}");
    // Each observation lies in its bucket's bounds.
    for x in [0.25, 0.5, 1.5, 3.0] {
        assert!(
            buckets.iter().any(|b| {
                let lo: f64 = b[1].as_str().unwrap().parse().unwrap();
                let hi: f64 = b[2].as_str().unwrap().parse().unwrap();
                lo < x && x <= hi
            }),
            "{x} in none of {body}"
        );
    }
    // OTLP/JSON too; bad bodies and delta sums named; off by default.
    let now_ns = (now_secs() * 1e9) as u64;
    let json = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"jsonsvc"}}}}]}},"scopeMetrics":[{{"metrics":[{{"name":"temp","unit":"Cel","gauge":{{"dataPoints":[{{"timeUnixNano":"{now_ns}","asDouble":21.5}}]}}}}]}}]}}]}}"#
    );
    let (code, body) = lk.post("/api/v1/otlp/v1/metrics", "application/json", json);
    assert_eq!(code, 200, "{body}");
    let temp = lk.wait_for(r#"temp_celsius{job="jsonsvc"}"#, Duration::from_secs(5));
    assert_eq!(value_of(&temp[0]), 21.5);
    let delta = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"d","sum":{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[]}}]}]}]}"#;
    let (code, body) = lk.post("/api/v1/otlp/v1/metrics", "application/json", delta);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("delta temporality"), "{body}");
    let (code, body) = lk.post("/api/v1/otlp/v1/metrics", "application/json", "[1]");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("OTLP/JSON"), "{body}");
    let (code, body) = lk.post("/api/v1/otlp/v1/metrics", "text/plain", "x");
    assert_eq!(code, 415, "{body}");
    let off = Lookout::start(&dir.path().join("off"), &cfg);
    let (code, body) = off.post("/api/v1/otlp/v1/metrics", "application/x-protobuf", "");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("--web.enable-otlp-receiver"), "{body}");

    // The UTF-8 strategies keep OTLP's names: PromQL reads them quoted, and /federate
    // answers them escaped for classic parsers.
    for (strategy, orders, latency) in [
        (
            "NoUTF8EscapingWithSuffixes",
            "shop.orders_total",
            "shop.latency_milliseconds_count",
        ),
        ("NoTranslation", "shop.orders", "shop.latency_count"),
    ] {
        let d = dir.path().join(strategy);
        std::fs::create_dir_all(&d).unwrap();
        let cfg = write_config(
            &d,
            &format!(
                "collectors:\n  host: {{ enabled: false }}\n  process: {{ enabled: false }}\notlp:\n  translation_strategy: {strategy}\n  promote_resource_attributes: [ deployment.environment ]\n"
            ),
        );
        let lk = Lookout::start_with(&d.join("data"), &cfg, &["--web.enable-otlp-receiver"]);
        let out = std::process::Command::new(&py)
            .arg(&script)
            .arg(&lk.base)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = lk.wait_for(
            &format!(r#"{{"{orders}", job="shop", region="eu", "deployment.environment"="test"}}"#),
            Duration::from_secs(10),
        );
        assert_eq!(value_of(&got[0]), 5.0, "{strategy}");
        let got = lk.query(&format!(
            r#"sum by ("deployment.environment") ({{"{latency}"}})"#
        ));
        assert_eq!(
            got[0]["metric"]["deployment.environment"], "test",
            "{got:?}"
        );
        assert_eq!(value_of(&got[0]), 3.0, "{strategy}");
        let (code, fed) = lk.get(&format!(
            "/federate?match[]={}",
            url_escape(&format!(r#"{{"{orders}"}}"#))
        ));
        assert_eq!(code, 200, "{fed}");
        let escaped = orders.replace('.', "_");
        assert!(
            fed.lines().any(|l| l.starts_with(&format!("{escaped}{{"))
                && l.contains("deployment_environment=\"test\"")),
            "{strategy}: {fed}"
        );
        assert!(lk.terminate().success());
    }
}

/// Percent-encodes a query parameter's value.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn issue_16_prometheus_reads_lookout_through_remote_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "global:\n  scrape_interval: 1s\n");
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    lk.wait_for(
        r#"count_over_time(node_load1[1m]) > 2"#,
        Duration::from_secs(30),
    );
    let base = lk.base.clone();
    let prom = Prometheus::start(dir.path(), move |_| {
        format!("remote_read:\n  - url: {base}/api/v1/read\n    read_recent: true\n")
    });
    // Prometheus stores nothing itself: what it answers comes from Lookout.
    wait_until(
        "Prometheus reads node_load1 from Lookout",
        Duration::from_secs(60),
        || {
            prom.query(r#"count_over_time(node_load1{job="node"}[1m])"#)
                .first()
                .is_some_and(|v| value_of(v) >= 2.0)
        },
    );
    let theirs = prom.query(r#"count(count by (__name__) ({job="node"}))"#);
    let ours = lk.query(r#"count(count by (__name__) ({job="node"}))"#);
    assert_eq!(value_of(&theirs[0]), value_of(&ours[0]));
    // Hostile bodies are named.
    let (code, body) = lk.post("/api/v1/read", "application/x-protobuf", "not snappy");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("snappy"), "{body}");
    assert!(lk.terminate().success());
}
