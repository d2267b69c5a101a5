//! The command line's argument types and dispatch: `serve`, `check config|rules`, `test
//! promql|rules`, `import`, `tsdb`. Each command lives in its own module (`serve`,
//! `check`, `rules_cmd`, `promql_cmd`, `import`, `tsdb_cmd`); the benchmarks and the
//! fuzzer are the separate `lookout-bench` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::serve;
use lookout_config::Settings;
use lookout_config::{Config, ListenAddress};

/// Size past which the HTTP audit log is rotated (one previous file kept).
const AUDIT_MAX_BYTES: u64 = 64 << 20;

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
    /// Work with rule files against stored history.
    Rules {
        #[command(subcommand)]
        what: RulesCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Evaluate alerting rules over stored history and report how often each would have
    /// fired and for how long (recording rules are evaluated, nothing is written).
    Backtest(BacktestArgs),
}

/// Flags of `lookout rules backtest`.
#[derive(Debug, Args)]
pub(crate) struct BacktestArgs {
    /// Rule files (Prometheus's format).
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Start: RFC 3339, Unix seconds, `now` or `now-<duration>` (e.g. now-7d).
    #[arg(long, default_value = "now-24h")]
    pub(crate) from: String,
    /// End, in the same forms.
    #[arg(long, default_value = "now")]
    pub(crate) to: String,
    /// Evaluation step (default: each group's interval).
    #[arg(long, value_name = "DURATION")]
    pub(crate) step: Option<String>,
    /// Data directory to read (stop `lookout serve` on it first).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "./lookout-data",
        conflicts_with = "url"
    )]
    pub(crate) data: PathBuf,
    /// A running Lookout to ask instead (its /api/v1/lookout/rules/backtest).
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub(crate) json: bool,
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
    /// Accept Prometheus remote write (1.0) at POST /api/v1/write.
    #[arg(long = "web.enable-remote-write-receiver")]
    pub(crate) enable_remote_write_receiver: bool,
    /// Accept OTLP metrics (protobuf over HTTP) at POST /api/v1/otlp/v1/metrics.
    #[arg(long = "web.enable-otlp-receiver")]
    pub(crate) enable_otlp_receiver: bool,
    /// Web configuration in Prometheus's exporter-toolkit format: TLS, basic-auth users,
    /// response headers (re-read when it changes and on SIGHUP).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub(crate) web_config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum CheckCommand {
    /// Validate a configuration file; exits 1 if it is invalid.
    Config {
        /// The file to check.
        file: PathBuf,
    },
    /// Validate a web configuration file (exporter-toolkit format); exits 1 if it is invalid.
    WebConfig {
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
    /// Series, samples, time range, bytes on disk, top label cardinalities and, with
    /// `--config`, the series each retention rule keeps.
    Stats {
        /// Data directory (stop `lookout serve` on it first).
        #[arg(long, value_name = "DIR", default_value = "./lookout-data")]
        data: PathBuf,
        /// The configuration whose `storage.retention_rules` to report on.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
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
            let mut settings = Settings::new(&config)?;
            let web = match &args.web_config {
                Some(f) => lookout_server::WebSecurity::load(f)
                    .map_err(|e| anyhow::anyhow!("--web.config.file {}: {e}", f.display()))?,
                None => lookout_server::WebSecurity::none(),
            };
            let audit_file = settings.data_dir.join("audit").join("http.log");
            let audit = lookout_server::audit::AuditLog::file(audit_file.clone(), AUDIT_MAX_BYTES)
                .with_context(|| format!("opening the audit log {}", audit_file.display()))?;
            settings.serve.security = std::sync::Arc::new(
                web.with_access(serve::access(&settings)?)
                    .with_audit(std::sync::Arc::new(audit)),
            );
            serve::run(
                settings,
                args.config.clone(),
                serve::Flags {
                    admin_api: args.enable_admin_api,
                    remote_write_receiver: args.enable_remote_write_receiver,
                    otlp_receiver: args.enable_otlp_receiver,
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            what: CheckCommand::Config { file },
        } => Ok(crate::check::config(&file)),
        Command::Check {
            what: CheckCommand::WebConfig { file },
        } => Ok(crate::check::web_config(&file)),
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
        Command::Import {
            what: ImportCommand::Openmetrics { file, data },
        } => {
            crate::import::openmetrics(&file, &data, std::time::Duration::from_secs(2 * 3600))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tsdb {
            what: TsdbCommand::Stats { data, config, json },
        } => {
            let opts = match config {
                Some(p) => lookout_config::storage_options(&Config::load(&p)?),
                None => lookout_tsdb::Options::default(),
            };
            crate::tsdb_cmd::stats(&data, opts, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test {
            what: TestCommand::Promql { files },
        } => crate::promql_cmd::test(&files),
        Command::Rules {
            what: RulesCommand::Backtest(args),
        } => crate::rules_cmd::backtest(&args),
    }
}
