//! The rest of node_exporter's default collectors on Linux, under its names and labels:
//! arp, conntrack, entropy, netclass, os, selinux, sockstat, softnet, textfile, timex and
//! udp_queues. Each part is a parser over the file's text (unit-tested with fixed
//! input) and a reader of the real file; a file that is missing on this kernel leaves
//! its part out, as node_exporter does.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{Metric, Result};

fn metric(out: &mut Vec<Metric>, name: &str, labels: &[(&str, &str)], v: f64) {
    out.push(Metric::new(name, labels, v));
}

/// `/proc/net/arp`: entries per device (`node_arp_entries{device}`).
pub(crate) fn arp(text: &str, out: &mut Vec<Metric>) {
    let mut per: BTreeMap<&str, f64> = BTreeMap::new();
    for line in text.lines().skip(1) {
        if let Some(dev) = line.split_whitespace().nth(5) {
            *per.entry(dev).or_default() += 1.0;
        }
    }
    for (dev, n) in per {
        metric(out, "node_arp_entries", &[("device", dev)], n);
    }
}

/// `/proc/net/stat/nf_conntrack`: the named hex columns summed over CPUs.
pub(crate) fn conntrack_stat(text: &str, out: &mut Vec<Metric>) {
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return };
    let names: Vec<&str> = header.split_whitespace().collect();
    let mut sums = vec![0.0f64; names.len()];
    for line in lines {
        for (i, v) in line.split_whitespace().enumerate().take(names.len()) {
            sums[i] += u64::from_str_radix(v, 16).unwrap_or(0) as f64;
        }
    }
    for field in [
        "found",
        "invalid",
        "ignore",
        "insert",
        "insert_failed",
        "drop",
        "early_drop",
        "search_restart",
    ] {
        if let Some(i) = names.iter().position(|n| *n == field) {
            metric(
                out,
                &format!("node_nf_conntrack_stat_{field}"),
                &[],
                sums[i],
            );
        }
    }
}

/// `/etc/os-release`: `node_os_info` with every field node_exporter labels, and
/// `node_os_version` (the numeric `VERSION_ID`).
pub(crate) fn os_release(text: &str, out: &mut Vec<Metric>) {
    let mut f: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(v);
        f.insert(
            k.trim().to_ascii_lowercase(),
            v.replace("\\\"", "\"").replace("\\\\", "\\"),
        );
    }
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let keys = [
        "build_id",
        "id",
        "id_like",
        "image_id",
        "image_version",
        "name",
        "pretty_name",
        "variant",
        "variant_id",
        "version",
        "version_codename",
        "version_id",
    ];
    let labels: Vec<(&str, &str)> = keys.iter().map(|k| (*k, get(k))).collect();
    metric(out, "node_os_info", &labels, 1.0);
    // "12" and "22.04" are numbers; "bookworm/sid" is not.
    let version = get("version_id")
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
        .parse::<f64>();
    if let Ok(v) = version {
        metric(
            out,
            "node_os_version",
            &[
                ("id", get("id")),
                ("id_like", get("id_like")),
                ("name", get("name")),
            ],
            v,
        );
    }
}

/// `/proc/net/sockstat` (`suffix` "") and `/proc/net/sockstat6` (`suffix` "6").
pub(crate) fn sockstat(text: &str, suffix: &str, page_size: f64, out: &mut Vec<Metric>) {
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        for pair in fields.chunks(2) {
            let [key, value] = pair else { continue };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if proto == "sockets" {
                metric(out, &format!("node_sockstat_sockets_{key}"), &[], v);
                continue;
            }
            // sockstat6 names its protocols TCP6, UDP6…; sockstat TCP, UDP….
            let proto = proto.trim_end_matches('6');
            metric(out, &format!("node_sockstat_{proto}{suffix}_{key}"), &[], v);
            if *key == "mem" {
                metric(
                    out,
                    &format!("node_sockstat_{proto}{suffix}_mem_bytes"),
                    &[],
                    v * page_size,
                );
            }
        }
    }
}

