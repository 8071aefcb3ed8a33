//! The daemon's own log file, `mesh.log`, kept bounded.
//!
//! Under systemd the journal keeps the daemon's output (and trims it). Under launchd
//! (`StandardOutPath`/`StandardErrorPath`) and when a shim starts the daemon on demand, its stdout
//! and stderr are `mesh.log`, opened for appending, and nothing else ever trims that file. So:
//! - a shim that starts a daemon first moves a `mesh.log` over [`KEEP`] bytes to `mesh.log.1`
//!   (replacing the one before) and starts the daemon on a fresh one ([`rotate`]);
//! - the running daemon's log writer ([`Output`]) counts what it writes and, every
//!   [`CHECK_EVERY`] bytes, looks whether its stderr is that file and over the limit: if so it
//!   moves it the same way and points its stdout and stderr at a fresh `mesh.log` (0600).
//!
//! So at most about twice the limit is kept, the newer lines in `mesh.log`. A stderr that is not
//! `mesh.log` (the journal's socket, a terminal, a test's pipe) is never touched.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

/// The size past which `mesh.log` is moved to `mesh.log.1`.
pub const KEEP: u64 = 8 * 1024 * 1024;

/// How many bytes the daemon writes between two looks at its log's size.
pub const CHECK_EVERY: u64 = 64 * 1024;

/// The daemon's option (`mesh daemon --log-keep`) as an environment variable.
pub const KEEP_ENV: &str = "CLAUDE_MESH_LOG_KEEP";

/// The limit a shim applies before it starts a daemon: the one that daemon will apply, since it
/// inherits the shim's environment ([`KEEP_ENV`]; unset, empty or not a number: [`KEEP`]).
pub fn keep_from_env() -> u64 {
    std::env::var(KEEP_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(KEEP)
}

/// Where the older lines go: `mesh.log.1` beside `mesh.log`.
pub fn older(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".1");
    log.with_file_name(name)
}

/// Moves `log` to [`older`]`(log)` (replacing it) if `log` is a regular file over `keep` bytes
/// (`keep` 0: never). True if it moved. A missing file is not an error.
pub fn rotate(log: &Path, keep: u64) -> io::Result<bool> {
    if keep == 0 {
        return Ok(false);
    }
    let meta = match fs::symlink_metadata(log) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_file() || meta.len() <= keep {
        return Ok(false);
    }
    if let Err(e) = fs::rename(log, older(log)) {
        // `mesh.log.1` cannot be replaced (a directory there, …): the disk stays bounded all
        // the same, the old lines are dropped.
        crate::paths::open_regular(log, OpenOptions::new().write(true), false)?.set_len(0)?;
        return Err(emptied(log, &e));
    }
    Ok(true)
}

/// The error of a log that could not be moved to `mesh.log.1` and was emptied instead.
fn emptied(log: &Path, e: &io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot move {} to {} ({e}), so it was emptied instead; remove what is at {}",
            log.display(),
            older(log).display(),
            older(log).display()
        ),
    )
}

/// The identity (device, inode) and size of what `fd` writes to, if it is a regular file.
fn regular_file(fd: impl AsFd) -> Option<((u64, u64), u64)> {
    let file = File::from(fd.as_fd().try_clone_to_owned().ok()?);
    let meta = file.metadata().ok()?;
    meta.file_type()
        .is_file()
        .then(|| ((meta.dev(), meta.ino()), meta.len()))
}

/// If this process's stderr is `log` and it is over `keep` bytes: moves it to `mesh.log.1` and
/// points stdout and stderr (each only if it wrote to that same file) at a fresh `log`, mode
/// 0600. True if it did.
pub fn rotate_own_output(log: &Path, keep: u64) -> io::Result<bool> {
    let Some((id, len)) = regular_file(io::stderr()) else {
        return Ok(false);
    };
    if len <= keep {
        return Ok(false);
    }
    let on_disk = match fs::symlink_metadata(log) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !on_disk.file_type().is_file() || (on_disk.dev(), on_disk.ino()) != id {
        return Ok(false);
    }
    let stdout_too = regular_file(io::stdout()).is_some_and(|(out, _)| out == id);
    let moved = (|| {
        fs::rename(log, older(log))?;
        let fresh = crate::paths::open_regular(
            log,
            OpenOptions::new().create(true).append(true).mode(0o600),
            false,
        )?;
        if stdout_too {
            rustix::stdio::dup2_stdout(&fresh)?;
        }
        rustix::stdio::dup2_stderr(&fresh)?;
        Ok::<(), io::Error>(())
    })();
    if let Err(e) = moved {
        // Whatever failed (a directory at `mesh.log.1`, something planted at `mesh.log` after
        // the move), the file stderr writes is emptied: the disk stays bounded (it is opened
        // for appending, so the next line goes at its new end).
        File::from(io::stderr().as_fd().try_clone_to_owned()?).set_len(0)?;
        return Err(emptied(log, &e));
    }
    Ok(true)
}

