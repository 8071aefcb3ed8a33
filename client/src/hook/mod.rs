//! `mesh hook <event>`: the Claude Code hook shim. STUB: exits 0 without output.

use std::ffi::OsStr;
use std::process::ExitCode;

/// Run the hook for `event`. Always exits 0 (hooks fail open).
pub fn main(event: &OsStr) -> ExitCode {
    let _ = event;
    ExitCode::SUCCESS
}