/// `/proc/net/softnet_stat`: per CPU (the line's index), processed, dropped and
/// time-squeezed packets.
pub(crate) fn softnet(text: &str, out: &mut Vec<Metric>) {
    for (i, line) in text.lines().enumerate() {
        let v: Vec<f64> = line
            .split_whitespace()
            .map(|x| u64::from_str_radix(x, 16).unwrap_or(0) as f64)
            .collect();
        if v.len() < 3 {
            continue;
        }
        let cpu = i.to_string();
        let l = [("cpu", cpu.as_str())];
        metric(out, "node_softnet_processed_total", &l, v[0]);
        metric(out, "node_softnet_dropped_total", &l, v[1]);
        metric(out, "node_softnet_times_squeezed_total", &l, v[2]);
    }
}

/// `/proc/net/udp` or `udp6`: the summed transmit and receive queues.
pub(crate) fn udp_queues(text: &str, ip: &str, out: &mut Vec<Metric>) {
    let (mut tx, mut rx) = (0.0, 0.0);
    for line in text.lines().skip(1) {
        if let Some((t, r)) = line
            .split_whitespace()
            .nth(4)
            .and_then(|q| q.split_once(':'))
        {
            tx += u64::from_str_radix(t, 16).unwrap_or(0) as f64;
            rx += u64::from_str_radix(r, 16).unwrap_or(0) as f64;
        }
    }
    metric(out, "node_udp_queues", &[("ip", ip), ("queue", "rx")], rx);
    metric(out, "node_udp_queues", &[("ip", ip), ("queue", "tx")], tx);
}

/// `/sys/class/net/<device>/*`: one device's netclass figures. `attr` reads an
/// attribute (None when missing or unreadable, as `carrier` is on a down link).
pub(crate) fn netclass(device: &str, attr: &dyn Fn(&str) -> Option<String>, out: &mut Vec<Metric>) {
    let l = [("device", device)];
    let num = |name: &str| -> Option<f64> {
        let s = attr(name)?;
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok().map(|v| v as f64),
            None => s.parse::<f64>().ok(),
        }
    };
    let plain = [
        ("addr_assign_type", "node_network_address_assign_type"),
        ("carrier", "node_network_carrier"),
        ("carrier_changes", "node_network_carrier_changes_total"),
        ("carrier_up_count", "node_network_carrier_up_changes_total"),
        (
            "carrier_down_count",
            "node_network_carrier_down_changes_total",
        ),
        ("dev_id", "node_network_device_id"),
        ("dormant", "node_network_dormant"),
        ("flags", "node_network_flags"),
        ("ifindex", "node_network_iface_id"),
        ("iflink", "node_network_iface_link"),
        ("link_mode", "node_network_iface_link_mode"),
        ("mtu", "node_network_mtu_bytes"),
        ("name_assign_type", "node_network_name_assign_type"),
        ("netdev_group", "node_network_net_dev_group"),
        ("type", "node_network_protocol_type"),
        ("tx_queue_len", "node_network_transmit_queue_length"),
    ];
    for (file, name) in plain {
        if let Some(v) = num(file) {
            metric(out, name, &l, v);
        }
    }
    // Mbit/s in bytes/s; node_exporter passes an unknown speed (-1) through the same way.
    if let Some(v) = num("speed") {
        metric(out, "node_network_speed_bytes", &l, v * 125_000.0);
    }
    let text = |f: &str| attr(f).map(|s| s.trim().to_string()).unwrap_or_default();
    let operstate = text("operstate");
    metric(
        out,
        "node_network_up",
        &l,
        if operstate == "up" { 1.0 } else { 0.0 },
    );
    let (address, broadcast, duplex, ifalias) = (
        text("address"),
        text("broadcast"),
        text("duplex"),
        text("ifalias"),
    );
    metric(
        out,
        "node_network_info",
        &[
            ("address", address.as_str()),
            ("broadcast", broadcast.as_str()),
            ("device", device),
            ("duplex", duplex.as_str()),
            ("ifalias", ifalias.as_str()),
            ("operstate", operstate.as_str()),
        ],
        1.0,
    );
}

/// The largest textfile read (a runaway script must not take the collector's memory).
const TEXTFILE_MAX_BYTES: u64 = 64 << 20;

