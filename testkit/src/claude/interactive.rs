//! Running the real Claude Code binary *interactively* (no `-p`) in a pseudo-terminal
//! ([`crate::tty::Tty`]), against a scripted [`Model`] on 127.0.0.1, with no network.
//!
//! Facts, checked against Claude Code 2.1.330 and still holding on 2.1.332 (the
//! [`PINNED_VERSION`](super::PINNED_VERSION): the interactive end-to-end tests pass with it)
//! on Linux in a 40x120 pty with `TERM=xterm-256color`:
//!
//! **First-run dialogs.** With an empty HOME (no `~/.claude.json`), claude checks that it can
//! reach `api.anthropic.com` and, with no network, prints "Unable to connect to Anthropic
//! services" and exits 1. Three keys of `~/.claude.json` take it straight to its input prompt
//! ([`prepare_home`]):
//! - `hasCompletedOnboarding: true`: no onboarding (its first screen is the theme picker,
//!   "Choose the text style that looks best with your terminal"); a `theme` key is not needed
//!   (claude drops it from the file);
//! - `projects.<cwd>.hasTrustDialogAccepted: true`: no "Quick safety check: Is this a project
//!   you created or one you trust?" dialog (keyed by the working directory);
//! - `customApiKeyResponses.approved: [<last 20 characters of ANTHROPIC_API_KEY>]`: no "Detected
//!   a custom API key in your environment. Do you want to use this API key?" dialog (its
//!   default answer is No).
//!
//! Without them a dialog waits for a key; [`wait_ready`] recognizes those dialogs and fails at
//! once naming them. Not blocking: a notice "Auto mode is now Claude Code's default permission
//! mode" above the prompt (the footer says "auto mode on"; a `Bash` call of `echo` ran without
//! a permission prompt even without `--allowedTools`, which [`command`] passes anyway, as the
//! headless runs do). Interactive mode also tries to install the official plugin marketplace
//! (a fetch from downloads.claude.ai, then `git clone` from github.com), which fails fast with
//! no network; `CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL=1` turns that off.
//!
//! **Screen.** claude switches to the alternate screen (`ESC[?1049h`), turns on mouse tracking
//! (`?1000h ?1002h ?1003h ?1006h`), focus events (`?1004h`), `?2031h` and **bracketed paste
//! (`ESC[?2004h`)**, and asks the terminal for its identity (`ESC[>0q`, `ESC[?u`,
//! `ESC]7501;?BEL`, `ESC[c`; it does not need answers). It redraws only the cells that change,
//! separating words with cursor moves (`ESC[<n>G`) rather than spaces. On exit it leaves the
//! alternate screen and turns those modes off again; it prints nothing after.
//!
//! **Ready.** The empty input prompt is `❯` followed by a NO-BREAK SPACE ([`READY`]); dialogs
//! draw their `❯` selector with a plain cursor move instead, so the marker is specific to the
//! input box. It appears 0.6-0.7 s after start (up to 1.2 s with both cores busy). The
//! terminal is already in raw mode 30 ms after start, but input that arrives before the prompt
//! is drawn is read later as one chunk: the text lands in the input box and the Enter with it
//! does not submit. So type only once [`wait_ready`] returned.
//!
//! **Submitting a prompt.** claude treats a read of more than about 64 bytes that is not a
//! bracketed paste as a paste, and keys that arrive within about 100 ms after it as part of
//! it: a CR inside a paste is kept as an invisible character in the input (claude says
//! "Removed 1 invisible character from your prompt" when it is finally submitted), not Enter.
//! Measured: `text\r` in one write submits for text up to 62 bytes and not from 64 on; `text`,
//! a pause, then `\r` submits after a pause of 100 ms or more and not after 70 ms or less, for
//! a 300-byte text. Timing-free and length-free: the text as a bracketed paste
//! (`ESC[200~text ESC[201~`) followed by `\r`, even in the same write, always submitted (300-
//! and 20-byte texts, reaching the model whole, also with both cores busy). That is what
//! [`submit`] does.
//!
//! **Hooks and the model.** The user-level hooks (`~/.claude/settings.json`, as
//! [`write_hooks`](super::write_hooks) writes them) run as in headless mode: SessionStart
//! (source `startup`) at start, UserPromptSubmit and a turn request to the
//! model (a request with `tools`, taken from the script) per submitted prompt, Stop when the
//! turn ends, SessionEnd (reason `prompt_input_exit`) on `/exit`. With `mesh hook`, the session
//! is in `mesh list` from SessionStart on, idle after each Stop, and leaves the list on exit.
//! Claude Code logs a hook's line in its debug log when the hook finished, which can be after
//! the hook already told the daemon.
//!
//! **Exit.** `/exit` then Enter (one write is fine: it is short) exits within about 0.5 s with
//! status 0 (the slash-command menu that opens while typing does not get in the way). Ctrl-C
//! twice or Ctrl-D twice (the first shows "Press Ctrl-C again to exit") also exit with status
//! 0. [`exit`] does `/exit` and falls back to Ctrl-C twice.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::run::debug_excerpt;
use super::{Claude, Model};
use crate::tty::{self, Tty};

