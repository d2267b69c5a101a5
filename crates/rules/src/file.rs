//! Prometheus rule files: parsing and validation.
//!
//! The schema is Prometheus's `rulefmt`: `groups:` of `{name, interval, limit,
//! query_offset, labels, rules}`, each rule a recording rule (`record`, `expr`, `labels`)
//! or an alerting rule (`alert`, `expr`, `for`, `keep_firing_for`, `labels`,
//! `annotations`). Errors name the file, the group, the rule's 1-based position and its
//! name, as promtool's do: `rules.yml: group "g", rule 2, "x": invalid recording rule
//! name: 1x`. Unknown fields are errors unless the caller asks to ignore them (promtool's
//! `--ignore-unknown-fields`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::template;

/// A rule file as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The file's groups, in order.
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
}

/// One `groups:` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// The group's name, unique within its file.
    #[serde(default)]
    pub name: String,
    /// How often the group runs (default: the global evaluation interval).
    #[serde(default, with = "opt_duration")]
    pub interval: Option<Duration>,
    /// Most series (recording) or alerts (alerting) one rule may produce; 0: no limit.
    #[serde(default)]
    pub limit: usize,
    /// How far back from the evaluation time queries look.
    #[serde(default, with = "opt_duration")]
    pub query_offset: Option<Duration>,
    /// Labels added to every rule's output.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The rules, evaluated in order.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// One rule as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Recording rule: the name of the series written.
    #[serde(default)]
    pub record: Option<String>,
    /// Alerting rule: the alert's name.
    #[serde(default)]
    pub alert: Option<String>,
    /// The PromQL expression.
    #[serde(default)]
    pub expr: String,
    /// How long an alert stays pending before it fires.
    #[serde(default, rename = "for", with = "opt_duration")]
    pub for_: Option<Duration>,
    /// How long an alert keeps firing after its expression stops returning it.
    #[serde(default, with = "opt_duration")]
    pub keep_firing_for: Option<Duration>,
    /// Labels added to (or replacing those of) the result; templates for alerts.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Alert annotations (templates).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl RuleSpec {
    /// The rule's name: its `record` or `alert`.
    pub fn name(&self) -> &str {
        self.record
            .as_deref()
            .or(self.alert.as_deref())
            .unwrap_or("")
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let v = Option::<yaml_serde::Value>::deserialize(d)?;
        let s = match v {
            None | Some(yaml_serde::Value::Null) => return Ok(None),
            Some(yaml_serde::Value::String(s)) => s,
            Some(yaml_serde::Value::Number(n)) if n.as_u64() == Some(0) => "0s".into(),
            Some(other) => {
                return Err(de::Error::custom(format!(
                    "expected a duration such as 5m, got {other:?}"
                )));
            }
        };
        if s == "0" {
            return Ok(Some(Duration::ZERO));
        }
        lookout_model::parse_duration(&s)
            .map(Some)
            .map_err(de::Error::custom)
    }
}

const GROUP_KEYS: &[&str] = &[
    "name",
    "interval",
    "limit",
    "query_offset",
    "labels",
    "rules",
];
const RULE_KEYS: &[&str] = &[
    "record",
    "alert",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];

/// Drops keys the schema does not know (for `--ignore-unknown-fields`).
fn strip_unknown(v: &mut yaml_serde::Value) {
    let keep = |m: &mut yaml_serde::Mapping, known: &[&str]| {
        m.retain(|k, _| k.as_str().is_some_and(|k| known.contains(&k)));
    };
    let Some(top) = v.as_mapping_mut() else {
        return;
    };
    keep(top, &["groups"]);
    let Some(groups) = top.get_mut("groups").and_then(|g| g.as_sequence_mut()) else {
        return;
    };
    for g in groups {
        let Some(gm) = g.as_mapping_mut() else {
            continue;
        };
        keep(gm, GROUP_KEYS);
        if let Some(rules) = gm.get_mut("rules").and_then(|r| r.as_sequence_mut()) {
            for r in rules.iter_mut().filter_map(|r| r.as_mapping_mut()) {
                keep(r, RULE_KEYS);
            }
        }
    }
}

