//! The manager over real files: reloads, restart with saved state, `for` and
//! `keep_firing_for` clocks, all with time passed in (no sleeps).

use std::sync::{Arc, Mutex};

use lookout_model::{Labels, Matcher};
use lookout_promql::Engine;
use lookout_rules::manager::{AlertSink, Manager, ManagerOptions};
use lookout_rules::{Alert, AlertState, EvalContext};
use lookout_storage::{Appendable, MemStorage, Queryable, SelectHints};

const MIN: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    db: Arc<MemStorage>,
}

impl Fixture {
    fn new(rules: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        Self {
            dir,
            db: Arc::new(MemStorage::new()),
        }
    }

    /// `name{job="x"}` = `v` every minute over [from, to].
    fn series(&self, name: &str, v: f64, from: i64, to: i64) {
        let mut app = self.db.appender();
        let l = Labels::from_pairs([("__name__", name), ("job", "x")]);
        let mut t = from;
        while t <= to {
            app.append(&l, t, v).unwrap();
            t += MIN;
        }
        app.commit().unwrap();
    }

    fn manager(&self, sink: Option<Arc<dyn AlertSink>>) -> Manager {
        let ctx = EvalContext {
            engine: Engine::default(),
            db: self.db.clone(),
            external_labels: Default::default(),
            external_url: "http://lookout.example".into(),
        };
        let m = Manager::new(
            ManagerOptions {
                files: vec!["*.yml".into()],
                base_dir: Some(self.dir.path().to_path_buf()),
                state_file: Some(self.dir.path().join("alerts.state")),
                watch_interval: None,
                ..ManagerOptions::default()
            },
            ctx,
            self.db.clone(),
            sink,
        );
        m.reload(T0).unwrap();
        m
    }

    fn value(&self, selector: &str, t: i64) -> Option<f64> {
        let v = Engine::default()
            .instant(self.db.as_ref(), selector, t)
            .unwrap();
        match v {
            lookout_promql::Value::Vector(v) => v.first().map(|s| s.v),
            _ => None,
        }
    }
}

fn state(m: &Manager, name: &str) -> Option<AlertState> {
    m.alerts()
        .into_iter()
        .find(|a| a.labels.get("alertname") == Some(name))
        .map(|a| a.state)
}

const DOWN: &str = "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up == 0\n    for: 15m\n    labels: {severity: page}\n    annotations: {summary: '{{ $labels.job }} is down ({{ $value }})'}\n";

#[test]
fn restart_while_pending_keeps_the_for_clock() {
    let f = Fixture::new(DOWN);
    f.series("up", 0.0, T0 - 10 * MIN, T0 + 40 * MIN);
    let m = f.manager(None);
    for i in 0..=4 {
        m.eval_all(T0 + i * MIN);
    }
    assert_eq!(state(&m, "Down"), Some(AlertState::Pending));
    drop(m);
    // Down for one minute; the new process restores the alert: four minutes were spent
    // pending, the minute of downtime does not count.
    let m = f.manager(None);
    m.eval_all(T0 + 5 * MIN);
    let a = m.alerts();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].active_at, T0 + MIN);
    assert_eq!(a[0].annotations["summary"], "x is down (0)");
    for i in 6..=15 {
        m.eval_all(T0 + i * MIN);
        assert_eq!(state(&m, "Down"), Some(AlertState::Pending), "minute {i}");
    }
    m.eval_all(T0 + 16 * MIN);
    assert_eq!(state(&m, "Down"), Some(AlertState::Firing));
    assert_eq!(
        f.value("ALERTS_FOR_STATE", T0 + 16 * MIN),
        Some(((T0 + MIN) / 1000) as f64)
    );
    assert_eq!(
        f.value("ALERTS{alertstate=\"firing\"}", T0 + 16 * MIN),
        Some(1.0)
    );
}

#[test]
fn the_state_file_is_written_when_alerts_change_not_at_every_evaluation() {
    let f = Fixture::new(DOWN);
    let file = f.dir.path().join("alerts.state");
    f.series("up", 1.0, T0 - 10 * MIN, T0 + 2 * MIN);
    f.series("up", 0.0, T0 + 3 * MIN, T0 + 10 * MIN);
    let m = f.manager(None);
    // No alert, none before: nothing to save, no write (and no fsync).
    for i in 0..=2 {
        m.eval_all(T0 + i * MIN);
    }
    assert!(!file.exists(), "a state without alerts was written");
    // An alert appears: written at once.
    m.eval_all(T0 + 3 * MIN);
    assert_eq!(state(&m, "Down"), Some(AlertState::Pending));
    let first = std::fs::read_to_string(&file).expect("written when the alert appeared");
    assert!(first.contains("Down"), "{first}");
    // Still pending: only the evaluation time changed, so the file waits for its refresh.
    std::fs::remove_file(&file).unwrap();
    m.eval_all(T0 + 4 * MIN);
    assert!(!file.exists(), "rewritten although no alert changed state");
    // Stopping writes what is newer than the file.
    drop(m);
    let last = std::fs::read_to_string(&file).expect("written on stop");
    assert!(
        last.contains(&format!("\"last_evaluation\":{}", T0 + 4 * MIN)),
        "{last}"
    );
}

