//! Instant detection: a database that goes away is noticed when its connection drops,
//! not at the next poll. Lookout collects a real Redis and a real PostgreSQL every 30 s
//! and evaluates its rules every 30 s; stopping each reaches the webhook within
//! `group_wait` (1 s) and a few seconds, far inside one interval.

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
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 1s\nreceivers:\n  - name: team\n    webhook_configs: [{{url: \"{}\"}}]\n",
            hook.url
        ),
    )
    .unwrap();
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