/// The input prompt, as drawn when claude waits for input: `❯` and a NO-BREAK SPACE.
pub const READY: &str = "❯\u{a0}";

/// The API key the harness gives Claude Code ([`Claude::command`] sets `ANTHROPIC_API_KEY` to
/// it); [`prepare_home`] approves it.
pub const API_KEY: &str = "sk-ant-scripted-test-key";

/// The pty size interactive sessions get.
pub const ROWS: u16 = 40;
pub const COLS: u16 = 120;

/// Dialogs that stop claude before its prompt, by a phrase they show (compared without
/// whitespace, as the words are spaced out with cursor moves), with what skips them.
const DIALOGS: [(&str, &str); 4] = [
    (
        "Unable to connect to Anthropic services",
        "the connectivity check: hasCompletedOnboarding in ~/.claude.json",
    ),
    (
        "Is this a project you created or one you trust",
        "the trust dialog: projects.<cwd>.hasTrustDialogAccepted in ~/.claude.json",
    ),
    (
        "Do you want to use this API key",
        "the API key dialog: customApiKeyResponses.approved in ~/.claude.json",
    ),
    (
        "Choose the text style",
        "onboarding: hasCompletedOnboarding in ~/.claude.json",
    ),
];

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The first known first-run dialog shown in `text`, with what skips it.
pub fn dialog_in(text: &str) -> Option<(&'static str, &'static str)> {
    let text = squeeze(text);
    DIALOGS
        .iter()
        .find(|(phrase, _)| text.contains(&squeeze(phrase)))
        .copied()
}

