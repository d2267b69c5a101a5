//! The host actions against the real system: old files deleted from one directory (and
//! nothing else), an executable run without a shell with the alert on stdin (and killed
//! at its timeout), a webhook called with the alert; dry runs touch nothing; cooldowns
//! and hourly limits hold; configurations are checked by name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lookout_model::Labels;
use lookout_remediate::{Options, Record, Remediator, RuleConfig};
use lookout_testkit::WebhookReceiver;

fn rules(yaml: &str) -> Vec<RuleConfig> {
    yaml_serde::from_str(yaml).unwrap()
}

fn remediator(yaml: &str) -> Arc<Remediator> {
    Arc::new(
        Remediator::new(Options {
            rules: rules(yaml),
            ..Default::default()
        })
        .unwrap(),
    )
}

fn fire(r: &Arc<Remediator>, alertname: &str) {
    let labels = Labels::from_pairs([("alertname", alertname), ("severity", "critical")]);
    let mut ann = BTreeMap::new();
    ann.insert("summary".to_string(), "it is bad".to_string());
    r.on_firing(&[(labels, ann)], &tokio::runtime::Handle::current());
}

async fn records(r: &Remediator, n: usize) -> Vec<Record> {
    for _ in 0..200 {
        let v = r.records();
        if v.len() >= n {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} records: {:?}", r.records());
}

fn aged(path: &std::path::Path, age: Duration) {
    std::fs::write(path, b"data").unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_files_are_deleted_from_their_directory_only() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    aged(&logs.join("old-1.log"), Duration::from_secs(7200));
    aged(&logs.join("old-2.log"), Duration::from_secs(9000));
    aged(&logs.join("new.log"), Duration::from_secs(10));
    std::fs::create_dir(logs.join("sub")).unwrap();
    aged(&logs.join("sub/old-inside.log"), Duration::from_secs(9000));
    aged(&dir.path().join("outside.log"), Duration::from_secs(9000));
    std::os::unix::fs::symlink(dir.path().join("outside.log"), logs.join("link.log")).unwrap();
    let yaml = |dry: bool| {
        format!(
            "- name: clean-logs\n  matchers: [ 'alertname=\"DiskFull\"' ]\n  action: {{ delete_old_files: {{ directory: {}, older_than: 1h }} }}\n  dry_run: {dry}\n",
            logs.display()
        )
    };
    // Dry run: recorded, nothing deleted.
    let r = remediator(&yaml(true));
    fire(&r, "DiskFull");
    let rec = records(&r, 1).await;
    assert_eq!(rec[0].outcome, "dry_run", "{rec:?}");
    assert_eq!(rec[0].targets.len(), 2, "{rec:?}");
    assert!(rec[0].detail.starts_with("would delete 2 of 2"), "{rec:?}");
    assert!(logs.join("old-1.log").exists());
    // For real.
    let r = remediator(&yaml(false));
    fire(&r, "OtherAlert");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        r.records().is_empty(),
        "an alert the matchers miss runs nothing"
    );
    fire(&r, "DiskFull");
    let rec = records(&r, 1).await;
    assert_eq!(rec[0].outcome, "done", "{rec:?}");
    assert_eq!(rec[0].alert["alertname"], "DiskFull");
    assert!(!logs.join("old-1.log").exists() && !logs.join("old-2.log").exists());
    for kept in ["new.log", "sub/old-inside.log", "link.log"] {
        assert!(logs.join(kept).exists(), "{kept} kept");
    }
    assert!(dir.path().join("outside.log").exists());
    // The cooldown (5m by default) holds the second firing.
    fire(&r, "DiskFull");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(r.records().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executable_gets_the_alert_on_stdin_and_is_killed_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alert.json");
    let r = remediator(&format!(
        "- name: tell-script\n  matchers: [ 'severity=\"critical\"' ]\n  action: {{ run_executable: {{ path: /usr/bin/tee, args: [ {} ] }} }}\n  dry_run: false\n- name: slow-script\n  matchers: [ 'alertname=\"Slow\"' ]\n  action: {{ run_executable: {{ path: /bin/sleep, args: [ '30' ], timeout: 500ms }} }}\n  dry_run: false\n",
        out.display()
    ));
    fire(&r, "Slow");
    let rec = records(&r, 2).await;
    let tee = rec.iter().find(|x| x.rule == "tell-script").unwrap();
    assert_eq!(tee.outcome, "done", "{tee:?}");
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(written["labels"]["alertname"], "Slow");
    assert_eq!(written["annotations"]["summary"], "it is bad");
    assert_eq!(written["rule"], "tell-script");
    let slow = rec.iter().find(|x| x.rule == "slow-script").unwrap();
    assert_eq!(slow.outcome, "failed");
    assert!(slow.detail.contains("timed out after 0.5s"), "{slow:?}");
    assert!(slow.seconds < 5.0, "{slow:?}");
}

#[test]
fn a_webhook_gets_the_alert_and_the_hourly_limit_is_recorded_once() {
    // The receiver runs its own runtime: started outside the test's.
    let hook = WebhookReceiver::start(200, 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = hook.url.clone();
    rt.block_on(async move {
        let r = remediator(&format!(
            "- name: call-runbook\n  matchers: [ 'alertname=\"X\"' ]\n  action: {{ webhook: {{ url: \"{url}\" }} }}\n  dry_run: false\n  cooldown: 1ms\n  max_per_hour: 2\n"
        ));
        for _ in 0..5 {
            fire(&r, "X");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        records(&r, 3).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rec = r.records();
        assert_eq!(rec.len(), 3, "two runs and one refusal: {rec:?}");
        let outcomes: Vec<&str> = rec.iter().map(|x| x.outcome.as_str()).collect();
        assert_eq!(outcomes.iter().filter(|o| **o == "done").count(), 2, "{rec:?}");
        assert!(outcomes.contains(&"skipped"));
    });
    assert_eq!(hook.count(), 2);
    assert_eq!(hook.first()["labels"]["alertname"], "X");
    assert_eq!(hook.first()["dry_run"], false);
}

#[test]
fn the_issue_example_parses_and_bad_rules_are_named() {
    let example = rules(
        "- name: cancel-long-queries\n  matchers: [ 'alertname=\"PostgresLongRunningQuery\"' ]\n  action: { postgres_cancel_queries: { instance: main, running_longer_than: 30s } }\n  dry_run: false\n  cooldown: 5m\n  max_per_hour: 10\n",
    );
    assert_eq!(example[0].action.kind(), "postgres_cancel_queries");
    assert!(!example[0].dry_run);
    // Without a PostgreSQL collector named main, it is refused by name.
    let e = Remediator::new(Options {
        rules: example,
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("cancel-long-queries") && e.contains("\"main\""),
        "{e}"
    );
    for (yaml, want) in [
        (
            "- name: a\n  matchers: []\n  action: { webhook: { url: 'http://x' } }\n",
            "at least one",
        ),
        (
            "- name: a\n  matchers: [ 'x' ]\n  action: { webhook: { url: 'http://x' } }\n",
            "matchers",
        ),
        (
            "- name: a\n  matchers: [ 'a=b' ]\n  action: { webhook: { url: 'ftp://x' } }\n",
            "only http",
        ),
        (
            "- name: a\n  matchers: [ 'a=b' ]\n  action: { delete_old_files: { directory: tmp, older_than: 1h } }\n",
            "absolute",
        ),
        (
            "- name: a\n  matchers: [ 'a=b' ]\n  action: { delete_old_files: { directory: /, older_than: 1h } }\n",
            "absolute path below /",
        ),
        (
            "- name: a\n  matchers: [ 'a=b' ]\n  action: { run_executable: { path: sh } }\n",
            "must be absolute",
        ),
        (
            "- name: a\n  matchers: [ 'a=b' ]\n  action: { webhook: { url: 'http://x' } }\n  max_per_hour: 0\n",
            "max_per_hour",
        ),
        (
            "- name: a\n  matchers: [ 'a=b' ]\n  action: { webhook: { url: 'http://x' } }\n- name: a\n  matchers: [ 'a=b' ]\n  action: { webhook: { url: 'http://x' } }\n",
            "used twice",
        ),
    ] {
        let e = Remediator::new(Options {
            rules: rules(yaml),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains(want), "{yaml}: {e}");
    }
    for action in [
        "{ rm_rf: { path: / } }",
        "{ webhook: { url: 'http://x' }, run_executable: { path: /bin/true } }",
        "{}",
    ] {
        let e = yaml_serde::from_str::<Vec<RuleConfig>>(&format!(
            "- name: a\n  matchers: [ 'a=b' ]\n  action: {action}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("action") || e.contains("variant"),
            "{action}: {e}"
        );
    }
}