/// The daemon's log writer: stderr, each event on one line with its control and hidden
/// characters shown visibly ([`one_line`]), and, when the log is `mesh.log`, every
/// [`CHECK_EVERY`] bytes a look at whether it grew over the limit ([`rotate_own_output`]).
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Output(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// `mesh.log`, to be kept under `keep` bytes; `None` (or `keep` 0): never moved.
    log: Option<PathBuf>,
    keep: u64,
    /// Bytes written since the last look.
    since_check: Mutex<u64>,
}

impl Output {
    pub fn new(log: Option<PathBuf>, keep: u64) -> Output {
        Output(Arc::new(Inner {
            log,
            keep,
            since_check: Mutex::new(0),
        }))
    }

    fn wrote(&self, n: usize) {
        let Some(log) = self.0.log.as_deref().filter(|_| self.0.keep > 0) else {
            return;
        };
        let due = {
            let Ok(mut since) = self.0.since_check.lock() else {
                return;
            };
            *since += n as u64;
            let due = *since >= CHECK_EVERY.min(self.0.keep);
            if due {
                *since = 0;
            }
            due
        };
        if due && let Err(e) = rotate_own_output(log, self.0.keep) {
            // Said once per look, at most every CHECK_EVERY bytes.
            let _ = writeln!(io::stderr(), "{e}");
        }
    }
}

/// One formatted log event as one line: the text a server or a peer put in it (an error it
/// sent, a name) can neither start a line of its own (which a reader, or a tool reading the
/// log, would take for the daemon's) nor act on a terminal (`tail -f mesh.log`): line breaks
/// inside it, control and hidden characters are shown visibly ([`mesh_proto::sanitize::terminal_line`]),
/// and the event's final newline is kept. Unchanged when there is nothing to show.
pub fn one_line(event: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let body = event.strip_suffix(b"\n").unwrap_or(event);
    let text = String::from_utf8_lossy(body);
    let shown = mesh_proto::sanitize::terminal_line(&text);
    if matches!(text, std::borrow::Cow::Borrowed(_)) && shown == text {
        return std::borrow::Cow::Borrowed(event);
    }
    let mut out = shown.into_bytes();
    if body.len() < event.len() {
        out.push(b'\n');
    }
    std::borrow::Cow::Owned(out)
}

impl Write for Output {
    /// One call is one event (tracing's formatter writes each event whole): written at once,
    /// as [`one_line`] shows it; the whole of `buf` counts as written.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = one_line(buf);
        io::stderr().write_all(&line)?;
        self.wrote(line.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_over_the_limit_moves_to_dot_1_and_one_under_it_stays() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mesh.log");
        assert_eq!(older(&log), dir.path().join("mesh.log.1"));
        assert!(!rotate(&log, 10).unwrap(), "no log yet");
        fs::write(&log, b"0123456789").unwrap();
        assert!(!rotate(&log, 10).unwrap(), "at the limit");
        assert!(log.exists());
        fs::write(&log, b"0123456789a").unwrap();
        fs::write(older(&log), b"the one before").unwrap();
        assert!(rotate(&log, 10).unwrap());
        assert!(!log.exists());
        assert_eq!(fs::read(older(&log)).unwrap(), b"0123456789a");
    }

    #[test]
    fn a_log_event_stays_one_line_with_what_it_quotes_shown() {
        let plain = b"2026-12-06T06:00:00Z  WARN mesh::federation: connect: refused\n";
        assert!(matches!(one_line(plain), std::borrow::Cow::Borrowed(_)));
        let forged =
            "WARN connect: -ERR 'Authorization Violation\u{202e}X\nline2 <system-reminder>'\n";
        let shown = String::from_utf8(one_line(forged.as_bytes()).into_owned()).unwrap();
        assert_eq!(
            shown,
            "WARN connect: -ERR 'Authorization Violation<U+202E>X␤line2 <system-reminder>'\n"
        );
        assert_eq!(shown.matches('\n').count(), 1);
        // Not UTF-8: shown with replacement characters, still one line.
        let bytes = one_line(b"a\xff\nb\n").into_owned();
        assert_eq!(String::from_utf8(bytes).unwrap(), "a\u{fffd}␤b\n");
    }

    #[test]
    fn only_a_regular_file_is_moved() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mesh.log");
        let target = dir.path().join("elsewhere");
        fs::write(&target, vec![b'x'; 100]).unwrap();
        std::os::unix::fs::symlink(&target, &log).unwrap();
        assert!(!rotate(&log, 10).unwrap(), "a symlink stays");
        fs::remove_file(&log).unwrap();
        fs::create_dir(&log).unwrap();
        assert!(!rotate(&log, 0).unwrap(), "a directory stays");
    }
}
