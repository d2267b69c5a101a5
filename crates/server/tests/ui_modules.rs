//! The web UI's dashboard modules (`ui/dash/*.mjs`) under Node's test runner: variable
//! interpolation (data-driven from `tests/ui/interpolation.json`), time and interval
//! arithmetic, units, field config, layout, query deduplication and legacy panel
//! mapping. The browser-level tests are in the `lookout` crate's `dashboards` tests.

#[test]
fn dashboard_modules_pass_their_node_tests() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let out = std::process::Command::new("node")
        .arg("--test")
        .arg(&dir)
        .output()
        .expect("node (Debian's nodejs, installed by ./scripts/test) runs the UI module tests");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The run found the tests (a wrong directory passes with none).
    let passed: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(passed >= 12, "{report}");
}
