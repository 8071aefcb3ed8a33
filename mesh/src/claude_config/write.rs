//! Writing a configuration file safely: timestamped backup first, then a temp file in the same
//! directory, fsync, rename over the original (keeping its mode), fsync of the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use crate::service::Created;

/// Mode of a file we create (`~/.claude.json` holds account state, so not world-readable).
const NEW_FILE_MODE: u32 = 0o600;

/// The largest Claude Code configuration file read: only a bound against a runaway file, far
/// above real ones (`~/.claude.json` holds every project's state and history; files of 65–101
/// MB are reported by Claude Code's users).
const MAX_CONFIG: u64 = 1024 * 1024 * 1024;

/// Reads `path`; `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    // Followed: dotfile managers link these files. Not a FIFO or a device: that would hang.
    match mesh_daemon::paths::read_regular(path, true, MAX_CONFIG) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::io("read", path)(e)),
    }
}

/// The file to write through: the target of a symlink (dotfile managers link these files), so
/// that the rename replaces the real file and not the link.
pub(crate) fn resolve(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Copies `path` to `<path>.mesh-backup-<timestamp>` (with `-N` if that exists already).
pub(crate) fn backup(path: &Path, stamp: &str) -> Result<PathBuf, ConfigError> {
    let base = format!("{}.mesh-backup-{stamp}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    fs::copy(path, &candidate).map_err(ConfigError::io("back up", path))?;
    // Every install and uninstall makes one, of files that can be 100 MB (`~/.claude.json`):
    // the newest few are kept, the older ones of ours removed.
    for (_, old) in backups(path).iter().rev().skip(KEEP_BACKUPS) {
        let _ = fs::remove_file(old);
    }
    Ok(candidate)
}

/// How many of its backups [`backup`] keeps of a file.
pub(crate) const KEEP_BACKUPS: usize = 3;

/// The backups [`backup`] made of `path` (`<file>.mesh-backup-<UTC stamp>[-N]` next to it,
/// regular files), oldest first (by stamp, then `N`).
fn backups(path: &Path) -> Vec<((String, u32), PathBuf)> {
    let (Some(name), Some(dir)) = (path.file_name().and_then(|n| n.to_str()), path.parent()) else {
        return Vec::new();
    };
    let prefix = format!("{name}.mesh-backup-");
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            let suffix = file.strip_prefix(&prefix)?;
            let (stamp, n) = match suffix.split_once('-') {
                Some((stamp, n)) => (stamp.to_owned(), n.parse::<u32>().ok()?),
                None => (suffix.to_owned(), 0),
            };
            entry
                .file_type()
                .is_ok_and(|t| t.is_file())
                .then(|| ((stamp, n), entry.path()))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The newest backup [`backup`] made of `path`.
pub(crate) fn newest_backup(path: &Path) -> Option<PathBuf> {
    backups(path).pop().map(|(_, path)| path)
}

/// Replaces `path` by `text` atomically, keeping the mode of the existing file. A missing
/// folder is created, and recorded in `created` when given.
pub(crate) fn atomic_write(
    path: &Path,
    text: &str,
    created: Option<&Created>,
) -> Result<(), ConfigError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    match created {
        Some(c) => c.create_dir_all(dir),
        None => fs::create_dir_all(dir),
    }
    .map_err(ConfigError::io("create directory", dir))?;
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(_) => NEW_FILE_MODE,
    };
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.mesh-tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = mesh_daemon::paths::open_regular(
            &tmp,
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode),
            false,
        )?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(ConfigError::io("write", path))
}

/// Removes `path` (after it has been backed up) and syncs its directory.
pub(crate) fn remove(path: &Path) -> Result<(), ConfigError> {
    fs::remove_file(path).map_err(ConfigError::io("remove", path))?;
    if let Some(dir) = path.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_backups_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".claude.json");
        fs::write(&path, "{}").unwrap();
        let other = dir.path().join(".claude.json.mesh-backup-notes");
        fs::create_dir(&other).unwrap();
        let made: Vec<PathBuf> = [
            "20261201T000000",
            "20261202T000000",
            "20261202T000000",
            "20261203T000000",
            "20261204T000000",
        ]
        .iter()
        .map(|stamp| backup(&path, stamp).unwrap())
        .collect();
        let mut left: Vec<PathBuf> = backups(&path).into_iter().map(|(_, p)| p).collect();
        left.sort();
        let mut want = made[2..].to_vec();
        want.sort();
        assert_eq!(left, want);
        assert_eq!(newest_backup(&path).as_deref(), Some(made[4].as_path()));
        assert!(other.is_dir(), "what is not a backup of ours is left alone");
    }

    #[test]
    fn atomic_write_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        fs::write(&path, "{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        atomic_write(&path, "{\"a\":1}", None).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\":1}");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
