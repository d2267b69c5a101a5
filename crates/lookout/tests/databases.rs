//! End-to-end with real databases: `lookout serve` configured with a PostgreSQL, a Redis
//! and process groups, all started here on loopback. PostgreSQL going down flips `pg_up`
//! and its health check; coming back recovers without restarting Lookout.

mod common;
#[path = "../../collect/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use common::*;
use serde_json::Value;
use support::{PgServer, RedisServer};

fn check(lk: &Lookout, name: &str) -> (String, String) {
    let c = lk.health_check(name);
    (
        c["status"].as_str().unwrap().to_string(),
        c["message"].as_str().unwrap().to_string(),
    )
}

fn latest(lk: &Lookout, q: &str) -> Option<f64> {
    lk.query(q).first().map(value_of)
}

#[test]
fn databases_end_to_end() {
    let mut pg = PgServer::start();
    pg.psql("postgres", "CREATE EXTENSION pg_stat_statements");
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pg-password");
    std::fs::write(&pw, "unused-with-trust\n").unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\ncollectors:\n  host: {{ enabled: false }}\n  processes: [ {{ name: postgres }}, {{ name: redis-server }} ]\n  postgres:\n    - name: main\n      dsn: \"{}\"\n      password_file: {}\n      top_statements: 10\n  redis:\n    - name: cache\n      url: \"{}\"\n",
            pg.dsn("postgres"),
            pw.display(),
            redis.url()
        ),
    );
    let out = run(&["check", "config", utf8(&cfg)]);
    assert!(out.status.success(), "{out:?}");
    let lk = Lookout::start(&dir.path().join("data"), &cfg);

    let up = lk.wait_for(
        r#"pg_up{job="postgres",instance="main"} == 1"#,
        Duration::from_secs(20),
    );
    assert_eq!(up.len(), 1);
    lk.wait_for(
        r#"redis_up{job="redis",instance="cache"} == 1"#,
        Duration::from_secs(20),
    );
    lk.wait_for(
        r#"namedprocess_namegroup_num_procs{groupname="postgres"} > 0"#,
        Duration::from_secs(20),
    );
    wait_until("healthy postgres check", Duration::from_secs(10), || {
        check(&lk, "postgres/main").0 == "healthy"
    });
    assert_eq!(check(&lk, "redis/cache").0, "healthy");

    // Statements appear with their text at the Lookout API, never as label values.
    // (Slow enough to rank above Lookout's own monitoring queries.)
    pg.psql("postgres", "SELECT pg_sleep(0.3), 'lookout-e2e-marker'");
    // Over the last hour (the default range), from the per-interval figures stored.
    let mut slow = serde_json::Value::Null;
    wait_until("slow queries", Duration::from_secs(10), || {
        let (_, body) = lk.get("/api/v1/lookout/slow_queries?instance=main");
        slow = serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"].clone();
        slow["statements"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["query"].as_str().unwrap().contains("pg_sleep"))
    });
    let sleep = slow["statements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["query"].as_str().unwrap().contains("pg_sleep"))
        .unwrap();
    assert_eq!(sleep["calls"], 1.0, "{sleep}");
    let mean = sleep["mean_seconds"].as_f64().unwrap();
    assert!((0.3..1.0).contains(&mean), "{sleep}");
    assert!(sleep["time_share"].as_f64().unwrap() > 0.0, "{sleep}");
    assert_eq!(
        slow["end"].as_f64().unwrap() - slow["start"].as_f64().unwrap(),
        3600.0
    );
    // A range before the statement ran has none of it; a reversed range is refused.
    let (_, body) = lk.get("/api/v1/lookout/slow_queries?instance=main&start=1000&end=2000");
    assert!(!body.contains("pg_sleep"), "{body}");
    let (code, body) = lk.get("/api/v1/lookout/slow_queries?start=2000&end=1000");
    assert_eq!(code, 400, "{body}");
    let series = lk.query("pg_stat_statements_calls_total");
    assert!(!series.is_empty());
    for s in &series {
        assert!(s["metric"].get("query").is_none(), "{s}");
        assert!(s["metric"]["queryid"].is_string());
    }

    // Who blocks whom: a transaction holding a table lock (busy in pg_sleep) and a query
    // waiting on it, as the lock tree and the long transactions show them.
    pg.psql("postgres", "CREATE TABLE e2e_held (x int)");
    let mut holder = pg.psql_background(
        "postgres",
        "BEGIN; LOCK TABLE e2e_held IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(8); COMMIT",
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut waiter = pg.psql_background("postgres", "SELECT count(*) FROM e2e_held");
    let json = |path: &str| -> serde_json::Value {
        let (code, body) = lk.get(path);
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"].clone()
    };
    let mut tree = serde_json::Value::Null;
    wait_until("the lock tree", Duration::from_secs(10), || {
        tree = json("/api/v1/lookout/postgres/locks?instance=main");
        tree[0]["tree"][0]["blocks"][0]["query"] == "SELECT count(*) FROM e2e_held"
    });
    let root = &tree[0]["tree"][0];
    assert_eq!(tree[0]["instance"], "main");
    assert_eq!(tree[0]["blocked"], 1, "{tree}");
    assert!(
        root["query"]
            .as_str()
            .unwrap()
            .contains("LOCK TABLE e2e_held"),
        "{root}"
    );
    assert_eq!(root["wait_event"], "PgSleep", "{root}");
    let blocked = &root["blocks"][0];
    assert_eq!(blocked["blocked_by"][0], root["pid"], "{blocked}");
    assert_eq!(blocked["wait_event_type"], "Lock", "{blocked}");
    let tx = json("/api/v1/lookout/postgres/transactions?instance=main&min_age=500ms");
    let sessions = tx[0]["sessions"].as_array().unwrap();
    assert_eq!(sessions[0]["pid"], root["pid"], "the oldest first: {tx}");
    assert!(sessions[0]["transaction_seconds"].as_f64().unwrap() >= 0.5);
    // The advisor has read the catalog; the test server needs no maintenance.
    let advisor = json("/api/v1/lookout/postgres/advisor?instance=main");
    assert_eq!(advisor[0]["instance"], "main", "{advisor}");
    assert!(advisor[0]["at"].as_f64().unwrap() > 0.0);
    assert!(advisor[0]["advice"].is_array(), "{advisor}");
    let (code, _) = lk.get("/api/v1/lookout/postgres/advisor?severity=loud");
    assert_eq!(code, 400);
    // Redis: the slow log Lookout keeps, the doctors' reports; no big-key sample unless
    // configured.
    let slowlog = json("/api/v1/lookout/redis/slowlog?instance=cache&limit=5");
    assert_eq!(slowlog[0]["instance"], "cache", "{slowlog}");
    assert!(slowlog[0]["entries"].as_array().unwrap().len() <= 5);
    let doctor = json("/api/v1/lookout/redis/doctor");
    assert!(
        doctor[0]["latency_doctor"].as_str().unwrap().len() > 20,
        "{doctor}"
    );
    let big = json("/api/v1/lookout/redis/bigkeys?instance=cache");
    assert!(big[0]["big_keys"].is_null(), "{big}");
    let (code, body) = lk.get("/api/v1/lookout/postgres/transactions?min_age=soon");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid min_age"), "{body}");
    for child in [&mut holder, &mut waiter] {
        let _ = child.kill();
        let _ = child.wait();
    }

    // Outage: pg_up 0 and an unhealthy check naming the problem; then recovery.
    pg.stop();
    wait_until("pg_up 0", Duration::from_secs(15), || {
        latest(&lk, r#"pg_up{instance="main"}"#) == Some(0.0)
    });
    let (status, msg) = check(&lk, "postgres/main");
    assert_eq!(status, "unhealthy", "{msg}");
    assert!(msg.contains("postgres main"), "{msg}");
    assert_eq!(check(&lk, "redis/cache").0, "healthy");
    pg.start_again();
    wait_until("pg_up 1 again", Duration::from_secs(20), || {
        latest(&lk, r#"pg_up{instance="main"}"#) == Some(1.0)
    });
    wait_until("healthy again", Duration::from_secs(10), || {
        check(&lk, "postgres/main").0 == "healthy"
    });
    assert!(lk.terminate().success());
}

#[test]
fn database_config_errors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "collectors:\n  postgres:\n    - name: main\n      dsn: \"postgres://x@127.0.0.1/db\"\n      password_env: LOOKOUT_TEST_UNSET_PASSWORD\n",
    );
    let out = run(&["check", "config", utf8(&cfg)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LOOKOUT_TEST_UNSET_PASSWORD") && err.contains("\"main\""),
        "{err}"
    );
    let cfg = write_config(
        dir.path(),
        "collectors:\n  redis:\n    - name: a\n      url: \"redis://127.0.0.1:1\"\n    - name: a\n      url: \"redis://127.0.0.1:2\"\n",
    );
    let out = run(&["check", "config", utf8(&cfg)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("used twice"), "{err}");
    for (yaml, want) in [
        ("big_keys: { batch: 0 }", "big_keys.batch 0 is out of range"),
        (
            "big_keys: { max_keys: 0 }",
            "big_keys.max_keys 0 is out of range",
        ),
        (
            "big_keys: { top: 5000 }",
            "big_keys.top 5000 is out of range",
        ),
        ("big_keys: { every: soon }", "soon"),
        ("big_keys: { scan: 1 }", "unknown field `scan`"),
    ] {
        let cfg = write_config(
            dir.path(),
            &format!(
                "collectors:\n  redis:\n    - name: a\n      url: \"redis://127.0.0.1:1\"\n      {yaml}\n"
            ),
        );
        let out = run(&["check", "config", utf8(&cfg)]);
        assert!(!out.status.success(), "{yaml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{yaml}: {err}");
    }
}

/// A Prometheus configuration file, used as is (promtool accepts the same file).
#[test]
fn prometheus_yml_drop_in() {
    let port = support::free_port();
    let _exp = support::Exporter::start(
        "prometheus-node-exporter",
        &[format!("--web.listen-address=127.0.0.1:{port}")],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  external_labels:\n    site: test\nscrape_configs:\n  - job_name: node-exp\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: node_load.*\n        action: keep\n"
        ),
    )
    .unwrap();
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(&prom)
        .output()
    {
        assert!(
            out.status.success(),
            "promtool rejects the test config: {out:?}"
        );
    }
    let lk = Lookout::start(&dir.path().join("data"), &prom);
    let load = lk.wait_for(r#"node_load1{job="node-exp"}"#, Duration::from_secs(20));
    assert_eq!(
        load[0]["metric"]["instance"],
        format!("127.0.0.1:{port}").as_str()
    );
    assert!(
        lk.query(r#"node_cpu_seconds_total{job="node-exp"}"#)
            .is_empty()
    );
    let (_, body) = lk.get("/api/v1/targets");
    let v: Value = serde_json::from_str(&body).unwrap();
    let t = &v["data"]["activeTargets"][0];
    assert_eq!(t["health"], "up", "{v}");
    assert_eq!(t["scrapePool"], "node-exp");
    assert_eq!(t["labels"]["job"], "node-exp");

    // Every section of a prometheus.yml runs: rules, alerting, remote write and read.
    let with_rules = dir.path().join("with-rules.yml");
    std::fs::write(
        &with_rules,
        "rule_files: [\"rules/*.yml\"]\nalerting:\n  alertmanagers: []\nremote_write: []\nremote_read: []\nscrape_configs: []\n",
    )
    .unwrap();
    let out = run(&["check", "config", utf8(&with_rules)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
