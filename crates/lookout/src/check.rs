//! `lookout check config`: everything `serve` would refuse at start-up, found without
//! starting: the file, the database collectors (DSNs parse, password files are
//! readable), the rule files, the notifier's Alertmanager file (its state kept in
//! memory, so the check touches no file).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use lookout_config::{Config, Settings};

/// Checks `file`; prints `SUCCESS` or `FAILED` with the problem and returns the exit code.
pub(crate) fn config(file: &Path) -> ExitCode {
    match check(file) {
        Ok(()) => {
            println!("SUCCESS: {} is valid", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Checks a web configuration file (exporter-toolkit format) as `serve` would load it.
pub(crate) fn web_config(file: &Path) -> ExitCode {
    match lookout_server::WebConfig::load(file) {
        Ok(c) => {
            println!(
                "SUCCESS: {} is valid ({}, {} basic-auth user(s))",
                file.display(),
                if c.tls.is_some() { "TLS" } else { "no TLS" },
                c.users.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED: {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn check(file: &Path) -> anyhow::Result<()> {
    let c = Config::load(file)?;
    let settings = Settings::new(&c)?;
    let mut scheduler = lookout_collect::Scheduler::new(
        lookout_collect::SchedulerOptions::default(),
        &mut prometheus_client::registry::Registry::default(),
    );
    crate::serve::add_database_collectors(&settings.collectors, &mut scheduler)?;
    crate::serve::access(&settings)?;
    crate::alerting::forwarder(&settings.forward_to)?;
    // Rule files must load as `serve` would load them.
    let files = lookout_rules::file::expand_patterns(&c.rule_files, c.base_dir.as_deref())?;
    let errs: Vec<String> = files
        .iter()
        .filter_map(|f| lookout_rules::file::load_file(f, false).err())
        .flatten()
        .collect();
    if !errs.is_empty() {
        anyhow::bail!("rule_files:\n{}", errs.join("\n"));
    }
    match &settings.notifier {
        Some(n) => crate::alerting::core(n, "http://127.0.0.1:9180", None)
            .map(|_| ())
            .context("notifier.config_file"),
        None => Ok(()),
    }
}
