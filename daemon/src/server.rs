//! The accept loop: a capped number of connections, and of connections per process, idle exit
//! when socket-activated, and a graceful shutdown that stops accepting, lets in-flight requests
//! finish within a bound, and closes the database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mesh_proto::{ErrorCode, WireError};
use tokio::net::UnixListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn::{self, Limits};
use crate::handlers::Shared;
use crate::monitor::Monitor;
use crate::store::Store;
use crate::supervise::Supervisors;

/// How long delivered mail and ended sessions are kept by default: 30 days.
pub const DEFAULT_RETAIN: Duration = Duration::from_secs(30 * 24 * 3600);

/// Called once the daemon serves (database open, liveness checked).
pub type ReadyHook = Arc<dyn Fn() + Send + Sync>;

/// [`Config::max_connections`]'s default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// [`Config::max_connections_per_process`]'s default: a sixteenth of all slots. A session uses
/// a few at a time (a hook, the MCP server, an ask, `mesh run`'s supervisor).
pub const DEFAULT_MAX_CONNECTIONS_PER_PROCESS: usize = 64;
/// [`Config::connection_idle_timeout`]'s default.
pub const DEFAULT_CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How the daemon runs.
#[derive(Clone)]
pub struct Config {
    /// The SQLite database.
    pub db_path: PathBuf,
    /// Exit after this long with no connection (socket activation restarts us). `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Connections served at once; more get a "busy" error.
    pub max_connections: usize,
    /// Connections one process (the peer pid of `SO_PEERCRED`) may hold at once; more get a
    /// "busy" error that says so, and the other processes keep the remaining slots. 0: no
    /// per-process limit.
    pub max_connections_per_process: usize,
    /// Close a connection that has sent no request for this long since its last answer (one
    /// waiting for an answer, or supervising a session, is not idle). `None`: never.
    pub connection_idle_timeout: Option<Duration>,
    /// How long a new connection has to send its handshake.
    pub handshake_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Period of the liveness sweep (the safety net behind pidfd notifications), which also
    /// prunes what retention lets go.
    pub sweep_interval: Duration,
    /// Delivered mail, answered questions and ended sessions without pending mail are deleted
    /// once they are this old ([`crate::store::retention`]); undelivered mail never is.
    /// `None`: keep everything.
    pub retain: Option<Duration>,
    /// Told when the daemon is ready to serve.
    pub on_ready: Option<ReadyHook>,
    /// Desktop notification for a task or question that waited this long for an idle session
    /// ([`crate::notify`]). `None`: never.
    pub notify_after: Option<Duration>,
    /// The program version announced in the handshake (`ServerHello::program_version`).
    /// `mesh daemon` passes the `mesh` binary's own version; tests can pose as an older one.
    pub program_version: String,
    /// Shut down when the socket file this daemon bound is deleted or replaced. `None`: not
    /// watched (tests; socket activation, where the service manager owns the path).
    pub watch_socket: Option<SocketWatch>,
}

/// The socket path a self-bound daemon checks, every `interval`, still names the socket it
/// bound (same device and inode). When it does not (deleted, or replaced by another file or
/// daemon), no client can reach this daemon any more: it shuts down, releasing `mesh.lock`,
/// so that the next client starts a fresh one.
#[derive(Debug, Clone)]
pub struct SocketWatch {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub interval: Duration,
}

/// How often a self-bound daemon checks its socket file.
pub const SOCKET_WATCH_INTERVAL: Duration = Duration::from_secs(2);

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("db_path", &self.db_path)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field(
                "max_connections_per_process",
                &self.max_connections_per_process,
            )
            .field("connection_idle_timeout", &self.connection_idle_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("sweep_interval", &self.sweep_interval)
            .field("retain", &self.retain)
            .field("program_version", &self.program_version)
            .field("notify_after", &self.notify_after)
            .field("watch_socket", &self.watch_socket)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        Self {
            db_path: db_path.into(),
            idle_timeout: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_process: DEFAULT_MAX_CONNECTIONS_PER_PROCESS,
            connection_idle_timeout: Some(DEFAULT_CONNECTION_IDLE_TIMEOUT),
            handshake_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            sweep_interval: Duration::from_secs(30),
            retain: Some(DEFAULT_RETAIN),
            on_ready: None,
            notify_after: None,
            program_version: crate::conn::VERSION.to_owned(),
            watch_socket: None,
        }
    }
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open the database: {0}")]
    Store(WireError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Counts open connections and tells the accept loop when the count changes.
#[derive(Debug, Default)]
struct Activity {
    open: AtomicUsize,
    changed: Notify,
}

struct ConnGuard(Arc<Activity>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.changed.notify_one();
        }
    }
}

/// Open connections per peer process, for [`Config::max_connections_per_process`].
#[derive(Debug, Default)]
struct PerProcess(Mutex<HashMap<i32, usize>>);

impl PerProcess {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<i32, usize>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Count one more connection of `pid`, unless it already holds `cap` (`Err`). No pid, or
    /// no cap: not counted.
    fn claim(self: &Arc<Self>, pid: Option<i32>, cap: usize) -> Result<Option<ProcessSlot>, ()> {
        let Some(pid) = pid.filter(|_| cap > 0) else {
            return Ok(None);
        };
        let mut counts = self.counts();
        let held = counts.entry(pid).or_default();
        if *held >= cap {
            return Err(());
        }
        *held += 1;
        Ok(Some(ProcessSlot(self.clone(), pid)))
    }
}

/// One counted connection of a process; uncounted on drop.
struct ProcessSlot(Arc<PerProcess>, i32);

impl Drop for ProcessSlot {
    fn drop(&mut self) {
        let mut counts = self.0.counts();
        if let Some(held) = counts.get_mut(&self.1) {
            *held -= 1;
            if *held == 0 {
                counts.remove(&self.1);
            }
        }
    }
}

