//! Issue 17 end to end: the `lookout-sdk` example store (B+tree, page cache, WAL, three
//! Raft nodes) runs its workload, Lookout scrapes it, and PromQL over its series returns
//! what the workload did.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The example's binary, built beside this crate's when the workspace's tests are built;
/// built here otherwise.
fn kvstore() -> std::path::PathBuf {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_lookout"))
        .parent()
        .unwrap()
        .join("examples/kvstore");
    if !exe.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args([
                "build",
                "-p",
                "lookout-sdk",
                "--all-features",
                "--example",
                "kvstore",
            ])
            .status()
            .unwrap();
        assert!(st.success(), "building the kvstore example");
    }
    exe
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example store with its data under `dir` and these environment variables;
/// the store (killed on drop) and the address it serves.
fn start_store(dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(kvstore())
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("kv"))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    (Child(child), addr)
}

#[test]
fn issue_17_lookout_scrapes_the_instrumented_example_store() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, addr) = start_store(dir.path(), &[]);
    let cfg = write_config(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\ncollectors:\n  host: {{ enabled: false }}\n  process: {{ enabled: false }}\nrule_packs: [engine]\nscrape_configs:\n  - job_name: kvstore\n    static_configs: [ {{ targets: ['{addr}'] }} ]\n"
        ),
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    lk.wait_for(r#"up{job="kvstore"} == 1"#, Duration::from_secs(30));
    // Rates need two scrapes; the workload runs thousands of operations a second.
    let reads = lk.wait_for(
        r#"sum(rate(btree_operations_total{job="kvstore",tree="primary",op="search"}[5s])) > 100"#,
        Duration::from_secs(30),
    );
    assert!(value_of(&reads[0]) > 100.0, "{reads:?}");
    let writes = lk.query(r#"sum(rate(btree_operations_total{op="insert"}[5s]))"#);
    assert!(value_of(&writes[0]) > 10.0, "{writes:?}");
    // Splits grow the tree; the height the store reports matches.
    assert!(value_of(&lk.query("btree_height")[0]) >= 2.0);
    assert!(value_of(&lk.query("btree_node_splits_total")[0]) > 10.0);
    let p99 = lk.query(
        r#"histogram_quantile(0.99, sum by (le) (rate(btree_operation_duration_seconds_bucket{op="search"}[5s])))"#,
    );
    let p99 = value_of(&p99[0]);
    assert!(p99 > 0.0 && p99 < 1.0, "{p99}");
    // The page cache hits and misses, the WAL grows, fsyncs happen.
    let hit_ratio = lk.query(
        "sum(rate(storage_cache_hits_total[5s])) / (sum(rate(storage_cache_hits_total[5s])) + sum(rate(storage_cache_misses_total[5s])))",
    );
    let r = value_of(&hit_ratio[0]);
    assert!(r > 0.0 && r < 1.0, "{r}");
    assert!(value_of(&lk.query("storage_wal_bytes_total")[0]) > 0.0);
    assert!(value_of(&lk.query("storage_fsyncs_total")[0]) > 0.0);
    // Raft: the commit index moves, peers' lag is known, the service labels are there.
    let commit = lk.query(r#"delta(raft_commit_index{service="kvstore",node="n1"}[5s])"#);
    assert!(value_of(&commit[0]) > 0.0, "{commit:?}");
    assert_eq!(lk.query("raft_peer_replication_lag_entries").len(), 2);
    assert_eq!(
        value_of(&lk.query("sum(raft_state)")[0]),
        1.0,
        "one role at a time"
    );
    let rpcs = lk.query(r#"sum by (grpc_code) (grpc_server_handled_total{grpc_method="Get"})"#);
    assert!(rpcs.len() >= 2, "OK and NotFound: {rpcs:?}");
    assert!(value_of(&lk.query("process_resident_memory_bytes")[0]) > 1e6);
    // The store's /health answers in Lookout's shape with its checks.
    let health: serde_json::Value = http()
        .get(format!("http://{addr}/health"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["disk_space", "memory", "database"], "{health}");

    // The engine rule pack brings the engine dashboards, and every panel draws the
    // workload (some value not zero), but for what the example never does.
    // Elections and snapshots are rarer than the rest (one round in 400, every 250th).
    lk.wait_for("raft_leader_changes_total > 0", Duration::from_secs(60));
    lk.wait_for("raft_snapshots_total > 0", Duration::from_secs(60));
    let (code, list) = lk.get("/api/v1/lookout/dashboards");
    assert_eq!(code, 200, "{list}");
    let (mut missing, mut zero) = (Vec::new(), Vec::new());
    for uid in [
        "lookout-engine-btree",
        "lookout-engine-storage",
        "lookout-engine-raft",
    ] {
        assert!(
            list.contains(&format!("\"{uid}\"")),
            "{uid} not listed: {list}"
        );
        let (code, body) = lk.get(&format!("/api/v1/lookout/dashboards/{uid}"));
        assert_eq!(code, 200, "{body}");
        let d: serde_json::Value = serde_json::from_str(&body).unwrap();
        let panels = d["data"]["dashboard"]["panels"].as_array().unwrap();
        assert!(panels.len() > 10, "{uid}");
        for p in panels.iter().filter(|p| p["type"] != "row") {
            let title = format!("{uid}: {}", p["title"].as_str().unwrap());
            let values: Vec<f64> = p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|t| {
                    let expr = ["$job", "$instance", "$tree"]
                        .iter()
                        .fold(t["expr"].as_str().unwrap().to_string(), |e, v| {
                            e.replace(v, ".*")
                        })
                        .replace("$__rate_interval", "1m");
                    lk.query(&expr).iter().map(value_of).collect::<Vec<_>>()
                })
                .collect();
            if values.is_empty() {
                missing.push(title);
            } else if !values.iter().any(|x| *x != 0.0 && x.is_finite()) {
                // A counter that never moved draws a flat zero: not the workload.
                zero.push(title);
            }
        }
    }
    assert!(missing.is_empty(), "panels with no series: {missing:?}");
    // Only n1 is scraped: after an election it may rightly count no leader.
    zero.retain(|t| t != "lookout-engine-raft: Leaders");
    assert_eq!(
        zero,
        [
            "lookout-engine-storage: Compactions",
            "lookout-engine-raft: Proposals dropped",
        ],
        "panels that draw only zeros"
    );
    assert!(lk.terminate().success());
}

#[test]
fn issue_17_18_the_example_store_sends_its_traces_to_lookout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "collectors:\n  host: { enabled: false }\n  process: { enabled: false }\nrule_packs: [engine]\ntracing_receiver: { enabled: true }\nscrape_configs:\n  - job_name: kvstore\n    scrape_interval: 1s\n    file_sd_configs: [ { files: [ targets.json ] } ]\n",
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    let (_store, addr) = start_store(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", lk.base.as_str()),
            ("OTEL_TRACES_SAMPLER_ARG", "0.05"),
        ],
    );
    // Lookout learns the store's address (known only now) from its target file.
    std::fs::write(
        dir.path().join("targets.json"),
        format!("[{{\"targets\": [\"{addr}\"]}}]"),
    )
    .unwrap();
    // A caller's trace continues into the store's HTTP API.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = http()
        .get(format!("http://{addr}/kv/7"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .unwrap();
    assert!(r.status() == 200 || r.status() == 404);
    let json = |path: &str| -> serde_json::Value {
        let (code, body) = lk.get(path);
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    // The batch exporter sends every few seconds.
    wait_until("the example's operations", Duration::from_secs(60), || {
        let ops = json("/api/services/kvstore/operations");
        [
            "db.btree.get",
            "db.btree.put",
            "storage.page_read",
            "raft.append_entries",
            "GET /kv/{key}",
        ]
        .iter()
        .all(|o| ops["data"].as_array().unwrap().iter().any(|x| x == o))
    });
    let t = json(&format!("/api/traces/{caller_trace}"));
    let span = &t["data"][0]["spans"][0];
    assert_eq!(span["operationName"], "GET /kv/{key}");
    assert_eq!(span["references"][0]["spanID"], caller_span, "{span}");
    let process = &t["data"][0]["processes"][span["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "kvstore");
    // A page read is the child of the B+tree operation that missed the cache, which
    // carries the tree's name.
    let found = json("/api/traces?service=kvstore&operation=storage.page_read&limit=5");
    let t = &found["data"][0];
    let spans = t["spans"].as_array().unwrap();
    let read = spans
        .iter()
        .find(|s| s["operationName"] == "storage.page_read")
        .unwrap();
    let parent = spans
        .iter()
        .find(|s| s["spanID"] == read["references"][0]["spanID"])
        .unwrap_or_else(|| panic!("the read's parent is in its trace: {t}"));
    assert!(
        parent["operationName"]
            .as_str()
            .unwrap()
            .starts_with("db.btree."),
        "{parent}"
    );
    let tags = parent["tags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "db.btree.tree" && t["value"] == "primary"),
        "{parent}"
    );
    assert!(
        !tags
            .iter()
            .any(|t| t["key"] == "code.file.path" || t["key"] == "busy_ns"),
        "{parent}"
    );

    // Exemplars: latency observations made inside a sampled span carry its trace; Lookout
    // scrapes them (OpenMetrics) and returns them as Prometheus does, each leading to a
    // stored trace whose span is the one named.
    let exemplars_api = "/api/v1/query_exemplars?query=histogram_quantile(0.99,%20rate(btree_operation_duration_seconds_bucket%5B1m%5D))";
    let mut linked = None;
    wait_until(
        "an exemplar whose trace is stored",
        Duration::from_secs(60),
        || {
            let got = json(exemplars_api);
            let series = got["data"].as_array().unwrap();
            for s in series {
                assert_eq!(
                    s["seriesLabels"]["__name__"], "btree_operation_duration_seconds_bucket",
                    "{s}"
                );
                for e in s["exemplars"].as_array().unwrap() {
                    let trace = e["labels"]["trace_id"].as_str().unwrap();
                    let span = e["labels"]["span_id"].as_str().unwrap();
                    assert!(trace.len() == 32 && span.len() == 16, "{e}");
                    let value: f64 = e["value"].as_str().unwrap().parse().unwrap();
                    let le = s["seriesLabels"]["le"].as_str().unwrap();
                    let le: f64 = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap()
                    };
                    assert!(
                        value > 0.0 && value <= le,
                        "an exemplar lies in its bucket: {s}"
                    );
                    assert!(e["timestamp"].as_f64().unwrap() > now_secs() - 600.0, "{e}");
                    let (code, body) = lk.get(&format!("/api/traces/{trace}"));
                    if code != 200 {
                        continue;
                    }
                    let t: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let spans = t["data"][0]["spans"].as_array().unwrap();
                    if let Some(op) = spans.iter().find(|x| x["spanID"] == span) {
                        linked = Some((
                            trace.to_string(),
                            op["operationName"].as_str().unwrap().to_string(),
                        ));
                        return true;
                    }
                }
            }
            false
        },
    );
    let (trace, op) = linked.unwrap();
    assert!(!op.is_empty(), "the exemplar's span is named in its trace");
    // The engine dashboard draws them on its latency chart, each a link to the trace page.
    let driver = common::browser::chromedriver();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use fantoccini::Locator;
        let b = common::browser::browser(&driver, &dir.path().join("profile")).await;
        b.set_window_size(1400, 900).await.unwrap();
        b.goto(&format!("{}/d/lookout-engine-btree?from=now-5m&to=now", lk.base))
            .await
            .unwrap();
                let mut found = Vec::new();
        for round in 0..60 {
            // A user who sees none yet reloads: the newest scrapes carry more.
            if round > 0 && round % 10 == 0 {
                b.refresh().await.unwrap();
            }
            let v = b
                .execute(
                    "return [...document.querySelectorAll('a.exemplar')].map(a => a.getAttribute('href'))",
                    vec![],
                )
                .await
                .unwrap();
            found = serde_json::from_value::<Vec<String>>(v).unwrap();
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
                if found.is_empty() {
            let states = b
                .execute(
                    "return [...document.querySelectorAll('[data-panel-state]')].map(p => p.dataset.panelState + ' ' + (p.dataset.panelError || ''))",
                    vec![],
                )
                .await
                .unwrap();
            panic!("no exemplar drawn on the B+tree dashboard; panels: {states}");
        }
        assert!(found.iter().all(|h| h.starts_with("/trace/") && h.len() == "/trace/".len() + 32), "{found:?}");
        // Following one whose trace is stored opens its waterfall. Diamonds overlap where
        // exemplars crowd, so the chosen one is brought to the front first.
        let client = reqwest::Client::new();
        let mut href = None;
        for h in &found {
            let url = format!("{}/api/traces/{}", lk.base, &h["/trace/".len()..]);
            if client.get(url).send().await.unwrap().status() == 200 {
                href = Some(h.clone());
                break;
            }
        }
        let href = href.unwrap_or_else(|| {
            panic!("no drawn exemplar's trace is stored ({} drawn; {trace} is)", found.len())
        });
        let link = b
            .find(Locator::Css(&format!("a.exemplar[href='{href}']")))
            .await
            .unwrap();
        b.execute(
            "arguments[0].style.zIndex = 10",
            vec![serde_json::to_value(&link).unwrap()],
        )
        .await
        .unwrap();
        link.click().await.unwrap();
        let id = common::browser::wait_text(&b, "#trace-id", |t| t.len() == 32).await;
        assert_eq!(format!("/trace/{id}"), href);
        b.close().await.unwrap();
    });
    assert!(lk.terminate().success());
}
