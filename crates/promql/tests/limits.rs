//! Query limits answer with Prometheus's errors: too many samples, timeout, cancellation.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use lookout_model::Labels;
use lookout_promql::{Engine, EngineOptions, Error, parse};
use lookout_storage::{Appendable, MemStorage};

fn db() -> MemStorage {
    let db = MemStorage::new();
    let mut app = db.appender();
    for i in 0..100 {
        app.append(
            &Labels::from_pairs([("__name__", "m"), ("i", &*(i % 10).to_string())]),
            i * 1000,
            i as f64,
        )
        .unwrap();
    }
    app.commit().unwrap();
    db
}

#[test]
fn too_many_samples() {
    let e = Engine::new(EngineOptions {
        max_samples: 50,
        ..EngineOptions::default()
    });
    let err = e
        .instant(&db(), "sum(count_over_time(m[5m]))", 100_000)
        .unwrap_err();
    assert!(matches!(err, Error::TooManySamples(_)));
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
    // Under the limit it answers.
    let ok = Engine::new(EngineOptions {
        max_samples: 100,
        ..EngineOptions::default()
    });
    assert!(
        ok.instant(&db(), "sum(count_over_time(m[5m]))", 100_000)
            .is_ok()
    );
}

#[test]
fn timeout() {
    let e = Engine::new(EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    });
    let err = e.range(&db(), "m", 0, 100_000, 1000).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)));
    assert!(err.to_string().starts_with("query timed out in "), "{err}");
}

#[test]
fn cancelled_query_stops() {
    let cancel = AtomicBool::new(true);
    let expr = parse("rate(m[1m])").unwrap();
    let err = Engine::default()
        .range_query(&db(), "rate(m[1m])", &expr, 0, 100_000, 1000, Some(&cancel))
        .unwrap_err();
    assert!(matches!(err, Error::Canceled(_)), "{err}");
}

#[test]
fn lookback_delta_is_configurable() {
    let e = Engine::new(EngineOptions {
        lookback_delta: Duration::from_secs(10),
        ..EngineOptions::default()
    });
    // The newest sample is at 99 s: visible 5 s later, gone 15 s later with a 10 s lookback.
    let v = e.instant(&db(), "count(m)", 104_000).unwrap();
    assert!(matches!(v, lookout_promql::Value::Vector(ref s) if s.len() == 1));
    let v = e.instant(&db(), "count(m)", 115_000).unwrap();
    assert!(matches!(v, lookout_promql::Value::Vector(ref s) if s.is_empty()));
}

/// Native histograms come back from a plain selector and nowhere else yet: any other use
/// is an error naming the limitation, never a wrong number.
#[test]
fn native_histograms_only_through_plain_selectors() {
    use lookout_model::FloatHistogram;
    let db = MemStorage::new();
    let mut app = db.appender();
    let h = FloatHistogram::parse("{{schema:0 sum:5 count:3 buckets:[1 2]}}").unwrap();
    let l = Labels::from_pairs([("__name__", "h"), ("job", "x")]);
    app.append_histogram(&l, 60_000, &h).unwrap();
    app.append(&Labels::from_pairs([("__name__", "f")]), 60_000, 1.0)
        .unwrap();
    app.commit().unwrap();
    let e = Engine::default();
    let q = |s: &str| e.instant_query(&db, s, &lookout_promql::parse(s).unwrap(), 90_000, None);
    let r = q("(h)").unwrap();
    assert_eq!(r.histograms.len(), 1);
    assert!(r.histograms[0].1.same_as(&h));
    assert_eq!(r.histograms[0].0, l);
    assert!(q("h").unwrap().histograms.len() == 1);
    assert!(
        q("h offset 10m").unwrap().histograms.is_empty(),
        "outside the lookback"
    );
    assert!(q("f").unwrap().histograms.is_empty());
    let err = q("sum(h)").unwrap_err().to_string();
    assert!(
        err.contains("native histograms are only returned by plain selectors"),
        "{err}"
    );
    let err = e
        .range(&db, "h", 0, 90_000, 15_000)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not supported in range queries"), "{err}");
}
