//! Replacing a small state file so that a crash leaves either the old or the new
//! contents, never a mix or an empty file: the one way every state file (notification
//! log, silences, acknowledgements, alert state) is written.
//!
//! The only I/O in this crate: it is here because the rules and the notifier both keep
//! state files and share nothing else below them.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` durably: into a temporary file beside it, fsynced, renamed
/// over `path`, then the directory fsynced so the rename itself survives a crash. On any
/// failure the temporary file is removed and `path` keeps its old contents.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_contents_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("lookout-durable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.json");
        replace_file(&p, b"one").unwrap();
        replace_file(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("state.json")]);
        // A directory that does not exist is an error, not a panic.
        assert!(replace_file(&dir.join("missing/state.json"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
