//! The notification pipeline with a controllable clock and a real HTTP receiver:
//! grouping and timing, the webhook payload against a golden file, retries, inhibition,
//! silences, the notification log across a restart, acknowledgement and escalation.

use lookout_model::Labels;
use lookout_notify::dispatch::{Core, Options};
use lookout_notify::receivers::deliver;

use lookout_notify::silence::{Silence, SilenceMatcher};
use lookout_notify::{Alert, Config, Notification};
use serde_json::Value;
use support::Http;

mod support;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const S: i64 = 1000;

fn config(url: &str, extra: &str) -> Config {
    Config::parse(&format!(
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
    webhook_configs: [{{url: "{url}"}}]
  - name: pager
    webhook_configs: [{{url: "{url}", send_resolved: false}}]
  - name: senior
    webhook_configs: [{{url: "{url}"}}]
{extra}"#
    ))
    .unwrap()
}

fn alert(pairs: &[(&str, &str)], starts: i64, ends: i64) -> Alert {
    Alert {
        labels: Labels::from_pairs(pairs.iter().copied()),
        annotations: [(
            "summary".to_string(),
            format!(
                "{} is down",
                pairs
                    .iter()
                    .find(|p| p.0 == "instance")
                    .map_or("?", |p| p.1)
            ),
        )]
        .into(),
        starts_at: starts,
        ends_at: ends,
        generator_url: "http://lookout:9180/graph?g0.expr=up+%3D%3D+0&g0.tab=1".into(),
        updated_at: 0,
    }
}

fn send_all(core: &mut Core, ns: Vec<Notification>) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = lookout_notify::receivers::http_client();
    let n = ns.len();
    for x in ns {
        rt.block_on(deliver(&client, &x, "http://lookout.example:9180"))
            .unwrap();
        core.record(&x);
    }
    n
}

#[test]
fn groups_wait_then_flush_and_the_payload_matches_alertmanager() {
    let rx = Http::start(200, 0);
    let mut core = Core::new(config(&rx.url, ""), Options::default()).unwrap();
    core.put_alerts(
        vec![alert(
            &[("alertname", "Down"), ("job", "node"), ("instance", "b")],
            T0,
            T0 + 240 * S,
        )],
        T0,
    );
    core.put_alerts(
        vec![alert(
            &[("alertname", "Down"), ("job", "node"), ("instance", "a")],
            T0 + 5 * S,
            T0 + 240 * S,
        )],
        T0 + 5 * S,
    );
    assert!(
        core.tick(T0 + 29 * S).is_empty(),
        "group_wait holds the first notification"
    );
    let ns = core.tick(T0 + 30 * S);
    assert_eq!(ns.len(), 1);
    send_all(&mut core, ns);
    let got = rx.take();
    // The golden file is what Debian's prometheus-alertmanager 0.25 POSTs for the same two
    // alerts (its externalURL and receiver name replaced by ours).
    let golden: Value = serde_json::from_str(include_str!("golden/webhook_firing.json")).unwrap();
    assert_eq!(
        got[0],
        golden,
        "{}",
        serde_json::to_string_pretty(&got[0]).unwrap()
    );

    // Nothing new: no notification at the next group interval; one after repeat_interval.
    let keep = |core: &mut Core, t: i64| {
        core.put_alerts(
            vec![
                alert(
                    &[("alertname", "Down"), ("job", "node"), ("instance", "a")],
                    T0 + 5 * S,
                    t + 240 * S,
                ),
                alert(
                    &[("alertname", "Down"), ("job", "node"), ("instance", "b")],
                    T0,
                    t + 240 * S,
                ),
            ],
            t,
        )
    };
    keep(&mut core, T0 + 300 * S);
    assert!(core.tick(T0 + 330 * S).is_empty());
    keep(&mut core, T0 + 3600 * S);
    let ns = core.tick(T0 + 3630 * S);
    assert_eq!(ns.len(), 1, "repeat_interval elapsed");
    send_all(&mut core, ns);
    rx.take();

    // One resolves: sent at the next flush with send_resolved (the webhook default).
    core.put_alerts(
        vec![alert(
            &[("alertname", "Down"), ("job", "node"), ("instance", "a")],
            T0 + 5 * S,
            T0 + 3700 * S,
        )],
        T0 + 3700 * S,
    );
    core.put_alerts(
        vec![alert(
            &[("alertname", "Down"), ("job", "node"), ("instance", "b")],
            T0,
            T0 + 4140 * S,
        )],
        T0 + 3900 * S,
    );
    let ns = core.tick(T0 + 3930 * S);
    send_all(&mut core, ns);
    let got = rx.take();
    assert_eq!(got[0]["status"], "firing");
    let statuses: Vec<&str> = got[0]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["resolved", "firing"]);
}

