//! Runs PromQL test scripts: every file in `testdata/` must pass; the upstream Prometheus
//! scripts in `../shared/upstream/` (present in CI and dev sessions, not in a user's
//! clone) are run and reported, and skipped visibly when absent.

use std::path::{Path, PathBuf};

use lookout_promql::{Engine, promqltest};

fn scripts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "test"));
    v.sort();
    v
}

#[test]
fn own_scripts_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let files = scripts(&dir);
    assert!(!files.is_empty(), "no scripts in {}", dir.display());
    let engine = Engine::default();
    let mut failures = Vec::new();
    for f in files {
        let r = promqltest::run_file(&engine, &f).unwrap();
        assert!(r.passed > 0, "{}: no evals ran", r.file);
        for fail in r.failures {
            failures.push(format!("{}:{}: {}", r.file, fail.line, fail.message));
        }
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

#[test]
fn upstream_scripts_report() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/upstream/prometheus/promql-testdata");
    if !dir.exists() {
        eprintln!(
            "SKIPPED: {} is absent (it exists in CI and dev sessions only)",
            dir.display()
        );
        return;
    }
    let engine = Engine::default();
    for f in scripts(&dir) {
        let r = promqltest::run_file(&engine, &f).unwrap();
        eprintln!(
            "{}: {} passed, {} failed",
            f.file_name().unwrap().to_string_lossy(),
            r.passed,
            r.failures.len()
        );
        if std::env::var_os("PROMQLTEST_VERBOSE").is_some() {
            for fail in &r.failures {
                eprintln!("  line {}: {}", fail.line, fail.message);
            }
        }
    }
}
