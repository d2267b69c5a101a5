//! `lookout-bench`: Lookout's benchmarks and fuzzer, a binary of their own so the
//! product ships none of them. Each prints figures, side by side with Prometheus's
//! `promtool` or server where a baseline exists (never timed tests). The benchmarks that
//! run the server start the `lookout` binary found next to this one (build both with
//! `cargo build --release`), or the one `LOOKOUT_BIN` names.
//!
//! - `gen`: writes the node_exporter-like dataset (see `dataset`).
//! - `storage`: imports one file with `lookout import` and with `promtool tsdb
//!   create-blocks-from openmetrics`, each as a child process, and compares wall time, peak
//!   RSS and bytes per sample on disk (chunks + index).
//! - `live`: append throughput into head + WAL on one core, resident memory per
//!   active series, and WAL replay speed.
//! - `parse`: exposition parsing throughput (see `parse`).
//! - `overhead`: Lookout vs the exporter + Prometheus + Alertmanager stack
//!   monitoring the same host and databases (see `overhead`).
//! - `soak`: the real server for a long while under churn, queries, rules and the
//!   notifier: memory, query latency, scrape gaps (see `soak`).
//! - `fuzz`: a mutation fuzzer over every parser and file reader (see `fuzz`).
//! - `dashboard`: a 100+ panel dashboard in headless Chromium (see `dashboard`).
//! - `receive`: remote-write receiving against Prometheus's receiver (see `receive`).
//! - `send`: remote-write sending and catch-up after an outage against Prometheus's
//!   sender, to the same receiver (see `send`).
//! - `sdk`: what `lookout-sdk` adds to its example store's CPU and memory, instrumented
//!   vs not over the same workload (see `sdk`).
//! - `traces`: the trace store's ingest rate, bytes per span, reopen time and lookup
//!   latency (see `traces`).
//! - `tls`: what HTTPS and basic authentication cost per query and per connection (see
//!   `tls`).

mod alerting;
mod blocks;
mod dashboard;
mod dataset;
mod detect;
mod fuzz;
mod overhead;
mod parse;
mod pgcost;
mod queries;
mod receive;
mod sdk;
mod send;
mod soak;
mod storage;
mod tiers;
mod tls;
mod traces;
mod vm;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use storage::{generate, read_request_head, rss, serve_exposition};

