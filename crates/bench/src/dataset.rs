//! A node_exporter-like dataset in OpenMetrics text: per host CPU-time counters, memory
//! gauges in bytes, load averages, network and disk counters, filesystem gauges, a classic
//! latency histogram and constant info series. Counters grow by noisy increments, gauges
//! random-walk, a few series are constant; nothing is uniformly random. Timestamps are
//! 15 s apart with a per-scrape jitter of a few milliseconds, as real scrapes have.

use std::io::Write;

/// A small deterministic PRNG (SplitMix64), so datasets are reproducible from a seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

enum Kind {
    /// Counter with increments around `mean` per scrape, rounded to `decimals`.
    Counter { mean: f64, decimals: i32 },
    /// Random walk around `level` with relative `step`, rounded to `decimals`.
    Gauge {
        level: f64,
        step: f64,
        decimals: i32,
        min: f64,
    },
    /// A fixed value.
    Constant(f64),
}

struct SeriesSpec {
    /// Sample name when it differs from the family name (histogram parts).
    metric: Option<&'static str>,
    labels: String,
    kind: Kind,
}

struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    series: Vec<SeriesSpec>,
}

fn round(v: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (v * p).round() / p
}

fn families(host: usize, rng: &mut Rng) -> Vec<Family> {
    let inst = format!("instance=\"host-{host:04}:9100\",job=\"node\"");
    let mut fams = Vec::new();
    let mut cpu = Vec::new();
    let busy = 0.05 + rng.f() * 0.5;
    for c in 0..4 {
        for (mode, share) in [
            ("idle", 1.0 - busy),
            ("user", busy * 0.6),
            ("system", busy * 0.25),
            ("iowait", busy * 0.08),
            ("irq", 0.002),
            ("softirq", busy * 0.05),
            ("nice", 0.001),
            ("steal", 0.0),
        ] {
            cpu.push(SeriesSpec {
                metric: None,
                labels: format!("cpu=\"{c}\",{inst},mode=\"{mode}\""),
                kind: Kind::Counter {
                    mean: 15.0 * share,
                    decimals: 2,
                },
            });
        }
    }
    fams.push(Family {
        name: "node_cpu_seconds_total",
        kind: "counter",
        help: "Seconds the CPUs spent in each mode.",
        series: cpu,
    });
    let total = (8u64 << 30) * (1 + (host % 4) as u64);
    for (name, frac, step) in [
        ("MemTotal", 1.0, 0.0),
        ("MemAvailable", 0.55, 0.002),
        ("MemFree", 0.2, 0.004),
        ("Buffers", 0.02, 0.001),
        ("Cached", 0.3, 0.002),
        ("SwapTotal", 0.25, 0.0),
        ("SwapFree", 0.24, 0.0005),
        ("Active", 0.3, 0.002),
        ("Inactive", 0.2, 0.002),
        ("Dirty", 0.001, 0.05),
    ] {
        let level = (total as f64 * frac / 4096.0).round() * 4096.0;
        fams.push(Family {
            name: Box::leak(format!("node_memory_{name}_bytes").into_boxed_str()),
            kind: "gauge",
            help: "Memory information field.",
            series: vec![SeriesSpec {
                metric: None,
                labels: inst.clone(),
                kind: if step == 0.0 {
                    Kind::Constant(level)
                } else {
                    Kind::Gauge {
                        level,
                        step,
                        decimals: -12,
                        min: 0.0,
                    }
                },
            }],
        });
    }
    let load = 0.2 + rng.f() * 3.0;
    for name in ["node_load1", "node_load5", "node_load15"] {
        fams.push(Family {
            name,
            kind: "gauge",
            help: "Load average.",
            series: vec![SeriesSpec {
                metric: None,
                labels: inst.clone(),
                kind: Kind::Gauge {
                    level: load,
                    step: 0.05,
                    decimals: 2,
                    min: 0.0,
                },
            }],
        });
    }
    for (name, mean) in [
        ("node_network_receive_bytes_total", 40_000.0),
        ("node_network_transmit_bytes_total", 25_000.0),
        ("node_network_receive_packets_total", 300.0),
        ("node_network_transmit_packets_total", 250.0),
        ("node_network_receive_errs_total", 0.01),
        ("node_network_transmit_errs_total", 0.005),
        ("node_network_receive_drop_total", 0.02),
        ("node_network_transmit_drop_total", 0.0),
    ] {
        let series = ["eth0", "lo"]
            .iter()
            .map(|d| SeriesSpec {
                metric: None,
                labels: format!("device=\"{d}\",{inst}"),
                kind: Kind::Counter { mean, decimals: 0 },
            })
            .collect();
        fams.push(Family {
            name,
            kind: "counter",
            help: "Network device statistic.",
            series,
        });
    }
    for (name, mean, dec) in [
        ("node_disk_read_bytes_total", 200_000.0, 0),
        ("node_disk_written_bytes_total", 500_000.0, 0),
        ("node_disk_reads_completed_total", 20.0, 0),
        ("node_disk_writes_completed_total", 60.0, 0),
        ("node_disk_io_time_seconds_total", 0.8, 3),
    ] {
        let series = ["sda", "nvme0n1"]
            .iter()
            .map(|d| SeriesSpec {
                metric: None,
                labels: format!("device=\"{d}\",{inst}"),
                kind: Kind::Counter {
                    mean,
                    decimals: dec,
                },
            })
            .collect();
        fams.push(Family {
            name,
            kind: "counter",
            help: "Disk statistic.",
            series,
        });
    }
    for (name, frac, step) in [
        ("node_filesystem_size_bytes", 1.0, 0.0),
        ("node_filesystem_avail_bytes", 0.4, 0.0005),
        ("node_filesystem_free_bytes", 0.45, 0.0005),
        ("node_filesystem_files", 6_000_000.0, 0.0),
        ("node_filesystem_files_free", 5_000_000.0, 0.0001),
    ] {
        let series = [
            ("/dev/sda1", "ext4", "/"),
            ("/dev/nvme0n1p1", "xfs", "/var/lib/postgresql"),
            ("tmpfs", "tmpfs", "/run"),
        ]
        .iter()
        .map(|(dev, fs, mp)| {
            let base = if frac > 1.0 {
                frac
            } else {
                ((200u64 << 30) as f64 * frac / 4096.0).round() * 4096.0
            };
            SeriesSpec {
                metric: None,
                labels: format!("device=\"{dev}\",fstype=\"{fs}\",{inst},mountpoint=\"{mp}\""),
                kind: if step == 0.0 {
                    Kind::Constant(base)
                } else {
                    Kind::Gauge {
                        level: base,
                        step,
                        decimals: -12,
                        min: 0.0,
                    }
                },
            }
        })
        .collect();
        fams.push(Family {
            name,
            kind: "gauge",
            help: "Filesystem statistic.",
            series,
        });
    }
    let rate = 20.0 + rng.f() * 200.0;
    let mut buckets = Vec::new();
    let mut cum = 0.0;
    for (le, share) in [
        ("0.005", 0.2),
        ("0.01", 0.2),
        ("0.025", 0.2),
        ("0.05", 0.15),
        ("0.1", 0.1),
        ("0.25", 0.07),
        ("0.5", 0.04),
        ("1", 0.02),
        ("2.5", 0.01),
        ("+Inf", 0.01),
    ] {
        cum += share;
        buckets.push(SeriesSpec {
            metric: Some("http_request_duration_seconds_bucket"),
            labels: format!("{inst},le=\"{le}\""),
            kind: Kind::Counter {
                mean: 15.0 * rate * cum,
                decimals: 0,
            },
        });
    }
    buckets.push(SeriesSpec {
        metric: Some("http_request_duration_seconds_sum"),
        labels: inst.clone(),
        kind: Kind::Counter {
            mean: 15.0 * rate * 0.04,
            decimals: 3,
        },
    });
    buckets.push(SeriesSpec {
        metric: Some("http_request_duration_seconds_count"),
        labels: inst.clone(),
        kind: Kind::Counter {
            mean: 15.0 * rate,
            decimals: 0,
        },
    });
    fams.push(Family {
        name: "http_request_duration_seconds",
        kind: "histogram",
        help: "Request latency.",
        series: buckets,
    });
    for (name, v) in [
        ("node_boot_time_seconds", 1.69e9 + (host * 7919) as f64),
        ("node_uname_info", 1.0),
        ("node_exporter_build_info", 1.0),
        ("node_time_zone_offset_seconds", 0.0),
    ] {
        fams.push(Family {
            name,
            kind: "gauge",
            help: "Constant.",
            series: vec![SeriesSpec {
                metric: None,
                labels: inst.clone(),
                kind: Kind::Constant(v),
            }],
        });
    }
    fams
}