#[test]
fn deliveries_are_retried_until_they_succeed() {
    let rx = Http::start(200, 2);
    let mut core = Core::new(config(&rx.url, ""), Options::default()).unwrap();
    core.put_alerts(
        vec![alert(&[("alertname", "X"), ("instance", "a")], T0, 0)],
        T0,
    );
    let ns = core.tick(T0 + 30 * S);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let attempts = rt
        .block_on(deliver(
            &lookout_notify::receivers::http_client(),
            &ns[0],
            "http://x",
        ))
        .unwrap();
    assert_eq!(attempts, 3);
    assert_eq!(rx.take().len(), 1);
}

#[test]
fn inhibition_and_silences_suppress() {
    let rx = Http::start(200, 0);
    let extra = "inhibit_rules:\n  - source_matchers: ['alertname=\"HostDown\"']\n    target_matchers: ['alertname=\"PostgresDown\"']\n    equal: [instance]\n";
    let mut core = Core::new(config(&rx.url, extra), Options::default()).unwrap();
    core.put_alerts(
        vec![
            alert(&[("alertname", "HostDown"), ("instance", "db1")], T0, 0),
            alert(&[("alertname", "PostgresDown"), ("instance", "db1")], T0, 0),
            alert(&[("alertname", "PostgresDown"), ("instance", "db2")], T0, 0),
        ],
        T0,
    );
    let ns = core.tick(T0 + 30 * S);
    send_all(&mut core, ns);
    let got = rx.take();
    let instances = |v: &Value| -> Vec<String> {
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                format!(
                    "{}/{}",
                    a["labels"]["alertname"].as_str().unwrap(),
                    a["labels"]["instance"].as_str().unwrap()
                )
            })
            .collect()
    };
    let mut all: Vec<String> = got.iter().flat_map(instances).collect();
    all.sort();
    assert_eq!(
        all,
        ["HostDown/db1", "PostgresDown/db2"],
        "db1's PostgresDown is inhibited by its HostDown"
    );

    // A silence on db2 mutes it; a new alert in the silenced group sends nothing.
    let s = Silence {
        id: String::new(),
        matchers: vec![SilenceMatcher {
            name: "instance".into(),
            value: "db2|db3".into(),
            is_regex: true,
            is_equal: true,
        }],
        starts_at: T0,
        ends_at: T0 + 7200 * S,
        updated_at: 0,
        created_by: "ops".into(),
        comment: "maintenance".into(),
        expire_on_resolve: false,
        silenced: Vec::new(),
    };
    core.silences.set(s, T0 + 40 * S).unwrap();
    core.put_alerts(
        vec![alert(
            &[("alertname", "PostgresDown"), ("instance", "db3")],
            T0 + 50 * S,
            0,
        )],
        T0 + 50 * S,
    );
    // Prometheus keeps re-sending what fires.
    core.put_alerts(
        [
            "HostDown/db1",
            "PostgresDown/db1",
            "PostgresDown/db2",
            "PostgresDown/db3",
        ]
        .iter()
        .map(|x| {
            let (n, i) = x.split_once('/').unwrap();
            alert(&[("alertname", n), ("instance", i)], T0, 0)
        })
        .collect(),
        T0 + 300 * S,
    );
    let ns = core.tick(T0 + 330 * S);
    assert!(ns.is_empty(), "db3 is silenced: {ns:?}");
    let a = alert(&[("alertname", "PostgresDown"), ("instance", "db3")], T0, 0);
    assert_eq!(core.suppression(&a, T0 + 330 * S).silenced_by.len(), 1);
}

