//! Issue 20: native histograms scraped in the protobuf format, stored in the tsdb, kept
//! across a restart, and answered by the query API as Prometheus does.
//!
//! No exporter installed here exposes native histograms (Debian's Prometheus 2.42 has
//! only classic ones on its own `/metrics`), so the native-histogram target is a local
//! HTTP server answering a protobuf body built with `lookout_expfmt::proto` whose counts
//! grow at every scrape; Debian's Prometheus is the real protobuf peer for classic
//! histograms over the same format.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lookout_expfmt::proto::{self, BucketSpan, Histogram, Metric, MetricFamily};

/// The native histogram of `query` in Lookout's answer, if it has one.
fn histogram(lk: &Lookout, query: &str) -> Option<serde_json::Value> {
    let (code, body) = lk.get(&format!(
        "/api/v1/query?query={}",
        query
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace('+', "%2B")
    ));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()?
        .iter()
        .find_map(|r| r.get("histogram").cloned())
}

/// The exposition at scrape `n`: `rpc_seconds`, native (schema 0, buckets 1, 2 and 4
/// holding n, 2n and n observations, n in the zero bucket) and classic (le 1 and 4).
fn exposition(n: u64) -> Vec<u8> {
    proto::encode(&[MetricFamily {
        name: "rpc_seconds".into(),
        help: "RPC latency.".into(),
        r#type: 4,
        metric: vec![Metric {
            histogram: Some(Histogram {
                sample_count: 5 * n,
                sample_sum: 10.5 * n as f64,
                bucket: vec![
                    proto::Bucket {
                        cumulative_count: 2 * n,
                        upper_bound: 1.0,
                        ..Default::default()
                    },
                    proto::Bucket {
                        cumulative_count: 4 * n,
                        upper_bound: 4.0,
                        ..Default::default()
                    },
                ],
                schema: 0,
                zero_threshold: 0.001,
                zero_count: n,
                positive_span: vec![
                    BucketSpan {
                        offset: 1,
                        length: 2,
                    },
                    BucketSpan {
                        offset: 1,
                        length: 1,
                    },
                ],
                positive_delta: vec![n as i64, n as i64, -(n as i64)],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// Serves `exposition(n)` with n growing per request, recording each request's
/// `Accept` header.
fn exporter() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&accepts);
    let n = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (seen, n) = (Arc::clone(&seen), Arc::clone(&n));
            // A connection per thread: a client that connects and waits blocks no other.
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut accept = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("accept:") {
                        accept = v.trim().to_string();
                    }
                }
                seen.lock().unwrap().push(accept);
                let body = exposition(n.fetch_add(1, Ordering::Relaxed) + 1);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    proto::CONTENT_TYPE,
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            });
        }
    });
    (port, accepts)
}