#[test]
fn restart_after_a_long_outage_starts_afresh() {
    let f = Fixture::new(DOWN);
    f.series("up", 0.0, T0 - 10 * MIN, T0 + 200 * MIN);
    let m = f.manager(None);
    m.eval_all(T0);
    drop(m);
    let m = f.manager(None);
    m.eval_all(T0 + 120 * MIN);
    assert_eq!(m.alerts()[0].active_at, T0 + 120 * MIN);
}

#[test]
fn keep_firing_for_survives_a_restart() {
    let rules = "groups:\n- name: g\n  rules:\n  - alert: Flap\n    expr: up == 0\n    keep_firing_for: 10m\n";
    let f = Fixture::new(rules);
    f.series("up", 0.0, T0, T0 + 2 * MIN);
    f.series("up", 1.0, T0 + 3 * MIN, T0 + 30 * MIN);
    let m = f.manager(None);
    for i in 0..=4 {
        m.eval_all(T0 + i * MIN);
    }
    // up is 1 from minute 3: kept firing since then.
    assert_eq!(state(&m, "Flap"), Some(AlertState::Firing));
    drop(m);
    let m = f.manager(None);
    m.eval_all(T0 + 6 * MIN);
    assert_eq!(state(&m, "Flap"), Some(AlertState::Firing));
    m.eval_all(T0 + 12 * MIN);
    assert_eq!(
        state(&m, "Flap"),
        Some(AlertState::Firing),
        "kept firing until minute 13"
    );
    m.eval_all(T0 + 13 * MIN);
    assert_eq!(state(&m, "Flap"), Some(AlertState::Inactive));
}

#[test]
fn a_bad_reload_keeps_the_running_rules_and_a_good_one_keeps_alert_state() {
    let f = Fixture::new(DOWN);
    f.series("up", 0.0, T0, T0 + 30 * MIN);
    let m = f.manager(None);
    m.eval_all(T0);
    std::fs::write(
        f.dir.path().join("rules.yml"),
        "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: 'up =='\n",
    )
    .unwrap();
    assert!(m.files_changed());
    let errs = m.reload(T0 + MIN).unwrap_err();
    assert!(
        errs[0].contains("rules.yml: group \"g\", rule 1, \"Down\": could not parse expression"),
        "{errs:?}"
    );
    let st = m.reload_status();
    assert!(!st.success);
    assert_eq!(m.groups().len(), 1, "the previous rules keep running");
    m.eval_all(T0 + MIN);
    assert_eq!(m.alerts()[0].active_at, T0);
    // A good change elsewhere in the file: the Down alert keeps its clock.
    std::fs::write(
        f.dir.path().join("rules.yml"),
        format!("{DOWN}  - record: r\n    expr: sum(up)\n"),
    )
    .unwrap();
    m.reload(T0 + 2 * MIN).unwrap();
    assert!(m.reload_status().success);
    m.eval_all(T0 + 2 * MIN);
    assert_eq!(m.alerts()[0].active_at, T0);
    assert_eq!(f.value("r", T0 + 2 * MIN), Some(0.0));
}

#[derive(Default)]
struct Collect(Mutex<Vec<(i64, Vec<Alert>)>>);

struct Tagged(Arc<Collect>, Arc<Mutex<i64>>);

impl AlertSink for Tagged {
    fn send(&self, alerts: Vec<(Alert, String)>) {
        let t = *self.1.lock().unwrap();
        assert!(alerts.iter().all(|(_, e)| e == "up == 0"));
        self.0
            .0
            .lock()
            .unwrap()
            .push((t, alerts.into_iter().map(|(a, _)| a).collect()));
    }
}

#[test]
fn firing_alerts_are_resent_every_resend_delay_and_resolutions_once_more() {
    let rules = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n";
    let f = Fixture::new(rules);
    f.series("up", 0.0, T0, T0 + 2 * MIN);
    f.series("up", 1.0, T0 + 3 * MIN, T0 + 30 * MIN);
    let got = Arc::new(Collect::default());
    let clock = Arc::new(Mutex::new(0));
    let m = f.manager(Some(Arc::new(Tagged(got.clone(), clock.clone()))));
    for s in 0..=8 {
        let t = T0 + s * 30_000;
        *clock.lock().unwrap() = t;
        m.eval_all(t);
    }
    let sent = got.0.lock().unwrap();
    let times: Vec<i64> = sent.iter().map(|(t, _)| (t - T0) / 1000).collect();
    // Firing at 0 s, re-sent at 60 s and 120 s; resolved at 180 s and sent at once.
    assert_eq!(times, [0, 60, 120, 180, 240]);
    assert!(sent[3].1[0].resolved_at.is_some());
    assert_eq!(sent[0].1[0].valid_until, T0 + 4 * 60_000);
    // Series the rules stop producing are marked stale.
    assert_eq!(f.value("ALERTS", T0 + 4 * MIN), None);
    let q = f.db.querier(T0, T0 + 10 * MIN).unwrap();
    let s = q
        .select(
            &SelectHints::default(),
            &[Matcher::equal("__name__", "ALERTS")],
        )
        .unwrap();
    assert!(lookout_model::is_stale_nan(s[0].samples.last().unwrap().v));
}