#[test]
fn the_notification_log_prevents_duplicates_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Http::start(200, 0);
    let opts = Options {
        data_dir: Some(dir.path().to_path_buf()),
        ..Options::default()
    };
    let a = || alert(&[("alertname", "X"), ("instance", "a")], T0, T0 + 600 * S);
    {
        let mut core = Core::new(config(&rx.url, ""), opts.clone()).unwrap();
        core.put_alerts(vec![a()], T0);
        let ns = core.tick(T0 + 30 * S);
        assert_eq!(send_all(&mut core, ns), 1);
    }
    // Restarted: the alert arrives again (rules re-send what fires); the group waits and
    // flushes, and the log says the receiver already knows.
    let mut core = Core::new(config(&rx.url, ""), opts.clone()).unwrap();
    core.put_alerts(vec![a()], T0 + 60 * S);
    assert!(core.tick(T0 + 90 * S).is_empty());
    assert_eq!(rx.take().len(), 1);
    // A group that was waiting when the process stopped is sent after the restart.
    core.put_alerts(
        vec![alert(
            &[("alertname", "Y"), ("instance", "a")],
            T0 + 100 * S,
            0,
        )],
        T0 + 100 * S,
    );
    drop(core);
    let mut core = Core::new(config(&rx.url, ""), opts).unwrap();
    core.put_alerts(
        vec![alert(
            &[("alertname", "Y"), ("instance", "a")],
            T0 + 100 * S,
            0,
        )],
        T0 + 160 * S,
    );
    let ns = core.tick(T0 + 160 * S);
    assert_eq!(
        ns.len(),
        1,
        "started longer than group_wait ago: flushed at once"
    );
    assert_eq!(ns[0].alerts[0].labels.get("alertname"), Some("Y"));
}

fn escalating(rx: &Http, dir: &std::path::Path) -> Core {
    let opts = Options {
        data_dir: Some(dir.to_path_buf()),
        escalations: vec![support::db_oncall_policy()],
        ..Options::default()
    };
    Core::new(config(&rx.url, ""), opts).unwrap()
}

fn receivers(ns: &[Notification]) -> Vec<&str> {
    ns.iter()
        .filter(|n| n.group_key.starts_with("escalation/"))
        .map(|n| n.receiver.as_str())
        .collect()
}

#[test]
fn unacknowledged_alerts_escalate_and_acknowledged_ones_do_not() {
    let rx = Http::start(200, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut core = escalating(&rx, dir.path());
    let page = alert(
        &[
            ("alertname", "PostgresDown"),
            ("instance", "db1"),
            ("severity", "page"),
        ],
        T0,
        0,
    );
    let fp = page.fingerprint();
    core.put_alerts(vec![page.clone()], T0);
    assert_eq!(receivers(&core.tick(T0)), ["pager"], "level 1 at once");
    core.put_alerts(vec![page.clone()], T0 + 300 * S);
    assert!(receivers(&core.tick(T0 + 599 * S)).is_empty());
    core.put_alerts(vec![page.clone()], T0 + 600 * S);
    let ns = core.tick(T0 + 600 * S);
    assert_eq!(
        receivers(&ns),
        ["senior"],
        "not acknowledged within 10m: level 2"
    );
    assert_eq!(core.escalation_levels(fp), [("db-oncall".to_string(), 2)]);
    send_all(&mut core, ns);
    let got = rx.take();
    assert!(got.iter().any(|b| {
        b["receiver"] == "senior"
            && b["groupKey"]
                .as_str()
                .unwrap()
                .starts_with("escalation/db-oncall:")
    }));
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let rec: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(rec["action"], "escalate");
    assert_eq!(rec["level"], 2);
    assert_eq!(rec["receivers"], serde_json::json!(["senior"]));

    // A second alert, acknowledged within level 1's timeout, stays at level 1 and stops
    // repeating.
    let rx = Http::start(200, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut core = escalating(&rx, dir.path());
    core.put_alerts(vec![page.clone()], T0);
    assert_eq!(receivers(&core.tick(T0)), ["pager"]);
    assert!(core.ack(fp, "alice", "looking", None, T0 + 120 * S).is_ok());
    for t in [600, 1200, 3600, 7200] {
        core.put_alerts(vec![page.clone()], T0 + t * S);
        let ns = core.tick(T0 + t * S);
        assert!(
            receivers(&ns).is_empty(),
            "escalated at {t}s despite the ack"
        );
        let routed: Vec<_> = ns
            .iter()
            .filter(|n| !n.group_key.starts_with("escalation/"))
            .collect();
        if t > 30 {
            assert!(
                routed.is_empty() || t < 3600,
                "acknowledged alert repeated at {t}s"
            );
        }
        send_all(&mut core, ns);
    }
    assert_eq!(core.escalation_levels(fp), [("db-oncall".to_string(), 1)]);
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let rec: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            rec["action"].as_str(),
            rec["who"].as_str(),
            rec["comment"].as_str()
        ),
        (Some("ack"), Some("alice"), Some("looking"))
    );
    // The ack ends with the alert.
    core.put_alerts(
        vec![alert(
            &[
                ("alertname", "PostgresDown"),
                ("instance", "db1"),
                ("severity", "page"),
            ],
            T0,
            T0 + 7300 * S,
        )],
        T0 + 7300 * S,
    );
    core.tick(T0 + 7400 * S);
    assert!(core.acked(fp, T0 + 7400 * S).is_none());
    assert!(
        core.ack(fp, "bob", "", None, T0 + 7400 * S).is_err(),
        "resolved alerts cannot be acknowledged"
    );
}

