//! The dashboards the server lists: the shipped set, files matched by `dashboards.paths`
//! (re-read when a file appears, changes or goes), and imports kept in the data directory.
//!
//! When two dashboards share a uid, a file wins over an import, which wins over a shipped
//! dashboard (an operator's copy replaces ours); two files with one uid keep the first
//! and list the second with an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rust_embed::RustEmbed;
use serde::Serialize;
use serde_json::Value;

use crate::model::{Limits, normalize};
use crate::{Error, Result};

#[derive(RustEmbed)]
#[folder = "shipped/"]
struct Shipped;

/// Most dashboards kept from imports.
const MAX_IMPORTED: usize = 1000;

/// What the library reads.
#[derive(Debug, Clone, Default)]
pub struct DashboardsOptions {
    /// Glob patterns of dashboard JSON files (`dashboards.paths`).
    pub paths: Vec<String>,
    /// Where relative patterns start (the configuration file's directory).
    pub base_dir: Option<PathBuf>,
    /// Where imported dashboards are kept; `None` refuses imports.
    pub import_dir: Option<PathBuf>,
    /// Shipped dashboards to offer, by file stem (`host`, `lookout`, `postgres`, `redis`).
    pub shipped: Vec<String>,
    /// Bounds on each dashboard.
    pub limits: Limits,
    /// The scrape interval dashboards assume for `$__rate_interval` (Grafana's data
    /// source setting; Lookout's `global.scrape_interval`).
    pub scrape_interval: std::time::Duration,
}

/// Where a dashboard comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Built into Lookout.
    Shipped,
    /// A file matched by `dashboards.paths`.
    File,
    /// Imported through the API or the import page.
    Imported,
}

/// One line of the dashboard list.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Grafana's uid (empty when the file could not be read).
    pub uid: String,
    /// Its title.
    pub title: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Where it comes from.
    pub source: Source,
    /// The file it was read from, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why it is not served, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct Loaded {
    entry: Entry,
    json: Arc<Value>,
}

#[derive(Default)]
struct State {
    /// Files matched by the patterns at the last look, with their modification time and
    /// size: a different list means a re-read.
    stamps: Vec<(PathBuf, Option<SystemTime>, u64)>,
    files: Vec<Result<Loaded, Entry>>,
    imported: BTreeMap<String, Loaded>,
    shipped: Vec<Loaded>,
}

/// Every dashboard Lookout serves.
pub struct Library {
    opts: DashboardsOptions,
    state: Mutex<State>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("opts", &self.opts).finish()
    }
}

