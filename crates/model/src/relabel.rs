//! Relabeling, as Prometheus's `model/relabel`: `relabel_configs` on targets,
//! `metric_relabel_configs` on scraped samples (and later alert and remote-write
//! relabeling), with every action: `replace`, `keep`, `drop`, `keepequal`, `dropequal`,
//! `hashmod`, `labelmap`, `labeldrop`, `labelkeep`, `lowercase`, `uppercase`.
//!
//! Regular expressions are anchored at both ends, as Prometheus anchors them; `$1`,
//! `${1}` and `$name` in `replacement` and `target_label` expand from the match.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::{Labels, is_valid_label_name};

/// A relabeling action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Sets `target_label` to `replacement` (expanded) when `regex` matches.
    #[default]
    Replace,
    /// Drops the target/sample unless `regex` matches.
    Keep,
    /// Drops the target/sample when `regex` matches.
    Drop,
    /// Drops unless the joined source labels equal `target_label`'s value.
    KeepEqual,
    /// Drops when the joined source labels equal `target_label`'s value.
    DropEqual,
    /// Sets `target_label` to a hash of the source labels modulo `modulus`.
    HashMod,
    /// Copies labels whose names match `regex` to the names `replacement` gives.
    LabelMap,
    /// Removes labels whose names match `regex`.
    LabelDrop,
    /// Removes labels whose names do not match `regex`.
    LabelKeep,
    /// Sets `target_label` to the joined source labels in lower case.
    Lowercase,
    /// Sets `target_label` to the joined source labels in upper case.
    Uppercase,
}

/// An anchored regular expression as written in a relabel config.
#[derive(Debug, Clone)]
pub struct RelabelRegex {
    source: String,
    re: Regex,
}

impl RelabelRegex {
    /// Compiles `source` anchored (`^(?s:source)$`).
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            source: source.to_string(),
            re: Regex::new(&format!("^(?s:{source})$"))?,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for RelabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Default for RelabelRegex {
    fn default() -> Self {
        Self::new("(.*)").expect("valid")
    }
}

impl<'de> Deserialize<'de> for RelabelRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(|e| de::Error::custom(format!("invalid regex {s:?}: {e}")))
    }
}

fn default_separator() -> String {
    ";".into()
}

fn default_replacement() -> String {
    "$1".into()
}

/// One relabel rule, with Prometheus's defaults (`action: replace`, `separator: ;`,
/// `regex: (.*)`, `replacement: $1`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` into the value matched.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Joins the source label values.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// The label written by `replace`, `hashmod`, `lowercase`, `uppercase`, compared by
    /// `keepequal`/`dropequal`.
    #[serde(default)]
    pub target_label: String,
    /// Matched against the joined source values (or label names for the `label*`
    /// actions).
    #[serde(default)]
    pub regex: RelabelRegex,
    /// For `hashmod`.
    #[serde(default)]
    pub modulus: u64,
    /// What `replace` writes and `labelmap` names; `$1` refers to the first group.
    #[serde(default = "default_replacement")]
    pub replacement: String,
    /// What to do.
    #[serde(default)]
    pub action: Action,
}

