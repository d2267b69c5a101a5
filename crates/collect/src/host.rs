//! The host collector: node_exporter's names and labels for cpu, memory, load, filesystems,
//! network devices, disks, boot time and time, read from /proc and statvfs.

use std::time::{SystemTime, UNIX_EPOCH};

use procfs::{Current, CurrentSI};
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
    mount_exclude: Regex,
    fstype_exclude: Regex,
    disk_exclude: Regex,
}

impl Default for HostCollector {
    fn default() -> Self {
        Self {
            mount_exclude: Regex::new(MOUNT_EXCLUDE).expect("valid regex"),
            fstype_exclude: Regex::new(FSTYPE_EXCLUDE).expect("valid regex"),
            disk_exclude: Regex::new(DISK_EXCLUDE).expect("valid regex"),
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
        let m = procfs::Meminfo::current().map_err(read_err("/proc/meminfo"))?;
        let mut put = |name: &str, v: u64| {
            out.push(Metric::new(
                &format!("node_memory_{name}_bytes"),
                &[],
                v as f64,
            ));
        };
        put("MemTotal", m.mem_total);
        put("MemFree", m.mem_free);
        if let Some(a) = m.mem_available {
            put("MemAvailable", a);
        }
        put("Buffers", m.buffers);
        put("Cached", m.cached);
        put("SwapTotal", m.swap_total);
        put("SwapFree", m.swap_free);
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
            let Ok(st) = rustix::fs::statvfs(m.fs_file.as_str()) else {
                continue;
            };
            let labels = [
                ("device", m.fs_spec.as_str()),
                ("fstype", m.fs_vfstype.as_str()),
                ("mountpoint", m.fs_file.as_str()),
            ];
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
        let devs = procfs::net::dev_status().map_err(read_err("/proc/net/dev"))?;
        for (name, d) in devs {
            let l = [("device", name.as_str())];
            push_family(
                out,
                &l,
                [
                    ("node_network_receive_bytes_total", d.recv_bytes as f64),
                    ("node_network_receive_packets_total", d.recv_packets as f64),
                    ("node_network_receive_errs_total", d.recv_errs as f64),
                    ("node_network_receive_drop_total", d.recv_drop as f64),
                    ("node_network_transmit_bytes_total", d.sent_bytes as f64),
                    ("node_network_transmit_packets_total", d.sent_packets as f64),
                    ("node_network_transmit_errs_total", d.sent_errs as f64),
                    ("node_network_transmit_drop_total", d.sent_drop as f64),
                ],
            );
        }
        Ok(())
    }

    fn disks(&self, out: &mut Vec<Metric>) -> Result<()> {
        let disks = procfs::diskstats().map_err(read_err("/proc/diskstats"))?;
        for d in disks {
            if self.disk_exclude.is_match(&d.name) {
                continue;
            }
            let l = [("device", d.name.as_str())];
            // /proc/diskstats counts 512-byte sectors whatever the device's sector size.
            push_family(
                out,
                &l,
                [
                    ("node_disk_read_bytes_total", d.sectors_read as f64 * 512.0),
                    (
                        "node_disk_written_bytes_total",
                        d.sectors_written as f64 * 512.0,
                    ),
                    ("node_disk_reads_completed_total", d.reads as f64),
                    ("node_disk_writes_completed_total", d.writes as f64),
                    (
                        "node_disk_io_time_seconds_total",
                        d.time_in_progress as f64 / 1000.0,
                    ),
                ],
            );
        }
        Ok(())
    }
}

impl Collector for HostCollector {
    fn name(&self) -> &str {
        "host"
    }

    fn collect(&self, out: &mut Vec<Metric>) -> Result<()> {
        // Every part runs even if an earlier one fails; the first error is reported.
        let results = [
            self.cpu(out),
            self.memory(out),
            self.load(out),
            self.filesystems(out),
            self.network(out),
            self.disks(out),
        ];
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        out.push(Metric::new("node_time_seconds", &[], now));
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
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