/// Parses rule-file text (YAML) without validating the rules.
pub fn parse_text(text: &str, ignore_unknown_fields: bool) -> crate::Result<RuleFile> {
    if text.trim().is_empty() {
        return Ok(RuleFile::default());
    }
    if ignore_unknown_fields {
        let mut v: yaml_serde::Value = yaml_serde::from_str(text)?;
        strip_unknown(&mut v);
        // Back through text, so scalars read as the schema wants them (`expr: 1`).
        let text = yaml_serde::to_string(&v)?;
        Ok(yaml_serde::from_str(&text)?)
    } else {
        yaml_serde::from_str::<Option<RuleFile>>(text)
            .map(Option::unwrap_or_default)
            .map_err(crate::Error::Format)
    }
}

/// A metric name as Prometheus accepts it for `record`.
pub fn is_valid_metric_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().enumerate().all(|(i, c)| {
            c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
        })
}

/// Checks one file's groups and rules as Prometheus does; returns every problem found.
pub fn validate(file: &RuleFile) -> Vec<String> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for g in &file.groups {
        if g.name.is_empty() {
            errs.push("Groupname must not be empty".to_string());
        } else if !names.insert(g.name.as_str()) {
            errs.push(format!("{:?}: is repeated in the same file", g.name));
        }
        for k in g.labels.keys() {
            if !lookout_model::is_valid_label_name(k) || k == lookout_model::METRIC_NAME_LABEL {
                errs.push(format!("group {:?}: invalid label name: {k}", g.name));
            }
        }
        for (i, r) in g.rules.iter().enumerate() {
            for e in validate_rule(r) {
                errs.push(format!(
                    "group {:?}, rule {}, {:?}: {e}",
                    g.name,
                    i + 1,
                    r.name()
                ));
            }
        }
    }
    errs
}

fn validate_rule(r: &RuleSpec) -> Vec<String> {
    let mut errs = Vec::new();
    match (&r.record, &r.alert) {
        (Some(_), Some(_)) => errs.push("only one of 'record' and 'alert' must be set".into()),
        (None, None) => errs.push("one of 'record' or 'alert' must be set".into()),
        _ => {}
    }
    if r.expr.trim().is_empty() {
        errs.push("field 'expr' must be set in rule".into());
    } else if let Err(e) = lookout_promql::parse(&r.expr) {
        errs.push(format!("could not parse expression: {e}"));
    }
    if let Some(rec) = &r.record {
        if !r.annotations.is_empty() {
            errs.push("invalid field 'annotations' in recording rule".into());
        }
        if r.for_.is_some() {
            errs.push("invalid field 'for' in recording rule".into());
        }
        if r.keep_firing_for.is_some() {
            errs.push("invalid field 'keep_firing_for' in recording rule".into());
        }
        if !is_valid_metric_name(rec) {
            errs.push(format!("invalid recording rule name: {rec}"));
        }
    }
    if let Some(a) = &r.alert
        && a.is_empty()
    {
        errs.push("alert name must not be empty".into());
    }
    for k in r.labels.keys() {
        if !lookout_model::is_valid_label_name(k) || k == lookout_model::METRIC_NAME_LABEL {
            errs.push(format!("invalid label name: {k}"));
        }
    }
    for k in r.annotations.keys() {
        if !lookout_model::is_valid_label_name(k) {
            errs.push(format!("invalid annotation name: {k}"));
        }
    }
    if let Some(alert) = &r.alert {
        let name = format!("__alert_{alert}");
        for (what, map) in [("label", &r.labels), ("annotation", &r.annotations)] {
            for (k, v) in map {
                if let Err(e) = template::check(&name, v) {
                    errs.push(format!("{what} {k:?}: {e}"));
                }
            }
        }
    }
    errs
}

/// A rule file read from disk and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedFile {
    /// The path as given (after glob expansion).
    pub path: PathBuf,
    /// Its contents.
    pub file: RuleFile,
}

