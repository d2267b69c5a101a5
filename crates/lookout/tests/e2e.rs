//! End-to-end: the real `lookout` binary on port 0 with a temporary data directory,
//! talked to over HTTP as a user would.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn serves_host_vitals_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), FAST);
    let lk = Lookout::start(&dir.path().join("data"), &cfg);

    let load = lk.wait_for("node_load1", Duration::from_secs(20));
    assert_eq!(load[0]["metric"]["job"], "node");
    assert!(value_of(&load[0]) >= 0.0);

    let rates = lk.wait_for("rate(node_cpu_seconds_total[1m])", Duration::from_secs(20));
    assert!(rates.iter().all(|s| s["metric"].get("__name__").is_none()));
    assert!(rates.iter().any(|s| s["metric"]["mode"] == "idle"));
    for s in &rates {
        let v = value_of(s);
        // Seconds per second, not ticks: a CPU cannot spend much more than one second
        // per second in one mode (extrapolation over few samples allows some slack).
        assert!((0.0..=1.5).contains(&v), "rate {v} out of range: {s}");
    }

    let (code, page) = lk.get("/");
    assert_eq!(code, 200);
    assert!(page.contains("<title>Lookout</title>"));
    let (code, js) = lk.get("/ui/vendor/uPlot.iife.min.js");
    assert_eq!(code, 200);
    assert!(js.len() > 10_000);

    let (code, body) = lk.get("/health");
    let health: Value = serde_json::from_str(&body).unwrap();
    let checks = health["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["storage", "collectors", "disk_space", "rules"]);
    assert_eq!(checks[0]["status"], "healthy", "{health}");
    assert_eq!(checks[1]["status"], "healthy", "{health}");
    // Free space depends on the machine; the overall status must follow the checks.
    let rank = |s: &str| {
        ["healthy", "unknown", "degraded", "unhealthy"]
            .iter()
            .position(|x| *x == s)
            .unwrap()
    };
    let worst = checks
        .iter()
        .map(|c| rank(c["status"].as_str().unwrap()))
        .max()
        .unwrap();
    assert_eq!(rank(health["status"].as_str().unwrap()), worst, "{health}");
    assert_eq!(code, if worst == 3 { 503 } else { 200 });
    let (code, _) = lk.get("/-/ready");
    assert_eq!(code, 200);

    let (code, metrics) = lk.get("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("process_resident_memory_bytes"));
    assert!(metrics.contains("lookout_tsdb_head_series"));

    let status = lk.terminate();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn restart_keeps_what_was_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(dir.path(), FAST);
    let lk = Lookout::start(&data, &cfg);
    let t0 = now_secs();
    lk.wait_for(
        "count_over_time(node_load1[1m]) >= 3",
        Duration::from_secs(20),
    );
    let t1 = now_secs() - 0.5;
    let range = format!(
        "/api/v1/query_range?query=sum%20by%20(mode)%20(node_cpu_seconds_total)&start={t0:.3}&end={t1:.3}&step=0.5"
    );
    let series = format!("/api/v1/series?match[]=%7Bjob%3D%22node%22%7D&end={t1:.3}");
    let (_, before_range) = lk.get(&range);
    let (_, before_series) = lk.get(&series);
    let before: Value = serde_json::from_str(&before_range).unwrap();
    assert!(!before["data"]["result"].as_array().unwrap().is_empty());
    assert!(lk.terminate().success());

    let lk = Lookout::start(&data, &cfg);
    let (_, after_range) = lk.get(&range);
    let (_, after_series) = lk.get(&series);
    assert_eq!(before_range, after_range);
    assert_eq!(before_series, after_series);
    assert!(lk.terminate().success());

    // A torn tail (a crash mid-write) is truncated with a warning; everything before it
    // is still served.
    let mut segments = wal_segments(&data);
    let wal = segments.pop().expect("a WAL segment");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[0x40, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 2, 1, 2, 3]);
    std::fs::write(&wal, &bytes).unwrap();
    let lk = Lookout::start(&data, &cfg);
    let (_, torn_range) = lk.get(&range);
    assert_eq!(before_range, torn_range);
    let log = lk.log.lock().unwrap().join("\n");
    assert!(log.contains("torn or corrupt tail"), "{log}");
    let (_, metrics) = lk.get("/metrics");
    assert!(
        metrics.contains("lookout_tsdb_wal_corruptions_total 1"),
        "{metrics}"
    );
    assert!(lk.terminate().success());
}

