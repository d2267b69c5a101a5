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
