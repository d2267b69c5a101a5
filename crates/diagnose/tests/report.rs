//! The bottleneck report over stored series shaped like the host collector's and the
//! database collectors': a CPU-bound machine, a disk-bound one, and PostgreSQL sessions
//! piling up on a lock, each ranked first by the resource that limits it.

use std::time::Duration;

use lookout_diagnose::{Options, Report, diagnose};
use lookout_model::Labels;
use lookout_promql::{Engine, EngineOptions};
use lookout_storage::{Appendable, MemStorage};

const MIN: i64 = 60_000;

/// Writes a series every 15 s for 20 minutes, ending at `end`: from `start`, growing
/// by `per_second`.
fn series(db: &MemStorage, labels: &[(&str, &str)], start: f64, per_second: f64, end: i64) {
    let l = Labels::from_pairs(labels.iter().copied());
    let mut a = db.appender();
    let mut t = end - 20 * MIN;
    let mut v = start;
    while t <= end {
        a.append(&l, t, v).unwrap();
        v += per_second * 15.0;
        t += 15_000;
    }
    a.commit().unwrap();
}

fn counter(db: &MemStorage, labels: &[(&str, &str)], per_second: f64, end: i64) {
    series(db, labels, 1000.0, per_second, end);
}

fn gauge(db: &MemStorage, labels: &[(&str, &str)], value: f64, end: i64) {
    series(db, labels, value, 0.0, end);
}

/// Two cores, `busy` of each used by user code, `iowait` waiting, disk `sda` busy
/// `disk` of the time; memory half used.
fn host(db: &MemStorage, busy: f64, iowait: f64, disk: f64, end: i64) {
    for cpu in ["0", "1"] {
        for (mode, share) in [
            ("user", busy),
            ("iowait", iowait),
            ("idle", 1.0 - busy - iowait),
        ] {
            counter(
                db,
                &[
                    ("__name__", "node_cpu_seconds_total"),
                    ("cpu", cpu),
                    ("mode", mode),
                ],
                share,
                end,
            );
        }
    }
    counter(
        db,
        &[
            ("__name__", "node_disk_io_time_seconds_total"),
            ("device", "sda"),
        ],
        disk,
        end,
    );
    gauge(
        db,
        &[("__name__", "node_memory_MemAvailable_bytes")],
        4e9,
        end,
    );
    gauge(db, &[("__name__", "node_memory_MemTotal_bytes")], 8e9, end);
    gauge(db, &[("__name__", "node_load1")], 2.0 * busy, end);
}

fn report(db: &MemStorage, end: i64) -> Report {
    let engine = Engine::new(EngineOptions::default());
    diagnose(
        &engine,
        db,
        &Options {
            window: Duration::from_secs(600),
            at: end,
        },
    )
    .unwrap()
}

const END: i64 = 1_800_000_000_000;

#[test]
fn a_cpu_bound_machine_names_the_cpu() {
    let db = MemStorage::new();
    host(&db, 0.93, 0.0, 0.1, END);
    let r = report(&db, END);
    let top = &r.bottlenecks[0];
    assert_eq!(top.resource, "cpu", "{r:#?}");
    let busy = &top.evidence[0];
    assert!((busy.value.unwrap() - 0.93).abs() < 1e-6, "{busy:?}");
    assert!((top.score - 94.3).abs() < 0.2, "{top:?}");
    assert!(busy.query.contains("[600s]"), "{}", busy.query);
    assert!(top.summary.contains("93.0%"), "{}", top.summary);
    assert!((r.performance_score - (100.0 - top.score)).abs() < 1e-9);
    // The rest of the machine is fine.
    for b in &r.bottlenecks[1..] {
        assert_eq!(b.score, 0.0, "{b:#?}");
    }
    // No database is monitored.
    for m in ["connections", "locks", "replication"] {
        assert!(r.not_measured.contains(&m), "{:?}", r.not_measured);
    }
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["bottlenecks"][0]["resource"], "cpu");
    assert!(json["bottlenecks"][0]["evidence"][0]["query"].is_string());
    assert!(json["bottlenecks"][0]["recommendations"][0].is_string());
}

#[test]
fn a_disk_bound_machine_names_the_disk() {
    let db = MemStorage::new();
    host(&db, 0.2, 0.4, 0.97, END);
    let r = report(&db, END);
    assert_eq!(r.bottlenecks[0].resource, "disk_io", "{r:#?}");
    assert!(r.bottlenecks[0].score > 90.0);
    let cpu = r.bottlenecks.iter().find(|b| b.resource == "cpu").unwrap();
    assert_eq!(cpu.score, 0.0, "iowait is not CPU work: {cpu:#?}");
}

#[test]
fn sessions_piling_on_a_lock_name_the_locks() {
    let db = MemStorage::new();
    host(&db, 0.2, 0.0, 0.1, END);
    // Three sessions waiting on a lock every second, for a minute at most.
    counter(
        &db,
        &[
            ("__name__", "pg_wait_event_samples_total"),
            ("wait_event_type", "Lock"),
            ("wait_event", "relation"),
        ],
        3.0,
        END,
    );
    gauge(&db, &[("__name__", "pg_lock_wait_max_seconds")], 40.0, END);
    let r = report(&db, END);
    let top = &r.bottlenecks[0];
    assert_eq!(top.resource, "locks", "{r:#?}");
    // Waits of 40 s score (40 - 5) / (60 - 5); three sessions waiting, (3 - 0.5) / 4.5.
    assert!((top.score - 63.6).abs() < 0.1, "{top:#?}");
    assert!((top.evidence[1].score - 55.6).abs() < 0.1, "{top:#?}");
    assert!(top.recommendations[0].contains("/api/v1/lookout/postgres/locks"));
}

#[test]
fn a_window_out_of_range_is_refused_by_name() {
    let db = MemStorage::new();
    let engine = Engine::new(EngineOptions::default());
    for w in [Duration::from_secs(1), Duration::from_secs(30 * 86_400)] {
        let e = diagnose(&engine, &db, &Options { window: w, at: END }).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }
    // An empty store: everything unmeasured, a perfect score.
    let r = report(&db, END);
    assert!(r.bottlenecks.is_empty());
    assert_eq!(r.not_measured.len(), 7);
    assert_eq!(r.performance_score, 100.0);
}
