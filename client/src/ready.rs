//! Spawning a detached daemon and learning whether it came up.
//!
//! The client creates a pipe and passes the write end's descriptor number to the daemon in
//! `CLAUDE_MESH_READY_FD`. The daemon writes exactly one line, `ready <pid>\n` once it serves or
//! `error: <reason>\n` when it cannot start, then closes the pipe. The parent drops its copy of
//! the write end right after spawning, so a daemon that dies without writing gives EOF at once
//! instead of a time-out. When the daemon does not say why it failed, the error carries the
//! last lines it wrote to `mesh.log`.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_daemon::paths::StateDir;

use crate::caller::{CLAUDE_PID_ENV, SESSION_ID_ENV};
use crate::error::ClientError;

/// The variable naming the readiness pipe's descriptor in the daemon's environment.
pub const READY_FD_ENV: &str = "CLAUDE_MESH_READY_FD";
/// The state directory, passed explicitly so the daemon serves the same one as its starter.
const STATE_ENV: &str = "CLAUDE_MESH_HOME";

const MAX_LINE: usize = 4096;
const TAIL_LINES: usize = 10;
const TAIL_BYTES: u64 = 16 * 1024;

/// What the daemon wrote on the readiness pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyLine {
    /// `ready <pid>`: it accepts connections.
    Ready { pid: u32 },
    /// `error: <reason>`: it could not start.
    Error(String),
}

/// Why no readiness line was obtained.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error("it exited without reporting whether it started")]
    Eof,
    #[error("it did not report ready within {:.1}s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("it sent an unexpected readiness line {0:?}")]
    Garbled(String),
    #[error("reading its readiness pipe failed: {0}")]
    Io(io::Error),
}

/// Parse one readiness line (without or with its trailing newline).
pub fn parse_ready_line(line: &str) -> Result<ReadyLine, ReadyError> {
    let line = line.trim_end_matches(['\n', '\r']);
    if let Some(reason) = line.strip_prefix("error:") {
        return Ok(ReadyLine::Error(reason.trim().to_owned()));
    }
    line.strip_prefix("ready ")
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .map(|pid| ReadyLine::Ready { pid })
        .ok_or_else(|| ReadyError::Garbled(line.to_owned()))
}

/// Start `program args…` as a detached daemon for `state` and wait, until `deadline`, for its
/// readiness line. Returns the pid it reported.
pub(crate) fn spawn_daemon(
    state: &StateDir,
    program: &Path,
    args: &[&OsStr],
    deadline: Instant,
) -> Result<u32, ClientError> {
    let started = Instant::now();
    let log_path = state.log();
    // A log grown over the limit starts afresh; the lines before stay in mesh.log.1.
    if let Err(e) = mesh_daemon::logfile::rotate(&log_path, mesh_daemon::logfile::keep_from_env()) {
        tracing::warn!("cannot move {} aside: {e}", log_path.display());
    }
    let log = mesh_daemon::paths::open_regular(
        &log_path,
        OpenOptions::new().create(true).append(true).mode(0o600),
        false,
    )
    .map_err(|e| ClientError::io(format!("cannot open {}", log_path.display()), e))?;
    let meta = log
        .metadata()
        .map_err(|e| ClientError::io(format!("cannot open {}", log_path.display()), e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        // The log can quote message bodies: keep it private even if something else created it.
        log.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| ClientError::io(format!("cannot chmod {}", log_path.display()), e))?;
    }
    let log_start = meta.len();
    let stdout = log
        .try_clone()
        .map_err(|e| ClientError::io(format!("cannot open {}", log_path.display()), e))?;
    let root = std::path::absolute(state.root())
        .map_err(|e| ClientError::io("cannot resolve the state directory", e))?;
    let (read_end, write_end) = ready_pipe()
        .map_err(|e| ClientError::io("cannot create the daemon's readiness pipe", e))?;
    let write_fd = write_end.as_raw_fd();

    let mut cmd = Command::new(program);
    cmd.args(args)
        .env(STATE_ENV, &root)
        .env(READY_FD_ENV, write_fd.to_string())
        // The daemon serves every session; it is none of them.
        .env_remove(CLAUDE_PID_ENV)
        .env_remove(SESSION_ID_ENV)
        // Do not pin the caller's directory (it may be unmounted or deleted later).
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log);
    // SAFETY: between fork and exec the closure only calls async-signal-safe functions
    // (setsid, fcntl) and does not allocate. setsid alone (no `process_group`, which would
    // make the child a group leader and setsid fail with EPERM) gives a new session and group,
    // detached from the caller's terminal and its signals.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            // Let the write end survive exec in the child only.
            if libc::fcntl(write_fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    // Close the parent's copies of the log and of the write end: EOF must mean "daemon gone".
    drop(cmd);
    drop(write_end);
    let child = spawned.map_err(|e| ClientError::DaemonStartFailed {
        reason: format!("cannot run `{} daemon`: {e}", program.display()),
    })?;
    let line = read_ready_line(read_end, deadline).map_err(|e| match e {
        ReadyError::Timeout(_) => ReadyError::Timeout(started.elapsed()),
        e => e,
    });
    reap_in_background(child);
    match line {
        Ok(ReadyLine::Ready { pid }) => Ok(pid),
        other => Err(ClientError::DaemonStartFailed {
            reason: start_failure(other, log_tail(&log_path, log_start), &log_path),
        }),
    }
}

