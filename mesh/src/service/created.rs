//! The folders `mesh install` created (`~/.claude`, `~/.config/systemd/user` and its parents,
//! …), recorded so that `mesh uninstall` removes those of them left empty, and no other
//! folder: one a user made, or one that still holds anything, stays.
//!
//! The record is a file in the state directory ([`RECORD`]), one absolute path a line. A path
//! with a line break in it is not recorded (so never removed).

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The most bytes read of a file install owns (a unit, a plist, the install record): they
/// are a few hundred bytes, so more is not one of ours.
pub const MAX_FILE: u64 = 1024 * 1024;

/// The record's file name in the state directory.
pub const RECORD: &str = "install-created-folders";

/// The record of the folders install created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    record: PathBuf,
}

impl Created {
    /// The record in the state directory `state_root`.
    pub fn in_state_dir(state_root: &Path) -> Self {
        Self {
            record: state_root.join(RECORD),
        }
    }

    /// The record of the state directory the environment names (`CLAUDE_MESH_HOME`, `HOME`).
    pub fn from_env() -> Option<Self> {
        mesh_daemon::paths::StateDir::from_env()
            .ok()
            .map(|s| Self::in_state_dir(s.root()))
    }

    /// `fs::create_dir_all(dir)`, recording each folder it creates.
    pub fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && fs::symlink_metadata(d).is_err())
            .map(Path::to_path_buf)
            .collect();
        fs::create_dir_all(dir)?;
        if missing.is_empty() {
            return Ok(());
        }
        let mut known = self.read();
        known.extend(missing.into_iter().filter(|p| p.is_absolute()));
        self.write(&known)
    }

    /// Remove every recorded folder that is empty now, deepest first (so a parent emptied by
    /// its child's removal goes too); forget those that are gone. Returns the folders removed.
    pub fn remove_empty(&self) -> Vec<PathBuf> {
        let mut known = self.read();
        if known.is_empty() {
            return Vec::new();
        }
        // Deepest first.
        known.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let mut removed = Vec::new();
        for dir in &known {
            // Only a real folder (not a link to one), and `remove_dir` refuses a non-empty one.
            if fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) && fs::remove_dir(dir).is_ok() {
                removed.push(dir.clone());
            }
        }
        known.retain(|d| fs::symlink_metadata(d).is_ok());
        let _ = self.write(&known);
        removed
    }

    fn read(&self) -> Vec<PathBuf> {
        let Ok(bytes) = mesh_daemon::paths::read_regular_bytes(&self.record, false, MAX_FILE)
        else {
            return Vec::new();
        };
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| PathBuf::from(OsStr::from_bytes(l)))
            .filter(|p| p.is_absolute())
            .collect()
    }

    /// Write `dirs` (each once) as the record; an empty record is no file.
    fn write(&self, dirs: &[PathBuf]) -> io::Result<()> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for d in dirs {
            let bytes = d.as_os_str().as_bytes();
            if bytes.contains(&b'\n') || !seen.insert(d.clone()) {
                continue;
            }
            out.extend_from_slice(bytes);
            out.push(b'\n');
        }
        if out.is_empty() {
            return match fs::remove_file(&self.record) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        if let Some(parent) = self.record.parent() {
            mesh_daemon::paths::StateDir::new(parent).ensure()?;
        }
        let tmp = self.record.with_extension("tmp");
        let mut f = mesh_daemon::paths::open_regular(
            &tmp,
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
            false,
        )?;
        f.write_all(&out)?;
        f.sync_all()?;
        fs::rename(&tmp, &self.record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recorded_folders_that_are_empty_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let created = Created::in_state_dir(&state);
        let mine = tmp.path().join("mine");
        fs::create_dir_all(&mine).unwrap();
        // `mine` existed: only a/b/c below it are install's.
        created.create_dir_all(&mine.join("a/b/c")).unwrap();
        let kept = tmp.path().join("kept");
        created.create_dir_all(&kept).unwrap();
        fs::write(kept.join("file"), "x").unwrap();
        let removed = created.remove_empty();
        assert_eq!(
            removed,
            [mine.join("a/b/c"), mine.join("a/b"), mine.join("a")]
        );
        assert!(mine.is_dir(), "a folder install did not create stays");
        assert!(kept.is_dir(), "a folder with a file in it stays");
        // Still recorded: removed once it is empty.
        fs::remove_file(kept.join("file")).unwrap();
        assert_eq!(created.remove_empty(), std::slice::from_ref(&kept));
        assert!(!state.join(RECORD).exists(), "an empty record is no file");
        assert!(created.remove_empty().is_empty());
    }
}
