//! claude-mesh's test harness, shared by the integration tests (`tests/mesh`, `tests/system`,
//! `tests/claude`, declared in `mesh/Cargo.toml`) and the benchmarks (`mesh/benches/mesh`).
//!
//! Nothing is mocked: [`Mesh`] runs a real `mesh daemon` process on a temp HOME, talked to over
//! its real socket, with a real SQLite file; [`Session`]s are real processes (`sleep`)
//! registered as Claude Code would be. Around that:
//! - [`wait_for`], [`poll`], [`wait_exit`]: wait for a condition until it holds or a deadline
//!   passes (tests wait on conditions, not for a fixed time), and conditions `/proc` shows:
//!   [`thread_in_sleep`] (the daemon's store waiting on a locked database), [`blocked_in`];
//! - [`tty`]: a program in a real pseudo-terminal, with a small terminal emulator;
//! - [`user_manager`]: a private systemd user manager;
//! - [`mcp`]: an MCP client driving `mesh mcp` over its stdio;
//! - [`claude`]: the real Claude Code binary, headless or in a terminal, against a scripted
//!   model on 127.0.0.1; and [`fake_claude`], a small stand-in for it (`fake_claude.py`);
//! - [`nats`]: real NATS servers (Debian's and upstream), a three-node cluster, a recording
//!   TCP proxy and a tiny blocking NATS client, for the federation tests and benches;
//! - [`procs`]: the benchmarks' guards: a daemon on a given HOME that dies with the bench, the
//!   daemon in this process, and many stand-in sessions.
//!
//! # The `mesh` binary
//!
//! Only the crate that declares the test or bench knows where cargo built `mesh`
//! (`CARGO_BIN_EXE_mesh` is a compile-time variable of test and bench targets, which a library
//! cannot read). [`mesh_bin`] takes it, one way: from the environment variable
//! `CARGO_BIN_EXE_mesh` at run time, which `cargo test` and `cargo bench` set for the test and
//! bench processes they run (to the same path as the compile-time `env!`; cargo of the
//! workspace's `rust-version` does). The test and bench crates therefore pass nothing and no
//! test needs a set-up call. To run a test binary by hand, set it yourself:
//! `CARGO_BIN_EXE_mesh=target/debug/mesh target/debug/deps/mesh-<hash> <filter>`. The bench
//! replaces it with `$MESH_BENCH_BIN` (another `mesh` to measure) first thing in `main`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod claude;
pub mod mcp;
pub mod nats;
pub mod procs;
pub mod tty;
pub mod user_manager;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mesh_client::{ConnectOptions, Connection};
use mesh_daemon::paths::StateDir;
use mesh_proto::{Caller, Kind, Register, SessionInfo};

/// The environment variable that names the `mesh` binary under test (see the crate docs).
pub const MESH_BIN_ENV: &str = "CARGO_BIN_EXE_mesh";

/// The `mesh` binary under test: `$CARGO_BIN_EXE_mesh`, which cargo sets when it runs a test
/// or bench of the `mesh` package (see the crate docs). Panics when it is not set.
pub fn mesh_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var(MESH_BIN_ENV) {
        Ok(bin) if !bin.is_empty() => bin,
        _ => panic!(
            "{MESH_BIN_ENV} is not set: run the tests with `cargo test -p mesh` (or `cargo \
             bench -p mesh`), or set it to the (UTF-8) path of the `mesh` binary to test"
        ),
    })
}

/// `fake_claude.py` in this crate: a stand-in for Claude Code that `mesh run` can supervise (it
/// runs the real hooks against the real daemon; see the script's own comment).
pub fn fake_claude() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fake_claude.py")
}

/// Poll `cond` until it holds or `deadline` passes (then panic with `what`). See [`poll`].
pub fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    assert!(
        poll(deadline, || cond().then_some(())).is_some(),
        "timed out after {deadline:?} waiting for {what}"
    );
}

