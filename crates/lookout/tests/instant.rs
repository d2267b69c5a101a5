//! Instant detection: a database that goes away is noticed when its connection drops,
//! not at the next poll. Lookout collects a real Redis and a real PostgreSQL every 30 s
//! and evaluates its rules every 30 s; stopping each reaches the webhook within
//! `group_wait` (1 s) and a few seconds, far inside one interval. A scrape target (the
//! real node exporter, scraped every minute) killed just after a scrape is noticed the
//! same way, through the idle connection the scrape loop holds to it.

mod common;
#[path = "../../collect/tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::*;
use lookout_testkit::WebhookReceiver;
use support::{PgServer, RedisServer};

const RULES: &str = r#"groups:
- name: databases
  interval: 30s
  rules:
  - alert: RedisDown
    expr: redis_up == 0
    labels: {severity: critical}
  - alert: PostgresDown
    expr: pg_up == 0
    labels: {severity: critical}
"#;

fn notified(hook: &WebhookReceiver, alert: &str) -> bool {
    hook.bodies.lock().unwrap().iter().any(|(_, b)| {
        b["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == alert))
    })
}

#[test]
fn a_database_going_away_is_notified_within_group_wait_and_moments() {
    let redis = RedisServer::start();
    let mut pg = PgServer::start();
    let hook = WebhookReceiver::start(200, 0);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    alertmanager_to(dir.path(), &hook);
    let cfg = write_config(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 30s\n  evaluation_interval: 30s\ncollectors:\n  host: {{ enabled: false }}\n  process: {{ enabled: false }}\n  redis:\n    - name: cache\n      url: \"{}\"\n  postgres:\n    - name: main\n      dsn: \"{}\"\nrule_packs: []\nrule_files: [rules.yml]\nnotifier:\n  config_file: alertmanager.yml\nsnapshots: {{ on_alert_severities: [] }}\n",
            redis.url(),
            pg.dsn("postgres")
        ),
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    lk.wait_for(
        r#"redis_up{instance="cache"} == 1"#,
        Duration::from_secs(20),
    );
    lk.wait_for(r#"pg_up{instance="main"} == 1"#, Duration::from_secs(20));
    // Both connections are open and watched; let the first evaluation pass.
    std::thread::sleep(Duration::from_secs(2));

    let started = Instant::now();
    drop(redis);
    wait_until("RedisDown notified", Duration::from_secs(25), || {
        notified(&hook, "RedisDown")
    });
    let redis_took = started.elapsed();

    let started = Instant::now();
    pg.stop();
    wait_until("PostgresDown notified", Duration::from_secs(25), || {
        notified(&hook, "PostgresDown")
    });
    let pg_took = started.elapsed();
    eprintln!(
        "fault to webhook: Redis {redis_took:?}, PostgreSQL {pg_took:?} (group_wait 1s, intervals 30s)"
    );
    for took in [redis_took, pg_took] {
        assert!(took < Duration::from_secs(8), "{took:?}");
    }
    assert!(lk.terminate().success());
}

/// An Alertmanager file sending every alert to `hook` after a 1 s `group_wait`.
fn alertmanager_to(dir: &std::path::Path, hook: &WebhookReceiver) {
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 1s\nreceivers:\n  - name: team\n    webhook_configs: [{{url: \"{}\"}}]\n",
            hook.url
        ),
    )
    .unwrap();
}

#[test]
fn a_scrape_target_that_dies_is_notified_without_waiting_for_its_next_scrape() {
    let port = support::free_port();
    let mut exporter = support::Exporter::start(
        "prometheus-node-exporter",
        &[
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--collector.disable-defaults".into(),
            "--collector.loadavg".into(),
        ],
        &[],
    );
    let hook = WebhookReceiver::start(200, 0);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n- name: targets\n  interval: 1m\n  rules:\n  - alert: NodeTargetDown\n    expr: up{job=\"node\"} == 0\n",
    )
    .unwrap();
    alertmanager_to(dir.path(), &hook);
    let cfg = write_config(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\ncollectors:\n  host: {{ enabled: false }}\n  process: {{ enabled: false }}\nscrape_configs:\n  - job_name: node\n    static_configs: [{{ targets: [\"127.0.0.1:{port}\"] }}]\nrule_packs: []\nrule_files: [rules.yml]\nnotifier:\n  config_file: alertmanager.yml\nsnapshots: {{ on_alert_severities: [] }}\n"
        ),
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    lk.wait_for(r#"up{job="node"} == 1"#, Duration::from_secs(20));
    // Kill it within seconds after a scrape, so the next scrape is most of a minute away.
    wait_until("a fresh scrape", Duration::from_secs(70), || {
        !lk.query(r#"time() - timestamp(up{job="node"}) < 3"#)
            .is_empty()
    });
    let started = Instant::now();
    exporter.0.kill().unwrap();
    exporter.0.wait().unwrap();
    wait_until("NodeTargetDown notified", Duration::from_secs(50), || {
        notified(&hook, "NodeTargetDown")
    });
    let took = started.elapsed();
    eprintln!("target killed to webhook: {took:?} (group_wait 1s, scrape and evaluation every 1m)");
    assert!(took < Duration::from_secs(8), "{took:?}");
    let up = lk.query(r#"up{job="node"}"#);
    assert_eq!(up.first().map(value_of), Some(0.0), "{up:?}");
    assert!(lk.terminate().success());
}