/// The file's text, refused by name past `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > max {
        return Err(format!("larger than {} MiB", max >> 20));
    }
    Ok(text)
}

/// node_exporter's textfile collector: every `*.prom` file of `dir` in the Prometheus
/// text format, with `node_textfile_mtime_seconds{file}`; `node_textfile_scrape_error` is
/// 1 when a file could not be read or parsed (its samples are then left out).
pub(crate) fn textfile(dir: Option<&Path>, out: &mut Vec<Metric>) {
    let mut error = 0.0;
    if let Some(dir) = dir {
        let mut files: Vec<std::path::PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "prom"))
                .collect(),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "Textfile directory unreadable");
                error = 1.0;
                Vec::new()
            }
        };
        files.sort();
        for path in files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let read = read_bounded(&path, TEXTFILE_MAX_BYTES).and_then(|text| {
                let exp = lookout_expfmt::parse(&text, lookout_expfmt::Format::Prometheus)
                    .map_err(|e| e.to_string())?;
                Ok(exp
                    .samples
                    .iter()
                    .map(|s| {
                        let labels: Vec<(&str, &str)> =
                            s.labels.iter().map(|(k, v)| (*k, v.as_ref())).collect();
                        Metric::new(s.name, &labels, s.value)
                    })
                    .collect::<Vec<_>>())
            });
            match read {
                Ok(ms) => {
                    out.extend(ms);
                    let mtime = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0.0, |d| d.as_secs_f64());
                    metric(
                        out,
                        "node_textfile_mtime_seconds",
                        &[("file", name.as_str())],
                        mtime,
                    );
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "Textfile not read");
                    error = 1.0;
                }
            }
        }
    }
    metric(out, "node_textfile_scrape_error", &[], error);
}

/// The kernel clock's state as adjtimex(2) reads it (modes 0: nothing is changed), or
/// None when the call fails.
#[allow(unsafe_code)] // adjtimex has no safe binding in libc, rustix or procfs
fn adjtimex() -> Option<(i32, libc::timex)> {
    // SAFETY: `timex` is plain integers (and a timeval), so all-zero is a valid value;
    // with `modes` 0 the kernel only writes into the struct, which we own for the call.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    let state = unsafe { libc::adjtimex(&mut tx) };
    (state >= 0).then_some((state, tx))
}

/// node_exporter's timex figures from adjtimex's answer: `state` (`TIME_ERROR` = 5 is
/// unsynchronised) and the fields, scaled as its collector scales them (offsets in µs or,
/// with `STA_NANO`, ns; frequencies in ppm with 16 fractional bits).
pub(crate) fn timex(state: i32, t: &TimexFields, out: &mut Vec<Metric>) {
    const TIME_ERROR: i32 = 5;
    const STA_NANO: i64 = 0x2000;
    const PPM16: f64 = 1_000_000.0 * 65_536.0;
    let div = if t.status & STA_NANO != 0 { 1e9 } else { 1e6 };
    let values = [
        (
            "node_timex_sync_status",
            if state == TIME_ERROR { 0.0 } else { 1.0 },
        ),
        ("node_timex_offset_seconds", t.offset as f64 / div),
        (
            "node_timex_frequency_adjustment_ratio",
            1.0 + t.freq as f64 / PPM16,
        ),
        ("node_timex_maxerror_seconds", t.maxerror as f64 / 1e6),
        (
            "node_timex_estimated_error_seconds",
            t.esterror as f64 / 1e6,
        ),
        ("node_timex_status", t.status as f64),
        ("node_timex_loop_time_constant", t.constant as f64),
        ("node_timex_tick_seconds", t.tick as f64 / 1e6),
        ("node_timex_pps_frequency_hertz", t.ppsfreq as f64 / PPM16),
        ("node_timex_pps_jitter_seconds", t.jitter as f64 / div),
        ("node_timex_pps_shift_seconds", t.shift as f64),
        ("node_timex_pps_stability_hertz", t.stabil as f64 / PPM16),
        ("node_timex_pps_jitter_total", t.jitcnt as f64),
        ("node_timex_pps_calibration_total", t.calcnt as f64),
        ("node_timex_pps_error_total", t.errcnt as f64),
        ("node_timex_pps_stability_exceeded_total", t.stbcnt as f64),
        ("node_timex_tai_offset_seconds", t.tai as f64),
    ];
    for (name, v) in values {
        metric(out, name, &[], v);
    }
}

