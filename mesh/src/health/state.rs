//! The state directory and the socket in it: they exist, belong to us, and no other user can
//! read or write them (docs/interface.md, "Files and permissions": directory 0700, socket
//! 0600).

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use mesh_daemon::paths::StateDir;

use super::check::{Check, quote};

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `state.dir`; `start` is the command that starts the daemon (which creates it); `on_demand`:
/// no service manager owns the daemon, so a missing directory is the normal state before the
/// first start.
pub(super) fn dir(state: &StateDir, from_env: bool, start: &str, on_demand: bool) -> Check {
    const NAME: &str = "state.dir";
    let root = state.root();
    let shown = root.display();
    let origin = if from_env {
        " (from CLAUDE_MESH_HOME)"
    } else {
        ""
    };
    if fs::symlink_metadata(root).is_ok_and(|m| m.file_type().is_symlink()) {
        let target = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        return Check::fail(
            NAME,
            format!(
                "{shown}{origin} is a symbolic link (to {}): the daemon refuses to follow it",
                target.display()
            ),
            format!(
                "rm {} && mv {} {} && mesh restart",
                quote(root),
                quote(&target),
                quote(root)
            ),
        );
    }
    let meta = match fs::metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let detail = format!(
                "{shown}{origin} does not exist yet; the daemon creates it when it first starts"
            );
            return if on_demand {
                Check::ok(NAME, detail)
            } else {
                Check::warn(NAME, detail, start)
            };
        }
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot read {shown}{origin}: {e}"),
                format!(
                    "check the permissions of its parent directory: ls -ld {}",
                    quote(root)
                ),
            );
        }
    };
    if !meta.is_dir() {
        return Check::fail(
            NAME,
            format!("{shown}{origin} is not a directory"),
            format!("mv {} {}.old && mesh start", quote(root), quote(root)),
        );
    }
    if meta.uid() != euid() {
        return Check::fail(
            NAME,
            format!(
                "{shown}{origin} belongs to uid {}, not to you (uid {}): the daemon refuses to use it",
                meta.uid(),
                euid()
            ),
            format!(
                "set CLAUDE_MESH_HOME to a directory of your own, or remove {shown} (as its owner)"
            ),
        );
    }
    let mode = meta.permissions().mode() & 0o7777;
    let chmod = format!("chmod 700 {}", quote(root));
    if mode & 0o066 != 0 {
        return Check::fail(
            NAME,
            format!(
                "{shown}{origin} has mode {mode:04o}: other users can {} it; it holds the socket and every message",
                if mode & 0o022 != 0 {
                    "write to"
                } else {
                    "read"
                }
            ),
            chmod,
        );
    }
    if mode & 0o700 != 0o700 {
        return Check::fail(
            NAME,
            format!("{shown}{origin} has mode {mode:04o}: you cannot use it yourself"),
            chmod,
        );
    }
    if mode != 0o700 {
        return Check::warn(
            NAME,
            format!("{shown}{origin} has mode {mode:04o}, expected 0700"),
            chmod,
        );
    }
    Check::ok(NAME, format!("{shown}{origin}, yours, mode 0700"))
}

/// `state.socket`; `start` is the command that starts the daemon (which creates it);
/// `on_demand` as for [`dir`].
pub(super) fn socket(path: &Path, start: &str, on_demand: bool) -> Check {
    const NAME: &str = "state.socket";
    let shown = path.display();
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return if on_demand {
                Check::ok(
                    NAME,
                    format!("{shown} does not exist yet: the daemon creates it when it starts"),
                )
            } else {
                Check::warn(
                    NAME,
                    format!(
                        "{shown} does not exist: no daemon is listening (see daemon.reachable)"
                    ),
                    start,
                )
            };
        }
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot read {shown}: {e}"),
                format!(
                    "check the state directory's permissions: ls -ld {}",
                    quote(path.parent().unwrap_or(path))
                ),
            );
        }
    };
    if !meta.file_type().is_socket() {
        return Check::fail(
            NAME,
            format!(
                "{shown} is not a socket ({}); clients cannot connect through it",
                mesh_daemon::paths::file_kind(meta.file_type())
            ),
            format!("rm {} && mesh restart", quote(path)),
        );
    }
    if meta.uid() != euid() {
        return Check::fail(
            NAME,
            format!(
                "{shown} belongs to uid {}, not to you (uid {}): it is another user's daemon",
                meta.uid(),
                euid()
            ),
            "set CLAUDE_MESH_HOME to a directory of your own",
        );
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o600 && mode & 0o600 == 0o600 && mode & 0o022 == 0 && private_dir(path) {
        // Connecting needs write permission on the socket and search permission on its
        // directory: others have neither, so they cannot reach it.
        return Check::warn(
            NAME,
            format!(
                "{shown} has mode {mode:04o}, expected 0600; harmless: no one else can reach it \
                 (its directory is yours and closed to others, and connecting needs write \
                 permission, which only you have)"
            ),
            format!("chmod 600 {}", quote(path)),
        );
    }
    if mode != 0o600 {
        let who = if mode & 0o077 != 0 {
            ": other users could connect to your daemon and read your sessions' mail"
        } else {
            ""
        };
        return Check::fail(
            NAME,
            format!("{shown} has mode {mode:04o}, expected 0600{who}"),
            format!("chmod 600 {}", quote(path)),
        );
    }
    Check::ok(NAME, format!("{shown}, yours, mode 0600"))
}

