//! The command line: `serve`, `check config|rules`, `test promql|rules`, `import`, `tsdb`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ListenAddress};
use crate::serve;
use crate::settings::Settings;

/// Lookout: host, database and Prometheus-target monitoring in one binary.
#[derive(Debug, Parser)]
#[command(name = "lookout", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Collect, store, query and serve the web UI (defaults: ./lookout-data, 127.0.0.1:9180).
    Serve(ServeArgs),
    /// Validate files without running anything.
    Check {
        #[command(subcommand)]
        what: CheckCommand,
    },
    /// Benchmarks that print figures (storage size, import, append, memory, replay).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Backfill data into a data directory.
    Import {
        #[command(subcommand)]
        what: ImportCommand,
    },
    /// Inspect a data directory.
    Tsdb {
        #[command(subcommand)]
        what: TsdbCommand,
    },
    /// Run test files.
    Test {
        #[command(subcommand)]
        what: TestCommand,
    },
}

/// Flags of `lookout serve`; they override the config file.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (YAML, Prometheus-style names).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (overrides storage.path).
    #[arg(long, value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
    /// Listen address host:port (overrides web.listen_address; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// Enable the admin API (POST /api/v1/admin/tsdb/delete_series).
    #[arg(long = "web.enable-admin-api")]
    pub(crate) enable_admin_api: bool,
}

