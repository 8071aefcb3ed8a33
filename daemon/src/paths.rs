//! Where claude-mesh keeps its state: `$CLAUDE_MESH_HOME`, default `~/.claude-mesh/`.
//! Shared by the daemon and every client, so both sides agree on every path.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The state directory and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `$CLAUDE_MESH_HOME`, else `$HOME/.claude-mesh`. A relative `CLAUDE_MESH_HOME` (or
    /// `HOME`) is refused, not resolved against the working directory: that would give each
    /// working directory a daemon of its own, whose sessions never see each other.
    pub fn from_env() -> io::Result<Self> {
        if let Some(dir) = std::env::var_os("CLAUDE_MESH_HOME").filter(|v| !v.is_empty()) {
            if Path::new(&dir).is_relative() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "CLAUDE_MESH_HOME must be an absolute path, not `{}`: a relative one names \
                         a different directory in each working directory; set it to an absolute \
                         path (e.g. \"$HOME/.claude-mesh\") or unset it",
                        Path::new(&dir).display()
                    ),
                ));
            }
            return Self::new(dir).socket_fits();
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "neither CLAUDE_MESH_HOME nor HOME is set",
                )
            })?;
        if Path::new(&home).is_relative() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "HOME must be an absolute path, not `{}`; or set CLAUDE_MESH_HOME to one",
                    Path::new(&home).display()
                ),
            ));
        }
        Self::new(Path::new(&home).join(".claude-mesh")).socket_fits()
    }

    /// This directory, if the path of its socket fits a Unix socket address (`sun_path`: 108
    /// bytes on Linux, 104 on macOS, with the final NUL); otherwise an error that says so and
    /// what to do (every connect and bind would fail with a bare "path must be shorter than
    /// SUN_LEN").
    fn socket_fits(self) -> io::Result<Self> {
        const SUN_PATH: usize = if cfg!(target_os = "linux") { 108 } else { 104 };
        let len = self.socket().as_os_str().len();
        if len < SUN_PATH {
            return Ok(self);
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the state directory {} is too long: its socket's path would be {len} bytes, and \
                 a Unix socket's path can have at most {}; set CLAUDE_MESH_HOME to a shorter \
                 absolute path (e.g. \"$HOME/.claude-mesh\")",
                self.root.display(),
                SUN_PATH - 1
            ),
        ))
    }

    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The daemon's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("mesh.sock")
    }

    /// The SQLite database: the only durable state.
    pub fn db(&self) -> PathBuf {
        self.root.join("mesh.db")
    }

    /// The daemon's log when it was started on demand (not by a service manager).
    pub fn log(&self) -> PathBuf {
        self.root.join("mesh.log")
    }

    /// `mesh run`'s log (the terminal belongs to Claude Code).
    pub fn run_log(&self) -> PathBuf {
        self.root.join("run.log")
    }

    /// Held (flock) by the running daemon for its whole life.
    pub fn daemon_lock(&self) -> PathBuf {
        self.root.join("mesh.lock")
    }

    /// Held by a client while it starts a daemon on demand.
    pub fn spawn_lock(&self) -> PathBuf {
        self.root.join("spawn.lock")
    }

    /// Create the directory with mode 0700 if missing, and refuse one that other users can
    /// write to or that belongs to someone else.
    pub fn ensure(&self) -> io::Result<()> {
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
        {
            Ok(()) => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create state directory {}: {e}", self.root.display()),
                ));
            }
        }
        self.check()
    }

    /// Check ownership and permissions of an existing state directory. A symbolic link is
    /// refused, not followed: the directory it names is checked nowhere else, and the error
    /// names the real directory to set `CLAUDE_MESH_HOME` to.
    pub fn check(&self) -> io::Result<()> {
        let link = fs::symlink_metadata(&self.root)?;
        if link.file_type().is_symlink() {
            let target = fs::canonicalize(&self.root)
                .map_or_else(|_| "its target".to_owned(), |t| t.display().to_string());
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "state directory {} is a symbolic link; claude-mesh does not follow it. Set \
                     CLAUDE_MESH_HOME={target}, or replace the link with a directory",
                    self.root.display()
                ),
            ));
        }
        let meta = fs::metadata(&self.root)?;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "state directory {} belongs to uid {}, not to you (uid {me}); remove it or set CLAUDE_MESH_HOME",
                    self.root.display(),
                    meta.uid()
                ),
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "state directory {} is writable by others (mode {mode:o}); run `chmod 700 {}`",
                    self.root.display(),
                    self.root.display()
                ),
            ));
        }
        if mode != 0o700 {
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
}

impl StateDir {
    /// [`check_db_file`] of this state directory's `mesh.db`.
    pub fn check_db(&self) -> io::Result<()> {
        check_db_file(&self.db())
    }

    /// The pid recorded in `mesh.lock` while a process holds that lock (the daemon serving
    /// this state directory, even when its socket is gone), if that process is yours.
    pub fn lock_holder(&self) -> Option<u32> {
        use std::io::Read;
        let file = open_regular(
            &self.daemon_lock(),
            fs::OpenOptions::new().read(true),
            false,
        )
        .ok()?;
        match file.try_lock_shared() {
            Ok(()) => return None, // nobody holds it
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(_)) => return None,
        }
        let mut text = String::new();
        file.take(64).read_to_string(&mut text).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        let me = rustix::process::geteuid().as_raw();
        crate::procinfo::info(pid)
            .filter(|p| p.uid == me && !p.zombie)
            .map(|p| p.pid)
    }
}

/// What [`open_regular`] found at a path instead of a regular file: the inner error of the
/// `io::Error` it returns (kind `InvalidInput`), for callers that say more than its message
/// ([`refusal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRegular {
    pub path: PathBuf,
    /// "a symbolic link", "a FIFO", "a socket", "a device", "a directory", …
    pub what: &'static str,
}

