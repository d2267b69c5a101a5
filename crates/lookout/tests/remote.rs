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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global: {{ scrape_interval: 1s, external_labels: {{ replica: a }} }}\nscrape_configs:\n  - job_name: prom\n    static_configs: [ {{ targets: ['127.0.0.1:{port}'] }} ]\nremote_write:\n  - url: {}/api/v1/write\n    queue_config: {{ batch_send_deadline: 1s }}\n",
            lk.base
        ),
    )
    .unwrap();
    let _prom = ChildGuard(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Debian's prometheus (./scripts/test installs it)"),
    );
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
    let r = http()
        .post(format!("{}/api/v1/write", lk.base))
        .header(
            "content-type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "2.0.0")
        .body(encode_v2_request(&[series(
            "pushed_v2",
            &[(t - 1000, 5.0), (t, 6.0)],
        )]))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        r.headers()["x-prometheus-remote-write-samples-written"],
        "2"
    );
    assert_eq!(
        r.headers()["x-prometheus-remote-write-histograms-written"],
        "0"
    );
    let got = lk.wait_for(r#"pushed_v2{job="pushed"} == 6"#, Duration::from_secs(5));
    assert_eq!(got.len(), 1);

    let mut huge = vec![0x80, 0x80, 0x80, 0x80, 0x0f];
    huge.extend_from_slice(&[0; 64]);
    let no_name = encode_write_request(&[Series {
        labels: Labels::from_pairs([("job", "x")]),
        samples: vec![(t, 1.0)],
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

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "scrape_configs:\n  - job_name: federate\n    scrape_interval: 1s\n    honor_labels: true\n    metrics_path: /federate\n    params: {{ 'match[]': ['{{job=\"node\"}}'] }}\n    static_configs: [ {{ targets: ['{}'] }} ]\n",
            lk.base.trim_start_matches("http://")
        ),
    )
    .unwrap();
    let _prom = ChildGuard(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ask = |q: &str| -> Vec<serde_json::Value> {
        http()
            .get(format!("http://127.0.0.1:{port}/api/v1/query"))
            .query(&[("query", q)])
            .send()
            .ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    };
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
