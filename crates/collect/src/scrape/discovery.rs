//! Target discovery: `static_configs` and `file_sd_configs` (JSON or YAML lists of
//! `{targets, labels}`; the last path element may hold `*` globs). A file that fails to
//! parse keeps the targets it last gave, as Prometheus does, and the error is logged.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use super::config::{FileSdConfig, ScrapeConfig};

/// Targets sharing labels.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels of every target in the group.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The files a file_sd config names now (globs expanded), sorted.
fn files(cfgs: &[FileSdConfig]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for c in cfgs {
        for pattern in &c.files {
            let p = Path::new(pattern);
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            match name {
                Some(n) if n.contains('*') => {
                    let dir = p
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or(Path::new("."));
                    let re =
                        regex::Regex::new(&format!("^{}$", regex::escape(&n).replace("\\*", ".*")))
                            .expect("escaped glob");
                    if let Ok(rd) = std::fs::read_dir(dir) {
                        for e in rd.flatten() {
                            if re.is_match(&e.file_name().to_string_lossy()) {
                                out.push(e.path());
                            }
                        }
                    }
                }
                _ => out.push(p.to_path_buf()),
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What changes when a file_sd file changes: names, sizes and modification times.
pub(crate) fn fingerprint(cfgs: &[FileSdConfig]) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    files(cfgs)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).ok();
            let mtime = m.as_ref().and_then(|m| m.modified().ok());
            let len = m.map_or(0, |m| m.len());
            (p, mtime, len)
        })
        .collect()
}

/// Reads one file_sd file (JSON when it ends in `.json`, YAML otherwise).
pub fn read_file_sd(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let groups: Vec<TargetGroup> = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        yaml_serde::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    Ok(groups
        .into_iter()
        .map(|mut g| {
            g.labels
                .insert("__meta_filepath".into(), path.display().to_string());
            g
        })
        .collect())
}

/// Every target group of a job now. `last_good` keeps each file's last readable content.
pub(crate) fn groups(
    cfg: &ScrapeConfig,
    last_good: &mut HashMap<PathBuf, Vec<TargetGroup>>,
) -> Vec<TargetGroup> {
    let mut out: Vec<TargetGroup> = cfg
        .static_configs
        .iter()
        .map(|s| TargetGroup {
            targets: s.targets.clone(),
            labels: s.labels.clone(),
        })
        .collect();
    let current = files(&cfg.file_sd_configs);
    last_good.retain(|p, _| current.contains(p));
    for p in current {
        match read_file_sd(&p) {
            Ok(g) => {
                last_good.insert(p.clone(), g);
            }
            Err(e) => {
                tracing::warn!(job = %cfg.job_name, error = %e, "file_sd file unreadable; keeping its previous targets");
            }
        }
        if let Some(g) = last_good.get(&p) {
            out.extend(g.iter().cloned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_yaml_and_json_files_through_globs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yml"),
            "- targets: [\"h1:9100\", \"h2:9100\"]\n  labels: { env: prod }\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("b.json"), r#"[{"targets": ["h3:9100"]}]"#).unwrap();
        std::fs::write(dir.path().join("c.txt"), "ignored").unwrap();
        let cfg = FileSdConfig {
            files: vec![
                format!("{}/*.yml", dir.path().display()),
                format!("{}/b.json", dir.path().display()),
            ],
            refresh_interval: None,
        };
        let found = files(std::slice::from_ref(&cfg));
        assert_eq!(found.len(), 2);
        let a = read_file_sd(&found[0]).unwrap();
        assert_eq!(a[0].targets, ["h1:9100", "h2:9100"]);
        assert_eq!(a[0].labels.get("env").map(String::as_str), Some("prod"));
        assert!(a[0].labels["__meta_filepath"].ends_with("a.yml"));
        let e = read_file_sd(&dir.path().join("c.txt")).unwrap_err();
        assert!(e.contains("c.txt"), "{e}");
    }
}
