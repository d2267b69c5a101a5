//! `lookout-bench blocks`: the memory a server holds for the blocks it keeps open.
//!
//! Every retained block stays open, so what a series costs in an open block, times the
//! series of every block, is the floor under a long-running server's memory. This builds a
//! data directory of `--series` series over `--blocks` two-hour blocks with the importer,
//! starts `lookout serve` on it and on an empty directory, and reports the difference in
//! resident memory once both answer queries — per series per block — then times one
//! query over every series of every block (`count`, step 10m) and the peak memory it
//! added. With `--baseline`, the
//! same is measured for another `lookout` binary (an earlier build) in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lookout_model::Labels;

use crate::overhead::spawn;
use crate::queries::{free_port, wait_ready};
use crate::storage::rss;

/// Options of `lookout-bench blocks`.
#[derive(Debug, clap::Args)]
pub(crate) struct BlocksOptions {
    /// Series per block.
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Two-hour blocks.
    #[arg(long, default_value_t = 12)]
    blocks: usize,
    /// Share of the series replaced from one block to the next (churn).
    #[arg(long, default_value_t = 0.2)]
    churn: f64,
    /// Time between samples (60s: one chunk per series per block; 15s: four, and blocks
    /// larger than a query's page cache).
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration_arg)]
    interval: Duration,
    /// Another `lookout` binary to measure the same way, for a ratio.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Directory for temporary files (default: the system's).
    #[arg(long)]
    work: Option<PathBuf>,
}

const BLOCK_MS: i64 = 2 * 3600 * 1000;

fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("bench_metric_{}", i % 50)),
        ("instance", format!("host-{:05}:9100", i / 50)),
        ("job", "bench".to_string()),
        ("series", i.to_string()),
    ])
}

/// Writes the blocks; returns the number of (series, block) pairs and the first block's
/// start (ms).
fn build(data: &Path, o: &BlocksOptions) -> anyhow::Result<(usize, i64)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let first = (now / BLOCK_MS - o.blocks as i64 - 1) * BLOCK_MS;
    let mut imp = lookout_tsdb::Importer::new(data, Duration::from_millis(BLOCK_MS as u64))?;
    let replaced = (o.series as f64 * o.churn) as usize;
    let step = (o.interval.as_millis() as i64).max(1);
    let mut pairs = 0;
    for b in 0..o.blocks {
        eprint!("\rwriting block {}/{}", b + 1, o.blocks);
        let start = b * replaced;
        let set: Vec<Labels> = (start..start + o.series).map(labels).collect();
        let t0 = first + b as i64 * BLOCK_MS;
        // Series by series: the importer takes each series' samples together.
        for (k, ls) in set.iter().enumerate() {
            for t in (t0..t0 + BLOCK_MS).step_by(step as usize) {
                imp.add(ls.clone(), t, ((t / step) as usize + k) as f64)?;
            }
        }
        pairs += set.len();
    }
    eprintln!();
    imp.finish()?;
    Ok((pairs, first))
}

/// What one server showed: resident memory once settled, the memory it reports holding
/// for its open blocks' indexes (if it reports it), and, when asked for, the time and
/// peak-memory growth of one query over every series and block.
struct Seen {
    rss: u64,
    index: Option<f64>,
    query: Option<(Duration, u64)>,
}

/// Starts `exe serve` on `data` and measures it; `query` runs once, settled.
fn serve_rss(
    exe: &Path,
    data: &Path,
    cfg: &Path,
    query: Option<&[(&str, String)]>,
) -> anyhow::Result<Seen> {
    let port = free_port()?;
    let child = spawn(
        "lookout",
        Command::new(exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .arg("--config")
            .arg(cfg),
    )?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{port}"),
        &exe.display().to_string(),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let pid = child.pid().to_string();
    let rss_now = rss(&pid).0;
    // What the server itself counts for its open blocks (builds that export the gauge).
    let index = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .and_then(|r| r.text())
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("lookout_tsdb_blocks_index_memory_bytes "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
    let query = match query {
        None => None,
        Some(params) => {
            let t = Instant::now();
            let r = client
                .get(format!("http://127.0.0.1:{port}/api/v1/query_range"))
                .timeout(Duration::from_secs(600))
                .query(params)
                .send()?;
            anyhow::ensure!(r.status().is_success(), "query failed: {}", r.text()?);
            let took = t.elapsed();
            Some((took, rss(&pid).1.saturating_sub(rss_now)))
        }
    };
    Ok(Seen {
        rss: rss_now,
        index,
        query,
    })
}

/// `lookout-bench blocks`.
pub(crate) fn run(o: BlocksOptions) -> anyhow::Result<()> {
    let tmp = match &o.work {
        Some(w) => tempfile::tempdir_in(w)?,
        None => tempfile::tempdir()?,
    };
    let data = tmp.path().join("data");
    let empty = tmp.path().join("empty");
    let cfg = tmp.path().join("lookout.yml");
    std::fs::write(
        &cfg,
        "collectors: { host: { enabled: false }, process: { enabled: false } }\nstorage: { retention: 90d, block_duration: 1d }\n",
    )?;
    let (pairs, first) = build(&data, &o)?;
    let params = [
        ("query", "count({job=\"bench\"})".to_string()),
        ("start", format!("{}", first / 1000)),
        (
            "end",
            format!("{}", (first + o.blocks as i64 * BLOCK_MS) / 1000),
        ),
        ("step", "600".to_string()),
    ];
    let on_disk: u64 = walk_bytes(&data.join("blocks"));
    println!(
        "{} blocks, {} series each ({:.0}% replaced per block), {pairs} series-blocks, {:.1} MiB on disk",
        o.blocks,
        o.series,
        o.churn * 100.0,
        on_disk as f64 / 1048576.0
    );
    let measure = |name: &str, exe: &Path| -> anyhow::Result<(f64, Option<f64>)> {
        let base = serve_rss(exe, &empty, &cfg, None)?.rss;
        let Seen {
            rss: full,
            index,
            query,
        } = serve_rss(exe, &data, &cfg, Some(&params))?;
        let per = full.saturating_sub(base) as f64 / pairs as f64;
        println!(
            "{name:<9} RSS empty {:>7.1} MiB, with the blocks {:>7.1} MiB: {per:>6.1} bytes per series per block{} ({})",
            base as f64 / 1048576.0,
            full as f64 / 1048576.0,
            index.map_or(String::new(), |i| format!(
                ", of which the indexes {:.1}",
                i / pairs as f64
            )),
            exe.display()
        );
        if let Some((took, grew)) = query {
            println!(
                "{:<9} count({{job=\"bench\"}}) over every block, step 10m: {:.2} s, peak RSS +{:.0} MiB",
                "",
                took.as_secs_f64(),
                grew as f64 / 1048576.0
            );
        }
        Ok((per, query.map(|q| q.0.as_secs_f64())))
    };
    let ours = measure("this", &crate::lookout_exe()?)?;
    if let Some(b) = &o.baseline {
        let theirs = measure("baseline", b)?;
        println!(
            "ratio this/baseline: memory per series-block {:.2}×, query time {:.2}×",
            ours.0 / theirs.0,
            ours.1.unwrap_or(0.0) / theirs.1.unwrap_or(1.0)
        );
    }
    Ok(())
}

/// Bytes of every file under `dir`.
pub(crate) fn walk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
