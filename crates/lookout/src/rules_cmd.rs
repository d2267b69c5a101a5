//! `lookout check rules` and `lookout test rules`: promtool's rule commands, with its
//! output shape (`Checking FILE` / `SUCCESS: N rules found`, `Unit Testing: FILE` /
//! `SUCCESS` or `FAILED:` with expected and got), and exit status 1 on any failure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use lookout_rules::file;
use lookout_rules::unittest::{TestOptions, run_file};

/// Recording rules that write the same series twice (same name and labels).
fn duplicates(f: &file::RuleFile) -> Vec<(String, BTreeMap<String, String>)> {
    let mut seen: BTreeMap<(String, BTreeMap<String, String>), usize> = BTreeMap::new();
    for g in &f.groups {
        for r in &g.rules {
            if let Some(rec) = &r.record {
                *seen.entry((rec.clone(), r.labels.clone())).or_default() += 1;
            }
        }
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect()
}

/// Checks rule files; returns failure when any is invalid.
pub(crate) fn check(files: &[PathBuf], ignore_unknown_fields: bool) -> ExitCode {
    let mut failed = false;
    for f in files {
        println!("Checking {}", f.display());
        match file::load_file(f, ignore_unknown_fields) {
            Ok(loaded) => {
                let dups = duplicates(&loaded.file);
                if !dups.is_empty() {
                    println!("{} duplicate rule(s) found.", dups.len());
                    for (name, labels) in dups {
                        println!("Metric: {name}");
                        let l: Vec<String> =
                            labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                        println!("Label(s):");
                        if !l.is_empty() {
                            println!("\t{}", l.join(", "));
                        }
                    }
                    println!("Might cause inconsistency while recording expressions.");
                }
                let n: usize = loaded.file.groups.iter().map(|g| g.rules.len()).sum();
                println!("  SUCCESS: {n} rules found");
            }
            Err(errs) => {
                failed = true;
                eprintln!("  FAILED:");
                for e in errs {
                    eprintln!("{e}");
                }
            }
        }
        println!();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs rule unit-test files; returns failure when any test fails.
pub(crate) fn test(
    files: &[PathBuf],
    run: Option<&str>,
    ignore_unknown_fields: bool,
) -> anyhow::Result<ExitCode> {
    let opts = TestOptions {
        run: run
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--run: {e}"))?,
        ignore_unknown_fields,
    };
    let mut failed = false;
    for f in files {
        println!("Unit Testing:  {}", f.display());
        let out = run_file(f, &opts);
        if out.ok() {
            println!("  SUCCESS");
        } else {
            failed = true;
            println!("  FAILED:");
            for e in &out.failures {
                println!("{e}");
            }
        }
        println!();
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
