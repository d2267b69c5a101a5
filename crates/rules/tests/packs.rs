//! The shipped rule packs: their unit tests pass, every alert links to a runbook section
//! that exists, and Debian's promtool (when installed, as `scripts/test` installs it)
//! accepts the packs and passes the same unit tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use lookout_rules::file;
use lookout_rules::packs::PACKS;
use lookout_rules::unittest::{TestOptions, run_file};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packs")
}

#[test]
fn every_pack_is_valid_and_its_unit_tests_pass() {
    for p in PACKS {
        let f = file::parse_text(p.text, false).unwrap();
        assert!(
            file::validate(&f).is_empty(),
            "{}: {:?}",
            p.name,
            file::validate(&f)
        );
        let test = pack_dir().join(format!("tests/{}_test.yml", p.name));
        let out = run_file(&test, &TestOptions::default());
        assert!(out.ok(), "{}:\n{}", test.display(), out.failures.join("\n"));
        // Every alert of the pack is exercised by its tests.
        let tests = std::fs::read_to_string(&test).unwrap();
        for g in &f.groups {
            for r in &g.rules {
                if let Some(a) = &r.alert {
                    assert!(
                        tests.contains(&format!("alertname: {a}\n")),
                        "{}: no test for {a}",
                        p.name
                    );
                }
            }
        }
    }
}

#[test]
fn every_alert_has_a_runbook_that_exists() {
    const BASE: &str = "https://github.com/lookout-monitoring/lookout/blob/main/";
    for p in PACKS {
        let f = file::parse_text(p.text, false).unwrap();
        for g in &f.groups {
            for r in &g.rules {
                let Some(alert) = &r.alert else { continue };
                let url = r
                    .annotations
                    .get("runbook_url")
                    .unwrap_or_else(|| panic!("{alert}: no runbook_url"));
                let rest = url
                    .strip_prefix(BASE)
                    .unwrap_or_else(|| panic!("{alert}: {url} is not in the repository"));
                let (doc, anchor) = rest.split_once('#').unwrap();
                let text = std::fs::read_to_string(root().join(doc))
                    .unwrap_or_else(|e| panic!("{alert}: {doc}: {e}"));
                assert_eq!(anchor, alert.to_lowercase(), "{alert}: anchor");
                assert!(
                    text.contains(&format!("\n## {alert}\n")),
                    "{doc} has no section {alert}"
                );
                for k in ["summary", "description"] {
                    assert!(r.annotations.contains_key(k), "{alert}: no {k}");
                }
                assert!(
                    matches!(
                        r.labels.get("severity").map(String::as_str),
                        Some("critical" | "warning" | "info")
                    ),
                    "{alert}: severity"
                );
            }
        }
    }
}

fn promtool() -> Option<&'static str> {
    match Command::new("promtool").arg("--version").output() {
        Ok(o) if o.status.success() => Some("promtool"),
        _ => {
            eprintln!(
                "SKIPPED: promtool is not installed (scripts/test installs Debian's prometheus package)"
            );
            None
        }
    }
}

#[test]
fn debian_promtool_accepts_the_packs_and_their_tests() {
    let Some(promtool) = promtool() else { return };
    for p in PACKS {
        let rules = pack_dir().join(format!("{}.yml", p.name));
        let out = Command::new(promtool)
            .args(["check", "rules"])
            .arg(&rules)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check rules {}: {}{}",
            rules.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let test = pack_dir().join(format!("tests/{}_test.yml", p.name));
        let out = Command::new(promtool)
            .args(["test", "rules"])
            .arg(&test)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool test rules {}: {}{}",
            test.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
