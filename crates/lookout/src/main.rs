//! The `lookout` binary: parses the command line and runs the subcommand. Everything else
//! lives in the library crates; this file only maps errors to exit codes.

mod alerting;
mod bench;
mod cli;
mod config;
mod fuzz;
mod import;
mod rules_cmd;
mod serve;
mod tsdb_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    lookout_collect::scrape::install_tls_provider();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
