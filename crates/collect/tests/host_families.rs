//! The host collector against node_exporter's families (the list in
//! `testdata/families/node.txt` was taken from Debian's prometheus-node-exporter on a
//! machine of this kind, restricted to the collectors Lookout implements: cpu, meminfo,
//! loadavg, filesystem, diskstats, netdev, netstat, vmstat, stat, uname, time, boot time,
//! pressure, filefd). A family whose source this host lacks (a meminfo field, PSI, any
//! disk) is not expected.

use std::collections::BTreeSet;
use std::path::Path;

use lookout_collect::{Collector, HostCollector};

fn expected_here(name: &str) -> bool {
    if name.starts_with("node_memory_") {
        // The family of each /proc/meminfo field, named as node_exporter names it.
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        return meminfo.lines().any(|l| {
            let (key, rest) = l.split_once(':').unwrap();
            let key = key.replace('(', "_").replace(')', "");
            let fam = if rest.trim_end().ends_with("kB") {
                format!("node_memory_{key}_bytes")
            } else {
                format!("node_memory_{key}")
            };
            fam == name
        });
    }
    if name.starts_with("node_pressure_") {
        return Path::new("/proc/pressure/cpu").exists();
    }
    if name.starts_with("node_disk_") {
        return std::fs::read_to_string("/proc/diskstats")
            .unwrap()
            .lines()
            .any(|l| {
                let dev = l.split_whitespace().nth(2).unwrap_or("");
                !(dev.starts_with("loop") || dev.starts_with("ram") || dev.starts_with("fd"))
            });
    }
    true
}

#[test]
fn host_collector_writes_node_exporter_families() {
    let want: BTreeSet<String> = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/families/node.txt"),
    )
    .unwrap()
    .lines()
    .filter(|l| !l.is_empty() && !l.starts_with('#'))
    .map(str::to_string)
    .collect();
    let mut out = Vec::new();
    HostCollector::default().collect(&mut out).unwrap();
    let got: BTreeSet<String> = out
        .iter()
        .filter_map(|m| m.labels.metric_name().map(str::to_string))
        .collect();
    let missing: Vec<&String> = want
        .iter()
        .filter(|n| !got.contains(*n) && expected_here(n))
        .collect();
    assert!(
        missing.is_empty(),
        "missing {} families: {missing:?}",
        missing.len()
    );
}

/// Debian's node_exporter on a free port, stopped by PID when dropped.
struct NodeExporter(std::process::Child, u16);

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The one family node_exporter writes that Lookout does not: node_exporter's own build.
fn not_expected(name: &str) -> bool {
    name == "node_exporter_build_info"
}

/// Each family's label names (empty values dropped, as storage drops them) and the
/// values of the labels that name a device or a CPU.
type Families = std::collections::BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>;

fn families<'a>(samples: impl Iterator<Item = (&'a str, Vec<(String, String)>)>) -> Families {
    let mut out = Families::new();
    for (name, labels) in samples {
        if !name.starts_with("node_") {
            continue;
        }
        let e = out.entry(name.to_string()).or_default();
        for (k, v) in labels {
            if v.is_empty() {
                continue;
            }
            if k == "device" || k == "cpu" {
                e.1.insert(format!("{k}={v}"));
            }
            e.0.insert(k);
        }
    }
    out
}

/// A plain HTTP/1.0 GET on loopback: the body of a 200, or None.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

/// Device differences that are choices, not gaps: Lookout follows node_exporter 1.6+'s
/// default of leaving zram disks out (Debian's 1.5 reports them), and reports `lo` in
/// netdev as node_exporter does without netlink (1.5's netlink path leaves it out).
/// Mounted filesystems depend on the mount namespace each process sees; their labels
/// are compared, not which ones there are.
fn tolerated(name: &str, ours: &BTreeSet<String>, theirs: &BTreeSet<String>) -> bool {
    let only_theirs = theirs.difference(ours);
    let only_ours = ours.difference(theirs);
    if name.starts_with("node_scrape_collector_") || name.starts_with("node_filesystem_") {
        return true;
    }
    if name.starts_with("node_disk_") {
        return only_ours.count() == 0
            && only_theirs
                .into_iter()
                .all(|d| d.starts_with("device=zram"));
    }
    if name.starts_with("node_network_receive_") || name.starts_with("node_network_transmit_") {
        return only_theirs.count() == 0 && only_ours.into_iter().all(|d| d == "device=lo");
    }
    false
}

#[test]
fn host_collector_matches_the_live_node_exporter_family_by_family() {
    let exe = "/usr/bin/prometheus-node-exporter";
    assert!(
        Path::new(exe).exists(),
        "needs Debian's prometheus-node-exporter (./scripts/test installs it)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ne = NodeExporter(
        std::process::Command::new(exe)
            .arg(format!("--web.listen-address=127.0.0.1:{}", port))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        port,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        if let Some(t) = http_get(ne.1, "/metrics") {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node_exporter did not answer"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let exp = lookout_expfmt::parse(&text, lookout_expfmt::Format::Prometheus).unwrap();
    let theirs = families(exp.samples.iter().map(|s| {
        (
            s.name,
            s.labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }));
    let mut out = Vec::new();
    HostCollector::default().collect(&mut out).unwrap();
    let ours = families(out.iter().map(|m| {
        (
            m.labels.metric_name().unwrap_or(""),
            m.labels
                .iter()
                .filter(|l| l.name != "__name__")
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect(),
        )
    }));
    let mut problems = Vec::new();
    for (name, (labels, ids)) in &theirs {
        if not_expected(name) {
            continue;
        }
        match ours.get(name) {
            None => problems.push(format!("{name}: missing")),
            Some((l, i)) => {
                // node_scrape_collector_*: node_exporter names its own collectors.
                if l != labels {
                    problems.push(format!("{name}: labels {l:?}, node_exporter {labels:?}"));
                } else if i != ids && !tolerated(name, i, ids) {
                    problems.push(format!("{name}: {i:?}, node_exporter {ids:?}"));
                }
            }
        }
    }
    // Values that do not move between two reads must agree too (units and scaling).
    for name in [
        "node_timex_tick_seconds",
        "node_timex_status",
        "node_timex_loop_time_constant",
        "node_timex_tai_offset_seconds",
        "node_entropy_pool_size_bits",
        "node_nf_conntrack_entries_limit",
        "node_network_mtu_bytes",
    ] {
        let mut theirs: Vec<f64> = exp
            .samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .collect();
        let mut ours: Vec<f64> = out
            .iter()
            .filter(|m| m.labels.metric_name() == Some(name))
            .map(|m| m.value)
            .collect();
        theirs.sort_by(f64::total_cmp);
        ours.sort_by(f64::total_cmp);
        if !theirs.is_empty() && theirs != ours {
            problems.push(format!("{name}: {ours:?}, node_exporter {theirs:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
