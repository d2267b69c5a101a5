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

/// Native histograms flow through selectors, functions, aggregations, operators and
/// range queries, and count against `max_samples` as floats do.
#[test]
fn native_histograms_through_the_engine() {
    use lookout_model::FloatHistogram;
    use lookout_promql::Value;
    let db = MemStorage::new();
    let mut app = db.appender();
    let h = FloatHistogram::parse("{{schema:0 sum:5 count:3 buckets:[1 2]}}").unwrap();
    let later = FloatHistogram::parse("{{schema:0 sum:11 count:6 buckets:[2 4]}}").unwrap();
    let l = Labels::from_pairs([("__name__", "h"), ("job", "x")]);
    app.append_histogram(&l, 60_000, &h).unwrap();
    app.append_histogram(&l, 120_000, &later).unwrap();
    app.append(&Labels::from_pairs([("__name__", "f")]), 60_000, 1.0)
        .unwrap();
    app.commit().unwrap();
    let e = Engine::default();
    let q = |s: &str, t: i64| match e
        .instant_query(&db, s, &lookout_promql::parse(s).unwrap(), t, None)
        .unwrap()
        .value
    {
        Value::Vector(v) => v,
        other => panic!("{s}: {other:?}"),
    };
    let v = q("(h)", 90_000);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].labels, l);
    assert!(v[0].h.as_ref().unwrap().same_as(&h));
    assert!(q("h offset 10m", 90_000).is_empty(), "outside the lookback");
    assert!(q("f", 90_000)[0].h.is_none());
    let sum = q("sum(h) * 2", 90_000);
    assert_eq!(sum[0].h.as_ref().unwrap().count, 6.0);
    assert_eq!(q("histogram_count(h)", 130_000)[0].v, 6.0);
    // increase over exactly the two samples, extrapolated to the window's edges as
    // Prometheus does (not below zero: the count started at 3, grew by 3 in 60s).
    let inc = q("increase(h[61s])", 120_000);
    let inc = inc[0].h.as_ref().unwrap();
    assert!((inc.count - 3.0 * 61.0 / 60.0).abs() < 1e-9, "{inc}");
    // Floats and histograms do not mix in arithmetic: nothing, and an info.
    let r = e
        .instant_query(
            &db,
            "h + f",
            &lookout_promql::parse("h + on() f").unwrap(),
            90_000,
            None,
        )
        .unwrap();
    assert!(matches!(r.value, Value::Vector(ref v) if v.is_empty()));
    assert!(
        r.annotations.infos[0].contains("incompatible sample types"),
        "{:?}",
        r.annotations
    );
    let Value::Matrix(m) = e.range(&db, "h", 0, 150_000, 30_000).unwrap() else {
        panic!("not a matrix")
    };
    assert_eq!(m.len(), 1);
    assert!(m[0].samples.is_empty());
    let times: Vec<i64> = m[0].histograms.iter().map(|x| x.t).collect();
    assert_eq!(times, vec![60_000, 90_000, 120_000, 150_000]);
    assert_eq!(m[0].histograms[2].h.count, 6.0);
    let small = Engine::new(EngineOptions {
        max_samples: 1,
        ..EngineOptions::default()
    });
    let err = small
        .instant(&db, "count_over_time(h[5m])", 150_000)
        .unwrap_err();
    assert!(err.to_string().contains("too many samples"), "{err}");
}

/// Issue 12: a subquery over a constant was unbounded (`max_samples` counted loaded
/// samples only): its points count now, empty steps included.
#[test]
fn issue_12_subquery_points_count_against_max_samples() {
    let e = Engine::new(EngineOptions {
        max_samples: 10_000,
        ..EngineOptions::default()
    });
    let err = e
        .instant(&db(), "count_over_time(vector(1)[30d:1ms])", 100_000)
        .unwrap_err();
    assert!(matches!(err, Error::TooManySamples(_)), "{err}");
    assert!(err.to_string().ends_with("in subquery evaluation"), "{err}");
    // Steps that produce nothing still cost one each.
    let err = e
        .instant(&db(), "count_over_time(absent(m)[30d:1ms])", 100_000)
        .unwrap_err();
    assert!(matches!(err, Error::TooManySamples(_)), "{err}");
    // A range query's output points count too.
    let r = e.range(&db(), "m", 0, 100_000, 50);
    assert!(matches!(r, Err(Error::TooManySamples(_))), "not refused");
    assert!(e.range(&db(), "m", 0, 100_000, 1000).is_ok());
    // A modest subquery still answers.
    let v = e
        .instant(&db(), "count_over_time(vector(1)[1m:1s])", 100_000)
        .unwrap();
    let lookout_promql::Value::Vector(v) = v else {
        panic!()
    };
    assert_eq!(v[0].v, 60.0);
}