impl Library {
    /// Reads the shipped dashboards, the files and the imports. Fails only on a pattern
    /// that is not a glob or an import directory that cannot be created; unreadable
    /// dashboards are listed with their errors.
    pub fn open(opts: DashboardsOptions) -> Result<Self> {
        for p in &opts.paths {
            glob::Pattern::new(p).map_err(|e| Error::Pattern {
                pattern: p.clone(),
                message: e.msg.to_string(),
            })?;
        }
        let mut state = State::default();
        for name in &opts.shipped {
            let file = format!("{name}.json");
            let raw = Shipped::get(&file).ok_or_else(|| {
                Error::Unavailable(format!("no shipped dashboard named {name:?}"))
            })?;
            let json = normalize(&raw.data, name, &opts.limits)
                .map_err(|e| Error::Invalid(format!("shipped {file}: {e}")))?;
            state.shipped.push(loaded(json, Source::Shipped, None));
        }
        if let Some(dir) = &opts.import_dir {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            for (path, raw) in read_dir_json(dir)? {
                match raw.and_then(|r| normalize(&r, &stem(&path), &opts.limits)) {
                    Ok(json) => {
                        let l = loaded(json, Source::Imported, None);
                        state.imported.insert(l.entry.uid.clone(), l);
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "Imported dashboard skipped")
                    }
                }
            }
        }
        let lib = Self {
            opts,
            state: Mutex::new(state),
        };
        lib.refresh();
        Ok(lib)
    }

    /// The scrape interval dashboards assume (see [`DashboardsOptions::scrape_interval`]).
    pub fn scrape_interval(&self) -> std::time::Duration {
        self.opts.scrape_interval
    }

    /// The names of the dashboards shipped in the binary.
    pub fn shipped_names() -> Vec<String> {
        Shipped::iter()
            .filter_map(|f| f.strip_suffix(".json").map(str::to_string))
            .collect()
    }

    /// Re-reads the files when the patterns match a different set or one has changed.
    pub fn refresh(&self) {
        let stamps = self.matched();
        let mut st = self.state.lock().expect("lock poisoned");
        if st.stamps == stamps {
            return;
        }
        let mut files = Vec::new();
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (path, _, _) in &stamps {
            let shown = Some(path.display().to_string());
            let read = std::fs::read(path)
                .map_err(|e| io(path, e))
                .and_then(|raw| normalize(&raw, &stem(path), &self.opts.limits));
            files.push(match read {
                Ok(json) => {
                    let l = loaded(json, Source::File, shown);
                    match seen.get(&l.entry.uid) {
                        Some(first) => Err(failed(
                            l.entry.path,
                            format!(
                                "uid {:?} is already used by {}",
                                l.entry.uid,
                                first.display()
                            ),
                        )),
                        None => {
                            seen.insert(l.entry.uid.clone(), path.clone());
                            Ok(l)
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "Dashboard file not loaded");
                    Err(failed(shown, e.to_string()))
                }
            });
        }
        st.files = files;
        st.stamps = stamps;
    }

    /// Every dashboard, served or not, sorted by title.
    pub fn list(&self) -> Vec<Entry> {
        self.refresh();
        let st = self.state.lock().expect("lock poisoned");
        let mut out: Vec<Entry> = Vec::new();
        let mut taken = std::collections::BTreeSet::new();
        for f in &st.files {
            match f {
                Ok(l) => {
                    taken.insert(l.entry.uid.clone());
                    out.push(l.entry.clone());
                }
                Err(e) => out.push(e.clone()),
            }
        }
        for l in st.imported.values().chain(&st.shipped) {
            if taken.insert(l.entry.uid.clone()) {
                out.push(l.entry.clone());
            }
        }
        out.sort_by(|a, b| a.title.cmp(&b.title).then(a.uid.cmp(&b.uid)));
        out
    }

    /// The dashboard with `uid`, as the UI renders it.
    pub fn get(&self, uid: &str) -> Option<Arc<Value>> {
        self.get_with_source(uid).map(|(d, _)| d)
    }

    /// The dashboard with `uid` and where it comes from (one look at the files).
    pub fn get_with_source(&self, uid: &str) -> Option<(Arc<Value>, Source)> {
        self.refresh();
        let st = self.state.lock().expect("lock poisoned");
        st.files
            .iter()
            .flatten()
            .chain(st.imported.get(uid))
            .chain(&st.shipped)
            .find(|l| l.entry.uid == uid)
            .map(|l| (Arc::clone(&l.json), l.entry.source.clone()))
    }

    /// Checks and keeps an imported dashboard (replacing an earlier import or shipped
    /// dashboard with the same uid, never a file's), written durably before it is served.
    pub fn import(&self, raw: &[u8]) -> Result<Entry> {
        let dir = self.opts.import_dir.as_ref().ok_or_else(|| {
            Error::Unavailable("imports are off: Lookout has no data directory to keep them".into())
        })?;
        let json = normalize(raw, "imported", &self.opts.limits)?;
        self.refresh();
        let mut st = self.state.lock().expect("lock poisoned");
        let uid = json["uid"].as_str().unwrap_or_default().to_string();
        if let Some(l) = st.files.iter().flatten().find(|l| l.entry.uid == uid) {
            return Err(Error::Provisioned {
                uid,
                path: l.entry.path.clone().unwrap_or_default(),
            });
        }
        if !st.imported.contains_key(&uid) && st.imported.len() >= MAX_IMPORTED {
            return Err(Error::Unavailable(format!(
                "the library holds {MAX_IMPORTED} imported dashboards, the most it keeps"
            )));
        }
        let path = dir.join(format!("{uid}.json"));
        let bytes = serde_json::to_vec_pretty(&json).expect("a JSON value serializes");
        lookout_model::durable::replace_file(&path, &bytes).map_err(|e| io(&path, e))?;
        let l = loaded(json, Source::Imported, None);
        let entry = l.entry.clone();
        st.imported.insert(uid, l);
        Ok(entry)
    }

    fn matched(&self) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
        let mut out = Vec::new();
        for p in &self.opts.paths {
            let pattern = match &self.opts.base_dir {
                Some(base) if !Path::new(p).is_absolute() => base.join(p).display().to_string(),
                _ => p.clone(),
            };
            // Checked at open; a base directory with glob characters may still fail.
            let Ok(paths) = glob::glob(&pattern) else {
                continue;
            };
            for path in paths.flatten() {
                let meta = std::fs::metadata(&path).ok();
                if meta.as_ref().is_some_and(|m| m.is_dir()) {
                    continue;
                }
                out.push((
                    path,
                    meta.as_ref().and_then(|m| m.modified().ok()),
                    meta.map_or(0, |m| m.len()),
                ));
            }
        }
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }
}