#[test]
fn issue_20_native_histograms_are_scraped_over_protobuf_stored_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (port, accepts) = exporter();
    let prom = Prometheus::start(dir.path(), |_| "global: {}\n".into());
    let cfg = write_config(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\ncollectors:\n  host: {{ enabled: false }}\nscrape_configs:\n  - job_name: native\n    scrape_native_histograms: true\n    static_configs: [ {{ targets: ['127.0.0.1:{port}'] }} ]\n  - job_name: both\n    scrape_native_histograms: true\n    always_scrape_classic_histograms: true\n    static_configs: [ {{ targets: ['127.0.0.1:{port}'] }} ]\n  - job_name: off\n    static_configs: [ {{ targets: ['127.0.0.1:{port}'] }} ]\n  - job_name: prom\n    scrape_protocols: [ PrometheusProto ]\n    static_configs: [ {{ targets: ['127.0.0.1:{0}'] }} ]\n  - job_name: nhcb\n    convert_classic_histograms_to_nhcb: true\n    static_configs: [ {{ targets: ['127.0.0.1:{0}'] }} ]\n  - job_name: tiny\n    body_size_limit: 1KB\n    static_configs: [ {{ targets: ['127.0.0.1:{0}'] }} ]\n",
            prom.port
        ),
    );
    let data = dir.path().join("data");
    let lk = Lookout::start(&data, &cfg);
    let q = r#"rpc_seconds{job="native"}"#;
    let mut got = None;
    wait_until(
        "a native histogram scraped",
        Duration::from_secs(60),
        || {
            got = histogram(&lk, q);
            got.is_some()
        },
    );
    let h = got.unwrap();
    // count = 5n, sum = 10.5n: the same scrape's numbers.
    let count: f64 = h[1]["count"].as_str().unwrap().parse().unwrap();
    let sum: f64 = h[1]["sum"].as_str().unwrap().parse().unwrap();
    let n = count / 5.0;
    assert!(n >= 1.0 && n.fract() == 0.0, "{h}");
    assert_eq!(sum, 10.5 * n, "{h}");
    let buckets: Vec<(u64, String, String, f64)> = h[1]["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| {
            (
                b[0].as_u64().unwrap(),
                b[1].as_str().unwrap().to_string(),
                b[2].as_str().unwrap().to_string(),
                b[3].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    // Schema 0: bucket i is (2^(i-1), 2^i]; the zero bucket [-0.001, 0.001].
    assert_eq!(
        buckets,
        vec![
            (3, "-0.001".into(), "0.001".into(), n),
            (0, "1".into(), "2".into(), n),
            (0, "2".into(), "4".into(), 2.0 * n),
            (0, "8".into(), "16".into(), n),
        ],
        "{h}"
    );
    // PromQL over them: 4n of the 5n observations lie at or below 4; the per-scrape
    // increase has the same shape at any n, so its median is the same everywhere:
    // rank 2.5 of 5 falls a quarter into (2, 4], exponentially interpolated: 2^1.25.
    let frac = lk.wait_for(
        r#"histogram_fraction(0, 4, rpc_seconds{job="native"})"#,
        Duration::from_secs(10),
    );
    assert!((value_of(&frac[0]) - 0.8).abs() < 1e-12, "{frac:?}");
    let med = lk.wait_for(
        r#"histogram_quantile(0.5, sum by (job) (rate(rpc_seconds{job="native"}[30s])))"#,
        Duration::from_secs(30),
    );
    assert!(
        (value_of(&med[0]) - 2f64.powf(1.25)).abs() < 1e-9,
        "{med:?}"
    );
    // Federation: a Prometheus with native histograms on asks for protobuf and gets the
    // native histogram, the same one.
    let fed_dir = dir.path().join("fed");
    std::fs::create_dir_all(&fed_dir).unwrap();
    let lk_addr = lk.base.trim_start_matches("http://").to_string();
    let fed = Prometheus::start_with(&fed_dir, &["--enable-feature=native-histograms"], |_| {
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: federate\n    honor_labels: true\n    metrics_path: /federate\n    params: {{ 'match[]': ['{{job=\"native\"}}'] }}\n    static_configs: [ {{ targets: ['{lk_addr}'] }} ]\n"
        )
    });
    let mut federated = Vec::new();
    wait_until(
        "Prometheus federates the native histogram",
        Duration::from_secs(60),
        || {
            federated = fed.query(r#"rpc_seconds{job="native"}"#);
            federated
                .first()
                .is_some_and(|s| s.get("histogram").is_some())
        },
    );
    let fh = &federated[0]["histogram"][1];
    let fcount: f64 = fh["count"].as_str().unwrap().parse().unwrap();
    let fsum: f64 = fh["sum"].as_str().unwrap().parse().unwrap();
    assert!(fcount >= 5.0 && fsum == 10.5 * fcount / 5.0, "{fh}");
    assert_eq!(
        fh["buckets"].as_array().map(Vec::len),
        Some(4),
        "the zero bucket and three others: {fh}"
    );
    drop(fed);
    // A range query returns them as Prometheus's `histograms`.
    let end = now_secs();
    let (code, body) = lk.get(&format!(
        "/api/v1/query_range?query=rpc_seconds%7Bjob%3D%22native%22%7D&start={}&end={end}&step=1",
        end - 20.0
    ));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = &v["data"]["result"][0];
    let points = series["histograms"].as_array().expect("histograms");
    assert!(points.len() >= 2, "{body}");
    assert!(series.get("values").is_none(), "{body}");
    let counts: Vec<f64> = points
        .iter()
        .map(|p| p[1]["count"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    // Native only for `native`; classic series too for `both`; only classic when native
    // histograms are off (the body is protobuf whatever was asked).
    assert!(lk.query(r#"rpc_seconds_bucket{job="native"}"#).is_empty());
    lk.wait_for(
        r#"rpc_seconds_bucket{job="both",le="4"}"#,
        Duration::from_secs(30),
    );
    assert!(histogram(&lk, r#"rpc_seconds{job="both"}"#).is_some());
    let off = lk.wait_for(
        r#"rpc_seconds_bucket{job="off",le="+Inf"}"#,
        Duration::from_secs(30),
    );
    assert!(value_of(&off[0]) >= 5.0);
    assert!(histogram(&lk, r#"rpc_seconds{job="off"}"#).is_none());
    // The native job asked for protobuf first; the job with defaults asked for text.
    let seen = accepts.lock().unwrap().clone();
    assert!(
        seen.iter().any(|a| a.starts_with(
            "application/vnd.google.protobuf;proto=io.prometheus.client.metricfamily"
        )),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|a| a.starts_with("application/openmetrics-text")),
        "{seen:?}"
    );
    // Debian's Prometheus answers protobuf too: its classic histograms and floats arrive.
    lk.wait_for(
        r#"prometheus_http_request_duration_seconds_bucket{job="prom",le="+Inf"}"#,
        Duration::from_secs(30),
    );
    let build = lk.wait_for(
        r#"prometheus_build_info{job="prom"}"#,
        Duration::from_secs(10),
    );
    assert_eq!(value_of(&build[0]), 1.0);
    // Converted to custom buckets: one series per histogram, its `le` bounds kept, and
    // no bucket series; PromQL reads it as it reads the classic one.
    let q_nhcb = r#"prometheus_http_request_duration_seconds{job="nhcb",handler="/metrics"}"#;
    let mut conv = None;
    wait_until("a converted histogram", Duration::from_secs(30), || {
        conv = histogram(&lk, q_nhcb);
        conv.is_some()
    });
    let conv = conv.unwrap();
    let first = &conv[1]["buckets"][0];
    assert_eq!(first[1], "-Inf", "{conv}");
    assert!(
        lk.query(r#"prometheus_http_request_duration_seconds_bucket{job="nhcb"}"#)
            .is_empty()
    );
    let classic = lk.query(
        r#"histogram_quantile(1, prometheus_http_request_duration_seconds_bucket{job="prom",handler="/metrics"})"#,
    );
    assert!(!classic.is_empty());
    let native_count = lk.wait_for(
        r#"histogram_count(prometheus_http_request_duration_seconds{job="nhcb",handler="/metrics"})"#,
        Duration::from_secs(10),
    );
    assert!(value_of(&native_count[0]) >= 1.0, "{native_count:?}");
    // A body over `body_size_limit` fails the scrape.
    let tiny = lk.wait_for(r#"up{job="tiny"}"#, Duration::from_secs(30));
    assert_eq!(value_of(&tiny[0]), 0.0, "{tiny:?}");
    assert!(lk.query(r#"prometheus_build_info{job="tiny"}"#).is_empty());
    // A restart replays them from the WAL. The restarted Lookout scrapes nothing (the
    // exporter still answers: a scrape after the restart would bring the histogram back
    // before the staleness check below).
    assert!(lk.terminate().success());
    drop(prom);
    let quiet = dir.path().join("restart");
    std::fs::create_dir_all(&quiet).unwrap();
    let cfg = write_config(&quiet, "collectors:\n  host: { enabled: false }\n");
    let lk = Lookout::start(&data, &cfg);
    // Ended by a staleness marker at shutdown: gone now, there when it was scraped.
    assert!(histogram(&lk, q).is_none());
    let at = h[0].as_f64().unwrap();
    let again = histogram(&lk, &format!("{q}&time={at}")).expect("the histogram after a restart");
    assert_eq!(again, h);
    // Custom bounds too.
    let at = conv[0].as_f64().unwrap();
    let again = histogram(&lk, &format!("{q_nhcb}&time={at}")).expect("NHCB after a restart");
    assert_eq!(again, conv);
    assert!(lk.terminate().success());
}
