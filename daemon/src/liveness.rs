//! Learning that a session's process has exited. Linux: a pidfd registered with tokio, so an
//! exit is noticed at once without polling. Elsewhere (or when pidfds are unavailable): a slow
//! poll of [`procinfo::is_alive`].

use std::time::Duration;

use crate::procinfo::{self, StartTime};

/// How often the fallback checks a process that cannot be watched with a pidfd.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Resolves once the process `(pid, start)` no longer runs (exited, became a zombie, or its
/// PID now belongs to a process with another start time). Resolves at once if it is already
/// gone. Linux: a pidfd registered with tokio (no polling); elsewhere: a slow poll.
pub async fn exited(pid: u32, start: StartTime) {
    if !procinfo::is_alive(pid, start) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        if linux::watch(pid, start).await.is_ok() {
            return;
        }
    }
    poll(pid, start, POLL_INTERVAL).await;
}

/// Check every `every` until the process is gone.
async fn poll(pid: u32, start: StartTime, every: Duration) {
    while procinfo::is_alive(pid, start) {
        tokio::time::sleep(every).await;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::OwnedFd;

    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    use crate::procinfo::{self, StartTime};

    /// Wait on a pidfd. `Ok(())` once the process is gone; `Err` means "cannot watch it this
    /// way, fall back to polling".
    pub(super) async fn watch(pid: u32, start: StartTime) -> io::Result<()> {
        let fd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
            Err(e) => {
                tracing::debug!(pid, "pidfd_open failed ({e}); polling instead");
                return Err(e);
            }
        };
        // The PID may have been reused between the caller's check and the open: the pidfd
        // would then watch the wrong process. Re-check now that the pidfd pins the PID.
        if !procinfo::is_alive(pid, start) {
            return Ok(());
        }
        // SAFETY: `fd` is an open pidfd owned by the OwnedFd that the AsyncFd takes over; it
        // stays open, and `as_raw_fd` keeps returning it, until the AsyncFd is dropped.
        let afd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| {
                tracing::debug!(
                    pid,
                    "cannot register pidfd with tokio ({e}); polling instead"
                );
                io::Error::from(e)
            })?;
        // A pidfd becomes readable when the process exits (zombie or reaped), and stays so.
        let _ready = afd.readable().await?;
        Ok(())
    }

    fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
        let raw =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // Pid 0 is no process: EINVAL, as the kernel answers pidfd_open(0).
        let pid = rustix::process::Pid::from_raw(raw)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        // Close-on-exec, as every pidfd is.
        Ok(rustix::process::pidfd_open(
            pid,
            rustix::process::PidfdFlags::empty(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Instant;

    fn start_of(pid: u32) -> StartTime {
        procinfo::info(pid).unwrap().start
    }

    #[tokio::test]
    async fn already_dead_returns_at_once() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_of(pid);
        child.wait().unwrap();
        tokio::time::timeout(Duration::from_millis(200), exited(pid, start))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn wrong_start_time_returns_at_once() {
        let me = std::process::id();
        let start = start_of(me);
        tokio::time::timeout(
            Duration::from_millis(200),
            exited(me, start.wrapping_add(1)),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn killed_child_noticed_promptly_without_reaping() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = start_of(pid);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            child.kill().unwrap();
            child // not reaped: it stays a zombie until the end of the test
        });
        let t0 = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), exited(pid, start))
            .await
            .unwrap();
        let took = t0.elapsed();
        let mut child = killer.join().unwrap();
        assert!(took < Duration::from_millis(800), "took {took:?}");
        assert!(
            took >= Duration::from_millis(90),
            "returned before the kill: {took:?}"
        );
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn fallback_poll_notices_exit() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = start_of(pid);
        child.kill().unwrap();
        tokio::time::timeout(
            Duration::from_secs(5),
            poll(pid, start, Duration::from_millis(20)),
        )
        .await
        .unwrap();
        child.wait().unwrap();
    }
}
