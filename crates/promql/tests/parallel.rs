//! A range query split between threads answers exactly as one evaluated step by step on
//! one thread: the same series, samples, annotations and errors, whatever the number of
//! threads and wherever the spans are cut.

use lookout_model::{Labels, stale_nan};
use lookout_promql::{Engine, EngineOptions, parse};
use lookout_storage::{Appendable, MemStorage};

const STEP: i64 = 15_000;
const POINTS: i64 = 1_200;

/// Counters with resets and gaps, gauges, a series that only starts halfway and one that
/// ends early with a staleness marker.
fn db() -> MemStorage {
    let db = MemStorage::new();
    let mut app = db.appender();
    for host in 0..6 {
        for mode in ["idle", "user", "system"] {
            let counter = Labels::from_pairs([
                ("__name__", "cpu_seconds_total"),
                ("instance", &*format!("h{host}")),
                ("mode", mode),
            ]);
            let gauge = Labels::from_pairs([
                ("__name__", "load"),
                ("instance", &*format!("h{host}")),
                ("mode", mode),
            ]);
            let mut c = 0.0;
            for i in 0..POINTS {
                if (i + host) % 97 == 0 {
                    continue; // a missed scrape
                }
                c = if i % 400 == 399 {
                    1.0
                } else {
                    c + (i % 7) as f64
                };
                app.append(&counter, i * STEP, c).unwrap();
                app.append(&gauge, i * STEP, ((i * 31 + host) % 17) as f64 / 3.0)
                    .unwrap();
            }
        }
    }
    let late = Labels::from_pairs([("__name__", "late"), ("instance", "h0")]);
    let early = Labels::from_pairs([("__name__", "early"), ("instance", "h0")]);
    for i in 0..POINTS {
        if i >= POINTS / 2 {
            app.append(&late, i * STEP, i as f64).unwrap();
        }
        if i < POINTS / 3 {
            app.append(&early, i * STEP, i as f64).unwrap();
        }
    }
    app.append(&early, (POINTS / 3) * STEP, stale_nan())
        .unwrap();
    app.commit().unwrap();
    db
}

fn engine(threads: usize) -> Engine {
    Engine::new(EngineOptions {
        range_threads: threads,
        parallel_min_samples: if threads == 1 { usize::MAX } else { 0 },
        ..EngineOptions::default()
    })
}

/// The query's answer (or error) and annotations, as text, so NaN equals NaN.
fn answer(e: &Engine, db: &MemStorage, q: &str, start: i64, end: i64, step: i64) -> String {
    let expr = parse(q).unwrap();
    match e.range_query(db, q, &expr, start, end, step, None) {
        Ok(r) => format!("{:?}\n{:?}", r.value, r.annotations),
        Err(err) => format!("error: {err}"),
    }
}

#[test]
fn split_range_queries_answer_as_one_thread_does() {
    let db = db();
    let queries = [
        "rate(cpu_seconds_total[5m])",
        "sum by (instance) (rate(cpu_seconds_total{mode!=\"idle\"}[2m]))",
        "avg_over_time(load[10m]) > 2",
        "topk(2, load)",
        "max_over_time(rate(cpu_seconds_total[1m])[10m:30s])",
        "load @ start() + on(instance, mode) group_left load offset 5m",
        "load @ end()",
        "absent(late)",
        "late or early",
        "scalar(sum(load))",
        "time()",
        "histogram_quantile(0.9, load)",
        "increase(cpu_seconds_total[3m]) / ignoring(mode) group_left sum without (mode) (increase(cpu_seconds_total[3m]))",
        "count_values(\"v\", round(load))",
        "label_replace({__name__=~\"late|early\"}, \"__name__\", \"same\", \"\", \"\")",
        "label_replace({__name__=~\"late|load\", instance=\"h0\", mode=~\"idle|\"}, \"__name__\", \"same\", \"\", \"\")",
    ];
    // An odd number of steps, so spans differ in length; and a step off the data's grid.
    let (start, end) = (10 * STEP + 7_000, (POINTS - 3) * STEP);
    for step in [STEP, 47_000] {
        let one = engine(1);
        for q in queries {
            let want = answer(&one, &db, q, start, end, step);
            for threads in [2, 3, 8] {
                let got = answer(&engine(threads), &db, q, start, end, step);
                assert_eq!(got, want, "{q} (step {step} ms, {threads} threads)");
            }
        }
    }
}

#[test]
fn the_sample_limit_counts_every_thread() {
    let db = db();
    let q = "sum(count_over_time(cpu_seconds_total[10m]))";
    let (start, end) = (0, (POINTS - 1) * STEP);
    let limited = |threads: usize, max_samples: usize| {
        let e = Engine::new(EngineOptions {
            max_samples,
            range_threads: threads,
            parallel_min_samples: if threads == 1 { usize::MAX } else { 0 },
            ..EngineOptions::default()
        });
        answer(&e, &db, q, start, end, STEP)
    };
    // The least limit one thread passes with, found by bisection; split, the query
    // needs the same, not the limit once per thread.
    let (mut lo, mut hi) = (1usize, 10_000_000usize);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if limited(1, mid).starts_with("error") {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    assert!(!limited(4, lo).starts_with("error"));
    assert!(
        limited(4, lo - 1).starts_with("error: query processing would load too many samples"),
        "{}",
        limited(4, lo - 1)
    );
}

#[test]
fn an_end_before_the_start_or_a_single_step_is_not_split() {
    let db = db();
    let q = "rate(cpu_seconds_total[5m])";
    for (start, end) in [(100 * STEP, 10 * STEP), (50 * STEP, 50 * STEP)] {
        let want = answer(&engine(1), &db, q, start, end, STEP);
        assert_eq!(answer(&engine(8), &db, q, start, end, STEP), want);
    }
}
