//! Issue 12: nothing an operator did or a receiver missed is lost to a restart, an
//! outage or a full store.

use lookout_model::Labels;
use lookout_notify::dispatch::{Core, MAX_ALERTS, Options};
use lookout_notify::silence::{MAX_SILENCES, Silence, SilenceMatcher};
use lookout_notify::{Alert, Config, Notification};

mod support;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const S: i64 = 1000;

fn config() -> Config {
    Config::parse(
        r#"
route:
  receiver: team
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
  routes:
    - matchers: ['severity="page"']
      receiver: pager
receivers:
  - name: team
    webhook_configs: [{url: "http://127.0.0.1:9/hook"}]
  - name: pager
    webhook_configs: [{url: "http://127.0.0.1:9/hook", send_resolved: false}]
  - name: senior
    webhook_configs: [{url: "http://127.0.0.1:9/hook"}]
"#,
    )
    .unwrap()
}

fn alert(name: &str, severity: &str, ends: i64) -> Alert {
    Alert {
        labels: Labels::from_pairs([
            ("alertname", name),
            ("instance", "db1"),
            ("severity", severity),
        ]),
        annotations: Default::default(),
        starts_at: T0,
        ends_at: ends,
        generator_url: String::new(),
        updated_at: 0,
    }
}

fn escalating(dir: &std::path::Path) -> Core {
    let opts = Options {
        data_dir: Some(dir.to_path_buf()),
        escalations: vec![support::db_oncall_policy()],
        ..Options::default()
    };
    Core::new(config(), opts).unwrap()
}

/// An hour's silence from T0 on `name="value"`.
fn silence_on(name: &str, value: &str) -> Silence {
    Silence {
        id: String::new(),
        matchers: vec![SilenceMatcher {
            name: name.into(),
            value: value.into(),
            is_regex: false,
            is_equal: true,
        }],
        starts_at: T0,
        ends_at: T0 + 3_600_000,
        updated_at: 0,
        created_by: "test".into(),
        comment: String::new(),
        expire_on_resolve: false,
        silenced: Vec::new(),
    }
}

fn pages(ns: &[Notification]) -> Vec<&Notification> {
    ns.iter()
        .filter(|n| n.group_key.starts_with("escalation/"))
        .collect()
}

/// Item 5: resolved alerts were dropped from their group whether or not the resolved
/// notification was delivered; a PagerDuty incident would stay open forever.
#[test]
fn issue_12_a_resolved_notification_is_kept_until_delivered() {
    let mut core = Core::new(config(), Options::default()).unwrap();
    core.put_alerts(vec![alert("Down", "warning", 0)], T0);
    let ns = core.tick(T0 + 30 * S);
    assert_eq!(ns.len(), 1);
    core.record(&ns[0]);
    // It resolves; the receiver is down when the resolved notification goes out.
    core.put_alerts(vec![alert("Down", "warning", T0 + 60 * S)], T0 + 60 * S);
    let ns = core.tick(T0 + 330 * S);
    assert_eq!(ns.len(), 1);
    assert!(ns[0].alerts[0].resolved_at(T0 + 330 * S));
    core.failed(&ns[0]);
    // The next flush sends it again ...
    let ns = core.tick(T0 + 630 * S);
    assert_eq!(ns.len(), 1, "the resolved notification was lost");
    assert!(ns[0].alerts[0].resolved_at(T0 + 630 * S));
    assert_eq!(core.alerts().len(), 1, "kept until delivered");
    // ... and once delivered, the alert is gone and nothing more is sent.
    core.record(&ns[0]);
    assert!(core.tick(T0 + 930 * S).is_empty());
    assert!(core.alerts().is_empty());
}

/// Item 6: acknowledgements and escalation levels lived only in memory; after a restart an
/// acknowledged alert paged again at once and escalation started over.
#[test]
fn issue_12_acks_and_escalation_levels_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let page = alert("PostgresDown", "page", 0);
    let fp = page.fingerprint();
    {
        let mut core = escalating(dir.path());
        core.put_alerts(vec![page.clone()], T0);
        for n in core.tick(T0) {
            core.record(&n);
        }
        core.put_alerts(vec![page.clone()], T0 + 600 * S);
        let ns = core.tick(T0 + 600 * S);
        assert_eq!(pages(&ns).len(), 1, "level 2");
        for n in &ns {
            core.record(n);
        }
        core.ack(fp, "alice", "on it", None, T0 + 700 * S).unwrap();
    }
    // Restarted: the alert comes back from the rules a little later.
    let mut core = escalating(dir.path());
    assert!(core.tick(T0 + 800 * S).is_empty());
    core.put_alerts(vec![page.clone()], T0 + 810 * S);
    let ns = core.tick(T0 + 810 * S);
    assert!(pages(&ns).is_empty(), "acknowledged: no page after restart");
    assert_eq!(core.escalation_levels(fp), [("db-oncall".to_string(), 2)]);
    assert_eq!(core.acked(fp, T0 + 810 * S).unwrap().who, "alice");
    // Unacknowledged state survives too: withdraw the ack, restart, no new level-1 page.
    core.unack(fp, "alice", T0 + 820 * S).unwrap();
    drop(core);
    let mut core = escalating(dir.path());
    core.put_alerts(vec![page.clone()], T0 + 830 * S);
    let ns = core.tick(T0 + 830 * S);
    assert!(
        pages(&ns).is_empty(),
        "level 2 was delivered before the restart"
    );
}