#[derive(Debug, Subcommand)]
enum CheckCommand {
    /// Validate a configuration file; exits 1 if it is invalid.
    Config {
        /// The file to check.
        file: PathBuf,
    },
    /// Validate Prometheus rule files as `promtool check rules` does; exits 1 if any is invalid.
    Rules {
        /// Rule files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Ignore unknown fields in the rule files.
        #[arg(long)]
        ignore_unknown_fields: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
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
    /// Import one dataset with Lookout and with promtool; compare size, time and memory.
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
    /// The same queries against Lookout and Prometheus (each serving one dataset):
    /// latency medians and whether the answers are identical.
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
    },
    /// Run the server for a long while under series churn, queries, rules and the
    /// notifier, printing memory, query latency and scrape gaps per window.
    Soak(crate::bench::soak::SoakOptions),
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
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Import an OpenMetrics text file (the input of `promtool tsdb create-blocks-from
    /// openmetrics`) into blocks; `lookout serve --data DIR` then answers queries over it.
    Openmetrics {
        /// The OpenMetrics file (samples with timestamps, ending with `# EOF`).
        file: PathBuf,
        /// Data directory (created if absent; no server may be running on it).
        #[arg(long, value_name = "DIR", default_value = "./lookout-data")]
        data: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TsdbCommand {
    /// Series, samples, time range, bytes on disk and top label cardinalities.
    Stats {
        /// Data directory (stop `lookout serve` on it first).
        #[arg(long, value_name = "DIR", default_value = "./lookout-data")]
        data: PathBuf,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TestCommand {
    /// Run PromQL test scripts (Prometheus's promqltest format); exits 1 on any failure.
    Promql {
        /// Script files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run rule unit tests in promtool's format (`promtool test rules`); exits 1 on any failure.
    Rules {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only run test groups whose name matches this regular expression.
        #[arg(long, value_name = "REGEX")]
        run: Option<String>,
        /// Ignore unknown fields in the rule files under test.
        #[arg(long)]
        ignore_unknown_fields: bool,
    },
}

/// Runs the parsed command.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let mut config = match &args.config {
                Some(p) => Config::load(p)?,
                None => Config::default(),
            };
            if let Some(d) = args.data {
                config.storage.path = d;
            }
            if let Some(l) = args.listen {
                config.web.listen_address =
                    ListenAddress::parse(&l).map_err(|e| anyhow::anyhow!("--listen: {e}"))?;
            }
            let settings = Settings::new(&config).map_err(anyhow::Error::msg)?;
            serve::run(settings, args.config.clone(), args.enable_admin_api)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            what: CheckCommand::Config { file },
        } => match Config::load(&file).and_then(|c| {
            // Build the database collectors too: DSNs must parse, password files be readable.
            let mut scheduler = lookout_collect::Scheduler::new(
                lookout_collect::SchedulerOptions::default(),
                &mut prometheus_client::registry::Registry::default(),
            );
            let settings = Settings::new(&c).map_err(anyhow::Error::msg)?;
            serve::add_database_collectors(&settings.collectors, &mut scheduler)?;
            // Rule files must load as `serve` would load them.
            let files = lookout_rules::file::expand_patterns(&c.rule_files, c.base_dir.as_deref())
                .map_err(anyhow::Error::msg)?;
            let errs: Vec<String> = files
                .iter()
                .filter_map(|f| lookout_rules::file::load_file(f, false).err())
                .flatten()
                .collect();
            if !errs.is_empty() {
                anyhow::bail!("rule_files:\n{}", errs.join("\n"));
            }
            // The notifier's Alertmanager file must load as `serve` loads it; its state
            // stays in memory, so the check touches no file.
            match &settings.notifier {
                Some(n) => crate::alerting::core(n, "http://127.0.0.1:9180", None)
                    .map(|_| ())
                    .context("notifier.config_file"),
                None => Ok(()),
            }
        }) {
            Ok(_) => {
                println!("SUCCESS: {} is valid", file.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("FAILED: {e:#}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Check {
            what:
                CheckCommand::Rules {
                    files,
                    ignore_unknown_fields,
                },
        } => Ok(crate::rules_cmd::check(&files, ignore_unknown_fields)),
        Command::Test {
            what:
                TestCommand::Rules {
                    files,
                    run,
                    ignore_unknown_fields,
                },
        } => crate::rules_cmd::test(&files, run.as_deref(), ignore_unknown_fields),
        Command::Bench { what } => {
            match what {
                BenchCommand::Parse {
                    lines,
                    promtool,
                    files,
                } => crate::bench::parse::run(lines, &promtool, files)?,
                BenchCommand::Overhead {
                    postgres_dsn,
                    redis_url,
                    interval,
                    warmup,
                    duration,
                    work,
                } => crate::bench::overhead::run(
                    &postgres_dsn,
                    &redis_url,
                    interval,
                    warmup,
                    duration,
                    work.as_deref(),
                )?,
                BenchCommand::Gen {
                    out,
                    series,
                    hours,
                    seed,
                } => {
                    crate::bench::generate(&out, series, hours, seed)?;
                }
                BenchCommand::Storage {
                    file,
                    series,
                    hours,
                    promtool,
                    work,
                } => {
                    crate::bench::storage(file, series, hours, &promtool, work)?;
                }
                BenchCommand::Alerting {
                    series,
                    rules,
                    cycles,
                    prometheus,
                    work,
                } => crate::bench::alerting::run(
                    series,
                    rules,
                    cycles,
                    &prometheus,
                    work.as_deref(),
                )?,
                BenchCommand::Queries {
                    series,
                    hours,
                    runs,
                    prometheus,
                    promtool,
                    work,
                } => {
                    crate::bench::queries::run(series, hours, runs, &prometheus, &promtool, work)?;
                }
                BenchCommand::Soak(o) => crate::bench::soak::run(o)?,
                BenchCommand::Fuzz {
                    seconds,
                    seed,
                    only,
                    out,
                } => {
                    crate::fuzz::run(seconds, seed, only, out)?;
                }
                BenchCommand::Live {
                    series,
                    throughput_series,
                    rounds,
                } => {
                    crate::bench::live(series, throughput_series, rounds)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            what: ImportCommand::Openmetrics { file, data },
        } => {
            crate::import::openmetrics(&file, &data, std::time::Duration::from_secs(2 * 3600))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tsdb {
            what: TsdbCommand::Stats { data, json },
        } => {
            crate::tsdb_cmd::stats(&data, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test {
            what: TestCommand::Promql { files },
        } => {
            let engine = lookout_promql::Engine::default();
            let mut failed = false;
            for f in files {
                let r = lookout_promql::promqltest::run_file(&engine, &f)
                    .with_context(|| format!("reading {}", f.display()))?;
                println!(
                    "{}: {} passed, {} failed",
                    r.file,
                    r.passed,
                    r.failures.len()
                );
                for fail in &r.failures {
                    println!("  {}:{}: {}", r.file, fail.line, fail.message);
                }
                failed |= !r.failures.is_empty();
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// A clap value parser for Prometheus-style durations (`15s`, `10m`).
pub(crate) fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    lookout_model::parse_duration(s)
}
