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

/// Why an upstream eval fails, for the checked-in table. Native histograms and
/// experimental features are accepted exceptions; everything else is marked TODO.
/// Checks run in order, the most specific first.
fn classify(file: &str, message: &str) -> String {
    let experimental_files = [
        (
            "duration_expression.test",
            "experimental: duration expressions",
        ),
        (
            "extended_vectors.test",
            "experimental: anchored/smoothed selectors",
        ),
        ("fill-modifier.test", "experimental: fill modifiers"),
        ("info.test", "experimental: info()"),
        ("start_timestamps.test", "experimental: start timestamps"),
        ("type_and_unit.test", "experimental: type and unit labels"),
    ];
    if let Some((_, why)) = experimental_files.iter().find(|(f, _)| *f == file) {
        return why.to_string();
    }
    let has = |parts: &[&str]| parts.iter().any(|p| message.contains(p));
    if has(&[
        "function ts_of_",
        "function first_over_time()",
        ">/ ",
        "</ ",
    ]) {
        return "experimental: functions and operators behind promql-experimental-functions".into();
    }
    // Custom-bucket histograms (schema -53) whose loads fail fail their sections' evals.
    if has(&[
        "custom_values",
        "load_with_nhcb creates",
        "series of this section were not loaded",
    ]) {
        return "native histograms with custom buckets (NHCB)".into();
    }
    if file == "native_histograms.test" {
        return if has(&[
            "annotation, got",
            "expected no warnings",
            "expected no infos",
        ]) {
            "native histograms (annotation about them)".into()
        } else {
            "native histograms".into()
        };
    }
    if has(&[
        "unexpected character inside brackets",
        "function step()",
        "function start()",
        "function end()",
        "function range()",
        "function min_of()",
        "function max_of()",
    ]) {
        return "experimental: duration expressions".into();
    }
    if message.contains("is not supported yet") {
        let what = message.split("failed: ").last().unwrap_or(message);
        return format!("TODO: {}", what.split(" [").next().unwrap_or(what));
    }
    if has(&[
        "annotation, got",
        "expected no warnings",
        "expected no infos",
    ]) {
        return if has(&["[native histogram series", "load_with_nhcb creates"]) {
            "native histograms (annotation about them)".into()
        } else {
            format!(
                "TODO: annotations: {}",
                message.chars().take(80).collect::<String>()
            )
        };
    }
    if has(&[
        "[native histogram series",
        "load_with_nhcb creates",
        "_with_nhcb",
    ]) {
        return "native histograms".into();
    }
    let short: String = message.chars().take(90).collect();
    format!("TODO: {short}")
}

const TABLE: &str = "testdata/upstream-expected.tsv";

/// Runs every upstream script (`../shared/upstream/`, present in CI and dev sessions, not
/// in a user's clone) and compares the failing evals with the checked-in table
/// `testdata/upstream-expected.tsv`: a new failure is a regression, and an eval that now
/// passes must be removed from the table. `PROMQL_UPDATE_TABLE=1` rewrites the table;
/// `PROMQL_SHOW=<file>.test` prints that file's failures with their messages.
#[test]
fn upstream_scripts_match_the_table() {
    let Some(dir) = lookout_testkit::upstream("prometheus/promql-testdata") else {
        return;
    };
    let engine = Engine::default();
    let mut actual: Vec<(String, usize, String)> = Vec::new();
    let mut summary = Vec::new();
    for f in scripts(&dir) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let r = promqltest::run_file(&engine, &f).unwrap();
        summary.push(format!(
            "{name}: {} passed, {} failed",
            r.passed,
            r.failures.len()
        ));
        let show = std::env::var("PROMQL_SHOW").is_ok_and(|s| s == name);
        for fail in r.failures {
            if show {
                eprintln!("{name}:{}: {}", fail.line, fail.message);
            }
            actual.push((name.clone(), fail.line, classify(&name, &fail.message)));
        }
    }
    eprintln!("{}", summary.join("\n"));
    let table_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE);
    if std::env::var_os("PROMQL_UPDATE_TABLE").is_some() {
        let mut out = String::from(
            "# Upstream PromQL evals (../shared/upstream/prometheus/promql-testdata) that do not pass yet.\n# file\tline\treason. Regenerate with PROMQL_UPDATE_TABLE=1 cargo test -p lookout-promql --test scripts.\n",
        );
        for (f, l, why) in &actual {
            out.push_str(&format!("{f}\t{l}\t{why}\n"));
        }
        std::fs::write(&table_path, out).unwrap();
        return;
    }
    let table = std::fs::read_to_string(&table_path).unwrap();
    let expected: std::collections::BTreeSet<(String, usize)> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let mut p = l.split('\t');
            (
                p.next().unwrap().to_string(),
                p.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let got: std::collections::BTreeSet<(String, usize)> =
        actual.iter().map(|(f, l, _)| (f.clone(), *l)).collect();
    let regressions: Vec<String> = actual
        .iter()
        .filter(|(f, l, _)| !expected.contains(&(f.clone(), *l)))
        .map(|(f, l, why)| format!("{f}:{l}: {why}"))
        .collect();
    let fixed: Vec<String> = expected
        .difference(&got)
        .map(|(f, l)| format!("{f}:{l}"))
        .collect();
    assert!(
        regressions.is_empty(),
        "evals that used to pass now fail:\n{}",
        regressions.join("\n")
    );
    assert!(
        fixed.is_empty(),
        "evals now pass; remove them from {TABLE} (PROMQL_UPDATE_TABLE=1):\n{}",
        fixed.join("\n")
    );
}