/// The allocator of the product (`lookout`), so in-process figures (`live`) are the
/// product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lookout's benchmarks and fuzzer.
#[derive(Debug, Parser)]
#[command(name = "lookout-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the node_exporter-like benchmark dataset as OpenMetrics.
    Gen {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Number of series (rounded up to whole hosts).
        #[arg(long, default_value_t = 30_000)]
        series: usize,
        /// Hours of data at 15 s.
        #[arg(long, default_value_t = 6.0)]
        hours: f64,
        /// PRNG seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Import one dataset with Lookout, with promtool and into VictoriaMetrics; compare
    /// size, time and memory.
    Storage {
        /// Dataset (generated into a temporary directory if absent).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Series to generate when no file is given.
        #[arg(long, default_value_t = 30_000)]
        series: usize,
        /// Hours to generate when no file is given.
        #[arg(long, default_value_t = 6.0)]
        hours: f64,
        /// The promtool to compare with.
        #[arg(long, default_value = "promtool")]
        promtool: String,
        /// The VictoriaMetrics (single node) to compare with.
        #[arg(long, default_value = "victoria-metrics")]
        victoria_metrics: String,
        /// Directory for temporary files (default: the system's).
        #[arg(long)]
        work: Option<PathBuf>,
    },
    /// Rule evaluation time per cycle (Lookout and Prometheus scraping the same target
    /// and evaluating the same rules) and notification latency after group_wait.
    Alerting {
        /// Series exposed to both.
        #[arg(long, default_value_t = 10_000)]
        series: usize,
        /// Alerting rules (in groups of 100).
        #[arg(long, default_value_t = 1_000)]
        rules: usize,
        /// Evaluation cycles sampled.
        #[arg(long, default_value_t = 10)]
        cycles: usize,
        /// The prometheus server binary to compare with.
        #[arg(long, default_value = "prometheus")]
        prometheus: String,
        /// Directory for temporary files (default: the system's).
        #[arg(long)]
        work: Option<PathBuf>,
    },
    /// The same queries against Lookout, Prometheus and VictoriaMetrics (each serving one
    /// dataset): latency medians, peak memory, and whether Lookout's answers are
    /// Prometheus's.
    Queries {
        /// Series to generate.
        #[arg(long, default_value_t = 5_000)]
        series: usize,
        /// Hours to generate.
        #[arg(long, default_value_t = 6.0)]
        hours: f64,
        /// Runs per query and server (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The prometheus server binary to compare with.
        #[arg(long, default_value = "prometheus")]
        prometheus: String,
        /// The promtool that loads the dataset for Prometheus.
        #[arg(long, default_value = "promtool")]
        promtool: String,
        /// The VictoriaMetrics (single node) to compare with.
        #[arg(long, default_value = "victoria-metrics")]
        victoria_metrics: String,
        /// Directory for temporary files (default: the system's).
        #[arg(long)]
        work: Option<PathBuf>,
    },
    /// Exposition parsing throughput (lines/s) on the textparse files and a generated
    /// payload, with promtool reading the same payload as the baseline.
    Parse {
        /// Sample lines in the generated payload.
        #[arg(long, default_value_t = 1_000_000)]
        lines: usize,
        /// The promtool to compare with.
        #[arg(long, default_value = "promtool")]
        promtool: String,
        /// Exposition files to parse (default: Prometheus's textparse test files, when present).
        files: Vec<PathBuf>,
    },
    /// CPU and memory of monitoring this host, one PostgreSQL and one Redis, side by side
    /// with node/postgres/redis exporters + Prometheus + Alertmanager doing the same.
    Overhead {
        /// The PostgreSQL both sides monitor.
        #[arg(long)]
        postgres_dsn: String,
        /// The Redis both sides monitor.
        #[arg(long)]
        redis_url: String,
        /// Collection interval.
        #[arg(long, default_value = "15s", value_parser = parse_duration_arg)]
        interval: std::time::Duration,
        /// Time before measuring starts.
        #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
        warmup: std::time::Duration,
        /// Time measured.
        #[arg(long, default_value = "10m", value_parser = parse_duration_arg)]
        duration: std::time::Duration,
        /// Directory for temporary files (default: the system's).
        #[arg(long)]
        work: Option<PathBuf>,
        /// Leave the stack's Prometheus without rules (by default it evaluates the same
        /// host, PostgreSQL and Redis rule packs Lookout ships with, so both do the
        /// same job).
        #[arg(long)]
        stack_without_rules: bool,
    },
    /// Run the server for a long while under series churn, queries, rules and the
    /// notifier, printing memory, query latency and scrape gaps per window.
    Soak(crate::soak::SoakOptions),
    /// Memory a server holds for the blocks it keeps open, per series per block
    /// (optionally against another `lookout` binary).
    Blocks(crate::blocks::BlocksOptions),
    /// How long a large dashboard (100+ panels over 24 h of one host) takes to settle in
    /// headless Chromium, against the same queries run one after another.
    Dashboard(crate::dashboard::DashboardOptions),
    /// Remote-write samples received per second and per CPU-second, Lookout against
    /// Prometheus 2.42's receiver fed the same requests.
    Receive(crate::receive::ReceiveOptions),
    /// Remote-write samples sent per CPU-second and catch-up after an outage, Lookout
    /// against Prometheus 2.42 scraping the same target into the same receiver.
    Send(crate::send::SendOptions),
    /// What lookout-sdk adds to its example store's CPU and memory (instrumented vs not).
    Sdk(crate::sdk::SdkOptions),
    /// From Redis killed to the webhook: Lookout against redis_exporter + Prometheus +
    /// Alertmanager with the same intervals, rule and group_wait.
    Detect(crate::detect::DetectOptions),
    /// What monitoring costs a PostgreSQL server under pgbench, Lookout's diagnostics
    /// on and off in the same run.
    Pgcost(crate::pgcost::PgCostOptions),
    /// The trace store: spans stored per CPU-second, bytes per span, lookups.
    Traces(crate::traces::TracesOptions),
    /// Downsampling: range queries over weeks read from tiers against raw samples (same
    /// answers), and the bytes each keeps.
    Tiers(crate::tiers::TiersOptions),
    /// Fuzz every parser and file reader (exposition formats, PromQL through evaluation,
    /// configuration, rule and Alertmanager files, templates, WAL segments, block files)
    /// with mutated inputs; exits 1 if any input crashes one.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Random seed (runs are reproducible).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Only targets whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Where crashing inputs are written.
        #[arg(long, default_value = "./fuzz-crashes")]
        out: PathBuf,
    },
    /// HTTPS with basic auth against plain HTTP: per-query latency and connections per
    /// second on the same build.
    Tls {
        /// Queries per side.
        #[arg(long, default_value_t = 2000)]
        queries: usize,
        /// New connections per side.
        #[arg(long, default_value_t = 1000)]
        handshakes: usize,
    },
    /// Append throughput, memory per active series and WAL replay speed.
    Live {
        /// Series for the memory and replay figures.
        #[arg(long, default_value_t = 1_000_000)]
        series: usize,
        /// Series for the throughput figure.
        #[arg(long, default_value_t = 100_000)]
        throughput_series: usize,
        /// Scrapes for the throughput figure.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Samples per series in the WAL the restart figure replays (15 s apart).
        #[arg(long, default_value_t = 20)]
        replay_samples: usize,
    },
    /// One side of `live`'s restart figure, in a process of its own so its memory is
    /// its own: `fill` appends and exits without closing (a crash), `replay` opens.
    #[command(hide = true)]
    LiveProbe {
        /// `fill` or `replay`.
        mode: String,
        /// The store's directory.
        dir: PathBuf,
        /// Series to append (`fill`).
        #[arg(long, default_value_t = 0)]
        series: usize,
        /// Samples per series (`fill`).
        #[arg(long, default_value_t = 0)]
        samples: usize,
    },
    /// `traces`' memory figure, in a process of its own so its heap is the index's
    /// alone: opens the trace store in `dir` and prints the resident bytes it added.
    #[command(hide = true)]
    TracesOpen {
        /// The store's directory.
        dir: PathBuf,
    },
}