/// Serve `listener` until `shutdown` is cancelled (or the idle timeout passes).
pub async fn run(
    listener: UnixListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let (store, store_thread, recovered) =
        Store::open_or_recover(&config.db_path).map_err(DaemonError::Store)?;
    if let Some(r) = recovered {
        tracing::error!(
            "the database {} was damaged ({}); moved it to {} and started on a fresh one. \
             Mail queued in it is not delivered; `mesh health` reports this until that \
             directory is removed",
            config.db_path.display(),
            r.reason,
            r.moved_to.display()
        );
    }
    let tasks = TaskTracker::new();
    // Connections and watchers stop on the daemon's shutdown, whatever its cause.
    let stop = shutdown.child_token();
    let monitor = Monitor::new(store.clone(), tasks.clone(), stop.clone()).retaining(config.retain);
    monitor.sweep().await;
    monitor.start_sweeping(config.sweep_interval);
    if let Some(watch) = config.watch_socket.clone() {
        tasks.spawn(watch_socket(watch, stop.clone()));
    }
    let supervisors = Arc::new(Supervisors::default());
    if let Some(after) = config.notify_after {
        crate::notify::start(
            store.clone(),
            supervisors.clone(),
            after,
            &tasks,
            stop.clone(),
        );
    }
    // The mesh across machines, only when this machine joined one (`federation.toml` beside
    // the database): otherwise nothing connects anywhere.
    let federation = match config.db_path.parent() {
        Some(dir) => crate::federation::Setup::load_retaining(dir, config.retain),
        None => crate::federation::Setup::Off,
    };
    match &federation {
        crate::federation::Setup::Off => {}
        crate::federation::Setup::Broken { reason } => tracing::error!(
            "federation.toml cannot be used ({reason}); serving this machine only. `mesh \
             health` says more; `mesh join` writes it again"
        ),
        crate::federation::Setup::On(fed) => fed.start(store.clone(), &tasks, stop.clone()),
    }
    let shared = Arc::new(Shared {
        federation,
        store: store.clone(),
        monitor,
        started: Instant::now(),
        pid: std::process::id(),
        version: config.program_version.clone(),
        supervisors,
    });
    let limits = Limits {
        handshake_timeout: config.handshake_timeout,
        idle_timeout: config.connection_idle_timeout,
    };
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let per_process = Arc::new(PerProcess::default());
    let activity = Arc::new(Activity::default());
    let mut idle_since = Instant::now();
    tracing::info!(pid = shared.pid, db = %config.db_path.display(), idle_timeout = ?config.idle_timeout, "daemon serving");
    if let Some(ready) = &config.on_ready {
        ready();
    }

    loop {
        let idle_deadline = match config.idle_timeout {
            Some(t) if activity.open.load(Ordering::SeqCst) == 0 => Some(idle_since + t),
            _ => None,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = stop.cancelled() => break,
            () = activity.changed.notified() => {
                idle_since = Instant::now();
                continue;
            }
            () = sleep_until(idle_deadline) => {
                if activity.open.load(Ordering::SeqCst) == 0 {
                    tracing::info!("idle for {:?} with no connection; exiting", config.idle_timeout.unwrap_or_default());
                    break;
                }
                continue;
            }
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot read peer credentials, closing: {e}");
                continue;
            }
        };
        let cap = config.max_connections_per_process;
        let Ok(slot) = per_process.claim(cred.pid(), cap) else {
            tracing::warn!(
                pid = ?cred.pid(),
                "a process holds {cap} connections, the most one process may; refusing it another"
            );
            let shared = shared.clone();
            tasks.spawn(async move {
                let busy = WireError::new(
                    ErrorCode::Busy,
                    format!(
                        "the daemon is busy: this process already holds {cap} connections, the \
                         most one process may; close some and retry"
                    ),
                );
                conn::refuse(stream, &shared, busy).await;
            });
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                "connection limit ({}) reached; refusing a client",
                config.max_connections
            );
            let shared = shared.clone();
            tasks.spawn(async move {
                let busy = WireError::new(
                    ErrorCode::Busy,
                    "the daemon is busy (too many connections); retry shortly",
                );
                conn::refuse(stream, &shared, busy).await;
            });
            continue;
        };
        activity.open.fetch_add(1, Ordering::SeqCst);
        let guard = ConnGuard(activity.clone());
        let (shared, stop) = (shared.clone(), stop.clone());
        tasks.spawn(async move {
            conn::serve(stream, cred, shared, limits, stop).await;
            drop(slot);
            drop(permit);
            drop(guard);
        });
    }

    drop(listener);
    stop.cancel();
    tasks.close();
    if tokio::time::timeout(config.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "some connections did not finish within {:?}",
            config.shutdown_grace
        );
    }
    drop(shared);
    store.close();
    drop(store);
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    tracing::info!("daemon stopped");
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// See [`SocketWatch`]. A `stat` of a path in the daemon's own 0700 state directory: cheap,
/// and never of a path a client chose.
async fn watch_socket(watch: SocketWatch, stop: CancellationToken) {
    use std::os::unix::fs::MetadataExt;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(watch.interval) => {}
        }
        let what = match std::fs::symlink_metadata(&watch.path) {
            Ok(m) if m.dev() == watch.dev && m.ino() == watch.ino => continue,
            Ok(_) => "was replaced by another file",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was deleted",
            Err(_) => "cannot be looked at",
        };
        tracing::error!(
            "the socket {} {what}: no client can reach this daemon any more; shutting down so \
             that the next client starts a fresh one",
            watch.path.display()
        );
        stop.cancel();
        return;
    }
}
