//! Learning that a session's process has exited. STUB: interface only.

use crate::procinfo::StartTime;

/// Resolves once the process `(pid, start)` no longer runs (exited, became a zombie, or its
/// PID now belongs to a process with another start time). Resolves at once if it is already
/// gone. Linux: a pidfd registered with tokio (no polling); elsewhere: a slow poll.
pub async fn exited(pid: u32, start: StartTime) {
    let _ = (pid, start);
}
