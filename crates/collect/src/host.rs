//! The host collector: node_exporter's names and labels for its cpu, meminfo, loadavg,
//! filesystem, diskstats, netdev, netstat, vmstat, stat, uname, time, pressure and filefd
//! collectors, read from /proc, /sys and statvfs, and the rest of its defaults in
//! `node_more` (arp, conntrack, entropy, netclass, os, selinux, sockstat, softnet,
//! textfile, udp_queues), each part's time and success as
//! `node_scrape_collector_{duration_seconds,success}`. netstat and vmstat keep the fields
//! node_exporter keeps by default. The time zone is read from /etc/localtime's link and
//! reported only when it is UTC (no time zone database is bundled).

use std::time::{SystemTime, UNIX_EPOCH};

use procfs::CurrentSI;
use regex::Regex;

use crate::{Collector, Error, Metric, Result, push_family};

/// node_exporter's default filesystem mount point exclusions.
const MOUNT_EXCLUDE: &str =
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter's default filesystem type exclusions.
const FSTYPE_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$";
/// node_exporter's default disk device exclusions (partitions, loop and ram devices).
const DISK_EXCLUDE: &str = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

/// Reads this host's vitals under node_exporter's metric names.
#[derive(Debug)]
pub struct HostCollector {
    textfile_dir: Option<std::path::PathBuf>,
    mount_exclude: Regex,
    fstype_exclude: Regex,
    disk_exclude: Regex,
    netstat_fields: Regex,
    vmstat_fields: Regex,
}

/// node_exporter's default `--collector.netstat.fields`.
const NETSTAT_FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";
/// node_exporter's default `--collector.vmstat.fields`.
const VMSTAT_FIELDS: &str = r"^(oom_kill|pgpg|pswp|pg.*fault).*";

impl Default for HostCollector {
    fn default() -> Self {
        Self {
            textfile_dir: None,
            mount_exclude: Regex::new(MOUNT_EXCLUDE).expect("valid regex"),
            fstype_exclude: Regex::new(FSTYPE_EXCLUDE).expect("valid regex"),
            disk_exclude: Regex::new(DISK_EXCLUDE).expect("valid regex"),
            netstat_fields: Regex::new(NETSTAT_FIELDS).expect("valid regex"),
            vmstat_fields: Regex::new(VMSTAT_FIELDS).expect("valid regex"),
        }
    }
}

fn read_err(what: &'static str) -> impl FnOnce(procfs::ProcError) -> Error {
    move |e| Error::Read {
        what,
        message: e.to_string(),
    }
}