impl RelabelConfig {
    /// Checks what Prometheus checks when it loads a config; the message names the
    /// action and the missing or invalid field.
    pub fn validate(&self) -> Result<(), String> {
        let name = format!("{:?}", self.action).to_lowercase();
        let needs_target = matches!(
            self.action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && self.target_label.is_empty() {
            return Err(format!(
                "relabel configuration for {name} action requires 'target_label' value"
            ));
        }
        if self.action == Action::HashMod && self.modulus == 0 {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        if matches!(
            self.action,
            Action::LabelDrop | Action::LabelKeep | Action::LabelMap
        ) && !self.source_labels.is_empty()
        {
            return Err(format!(
                "{name} action requires only 'regex', and no other fields"
            ));
        }
        if matches!(
            self.action,
            Action::Lowercase
                | Action::Uppercase
                | Action::HashMod
                | Action::KeepEqual
                | Action::DropEqual
        ) && !is_valid_label_name(&self.target_label)
        {
            return Err(format!(
                "{:?} is invalid 'target_label' for {name} action",
                self.target_label
            ));
        }
        Ok(())
    }
}

/// Applies `configs` in order; `None` when a rule drops the target or sample.
pub fn process(labels: &Labels, configs: &[RelabelConfig]) -> Option<Labels> {
    if configs.is_empty() {
        return Some(labels.clone());
    }
    let mut lb: BTreeMap<String, String> = labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    for c in configs {
        if !apply(&mut lb, c) {
            return None;
        }
    }
    Some(Labels::from_pairs(lb))
}

fn apply(lb: &mut BTreeMap<String, String>, c: &RelabelConfig) -> bool {
    let val = c
        .source_labels
        .iter()
        .map(|n| lb.get(n).map(String::as_str).unwrap_or(""))
        .collect::<Vec<_>>()
        .join(&c.separator);
    let re = &c.regex.re;
    match c.action {
        Action::Keep => return re.is_match(&val),
        Action::Drop => return !re.is_match(&val),
        Action::KeepEqual => {
            return lb.get(&c.target_label).map(String::as_str).unwrap_or("") == val;
        }
        Action::DropEqual => {
            return lb.get(&c.target_label).map(String::as_str).unwrap_or("") != val;
        }
        Action::Replace => {
            let Some(caps) = re.captures(&val) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&c.target_label, &mut target);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&c.replacement, &mut res);
            if res.is_empty() {
                lb.remove(&target);
            } else {
                lb.insert(target, res);
            }
        }
        Action::Lowercase => {
            lb.insert(c.target_label.clone(), val.to_lowercase());
        }
        Action::Uppercase => {
            lb.insert(c.target_label.clone(), val.to_uppercase());
        }
        Action::HashMod => {
            let sum = Md5::digest(val.as_bytes());
            let tail: [u8; 8] = sum[8..16].try_into().expect("16-byte digest");
            let m = u64::from_be_bytes(tail) % c.modulus;
            lb.insert(c.target_label.clone(), m.to_string());
        }
        Action::LabelMap => {
            let adds: Vec<(String, String)> = lb
                .iter()
                .filter_map(|(n, v)| {
                    let caps = re.captures(n)?;
                    let mut name = String::new();
                    caps.expand(&c.replacement, &mut name);
                    Some((name, v.clone()))
                })
                .collect();
            lb.extend(adds);
        }
        Action::LabelDrop => lb.retain(|n, _| !re.is_match(n)),
        Action::LabelKeep => lb.retain(|n, _| re.is_match(n)),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml_like: &[(&str, &str)]) -> RelabelConfig {
        let mut c = RelabelConfig {
            source_labels: Vec::new(),
            separator: ";".into(),
            target_label: String::new(),
            regex: RelabelRegex::default(),
            modulus: 0,
            replacement: "$1".into(),
            action: Action::Replace,
        };
        for (k, v) in yaml_like {
            match *k {
                "source_labels" => c.source_labels = v.split(',').map(str::to_string).collect(),
                "separator" => c.separator = v.to_string(),
                "target_label" => c.target_label = v.to_string(),
                "regex" => c.regex = RelabelRegex::new(v).unwrap(),
                "modulus" => c.modulus = v.parse().unwrap(),
                "replacement" => c.replacement = v.to_string(),
                "action" => {
                    c.action = match *v {
                        "keep" => Action::Keep,
                        "drop" => Action::Drop,
                        "keepequal" => Action::KeepEqual,
                        "dropequal" => Action::DropEqual,
                        "hashmod" => Action::HashMod,
                        "labelmap" => Action::LabelMap,
                        "labeldrop" => Action::LabelDrop,
                        "labelkeep" => Action::LabelKeep,
                        "lowercase" => Action::Lowercase,
                        "uppercase" => Action::Uppercase,
                        _ => Action::Replace,
                    }
                }
                _ => panic!("{k}"),
            }
        }
        c.validate().unwrap();
        c
    }

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn every_action_follows_prometheus() {
        let base = ls(&[("__address__", "db1:9187"), ("env", "Prod"), ("a", "x")]);
        let r = |c: &[(&str, &str)]| process(&base, &[cfg(c)]);
        assert_eq!(
            r(&[
                ("source_labels", "__address__"),
                ("regex", "(.*):\\d+"),
                ("target_label", "host")
            ])
            .unwrap()
            .get("host"),
            Some("db1")
        );
        // No match leaves everything; an empty result deletes the target.
        assert_eq!(
            r(&[
                ("source_labels", "env"),
                ("regex", "dev"),
                ("target_label", "env")
            ])
            .unwrap(),
            base
        );
        assert_eq!(
            r(&[("source_labels", "nope"), ("target_label", "env")])
                .unwrap()
                .get("env"),
            None
        );
        assert!(
            r(&[
                ("source_labels", "env"),
                ("regex", "Prod"),
                ("action", "keep")
            ])
            .is_some()
        );
        assert!(
            r(&[
                ("source_labels", "env"),
                ("regex", "Pro"),
                ("action", "keep")
            ])
            .is_none()
        );
        assert!(
            r(&[
                ("source_labels", "env"),
                ("regex", "Prod"),
                ("action", "drop")
            ])
            .is_none()
        );
        assert!(
            r(&[
                ("source_labels", "a"),
                ("target_label", "a"),
                ("action", "keepequal")
            ])
            .is_some()
        );
        assert!(
            r(&[
                ("source_labels", "env"),
                ("target_label", "a"),
                ("action", "dropequal")
            ])
            .is_some()
        );
        assert_eq!(
            r(&[
                ("source_labels", "env"),
                ("target_label", "e"),
                ("action", "lowercase")
            ])
            .unwrap()
            .get("e"),
            Some("prod")
        );
        assert_eq!(
            r(&[
                ("source_labels", "env"),
                ("target_label", "e"),
                ("action", "uppercase")
            ])
            .unwrap()
            .get("e"),
            Some("PROD")
        );
        assert_eq!(
            r(&[
                ("regex", "__(address)__"),
                ("replacement", "m_$1"),
                ("action", "labelmap")
            ])
            .unwrap()
            .get("m_address"),
            Some("db1:9187")
        );
        assert_eq!(
            r(&[("regex", "__.*"), ("action", "labeldrop")]).unwrap(),
            ls(&[("env", "Prod"), ("a", "x")])
        );
        assert_eq!(
            r(&[("regex", "a|env"), ("action", "labelkeep")]).unwrap(),
            ls(&[("env", "Prod"), ("a", "x")])
        );
        let h = r(&[
            ("source_labels", "__address__"),
            ("target_label", "shard"),
            ("modulus", "8"),
            ("action", "hashmod"),
        ])
        .unwrap();
        let shard: u64 = h.get("shard").unwrap().parse().unwrap();
        assert!(shard < 8);
        // `$1` in target_label, joined sources with a separator.
        let t = r(&[
            ("source_labels", "a,env"),
            ("separator", "-"),
            ("regex", "(x)-(.*)"),
            ("target_label", "l_$1"),
            ("replacement", "$2"),
        ])
        .unwrap();
        assert_eq!(t.get("l_x"), Some("Prod"));
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8; the last 8 bytes big-endian,
        // 0xedef654fccc4a4d8 % 1000 = 904 (checked against Prometheus's algorithm).
        let c = cfg(&[
            ("source_labels", "a"),
            ("target_label", "h"),
            ("modulus", "1000"),
            ("action", "hashmod"),
        ]);
        let out = process(&ls(&[("a", "foo")]), &[c]).unwrap();
        assert_eq!(
            out.get("h"),
            Some(&*(0xedef_654f_ccc4_a4d8u64 % 1000).to_string())
        );
    }

    #[test]
    fn invalid_configs_are_named() {
        let c = RelabelConfig {
            target_label: String::new(),
            ..cfg(&[("target_label", "x")])
        };
        assert!(
            c.validate()
                .unwrap_err()
                .contains("replace action requires 'target_label'")
        );
        let c = RelabelConfig {
            modulus: 0,
            action: Action::HashMod,
            ..cfg(&[("target_label", "x")])
        };
        assert!(c.validate().unwrap_err().contains("modulus"));
    }
}
