//! Prometheus's own promtool test files (`../shared/upstream/prometheus/promtool-testdata`),
//! with the verdicts Prometheus expects of them (`cmd/promtool/unittest_test.go`). The
//! directory is reference data outside the repository: when it is absent the test says so
//! and checks nothing.

use std::path::PathBuf;

use lookout_rules::file;
use lookout_rules::unittest::{TestOptions, run_file};

fn upstream() -> Option<PathBuf> {
    lookout_testkit::upstream("prometheus/promtool-testdata")
}

#[test]
fn unit_test_files_get_prometheus_verdicts() {
    let Some(dir) = upstream() else { return };
    let correct = || TestOptions {
        run: Some(regex::Regex::new("correct").unwrap()),
        ..TestOptions::default()
    };
    let cases: Vec<(&str, TestOptions, bool)> = vec![
        ("unittest.yml", TestOptions::default(), true),
        ("at-modifier-test.yml", TestOptions::default(), true),
        ("negative-offset-test.yml", TestOptions::default(), true),
        ("no-test-group-interval.yml", TestOptions::default(), true),
        ("long-period.yml", TestOptions::default(), true),
        ("start-time-test.yml", TestOptions::default(), true),
        ("bad-input-series.yml", TestOptions::default(), false),
        ("bad-promql.yml", TestOptions::default(), false),
        ("bad-rules-error-test.yml", TestOptions::default(), false),
        ("bad-rules-syntax-test.yml", TestOptions::default(), false),
        ("failing.yml", TestOptions::default(), false),
        ("rules_run.yml", TestOptions::default(), false),
        ("rules_run.yml", correct(), true),
        ("rules_run_fuzzy.yml", TestOptions::default(), false),
        ("rules_run_fuzzy.yml", correct(), true),
        ("rules_run_no_fuzzy.yml", TestOptions::default(), false),
        ("rules_run_extrafields.yml", TestOptions::default(), false),
        (
            "rules_run_extrafields.yml",
            TestOptions {
                ignore_unknown_fields: true,
                ..TestOptions::default()
            },
            true,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, opts, want) in cases {
        let out = run_file(&dir.join(name), &opts);
        if out.ok() != want {
            wrong.push(format!(
                "{name} (run={:?}, ignore_unknown={}): want pass={want}, got {:?}",
                opts.run.as_ref().map(|r| r.as_str()),
                opts.ignore_unknown_fields,
                out.failures
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn failures_say_what_differs() {
    let Some(dir) = upstream() else { return };
    let out = run_file(&dir.join("failing.yml"), &TestOptions::default());
    let text = out.failures.join("\n");
    assert!(text.contains("expr: \"test\", time: 0s"), "{text}");
    assert!(text.contains("exp: test 1e+00"), "{text}");
    assert!(text.contains("got: test 0e+00"), "{text}");
    assert!(text.contains("alertname: InstanceDown, time: 5m"), "{text}");
    let out = run_file(
        &dir.join("bad-rules-syntax-test.yml"),
        &TestOptions::default(),
    );
    assert!(
        out.failures
            .join("\n")
            .contains("group \"bad-syntax\", rule 1, \"x\": could not parse expression"),
        "{:?}",
        out.failures
    );
    let out = run_file(
        &dir.join("bad-rules-error-test.yml"),
        &TestOptions::default(),
    );
    assert!(
        out.failures
            .join("\n")
            .contains("many-to-many matching not allowed"),
        "{:?}",
        out.failures
    );
}

#[test]
fn rule_files_get_promtool_check_verdicts() {
    let Some(dir) = upstream() else { return };
    for good in [
        "rules.yml",
        "rules_large.yml",
        "rules_duplicates.yml",
        "at-modifier.yml",
        "negative-offset.yml",
        "bad-rules-error.yml",
    ] {
        assert!(
            file::load_file(&dir.join(good), false).is_ok(),
            "{good}: {:?}",
            file::load_file(&dir.join(good), false).err()
        );
    }
    for bad in [
        "rules-bad.yml",
        "bad-rules-syntax.yml",
        "rules_extrafields.yml",
    ] {
        assert!(
            file::load_file(&dir.join(bad), false).is_err(),
            "{bad} should fail"
        );
    }
    assert!(file::load_file(&dir.join("rules_extrafields.yml"), true).is_ok());
    let e = file::load_file(&dir.join("rules-bad.yml"), false).unwrap_err();
    assert!(e[0].contains("group \"alerts\", rule 1, \"InstanceDown\": annotation \"summary\": template: __alert_InstanceDown"), "{e:?}");
}