/// Poll `probe` until it returns `Some` (that value) or `deadline` passes (`None`; `probe` runs
/// at least once, and once more at the deadline). The pause between tries grows from 1 ms to
/// 50 ms: quick when the condition comes fast, cheap when it does not.
pub fn poll<T>(deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Wait up to `deadline` for `child` to exit: its status, or `None` if it still runs (it is
/// left running).
pub fn wait_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    poll(deadline, || child.try_wait().unwrap())
}

/// Whether the thread named `name` of process `pid` is asleep in `nanosleep(2)` or
/// `clock_nanosleep(2)`, from `/proc/<pid>/task/*/{comm,syscall}`. For the daemon's store
/// thread (`mesh-store`) this is SQLite's busy handler: the store waits on a database another
/// connection holds locked (see [`Mesh::store_waits_on_lock`]). `false` when the thread is not
/// found or `/proc` does not say.
pub fn thread_in_sleep(pid: u32, name: &str) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|task| {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            return false;
        }
        let nr = syscall_in(&task.path().join("syscall"));
        nr == Some(libc::SYS_nanosleep) || nr == Some(libc::SYS_clock_nanosleep)
    })
}

/// The system call the main thread of process `pid` is blocked in (`libc::SYS_*`), from
/// `/proc/<pid>/syscall`; `None` when it runs, or `/proc` does not say.
pub fn blocked_in(pid: u32) -> Option<i64> {
    syscall_in(Path::new(&format!("/proc/{pid}/syscall")))
}