/// Write into `home`'s `~/.claude.json` (keeping everything else in it) what makes claude
/// started in `cwd` go straight to its input prompt: onboarding done, `cwd` trusted (also its
/// canonical path), [`API_KEY`] approved.
pub fn prepare_home(home: &Path, cwd: &Path) {
    let path = home.join(".claude.json");
    let mut state: Map<String, Value> = fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    state.insert("hasCompletedOnboarding".into(), json!(true));
    let projects = state
        .entry("projects")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("projects is an object");
    let mut dirs = vec![cwd.to_path_buf()];
    if let Ok(real) = cwd.canonicalize()
        && real != cwd
    {
        dirs.push(real);
    }
    for dir in dirs {
        let entry = projects
            .entry(dir.to_string_lossy().into_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a project entry is an object");
        entry.insert("hasTrustDialogAccepted".into(), json!(true));
    }
    let suffix = &API_KEY[API_KEY.len().saturating_sub(20)..];
    let responses = state
        .entry("customApiKeyResponses")
        .or_insert_with(|| json!({"approved": [], "rejected": []}))
        .as_object_mut()
        .expect("customApiKeyResponses is an object");
    let approved = responses
        .entry("approved")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("approved is an array");
    if !approved.iter().any(|k| k == suffix) {
        approved.push(json!(suffix));
    }
    fs::create_dir_all(home).unwrap();
    let tmp = path.with_extension("tmp-write");
    fs::write(
        &tmp,
        serde_json::to_string_pretty(&Value::Object(state)).unwrap(),
    )
    .unwrap();
    fs::rename(&tmp, &path).unwrap();
}

/// `claude --allowedTools <…> --debug-file <debug_log>` in `cwd`, for [`Tty::spawn`]: the
/// environment of the headless runs ([`Claude::command`]: temp HOME, `ANTHROPIC_BASE_URL` of
/// `model`, no nonessential traffic, …) plus `TERM=xterm-256color` and no marketplace
/// auto-install.
pub fn command(claude: &Claude, model: &Model, cwd: &Path, debug_log: &Path) -> tty::Command {
    command_via(claude, model, cwd, debug_log, None)
}

/// [`command`], run as `mesh run <claude args>` (`mesh` names claude in
/// `CLAUDE_MESH_CLAUDE_BIN`).
pub fn supervised_command(
    claude: &Claude,
    model: &Model,
    cwd: &Path,
    debug_log: &Path,
    mesh: &Path,
) -> tty::Command {
    command_via(claude, model, cwd, debug_log, Some(mesh))
}

fn command_via(
    claude: &Claude,
    model: &Model,
    cwd: &Path,
    debug_log: &Path,
    mesh: Option<&Path>,
) -> tty::Command {
    // The same environment as the headless command, read back from it.
    let headless = claude.command(model, cwd, "", debug_log);
    let start = match mesh {
        Some(mesh) => tty::Command::new(mesh).arg("run"),
        None => tty::Command::new(&claude.bin),
    };
    let supervised = mesh.is_some();
    let mut cmd = start
        .arg("--allowedTools")
        .arg(&claude.allowed_tools)
        .arg("--debug-file")
        .arg(debug_log)
        .current_dir(cwd)
        .env_clear();
    let mut key = None;
    for (k, v) in headless.get_envs() {
        if let Some(v) = v {
            if k == "ANTHROPIC_API_KEY" {
                key = Some(v.to_owned());
            }
            cmd = cmd.env(k, v);
        }
    }
    assert_eq!(
        key.as_deref().and_then(|k| k.to_str()),
        Some(API_KEY),
        "interactive::API_KEY must be the key Claude::command sets (prepare_home approves it)"
    );
    if supervised {
        cmd = cmd.env("CLAUDE_MESH_CLAUDE_BIN", &claude.bin);
    }
    cmd.env("TERM", "xterm-256color")
        .env("CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL", "1")
}

/// Wait until claude shows its empty input prompt ([`READY`]). Fails at once, naming it and
/// what skips it, when a first-run dialog shows instead; fails when claude exits.
pub fn wait_ready(tty: &Tty, timeout: Duration) -> Result<(), String> {
    let mut dialog = None;
    tty.wait_until(
        "claude's input prompt (❯ and a NO-BREAK SPACE)",
        timeout,
        |t| {
            let text = t.text();
            dialog = dialog_in(&text);
            dialog.is_some() || text.contains(READY)
        },
    )?;
    match dialog {
        Some((phrase, fix)) => Err(format!(
            "claude shows a first-run dialog ({phrase:?}) instead of its prompt; skip {fix}\n{}",
            tty.describe()
        )),
        None => Ok(()),
    }
}

/// Type `text` into claude's input box and press Enter: the text as a bracketed paste, then
/// CR, in one write (see the module documentation for why). ESC characters in `text` are
/// dropped; newlines stay in the prompt.
pub fn submit(tty: &Tty, text: &str) {
    let mut bytes = tty::bracketed_paste(text);
    bytes.extend_from_slice(tty::ENTER);
    tty.write(&bytes);
}

/// Exit claude: `/exit` and Enter, then, if it still runs after half of `timeout`, Ctrl-C
/// twice. Returns its exit status, or `None` if it still runs at `timeout`.
pub fn exit(tty: &Tty, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    tty.write(b"/exit\r");
    if let Some(status) = tty.wait_exit(timeout / 2) {
        return Some(status);
    }
    let mark = tty.mark();
    tty.write(tty::CTRL_C);
    // The first Ctrl-C shows "Press Ctrl-C again to exit"; the second exits. Sent once that
    // shows, or after 2 s without it.
    let _ = tty.wait_for_since(mark, "again to exit", Duration::from_secs(2));
    tty.write(tty::CTRL_C);
    tty.wait_exit(end.saturating_duration_since(Instant::now()))
}

/// An interactive Claude Code session in a pty, with its debug log.
#[derive(Debug)]
pub struct Session {
    pub label: String,
    pub tty: Tty,
    pub debug_log: PathBuf,
}

impl Session {
    /// [`prepare_home`] for `cwd`, then start claude in `cwd` against `model` in a
    /// [`ROWS`]x[`COLS`] pty. `label` names its debug log (`<home>/claude-logs/<label>.debug.log`).
    pub fn start(claude: &Claude, label: &str, model: &Model, cwd: &Path) -> Self {
        Self::start_via(claude, label, model, cwd, None)
    }

    /// [`Session::start`], under `mesh run` ([`supervised_command`]).
    pub fn start_supervised(
        claude: &Claude,
        label: &str,
        model: &Model,
        cwd: &Path,
        mesh: &Path,
    ) -> Self {
        Self::start_via(claude, label, model, cwd, Some(mesh))
    }

    fn start_via(
        claude: &Claude,
        label: &str,
        model: &Model,
        cwd: &Path,
        mesh: Option<&Path>,
    ) -> Self {
        let logs = claude.home.join("claude-logs");
        fs::create_dir_all(&logs).unwrap();
        fs::create_dir_all(claude.home.join("tmp")).unwrap();
        prepare_home(&claude.home, cwd);
        let debug_log = logs.join(format!("{label}.debug.log"));
        let cmd = match mesh {
            Some(mesh) => supervised_command(claude, model, cwd, &debug_log, mesh),
            None => command(claude, model, cwd, &debug_log),
        };
        let tty = Tty::spawn(cmd, ROWS, COLS);
        Self {
            label: label.to_owned(),
            tty,
            debug_log,
        }
    }

    /// [`wait_ready`].
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        wait_ready(&self.tty, timeout)
    }

    /// [`submit`].
    pub fn submit(&self, text: &str) {
        submit(&self.tty, text);
    }

    /// [`exit`].
    pub fn exit(&self, timeout: Duration) -> Option<ExitStatus> {
        exit(&self.tty, timeout)
    }

    /// The screen, the output's tail and the hook / MCP / error lines of the debug log.
    pub fn describe(&self) -> String {
        format!(
            "interactive claude {}: {}\n{}",
            self.label,
            self.tty.describe(),
            debug_excerpt(&self.debug_log)
        )
    }
}