impl NotRegular {
    /// A symbolic link where none belongs (opened without following links).
    pub fn is_symlink(&self) -> bool {
        self.what == "a symbolic link"
    }
}

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {}, not a regular file; claude-mesh does not use it: remove it (`rm {}`)",
            self.path.display(),
            self.what,
            self.path.display()
        )
    }
}

impl std::error::Error for NotRegular {}

/// The [`NotRegular`] inside an error of [`open_regular`], if that is why it failed.
pub fn refusal(e: &io::Error) -> Option<&NotRegular> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<NotRegular>())
}

/// Opens `path` as `options` says, adding `O_NONBLOCK | O_CLOEXEC | O_NOCTTY` and, unless
/// `follow`, `O_NOFOLLOW`; then checks (fstat) that what it opened is a regular file. Whatever
/// else sits at a path claude-mesh opens (a FIFO, a device, a socket, a directory, or a symbolic
/// link where none belongs) is refused at once, with an error ([`NotRegular`]) that names the
/// path, says what is there and what to do. Without this, opening a FIFO waits for its other
/// end, forever: a FIFO planted at `mesh.log` or `spawn.lock` hung every client that started
/// the daemon. `O_NONBLOCK` changes nothing for a regular file. A missing file stays
/// `NotFound`.
pub fn open_regular(
    path: &Path,
    options: &mut fs::OpenOptions,
    follow: bool,
) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let refused = |what: &'static str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            NotRegular {
                path: path.to_owned(),
                what,
            },
        )
    };
    let file = options
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) if !follow => refused("a symbolic link"),
            // A FIFO opened for writing without a reader, with O_NONBLOCK.
            Some(libc::ENXIO) => refused("a named pipe or a device"),
            Some(libc::EISDIR) => refused("a directory"),
            Some(libc::EACCES) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{}: {e}; if another user owns it, make it yours: sudo chown \"$USER\" {}",
                    path.display(),
                    path.display()
                ),
            ),
            _ => e,
        })?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    Err(refused(file_kind(kind)))
}

/// What a file of this type is, in the words the errors and `mesh health` use: "a regular
/// file", "a directory", "a symbolic link", "a named pipe", "a socket" or "a device".
pub fn file_kind(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() {
        "a regular file"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a device"
    }
}

/// [`open_regular`] for reading, and the file's bytes, at most `max` (more is an error).
pub fn read_regular_bytes(path: &Path, follow: bool, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = open_regular(path, fs::OpenOptions::new().read(true), follow)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is over {max} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

/// [`read_regular_bytes`] of a text file.
pub fn read_regular(path: &Path, follow: bool, max: u64) -> io::Result<String> {
    String::from_utf8(read_regular_bytes(path, follow, max)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not UTF-8 text", path.display()),
        )
    })
}

/// `mesh.db` and the files SQLite keeps beside it (`-wal`, `-shm`, `-journal`).
pub fn db_files(db: &Path) -> [PathBuf; 4] {
    ["", "-wal", "-shm", "-journal"].map(|suffix| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Check `mesh.db` before the daemon opens it: if it exists it must be a regular file (not
/// a symbolic link, which could point at another application's SQLite file that the schema
/// migration would then change) that this process can open for writing. The error says what
/// to do.
pub fn check_db_file(db: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // SQLite's own files beside it: anything but a regular file there (a FIFO blocks or fails
    // its I/O; a link points elsewhere) is refused before SQLite opens them.
    for side in db_files(db).into_iter().skip(1) {
        if let Ok(m) = fs::symlink_metadata(&side)
            && !m.file_type().is_file()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} (SQLite's file beside the database) is {}, not a regular file; \
                     claude-mesh does not use it: remove it (`rm {}`)",
                    side.display(),
                    file_kind(m.file_type()),
                    side.display()
                ),
            ));
        }
    }
    let meta = match fs::symlink_metadata(db) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot look at the database {}: {e}", db.display()),
            ));
        }
    };
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the database {} is a symbolic link; claude-mesh does not open it (it could be \
                 another program's database). Remove the link (`rm {}`) to start on a fresh \
                 database, or move the real file there",
                db.display(),
                db.display()
            ),
        ));
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the database {} is not a regular file", db.display()),
        ));
    }
    let opened = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(db);
    match opened {
        Ok(_) => Ok(()),
        Err(e) => {
            let fix = match e.raw_os_error() {
                Some(libc::EROFS) => "its filesystem is mounted read-only: remount it \
                    read-write or set CLAUDE_MESH_HOME to a writable directory"
                    .to_owned(),
                _ => format!(
                    "make it writable: chmod u+w {0} (if another user owns it: sudo chown \
                     \"$USER\" {0})",
                    db.display()
                ),
            };
            Err(io::Error::new(
                e.kind(),
                format!("cannot write the database {}: {e}; {fix}", db.display()),
            ))
        }
    }
}

/// `YYYYmmddTHHMMSS` in UTC: names of backups and of a damaged database moved aside.
pub fn utc_stamp(now: SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_creates_0700_and_refuses_group_writable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path().join("state"));
        dir.ensure().unwrap();
        let mode = fs::metadata(dir.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(dir.root(), fs::Permissions::from_mode(0o770)).unwrap();
        let err = dir.ensure().unwrap_err();
        assert!(err.to_string().contains("writable by others"), "{err}");
    }

    #[test]
    fn timestamp_is_utc_civil_time() {
        assert_eq!(utc_stamp(std::time::UNIX_EPOCH), "19700101T000000");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56 UTC
        assert_eq!(utc_stamp(t), "20240229T123456");
    }
}
