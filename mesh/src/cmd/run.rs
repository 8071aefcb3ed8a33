//! `mesh run [claude args…]`: Claude Code under a supervisor that wakes it when mail arrives
//! while it is idle (see [`mesh::run`]).

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context;
use mesh::run::{Ended, Options};
use mesh_daemon::paths::StateDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Arguments for Claude Code, passed on as they are (`mesh run --resume`, `mesh run -- -p x`)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CLAUDE ARGS"
    )]
    pub args: Vec<OsString>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let state = StateDir::from_env().context("cannot locate the mesh state directory")?;
    // The terminal belongs to Claude Code: log to a file instead.
    init_file_tracing(&state);
    let ended = mesh::run::run(Options {
        program: Options::program_from_env(),
        args: args.args,
        state,
    })?;
    Ok(match ended {
        Ended::Code(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)),
        Ended::Signal(sig) => {
            // Die the way the child did, so that the shell sees the same status.
            // SAFETY: signal and raise have no memory-safety preconditions; the terminal is
            // restored already.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
            ExitCode::from(u8::try_from(128 + sig).unwrap_or(1))
        }
    })
}

/// `~/.claude-mesh/run.log`, filtered by `CLAUDE_MESH_LOG` (info by default); nothing when the
/// file cannot be opened. Over the daemon's log limit (`CLAUDE_MESH_LOG_KEEP`, 8 MiB) it first
/// moves to `run.log.1`, as `mesh.log` does.
fn init_file_tracing(state: &StateDir) {
    let path = state.run_log();
    let _ = mesh_daemon::logfile::rotate(&path, mesh_daemon::logfile::keep_from_env());
    let file = state.ensure().and_then(|()| {
        use std::os::unix::fs::OpenOptionsExt;
        mesh_daemon::paths::open_regular(
            &path,
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600),
            false,
        )
    });
    if let Ok(file) = file {
        super::init_tracing_to(std::sync::Mutex::new(file), "info", false);
    }
}
