//! Issue 12, through the real binary: hostile queries, bad timestamps and damaged files
//! never crash, stall or lose data.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn post_form(lk: &Lookout, path: &str, body: String) -> (u16, String) {
    lk.post(path, "application/x-www-form-urlencoded", body)
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

/// One raw HTTP exchange: what the server answered first (the status line), or why not.
fn raw(base: &str, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Issue 12, hostile HTTP: slow-loris clients, thousands of idle connections, oversized
/// headers and bodies, malformed forms and JSON; the server answers 4xx and the probes
/// keep answering.
#[test]
fn issue_12_hostile_http_clients_get_4xx_and_the_probes_keep_answering() {
    use std::io::Write;
    let fd_limit = lookout_server::listen::raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    write_silent_alertmanager(dir.path());
    let cfg = write_config(
        dir.path(),
        &format!(
            "{FAST}web:\n  read_header_timeout: 1s\n  max_connections: 12000\nnotifier:\n  config_file: alertmanager.yml\n"
        ),
    );
    let started = std::time::Instant::now();
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    let addr = lk.base.trim_start_matches("http://").to_string();
    let mut worst = Duration::ZERO;
    let mut probe = |lk: &Lookout| {
        let t = std::time::Instant::now();
        assert_eq!(lk.get("/-/healthy").0, 200);
        worst = worst.max(t.elapsed());
    };

    // Slow-loris: headers that never finish are cut off after read_header_timeout.
    let mut slow: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    probe(&lk);
    std::thread::sleep(Duration::from_millis(2500));
    let mut closed = 0;
    for s in &mut slow {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 256];
        // Closed by the server: EOF, an error, or a 408 before closing.
        match s.read(&mut b) {
            Ok(0) | Err(_) => closed += 1,
            Ok(n) => {
                let text = String::from_utf8_lossy(&b[..n]);
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
                closed += 1;
            }
        }
    }
    assert_eq!(closed, slow.len(), "slow clients were not cut off");
    drop(slow);
    probe(&lk);

    // Thousands of idle connections at once (as many as this process may open).
    let n = 10_000.min(fd_limit.saturating_sub(200) as usize);
    let idle: Vec<std::net::TcpStream> = (0..n)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    for _ in 0..5 {
        probe(&lk);
    }
    drop(idle);

    // Oversized headers and bodies, malformed forms and JSON.
    let big_header = format!(
        "GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let status = raw(&lk.base, big_header.as_bytes());
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    let big = "q".repeat(3 << 20);
    for path in [
        "/api/v1/query",
        "/api/v1/query_range",
        "/api/v1/series",
        "/api/v1/labels",
        "/api/v1/format_query",
        "/api/v2/alerts",
        "/api/v2/silences",
    ] {
        let (code, _) = post_form(&lk, path, big.clone());
        assert!((400..500).contains(&code), "{path}: {code}");
    }
    let (code, body) = post_form(&lk, "/api/v1/query", "query=%ZZ&&=&".into());
    assert_eq!(code, 400, "{body}");
    for (path, json) in [
        ("/api/v2/alerts", "[{\"labels\": {\"a\": 1}}"),
        ("/api/v2/silences", "{\"matchers\": [[[[["),
        ("/api/v2/alerts", "nul"),
    ] {
        let (code, _) = lk.post(path, "application/json", json);
        assert!((400..500).contains(&code), "{path} {json}: {code}");
    }
    probe(&lk);
    eprintln!(
        "slowest /-/healthy during the hostile clients: {worst:?} ({n} idle connections; {:?} in all)",
        started.elapsed()
    );
    assert!(lk.terminate().success());
}

/// Past `web.max_connections`, a connection gets a 503 and is closed, and the listener
/// keeps accepting.
#[test]
fn issue_12_connections_past_the_limit_get_503() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &format!("{FAST}web:\n  max_connections: 20\n"));
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    let addr = lk.base.trim_start_matches("http://").to_string();
    let idle: Vec<std::net::TcpStream> = (0..20)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let status = raw(&lk.base, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    drop(idle);
    wait_until("a free connection slot", Duration::from_secs(10), || {
        raw(
            &lk.base,
            b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .starts_with("HTTP/1.1 200")
    });
    assert!(lk.terminate().success());
}

fn count_at(lk: &Lookout, q: &str, t: f64) -> f64 {
    let v: Value = http()
        .get(format!("{}/api/v1/query", lk.base))
        .query(&[("query", q.to_string()), ("time", format!("{t:.3}"))])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap()
}

/// Issue 12: SIGKILL at arbitrary moments while the server ingests and compacts three
/// days of imported blocks (2 h → 12 h → 3 d) at start-up: every restart serves every
/// imported sample exactly once (no block lost, none counted twice after a compaction
/// cut short) and every live sample a query saw before the kill (`wal_sync: always`).
#[test]
fn issue_12_repeated_sigkill_during_ingest_and_compaction_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let om = dir.path().join("old.om");
    let now = now_secs() as i64;
    let (from, to) = (now - 3 * 86_400, now - 3 * 3600);
    let mut text = String::from("# TYPE old gauge\n");
    let mut imported = 0u64;
    // Enough that compacting it at start-up takes a while in a debug build.
    for s in 0..100 {
        let mut t = from;
        while t < to {
            text.push_str(&format!("old{{s=\"{s}\"}} {} {t}\n", t % 97));
            imported += 1;
            t += 30;
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(&om, &text).unwrap();
    let out = run(&["import", "openmetrics", utf8(&om), "--data", utf8(&data)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = write_config(
        dir.path(),
        "global:\n  scrape_interval: 200ms\nstorage:\n  wal_sync: always\n  wal_segment_size: 64KB\n",
    );
    let all_old = "sum(count_over_time(old[4d]))";
    let live = "count_over_time(node_load1[1h])";
    let mut seen_live = 0.0;
    let mut kills = 0;
    for round in 0..8u64 {
        // First kill it while it opens the store and compacts, before it listens.
        let mut early = std::process::Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + (round * 131) % 400));
        early.kill().unwrap();
        early.wait().unwrap();
        kills += 1;
        let lk = Lookout::start(&data, &cfg);
        let t = now_secs();
        assert_eq!(
            count_at(&lk, all_old, t) as u64,
            imported,
            "round {round}: imported samples lost or doubled"
        );
        let live_now = count_at(&lk, live, t);
        assert!(
            live_now >= seen_live,
            "round {round}: live samples a query saw were lost ({live_now} < {seen_live})"
        );
        // Let it ingest (and go on compacting) for a varying while, note what a query
        // sees, then kill it without warning.
        std::thread::sleep(Duration::from_millis(50 + (round * 397) % 1200));
        seen_live = count_at(&lk, live, now_secs() + 0.001);
        let mut lk = lk;
        lk.child.kill().unwrap();
        lk.child.wait().unwrap();
        kills += 1;
    }
    let lk = Lookout::start(&data, &cfg);
    let t = now_secs();
    assert_eq!(count_at(&lk, all_old, t) as u64, imported);
    assert!(count_at(&lk, live, t) >= seen_live);
    // Compaction got through in the end: the 2 h blocks were merged.
    let blocks = std::fs::read_dir(data.join("blocks")).unwrap().count();
    assert!(blocks < 36, "{blocks} blocks: compaction never finished");
    assert!(lk.terminate().success());
    eprintln!("{kills} SIGKILLs, {imported} imported samples intact, {blocks} blocks");
}

/// Issue 12 item 12, with a real full disk: a silence or an acknowledgement that cannot
/// be saved is a 500 and is not kept; once space returns they save; an import onto a full
/// disk fails and leaves nothing behind.
#[test]
fn issue_12_a_full_disk_fails_state_saves_and_imports_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let fs = TinyFs::mount(&dir.path().join("tiny"), "8m");
    let data = fs.0.join("data");
    write_silent_alertmanager(dir.path());
    let cfg = write_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\nnotifier:\n  config_file: alertmanager.yml\n",
    );
    let lk = Lookout::start(&data, &cfg);
    let post = |path: &str, body: String| lk.post(path, "application/json", body);
    let (code, _) = post(
        "/api/v2/alerts",
        r#"[{"labels": {"alertname": "DiskTest", "instance": "a"}}]"#.into(),
    );
    assert_eq!(code, 200);
    let (_, alerts) = lk.get("/api/v2/alerts");
    let alerts: Value = serde_json::from_str(&alerts).unwrap();
    let fp = alerts[0]["fingerprint"].as_str().unwrap().to_string();
    let silence = format!(
        r#"{{"matchers": [{{"name": "alertname", "value": "DiskTest", "isRegex": false}}], "startsAt": "{}", "endsAt": "2099-01-01T00:00:00Z", "createdBy": "test", "comment": "disk"}}"#,
        lookout_model::format_rfc3339(lookout_model::now_ms())
    );

    let filler = fs.fill();
    let (code, body) = post("/api/v2/silences", silence.clone());
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("saving silences"), "{body}");
    let (_, list) = lk.get("/api/v2/silences");
    assert_eq!(list.trim(), "[]", "a silence that was not saved was kept");
    let (code, body) = post(
        &format!("/api/v1/lookout/alerts/{fp}/ack"),
        r#"{"who": "alice", "comment": "x"}"#.into(),
    );
    assert_eq!(code, 500, "{body}");

    // An import onto the full disk fails and leaves no directory behind.
    let om = dir.path().join("in.om");
    let now = now_secs() as i64 - 3600;
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("big{{i=\"{}\"}} {i} {}\n", i % 500, now + i / 500));
    }
    text.push_str("# EOF\n");
    std::fs::write(&om, text).unwrap();
    let target = fs.0.join("imported");
    let out = run(&["import", "openmetrics", utf8(&om), "--data", utf8(&target)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !target.exists(),
        "a failed import left {}",
        target.display()
    );

    // Space returns: both save.
    std::fs::remove_file(&filler).unwrap();
    let (code, body) = post("/api/v2/silences", silence);
    assert_eq!(code, 200, "{body}");
    let (code, body) = post(
        &format!("/api/v1/lookout/alerts/{fp}/ack"),
        r#"{"who": "alice", "comment": "x"}"#.into(),
    );
    assert_eq!(code, 200, "{body}");
    assert!(lk.terminate().success());
}