/// Item 7: escalation pages were never retried past their 60 s of delivery attempts.
#[test]
fn issue_12_escalation_pages_are_retried_until_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = escalating(dir.path());
    let page = alert("PostgresDown", "page", 0);
    core.put_alerts(vec![page.clone()], T0);
    let ns = core.tick(T0);
    let p = pages(&ns);
    assert_eq!(p.len(), 1);
    // In flight: not sent twice.
    assert!(pages(&core.tick(T0 + S)).is_empty());
    core.failed(p[0]);
    for t in [61, 90, 150] {
        core.put_alerts(vec![page.clone()], T0 + t * S);
        let ns = core.tick(T0 + t * S);
        let p = pages(&ns);
        assert_eq!(p.len(), 1, "page retried at {t}s");
        core.failed(p[0]);
    }
    let ns = core.tick(T0 + 200 * S);
    core.record(pages(&ns)[0]);
    assert!(pages(&core.tick(T0 + 201 * S)).is_empty(), "delivered once");
}

/// Item 14: no cap on stored alerts or silences.
#[test]
fn issue_12_alerts_and_silences_are_capped_with_clear_errors() {
    let mut core = Core::new(config(), Options::default()).unwrap();
    let many: Vec<Alert> = (0..MAX_ALERTS + 10)
        .map(|i| {
            let mut a = alert("Many", "warning", 0);
            a.labels = Labels::from_pairs([("alertname", "Many"), ("i", &*i.to_string())]);
            a
        })
        .collect();
    assert_eq!(core.put_alerts(many, T0), 10);
    assert_eq!(core.alerts().len(), MAX_ALERTS);
    // Updates of known alerts are still taken.
    assert_eq!(core.put_alerts(vec![core.alerts()[0].clone()], T0 + S), 0);

    let silence = |i: usize| silence_on("i", &i.to_string());
    for i in 0..MAX_SILENCES {
        core.silences.set(silence(i), T0).unwrap();
    }
    let e = core.silences.set(silence(0), T0).unwrap_err().to_string();
    assert!(e.contains("too many silences"), "{e}");
    let mut big = silence(1);
    big.comment = "x".repeat(100_000);
    let mut core = Core::new(config(), Options::default()).unwrap();
    let e = core.silences.set(big, T0).unwrap_err().to_string();
    assert!(e.contains("more than the limit"), "{e}");
}

/// Item 12: a failed save was logged and answered as if it had worked.
#[test]
fn issue_12_a_failed_save_is_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("notifier");
    std::fs::create_dir_all(&data).unwrap();
    let mut core = escalating(&data);
    let page = alert("PostgresDown", "page", 0);
    let fp = page.fingerprint();
    core.put_alerts(vec![page], T0);
    // The state directory goes away (a disk unmounted, say): saves fail.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    let e = core.ack(fp, "alice", "", None, T0 + S).unwrap_err();
    assert!(matches!(e, lookout_notify::Error::Save { .. }), "{e}");
    assert!(e.to_string().starts_with("saving "), "{e}");
    assert!(core.acked(fp, T0 + S).is_none());
    let s = silence_on("instance", "db1");
    let e = core.silences.set(s, T0).unwrap_err();
    assert!(matches!(e, lookout_notify::Error::Save { .. }), "{e}");
    assert!(e.to_string().starts_with("saving "), "{e}");
    assert!(core.silences.list().is_empty());
}

/// A damaged state file is moved aside; the notifier starts without it.
#[test]
fn issue_12_a_damaged_state_file_does_not_stop_the_notifier() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["nflog.json", "silences.json", "oncall.json"] {
        std::fs::write(dir.path().join(f), b"{\"truncated").unwrap();
    }
    let core = escalating(dir.path());
    assert_eq!(core.damaged_state().len(), 3, "{:?}", core.damaged_state());
    for f in ["nflog.damaged", "silences.damaged", "oncall.damaged"] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
}
