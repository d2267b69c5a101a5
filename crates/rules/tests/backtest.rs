//! Backtesting over stored history: a queue whose depth crosses a threshold twice, once
//! for 20 minutes and once for 5. Without `for` the rule fires twice; with `for: 10m` it
//! fires once, for 10 minutes, and the short spike stays pending.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lookout_model::Labels;
use lookout_promql::{Engine, EngineOptions};
use lookout_rules::EvalContext;
use lookout_rules::backtest::{BacktestOptions, groups_from_text, run};
use lookout_storage::{Appendable, MemStorage};

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

const RULES: &str = r#"groups:
- name: queues
  interval: 1m
  rules:
  - alert: QueueBacklogNow
    expr: queue_depth > 100
  - alert: QueueBacklog
    expr: queue_depth > 100
    for: 10m
  - record: queue:depth:max
    expr: max(queue_depth)
"#;

fn history() -> Arc<MemStorage> {
    let db = Arc::new(MemStorage::new());
    let l = Labels::from_pairs([("__name__", "queue_depth"), ("q", "orders")]);
    let mut a = db.appender();
    let mut t = T0;
    while t <= T0 + 120 * MIN {
        let m = (t - T0) / MIN;
        let high = (10..30).contains(&m) || (60..65).contains(&m);
        a.append(&l, t, if high { 500.0 } else { 3.0 }).unwrap();
        t += 15_000;
    }
    a.commit().unwrap();
    db
}

fn ctx(db: Arc<MemStorage>) -> EvalContext {
    EvalContext {
        engine: Engine::new(EngineOptions::default()),
        db,
        external_labels: Default::default(),
        external_url: String::new(),
    }
}

#[test]
fn a_backtest_counts_firings_and_their_time() {
    let groups = groups_from_text(RULES, Path::new("q.yml"), Duration::from_secs(60)).unwrap();
    let o = BacktestOptions {
        from: T0,
        to: T0 + 120 * MIN,
        step: None,
    };
    let r = run(groups, &ctx(history()), &o, None).unwrap();
    assert_eq!(r.len(), 2, "alerting rules only: {r:#?}");
    let now = &r[0];
    assert_eq!(now.alert, "QueueBacklogNow");
    assert_eq!(now.firings, 2, "{now:#?}");
    assert_eq!(now.series, 1);
    assert_eq!(now.episodes.len(), 2);
    assert_eq!(now.episodes[0].start, T0 + 10 * MIN);
    assert_eq!(now.episodes[0].end, T0 + 30 * MIN);
    assert_eq!(now.episodes[1].end - now.episodes[1].start, 5 * MIN);
    assert_eq!(now.firing_seconds, 25.0 * 60.0);
    assert_eq!(now.longest_firing_seconds, 20.0 * 60.0);
    assert!((now.firing_share - 25.0 / 120.0).abs() < 1e-9, "{now:#?}");
    assert_eq!(now.episodes[0].labels["q"], "orders");
    let held = &r[1];
    assert_eq!(held.alert, "QueueBacklog");
    assert_eq!(held.firings, 1, "{held:#?}");
    assert_eq!(held.episodes[0].start, T0 + 20 * MIN);
    assert_eq!(held.firing_seconds, 10.0 * 60.0);
    assert_eq!(held.pending_only, 1, "the 5-minute spike never fired");
    assert_eq!(held.errors, 0);
}

#[test]
fn an_alert_still_firing_at_the_end_is_closed_there_and_limits_hold() {
    let groups = groups_from_text(RULES, Path::new("q.yml"), Duration::from_secs(60)).unwrap();
    let o = BacktestOptions {
        from: T0,
        to: T0 + 20 * MIN,
        step: Some(Duration::from_secs(30)),
    };
    let r = run(groups, &ctx(history()), &o, None).unwrap();
    assert_eq!(r[0].firings, 1);
    assert_eq!(r[0].episodes[0].end, T0 + 20 * MIN);
    assert_eq!(r[0].firing_seconds, 10.0 * 60.0);
    // Too many steps, a reversed range, a bad file: refused by name.
    let groups = groups_from_text(RULES, Path::new("q.yml"), Duration::from_secs(60)).unwrap();
    let huge = BacktestOptions {
        from: T0,
        to: T0 + 400 * 24 * 60 * MIN,
        step: Some(Duration::from_secs(1)),
    };
    let e = run(groups, &ctx(history()), &huge, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 200000"), "{e}");
    let groups = groups_from_text(RULES, Path::new("q.yml"), Duration::from_secs(60)).unwrap();
    let rev = BacktestOptions {
        from: T0,
        to: T0 - 1,
        step: None,
    };
    assert!(run(groups, &ctx(history()), &rev, None).is_err());
    let e = groups_from_text(
        "groups: [ { name: x, rules: [ { alert: A, expr: 'sum(' } ] } ]",
        Path::new("bad.yml"),
        Duration::from_secs(60),
    )
    .unwrap_err();
    assert!(!e.is_empty());
}