impl HostCollector {
    /// Reads node_exporter's textfile directory (`*.prom`) on every run as well.
    pub fn with_textfile_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.textfile_dir = dir;
        self
    }

    fn cpu(&self, out: &mut Vec<Metric>) -> Result<()> {
        let stat = procfs::KernelStats::current().map_err(read_err("/proc/stat"))?;
        let tps = procfs::ticks_per_second() as f64;
        for (i, c) in stat.cpu_time.iter().enumerate() {
            let cpu = i.to_string();
            let modes = [
                ("user", Some(c.user)),
                ("nice", Some(c.nice)),
                ("system", Some(c.system)),
                ("idle", Some(c.idle)),
                ("iowait", c.iowait),
                ("irq", c.irq),
                ("softirq", c.softirq),
                ("steal", c.steal),
            ];
            for (mode, ticks) in modes {
                if let Some(t) = ticks {
                    out.push(Metric::new(
                        "node_cpu_seconds_total",
                        &[("cpu", &cpu), ("mode", mode)],
                        t as f64 / tps,
                    ));
                }
            }
            for (mode, ticks) in [("user", c.guest), ("nice", c.guest_nice)] {
                if let Some(t) = ticks {
                    out.push(Metric::new(
                        "node_cpu_guest_seconds_total",
                        &[("cpu", &cpu), ("mode", mode)],
                        t as f64 / tps,
                    ));
                }
            }
        }
        if let Some(intr) = read("/proc/stat")?
            .lines()
            .find_map(|l| l.strip_prefix("intr "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            out.push(Metric::new("node_intr_total", &[], intr));
        }
        push_family(
            out,
            &[],
            [
                ("node_boot_time_seconds", stat.btime as f64),
                ("node_context_switches_total", stat.ctxt as f64),
                ("node_forks_total", stat.processes as f64),
            ],
        );
        if let Some(r) = stat.procs_running {
            out.push(Metric::new("node_procs_running", &[], r as f64));
        }
        if let Some(b) = stat.procs_blocked {
            out.push(Metric::new("node_procs_blocked", &[], b as f64));
        }
        Ok(())
    }

    fn memory(&self, out: &mut Vec<Metric>) -> Result<()> {
        let text = read("/proc/meminfo")?;
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let mut parts = rest.split_whitespace();
            let Some(v) = parts.next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            // `Active(anon)` is `Active_anon`; sizes in kB become bytes.
            let key = key.replace('(', "_").replace(')', "");
            let (name, v) = match parts.next() {
                Some("kB") => (format!("node_memory_{key}_bytes"), v * 1024.0),
                _ => (format!("node_memory_{key}"), v),
            };
            out.push(Metric::new(&name, &[], v));
        }
        Ok(())
    }

    fn load(&self, out: &mut Vec<Metric>) -> Result<()> {
        // Parsed here rather than through procfs, whose f32 fields would lose precision.
        let text = std::fs::read_to_string("/proc/loadavg").map_err(|e| Error::Read {
            what: "/proc/loadavg",
            message: e.to_string(),
        })?;
        let mut it = text.split_whitespace();
        for name in ["node_load1", "node_load5", "node_load15"] {
            let v = it
                .next()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| Error::Read {
                    what: "/proc/loadavg",
                    message: format!("unexpected content {text:?}"),
                })?;
            out.push(Metric::new(name, &[], v));
        }
        Ok(())
    }

    fn filesystems(&self, out: &mut Vec<Metric>) -> Result<()> {
        let mounts = procfs::mounts().map_err(read_err("/proc/mounts"))?;
        let mut seen = std::collections::HashSet::new();
        for m in mounts {
            if self.mount_exclude.is_match(&m.fs_file)
                || self.fstype_exclude.is_match(&m.fs_vfstype)
            {
                continue;
            }
            if !seen.insert((m.fs_spec.clone(), m.fs_file.clone())) {
                continue;
            }
            let labels = [
                ("device", m.fs_spec.as_str()),
                ("fstype", m.fs_vfstype.as_str()),
                ("mountpoint", m.fs_file.as_str()),
            ];
            let Ok(st) = rustix::fs::statvfs(m.fs_file.as_str()) else {
                out.push(Metric::new("node_filesystem_device_error", &labels, 1.0));
                continue;
            };
            out.push(Metric::new("node_filesystem_device_error", &labels, 0.0));
            let bs = st.f_frsize as f64;
            let ro = st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY);
            push_family(
                out,
                &labels,
                [
                    ("node_filesystem_size_bytes", st.f_blocks as f64 * bs),
                    ("node_filesystem_free_bytes", st.f_bfree as f64 * bs),
                    ("node_filesystem_avail_bytes", st.f_bavail as f64 * bs),
                    ("node_filesystem_files", st.f_files as f64),
                    ("node_filesystem_files_free", st.f_ffree as f64),
                    ("node_filesystem_readonly", if ro { 1.0 } else { 0.0 }),
                ],
            );
        }
        Ok(())
    }

    fn network(&self, out: &mut Vec<Metric>) -> Result<()> {
        const RECEIVE: [&str; 8] = [
            "bytes",
            "packets",
            "errs",
            "drop",
            "fifo",
            "frame",
            "compressed",
            "multicast",
        ];
        const TRANSMIT: [&str; 8] = [
            "bytes",
            "packets",
            "errs",
            "drop",
            "fifo",
            "colls",
            "carrier",
            "compressed",
        ];
        let text = read("/proc/net/dev")?;
        for line in text.lines().skip(2) {
            let Some((dev, rest)) = line.split_once(':') else {
                continue;
            };
            let dev = dev.trim();
            let v: Vec<f64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if v.len() < 16 {
                continue;
            }
            let l = [("device", dev)];
            for (i, f) in RECEIVE.iter().enumerate() {
                out.push(Metric::new(
                    &format!("node_network_receive_{f}_total"),
                    &l,
                    v[i],
                ));
            }
            for (i, f) in TRANSMIT.iter().enumerate() {
                out.push(Metric::new(
                    &format!("node_network_transmit_{f}_total"),
                    &l,
                    v[8 + i],
                ));
            }
            let nohandler = format!("/sys/class/net/{dev}/statistics/rx_nohandler");
            if let Some(n) = std::fs::read_to_string(nohandler)
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok())
            {
                out.push(Metric::new("node_network_receive_nohandler_total", &l, n));
            }
        }
        Ok(())
    }

    fn netstat(&self, out: &mut Vec<Metric>) -> Result<()> {
        let mut fields: Vec<(String, f64)> = Vec::new();
        for file in ["/proc/net/netstat", "/proc/net/snmp"] {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            for pair in lines.chunks(2) {
                let [names, values] = pair else { continue };
                let (Some((proto, names)), Some((_, values))) =
                    (names.split_once(':'), values.split_once(':'))
                else {
                    continue;
                };
                for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                    if let Ok(v) = v.parse::<f64>() {
                        fields.push((format!("{proto}_{n}"), v));
                    }
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string("/proc/net/snmp6") {
            for line in text.lines() {
                let mut it = line.split_whitespace();
                let (Some(key), Some(v)) = (it.next(), it.next().and_then(|v| v.parse().ok()))
                else {
                    continue;
                };
                // `Ip6InOctets` is protocol `Ip6`, field `InOctets`.
                if let Some(i) = key.find('6') {
                    fields.push((format!("{}_{}", &key[..=i], &key[i + 1..]), v));
                }
            }
        }
        for (name, v) in fields {
            if self.netstat_fields.is_match(&name) {
                out.push(Metric::new(&format!("node_netstat_{name}"), &[], v));
            }
        }
        Ok(())
    }

    fn vmstat(&self, out: &mut Vec<Metric>) -> Result<()> {
        for line in read("/proc/vmstat")?.lines() {
            let mut it = line.split_whitespace();
            if let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<f64>().ok()))
                && self.vmstat_fields.is_match(k)
            {
                out.push(Metric::new(&format!("node_vmstat_{k}"), &[], v));
            }
        }
        Ok(())
    }

    fn filefd(&self, out: &mut Vec<Metric>) -> Result<()> {
        let text = read("/proc/sys/fs/file-nr")?;
        let v: Vec<f64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [allocated, _, maximum] = v[..] {
            out.push(Metric::new("node_filefd_allocated", &[], allocated));
            out.push(Metric::new("node_filefd_maximum", &[], maximum));
        }
        Ok(())
    }

    fn pressure(&self, out: &mut Vec<Metric>) {
        for (res, some, full) in [
            ("cpu", "node_pressure_cpu_waiting_seconds_total", None),
            (
                "io",
                "node_pressure_io_waiting_seconds_total",
                Some("node_pressure_io_stalled_seconds_total"),
            ),
            (
                "memory",
                "node_pressure_memory_waiting_seconds_total",
                Some("node_pressure_memory_stalled_seconds_total"),
            ),
        ] {
            // Kernels without PSI have no /proc/pressure: nothing to report.
            let Ok(text) = std::fs::read_to_string(format!("/proc/pressure/{res}")) else {
                continue;
            };
            for line in text.lines() {
                let total = line
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix("total="))
                    .and_then(|v| v.parse::<f64>().ok());
                let name = if line.starts_with("some") {
                    Some(some)
                } else if line.starts_with("full") {
                    full
                } else {
                    None
                };
                if let (Some(name), Some(total)) = (name, total) {
                    out.push(Metric::new(name, &[], total / 1e6));
                }
            }
        }
    }

    fn uname_and_time(&self, out: &mut Vec<Metric>) {
        let u = rustix::system::uname();
        let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
        let (sysname, nodename, release, version, machine) = (
            s(u.sysname()),
            s(u.nodename()),
            s(u.release()),
            s(u.version()),
            s(u.machine()),
        );
        let domainname = std::fs::read_to_string("/proc/sys/kernel/domainname")
            .map(|d| d.trim().to_string())
            .unwrap_or_default();
        out.push(Metric::new(
            "node_uname_info",
            &[
                ("domainname", domainname.as_str()),
                ("machine", machine.as_str()),
                ("nodename", nodename.as_str()),
                ("release", release.as_str()),
                ("sysname", sysname.as_str()),
                ("version", version.as_str()),
            ],
            1.0,
        ));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        out.push(Metric::new("node_time_seconds", &[], now));
        let utc = match std::fs::read_link("/etc/localtime") {
            Ok(target) => {
                let t = target.to_string_lossy();
                ["/UTC", "/UCT", "/Universal", "/Zulu", "/Etc/UTC"]
                    .iter()
                    .any(|z| t.ends_with(z))
            }
            Err(_) => !std::path::Path::new("/etc/localtime").exists(),
        };
        if utc && std::env::var_os("TZ").is_none() {
            out.push(Metric::new(
                "node_time_zone_offset_seconds",
                &[("time_zone", "UTC")],
                0.0,
            ));
        }
        let dir = "/sys/devices/system/clocksource/clocksource0";
        if let Ok(avail) = std::fs::read_to_string(format!("{dir}/available_clocksource")) {
            for c in avail.split_whitespace() {
                out.push(Metric::new(
                    "node_time_clocksource_available_info",
                    &[("clocksource", c), ("device", "0")],
                    1.0,
                ));
            }
        }
        if let Ok(cur) = std::fs::read_to_string(format!("{dir}/current_clocksource")) {
            out.push(Metric::new(
                "node_time_clocksource_current_info",
                &[("clocksource", cur.trim()), ("device", "0")],
                1.0,
            ));
        }
    }

    fn disks(&self, out: &mut Vec<Metric>) -> Result<()> {
        // (column after the name, metric, scale): node_exporter's diskstats collector.
        // Sectors are 512 bytes whatever the device's sector size; times are in ms.
        const COLUMNS: [(usize, &str, f64); 17] = [
            (0, "node_disk_reads_completed_total", 1.0),
            (1, "node_disk_reads_merged_total", 1.0),
            (2, "node_disk_read_bytes_total", 512.0),
            (3, "node_disk_read_time_seconds_total", 0.001),
            (4, "node_disk_writes_completed_total", 1.0),
            (5, "node_disk_writes_merged_total", 1.0),
            (6, "node_disk_written_bytes_total", 512.0),
            (7, "node_disk_write_time_seconds_total", 0.001),
            (8, "node_disk_io_now", 1.0),
            (9, "node_disk_io_time_seconds_total", 0.001),
            (10, "node_disk_io_time_weighted_seconds_total", 0.001),
            (11, "node_disk_discards_completed_total", 1.0),
            (12, "node_disk_discards_merged_total", 1.0),
            (13, "node_disk_discarded_sectors_total", 1.0),
            (14, "node_disk_discard_time_seconds_total", 0.001),
            (15, "node_disk_flush_requests_total", 1.0),
            (16, "node_disk_flush_requests_time_seconds_total", 0.001),
        ];
        for line in read("/proc/diskstats")?.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 14 || self.disk_exclude.is_match(f[2]) {
                continue;
            }
            let l = [("device", f[2])];
            let stats: Vec<f64> = f[3..].iter().filter_map(|x| x.parse().ok()).collect();
            for (i, name, scale) in COLUMNS {
                if let Some(v) = stats.get(i) {
                    out.push(Metric::new(name, &l, v * scale));
                }
            }
            out.push(Metric::new(
                "node_disk_info",
                &[("device", f[2]), ("major", f[0]), ("minor", f[1])],
                1.0,
            ));
        }
        Ok(())
    }
}