/// The adjtimex fields node_exporter reports, widened to i64.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TimexFields {
    pub(crate) offset: i64,
    pub(crate) freq: i64,
    pub(crate) maxerror: i64,
    pub(crate) esterror: i64,
    pub(crate) status: i64,
    pub(crate) constant: i64,
    pub(crate) tick: i64,
    pub(crate) ppsfreq: i64,
    pub(crate) jitter: i64,
    pub(crate) shift: i64,
    pub(crate) stabil: i64,
    pub(crate) jitcnt: i64,
    pub(crate) calcnt: i64,
    pub(crate) errcnt: i64,
    pub(crate) stbcnt: i64,
    pub(crate) tai: i64,
}

/// adjtimex's fields widened to i64 (`c_long` is 32 bits on 32-bit targets, so the
/// conversions are not useless everywhere).
#[allow(clippy::useless_conversion)]
fn timex_fields(t: &libc::timex) -> TimexFields {
    TimexFields {
        offset: i64::from(t.offset),
        freq: i64::from(t.freq),
        maxerror: i64::from(t.maxerror),
        esterror: i64::from(t.esterror),
        status: i64::from(t.status),
        constant: i64::from(t.constant),
        tick: i64::from(t.tick),
        ppsfreq: i64::from(t.ppsfreq),
        jitter: i64::from(t.jitter),
        shift: i64::from(t.shift),
        stabil: i64::from(t.stabil),
        jitcnt: i64::from(t.jitcnt),
        calcnt: i64::from(t.calcnt),
        errcnt: i64::from(t.errcnt),
        stbcnt: i64::from(t.stbcnt),
        tai: i64::from(t.tai),
    }
}