/// The number in a `/proc/.../syscall` file: its first field, unless the thread is running.
fn syscall_in(path: &Path) -> Option<i64> {
    fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A temp HOME with a daemon running in it. Dropping it kills the daemon.
#[derive(Debug)]
pub struct Mesh {
    /// The temp HOME (removed on drop).
    pub home: tempfile::TempDir,
    /// The state dir, `<home>/.claude-mesh`.
    pub state: StateDir,
    /// The daemon process, if one runs.
    pub daemon: Option<Child>,
    /// Extra environment of every daemon this mesh starts (its `CLAUDE_MESH_*` settings).
    pub daemon_env: Vec<(String, String)>,
}

impl Mesh {
    /// A fresh HOME and a daemon serving it.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Mesh::start`], the daemon run with these environment variables (its settings, e.g.
    /// `CLAUDE_MESH_MAX_CONNECTIONS`).
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let mut mesh = Self::without_daemon();
        mesh.daemon_env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        mesh.spawn_daemon();
        mesh
    }

    /// A fresh HOME, no daemon yet ([`Mesh::spawn_daemon`] starts one).
    pub fn without_daemon() -> Self {
        let home = tempfile::Builder::new()
            .prefix("mesh-test")
            .tempdir()
            .unwrap();
        let state = StateDir::new(home.path().join(".claude-mesh"));
        Self {
            home,
            state,
            daemon: None,
            daemon_env: Vec::new(),
        }
    }

    /// Damaged databases the daemon moved aside: the `corrupt-*` entries of the state dir.
    pub fn set_aside(&self) -> Vec<PathBuf> {
        fs::read_dir(self.state.root())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("corrupt-")
            })
            .collect()
    }

    /// Where the daemons of this mesh write their log (stderr).
    pub fn log_path(&self) -> PathBuf {
        self.home.path().join("daemon.log")
    }

    /// A `mesh` command isolated in this HOME, outside any Claude Code session.
    pub fn mesh(&self) -> Command {
        let mut cmd = Command::new(mesh_bin());
        isolate(&mut cmd, self.home.path(), &self.state);
        cmd
    }

    /// Start `mesh daemon` and wait until it answers.
    pub fn spawn_daemon(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = self.mesh();
        cmd.arg("daemon")
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().unwrap();
        self.daemon = Some(child);
        let socket = self.state.socket();
        wait_for("the daemon to answer", Duration::from_secs(20), || {
            if let Some(status) = self.daemon.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("daemon exited with {status}: {}", self.log());
            }
            Connection::connect(&socket, &opts())
                .and_then(|mut c| c.ping())
                .is_ok()
        });
    }

    /// Whether the daemon's store thread is waiting on a database another connection holds
    /// locked (it sleeps in SQLite's busy handler; see [`thread_in_sleep`]).
    pub fn store_waits_on_lock(&self) -> bool {
        thread_in_sleep(self.daemon_pid(), "mesh-store")
    }

    /// The PID of the running daemon (panics when none runs).
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon running").id()
    }

    /// `kill -9` the daemon and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM the daemon and wait for it to exit; returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.daemon.take().expect("daemon running");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    }

    /// What the daemons wrote to [`Mesh::log_path`] so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A connection to the daemon (no autostart); panics with the log when it fails.
    pub fn conn(&self) -> Connection {
        Connection::connect(&self.state.socket(), &opts())
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log()))
    }

    /// A project directory `<home>/projects/<name>` (no git: named after its basename).
    pub fn project(&self, name: &str) -> PathBuf {
        let dir = self.home.path().join("projects").join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Start a stand-in for a Claude Code process in project `name` and register it.
    pub fn session(&self, name: &str) -> Session {
        self.session_with(name, None, None)
    }

    /// [`Mesh::session`] with a chosen session id and the transcript path its SessionStart
    /// hook would report.
    pub fn session_with(
        &self,
        name: &str,
        session_id: Option<&str>,
        transcript: Option<&Path>,
    ) -> Session {
        let dir = self.project(name);
        let child = Command::new("sleep")
            .arg("3600")
            .current_dir(&dir)
            .spawn()
            .unwrap();
        let pid = child.id();
        let info = self
            .conn()
            .register(Register {
                session_id: session_id
                    .map_or_else(|| format!("{name}-{pid}-0000-session"), str::to_owned),
                pid: Some(pid),
                cwd: dir.to_string_lossy().into_owned(),
                project_dir: None,
                transcript_path: transcript.map(|t| t.to_string_lossy().into_owned()),
            })
            .unwrap();
        Session {
            child,
            info,
            caller: Caller {
                claude_pid: Some(pid),
                session_id: None,
            },
        }
    }

    /// Send one message as `from` (`Caller::default()`: the user); its id.
    pub fn send(&self, from: &Caller, to: &str, kind: Kind, body: &str) -> u64 {
        self.conn()
            .send(mesh_proto::SendMessage {
                caller: from.clone(),
                to: to.into(),
                kind,
                body: body.into(),
            })
            .unwrap()
            .messages[0]
            .id
    }

    /// Register process `pid` as session `session_id` in `cwd`, as the SessionStart hook would.
    pub fn register(&self, pid: u32, session_id: &str, cwd: &Path) -> SessionInfo {
        self.conn()
            .register(Register {
                session_id: session_id.to_owned(),
                pid: Some(pid),
                cwd: cwd.to_string_lossy().into_owned(),
                project_dir: None,
                transcript_path: None,
            })
            .unwrap()
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A finished command's status, stdout and stderr, for assertion messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Connection options for tests: no autostart, generous timeouts.
pub fn opts() -> ConnectOptions {
    ConnectOptions {
        autostart: false,
        ..ConnectOptions::default()
    }
}

/// Point a command at `home` and strip any Claude Code identity inherited from the runner.
pub fn isolate(cmd: &mut Command, home: &Path, state: &StateDir) {
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
        .env_remove("CLAUDE_MESH_IDLE_TIMEOUT")
        .env_remove("CLAUDE_MESH_CONNECTION_IDLE_TIMEOUT")
        .env_remove("CLAUDE_MESH_MAX_CONNECTIONS")
        .env_remove("CLAUDE_MESH_MAX_CONNECTIONS_PER_PROCESS");
}

/// A registered stand-in session; its process is killed on drop.
#[derive(Debug)]
pub struct Session {
    /// The stand-in process (`sleep 3600` in the project directory).
    pub child: Child,
    /// The registration, as the daemon answered it.
    pub info: SessionInfo,
    /// The caller identity of this session (its PID as `claude_pid`).
    pub caller: Caller,
}

impl Session {
    /// The stand-in process's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// End the session's process (and reap it, so its PID may be reused).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.kill();
    }
}
