//! Facts about processes, read from the OS (procfs on Linux, libc on macOS); never trusted
//! from a client. STUB: interface only, implementation pending.

/// Process start time in the OS's own unit (Linux: clock ticks since boot, `/proc/<pid>/stat`
/// field 22; macOS: microseconds since the epoch). Compared raw, never converted.
pub type StartTime = u64;

/// One process, as read from the OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub start: StartTime,
    /// Executable name as the kernel reports it (`comm`).
    pub comm: String,
    pub zombie: bool,
    pub uid: u32,
}

/// Read one process; `None` if it does not exist (or cannot be read).
pub fn info(_pid: u32) -> Option<ProcInfo> {
    None
}

/// True while `pid` exists, is not a zombie, and started at `start`.
pub fn is_alive(pid: u32, start: StartTime) -> bool {
    info(pid).is_some_and(|p| p.start == start && !p.zombie)
}

/// `pid` itself followed by its ancestors, nearest first, at most `max` entries.
pub fn lineage(_pid: u32, _max: usize) -> Vec<ProcInfo> {
    Vec::new()
}

/// Whether a process with this `comm` is a shell or wrapper that sits between Claude Code and
/// our shim (sh, bash, dash, zsh, fish, env, timeout, nice, nohup, …).
pub fn is_wrapper(_comm: &str) -> bool {
    false
}

/// The Claude Code process for a shim: the nearest ancestor of `shim_pid` (excluding the shim
/// itself) that is not a wrapper.
pub fn session_process_for(_shim_pid: u32) -> Option<ProcInfo> {
    None
}