/// Series per host the generator produces.
pub(crate) fn series_per_host() -> usize {
    families(0, &mut Rng::new(0))
        .iter()
        .map(|f| f.series.len())
        .sum()
}

/// Writes `hosts` hosts' series, `points` samples each at 15 s ending at `end_ms`,
/// grouped by family then series then time. Returns (series, samples).
pub(crate) fn write(
    out: &mut impl Write,
    hosts: usize,
    points: usize,
    end_ms: i64,
    seed: u64,
) -> std::io::Result<(u64, u64)> {
    let start = end_ms - (points as i64 - 1) * 15_000;
    let start = start - start.rem_euclid(15_000);
    // Per-host scrape jitter, shared by all of a host's series, as in a real scrape.
    let mut jr = Rng::new(seed ^ 0xabcdef);
    let jitter: Vec<Vec<i64>> = (0..hosts)
        .map(|_| {
            (0..points)
                .map(|_| 1 + (jr.next_u64() % 10) as i64)
                .collect()
        })
        .collect();
    let per_host: Vec<Vec<Family>> = (0..hosts)
        .map(|h| families(h, &mut Rng::new(seed.wrapping_add(h as u64))))
        .collect();
    let (mut series, mut samples) = (0u64, 0u64);
    let nfam = per_host.first().map_or(0, Vec::len);
    let mut rng = Rng::new(seed);
    let mut line = String::with_capacity(256);
    for fi in 0..nfam {
        let f0 = &per_host[0][fi];
        let family = f0.name.trim_end_matches("_total");
        writeln!(out, "# HELP {family} {}", f0.help)?;
        writeln!(out, "# TYPE {family} {}", f0.kind)?;
        for (h, fams) in per_host.iter().enumerate() {
            for s in &fams[fi].series {
                series += 1;
                let mut v = match s.kind {
                    Kind::Counter { mean, .. } => mean * 1000.0 * (1.0 + rng.f()),
                    Kind::Gauge { level, .. } => level,
                    Kind::Constant(c) => c,
                };
                for (p, jit) in jitter[h].iter().enumerate() {
                    v = match s.kind {
                        Kind::Counter { mean, decimals } => {
                            round(v + mean * (0.5 + rng.f()), decimals)
                        }
                        Kind::Gauge {
                            level,
                            step,
                            decimals,
                            min,
                        } => {
                            let d = (rng.f() - 0.5) * 2.0 * step * level.max(1.0);
                            let nv = (v + d).max(min);
                            if decimals < 0 {
                                (nv / 4096.0).round() * 4096.0
                            } else {
                                round(nv, decimals)
                            }
                        }
                        Kind::Constant(c) => c,
                    };
                    let t = start + p as i64 * 15_000 + jit;
                    line.clear();
                    use std::fmt::Write as _;
                    let _ = writeln!(
                        line,
                        "{}{{{}}} {} {}.{:03}",
                        s.metric.unwrap_or(fams[fi].name),
                        s.labels,
                        v,
                        t / 1000,
                        t % 1000
                    );
                    out.write_all(line.as_bytes())?;
                    samples += 1;
                }
            }
        }
    }
    writeln!(out, "# EOF")?;
    Ok((series, samples))
}