/// A clap value parser for Prometheus-style durations (`15s`, `10m`).
pub(crate) fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    lookout_model::parse_duration(s)
}

/// The `lookout` binary the benchmarks run: `LOOKOUT_BIN`, or `lookout` next to this
/// binary.
pub(crate) fn lookout_exe() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("LOOKOUT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    let exe = me.with_file_name("lookout");
    anyhow::ensure!(
        exe.is_file(),
        "{} not found: build it (cargo build --release -p lookout) or set LOOKOUT_BIN",
        exe.display()
    );
    Ok(exe)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Parse {
            lines,
            promtool,
            files,
        } => crate::parse::run(lines, &promtool, files)?,
        Command::Overhead {
            postgres_dsn,
            redis_url,
            interval,
            warmup,
            duration,
            work,
            stack_without_rules,
        } => crate::overhead::run(
            &postgres_dsn,
            &redis_url,
            interval,
            warmup,
            duration,
            work.as_deref(),
            !stack_without_rules,
        )?,
        Command::Gen {
            out,
            series,
            hours,
            seed,
        } => {
            crate::generate(&out, series, hours, seed)?;
        }
        Command::Storage {
            file,
            series,
            hours,
            promtool,
            victoria_metrics,
            work,
        } => {
            crate::storage::storage(file, series, hours, &promtool, &victoria_metrics, work)?;
        }
        Command::Alerting {
            series,
            rules,
            cycles,
            prometheus,
            work,
        } => crate::alerting::run(series, rules, cycles, &prometheus, work.as_deref())?,
        Command::Queries {
            series,
            hours,
            runs,
            prometheus,
            promtool,
            victoria_metrics,
            work,
        } => {
            crate::queries::run(
                series,
                hours,
                runs,
                (&prometheus, &promtool, &victoria_metrics),
                work,
            )?;
        }
        Command::Soak(o) => crate::soak::run(o)?,
        Command::Fuzz {
            seconds,
            seed,
            only,
            out,
        } => {
            crate::fuzz::run(seconds, seed, only, out)?;
        }
        Command::Tls {
            queries,
            handshakes,
        } => crate::tls::run(queries, handshakes)?,
        Command::Blocks(o) => crate::blocks::run(o)?,
        Command::Dashboard(o) => crate::dashboard::run(o)?,
        Command::Receive(o) => crate::receive::run(o)?,
        Command::Send(o) => crate::send::run(o)?,
        Command::Sdk(o) => crate::sdk::run(o)?,
        Command::Detect(o) => crate::detect::run(o)?,
        Command::Pgcost(o) => crate::pgcost::run(o)?,
        Command::Traces(o) => crate::traces::run(o)?,
        Command::TracesOpen { dir } => crate::traces::open_probe(&dir)?,
        Command::Tiers(o) => crate::tiers::run(o)?,
        Command::Live {
            series,
            throughput_series,
            rounds,
            replay_samples,
        } => {
            crate::storage::live(series, throughput_series, rounds, replay_samples)?;
        }
        Command::LiveProbe {
            mode,
            dir,
            series,
            samples,
        } => crate::storage::live_probe(&mode, &dir, series, samples)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    lookout_collect::scrape::install_tls_provider();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