/// Read one line from the pipe, until `deadline`. A last line without newline before EOF counts.
fn read_ready_line(fd: OwnedFd, deadline: Instant) -> Result<ReadyLine, ReadyError> {
    let mut pipe = File::from(fd);
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            return parse_ready_line(&String::from_utf8_lossy(&buf[..end]));
        }
        if buf.len() > MAX_LINE {
            return Err(ReadyError::Garbled(
                String::from_utf8_lossy(&buf[..MAX_LINE]).into_owned(),
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadyError::Timeout(Duration::ZERO));
        }
        if !poll_readable(pipe.as_fd(), left).map_err(ReadyError::Io)? {
            continue;
        }
        let mut chunk = [0u8; 512];
        match pipe.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(ReadyError::Eof),
            Ok(0) => return parse_ready_line(&String::from_utf8_lossy(&buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadyError::Io(e)),
        }
    }
}

/// Wait up to `timeout` for `fd` to be readable (or hung up); false on time-out or signal.
fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd that outlives the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(n > 0)
}

/// A close-on-exec pipe whose write end is above the stdio descriptors (the child's stdio
/// redirections must not overwrite it).
fn ready_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        // SAFETY: `fds` is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        // No pipe2 (macOS): set close-on-exec right after; a fork in between in another thread
        // could leak the descriptors, which only delays that EOF.
        // SAFETY: `fds` is a valid array of two ints.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in fds {
            // SAFETY: fcntl on a descriptor pipe just returned.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    // SAFETY: pipe just returned these two descriptors; nothing else owns them.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if write_end.as_raw_fd() > 2 {
        return Ok((read_end, write_end));
    }
    // SAFETY: fcntl on a descriptor we own; the result is a new descriptor we then own.
    let moved = unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if moved == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor.
    Ok((read_end, unsafe { OwnedFd::from_raw_fd(moved) }))
}

/// Collect the child's exit status whenever it exits, so a long-lived client (the MCP server)
/// does not keep a zombie. Short-lived clients simply exit before it does.
fn reap_in_background(mut child: Child) {
    let _ = std::thread::Builder::new()
        .name("mesh-daemon-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        });
}

/// The last lines written to the log since offset `since`, indented, or `None` if nothing was.
pub(crate) fn log_tail(path: &Path, since: u64) -> Option<String> {
    let mut file =
        mesh_daemon::paths::open_regular(path, OpenOptions::new().read(true), false).ok()?;
    let len = file.metadata().ok()?.len();
    let from = since.max(len.saturating_sub(TAIL_BYTES));
    if from >= len {
        return None;
    }
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().checked_sub(1)?.saturating_sub(TAIL_LINES - 1);
    let tail: Vec<String> = lines[start..].iter().map(|l| format!("  {l}")).collect();
    Some(tail.join("\n"))
}

/// The reason of a failed start: the daemon's own words if it gave any, else what happened
/// plus the log tail.
fn start_failure(line: Result<ReadyLine, ReadyError>, tail: Option<String>, log: &Path) -> String {
    let why = match line {
        Ok(ReadyLine::Error(reason)) if !reason.is_empty() => return reason,
        Ok(ReadyLine::Error(_)) => "it reported an error without a reason".to_owned(),
        Ok(ReadyLine::Ready { .. }) => "it reported ready".to_owned(),
        Err(e) => e.to_string(),
    };
    match tail {
        Some(tail) => format!("{why}; last lines of {}:\n{tail}", log.display()),
        None => format!(
            "{why}, and wrote nothing to {}; run `mesh daemon` in a terminal to see why",
            log.display()
        ),
    }
}

#[cfg(test)]
mod tests;
