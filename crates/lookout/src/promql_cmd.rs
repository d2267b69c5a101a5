//! `lookout test promql`: runs PromQL test scripts in Prometheus's promqltest format.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Runs every script; prints each file's counts and failures; exit code 1 on any failure.
pub(crate) fn test(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let engine = lookout_promql::Engine::default();
    let mut failed = false;
    for f in files {
        let r = lookout_promql::promqltest::run_file(&engine, f)
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