#[test]
fn bad_input_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), FAST);
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    let (code, body) = lk.get("/api/v1/query?query=up&time=noon");
    assert_eq!(code, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errorType"], "bad_data");
    assert!(v["error"].as_str().unwrap().contains("\"time\""), "{body}");

    let (code, body) = lk.get("/api/v1/query?query=rate(up%5B5m)");
    assert_eq!(code, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(msg.starts_with("invalid parameter \"query\": "), "{msg}");
    assert!(
        msg.len() > "invalid parameter \"query\": ".len() + 5,
        "parser message missing: {msg}"
    );

    assert!(lk.query("no_such_metric_anywhere").is_empty());
    assert!(lk.terminate().success());
}

#[test]
fn config_errors_name_the_key_and_check_config_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_config(
        dir.path(),
        "global:\n  scrape_interval: 15s\n  scrape_timout: 5s\n",
    );
    let out = run(&["check", "config", utf8(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scrape_timout") && err.contains("line 3"),
        "{err}"
    );

    let bad_value = dir.path().join("v.yml");
    std::fs::write(&bad_value, "storage:\n  retention: forever\n").unwrap();
    let out = run(&["check", "config", utf8(&bad_value)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("storage.retention") && err.contains("line 2"),
        "{err}"
    );

    // serve refuses to start on it, and creates nothing.
    let data = dir.path().join("data");
    let out = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        utf8(&data),
        "--config",
        utf8(&bad),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scrape_timout"));
    assert!(!data.exists());

    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "global:\n  scrape_interval: 30s\nweb:\n  listen_address: 0.0.0.0:9999\n",
    )
    .unwrap();
    let out = run(&["check", "config", utf8(&good)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn test_promql_reports_failures_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.test");
    std::fs::write(
        &f,
        "load 1m\n  m 1+1x3\n\neval instant at 2m m\n  m 3\n\neval instant at 2m m\n  m 4\n",
    )
    .unwrap();
    let out = run(&["test", "promql", utf8(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 passed, 1 failed"), "{text}");
    assert!(text.contains(":7:"), "{text}");
}

/// Samples of every CPU-time series and of the process's memory with timestamps in
/// (t − 1h, t], counted through PromQL.
fn samples_up_to(lk: &Lookout, t: f64) -> f64 {
    let url = format!("{}/api/v1/query", lk.base);
    let v: Value = http()
        .get(url)
        .query(&[
            (
                "query",
                "sum(count_over_time(node_cpu_seconds_total[1h])) + sum(count_over_time(process_resident_memory_bytes[1h]))"
                    .to_string(),
            ),
            ("time", format!("{t:.3}")),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap()
}

fn kill9(mut lk: Lookout) {
    lk.child.kill().unwrap();
    lk.child.wait().unwrap();
}

#[test]
fn sigkill_loses_nothing_fsynced() {
    for (policy, wait) in [
        ("1s", Duration::from_millis(2500)),
        ("always", Duration::ZERO),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cfg = write_config(
            dir.path(),
            &format!("global:\n  scrape_interval: 200ms\nstorage:\n  wal_sync: {policy}\n"),
        );
        let lk = Lookout::start(&data, &cfg);
        lk.wait_for(
            "count_over_time(node_load1[1m]) >= 15",
            Duration::from_secs(30),
        );
        // Everything stamped up to a second ago was committed before this query ran.
        let t = now_secs() - 1.0;
        let before = samples_up_to(&lk, t);
        assert!(before > 100.0, "{policy}: only {before} samples");
        // With the 1 s policy, let two fsyncs pass while ingest goes on; with `always`,
        // every committed sample is already on disk.
        std::thread::sleep(wait);
        kill9(lk);
        let lk = Lookout::start(&data, &cfg);
        let after = samples_up_to(&lk, t);
        assert_eq!(
            before, after,
            "{policy}: samples up to the last fsync were lost"
        );
        assert!(lk.terminate().success());
    }
}

fn storage_check(lk: &Lookout) -> (String, String) {
    let c = lk.health_check("storage");
    (
        c["status"].as_str().unwrap().to_string(),
        c["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn full_disk_is_an_error_not_a_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let fs = TinyFs::mount(&dir.path().join("tiny"), "4m");
    let data = fs.0.join("data");
    let cfg = write_config(
        dir.path(),
        "global:\n  scrape_interval: 200ms\nstorage:\n  wal_sync: always\n",
    );
    let lk = Lookout::start(&data, &cfg);
    lk.wait_for(
        "count_over_time(node_load1[1m]) >= 10",
        Duration::from_secs(30),
    );
    let t = now_secs() - 1.0;
    let before = samples_up_to(&lk, t);
    assert!(before > 0.0);

    // Fill the filesystem.
    let filler = fs.fill();
    wait_until("storage to turn unhealthy", Duration::from_secs(15), || {
        storage_check(&lk).0 == "unhealthy"
    });
    let (_, msg) = storage_check(&lk);
    assert!(
        msg.contains("No space left") || msg.contains("not writable"),
        "{msg}"
    );
    let (code, _) = lk.get("/health");
    assert_eq!(code, 503);
    // The server itself keeps answering.
    let (code, _) = lk.get("/-/healthy");
    assert_eq!(code, 200);
    // What was stored is still readable.
    assert_eq!(samples_up_to(&lk, t), before);

    // Space returns: writes resume, nothing is corrupt.
    std::fs::remove_file(&filler).unwrap();
    wait_until("storage to recover", Duration::from_secs(15), || {
        storage_check(&lk).0 == "healthy"
    });
    std::thread::sleep(Duration::from_millis(600));
    let t2 = now_secs() - 0.5;
    let later = samples_up_to(&lk, t2);
    assert!(later > before, "ingest resumed: {later} > {before}");
    assert!(lk.terminate().success());

    let lk = Lookout::start(&data, &cfg);
    assert_eq!(samples_up_to(&lk, t2), later);
    let log = lk.log.lock().unwrap().join("\n");
    assert!(
        !log.contains("torn or corrupt"),
        "replay found damage: {log}"
    );
    assert!(lk.terminate().success());
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(format!(
                "{} {}",
                p.strip_prefix(dir).unwrap().display(),
                std::fs::metadata(&p).unwrap().len()
            ));
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn import_openmetrics_then_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let om = dir.path().join("in.om");
    // Recent data: older than storage.retention (15 d) would be deleted on start, as in Prometheus.
    let base = now_secs() as i64 - 4 * 3600;
    let mut text = String::from("# HELP demo_total A demo counter.\n# TYPE demo_total counter\n");
    // Three hours at 15 s across two block ranges, two series.
    for job in ["a", "b"] {
        for i in 0..720 {
            let v = if job == "a" {
                i as f64 * 1.5
            } else {
                (i % 7) as f64
            };
            text.push_str(&format!(
                "demo_total{{job=\"{job}\"}} {v} {}\n",
                base + i * 15
            ));
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(&om, &text).unwrap();
    let out = run(&["import", "openmetrics", utf8(&om), "--data", utf8(&data)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("imported 1440 samples"));

    // A malformed file stops at its line and leaves the directory as it was.
    let before = dir_listing(&data);
    let bad = dir.path().join("bad.om");
    std::fs::write(
        &bad,
        format!("demo_total{{job=\"c\"}} 1 {base}\ndemo_total{{job=\"c\"}} 2 {}\ndemo_total{{job=\"c\" 3 {}\n# EOF\n", base + 15, base + 30),
    )
    .unwrap();
    let out = run(&["import", "openmetrics", utf8(&bad), "--data", utf8(&data)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3"), "{err}");
    assert_eq!(before, dir_listing(&data));

    let out = run(&["tsdb", "stats", "--json", "--data", utf8(&data)]);
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["samples"], 1440);
    assert_eq!(st["series"], 2);
    assert_eq!(st["min_time"], base * 1000);
    // With a configuration, the series each retention rule applies to.
    let rcfg = dir.path().join("retention.yml");
    std::fs::write(
        &rcfg,
        "storage:\n  retention: 30d\n  retention_rules:\n    - matchers: '{job=\"a\"}'\n      retention: 3d\n",
    )
    .unwrap();
    let out = run(&[
        "tsdb",
        "stats",
        "--data",
        utf8(&data),
        "--config",
        utf8(&rcfg),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Retention"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].contains("3d") && rows[0].contains("1 series") && rows[0].contains("{job=\"a\"}"),
        "{text}"
    );
    assert!(
        rows[1].contains("4w2d") && rows[1].contains("1 series") && rows[1].contains("(the rest)"),
        "{text}"
    );

    let cfg = write_config(dir.path(), FAST);
    let lk = Lookout::start(&data, &cfg);
    let url = format!("{}/api/v1/query", lk.base);
    let v: Value = http()
        .get(url)
        .query(&[
            ("query", "demo_total{job=\"a\"}".to_string()),
            ("time", (base + 5000).to_string()),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    // Last sample at or before base + 5000 s: i = 333, value 499.5.
    assert_eq!(v["data"]["result"][0]["value"][1], "499.5", "{v}");
    let client = http();
    let del = format!("{}/api/v1/admin/tsdb/delete_series", lk.base);
    let r = client
        .post(&del)
        .query(&[("match[]", "demo_total{job=\"b\"}")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 503, "admin API is off by default");
    assert!(lk.terminate().success());

    // With the admin API on, deleting job="b" removes it from the imported blocks.
    let lk = Lookout::start_with(&data, &cfg, &["--web.enable-admin-api"]);
    let del = format!("{}/api/v1/admin/tsdb/delete_series", lk.base);
    let r = client
        .post(&del)
        .query(&[("match[]", "demo_total{job=\"b\"}")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(lk.query("demo_total{job=\"b\"}").is_empty());
    let v: Value = client
        .get(format!("{}/api/v1/series", lk.base))
        .query(&[("match[]", "demo_total"), ("start", &base.to_string())])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    assert!(lk.terminate().success());
}

/// The requests Grafana's Prometheus data source sends: health check, metrics browser,
/// series lookup, and a panel's range query (form POST with a step).
#[test]
fn grafana_data_source_requests() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), FAST);
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    lk.wait_for(
        "count_over_time(node_load1[1m]) >= 3",
        Duration::from_secs(20),
    );
    let c = http();
    let now = now_secs() as u64;
    let (start, end) = ((now - 300).to_string(), now.to_string());
    let get = |path: &str, q: &[(&str, &str)]| -> Value {
        let r = c.get(format!("{}{path}", lk.base)).query(q).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["status"], "success", "{path}: {v}");
        v
    };

    // "Save & test": 1+1 as an instant query.
    let v = get("/api/v1/query", &[("query", "1+1"), ("time", &end)]);
    assert_eq!(v["data"]["resultType"], "scalar");
    assert_eq!(v["data"]["result"][1], "2");
    let v = get("/api/v1/status/buildinfo", &[]);
    assert!(v["data"]["version"].is_string());

    // Metrics browser.
    let v = get("/api/v1/labels", &[("start", &start), ("end", &end)]);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "instance")
    );
    let v = get(
        "/api/v1/label/__name__/values",
        &[("start", &start), ("end", &end)],
    );
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "node_cpu_seconds_total")
    );
    let v = get("/api/v1/metadata", &[]);
    assert_eq!(v["data"]["node_cpu_seconds_total"][0]["type"], "counter");
    let v = get(
        "/api/v1/series",
        &[("match[]", "node_load1"), ("start", &start), ("end", &end)],
    );
    assert_eq!(v["data"][0]["__name__"], "node_load1");
    let v = get(
        "/api/v1/label/mode/values",
        &[
            ("match[]", "node_cpu_seconds_total"),
            ("start", &start),
            ("end", &end),
        ],
    );
    assert!(v["data"].as_array().unwrap().iter().any(|m| m == "idle"));

    // A panel: range query as a form POST, then exemplars for the same range.
    let r = c
        .post(format!("{}/api/v1/query_range", lk.base))
        .form(&[
            ("query", "sum by (mode) (rate(node_cpu_seconds_total[1m]))"),
            ("start", &start),
            ("end", &end),
            ("step", "15"),
        ])
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["data"]["resultType"], "matrix", "{v}");
    let series = v["data"]["result"].as_array().unwrap();
    assert!(series.iter().any(|s| s["metric"]["mode"] == "idle"));
    for s in series {
        for p in s["values"].as_array().unwrap() {
            let t = p[0].as_f64().unwrap();
            assert_eq!(
                (t - start.parse::<f64>().unwrap()) % 15.0,
                0.0,
                "points on the step grid"
            );
            assert!(p[1].is_string());
        }
    }
    let v = get(
        "/api/v1/query_exemplars",
        &[("query", "node_load1"), ("start", &start), ("end", &end)],
    );
    assert_eq!(v["data"], serde_json::json!([]));
    let v = get("/api/v1/status/config", &[]);
    assert!(
        v["data"]["yaml"]
            .as_str()
            .unwrap()
            .contains("scrape_interval: 1s")
    );
    let v = get("/api/v1/status/tsdb", &[]);
    assert!(v["data"]["headStats"]["numSeries"].as_u64().unwrap() > 10);
    assert!(lk.terminate().success());
}