fn read_opt(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn number(path: &str) -> Option<f64> {
    read_opt(path)?.trim().parse().ok()
}

/// Every part, read from this host; `textfile_dir` is the textfile collector's directory.
pub(crate) fn collect(textfile_dir: Option<&Path>, out: &mut Vec<Metric>) -> Result<()> {
    if let Some(t) = read_opt("/proc/net/arp") {
        arp(&t, out);
    }
    if let Some(v) = number("/proc/sys/net/netfilter/nf_conntrack_count") {
        metric(out, "node_nf_conntrack_entries", &[], v);
    }
    if let Some(v) = number("/proc/sys/net/netfilter/nf_conntrack_max") {
        metric(out, "node_nf_conntrack_entries_limit", &[], v);
    }
    if let Some(t) = read_opt("/proc/net/stat/nf_conntrack") {
        conntrack_stat(&t, out);
    }
    if let Some(v) = number("/proc/sys/kernel/random/entropy_avail") {
        metric(out, "node_entropy_available_bits", &[], v);
    }
    if let Some(v) = number("/proc/sys/kernel/random/poolsize") {
        metric(out, "node_entropy_pool_size_bits", &[], v);
    }
    if let Some(t) = read_opt("/etc/os-release").or_else(|| read_opt("/usr/lib/os-release")) {
        os_release(&t, out);
    }
    // node_exporter reports SELinux as disabled when its filesystem is not mounted.
    let selinux = Path::new("/sys/fs/selinux/enforce").exists();
    metric(
        out,
        "node_selinux_enabled",
        &[],
        if selinux { 1.0 } else { 0.0 },
    );
    let page = rustix::param::page_size() as f64;
    if let Some(t) = read_opt("/proc/net/sockstat") {
        sockstat(&t, "", page, out);
    }
    if let Some(t) = read_opt("/proc/net/sockstat6") {
        sockstat(&t, "6", page, out);
    }
    if let Some(t) = read_opt("/proc/net/softnet_stat") {
        softnet(&t, out);
    }
    for (file, ip) in [("/proc/net/udp", "v4"), ("/proc/net/udp6", "v6")] {
        if let Some(t) = read_opt(file) {
            udp_queues(&t, ip, out);
        }
    }
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        let mut devs: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        devs.sort();
        for dev in devs {
            let base = Path::new("/sys/class/net").join(&dev);
            netclass(&dev, &|f| std::fs::read_to_string(base.join(f)).ok(), out);
        }
    }
    if let Some((state, t)) = adjtimex() {
        let f = timex_fields(&t);
        timex(state, &f, out);
    }
    textfile(textfile_dir, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(out: &'a [Metric], name: &str, labels: &[(&str, &str)]) -> Option<&'a Metric> {
        out.iter().find(|m| {
            m.labels.metric_name() == Some(name)
                && labels.iter().all(|(k, v)| m.labels.get(k) == Some(*v))
        })
    }

    #[test]
    fn parsers_read_the_kernels_formats() {
        let mut out = Vec::new();
        arp(
            "IP address HW type Flags HW address Mask Device\n10.0.0.1 0x1 0x2 aa:bb:cc:dd:ee:ff * eth0\n10.0.0.2 0x1 0x2 aa:bb:cc:dd:ee:01 * eth0\n10.1.0.1 0x1 0x2 aa:bb:cc:dd:ee:02 * wg0\n",
            &mut out,
        );
        assert_eq!(
            get(&out, "node_arp_entries", &[("device", "eth0")])
                .unwrap()
                .value,
            2.0
        );
        conntrack_stat(
            "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n00000010  00000000 0000000a 0 00000001 0 0 0 00000002 0 0 0 0 0 0 0 00000003\n00000010  00000000 00000006 0 00000001 0 0 0 00000002 0 0 0 0 0 0 0 00000001\n",
            &mut out,
        );
        assert_eq!(
            get(&out, "node_nf_conntrack_stat_found", &[])
                .unwrap()
                .value,
            16.0
        );
        assert_eq!(
            get(&out, "node_nf_conntrack_stat_search_restart", &[])
                .unwrap()
                .value,
            4.0
        );
        os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
            &mut out,
        );
        let info = get(
            &out,
            "node_os_info",
            &[("id", "debian"), ("version_codename", "bookworm")],
        )
        .unwrap();
        assert_eq!(
            info.labels.get("pretty_name"),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            get(&out, "node_os_version", &[("id", "debian")])
                .unwrap()
                .value,
            12.0
        );
        sockstat(
            "sockets: used 511\nTCP: inuse 25 orphan 0 tw 30 alloc 26 mem 67\nUDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n",
            "",
            4096.0,
            &mut out,
        );
        sockstat(
            "TCP6: inuse 1\nUDP6: inuse 0\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n",
            "6",
            4096.0,
            &mut out,
        );
        assert_eq!(
            get(&out, "node_sockstat_sockets_used", &[]).unwrap().value,
            511.0
        );
        assert_eq!(
            get(&out, "node_sockstat_TCP_mem_bytes", &[]).unwrap().value,
            67.0 * 4096.0
        );
        assert_eq!(
            get(&out, "node_sockstat_TCP6_inuse", &[]).unwrap().value,
            1.0
        );
        assert!(get(&out, "node_sockstat_FRAG6_memory", &[]).is_some());
        softnet(
            "00138c50 00000000 0000000c 00000000\n00132ce9 00000002 00000007 00000000\n",
            &mut out,
        );
        assert_eq!(
            get(&out, "node_softnet_processed_total", &[("cpu", "1")])
                .unwrap()
                .value,
            0x132ce9 as f64
        );
        assert_eq!(
            get(&out, "node_softnet_dropped_total", &[("cpu", "1")])
                .unwrap()
                .value,
            2.0
        );
        udp_queues(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0044 00000000:0000 07 00000010:00000200 00:00000000 00000000     0        0 1 2\n",
            "v4",
            &mut out,
        );
        assert_eq!(
            get(&out, "node_udp_queues", &[("ip", "v4"), ("queue", "rx")])
                .unwrap()
                .value,
            512.0
        );
        assert_eq!(
            get(&out, "node_udp_queues", &[("ip", "v4"), ("queue", "tx")])
                .unwrap()
                .value,
            16.0
        );
        let attrs: BTreeMap<&str, &str> = [
            ("operstate", "up\n"),
            ("flags", "0x1003\n"),
            ("speed", "-1\n"),
            ("mtu", "1400\n"),
            ("address", "02:fc:00:00:00:01\n"),
            ("dev_id", "0x0\n"),
        ]
        .into();
        netclass("eth0", &|f| attrs.get(f).map(|s| s.to_string()), &mut out);
        assert_eq!(
            get(&out, "node_network_flags", &[("device", "eth0")])
                .unwrap()
                .value,
            4099.0
        );
        assert_eq!(
            get(&out, "node_network_speed_bytes", &[("device", "eth0")])
                .unwrap()
                .value,
            -125_000.0
        );
        assert_eq!(
            get(&out, "node_network_up", &[("device", "eth0")])
                .unwrap()
                .value,
            1.0
        );
        assert!(
            get(&out, "node_network_carrier", &[("device", "eth0")]).is_none(),
            "no carrier file, no series"
        );
        assert!(
            get(
                &out,
                "node_network_info",
                &[
                    ("device", "eth0"),
                    ("address", "02:fc:00:00:00:01"),
                    ("operstate", "up")
                ]
            )
            .is_some()
        );
    }

    #[test]
    fn timex_scales_as_node_exporter() {
        let mut out = Vec::new();
        let t = TimexFields {
            offset: 1500,
            freq: 65_536 * 10,
            status: 0x2001,
            tick: 10_000,
            tai: 37,
            ..TimexFields::default()
        };
        timex(0, &t, &mut out);
        // STA_NANO: the offset is in nanoseconds.
        assert_eq!(
            get(&out, "node_timex_offset_seconds", &[]).unwrap().value,
            1.5e-6
        );
        assert!(
            (get(&out, "node_timex_frequency_adjustment_ratio", &[])
                .unwrap()
                .value
                - 1.00001)
                .abs()
                < 1e-12
        );
        assert_eq!(
            get(&out, "node_timex_tick_seconds", &[]).unwrap().value,
            0.01
        );
        assert_eq!(get(&out, "node_timex_sync_status", &[]).unwrap().value, 1.0);
        assert_eq!(
            get(&out, "node_timex_tai_offset_seconds", &[])
                .unwrap()
                .value,
            37.0
        );
        let mut out = Vec::new();
        timex(5, &TimexFields::default(), &mut out);
        assert_eq!(get(&out, "node_timex_sync_status", &[]).unwrap().value, 0.0);
        assert_eq!(out.len(), 17);
    }

    #[test]
    fn a_textfile_past_the_bound_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.prom");
        std::fs::write(&p, "x 1\n".repeat(100)).unwrap();
        assert!(read_bounded(&p, 1024).is_ok());
        let e = read_bounded(&p, 100).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn textfiles_are_read_and_a_bad_one_is_flagged_without_losing_the_others() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("backup.prom"), "# TYPE backup_last_success_timestamp_seconds gauge\nbackup_last_success_timestamp_seconds{job=\"nightly\"} 1.7e9\n").unwrap();
        std::fs::write(dir.path().join("broken.prom"), "this is { not valid\n").unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "x 1\n").unwrap();
        let mut out = Vec::new();
        textfile(Some(dir.path()), &mut out);
        assert_eq!(
            get(
                &out,
                "backup_last_success_timestamp_seconds",
                &[("job", "nightly")]
            )
            .unwrap()
            .value,
            1.7e9
        );
        assert!(
            get(
                &out,
                "node_textfile_mtime_seconds",
                &[("file", "backup.prom")]
            )
            .unwrap()
            .value
                > 0.0
        );
        assert!(
            get(
                &out,
                "node_textfile_mtime_seconds",
                &[("file", "broken.prom")]
            )
            .is_none()
        );
        assert_eq!(
            get(&out, "node_textfile_scrape_error", &[]).unwrap().value,
            1.0
        );
        assert!(get(&out, "x", &[]).is_none());
        let mut out = Vec::new();
        textfile(None, &mut out);
        assert_eq!(
            get(&out, "node_textfile_scrape_error", &[]).unwrap().value,
            0.0
        );
    }
}