/// Reads a whole /proc or /sys file.
fn read(path: &'static str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Read {
        what: path,
        message: e.to_string(),
    })
}

impl Collector for HostCollector {
    fn name(&self) -> &str {
        "host"
    }

    fn collect(&self, out: &mut Vec<Metric>) -> Result<()> {
        // Every part runs even if an earlier one fails; the first error is reported. Each
        // part's time and success are reported as node_exporter reports its collectors'.
        type Part<'a> = (
            &'static str,
            Box<dyn Fn(&mut Vec<Metric>) -> Result<()> + 'a>,
        );
        let parts: [Part<'_>; 12] = [
            ("cpu", Box::new(|o| self.cpu(o))),
            ("meminfo", Box::new(|o| self.memory(o))),
            ("loadavg", Box::new(|o| self.load(o))),
            ("filesystem", Box::new(|o| self.filesystems(o))),
            ("netdev", Box::new(|o| self.network(o))),
            ("netstat", Box::new(|o| self.netstat(o))),
            ("vmstat", Box::new(|o| self.vmstat(o))),
            ("filefd", Box::new(|o| self.filefd(o))),
            ("diskstats", Box::new(|o| self.disks(o))),
            (
                "pressure",
                Box::new(|o| {
                    self.pressure(o);
                    Ok(())
                }),
            ),
            (
                "uname",
                Box::new(|o| {
                    self.uname_and_time(o);
                    Ok(())
                }),
            ),
            (
                "more",
                Box::new(|o| crate::node_more::collect(self.textfile_dir.as_deref(), o)),
            ),
        ];
        let mut first_error = None;
        for (name, part) in parts {
            let started = std::time::Instant::now();
            let res = part(out);
            let l = [("collector", name)];
            out.push(Metric::new(
                "node_scrape_collector_duration_seconds",
                &l,
                started.elapsed().as_secs_f64(),
            ));
            out.push(Metric::new(
                "node_scrape_collector_success",
                &l,
                if res.is_ok() { 1.0 } else { 0.0 },
            ));
            if let Err(e) = res {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(out: &[Metric]) -> std::collections::BTreeSet<String> {
        out.iter()
            .filter_map(|m| m.labels.metric_name().map(str::to_string))
            .collect()
    }

    #[test]
    fn reads_node_exporter_families_from_this_host() {
        let mut out = Vec::new();
        HostCollector::default().collect(&mut out).unwrap();
        let n = names(&out);
        for want in [
            "node_cpu_seconds_total",
            "node_memory_MemTotal_bytes",
            "node_memory_MemAvailable_bytes",
            "node_load1",
            "node_load15",
            "node_network_receive_bytes_total",
            "node_boot_time_seconds",
            "node_time_seconds",
            "node_filesystem_size_bytes",
        ] {
            assert!(n.contains(want), "missing {want}");
        }
        let idle = out
            .iter()
            .find(|m| {
                m.labels.metric_name() == Some("node_cpu_seconds_total")
                    && m.labels.get("mode") == Some("idle")
                    && m.labels.get("cpu") == Some("0")
            })
            .expect("cpu 0 idle");
        assert!(idle.value > 0.0);
        let lo = out.iter().find(|m| m.labels.get("device") == Some("lo"));
        assert!(lo.is_some(), "loopback device is reported");
    }

    #[test]
    fn default_exclusions_match_node_exporter() {
        let h = HostCollector::default();
        assert!(h.disk_exclude.is_match("sda1"));
        assert!(h.disk_exclude.is_match("nvme0n1p2"));
        assert!(!h.disk_exclude.is_match("nvme0n1"));
        assert!(!h.disk_exclude.is_match("sda"));
        assert!(h.mount_exclude.is_match("/proc/sys"));
        assert!(!h.mount_exclude.is_match("/"));
        assert!(!h.fstype_exclude.is_match("tmpfs"));
        assert!(h.fstype_exclude.is_match("overlay"));
    }
}
