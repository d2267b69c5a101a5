//! Every file of Prometheus's textparse test data parses (../shared/upstream, present in
//! CI and dev sessions, not in a user's clone: skipped visibly when absent), and broken
//! expositions are rejected with the line number.

use lookout_expfmt::{Format, parse};

#[test]
fn upstream_textparse_files_parse() {
    let Some(dir) = lookout_testkit::upstream("prometheus/textparse-testdata") else {
        return;
    };
    let entries = std::fs::read_dir(&dir).unwrap();
    let mut n = 0;
    for e in entries {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let format = if name.contains(".om.") {
            Format::OpenMetrics
        } else if name.contains(".prom.") {
            Format::Prometheus
        } else {
            continue;
        };
        let body = std::fs::read_to_string(&p).unwrap();
        let exp = parse(&body, format).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!exp.samples.is_empty(), "{name}: no samples");
        n += 1;
    }
    assert!(n >= 4, "only {n} files");
}

#[test]
fn malformed_expositions_name_the_line() {
    for (body, format, line, why) in [
        ("a 1\nb{x=\"1\" 2\nc 3\n", Format::Prometheus, 2, "','"),
        (
            "# TYPE a counter\na_total 1\n",
            Format::OpenMetrics,
            2,
            "# EOF",
        ),
        ("a 1\n# EOF\nb 2\n", Format::OpenMetrics, 3, "after # EOF"),
        ("a 1\n\nb 2\n# EOF\n", Format::OpenMetrics, 2, "empty line"),
        ("ok 1\nbad 1 2 3\n", Format::Prometheus, 2, "unexpected"),
    ] {
        let e = parse(body, format).unwrap_err();
        assert_eq!(e.line, line, "{body:?}: {e}");
        assert!(e.message.contains(why), "{body:?}: {e}");
    }
}

#[test]
fn openmetrics_created_series_are_left_out() {
    let body = "# TYPE a counter\na_total 3\na_created 1.7e9\n# TYPE g gauge\ng_created 1\n# EOF\n";
    let exp = parse(body, Format::OpenMetrics).unwrap();
    let names: Vec<&str> = exp.samples.iter().map(|s| s.name).collect();
    assert_eq!(names, ["a_total", "g_created"]);
}
