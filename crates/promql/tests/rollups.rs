//! Range functions read from rollups answer what they answer from raw samples, and a
//! query whose windows do not line up with a rollup resolution reads samples.

use lookout_model::{Labels, stale_nan};
use lookout_promql::{Engine, EngineOptions, Error, Value};
use lookout_storage::{Appendable, MemStorage};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// Two days of a few counters (with resets) and gauges (with a NaN, a gap and a
/// staleness marker), scraped every 15 s with jitter.
fn db() -> MemStorage {
    let db = MemStorage::new();
    let mut app = db.appender();
    for k in 0..3u64 {
        let c = Labels::from_pairs([("__name__", "reqs_total"), ("k", &*k.to_string())]);
        let g = Labels::from_pairs([("__name__", "temp"), ("k", &*k.to_string())]);
        let mut counter = 0.0;
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ k;
        for i in 0..(2 * DAY / 15_000) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = i * 15_000 + (x % 3000) as i64;
            counter = if x.is_multiple_of(997) {
                (x % 5) as f64
            } else {
                counter + (x % 50) as f64 / 4.0
            };
            app.append(&c, t, counter).unwrap();
            // The gauge misses an hour, once goes stale and once is NaN.
            if (20 * HOUR..21 * HOUR).contains(&t) {
                continue;
            }
            let v = match i {
                1000 => stale_nan(),
                2000 => f64::NAN,
                _ => 20.0 + (x % 1000) as f64 / 100.0 - k as f64,
            };
            app.append(&g, t, v).unwrap();
        }
    }
    // A gauge that goes away (a staleness marker mid-window) for two hours.
    let gone = Labels::from_pairs([("__name__", "temp"), ("k", "gone")]);
    for i in 0..(2 * DAY / 15_000) {
        let t = i * 15_000 + 7;
        if (10 * HOUR..12 * HOUR).contains(&t) {
            continue;
        }
        app.append(&gone, t, (i % 13) as f64).unwrap();
    }
    app.append(&gone, 10 * HOUR + 1000, stale_nan()).unwrap();
    app.commit().unwrap();
    db
}

fn engine(rollups: bool, max_samples: usize) -> Engine {
    Engine::new(EngineOptions {
        rollups,
        max_samples,
        ..EngineOptions::default()
    })
}

/// Every point of a range query's matrix: (labels, t, v).
fn points(v: Value) -> Vec<(String, i64, f64)> {
    let Value::Matrix(m) = v else {
        panic!("not a matrix: {v:?}")
    };
    m.into_iter()
        .flat_map(|s| {
            let l = s.labels.to_string();
            s.samples.into_iter().map(move |p| (l.clone(), p.t, p.v))
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

const QUERIES: &[&str] = &[
    "rate(reqs_total[1h])",
    "increase(reqs_total[30m])",
    "sum by (k) (rate(reqs_total[2h] offset 1h))",
    "delta(temp[1h])",
    "avg_over_time(temp[1h])",
    "min_over_time(temp[3h])",
    "max_over_time(temp[1h])",
    "sum_over_time(temp[1h])",
    "count_over_time(temp[30m])",
    "last_over_time(temp[1h])",
    "present_over_time(temp[1h])",
    "max(max_over_time(temp[1h])) - min(min_over_time(temp[1h]))",
    // Instant selectors: each window's last sample, or its staleness marker.
    "temp",
    "max(temp)",
    "avg by (k) (temp)",
    "min(temp offset 10m)",
    "timestamp(temp)",
    "reqs_total - reqs_total offset 1h",
];

#[test]
fn range_functions_over_rollups_answer_what_raw_samples_answer() {
    let db = db();
    db.set_rollup_resolutions(vec![5 * MIN, HOUR]);
    // Few enough samples that the raw answers fail for want of room: the rollups are
    // what answered.
    let small = 20_000;
    for q in QUERIES {
        for (start, end, step) in [(6 * HOUR, 2 * DAY, HOUR), (3 * HOUR, 30 * HOUR, 5 * MIN)] {
            let raw = engine(false, usize::MAX)
                .range(&db, q, start, end, step)
                .unwrap();
            let rolled = engine(true, small).range(&db, q, start, end, step).unwrap();
            let (raw, rolled) = (points(raw), points(rolled));
            assert!(!raw.is_empty(), "{q}");
            if q.starts_with("temp") {
                // The gauge that went away is absent at once, as it is from the samples.
                let gone_at = |p: &[(String, i64, f64)], t: i64| {
                    p.iter().any(|x| x.0.contains("gone") && x.1 == t)
                };
                assert!(!gone_at(&raw, 10 * HOUR + 5 * MIN) && gone_at(&raw, 10 * HOUR));
                assert!(!gone_at(&rolled, 10 * HOUR + 5 * MIN) && gone_at(&rolled, 10 * HOUR));
            }
            assert_eq!(raw.len(), rolled.len(), "{q} every {step} ms");
            for (a, b) in raw.iter().zip(&rolled) {
                assert!(
                    a.0 == b.0 && a.1 == b.1 && close(a.2, b.2),
                    "{q}: raw {a:?}, rollups {b:?}"
                );
            }
            if step == HOUR && q.starts_with("rate") {
                let err = engine(false, small)
                    .range(&db, q, start, end, step)
                    .unwrap_err();
                assert!(matches!(err, Error::TooManySamples(_)), "{err}");
            }
        }
        let t = 40 * HOUR;
        let raw = engine(false, usize::MAX).instant(&db, q, t).unwrap();
        let rolled = engine(true, small).instant(&db, q, t).unwrap();
        match (raw, rolled) {
            (Value::Vector(a), Value::Vector(b)) => {
                assert_eq!(a.len(), b.len(), "{q}");
                for (x, y) in a.iter().zip(&b) {
                    assert!(x.labels == y.labels && close(x.v, y.v), "{q}: {x:?} {y:?}");
                }
            }
            (a, b) => panic!("{q}: {a:?} {b:?}"),
        }
    }
}

#[test]
fn windows_that_do_not_line_up_read_samples() {
    let db = db();
    db.set_rollup_resolutions(vec![5 * MIN, HOUR]);
    // A 7-minute range, a step of 90 s, a start off the windows, a function rollups do
    // not answer: each needs samples, so a small sample limit refuses them.
    for (q, start, step) in [
        ("rate(reqs_total[7m])", 6 * HOUR, HOUR),
        ("rate(reqs_total[1h])", 6 * HOUR, 90_000),
        ("rate(reqs_total[1h])", 6 * HOUR + 1000, HOUR),
        ("quantile_over_time(0.5, temp[1h])", 6 * HOUR, HOUR),
        ("rate(reqs_total[40h] @ 172800)", 6 * HOUR, HOUR),
    ] {
        let err = engine(true, 20_000)
            .range(&db, q, start, 2 * DAY, step)
            .unwrap_err();
        assert!(matches!(err, Error::TooManySamples(_)), "{q}: {err}");
        engine(true, usize::MAX)
            .range(&db, q, start, 2 * DAY, step)
            .unwrap();
    }
}
