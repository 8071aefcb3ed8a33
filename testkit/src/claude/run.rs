//! Running the real Claude Code binary headless: `claude -p <prompt> --output-format json`, with
//! an isolated environment that points it at a scripted [`Model`].

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::model::{Model, truncate};

/// Tools a scripted session may use without a permission prompt (`-p` refuses the others).
pub const ALLOWED_TOOLS: &str = "mcp__claude-mesh__*,Bash,ToolSearch";

/// How to run Claude Code for one test: the binary and the HOME / mesh state it runs in.
#[derive(Debug, Clone)]
pub struct Claude {
    pub bin: PathBuf,
    pub home: PathBuf,
    /// `CLAUDE_MESH_HOME`, passed to Claude Code (which passes it to hooks and MCP servers).
    pub mesh_home: PathBuf,
    pub allowed_tools: String,
    pub env: Vec<(String, String)>,
}

impl Claude {
    pub fn new(bin: PathBuf, home: &Path, mesh_home: &Path) -> Self {
        Self {
            bin,
            home: home.to_path_buf(),
            mesh_home: mesh_home.to_path_buf(),
            allowed_tools: ALLOWED_TOOLS.to_owned(),
            env: Vec::new(),
        }
    }

    /// Add an environment variable for the Claude Code process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The command, without spawning it: `claude -p <prompt> --output-format json …` in `cwd`.
    pub fn command(&self, model: &Model, cwd: &Path, prompt: &str, debug_log: &Path) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-p")
            .arg(prompt)
            .args(["--output-format", "json"])
            .arg("--allowedTools")
            .arg(&self.allowed_tools)
            .arg("--debug-file")
            .arg(debug_log)
            .current_dir(cwd)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("CLAUDE_MESH_HOME", &self.mesh_home)
            .env("LANG", "C.UTF-8")
            // Claude Code's scratch files (notes, sockets) go with the temp HOME.
            .env("TMPDIR", self.home.join("tmp"))
            .env("ANTHROPIC_API_KEY", "sk-ant-scripted-test-key")
            .env("ANTHROPIC_BASE_URL", model.base_url())
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a test can kill it with everything it started.
            .process_group(0);
        for key in ["CLAUDE_MESH_LOG", "RUST_BACKTRACE"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Start `claude -p <prompt>` in `cwd` against `model`. `label` names its logs.
    pub fn start(&self, label: &str, model: &Model, cwd: &Path, prompt: &str) -> ClaudeRun {
        let logs = self.home.join("claude-logs");
        fs::create_dir_all(&logs).unwrap();
        fs::create_dir_all(self.home.join("tmp")).unwrap();
        let debug_log = logs.join(format!("{label}.debug.log"));
        let mut child = self
            .command(model, cwd, prompt, &debug_log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        ClaudeRun {
            label: label.to_owned(),
            pid: child.id(),
            child: Some(child),
            stdout: Some(stdout),
            stderr: Some(stderr),
            debug_log,
            started: Instant::now(),
        }
    }

    /// Run to completion (at most `timeout`).
    pub fn run(
        &self,
        label: &str,
        model: &Model,
        cwd: &Path,
        prompt: &str,
        timeout: Duration,
    ) -> Outcome {
        self.start(label, model, cwd, prompt).wait(timeout)
    }
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// A running Claude Code process. Dropping it kills its process group.
#[derive(Debug)]
pub struct ClaudeRun {
    pub label: String,
    pid: u32,
    child: Option<Child>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    pub debug_log: PathBuf,
    started: Instant,
}

impl ClaudeRun {
    /// The Claude Code process (`.bin/claude` is a symlink to the native binary, so this is
    /// the process hooks see as `CLAUDE_PID`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Wait for it to exit; after `timeout` kill it and panic with what it printed.
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let mut child = self.child.take().unwrap();
        let left = (self.started + timeout).saturating_duration_since(Instant::now());
        let status = crate::wait_exit(&mut child, left);
        if status.is_none() {
            kill_group(self.pid);
            let _ = child.wait();
        }
        let stdout =
            String::from_utf8_lossy(&self.stdout.take().unwrap().join().unwrap()).into_owned();
        let stderr =
            String::from_utf8_lossy(&self.stderr.take().unwrap().join().unwrap()).into_owned();
        let json = serde_json::from_str(stdout.trim()).ok();
        let outcome = Outcome {
            label: self.label.clone(),
            pid: self.pid,
            status,
            stdout,
            stderr,
            json,
            debug_log: self.debug_log.clone(),
            elapsed: self.started.elapsed(),
        };
        assert!(
            outcome.status.is_some(),
            "claude {} still running after {timeout:?}; killed\n{}",
            self.label,
            outcome.describe()
        );
        outcome
    }
}

impl Drop for ClaudeRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && child.try_wait().ok().flatten().is_none()
        {
            kill_group(self.pid);
            let _ = child.wait();
        }
    }
}

fn kill_group(pid: u32) {
    // SAFETY: kill(2) on the process group of a child we started with process_group(0).
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
}

/// How a Claude Code run ended.
#[derive(Debug)]
pub struct Outcome {
    pub label: String,
    pub pid: u32,
    /// `None` when it was killed at the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// stdout parsed (`--output-format json` prints one result object).
    pub json: Option<Value>,
    pub debug_log: PathBuf,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
            && self
                .json
                .as_ref()
                .is_some_and(|j| j["is_error"] == false && j["subtype"] == "success")
    }

    /// The final text (`result`).
    pub fn result(&self) -> &str {
        self.json
            .as_ref()
            .and_then(|j| j["result"].as_str())
            .unwrap_or("")
    }

    pub fn session_id(&self) -> &str {
        self.json
            .as_ref()
            .and_then(|j| j["session_id"].as_str())
            .unwrap_or("")
    }

    pub fn num_turns(&self) -> u64 {
        self.json
            .as_ref()
            .and_then(|j| j["num_turns"].as_u64())
            .unwrap_or(0)
    }

    /// Panic with the details unless the run succeeded.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.success(),
            "claude {} did not succeed\n{}",
            self.label,
            self.describe()
        );
        self
    }

    /// Exit status, output, and the hook / MCP lines of Claude Code's debug log.
    pub fn describe(&self) -> String {
        format!(
            "claude {} (pid {}) exited {:?} after {:?}\nstdout: {}\nstderr: {}\n{}",
            self.label,
            self.pid,
            self.status,
            self.elapsed,
            truncate(self.stdout.trim(), 2000),
            truncate(self.stderr.trim(), 2000),
            debug_excerpt(&self.debug_log)
        )
    }
}

/// The lines of a Claude Code debug log about hooks, MCP and errors (the last 60).
pub fn debug_excerpt(path: &Path) -> String {
    let Ok(log) = fs::read_to_string(path) else {
        return format!("(no debug log at {})", path.display());
    };
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            (l.contains("Hook") || l.contains("MCP") || l.contains("ERROR") || l.contains("rror"))
                && !l.contains("hooks module cc-plugin")
        })
        .collect();
    let skip = lines.len().saturating_sub(60);
    let mut s = format!("debug log {} (hook/MCP/error lines):\n", path.display());
    for l in &lines[skip..] {
        s.push_str("  ");
        s.push_str(&truncate(l, 400));
        s.push('\n');
    }
    s
}