fn loaded(json: Value, source: Source, path: Option<String>) -> Loaded {
    let s = |k: &str| {
        json.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let tags = json
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Loaded {
        entry: Entry {
            uid: s("uid"),
            title: s("title"),
            tags,
            source,
            path,
            error: None,
        },
        json: Arc::new(json),
    }
}

fn failed(path: Option<String>, error: String) -> Entry {
    let title = path
        .as_deref()
        .map(|p| stem(Path::new(p)))
        .unwrap_or_default();
    Entry {
        uid: String::new(),
        title,
        tags: Vec::new(),
        source: Source::File,
        path,
        error: Some(error),
    }
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

type DirEntry = (PathBuf, Result<Vec<u8>>);

fn read_dir_json(dir: &Path) -> Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))?.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "json") {
            let raw = std::fs::read(&path).map_err(|e| io(&path, e));
            out.push((path, raw));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    #[test]
    fn files_imports_and_shipped_dashboards_are_listed_and_served() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir(&files).unwrap();
        write(
            &files,
            "a.json",
            r#"{"uid":"a","title":"Alpha","tags":["x"]}"#,
        );
        write(&files, "broken.json", r#"{"uid":"b","title":"#);
        write(&files, "dup.json", r#"{"uid":"a","title":"Again"}"#);
        write(
            &files,
            "override.json",
            r#"{"uid":"lookout-host","title":"My host"}"#,
        );
        let lib = Library::open(DashboardsOptions {
            paths: vec!["files/*.json".into()],
            base_dir: Some(dir.path().into()),
            import_dir: Some(dir.path().join("imported")),
            shipped: vec!["host".into()],
            ..DashboardsOptions::default()
        })
        .unwrap();
        let list = lib.list();
        let by_path = |p: &str| {
            list.iter()
                .find(|e| e.path.as_deref().is_some_and(|x| x.ends_with(p)))
                .unwrap()
        };
        assert_eq!(by_path("a.json").title, "Alpha");
        assert_eq!(by_path("a.json").tags, ["x"]);
        assert!(
            by_path("broken.json")
                .error
                .as_ref()
                .unwrap()
                .contains("not JSON")
        );
        assert!(
            by_path("dup.json")
                .error
                .as_ref()
                .unwrap()
                .contains("already used by")
        );
        // The operator's file replaces the shipped dashboard with the same uid.
        assert_eq!(lib.get("lookout-host").unwrap()["title"], "My host");
        assert_eq!(list.iter().filter(|e| e.uid == "lookout-host").count(), 1);

        // Imports are kept across a restart; a file's uid cannot be imported over.
        let e = lib
            .import(br#"{"dashboard":{"uid":"imp","title":"Imported"}}"#)
            .unwrap();
        assert_eq!(e.source, Source::Imported);
        assert!(matches!(
            lib.import(br#"{"uid":"a","title":"x"}"#),
            Err(Error::Provisioned { .. })
        ));
        assert!(lib.import(b"[]").is_err());

        // A changed file is re-read; a removed one leaves the list.
        std::fs::remove_file(files.join("dup.json")).unwrap();
        write(
            &files,
            "a.json",
            r#"{"uid":"a","title":"Alpha 2","panels":[{"type":"text"}]}"#,
        );
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(files.join("a.json"))
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(lib.get("a").unwrap()["title"], "Alpha 2");
        assert!(
            lib.list()
                .iter()
                .all(|e| !e.path.as_deref().unwrap_or("").ends_with("dup.json"))
        );

        let again = Library::open(DashboardsOptions {
            import_dir: Some(dir.path().join("imported")),
            ..DashboardsOptions::default()
        })
        .unwrap();
        assert_eq!(again.get("imp").unwrap()["title"], "Imported");
        assert!(again.get("lookout-host").is_none());
    }

    #[test]
    fn bad_patterns_and_unknown_shipped_names_stop_start_up() {
        let bad = DashboardsOptions {
            paths: vec!["[".into()],
            ..DashboardsOptions::default()
        };
        assert!(matches!(Library::open(bad), Err(Error::Pattern { .. })));
        let unknown = DashboardsOptions {
            shipped: vec!["nope".into()],
            ..DashboardsOptions::default()
        };
        assert!(Library::open(unknown).is_err());
        let no_imports = Library::open(DashboardsOptions::default()).unwrap();
        assert!(matches!(
            no_imports.import(br#"{"title":"t"}"#),
            Err(Error::Unavailable(_))
        ));
    }

    #[test]
    fn every_shipped_dashboard_is_valid() {
        let names = Library::shipped_names();
        assert!(names.contains(&"host".to_string()), "{names:?}");
        let lib = Library::open(DashboardsOptions {
            shipped: names.clone(),
            ..DashboardsOptions::default()
        })
        .unwrap();
        assert_eq!(lib.list().len(), names.len());
        for e in lib.list() {
            assert!(e.error.is_none() && e.uid.starts_with("lookout-"), "{e:?}");
        }
    }
}