/// The directory holding `path` is ours, a real directory (not a link) and closed to others.
fn private_dir(path: &Path) -> bool {
    path.parent()
        .and_then(|d| fs::symlink_metadata(d).ok())
        .is_some_and(|m| m.is_dir() && m.uid() == euid() && m.permissions().mode() & 0o077 == 0)
}

/// `state.files`: the files of the state directory that the daemon and the shims open besides
/// the database (its log, its locks, `mesh run`'s log): each, where it exists, must be a regular
/// file of yours that you can write. Anything else there (a FIFO, a directory, a link, a file of
/// another user's) stops the daemon from starting, or every command that would start it.
pub(super) fn files(state: &StateDir) -> Check {
    const NAME: &str = "state.files";
    let me = euid();
    let mut wrong = Vec::new();
    let mut fixes = Vec::new();
    let names = [
        "mesh.log",
        "mesh.log.1",
        "spawn.lock",
        "mesh.lock",
        "run.log",
    ];
    for name in names {
        let path = state.root().join(name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let kind = meta.file_type();
        let what = if !kind.is_file() {
            mesh_daemon::paths::file_kind(kind)
        } else if meta.uid() != me {
            "a file of another user's"
        } else if meta.permissions().mode() & 0o200 == 0 {
            "a file you cannot write"
        } else {
            continue;
        };
        wrong.push(format!("{} is {what}", path.display()));
        fixes.push(if kind.is_file() && meta.uid() != me {
            format!("sudo chown \"$USER\" {}", quote(&path))
        } else if kind.is_file() {
            format!("chmod u+w {}", quote(&path))
        } else if kind.is_dir() {
            format!("rm -r {}", quote(&path))
        } else {
            format!("rm {}", quote(&path))
        });
    }
    if wrong.is_empty() {
        return Check::ok(
            NAME,
            "the log and lock files, where they exist, are regular files of yours",
        );
    }
    Check::fail(
        NAME,
        format!(
            "{}: the daemon, or a command starting it, cannot use it",
            wrong.join("; ")
        ),
        fixes.join(" && "),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::super::check::Level;
    use super::*;

    #[test]
    fn directory_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("s"));
        assert_eq!(
            dir(&state, false, "mesh start", false).level,
            Level::Warn,
            "missing"
        );
        fs::create_dir(state.root()).unwrap();
        for (mode, level) in [
            (0o700, Level::Ok),
            (0o711, Level::Warn),
            (0o750, Level::Fail),
            (0o704, Level::Fail),
            (0o722, Level::Fail),
            (0o500, Level::Fail),
        ] {
            fs::set_permissions(state.root(), fs::Permissions::from_mode(mode)).unwrap();
            let c = dir(&state, true, "mesh start", false);
            assert_eq!(c.level, level, "{mode:o}: {c:?}");
            if level != Level::Ok {
                assert!(c.fix.as_deref().unwrap().starts_with("chmod 700 "), "{c:?}");
            }
            assert!(c.detail.contains("CLAUDE_MESH_HOME"), "{c:?}");
        }
        fs::set_permissions(state.root(), fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn socket_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mesh.sock");
        assert_eq!(
            socket(&path, "mesh start", false).level,
            Level::Warn,
            "missing"
        );
        fs::write(&path, "").unwrap();
        assert_eq!(
            socket(&path, "mesh start", false).level,
            Level::Fail,
            "a regular file"
        );
        fs::remove_file(&path).unwrap();
        let _listener = UnixListener::bind(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(socket(&path, "mesh start", false).level, Level::Ok);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let c = socket(&path, "mesh start", false);
        assert_eq!(c.level, Level::Fail);
        assert!(c.fix.unwrap().starts_with("chmod 600 "));
        // 0644 in a 0700 directory of ours: no one else can connect.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let c = socket(&path, "mesh start", false);
        assert_eq!(c.level, Level::Warn, "{c:?}");
        assert!(c.detail.contains("no one else can reach it"), "{c:?}");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(socket(&path, "mesh start", false).level, Level::Fail);
        // Not there yet: the normal state when it starts on demand.
        drop(_listener);
        fs::remove_file(&path).unwrap();
        assert_eq!(socket(&path, "mesh start", true).level, Level::Ok);
    }
}