/// Reads, parses and validates one file. The error lists every problem, each prefixed with
/// the path.
pub fn load_file(path: &Path, ignore_unknown_fields: bool) -> Result<LoadedFile, Vec<String>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{shown}: {e}")])?;
    let file =
        parse_text(&text, ignore_unknown_fields).map_err(|e| vec![format!("{shown}: {e}")])?;
    let errs = validate(&file);
    if errs.is_empty() {
        Ok(LoadedFile {
            path: path.to_path_buf(),
            file,
        })
    } else {
        Err(errs.into_iter().map(|e| format!("{shown}: {e}")).collect())
    }
}

/// Expands `rule_files` patterns (globs in any path element, relative to `base`) into
/// files, in order, without duplicates. A pattern without glob characters is kept even if
/// the file does not exist, so reading it reports the problem.
pub fn expand_patterns(patterns: &[String], base: Option<&Path>) -> crate::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in patterns {
        let full = match base {
            Some(b) if Path::new(p).is_relative() => b.join(p),
            _ => PathBuf::from(p),
        };
        let s = full.to_string_lossy().into_owned();
        if s.contains(['*', '?', '[']) {
            let paths = glob::glob(&s).map_err(|e| crate::Error::Pattern {
                pattern: p.clone(),
                message: e.to_string(),
            })?;
            let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
            found.sort();
            for f in found {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        } else if !out.contains(&full) {
            out.push(full);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates_like_rulefmt() {
        let f = parse_text(
            "groups:\n- name: g\n  interval: 30s\n  rules:\n  - record: 'job:x:sum'\n    expr: sum(x)\n  - alert: A\n    expr: up == 0\n    for: 5m\n    keep_firing_for: 1m\n    labels: {severity: page}\n    annotations: {summary: 'down {{ $labels.instance }}'}\n",
            false,
        )
        .unwrap();
        assert_eq!(f.groups[0].interval, Some(Duration::from_secs(30)));
        assert_eq!(f.groups[0].rules[1].for_, Some(Duration::from_secs(300)));
        assert!(validate(&f).is_empty(), "{:?}", validate(&f));

        let bad = parse_text(
            "groups:\n- name: g\n  rules:\n  - record: '1x'\n    expr: 'sum('\n    for: 1m\n  - expr: up\n- name: g\n  rules: []\n",
            false,
        )
        .unwrap();
        let errs = validate(&bad);
        assert!(
            errs.iter()
                .any(|e| e.starts_with("group \"g\", rule 1, \"1x\": could not parse expression")),
            "{errs:?}"
        );
        assert!(
            errs.contains(
                &"group \"g\", rule 1, \"1x\": invalid recording rule name: 1x".to_string()
            )
        );
        assert!(errs.contains(
            &"group \"g\", rule 1, \"1x\": invalid field 'for' in recording rule".to_string()
        ));
        assert!(errs.contains(
            &"group \"g\", rule 2, \"\": one of 'record' or 'alert' must be set".to_string()
        ));
        assert!(errs.contains(&"\"g\": is repeated in the same file".to_string()));
    }

    #[test]
    fn unknown_fields_are_errors_unless_ignored() {
        let text = "groups:\n- name: g\n  owner: me\n  rules:\n  - record: x\n    expr: '1'\n    extra: 1\n";
        let e = parse_text(text, false).unwrap_err().to_string();
        assert!(e.contains("owner"), "{e}");
        let f = parse_text(text, true).unwrap();
        assert_eq!(f.groups[0].rules[0].record.as_deref(), Some("x"));
    }

    #[test]
    fn bad_templates_are_reported_with_the_annotation() {
        let f = parse_text(
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: '1'\n    annotations: {summary: '{{ $label.foo }}'}\n",
            false,
        )
        .unwrap();
        let errs = validate(&f);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "group \"g\", rule 1, \"A\": annotation \"summary\": template: __alert_A"
            ),
            "{errs:?}"
        );
        assert!(errs[0].contains("$label"), "{errs:?}");
    }

    #[test]
    fn globs_expand_relative_to_the_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yml"), "").unwrap();
        std::fs::write(dir.path().join("a.yml"), "").unwrap();
        let got = expand_patterns(
            &["*.yml".into(), "a.yml".into(), "missing.yml".into()],
            Some(dir.path()),
        )
        .unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.yml", "b.yml", "missing.yml"]);
    }
}
