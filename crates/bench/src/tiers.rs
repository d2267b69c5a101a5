//! `lookout-bench tiers`: what downsampling buys over long ranges. Writes `--days` of
//! `--series` series (half counters, half gauges, every `--interval`) into a store with
//! two tiers (5m after 1 d, 1h after 7 d), maintaining it as the data arrives as a server
//! would, then times range queries over the whole span (step 1h) read from the tiers and
//! from the raw samples (`resolution=raw`), median of `--runs`, checks the answers agree
//! and prints the bytes each keeps.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lookout_model::Labels;
use lookout_promql::{Engine, EngineOptions, Value};
use lookout_storage::Appendable;
use lookout_tsdb::{Options, Tier, Tsdb};

/// Options of `lookout-bench tiers`.
#[derive(Debug, clap::Args)]
pub(crate) struct TiersOptions {
    /// Series (half counters, half gauges).
    #[arg(long, default_value_t = 1000)]
    series: usize,
    /// Days of data.
    #[arg(long, default_value_t = 30)]
    days: i64,
    /// Time between samples.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration_arg)]
    interval: Duration,
    /// Runs per query (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Directory for the store (a temporary one by default).
    #[arg(long)]
    work: Option<PathBuf>,
}

const H: i64 = 3_600_000;
const D: i64 = 24 * H;

const QUERIES: &[&str] = &[
    "sum(rate(bench_requests_total[1h]))",
    "sum by (shard) (increase(bench_requests_total[1d]))",
    "max(max_over_time(bench_temperature[1h]))",
    "avg(avg_over_time(bench_temperature[6h]))",
    "max(bench_temperature)",
    "count_over_time(bench_temperature[1h])",
];

fn labels(i: usize) -> Labels {
    let shard = format!("s{}", i % 10);
    let id = format!("{i}");
    if i.is_multiple_of(2) {
        Labels::from_pairs([
            ("__name__", "bench_requests_total"),
            ("shard", &*shard),
            ("id", &*id),
        ])
    } else {
        Labels::from_pairs([
            ("__name__", "bench_temperature"),
            ("shard", &*shard),
            ("id", &*id),
        ])
    }
}

/// Every point of a matrix, for comparing answers.
fn points(v: &Value) -> Vec<(String, i64, f64)> {
    let Value::Matrix(m) = v else {
        return Vec::new();
    };
    m.iter()
        .flat_map(|s| {
            let l = s.labels.to_string();
            s.samples.iter().map(move |p| (l.clone(), p.t, p.v))
        })
        .collect()
}

pub(crate) fn run(o: TiersOptions) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir_in(o.work.as_deref().unwrap_or(&std::env::temp_dir()))?;
    let opts = Options {
        maintenance_interval: None,
        retention: Duration::from_secs(400 * 86_400),
        downsampling: vec![
            Tier {
                after: Duration::from_secs(86_400),
                resolution: Duration::from_secs(300),
                retention: Duration::from_secs(400 * 86_400),
            },
            Tier {
                after: Duration::from_secs(7 * 86_400),
                resolution: Duration::from_secs(3600),
                retention: Duration::from_secs(800 * 86_400),
            },
        ],
        ..Options::default()
    };
    let db = Tsdb::open(
        tmp.path(),
        opts,
        &mut prometheus_client::registry::Registry::default(),
    )?;
    // The data ends a day ago, on a whole day; the store refuses the future.
    let end = lookout_model::now_ms().div_euclid(D) * D - D;
    let start = end - o.days * D;
    let step = i64::try_from(o.interval.as_millis())?.max(1000);
    let series: Vec<Labels> = (0..o.series).map(labels).collect();
    let mut values = vec![0.0f64; o.series];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let written = Instant::now();
    let mut t = start;
    let mut samples = 0u64;
    while t < end {
        let mut app = db.appender();
        for (i, ls) in series.iter().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = if i.is_multiple_of(2) {
                values[i] += (x % 100) as f64;
                values[i]
            } else {
                20.0 + (x % 1000) as f64 / 100.0
            };
            app.append(ls, t, v)?;
        }
        app.commit()?;
        samples += series.len() as u64;
        t += step;
        if (t - start) % (2 * H) < step {
            db.maintain(t)?;
            if (t - start) % D < step {
                eprint!("\r{} of {} days written", (t - start) / D, o.days);
            }
        }
    }
    db.maintain(end + 8 * D)?;
    eprintln!(
        "\r{samples} samples of {} series over {} days written and maintained in {:.1} s",
        o.series,
        o.days,
        written.elapsed().as_secs_f64()
    );
    let st = db.stats();
    let raw_bytes = st.chunk_bytes + st.index_bytes;
    println!(
        "raw blocks: {} samples, {:.1} MB ({:.3} B/sample)",
        st.block_samples,
        raw_bytes as f64 / 1e6,
        raw_bytes as f64 / st.block_samples.max(1) as f64
    );
    for t in &st.tiers {
        println!(
            "tier {:>5}s: {} blocks, {} windows, {:.1} MB ({:.3}× the raw blocks)",
            t.resolution_seconds,
            t.blocks,
            t.windows,
            t.bytes as f64 / 1e6,
            t.bytes as f64 / raw_bytes.max(1) as f64
        );
    }
    let (q_start, q_end) = (start + D, end);
    let time = |engine: &Engine, q: &str| -> anyhow::Result<(f64, Value)> {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..o.runs.max(1) {
            let began = Instant::now();
            let v = engine.range(&db, q, q_start, q_end, H)?;
            times.push(began.elapsed().as_secs_f64());
            last = Some(v);
        }
        times.sort_by(f64::total_cmp);
        Ok((times[times.len() / 2], last.expect("ran at least once")))
    };
    let tiered = Engine::new(EngineOptions::default());
    let raw = Engine::new(EngineOptions {
        rollups: false,
        ..EngineOptions::default()
    });
    println!(
        "{} days, step 1h, median of {} runs:",
        o.days - 1,
        o.runs.max(1)
    );
    let (mut total_t, mut total_r) = (0.0, 0.0);
    for q in QUERIES {
        let (tt, tv) = time(&tiered, q)?;
        let (rt, rv) = time(&raw, q)?;
        let (a, b) = (points(&tv), points(&rv));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| {
                if x.0 != y.0 || x.1 != y.1 {
                    f64::INFINITY
                } else {
                    (x.2 - y.2).abs() / x.2.abs().max(y.2.abs()).max(f64::MIN_POSITIVE)
                }
            })
            .fold(0.0, f64::max);
        let same = a.len() == b.len() && worst <= 1e-9;
        println!(
            "  {:<56} tiers {:>8.1} ms  raw {:>8.1} ms  {:>6.3}×  {} points, {}",
            q,
            tt * 1e3,
            rt * 1e3,
            tt / rt,
            a.len(),
            if same {
                format!("same answers (largest relative difference {worst:.1e})")
            } else {
                format!(
                    "ANSWERS DIFFER ({} vs {} points, {worst:.1e})",
                    a.len(),
                    b.len()
                )
            }
        );
        total_t += tt;
        total_r += rt;
    }
    println!(
        "total: tiers {:.1} ms, raw {:.1} ms: {:.3}×",
        total_t * 1e3,
        total_r * 1e3,
        total_t / total_r
    );
    db.close()?;
    Ok(())
}
