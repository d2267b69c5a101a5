//! Rules end to end: the real binary evaluating rule files, the Prometheus rules and
//! alerts API, reload by POST /-/reload, by SIGHUP and by editing the file, and the
//! `check rules` / `test rules` commands.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const RULES: &str = r#"groups:
- name: host
  interval: 1s
  rules:
  - record: instance:node_load1:max
    expr: max by (instance) (node_load1)
  - alert: HostSeen
    expr: node_load1 >= 0
    labels: {severity: info}
    annotations:
      summary: 'load on {{ $labels.instance }} is {{ printf "%.2f" $value }}'
  - alert: NeverFires
    expr: node_load1 < 0
    for: 5m
"#;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn rule_names(lk: &Lookout) -> Vec<String> {
    let (_, body) = lk.get("/api/v1/rules");
    json(&body)["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn rules_evaluate_and_reload_without_losing_the_running_set() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let rules = dir.path().join("rules/host.yml");
    std::fs::write(&rules, RULES).unwrap();
    let cfg = write_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\n  external_labels: {site: lab}\nrule_packs: []\nrule_files: [\"rules/*.yml\"]\n",
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);

    lk.wait_for("instance:node_load1:max", Duration::from_secs(20));
    let alerts = lk.wait_for(
        "ALERTS{alertname=\"HostSeen\", alertstate=\"firing\"}",
        Duration::from_secs(20),
    );
    assert_eq!(alerts[0]["metric"]["severity"], "info");

    let (code, body) = lk.get("/api/v1/alerts");
    assert_eq!(code, 200);
    let v = json(&body);
    let a = &v["data"]["alerts"][0];
    assert_eq!(a["labels"]["alertname"], "HostSeen", "{v}");
    assert_eq!(a["state"], "firing");
    let summary = a["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("load on ") && summary.contains('.'),
        "{summary}"
    );
    assert!(
        a["value"].as_str().unwrap().contains("e+") || a["value"].as_str().unwrap().contains("e-"),
        "{a}"
    );

    let (_, body) = lk.get("/api/v1/rules");
    let v = json(&body);
    let g = &v["data"]["groups"][0];
    assert_eq!(g["name"], "host");
    assert_eq!(g["interval"], 1.0);
    assert!(g["file"].as_str().unwrap().ends_with("rules/host.yml"));
    let r = g["rules"].as_array().unwrap();
    assert_eq!(r[0]["type"], "recording");
    assert_eq!(r[0]["health"], "ok", "{v}");
    assert_eq!(r[1]["type"], "alerting");
    assert_eq!(r[1]["state"], "firing");
    assert_eq!(r[2]["state"], "inactive");
    assert_eq!(r[2]["duration"], 300.0);
    let (_, body) = lk.get("/api/v1/rules?type=record");
    assert_eq!(
        json(&body)["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A broken file: POST /-/reload fails with the reason, the running rules stay, and
    // health says so.
    std::fs::write(
        &rules,
        "groups:\n- name: host\n  rules:\n  - record: x\n    expr: 'sum('\n",
    )
    .unwrap();
    let r = http().post(format!("{}/-/reload", lk.base)).send().unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert!(r.text().unwrap().contains("could not parse expression"));
    assert_eq!(
        rule_names(&lk),
        ["instance:node_load1:max", "HostSeen", "NeverFires"]
    );
    let check = lk.health_check("rules");
    assert_eq!(check["status"], "degraded", "{check}");

    // A good file: POST /-/reload takes it.
    std::fs::write(&rules, RULES.replace("NeverFires", "StillNever")).unwrap();
    let r = http().post(format!("{}/-/reload", lk.base)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        rule_names(&lk),
        ["instance:node_load1:max", "HostSeen", "StillNever"]
    );

    // SIGHUP reloads too.
    std::fs::write(&rules, RULES.replace("NeverFires", "ByHangup")).unwrap();
    let pid = rustix::process::Pid::from_raw(lk.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    wait_until("SIGHUP reload", Duration::from_secs(10), || {
        rule_names(&lk).iter().any(|n| n == "ByHangup")
    });

    // Editing the file is noticed on its own.
    std::fs::write(&rules, RULES.replace("NeverFires", "ByEditing")).unwrap();
    wait_until("reload on change", Duration::from_secs(15), || {
        rule_names(&lk).iter().any(|n| n == "ByEditing")
    });
    // The alert kept firing through every reload: its clock was not reset.
    let (_, body) = lk.get("/api/v1/alerts");
    assert_eq!(json(&body)["data"]["alerts"][0]["activeAt"], a["activeAt"]);

    assert!(lk.terminate().success());
}

#[test]
fn the_host_pack_runs_without_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 2s\n",
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    let (_, body) = lk.get("/api/v1/rules");
    let v = json(&body);
    let g = &v["data"]["groups"][0];
    assert_eq!(g["name"], "lookout-host", "{v}");
    assert_eq!(g["file"], "<builtin>/host.yml");
    let names: Vec<&str> = g["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"HostOutOfDiskSpace") && names.contains(&"TargetDown"),
        "{names:?}"
    );
    let r = &g["rules"][0];
    assert!(
        r["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with("docs/runbooks/host.md#targetdown")
    );
    // The packs' rules run against the host collector's series without errors.
    wait_until("the host pack evaluated", Duration::from_secs(20), || {
        let (_, body) = lk.get("/api/v1/rules");
        json(&body)["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["health"] == "ok")
    });
    let out = run(&[
        "check",
        "config",
        utf8(&write_config(dir.path(), "rule_packs: [mysql]\n")),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unknown pack \"mysql\" (known: host, postgres, redis, engine)")
    );
    assert!(lk.terminate().success());
}

#[test]
fn bad_rule_files_stop_start_up_and_fail_check_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yml"), "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations: {x: '{{ $nope }}'}\n").unwrap();
    let cfg = write_config(dir.path(), "rule_files: [bad.yml]\n");
    let out = run(&["check", "config", utf8(&cfg)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yml: group \"g\", rule 1, \"A\": annotation \"x\": template: __alert_A"),
        "{err}"
    );
    let out = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        utf8(&dir.path().join("data")),
        "--config",
        utf8(&cfg),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loading rule files"));
}

#[test]
fn check_rules_and_test_rules_follow_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.yml");
    std::fs::write(&rules, RULES).unwrap();
    let out = run(&["check", "rules", utf8(&rules)]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 3 rules found"));

    let test = dir.path().join("t.yml");
    std::fs::write(
        &test,
        r#"rule_files: [r.yml]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  - series: 'node_load1{instance="h"}'
    values: '0.5x10'
  alert_rule_test:
  - eval_time: 2m
    alertname: HostSeen
    exp_alerts:
    - exp_labels: {instance: h, severity: info}
      exp_annotations: {summary: 'load on h is 0.50'}
  promql_expr_test:
  - expr: instance:node_load1:max
    eval_time: 5m
    exp_samples:
    - labels: 'instance:node_load1:max{instance="h"}'
      value: 0.5
"#,
    )
    .unwrap();
    let out = run(&["test", "rules", utf8(&test)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::write(
        &test,
        std::fs::read_to_string(&test)
            .unwrap()
            .replace("0.50'", "0.51'"),
    )
    .unwrap();
    let out = run(&["test", "rules", utf8(&test)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("load on h is 0.50"));
}

/// Backtesting: history with a queue over its threshold twice (20 and 5 minutes),
/// imported into a data directory; `lookout rules backtest` reads it directly and
/// through a running Lookout, and the rules page's button backtests the loaded rule.
#[test]
fn backtest_reports_how_often_a_rule_would_have_fired() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Two hours ending an hour ago, a sample every 15 s.
    let base = now - 3 * 3600;
    let mut text = String::from("# TYPE queue_depth gauge\n");
    for i in 0..480 {
        let minute = i / 4;
        let high = (10..30).contains(&minute) || (60..65).contains(&minute);
        text.push_str(&format!(
            "queue_depth{{q=\"orders\"}} {} {}\n",
            if high { 500 } else { 3 },
            base + i * 15
        ));
    }
    text.push_str("# EOF\n");
    let om = dir.path().join("history.om");
    std::fs::write(&om, text).unwrap();
    let out = run(&["import", "openmetrics", utf8(&om), "--data", utf8(&data)]);
    assert!(out.status.success(), "{out:?}");
    let rules = dir.path().join("queues.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: queues\n  interval: 1m\n  rules:\n  - alert: QueueBacklog\n    expr: queue_depth > 100\n    for: 10m\n    labels: {severity: warning}\n  - alert: QueueBacklogNow\n    expr: queue_depth > 100\n",
    )
    .unwrap();
    let (from, to) = (base.to_string(), (base + 7200).to_string());
    let check = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let by = |a: &str| {
            v.as_array()
                .unwrap()
                .iter()
                .find(|r| r["alert"] == a)
                .unwrap()
                .clone()
        };
        assert_eq!(by("QueueBacklogNow")["firings"], 2, "{v}");
        assert_eq!(by("QueueBacklog")["firings"], 1, "{v}");
        assert_eq!(by("QueueBacklog")["pending_only"], 1, "{v}");
        assert_eq!(by("QueueBacklog")["firing_seconds"], 600.0, "{v}");
    };
    check(run(&[
        "rules",
        "backtest",
        utf8(&rules),
        "--data",
        utf8(&data),
        "--from",
        &from,
        "--to",
        &to,
        "--json",
    ]));
    // The text report.
    let out = run(&[
        "rules",
        "backtest",
        utf8(&rules),
        "--data",
        utf8(&data),
        "--from",
        &from,
        "--to",
        &to,
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("queues/QueueBacklogNow") && table.contains("FIRINGS"),
        "{table}"
    );
    let out = run(&[
        "rules",
        "backtest",
        utf8(&rules),
        "--data",
        utf8(&data),
        "--from",
        "yesterday",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid time"),
        "{out:?}"
    );

    // Through a running Lookout, which also loads the rules for its page.
    let cfg = write_config(
        dir.path(),
        "collectors:\n  host: { enabled: false }\n  process: { enabled: false }\nrule_packs: []\nrule_files: [queues.yml]\n",
    );
    let lk = Lookout::start(&data, &cfg);
    check(run(&[
        "rules",
        "backtest",
        utf8(&rules),
        "--url",
        &lk.base,
        "--from",
        &from,
        "--to",
        &to,
        "--json",
    ]));
    let (code, body) = lk.post(
        &format!("/api/v1/lookout/rules/backtest?from={from}&to={to}"),
        "application/yaml",
        "groups: [ { name: x, rules: [ { alert: A, expr: 'sum(' } ] } ]",
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = lk.post(
        &format!("/api/v1/lookout/rules/backtest?from={from}&to={to}&step=1ms"),
        "application/yaml",
        std::fs::read_to_string(&rules).unwrap(),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("at most 200000"), "{body}");

    common::browser::with_browser(&dir.path().join("profile"), |b| {
        let lk = &lk;
        async move {
            use fantoccini::Locator;
            b.goto(&format!("{}/rules", lk.base)).await.unwrap();
            common::browser::wait_text(&b, "tr[data-rule='QueueBacklogNow']", |t| !t.is_empty())
                .await;
            b.find(Locator::Css(
                "tr[data-rule='QueueBacklogNow'] button.backtest",
            ))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
            let text = common::browser::wait_text(
                &b,
                "tr[data-rule='QueueBacklogNow'] .backtest-result",
                |t| t.starts_with("would have fired"),
            )
            .await;
            assert!(text.starts_with("would have fired 2 time(s)"), "{text}");
            b
        }
    });
    assert!(lk.terminate().success());
}
