//! Issue 12, through the real binary: hostile queries, bad timestamps and damaged files
//! never crash, stall or lose data.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn post_form(lk: &Lookout, path: &str, body: String) -> (u16, String) {
    let r = http()
        .post(format!("{}{}", lk.base, path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// Issue 12 item 1: 60,000 nested parentheses aborted the server; 20,000 chained `+`
/// blocked the async runtime; SIGTERM waited for a running query.
#[test]
fn issue_12_hostile_queries_neither_crash_nor_stall_and_sigterm_stops_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &format!("{FAST}query:\n  timeout: 10m\n"));
    let lk = Lookout::start(&dir.path().join("data"), &cfg);

    let deep = format!("{}1{}", "(".repeat(60_000), ")".repeat(60_000));
    for (path, field) in [
        ("/api/v1/query", "query"),
        ("/api/v1/format_query", "query"),
        ("/api/v1/series", "match[]"),
    ] {
        let (code, body) = post_form(&lk, path, format!("{field}={deep}"));
        assert_eq!(code, 400, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["errorType"], "bad_data", "{body}");
        assert!(v["error"].as_str().unwrap().contains("nests too deeply"));
    }
    let chain = vec!["1"; 20_000].join("%2B");
    let (code, _) = post_form(&lk, "/api/v1/query", format!("query={chain}"));
    assert_eq!(code, 400);
    // Still alive after all of that.
    assert_eq!(lk.get("/-/healthy").0, 200);

    // A query that runs for a long time (24 million subquery steps) ...
    let base = lk.base.clone();
    let running = std::thread::spawn(move || {
        http()
            .post(format!("{base}/api/v1/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("query=count_over_time(vector(1)%5B4w:100ms%5D)")
            .timeout(Duration::from_secs(120))
            .send()
            .map(|r| r.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(!running.is_finished(), "the query should still be running");
    // ... does not hold up the probes (it runs off the async workers) ...
    assert_eq!(lk.get("/-/healthy").0, 200);
    assert_eq!(lk.get("/api/v1/query?query=1").0, 200);
    // ... and SIGTERM cancels it: the process exits within five seconds.
    let status = lk.terminate();
    assert!(status.success(), "exit status {status}");
    match running.join().unwrap() {
        Ok(code) => assert!(code == 499 || code == 503, "status {code}"),
        // The connection may close before the answer is written.
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
}

fn wal_segments(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segs: Vec<_> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    segs.sort();
    segs
}

/// Issue 12 item 4: one flipped byte in an old WAL segment deleted every later, intact
/// segment at the next start. Small segments (`storage.wal_segment_size`) make many.
#[test]
fn issue_12_a_damaged_old_wal_segment_costs_only_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!("{FAST}storage:\n  wal_segment_size: 64KB\n  wal_sync: always\n"),
    );
    let lk = Lookout::start(&data, &cfg);
    wait_until("four WAL segments", Duration::from_secs(60), || {
        wal_segments(&data).len() >= 4
    });
    let q = "count_over_time(node_load1[1h])";
    let before = value_of(&lk.wait_for(q, Duration::from_secs(5))[0]);
    assert!(lk.terminate().success());

    let segs = wal_segments(&data);
    let victim = &segs[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(victim, &bytes).unwrap();

    let lk = Lookout::start(&data, &cfg);
    let after = value_of(&lk.wait_for(q, Duration::from_secs(5))[0]);
    // At most the damaged record's scrape is lost (plus the ones since the restart).
    assert!(after >= before - 1.0, "before {before}, after {after}");
    for s in &segs[2..] {
        assert!(s.exists(), "{} was deleted", s.display());
    }
    let log = lk.log.lock().unwrap().join("\n");
    assert!(log.contains("WAL file damaged"), "{log}");
    let (_, health) = lk.get("/health");
    let v: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(v["checks"][0]["name"], "storage");
    assert_eq!(v["checks"][0]["status"], "degraded", "{health}");
    assert!(lk.terminate().success());
}
