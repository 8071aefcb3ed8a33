//! `mesh daemon`: acquire the listener and run the daemon in the foreground. STUB.

/// Options of `mesh daemon`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DaemonArgs {
    /// When socket-activated, exit after this many seconds with no connection and no waiting
    /// ask (the service manager starts it again on the next connection). 0 = never.
    #[arg(long, env = "CLAUDE_MESH_IDLE_TIMEOUT", default_value_t = 600)]
    pub idle_timeout: u64,
}

/// Run the daemon until SIGTERM/SIGINT (or idle exit). Must be called before any tokio runtime
/// exists: it builds its own.
pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("daemon not implemented yet")
}
