//! Harness for end-to-end tests against the real Claude Code binary, run headless (`-p`) against
//! a scripted model on 127.0.0.1 ([`model`]), with the configuration `mesh install` writes
//! ([`config`]) in the test's temp HOME, and a real `mesh daemon` ([`Mesh`](crate::Mesh)).
//!
//! The binary: `$CLAUDE_MESH_TEST_CLAUDE_BIN`, else `.ci/node/node_modules/.bin/claude` in the
//! workspace (installed by `.ci/run`, pinned to [`PINNED_VERSION`]; see [`default_bins`]). When
//! it is absent a test fails under CI (`CI` set) and prints `SKIPPED` otherwise.

pub mod config;
pub mod interactive;
pub mod model;
pub mod run;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

pub use config::{HookCommands, sh_quote, write_hooks, write_mcp_server, write_mesh_config};
pub use model::{Model, Request, Turn};
pub use run::Claude;

/// The Claude Code version `.ci/run` installs; the facts in `shared/CLAUDE_CODE.md` were
/// checked against it.
pub const PINNED_VERSION: &str = "2.1.332";

/// The environment variable that names the `claude` binary to test with.
pub const BIN_ENV: &str = "CLAUDE_MESH_TEST_CLAUDE_BIN";

/// The MCP server's name, as the model sees it (`mcp__claude-mesh__<tool>`).
pub const MCP_PREFIX: &str = "mcp__claude-mesh__";

/// The workspace root (the parent of this crate, `testkit/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ has a parent")
        .to_path_buf()
}

/// Where `.ci/run` installs to: `.bin/claude` (the native binary, put there by the package's
/// postinstall), then the platform package's own binary (for an install without scripts).
pub fn default_bins() -> Vec<PathBuf> {
    let modules = workspace_root().join(".ci/node/node_modules");
    let mut bins = vec![modules.join(".bin/claude")];
    if let Ok(dir) = std::fs::read_dir(modules.join("@anthropic-ai")) {
        let mut platform: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("claude-code-"))
            .map(|e| e.path().join("claude"))
            .filter(|p| p.exists())
            .collect();
        platform.sort();
        bins.extend(platform);
    }
    bins
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// `<bin> --version`, if it runs.
fn version_of(bin: &Path) -> Result<String, String> {
    let out = Command::new(bin)
        .arg("--version")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(version)
    } else {
        Err(format!(
            "{} --version failed ({}): {version}{}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The Claude Code binary, or `None` (after printing SKIPPED) when it is not installed and this
/// is not CI. Under CI a missing binary fails the test.
pub fn claude_bin(test: &str) -> Option<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let candidates = match std::env::var_os(BIN_ENV) {
            Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
            _ => default_bins(),
        };
        let mut why = Vec::new();
        for bin in &candidates {
            if !bin.exists() {
                why.push(format!("{} does not exist", bin.display()));
                continue;
            }
            match version_of(bin) {
                Ok(version) => {
                    if !version.starts_with(PINNED_VERSION) {
                        eprintln!(
                            "warning: testing with Claude Code {version}, not the pinned \
                             {PINNED_VERSION}"
                        );
                    }
                    return Ok(bin.clone());
                }
                Err(e) => why.push(e),
            }
        }
        Err(format!(
            "no runnable Claude Code ({}); run .ci/run once (it installs \
             @anthropic-ai/claude-code@{PINNED_VERSION} into .ci/node) or set {BIN_ENV}",
            why.join("; ")
        ))
    });
    match found {
        Ok(path) => Some(path.clone()),
        Err(why) if in_ci() => panic!("{why}"),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// Claude Code runs are serialized within this test binary: a run takes ~0.5 s of CPU at
/// start, the machine has 2 cores, and the tests wait on timing-sensitive hand-offs.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Find message ids (`m<digits>` as the CLI prints them, or `#<digits>`) in `text`.
pub fn message_ids(text: &str) -> Vec<u64> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary_before =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if (bytes[i] == b'm' && boundary_before) || bytes[i] == b'#' {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            let boundary_after =
                end == bytes.len() || !(bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_');
            if end > start
                && boundary_after
                && let Ok(id) = text[start..end].parse()
            {
                out.push(id);
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}
