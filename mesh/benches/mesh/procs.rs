//! Processes and daemons: the `mesh daemon` guard (a child process), the in-process daemon guard
//! (a tokio runtime on a thread of the bench), the `sleep` sessions, `/proc` accounting (RSS,
//! CPU time), and compiling and timing the reference binaries.

use std::fs;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mesh_client::{ConnectOptions, Connection};
use mesh_daemon::paths::StateDir;
use mesh_proto::{Register, SessionInfo};
use tokio_util::sync::CancellationToken;

use crate::report::{Stats, stats, us};

/// The `mesh` binary under test: the one `cargo bench` built, or `$MESH_BENCH_BIN` (for
/// instance the statically linked binary `./install.sh` installs).
pub fn mesh_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("MESH_BENCH_BIN")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_mesh").to_owned())
    })
}

/// Connect options for the bench's clients: never start a daemon.
pub fn opts() -> ConnectOptions {
    ConnectOptions {
        autostart: false,
        ..ConnectOptions::default()
    }
}

/// Point a command at `home` and strip any Claude Code identity inherited from the runner.
fn isolate(cmd: &mut Command, home: &Path, state: &StateDir) {
    cmd.env("HOME", home)
        .env("CLAUDE_MESH_HOME", state.root())
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("CLAUDE_PID")
        .env_remove("CLAUDE_CODE_SESSION_ID")
        .env_remove("CLAUDE_PROJECT_DIR")
        .env_remove("CLAUDE_MESH_LOG")
        .env_remove("CLAUDE_MESH_READY_FD")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("CLAUDE_MESH_IDLE_TIMEOUT");
}

/// Have the kernel kill `cmd`'s process when the bench dies, even by a signal (Ctrl-C), when no
/// drop guard runs.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Connect and ping until `socket` answers, or panic with `log()` after 20 s.
fn wait_until_serving(
    socket: &Path,
    mut exited: impl FnMut() -> Option<String>,
    log: impl Fn() -> String,
) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(why) = exited() {
            panic!("mesh daemon {why}: {}", log());
        }
        if Connection::connect(socket, &opts())
            .and_then(|mut c| c.ping())
            .is_ok()
        {
            return;
        }
        assert!(Instant::now() < end, "daemon did not answer: {}", log());
        thread::sleep(Duration::from_millis(10));
    }
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
        fs::create_dir_all(&home).unwrap();
        let state = StateDir::new(home.join(".claude-mesh"));
        let log = fs::File::create(home.join("daemon.log")).unwrap();
        let mut cmd = Command::new(mesh_bin());
        isolate(&mut cmd, &home, &state);
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

    fn log(&self) -> String {
        fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default()
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

/// `mesh_daemon::run` in this process: a multi-thread tokio runtime (2 workers, as `mesh
/// daemon` builds it) on a background thread, serving a listener bound in `dir` before the
/// thread starts, with `mesh.db` in `dir`. Cancelled and joined on drop.
#[derive(Debug)]
pub struct InProcessDaemon {
    pub socket: PathBuf,
    shutdown: CancellationToken,
    thread: Option<thread::JoinHandle<()>>,
}

impl InProcessDaemon {
    pub fn start(dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap();
        let socket = dir.join("mesh.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut config = mesh_daemon::Config::new(dir.join("mesh.db"));
        // In-process: every connection is the bench process's; no per-process limit.
        config.max_connections_per_process = 0;
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

/// `(VmRSS, VmHWM)` of a process, in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time a process has used so far (all its threads), in µs, from the scheduler's own
/// accounting (`/proc/<pid>/task/*/schedstat`, nanoseconds).
pub fn cpu_us(pid: u32) -> f64 {
    let mut ns = 0u64;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        if let Ok(s) = fs::read_to_string(task.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e3
}

/// CPU time of the calling thread so far, in µs.
pub fn thread_cpu_us() -> f64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0) as f64
        / 1e3
}

/// Time `n` calls of `f` (µs each), and the daemon's CPU time per call over the loop.
pub fn timed(n: usize, daemon_pid: u32, mut f: impl FnMut(usize)) -> (Stats, f64) {
    let cpu0 = cpu_us(daemon_pid);
    let lat = (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            us(t.elapsed())
        })
        .collect();
    let cpu = (cpu_us(daemon_pid) - cpu0) / n as f64;
    (stats(lat), cpu)
}

/// Compile `src` with the toolchain's rustc at -C opt-level=3.
pub fn compile(dir: &Path, name: &str, src: &str) -> PathBuf {
    let source = dir.join(format!("{name}.rs"));
    let out = dir.join(name);
    fs::write(&source, src).unwrap();
    let status = Command::new(rustc())
        .args(["-C", "opt-level=3", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "rustc failed on {}", source.display());
    out
}

/// `$RUSTC`, else the rustc next to the cargo running us, else `rustc` from PATH.
fn rustc() -> PathBuf {
    if let Some(r) = std::env::var_os("RUSTC").filter(|v| !v.is_empty()) {
        return r.into();
    }
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO").map(PathBuf::from));
    if let Some(sibling) = cargo.and_then(|c| Some(c.parent()?.join("rustc")))
        && sibling.exists()
    {
        return sibling;
    }
    "rustc".into()
}

/// Wall time of spawn + exit of `cmd`, in µs.
pub fn time_exec(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let status = cmd.status().unwrap();
    let e = us(t.elapsed());
    assert!(status.success(), "{cmd:?} failed: {status}");
    e
}
