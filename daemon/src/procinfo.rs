//! Facts about processes, read from the OS (procfs on Linux, libc on macOS); never trusted
//! from a client. A session's process is identified by PID plus start time, so a PID that the
//! kernel hands to a new process never passes for the old one.

/// Process start time in the OS's own unit (Linux: clock ticks since boot, `/proc/<pid>/stat`
/// field 22; macOS: microseconds since the epoch). Compared raw, never converted.
pub type StartTime = u64;

/// One process, as read from the OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub start: StartTime,
    /// Executable name as the kernel reports it (`comm`; Linux truncates it to 15 bytes).
    pub comm: String,
    pub zombie: bool,
    pub uid: u32,
}

/// Shells and wrappers that may sit between Claude Code and our shim. All are at most 15
/// bytes, so Linux's truncated `comm` matches them exactly.
const WRAPPERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "fish", "ksh", "mksh", "tcsh", "csh", "busybox", "env", "timeout",
    "nice", "nohup", "stdbuf", "time", "setsid", "ionice", "chrt", "taskset", "mesh",
];

/// Read one process; `None` if it does not exist (or cannot be read).
///
/// Linux: one `/proc/<pid>/stat` read plus one `fstat` of `/proc/<pid>` (for the owner).
#[cfg(target_os = "linux")]
pub fn info(pid: u32) -> Option<ProcInfo> {
    let raw = i32::try_from(pid).ok().filter(|p| *p > 0)?;
    let proc_ = procfs::process::Process::new(raw).ok()?;
    let stat = proc_.stat().ok()?;
    let uid = proc_.uid().ok()?;
    Some(ProcInfo {
        pid,
        ppid: u32::try_from(stat.ppid).unwrap_or(0),
        start: stat.starttime,
        comm: stat.comm,
        zombie: stat.state == 'Z',
        uid,
    })
}

/// Read one process; `None` if it does not exist (or cannot be read).
///
/// macOS: one `proc_pidinfo(PROC_PIDTBSDINFO)` call.
#[cfg(target_os = "macos")]
pub fn info(pid: u32) -> Option<ProcInfo> {
    const SZOMB: u32 = 5;
    let raw = libc::c_int::try_from(pid).ok().filter(|p| *p > 0)?;
    // SAFETY: proc_bsdinfo is a plain C struct of integers and byte arrays; all-zero is valid.
    let mut bsd: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = libc::c_int::try_from(std::mem::size_of::<libc::proc_bsdinfo>()).ok()?;
    // SAFETY: the buffer points at a live proc_bsdinfo of exactly `size` bytes, which is what
    // PROC_PIDTBSDINFO writes; the kernel writes at most `size` bytes.
    let got = unsafe {
        libc::proc_pidinfo(
            raw,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut bsd as *mut libc::proc_bsdinfo).cast::<libc::c_void>(),
            size,
        )
    };
    if got != size {
        return None;
    }
    let comm_bytes: Vec<u8> = bsd
        .pbi_comm
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    Some(ProcInfo {
        pid,
        ppid: bsd.pbi_ppid,
        start: bsd
            .pbi_start_tvsec
            .wrapping_mul(1_000_000)
            .wrapping_add(bsd.pbi_start_tvusec),
        comm: String::from_utf8_lossy(&comm_bytes).into_owned(),
        zombie: bsd.pbi_status == SZOMB,
        uid: bsd.pbi_uid,
    })
}

/// True while `pid` exists, is not a zombie, and started at `start`.
pub fn is_alive(pid: u32, start: StartTime) -> bool {
    info(pid).is_some_and(|p| p.start == start && !p.zombie)
}

/// `pid` itself followed by its ancestors, nearest first, at most `max` entries. Stops after
/// pid 1, at a parent of 0, or when a process cannot be read (it may have just exited).
pub fn lineage(pid: u32, max: usize) -> Vec<ProcInfo> {
    let mut out: Vec<ProcInfo> = Vec::new();
    let mut next = pid;
    while out.len() < max && next != 0 {
        let Some(p) = info(next) else { break };
        let (this, parent) = (p.pid, p.ppid);
        out.push(p);
        if this == 1 || parent == this {
            break;
        }
        next = parent;
    }
    out
}

/// Whether a process with this `comm` is a shell or wrapper that sits between Claude Code and
/// our shim (sh, bash, dash, zsh, fish, env, timeout, nice, nohup, …). A login shell's
/// leading `-` is ignored.
pub fn is_wrapper(comm: &str) -> bool {
    let name = comm.strip_prefix('-').unwrap_or(comm);
    WRAPPERS.contains(&name)
}

