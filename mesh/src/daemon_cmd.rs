//! `mesh daemon`: acquire the listener (inherited from systemd/launchd, or bound here), build
//! the tokio runtime, and run the daemon in the foreground until SIGTERM/SIGINT or idle exit.
//!
//! When a client starts the daemon on demand it passes a pipe in `CLAUDE_MESH_READY_FD`; the
//! daemon writes exactly one line to it, `ready <pid>` or `error: <reason>`, then closes it.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use mesh_daemon::activation::{self, Source};
use mesh_daemon::paths::StateDir;
use mesh_daemon::server;
use tokio_util::sync::CancellationToken;

/// Options of `mesh daemon`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DaemonArgs {
    /// When socket-activated, exit after this many seconds with no connection and no waiting
    /// ask (the service manager starts it again on the next connection). 0 = never.
    #[arg(long, env = "CLAUDE_MESH_IDLE_TIMEOUT", default_value_t = IDLE_TIMEOUT_S,
          value_parser = number_or(IDLE_TIMEOUT_S))]
    pub idle_timeout: u64,
    /// Desktop notification (notify-send, osascript) when a task or question has waited this
    /// many seconds for a session that is idle. 0 = never.
    #[arg(long, env = "CLAUDE_MESH_NOTIFY_AFTER", default_value_t = NOTIFY_AFTER_S,
          value_parser = number_or(NOTIFY_AFTER_S))]
    pub notify_after: u64,
    /// Close a client connection that has sent no request for this many seconds (one waiting
    /// for an answer, or supervising a session under `mesh run`, is never idle); clients
    /// connect again when they next need the daemon. 0 = never.
    #[arg(long, env = "CLAUDE_MESH_CONNECTION_IDLE_TIMEOUT", default_value_t = CONNECTION_IDLE_TIMEOUT_S,
          value_parser = number_or(CONNECTION_IDLE_TIMEOUT_S))]
    pub connection_idle_timeout: u64,
    /// Connections served at once, all processes together; past it clients are told "busy".
    #[arg(long, env = "CLAUDE_MESH_MAX_CONNECTIONS", default_value_t = server::DEFAULT_MAX_CONNECTIONS,
          value_parser = number_or(server::DEFAULT_MAX_CONNECTIONS))]
    pub max_connections: usize,
    /// Connections one process may hold at once; past it that process is told "busy" and the
    /// other processes keep the remaining slots. 0 = no per-process limit.
    #[arg(long, env = "CLAUDE_MESH_MAX_CONNECTIONS_PER_PROCESS", default_value_t = server::DEFAULT_MAX_CONNECTIONS_PER_PROCESS,
          value_parser = number_or(server::DEFAULT_MAX_CONNECTIONS_PER_PROCESS))]
    pub max_connections_per_process: usize,
    /// Delete delivered mail, answered questions and ended sessions without pending mail once
    /// they are this many days old (fractions allowed). Undelivered mail is never deleted.
    /// 0 = keep everything.
    #[arg(long, env = "CLAUDE_MESH_RETAIN_DAYS", default_value_t = RETAIN_DAYS,
          value_parser = number_or(RETAIN_DAYS))]
    pub retain_days: f64,
    /// When the daemon's output is `mesh.log` (started on demand, or by launchd), move it to
    /// `mesh.log.1` once it is over this many bytes and go on in a fresh one. 0 = never.
    #[arg(long, env = mesh_daemon::logfile::KEEP_ENV, default_value_t = mesh_daemon::logfile::KEEP,
          value_parser = number_or(mesh_daemon::logfile::KEEP))]
    pub log_keep: u64,
}

const IDLE_TIMEOUT_S: u64 = 600;
/// The most connections `--max-connections` may allow: far above any file descriptor limit,
/// and far below what the daemon's counter (a tokio semaphore) can hold.
const MAX_CONNECTIONS_CEILING: usize = 1 << 20;
const NOTIFY_AFTER_S: u64 = 90;
const CONNECTION_IDLE_TIMEOUT_S: u64 = server::DEFAULT_CONNECTION_IDLE_TIMEOUT.as_secs();
const RETAIN_DAYS: f64 = 30.0;

/// The parser of a numeric option that can come from an environment variable: an empty value
/// (`CLAUDE_MESH_IDLE_TIMEOUT=` in a unit file or a shell) means "not set", as an absent
/// variable does, rather than a daemon that refuses to start.
fn number_or<T>(default: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + Copy + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    move |value| match value.trim() {
        "" => Ok(default),
        v => v.parse().map_err(|e| format!("{e}")),
    }
}

/// The readiness pipe of an on-demand start, if any.
struct Ready(Mutex<Option<File>>);

impl Ready {
    fn from_env() -> Self {
        let fd = std::env::var("CLAUDE_MESH_READY_FD")
            .ok()
            .and_then(|v| v.parse::<RawFd>().ok());
        // SAFETY: the variable is only removed here, before any other thread exists.
        unsafe { std::env::remove_var("CLAUDE_MESH_READY_FD") };
        // SAFETY: the fd was passed to us for this purpose by the client that spawned us and is
        // owned by nothing else in this process; a stale number fails on write, harmlessly.
        let file = fd
            .filter(|fd| *fd > 2)
            .map(|fd| unsafe { File::from_raw_fd(fd) });
        Ready(Mutex::new(file))
    }