/// Issue 12: offsets, ranges and `@` times beyond any sane range were evaluated with
/// wrapping arithmetic; they are refused as bad queries, and the parser's panic on a
/// float duration that overflows is an error too.
#[test]
fn issue_12_huge_offsets_ranges_and_at_times_are_bad_queries() {
    for q in [
        "m offset 100000000y",
        "m @ 1e300",
        "m @ -1e17",
        "rate(m[100000000y])",
        "max_over_time(m[1h:100000000y])",
        "m[1e300]",
        "m offset 1e300",
        "max_over_time(m[5m:1e300])",
        "max_over_time((max_over_time(m offset 10000000y[10000000y:1h]) offset 10000000y)[10000000y:1h])",
    ] {
        let err = Engine::default().instant(&db(), q, 100_000).unwrap_err();
        assert!(matches!(err, Error::Parse(_)), "{q}: {err}");
    }
    // Large but sane offsets still work.
    Engine::default()
        .instant(&db(), "m offset 1000y", 100_000)
        .unwrap();
    Engine::default()
        .instant(&db(), "m @ 100000", 100_000)
        .unwrap();
}

/// Issue 12: 60,000 nested parentheses overflowed the stack and aborted the process.
#[test]
fn issue_12_deep_queries_are_refused_before_parsing() {
    let deep = format!("{}1{}", "(".repeat(60_000), ")".repeat(60_000));
    let err = parse(&deep).unwrap_err();
    assert!(
        matches!(err, Error::Parse(ref m) if m.contains("nests too deeply")),
        "{err}"
    );
    let chain = vec!["m"; 20_000].join("+");
    assert!(parse(&chain).is_err());
    // At the limit the query parses and evaluates on an ordinary thread's stack.
    let at = format!(
        "{}1{}",
        "(".repeat(lookout_promql::limits::MAX_QUERY_DEPTH),
        ")".repeat(lookout_promql::limits::MAX_QUERY_DEPTH)
    );
    std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(move || Engine::default().instant(&db(), &at, 1000).unwrap())
        .unwrap()
        .join()
        .unwrap();
}

/// Issue 14: a per-query memory limit, checked on what a query selects and on the points
/// it computes, fails the query with an execution error instead of growing the process.
#[test]
fn issue_14_too_much_memory_is_an_execution_error() {
    let e = Engine::new(EngineOptions {
        max_memory: 1000,
        ..EngineOptions::default()
    });
    let err = e
        .instant(&db(), "sum(count_over_time(m[5m]))", 100_000)
        .unwrap_err();
    assert!(
        matches!(err, Error::TooMuchMemory { limit: 1000, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "query processing would use more than 1000 bytes of memory in query execution"
    );
    // A subquery's computed points count too, not only what was selected.
    let e = Engine::new(EngineOptions {
        max_memory: 64 * 1024,
        ..EngineOptions::default()
    });
    assert!(e.instant(&db(), "sum(m)", 100_000).is_ok());
    let err = e
        .instant(&db(), "count_over_time(vector(1)[1d:1s])", 100_000)
        .unwrap_err();
    assert!(matches!(err, Error::TooMuchMemory { .. }), "{err}");
    // 0 means no limit.
    let e = Engine::new(EngineOptions {
        max_memory: 0,
        ..EngineOptions::default()
    });
    assert!(
        e.instant(&db(), "sum(count_over_time(m[5m]))", 100_000)
            .is_ok()
    );
}