/// The Claude Code process for a shim: the nearest ancestor of `shim_pid` (excluding the shim
/// itself) that is not a wrapper.
pub fn session_process_for(shim_pid: u32) -> Option<ProcInfo> {
    lineage(shim_pid, 64)
        .into_iter()
        .skip(1)
        .find(|p| !is_wrapper(&p.comm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let me = info(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(!me.zombie);
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert_eq!(me.uid, rustix::process::geteuid().as_raw());
        assert!(is_alive(me.pid, me.start));
        assert!(!is_alive(me.pid, me.start.wrapping_add(1)));
    }

    #[test]
    fn missing_process_has_no_info() {
        assert!(info(0).is_none());
        assert!(info(u32::MAX).is_none());
        assert!(!is_alive(u32::MAX, 0));
    }

    #[test]
    fn killed_unreaped_child_is_a_zombie_then_gone() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = info(pid).unwrap().start;
        assert!(is_alive(pid, start));
        child.kill().unwrap();
        wait_until("zombie", || info(pid).is_some_and(|p| p.zombie));
        assert!(!is_alive(pid, start));
        child.wait().unwrap();
        assert!(info(pid).is_none());
    }

    #[test]
    fn lineage_starts_with_self_then_parent() {
        let me = std::process::id();
        let line = lineage(me, 32);
        assert_eq!(line[0].pid, me);
        assert_eq!(line[1].pid, std::os::unix::process::parent_id());
        assert!(line.windows(2).all(|w| w[0].ppid == w[1].pid));
        assert_eq!(lineage(me, 1).len(), 1);
        assert!(lineage(me, 0).is_empty());
    }

    #[test]
    fn wrappers() {
        for w in [
            "sh", "bash", "-bash", "zsh", "env", "nohup", "timeout", "mesh",
        ] {
            assert!(is_wrapper(w), "{w}");
        }
        for w in ["claude", "node", "", "bashful", "mesh-daemon"] {
            assert!(!is_wrapper(w), "{w}");
        }
    }

    #[test]
    fn session_process_skips_shell_wrappers() {
        // `sh` stays the parent of `sleep` because of the trailing command (no exec).
        let mut sh = Command::new("sh")
            .args(["-c", "sleep 30; true"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let sh_pid = sh.id();
        let mut sleep_pid = None;
        wait_until("sleep under sh", || {
            sleep_pid = find_child(sh_pid, "sleep");
            sleep_pid.is_some()
        });
        let found = session_process_for(sleep_pid.unwrap());
        let _ = sh.kill();
        if let Some(pid) = sleep_pid
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let _ = sh.wait();
        assert_eq!(found.map(|p| p.pid), Some(std::process::id()));
    }

    /// A child of `parent` named `comm`, found by scanning /proc.
    #[cfg(target_os = "linux")]
    fn find_child(parent: u32, comm: &str) -> Option<u32> {
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(info)
            .find(|p| p.ppid == parent && p.comm == comm)
            .map(|p| p.pid)
    }

    #[cfg(target_os = "macos")]
    fn find_child(parent: u32, comm: &str) -> Option<u32> {
        let out = Command::new("pgrep")
            .args(["-P", &parent.to_string(), comm])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

/// A process and its ancestors (`(pid, start)`, nearest first), read from the OS only the first
/// time someone needs them, then cached: most callers are identified by `CLAUDE_PID` already,
/// and a walk of the process tree costs a `/proc` read per ancestor.
#[derive(Debug, Clone, Default)]
pub struct LazyLineage {
    pid: Option<u32>,
    cache: std::sync::Arc<std::sync::OnceLock<Vec<(u32, StartTime)>>>,
}

impl LazyLineage {
    /// Up to this many ancestors are read.
    pub const DEPTH: usize = 32;

    pub fn new(pid: Option<u32>) -> Self {
        Self {
            pid,
            cache: Default::default(),
        }
    }

    /// A lineage known in advance (tests).
    pub fn known(lineage: Vec<(u32, StartTime)>) -> Self {
        let cache = std::sync::OnceLock::new();
        let _ = cache.set(lineage);
        Self {
            pid: None,
            cache: std::sync::Arc::new(cache),
        }
    }

    pub fn get(&self) -> &[(u32, StartTime)] {
        self.cache.get_or_init(|| match self.pid {
            Some(p) => lineage(p, Self::DEPTH)
                .into_iter()
                .map(|i| (i.pid, i.start))
                .collect(),
            None => Vec::new(),
        })
    }
}
