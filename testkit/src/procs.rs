//! The benchmarks' process guards: a `mesh daemon` process on a given HOME that dies with the
//! bench ([`Daemon`]), `mesh_daemon::run` in this process ([`InProcessDaemon`]), and many
//! stand-in sessions ([`Sleepers`]). Tests use [`Mesh`](crate::Mesh) and
//! [`Session`](crate::Session) instead, which own a temp HOME and one process per session.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use mesh_client::Connection;
use mesh_daemon::paths::StateDir;
use mesh_proto::{Register, SessionInfo};
use tokio_util::sync::CancellationToken;

use crate::{isolate, mesh_bin, opts, wait_for};

/// Have the kernel kill `cmd`'s process when the bench dies, even by a signal (Ctrl-C), when no
/// drop guard runs.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Connect and ping until `socket` answers; panic with `log()` if `exited` says the daemon
/// ended first, or after 20 s.
fn wait_until_serving(
    socket: &Path,
    mut exited: impl FnMut() -> Option<String>,
    log: impl Fn() -> String,
) {
    wait_for("the daemon to answer", Duration::from_secs(20), || {
        if let Some(why) = exited() {
            panic!("mesh daemon {why}: {}", log());
        }
        Connection::connect(socket, &opts())
            .and_then(|mut c| c.ping())
            .is_ok()
    });
}

/// A `mesh daemon` process on its own HOME; killed and reaped on drop.
#[derive(Debug)]
pub struct Daemon {
    pub home: PathBuf,
    pub state: StateDir,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(home: PathBuf) -> Self {
        Self::start_with(home, &[])
    }

    /// [`Daemon::start`] with extra environment for the daemon (e.g. `CLAUDE_MESH_LOG`, which
    /// [`isolate`] removes); its stderr goes to `<home>/daemon.log` ([`Daemon::log_path`]).
    pub fn start_with(home: PathBuf, env: &[(&str, &str)]) -> Self {
        fs::create_dir_all(&home).unwrap();
        let state = StateDir::new(home.join(".claude-mesh"));
        let log = fs::File::create(home.join("daemon.log")).unwrap();
        let mut cmd = Command::new(mesh_bin());
        isolate(&mut cmd, &home, &state);
        cmd.envs(env.iter().copied());
        cmd.arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap();
        let mut d = Daemon {
            home,
            state,
            child: Some(child),
        };
        let socket = d.state.socket();
        let log_path = d.home.join("daemon.log");
        let child = d.child.as_mut().unwrap();
        wait_until_serving(
            &socket,
            || {
                child
                    .try_wait()
                    .unwrap()
                    .map(|s| format!("exited with {s}"))
            },
            || fs::read_to_string(&log_path).unwrap_or_default(),
        );
        d
    }

    /// Where the daemon's stderr (its log) goes.
    pub fn log_path(&self) -> PathBuf {
        self.home.join("daemon.log")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn conn(&self) -> Connection {
        Connection::connect(&self.state.socket(), &opts())
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log()))
    }

    /// The `mesh` CLI, pointed at this daemon's HOME, all output discarded.
    pub fn mesh(&self) -> Command {
        let mut cmd = Command::new(mesh_bin());
        isolate(&mut cmd, &self.home, &self.state);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// SIGTERM, wait for the graceful exit.
    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own, not yet reaped child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `mesh_daemon::run` in this process: the daemon's own current-thread tokio runtime
/// (`mesh_daemon::runtime`, as `mesh daemon` builds it) on a background thread, serving a listener bound before the thread
/// starts. Cancelled and joined on drop, which also removes the socket file
/// (`mesh_daemon::run` leaves it to whoever bound it: here, us).
#[derive(Debug)]
pub struct InProcessDaemon {
    pub socket: PathBuf,
    shutdown: CancellationToken,
    thread: Option<thread::JoinHandle<()>>,
}

impl InProcessDaemon {
    /// The benches' daemon: `mesh.sock` and `mesh.db` in `dir` (made if missing), no
    /// per-process connection limit (every connection is this process's).
    pub fn start(dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap();
        let mut config = mesh_daemon::Config::new(dir.join("mesh.db"));
        config.max_connections_per_process = 0;
        Self::serve(dir.join("mesh.sock"), config)
    }

    /// Serve `config` on a socket bound at `socket` (mode 0600, as the daemon makes it); wait
    /// until it answers.
    pub fn serve(socket: PathBuf, config: mesh_daemon::Config) -> Self {
        let listener = UnixListener::bind(&socket).unwrap();
        fs::set_permissions(&socket, fs::Permissions::from_mode(0o600)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let thread = thread::Builder::new()
            .name("in-process daemon".into())
            .spawn(move || {
                let runtime = mesh_daemon::runtime().unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                    mesh_daemon::run(listener, config, stop).await.unwrap();
                });
            })
            .unwrap();
        let d = Self {
            socket,
            shutdown,
            thread: Some(thread),
        };
        let t = d.thread.as_ref().unwrap();
        wait_until_serving(
            &d.socket,
            || t.is_finished().then(|| "thread ended".to_owned()),
            String::new,
        );
        d
    }

    /// A connection to it.
    pub fn conn(&self) -> Connection {
        Connection::connect(&self.socket, &opts()).unwrap()
    }
}

impl Drop for InProcessDaemon {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.socket);
    }
}

/// Stand-in Claude Code processes (`sleep 600`); all killed and reaped on drop, panic or not.
#[derive(Debug, Default)]
pub struct Sleepers(Vec<Child>);

impl Sleepers {
    pub fn spawn(&mut self) -> u32 {
        let mut cmd = Command::new("sleep");
        cmd.arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        self.0.push(child);
        pid
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// Register `pid` as session `session_id` in `cwd` (created if missing).
pub fn register(conn: &mut Connection, pid: u32, session_id: &str, cwd: &Path) -> SessionInfo {
    fs::create_dir_all(cwd).unwrap();
    conn.register(Register {
        session_id: session_id.to_owned(),
        pid: Some(pid),
        cwd: cwd.to_string_lossy().into_owned(),
        project_dir: None,
        transcript_path: None,
    })
    .unwrap()
}
