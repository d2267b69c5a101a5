//! The bottleneck report on a real machine: `lookout serve` collecting this host every
//! second while the test burns both cores, then writes small synchronous blocks to a
//! file in its temporary directory (each phase bounded in time). The CPU burn puts
//! `cpu` first; the writes show on the disk's utilisation.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn report(lk: &Lookout, window: &str) -> Value {
    let (code, body) = lk.get(&format!("/api/v1/lookout/diagnose?window={window}"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["data"].clone()
}

fn resource<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["bottlenecks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["resource"] == name)
        .unwrap_or_else(|| panic!("{name} not measured: {r}"))
}

/// Runs `work(k)` on threads 0 and 1 and waits for both.
fn on_two_threads(work: impl Fn(usize) + Send + Sync + 'static) {
    let work = Arc::new(work);
    let handles: Vec<_> = (0..2)
        .map(|k| {
            let work = Arc::clone(&work);
            std::thread::spawn(move || work(k))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn the_report_names_a_cpu_burn_and_sees_synchronous_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\ncollectors:\n  process: { enabled: false }\n",
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    lk.wait_for("node_cpu_seconds_total", Duration::from_secs(20));

    // Both cores busy for 12 s.
    let until = Instant::now() + Duration::from_secs(12);
    on_two_threads(move |_| {
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    });
    let r = report(&lk, "10s");
    let cpu = resource(&r, "cpu");
    let busy = cpu["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["description"].as_str().unwrap().starts_with("CPU busy"))
        .unwrap();
    assert!(busy["value"].as_f64().unwrap() > 0.8, "{cpu}");
    assert!(cpu["score"].as_f64().unwrap() >= 50.0, "{cpu}");
    assert_eq!(
        r["bottlenecks"][0]["score"], cpu["score"],
        "the CPU ranks first (or ties): {r}"
    );
    assert!(r["performance_score"].as_f64().unwrap() <= 50.0, "{r}");
    assert!(busy["query"].as_str().unwrap().contains("[10s]"));
    assert!(!cpu["recommendations"].as_array().unwrap().is_empty());

    // Two writers syncing 4 KiB blocks for 12 s.
    let file_dir = dir.path().to_path_buf();
    let until = Instant::now() + Duration::from_secs(12);
    on_two_threads(move |k| {
        let mut f = std::fs::File::create(file_dir.join(format!("sync-{k}"))).unwrap();
        let block = [7u8; 4096];
        while Instant::now() < until {
            f.write_all(&block).unwrap();
            f.sync_data().unwrap();
        }
    });
    let r = report(&lk, "10s");
    let disk = resource(&r, "disk_io");
    let util = disk["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["description"]
                .as_str()
                .unwrap()
                .starts_with("Busiest disk")
        })
        .unwrap();
    assert!(util["value"].as_f64().unwrap() >= 0.3, "{disk}");
    // The diagnose page shows the same report, every measured resource with its
    // evidence linked to Explore.
    common::browser::with_browser(&dir.path().join("profile"), |b| {
        let lk = &lk;
        async move {
            b.goto(&format!("{}/diagnose?window=5m", lk.base))
                .await
                .unwrap();
            let score =
                common::browser::wait_text(&b, "#performance-score", |t| !t.is_empty()).await;
            let score: f64 = score.parse().unwrap();
            assert!((0.0..=100.0).contains(&score), "{score}");
            let v = b
            .execute(
                "return [...document.querySelectorAll('section.bottleneck')].map(s => [s.dataset.resource, s.querySelectorAll('table.evidence a[href^=\"/explore?query=\"]').length])",
                vec![],
            )
            .await
            .unwrap();
            let sections: Vec<(String, usize)> = serde_json::from_value(v).unwrap();
            let names: Vec<&str> = sections.iter().map(|s| s.0.as_str()).collect();
            for want in ["cpu", "memory", "disk_io"] {
                assert!(names.contains(&want), "{sections:?}");
            }
            assert!(sections.iter().all(|s| s.1 > 0), "{sections:?}");
            b
        }
    });
    // Bad windows are refused by name.
    let (code, body) = lk.get("/api/v1/lookout/diagnose?window=1s");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("out of range"), "{body}");
    let (code, _) = lk.get("/api/v1/lookout/diagnose?window=later");
    assert_eq!(code, 400);
    assert!(lk.terminate().success());
}
