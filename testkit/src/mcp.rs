//! An MCP client for `mesh mcp`: the real binary driven over pipes with newline-delimited
//! JSON-RPC (the stdio transport Claude Code uses), reading its stdout on a thread.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Mesh;

/// How long any single response may take ([`Mcp::request`], [`Mcp::call`]).
pub const REPLY_WITHIN: Duration = Duration::from_secs(15);

/// A running `mesh mcp` and the messages it wrote.
#[derive(Debug)]
pub struct Mcp {
    /// The `mesh mcp` process.
    pub child: Child,
    /// `None` once closed (the client went away).
    pub stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<Value>,
    /// Notifications (and stray responses) seen while waiting for something else.
    pub seen: Vec<Value>,
    next_id: u64,
    stderr_path: std::path::PathBuf,
}

impl Mcp {
    /// Start `mesh mcp` in `mesh`'s HOME (not initialized yet).
    pub fn spawn(mesh: &Mesh) -> Self {
        Self::spawn_with(mesh, &[])
    }

    /// [`Mcp::spawn`] with extra environment for the server.
    pub fn spawn_with(mesh: &Mesh, env: &[(&str, &str)]) -> Self {
        let stderr_path = mesh
            .home
            .path()
            .join(format!("mcp-{}.stderr", rand_suffix()));
        let mut cmd = mesh.mesh();
        cmd.arg("mcp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout is not JSON-RPC ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin: Some(stdin),
            rx,
            seen: Vec::new(),
            next_id: 100,
            stderr_path,
        }
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Send one JSON-RPC message (a line).
    pub fn write(&mut self, msg: &Value) {
        let mut line = serde_json::to_string(msg).unwrap();
        line.push('\n');
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// A fresh request id.
    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Wait for the response to request `id`; everything else read meanwhile goes to `seen`.
    pub fn response(&mut self, id: &Value, within: Duration) -> Value {
        let end = Instant::now() + within;
        if let Some(i) = self.seen.iter().position(|m| m.get("id") == Some(id)) {
            return self.seen.remove(i);
        }
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) if m.get("id") == Some(id) && m.get("method").is_none() => return m,
                Ok(m) => self.seen.push(m),
                Err(e) => panic!(
                    "no response to {id} within {within:?} ({e}); seen {:?}; stderr: {}",
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Read into `seen` until `cond(&seen)` holds; panic with `what` after `within`.
    pub fn wait_seen(&mut self, what: &str, within: Duration, cond: impl Fn(&[Value]) -> bool) {
        let end = Instant::now() + within;
        while !cond(&self.seen) {
            match self
                .rx
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                Ok(m) => self.seen.push(m),
                Err(e) => panic!(
                    "no {what} within {within:?} ({e}); seen {:?}; stderr: {}",
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Read for `dur`, collecting whatever arrives into `seen` (to show that something does
    /// NOT arrive; to wait for something, use [`Mcp::wait_seen`]).
    pub fn drain_for(&mut self, dur: Duration) {
        let end = Instant::now() + dur;
        while let Ok(m) = self
            .rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.seen.push(m);
        }
    }

    /// Send request `method` and wait ([`REPLY_WITHIN`]) for its response.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = json!(self.id());
        self.write(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.response(&id, REPLY_WITHIN)
    }

    /// The MCP handshake with protocol `version`: `initialize`, then `notifications/initialized`.
    pub fn initialize(&mut self, version: &str) -> Value {
        let resp = self.request(
            "initialize",
            json!({
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "mesh-test", "version": "0"},
            }),
        );
        self.write(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        resp
    }

    /// A server, spawned and initialized (protocol 2025-11-25).
    pub fn started(mesh: &Mesh) -> Self {
        let mut mcp = Self::spawn(mesh);
        mcp.initialize("2025-11-25");
        mcp
    }

    /// Start a `tools/call` without waiting; returns its id.
    pub fn start_call(&mut self, tool: &str, args: Value, meta: Option<Value>) -> Value {
        let id = json!(self.id());
        let mut params = json!({"name": tool, "arguments": args});
        if let Some(meta) = meta {
            params["_meta"] = meta;
        }
        self.write(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}));
        id
    }

    /// `(isError, text)` of a tool result.
    pub fn finish_call(&mut self, id: &Value, within: Duration) -> (bool, String) {
        let resp = self.response(id, within);
        let result = resp
            .get("result")
            .unwrap_or_else(|| panic!("tools/call failed at the protocol level: {resp}"));
        let text = result["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        (result["isError"] == json!(true), text)
    }

    /// Call `tool` and wait for its result: `(isError, text)`.
    pub fn call_raw(&mut self, tool: &str, args: Value) -> (bool, String) {
        let id = self.start_call(tool, args, None);
        self.finish_call(&id, REPLY_WITHIN)
    }

    /// A successful call's JSON document.
    pub fn call(&mut self, tool: &str, args: Value) -> Value {
        let (is_error, text) = self.call_raw(tool, args.clone());
        assert!(!is_error, "{tool}({args}) failed: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{tool}: not JSON ({e}): {text}"))
    }

    /// A failing call's error text.
    pub fn call_err(&mut self, tool: &str, args: Value) -> String {
        let (is_error, text) = self.call_raw(tool, args.clone());
        assert!(is_error, "{tool}({args}) should fail, got {text}");
        text
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
