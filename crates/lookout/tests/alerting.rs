//! Alerting end to end through the real binary: a firing rule reaches a real HTTP
//! receiver with Alertmanager's webhook payload (compared with a golden file), the
//! Alertmanager API v2 works for Debian's `amtool`, acknowledgements stop repeats,
//! a restart sends no duplicate, and alerts are forwarded to Debian's real
//! prometheus-alertmanager.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use lookout_testkit::WebhookReceiver;
use serde_json::Value;

const RULES: &str = r#"groups:
- name: db
  interval: 1s
  rules:
  - alert: PostgresDown
    expr: label_replace(vector(1), "instance", "db1", "", "")
    labels: {severity: page}
    annotations:
      summary: 'PostgreSQL {{ $labels.instance }} is down'
"#;

fn setup(dir: &std::path::Path, hook: &str, extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n  - name: team\n    webhook_configs: [{{url: \"{hook}\"}}]\n"
        ),
    )
    .unwrap();
    write_config(
        dir,
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels: {{site: lab}}\nrule_packs: []\nrule_files: [rules.yml]\nnotifier:\n  config_file: alertmanager.yml\n{extra}"
        ),
    )
}

/// Lookout with the test rule and a webhook receiver, once the alert fires.
fn start_firing(dir: &std::path::Path) -> (WebhookReceiver, std::path::PathBuf, Lookout) {
    let hook = WebhookReceiver::start(200, 0);
    let cfg = setup(dir, &hook.url, "");
    let lk = Lookout::start(&dir.join("data"), &cfg);
    wait_until("the alert", Duration::from_secs(20), || {
        lk.get("/api/v2/alerts").1.contains("PostgresDown")
    });
    (hook, cfg, lk)
}

/// The parts of a payload that vary between runs, replaced by placeholders.
fn normalized(mut v: Value, base: &str) -> Value {
    v["externalURL"] = Value::String(v["externalURL"].as_str().unwrap().replace(base, "BASE"));
    for a in v["alerts"].as_array_mut().unwrap() {
        assert!(lookout_model::parse_rfc3339(a["startsAt"].as_str().unwrap()).is_some());
        a["startsAt"] = Value::String("STARTS_AT".into());
        a["generatorURL"] =
            Value::String(a["generatorURL"].as_str().unwrap().replace(base, "BASE"));
    }
    v
}

#[test]
fn a_firing_rule_reaches_the_webhook_and_a_restart_sends_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookReceiver::start(200, 0);
    let cfg = setup(dir.path(), &hook.url, "");
    let data = dir.path().join("data");
    let lk = Lookout::start(&data, &cfg);
    wait_until("the webhook notification", Duration::from_secs(20), || {
        hook.count() > 0
    });
    let golden: Value = serde_json::from_str(include_str!("golden/rule_to_webhook.json")).unwrap();
    assert_eq!(
        normalized(hook.first(), &lk.base),
        golden,
        "{}",
        serde_json::to_string_pretty(&hook.first()).unwrap()
    );

    // Self-monitoring under Prometheus's and Alertmanager's names.
    let (_, metrics) = lk.get("/metrics");
    assert!(
        metrics.contains("prometheus_rule_group_rules{rule_group=\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("alertmanager_alerts{state=\"active\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lookout_notifications_total 1"),
        "{metrics}"
    );

    // The Alertmanager API shows it; amtool is tested below.
    let (code, body) = lk.get("/api/v2/alerts");
    assert_eq!(code, 200);
    let alerts: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alerts[0]["labels"]["alertname"], "PostgresDown");
    assert_eq!(alerts[0]["status"]["state"], "active");
    assert_eq!(alerts[0]["receivers"][0]["name"], "team");

    // Restart while it fires: the notification log knows the receiver was told.
    assert!(lk.terminate().success());
    let lk = Lookout::start(&data, &cfg);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        hook.count(),
        1,
        "no duplicate after the restart: {:?}",
        hook.bodies.lock().unwrap()
    );
    let (_, body) = lk.get("/api/v2/alerts");
    assert!(
        body.contains("PostgresDown"),
        "the alert is back after the restart: {body}"
    );
    assert!(lk.terminate().success());
}

fn amtool(base: &str, args: &[&str]) -> std::process::Output {
    Command::new("amtool")
        .arg(format!("--alertmanager.url={base}"))
        .args(args)
        .output()
        .expect("amtool (Debian's prometheus-alertmanager) is installed by scripts/test")
}

fn have(cmd: &str) -> bool {
    let ok = Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: {cmd} is not installed (scripts/test installs Debian's prometheus-alertmanager)"
        );
    }
    ok
}

