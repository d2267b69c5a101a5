//! The `embedded` history: the registry recorded into Lookout's store in-process, PromQL
//! and raw reads over it, the rules firing through Lookout's notifier to a real HTTP
//! receiver, bounds on what a call returns, and the data still there after a restart.

use std::time::{Duration, Instant, SystemTime};

use lookout_sdk::history::{Error, History, HistoryOptions};
use lookout_sdk::sets::BTreeOp;
use lookout_sdk::{Metrics, Options};
use lookout_testkit::WebhookReceiver;

const RULES: &str = r#"groups:
  - name: tree
    interval: 1s
    rules:
      - alert: TreeSplitting
        expr: increase(btree_node_splits_total[5s]) > 0
        labels: { severity: page }
        annotations: { summary: "{{ $labels.tree }} splits nodes" }
      - record: tree:ops:rate1s
        expr: sum by (op) (rate(btree_operations_total[1s]))
"#;

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn history_records_answers_promql_fires_rules_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookReceiver::start(200, 0);
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    let am = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am,
        format!(
            "route: {{ receiver: db, group_by: [alertname], group_wait: 0s }}\nreceivers: [ {{ name: db, webhook_configs: [ {{ url: '{}' }} ] }} ]\n",
            hook.url
        ),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let metrics = Metrics::new(Options::default().label("service", "kvstore"));
    let tree = metrics.btree("primary");
    let mut opts = HistoryOptions::new(dir.path().join("history"));
    opts.interval = Duration::from_millis(200);
    opts.evaluation_interval = Duration::from_secs(1);
    opts.rule_files = vec![dir.path().join("rules.yml").display().to_string()];
    opts.alertmanager_config = Some(am);
    opts.max_points = 1000;
    let started = SystemTime::now();
    let history = History::start(&metrics, opts.clone()).unwrap();

    // Three seconds of work: 100 inserts and 300 searches every 100 ms, a split each time.
    let mut inserts = 0u64;
    let work_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < work_until {
        for i in 0..400 {
            let op = if i % 4 == 0 {
                BTreeOp::Insert
            } else {
                BTreeOp::Search
            };
            inserts += u64::from(op == BTreeOp::Insert);
            tree.start(op).finish(&tree, 3);
        }
        tree.split();
        tree.set_height(3);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(history.record_now().unwrap() > 50);
    let now = SystemTime::now();

    // PromQL over a range: the insert rate, labelled as recorded, without the name.
    let rates = history
        .query_range(
            r#"rate(btree_operations_total{op="insert"}[1s])"#,
            started + Duration::from_secs(2),
            now,
            Duration::from_millis(200),
        )
        .unwrap();
    assert_eq!(rates.len(), 1, "{rates:?}");
    let l = &rates[0].labels;
    assert_eq!(
        (l["service"].as_str(), l["tree"].as_str(), l["op"].as_str()),
        ("kvstore", "primary", "insert")
    );
    assert!(!l.contains_key("__name__"));
    assert!(rates[0].points.len() >= 3, "{rates:?}");
    assert!(rates[0].points.iter().all(|(_, v)| *v > 100.0), "{rates:?}");

    // Raw samples: the counter only grows, and its newest value is what was done.
    let raw = history
        .metric("btree_operations_total", started, now)
        .unwrap();
    let insert = raw.iter().find(|s| s.labels["op"] == "insert").unwrap();
    assert_eq!(insert.labels["__name__"], "btree_operations_total");
    assert!(insert.points.len() >= 10, "{} points", insert.points.len());
    assert!(
        insert
            .points
            .windows(2)
            .all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0)
    );
    assert_eq!(insert.points.last().unwrap().1, inserts as f64);
    let h = history.query("max(btree_height)", now).unwrap();
    assert_eq!(h[0].points[0].1, 3.0);

    // The rules: the recording rule writes into the same store, the alert fires and
    // Lookout's notifier delivers it to the receiver.
    wait("the alert to fire", || {
        history
            .alerts()
            .iter()
            .any(|a| a.firing && a.labels["alertname"] == "TreeSplitting")
    });
    let alert = history.alerts().into_iter().find(|a| a.firing).unwrap();
    assert_eq!(alert.labels["service"], "kvstore");
    assert_eq!(alert.annotations["summary"], "primary splits nodes");
    wait("the recording rule", || {
        !history
            .query("tree:ops:rate1s", SystemTime::now())
            .unwrap()
            .is_empty()
    });
    wait("the webhook", || hook.count() > 0);
    let body = hook.first();
    assert_eq!(body["status"], "firing", "{body}");
    assert_eq!(body["alerts"][0]["labels"]["alertname"], "TreeSplitting");
    assert_eq!(body["alerts"][0]["labels"]["severity"], "page");

    // Bounds and named errors.
    let far = now - Duration::from_secs(3600);
    match history.query_range("up", far, now, Duration::from_millis(1)) {
        Err(Error::TooManyPoints { points, max: 1000 }) => assert_eq!(points, 3_600_001),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        history.query_range("up", now, far, Duration::from_secs(1)),
        Err(Error::Invalid(_))
    ));
    // Ends far apart on both sides of the epoch: a bound, not an overflow.
    let aeon = Duration::from_secs(i64::MAX as u64 / 2);
    assert!(matches!(
        history.query_range(
            "up",
            std::time::UNIX_EPOCH - aeon,
            std::time::UNIX_EPOCH + aeon,
            Duration::from_millis(1)
        ),
        Err(Error::TooManyPoints { .. })
    ));
    assert!(matches!(
        history.metric("1bad name", far, now),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        history.metric("x", now, far),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(history.query("sum(", now), Err(Error::Query(_))));
    match history.metric(
        "btree_operations_total",
        started - Duration::from_secs(7200),
        now,
    ) {
        // 3 s at 200 ms is far below the bound: the answer, not an error.
        Ok(s) => assert!(!s.is_empty()),
        Err(e) => panic!("{e}"),
    }
    rt.block_on(history.close()).unwrap();

    // Restarted (without rules): what was recorded is still there.
    opts.rule_files.clear();
    opts.alertmanager_config = None;
    let again = History::start(&Metrics::new(Options::default()), opts).unwrap();
    let raw = again
        .metric("btree_operations_total", started, SystemTime::now())
        .unwrap();
    let insert = raw.iter().find(|s| s.labels["op"] == "insert").unwrap();
    assert_eq!(insert.points.last().unwrap().1, inserts as f64);
    assert!(again.alerts().is_empty());
    rt.block_on(again.close()).unwrap();
    drop(_guard);
}

#[test]
fn history_refuses_bad_options_and_unknown_packs() {
    let dir = tempfile::tempdir().unwrap();
    let m = Metrics::new(Options::default());
    // Outside a runtime.
    assert!(matches!(
        History::start(&m, HistoryOptions::new(dir.path())),
        Err(Error::Invalid(_))
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _g = rt.enter();
    let mut o = HistoryOptions::new(dir.path());
    o.interval = Duration::ZERO;
    assert!(matches!(History::start(&m, o), Err(Error::Invalid(_))));
    let mut o = HistoryOptions::new(dir.path().join("a"));
    o.rule_packs = vec!["nope".into()];
    assert!(matches!(History::start(&m, o), Err(Error::Rules(_))));
    let mut o = HistoryOptions::new(dir.path().join("b"));
    o.alertmanager_config = Some(dir.path().join("missing.yml"));
    match History::start(&m, o) {
        Err(Error::Notifier(e)) => assert!(e.contains("missing.yml"), "{e}"),
        other => panic!("{other:?}"),
    }
    let mut o = HistoryOptions::new(dir.path().join("c"));
    o.rule_packs = vec!["engine".into()];
    let h = History::start(&m, o).unwrap();
    rt.block_on(h.close()).unwrap();
}
