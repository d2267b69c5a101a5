//! Remediation end to end: a real PostgreSQL with a query left running in one database
//! and another in a second database, and a session idle in its transaction. Lookout's
//! collector sees them, its rules fire, and the remediation rules cancel the first
//! query (within an evaluation interval plus the action's time), only record what they
//! would do with the second (dry run), and terminate the idle session; the audit trail
//! says so at `/api/v1/lookout/remediations` and on the Remediations page.

mod common;
#[path = "../../collect/tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use support::PgServer;

const RULES: &str = r#"groups:
- name: pg
  interval: 1s
  rules:
  - alert: PostgresLongRunningQuery
    expr: max(pg_stat_activity_max_tx_duration{state="active"}) > 3
    labels: {severity: warning}
  - alert: PostgresIdleInTransaction
    expr: max(pg_stat_activity_max_tx_duration{state="idle in transaction"}) > 3
    labels: {severity: warning}
"#;

#[test]
fn a_long_query_is_cancelled_a_dry_run_touches_nothing_and_the_audit_says_so() {
    let pg = PgServer::start();
    pg.psql("postgres", "CREATE DATABASE app1");
    pg.psql("postgres", "CREATE DATABASE app2");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\ncollectors:\n  host: {{ enabled: false }}\n  process: {{ enabled: false }}\n  postgres:\n    - name: main\n      dsn: \"{}\"\nrule_packs: []\nrule_files: [rules.yml]\nremediation:\n  - name: cancel-long-queries\n    matchers: [ 'alertname=\"PostgresLongRunningQuery\"' ]\n    action: {{ postgres_cancel_queries: {{ instance: main, running_longer_than: 2s, database: app1 }} }}\n    dry_run: false\n    cooldown: 5m\n    max_per_hour: 10\n  - name: cancel-app2-dry\n    matchers: [ 'alertname=\"PostgresLongRunningQuery\"' ]\n    action: {{ postgres_cancel_queries: {{ instance: main, running_longer_than: 2s, database: app2 }} }}\n  - name: end-idle-transactions\n    matchers: [ 'alertname=\"PostgresIdleInTransaction\"' ]\n    action: {{ postgres_terminate_idle_in_transaction: {{ instance: main, idle_longer_than: 2s }} }}\n    dry_run: false\n",
            pg.dsn("postgres")
        ),
    );
    let out = run(&["check", "config", utf8(&cfg)]);
    assert!(out.status.success(), "{out:?}");
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    lk.wait_for(r#"pg_up{instance="main"} == 1"#, Duration::from_secs(20));

    let started = Instant::now();
    let cancelled = pg.psql_background("app1", "SELECT pg_sleep(60)");
    let untouched = pg.psql_background("app2", "SELECT pg_sleep(60)");
    // A transaction left open: psql waits on its input, which stays open.
    let mut idle = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-d", "app1"])
        .args(["-p", &pg.port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    idle.stdin
        .as_mut()
        .unwrap()
        .write_all(b"BEGIN; SELECT 1;\n")
        .unwrap();

    // The first query ends long before its 60 s: cancelled.
    let mut cancelled = cancelled;
    let status = loop {
        if let Some(s) = cancelled.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "not cancelled in time"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "psql reports the cancelled statement");
    let took = started.elapsed();
    // Threshold (3 s for the rule, 2 s for the action) + a scrape, an evaluation and the
    // action: well under the query's 60 s.
    assert!(took < Duration::from_secs(20), "{took:?}");
    eprintln!("the long query was cancelled {took:?} after it started");

    let records = |lk: &Lookout| -> Vec<Value> {
        let (code, body) = lk.get("/api/v1/lookout/remediations");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["data"]
            .as_array()
            .unwrap()
            .clone()
    };
    let mut all = Vec::new();
    wait_until("three audit records", Duration::from_secs(20), || {
        all = records(&lk);
        [
            "cancel-long-queries",
            "cancel-app2-dry",
            "end-idle-transactions",
        ]
        .iter()
        .all(|r| all.iter().any(|x| x["rule"] == *r))
    });
    let by = |rule: &str| all.iter().find(|x| x["rule"] == rule).unwrap().clone();
    let real = by("cancel-long-queries");
    assert_eq!(real["outcome"], "done", "{real}");
    assert_eq!(real["dry_run"], false);
    assert_eq!(real["alert"]["alertname"], "PostgresLongRunningQuery");
    assert!(
        real["detail"]
            .as_str()
            .unwrap()
            .starts_with("cancelled 1 of 1"),
        "{real}"
    );
    assert!(
        real["targets"][0].as_str().unwrap().contains("@app1"),
        "{real}"
    );
    assert!(
        real["targets"][0]
            .as_str()
            .unwrap()
            .contains("pg_sleep(60)"),
        "{real}"
    );
    let dry = by("cancel-app2-dry");
    assert_eq!(dry["outcome"], "dry_run", "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert!(
        dry["targets"][0].as_str().unwrap().contains("@app2"),
        "{dry}"
    );
    let ended = by("end-idle-transactions");
    assert_eq!(ended["outcome"], "done", "{ended}");
    assert!(
        ended["detail"]
            .as_str()
            .unwrap()
            .starts_with("terminated 1 of 1"),
        "{ended}"
    );

    // The dry run left its query running; the idle transaction is gone.
    let mut untouched = untouched;
    assert!(
        untouched.try_wait().unwrap().is_none(),
        "the dry run touched nothing"
    );
    let idle_left = pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
    );
    assert_eq!(idle_left.trim(), "0");
    // The cooldown holds: the query in app2 keeps the alert firing, but the real rule
    // ran once.
    std::thread::sleep(Duration::from_secs(3));
    let all = records(&lk);
    assert_eq!(
        all.iter()
            .filter(|x| x["rule"] == "cancel-long-queries")
            .count(),
        1,
        "{all:?}"
    );
    // The audit trail survives a restart.
    assert!(lk.terminate().success());
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    let again = records(&lk);
    assert!(again.len() >= 3, "{again:?}");
    let (code, _) = lk.get("/api/v1/lookout/remediations?limit=x");
    assert_eq!(code, 400);

    common::browser::with_browser(&dir.path().join("profile"), |b| {
        let lk = &lk;
        async move {
            b.goto(&format!("{}/remediations", lk.base)).await.unwrap();
            let text = common::browser::wait_text(&b, "#remediations tbody", |t| {
                t.contains("cancel-long-queries")
            })
            .await;
            assert!(text.contains("dry_run"), "{text}");
            b
        }
    });
    for mut c in [untouched, idle] {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(lk.terminate().success());
}