#[test]
fn amtool_lists_alerts_and_adds_and_expires_silences() {
    if !have("amtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_hook, _cfg, lk) = start_firing(dir.path());

    let out = amtool(&lk.base, &["alert", "query"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PostgresDown") && text.contains("PostgreSQL db1 is down"),
        "{text}"
    );

    let out = amtool(
        &lk.base,
        &[
            "silence",
            "add",
            "alertname=PostgresDown",
            "--comment=maintenance",
            "--author=alice",
            "--duration=1h",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 36, "a silence id: {id}");

    let out = amtool(&lk.base, &["silence", "query"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&id) && text.contains("alice") && text.contains("maintenance"),
        "{text}"
    );
    let out = amtool(&lk.base, &["alert", "query", "--silenced"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("PostgresDown"));

    let out = amtool(&lk.base, &["silence", "expire", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, body) = lk.get(&format!("/api/v2/silence/{id}"));
    let s: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["status"]["state"], "expired");
    let (_, audit) = lk.get("/api/v1/lookout/audit");
    let a: Value = serde_json::from_str(&audit).unwrap();
    let actions: Vec<&str> = a["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["silence_create", "silence_expire"]);
    assert_eq!(a["data"][0]["who"], "alice");
    assert!(
        std::fs::read_to_string(dir.path().join("data/notifier/audit.log"))
            .unwrap()
            .lines()
            .count()
            == 2
    );
    assert!(lk.terminate().success());
}

#[test]
fn acknowledging_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, cfg, lk) = start_firing(dir.path());
    let (_, body) = lk.get("/api/v2/alerts");
    let fp = serde_json::from_str::<Value>(&body).unwrap()[0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("{}/api/v1/lookout/alerts/{fp}/ack", lk.base);
    let r = http()
        .post(&url)
        .body(r#"{"who": "alice", "comment": "on it", "expires": "2h"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    let (_, body) = lk.get("/api/v2/alerts");
    let a = &serde_json::from_str::<Value>(&body).unwrap()[0];
    assert_eq!(a["acknowledged"]["by"], "alice");
    assert_eq!(a["acknowledged"]["comment"], "on it");
    let r = http()
        .post(format!(
            "{}/api/v1/lookout/alerts/0000000000000000/ack",
            lk.base
        ))
        .body(r#"{"who": "alice"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = http()
        .post(&url)
        .body(r#"{"comment": "no who"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // The notifier's configuration reloads with the rules; a bad one keeps what runs,
    // and `check config` reports it first.
    let am = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am,
        "route: {receiver: nobody}\nreceivers: [{name: team}]\n",
    )
    .unwrap();
    let out = run(&["check", "config", utf8(&cfg)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("undefined receiver \"nobody\" used in route"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = http().post(format!("{}/-/reload", lk.base)).send().unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert!(
        r.text()
            .unwrap()
            .contains("undefined receiver \"nobody\" used in route")
    );
    std::fs::write(
        &am,
        format!(
            "route: {{receiver: team2, group_wait: 1s}}\nreceivers: [{{name: team2, webhook_configs: [{{url: \"{}\"}}]}}]\n",
            hook.url
        ),
    )
    .unwrap();
    let r = http().post(format!("{}/-/reload", lk.base)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    let (_, body) = lk.get("/api/v2/receivers");
    assert_eq!(body, r#"[{"name":"team2"}]"#);
    let (_, body) = lk.get("/api/v2/alerts");
    let a = &serde_json::from_str::<Value>(&body).unwrap()[0];
    assert_eq!(
        a["acknowledged"]["by"], "alice",
        "acknowledgements survive a reload"
    );
    assert_eq!(a["receivers"][0]["name"], "team2");
    wait_until("the new receiver is told", Duration::from_secs(10), || {
        hook.bodies
            .lock()
            .unwrap()
            .iter()
            .any(|(_, b)| b["receiver"] == "team2")
    });
    assert!(lk.terminate().success());
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn alerts_are_forwarded_to_a_real_alertmanager() {
    if !have("prometheus-alertmanager") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("am.yml"),
        "route: {receiver: x}\nreceivers: [{name: x}]\n",
    )
    .unwrap();
    let am = Proc(
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let hook = WebhookReceiver::start(200, 0);
    let cfg = setup(
        dir.path(),
        &hook.url,
        &format!(
            "alerting:\n  alert_relabel_configs: [{{target_label: forwarded, replacement: yes}}]\n  alertmanagers:\n    - static_configs: [{{targets: [\"127.0.0.1:{port}\"]}}]\n"
        ),
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    let am_url = format!("http://127.0.0.1:{port}/api/v2/alerts");
    let mut got = Value::Null;
    wait_until("the alert at Alertmanager", Duration::from_secs(30), || {
        got = http()
            .get(&am_url)
            .send()
            .ok()
            .and_then(|r| r.json().ok())
            .unwrap_or(Value::Null);
        got.as_array().is_some_and(|a| !a.is_empty())
    });
    let a = &got[0];
    assert_eq!(a["labels"]["alertname"], "PostgresDown");
    assert_eq!(a["labels"]["site"], "lab", "external labels are added");
    assert_eq!(
        a["labels"]["forwarded"], "yes",
        "alert_relabel_configs apply"
    );
    assert_eq!(a["annotations"]["summary"], "PostgreSQL db1 is down");
    assert!(a["generatorURL"].as_str().unwrap().starts_with(&lk.base));
    // Alertmanager computes the same fingerprint Lookout's API reports.
    let (_, ours) = lk.get("/api/v2/alerts");
    let ours: Value = serde_json::from_str(&ours).unwrap();
    assert_eq!(ours[0]["fingerprint"], a["fingerprint"]);
    assert!(lk.terminate().success());
    drop(am);
}