#[test]
fn an_expired_ack_lets_the_alert_repeat() {
    let rx = Http::start(200, 0);
    let mut core = Core::new(config(&rx.url, ""), Options::default()).unwrap();
    let a = alert(&[("alertname", "X"), ("instance", "a")], T0, 0);
    let fp = a.fingerprint();
    core.put_alerts(vec![a.clone()], T0);
    let ns = core.tick(T0 + 30 * S);
    send_all(&mut core, ns);
    core.ack(fp, "alice", "", Some(T0 + 5400 * S), T0 + 60 * S)
        .unwrap();
    core.put_alerts(vec![a.clone()], T0 + 3630 * S);
    assert!(
        core.tick(T0 + 3630 * S).is_empty(),
        "acknowledged: no repeat after 1h"
    );
    core.put_alerts(vec![a.clone()], T0 + 5430 * S);
    assert_eq!(
        core.tick(T0 + 5430 * S).len(),
        1,
        "the ack expired: repeats again"
    );
}

#[test]
fn mute_and_active_time_intervals_hold_notifications() {
    let rx = Http::start(200, 0);
    let cfg = Config::parse(&format!(
        r#"
route:
  receiver: team
  group_by: [alertname]
  routes:
    - matchers: ['team="night"']
      receiver: team
      mute_time_intervals: [nights]
    - matchers: ['team="office"']
      receiver: team
      active_time_intervals: [office]
receivers:
  - name: team
    webhook_configs: [{{url: "{}"}}]
time_intervals:
  - name: nights
    time_intervals: [{{times: [{{start_time: "00:00", end_time: "06:00"}}]}}]
  - name: office
    time_intervals: [{{times: [{{start_time: "09:00", end_time: "17:00"}}], weekdays: ["monday:friday"]}}]
"#,
        rx.url
    ))
    .unwrap();
    let mut core = Core::new(cfg, Options::default()).unwrap();
    // T0 is Thursday 2026-01-01 00:00 UTC: night, outside office hours.
    let night = alert(&[("alertname", "N"), ("team", "night")], T0, 0);
    let office = alert(&[("alertname", "O"), ("team", "office")], T0, 0);
    core.put_alerts(vec![night.clone(), office.clone()], T0);
    assert!(core.tick(T0 + 30 * S).is_empty(), "both muted at midnight");
    // 10:00: neither muted any more.
    let ten = T0 + 10 * 3600 * S;
    core.put_alerts(vec![night, office], ten);
    let ns = core.tick(ten);
    let mut names: Vec<&str> = ns
        .iter()
        .map(|n| n.alerts[0].labels.get("alertname").unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["N", "O"]);
}