    fn say(&self, line: &str) {
        if let Ok(mut slot) = self.0.lock()
            && let Some(mut f) = slot.take()
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Run the daemon until SIGTERM/SIGINT (or idle exit). Must be called before any tokio runtime
/// exists: it builds its own.
pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    init_logging(args.log_keep);
    let ready = Arc::new(Ready::from_env());
    let result = serve(args, ready.clone()).map_err(disk_full);
    if let Err(e) = &result {
        ready.say(&format!("error: {e:#}"));
    }
    result
}

fn serve(args: DaemonArgs, ready: Arc<Ready>) -> anyhow::Result<()> {
    raise_fd_limit();
    let state = StateDir::from_env().context("cannot find the state directory")?;
    let acquired = activation::acquire(&state)?;
    state.check_db()?;
    let source = acquired.source;
    acquired
        .listener
        .set_nonblocking(true)
        .context("cannot make the listener non-blocking")?;
    let mut config = mesh_daemon::Config::new(state.db());
    // The handshake announces the `mesh` binary's version (clients compare it with theirs).
    config.program_version = env!("CARGO_PKG_VERSION").to_owned();
    config.notify_after = (args.notify_after > 0).then(|| Duration::from_secs(args.notify_after));
    if let (Some(path), Some((dev, ino))) = (&acquired.remove_on_exit, acquired.bound_id) {
        config.watch_socket = Some(mesh_daemon::SocketWatch {
            path: path.clone(),
            dev,
            ino,
            interval: server::SOCKET_WATCH_INTERVAL,
        });
    }
    config.connection_idle_timeout = (args.connection_idle_timeout > 0)
        .then(|| Duration::from_secs(args.connection_idle_timeout));
    if args.max_connections > MAX_CONNECTIONS_CEILING {
        anyhow::bail!(
            "--max-connections (CLAUDE_MESH_MAX_CONNECTIONS) is {}, more than the {} connections \
             a daemon can count; set it to at most {}, or unset it for the default {}",
            args.max_connections,
            MAX_CONNECTIONS_CEILING,
            MAX_CONNECTIONS_CEILING,
            server::DEFAULT_MAX_CONNECTIONS
        );
    }
    config.max_connections = args.max_connections.max(1);
    config.max_connections_per_process = args.max_connections_per_process;
    config.retain = retention(args.retain_days)?;
    if source != Source::Bound && args.idle_timeout > 0 {
        config.idle_timeout = Some(Duration::from_secs(args.idle_timeout));
    }
    let pid = std::process::id();
    let on_ready = ready.clone();
    config.on_ready = Some(Arc::new(move || {
        on_ready.say(&format!("ready {pid}"));
        if source == Source::Systemd {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        }
    }));
    tracing::info!(?source, socket = %state.socket().display(), "starting");

    let runtime = mesh_daemon::runtime().context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let listener = tokio::net::UnixListener::from_std(acquired.listener)?;
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone())?;
        mesh_daemon::run(listener, config, shutdown).await?;
        anyhow::Ok(())
    });
    // Only the socket this daemon bound: not a file or a daemon that replaced it since.
    if let Some(path) = &acquired.remove_on_exit
        && activation::file_id(path).ok() == acquired.bound_id
        && let Err(e) = std::fs::remove_file(path)
    {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
    drop(acquired.lock);
    result
}

/// An error caused by a full disk (or an exhausted quota) says so first, with the fix.
fn disk_full(e: anyhow::Error) -> anyhow::Error {
    let full = e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|n| n == libc::ENOSPC || n == libc::EDQUOT)
            || {
                // Wrapped errors (transparent ones, or io errors with a message) keep only
                // their text.
                let text = cause.to_string();
                text.contains("disk is full")
                    || text.contains("disk full")
                    || text.contains(&format!("(os error {})", libc::ENOSPC))
                    || text.contains(&format!("(os error {})", libc::EDQUOT))
            }
    });
    if !full || format!("{e:#}").starts_with("disk full") {
        return e;
    }
    let dir = StateDir::from_env().map_or_else(
        |_| "the state directory".to_owned(),
        |s| s.root().display().to_string(),
    );
    anyhow::anyhow!(
        "disk full: the daemon cannot start ({e:#}); free some space on the filesystem of {dir} \
         (`df -h {dir}`) and try again"
    )
}

/// `--retain-days` as a duration; `None` (keep everything) for 0.
fn retention(days: f64) -> anyhow::Result<Option<Duration>> {
    if !days.is_finite() || days < 0.0 {
        anyhow::bail!("CLAUDE_MESH_RETAIN_DAYS must be a number of days >= 0, got {days}");
    }
    if days == 0.0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_secs_f64((days * 86_400.0).min(1e12))))
}

fn spawn_signal_handler(shutdown: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        shutdown.cancel();
    });
    Ok(())
}

/// One pidfd per watched session plus one fd per connection: lift the soft limit to the hard
/// one so a thousand sessions fit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Daemon logs go to stderr (journald and launchd capture it; an on-demand start sends it to
/// `mesh.log`), at `info` unless `CLAUDE_MESH_LOG` says otherwise, each event on one line with
/// what it quotes shown visibly; when stderr is `mesh.log`, it is kept under `log_keep` bytes
/// ([`mesh_daemon::logfile`]).
fn init_logging(log_keep: u64) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLAUDE_MESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let log = StateDir::from_env().ok().map(|state| state.log());
    let out = mesh_daemon::logfile::Output::new(log, log_keep);
    let _ = builder.with_writer(move || out.clone()).try_init();
}
