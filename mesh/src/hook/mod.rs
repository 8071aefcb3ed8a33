//! `mesh hook <event>`: the Claude Code hook shim, one short-lived process per hook call.
//!
//! The events and their names are [`HookEvent`] (in the library, shared with install). Each
//! has its handler, dispatched in [`run`]:
//!
//! | event | does |
//! |---|---|
//! | [`HookEvent::SessionStart`] | registers the session (busy), injects all pending mail |
//! | [`HookEvent::UserPromptSubmit`] | marks the session busy, injects all pending mail |
//! | [`HookEvent::PostToolUse`] | injects urgent mail (tasks, questions, answers; notes wait) |
//! | [`HookEvent::Stop`] | urgent mail pending: hands it out and blocks the stop with it as the reason (loop-guarded, see [`stop`]); else marks the session idle |
//! | [`HookEvent::SessionEnd`] | deregisters the session id (a no-op if `/clear` already replaced it) |
//!
//! Rules (docs/claude-code.md, "Hook output"): stdout is exactly one JSON object, or nothing
//! when there is nothing to say; the process always exits 0 ("fail open"): any error is one
//! `mesh hook: …` line on stderr and an empty stdout. A hard deadline
//! ([`crate::shim::deadline`]) bounds the whole call even when the daemon hangs: 2 s, 1 s for
//! `session-end` (Claude Code gives all SessionEnd hooks together about 1.5 s;
//! [`HookEvent::deadline`]). A hook waits for an on-demand daemon to boot at most
//! [`MAX_BOOT_WAIT`](crate::shim::MAX_BOOT_WAIT) and never beyond its deadline.
//!
//! Identity: every request carries `Caller { claude_pid: $CLAUDE_PID, session_id: <stdin
//! session_id> }` (stdin's id is current; `$CLAUDE_CODE_SESSION_ID` is only a fallback, it may
//! be stale after `/clear`); the daemon also walks the hook's ancestors.
//!
//! A caller the daemon cannot place in a session acts as the *user*, and consuming then would
//! hand the human's own `mesh inbox` to the model. So mail is consumed only after the daemon
//! confirmed the session in the same connection: by `Register` (session-start), `SetIdle`
//! (user-prompt-submit; it refuses non-sessions), `WhoAmI` (stop), or in the same request by
//! `Poll` (post-tool-use: the daemon takes mail only for a session whose current id is the
//! hook's). When the
//! session is unknown (SessionStart failed, or the hooks were installed while it was running),
//! those hooks register it from their own input first: the session heals itself at its next
//! hook. Likewise post-tool-use and stop re-register a session the daemon knows under an older
//! id (a `/clear` whose SessionStart failed).
//!
//! Speed: no async runtime, no clap, no tracing subscriber; one blocking connection; one round
//! trip, pipelined with the handshake, for `post-tool-use` (a `Poll`, answered from a read when
//! there is no mail) and for `session-end`, two for the others.

mod render;
mod stop;

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use mesh_client::caller::{CLAUDE_PID_ENV, SESSION_ID_ENV, caller_from_values};
use mesh_client::{ClientError, Connection};
use mesh_daemon::naming;
use mesh_daemon::paths::StateDir;
use mesh_proto::{
    Caller, Class, Consume, Deregister, ErrorCode, GiveBack, Inbox, Poll, Register, RegisterNamed,
    SessionInfo, SetIdle, WhoAmI,
};
use serde::Serialize;

use mesh::hook_event::HookEvent;

use self::render::Frame;
use crate::shim::connect;
use crate::shim::deadline::{self, Alarm, Deadline};
use crate::shim::input::{self, HookInput};

/// Byte budget of one consume: bodies plus the daemon's per-message overhead. With framing and
/// neutralisation the injection stays well under Claude Code's 10,000 characters.
pub(crate) const CONSUME_BYTES: u32 = 6000;

/// What the hook prints.
#[derive(Debug)]
enum Output {
    /// `additionalContext` for the firing event.
    Context(String),
    /// Block the stop with this reason.
    Block(String),
}

#[derive(Serialize)]
struct ContextJson<'a> {
    #[serde(rename = "hookSpecificOutput")]
    specific: SpecificJson<'a>,
}

#[derive(Serialize)]
struct SpecificJson<'a> {
    #[serde(rename = "hookEventName")]
    event: &'a str,
    #[serde(rename = "additionalContext")]
    context: &'a str,
}

#[derive(Serialize)]
struct BlockJson<'a> {
    decision: &'a str,
    reason: &'a str,
}

/// Run the hook for the event named `arg`. Always exits 0 (hooks fail open): an unknown event
/// is one warning line and no output.
pub fn main(arg: &OsStr) -> ExitCode {
    let Some(event) = HookEvent::parse(arg) else {
        warn(&format!(
            "unknown hook event `{}` (expected {})",
            arg.to_string_lossy(),
            HookEvent::expected()
        ));
        return ExitCode::SUCCESS;
    };
    main_for(event)
}

/// `mesh hook` without an event: one line on stderr, exit 0 like every hook.
pub fn no_event() -> ExitCode {
    warn(&format!(
        "no hook event given (expected {}; `mesh hook --help` explains)",
        HookEvent::expected()
    ));
    ExitCode::SUCCESS
}

/// Run the hook for `event`. Always exits 0 (hooks fail open).
pub fn main_for(event: HookEvent) -> ExitCode {
    let deadline = Deadline::arm(event.deadline(), Alarm::Hook);
    // A panic must not become exit 101 and a backtrace: one line, exit 0, like any error.
    panic::set_hook(Box::new(|info| warn(&format!("internal error: {info}"))));
    match panic::catch_unwind(AssertUnwindSafe(|| run(event, &deadline))) {
        Ok(Ok(Some(mut taken))) => {
            // All daemon I/O is done: what was handed out must now reach stdout.
            deadline.disarm();
            if let Err(e) = print(event, &taken.out) {
                // Nobody will see it (Claude Code closed the pipe, the disk is full): the mail
                // goes back to the queue rather than counting as delivered.
                let back = taken.give_back();
                warn(&format!("cannot write the hook's output: {e}; {back}"));
            }
        }
        Ok(Ok(None)) | Err(_) => {}
        Ok(Err(e)) => warn(&crate::cmd::exit::chain_text(&e)),
    }
    ExitCode::SUCCESS
}

/// One line on stderr, prefixed `mesh hook: `; controls shown visibly
/// ([`mesh_proto::sanitize::terminal_line`]): the message may quote names and paths.
fn warn(msg: &str) {
    let line = mesh_proto::sanitize::terminal_line(msg);
    let _ = writeln!(std::io::stderr().lock(), "mesh hook: {line}");
}

fn print(event: HookEvent, out: &Output) -> anyhow::Result<()> {
    let mut json = match out {
        Output::Context(text) => serde_json::to_string(&ContextJson {
            specific: SpecificJson {
                event: event.claude_name(),
                context: text,
            },
        })?,
        Output::Block(reason) => serde_json::to_string(&BlockJson {
            decision: "block",
            reason,
        })?,
    };
    json.push('\n');
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(json.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// What a hook hands Claude Code, and where it came from: the hand-out its messages were taken
/// under, on the connection that took them, to give them back if they cannot be written.
struct Taken {
    out: Output,
    handout: Option<u64>,
    conn: Connection,
}

/// How long giving back a hand-out may take (after the hook's own deadline, which covered the
/// daemon's work; this is the rare path of an output that could not be written).
const GIVE_BACK_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

impl Taken {
    /// Put the messages of the hand-out back in the queue: what to say about them.
    fn give_back(&mut self) -> String {
        let Some(handout) = self.handout else {
            return "it had taken no mail".to_owned();
        };
        let done = self
            .conn
            .set_request_timeout(Some(GIVE_BACK_WITHIN))
            .and_then(|()| self.conn.give_back(GiveBack { handout }));
        match done {
            Ok(back) => format!(
                "the {} message(s) it had taken went back to the queue",
                back.messages
            ),
            Err(e) => format!("and the mail it had taken could not be put back: {e}"),
        }
    }
}

fn run(event: HookEvent, deadline: &Deadline) -> anyhow::Result<Option<Taken>> {
    let bytes = input::read_stdin(input::MAX_INPUT)?;
    let input = input::parse(&bytes)?;
    drop(bytes);
    if let Some(name) = &input.hook_event_name
        && name != event.claude_name()
    {
        // Its output would be dropped (hookEventName must match), and mail consumed for it lost.
        bail!(
            "`mesh hook {}` ran for a {name} event; fix the hooks in ~/.claude/settings.json \
             (or run `mesh install`)",
            event.arg()
        );
    }
    let session_id = input
        .session_id
        .clone()
        .or_else(|| non_empty_env(SESSION_ID_ENV));
    let caller = caller_from_values(
        std::env::var_os(CLAUDE_PID_ENV).as_deref(),
        session_id.as_deref().map(OsStr::new),
    );
    let state = StateDir::from_env().context("cannot locate the mesh state directory")?;
    let mut hook = Hook {
        event,
        input,
        caller,
        deadline,
        conn: connect(&state, deadline, event != HookEvent::SessionEnd)?,
        state,
        handout: None,
    };
    let out = match event {
        HookEvent::SessionStart => hook.session_start(),
        HookEvent::UserPromptSubmit => hook.user_prompt_submit(),
        HookEvent::PostToolUse => hook.post_tool_use(),
        HookEvent::Stop => hook.stop(),
        HookEvent::SessionEnd => hook.session_end(),
    }?;
    Ok(out.map(|out| Taken {
        out,
        handout: hook.handout,
        conn: hook.conn,
    }))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// One hook call in progress.
struct Hook<'a> {
    event: HookEvent,
    input: HookInput,
    caller: Caller,
    deadline: &'a Deadline,
    state: StateDir,
    conn: Connection,
    /// The token of the last hand-out that took mail.
    handout: Option<u64>,
}

impl Hook<'_> {
    /// Bound the next request by what is left of the deadline.
    fn budget(&mut self) -> Result<(), ClientError> {
        if self.deadline.expired() {
            return Err(ClientError::Timeout {
                waiting_for: "the daemon (the hook's deadline passed)".to_owned(),
                after: self.event.deadline(),
            });
        }
        self.conn
            .set_request_timeout(Some(self.deadline.remaining()))
    }

    fn session_start(&mut self) -> anyhow::Result<Option<Output>> {
        let me = self.register()?;
        if me.pending == 0 {
            return Ok(None);
        }
        self.inject(Class::All)
    }

    fn user_prompt_submit(&mut self) -> anyhow::Result<Option<Output>> {
        self.budget()?;
        let busy = SetIdle {
            caller: self.caller.clone(),
            idle: false,
        };
        match self.conn.set_idle(busy) {
            Ok(()) => {}
            // Registering also marks it busy.
            Err(e) if e.wire_code() == Some(ErrorCode::NotASession) => {
                self.register()?;
            }
            Err(e) => return Err(e).context("cannot mark the session busy"),
        }
        self.inject(Class::All)
    }

    /// One round trip in the common case: `Poll` confirms the session and takes its urgent
    /// mail together (the daemon answers from a read when there is none).
    fn post_tool_use(&mut self) -> anyhow::Result<Option<Output>> {
        let req = Poll {
            caller: self.caller.clone(),
            class: Class::Urgent,
            max_bytes: CONSUME_BYTES,
            handout: mesh_client::handout_token(),
        };
        let polled = self
            .retrying(req.handout, |conn| conn.poll(req.clone()))
            .context("cannot ask the daemon for this session's messages")?;
        if !polled.inbox.messages.is_empty() {
            self.handout = Some(req.handout);
        }
        if polled.session.as_ref().is_some_and(|s| self.is_current(s)) {
            return Ok(context(polled.inbox));
        }
        // Unknown, or known under an older id: heal the registration, then take the mail.
        if self.register()?.pending == 0 {
            return Ok(None);
        }
        self.inject(Class::Urgent)
    }

    fn stop(&mut self) -> anyhow::Result<Option<Output>> {
        let me = self.session()?;
        let cap = stop::cap_from(std::env::var_os(stop::CAP_ENV).as_deref());
        // Consume only when a block is allowed: then "anything handed out" is "block", so the
        // consume doubles as the peek and nothing is ever consumed without being shown.
        if me.pending > 0 && stop::may_block(self.input.stop_hook_active, cap) {
            let inbox = self.consume(Class::Urgent)?;
            if !inbox.messages.is_empty() {
                return Ok(Some(Output::Block(render::render(
                    &inbox.messages,
                    inbox.remaining,
                    Frame::Stop,
                    &render::mesh_command,
                ))));
            }
        }
        self.budget()?;
        self.conn
            .set_idle(SetIdle {
                caller: self.caller.clone(),
                idle: true,
            })
            .context("cannot mark the session idle")?;
        Ok(None)
    }

    fn session_end(&mut self) -> anyhow::Result<Option<Output>> {
        let Some(session_id) = self.caller.session_id.clone() else {
            bail!("no session_id in the hook's input");
        };
        self.budget()?;
        // Removes the registration only if its current id is still this one: a late SessionEnd
        // of an id that `/clear` already replaced leaves the new one alone.
        self.conn
            .deregister(Deregister { session_id })
            .context("cannot deregister the session")?;
        Ok(None)
    }

    /// This session as the daemon knows it, registering it first if it does not, or if it
    /// knows it under another session id (a `/clear` whose SessionStart hook failed: the
    /// process is the same, stdin's id is the current one).
    fn session(&mut self) -> anyhow::Result<SessionInfo> {
        self.budget()?;
        let me = self
            .conn
            .whoami(WhoAmI {
                caller: self.caller.clone(),
            })
            .context("cannot ask the daemon who this session is")?;
        match me.session {
            Some(s) if self.is_current(&s) => Ok(s),
            _ => self.register(),
        }
    }

    /// The daemon knows the session under the id of this hook's input (not an older one).
    fn is_current(&self, s: &SessionInfo) -> bool {
        self.caller
            .session_id
            .as_ref()
            .is_none_or(|id| *id == s.session_id)
    }

    /// Register (or re-register) the session from the hook's input.
    fn register(&mut self) -> anyhow::Result<SessionInfo> {
        let Some(session_id) = self.caller.session_id.clone() else {
            bail!("no session_id in the hook's input: cannot register the session");
        };
        let cwd = match self
            .input
            .cwd
            .clone()
            .filter(|c| Path::new(c).is_absolute())
        {
            Some(cwd) => cwd,
            None => std::env::current_dir()
                .context("no cwd in the hook's input")?
                .to_string_lossy()
                .into_owned(),
        };
        let project_dir = non_empty_env("CLAUDE_PROJECT_DIR");
        // Named here, in the session's own process, by the daemon's rules (trusted folders,
        // non-blocking opens, bounded reads): the daemon then touches no file of the folder,
        // and this costs a few file look-ups instead of a thread hand-off in the daemon. A
        // hung mount holds only this hook, within its deadline.
        let naming = naming::resolve(Path::new(&cwd), project_dir.as_deref().map(Path::new));
        let default_summary = naming::default_summary(Path::new(&cwd), &naming);
        let path = |p: Option<PathBuf>| p.map(|p| p.to_string_lossy().into_owned());
        self.budget()?;
        self.conn
            .register_named(RegisterNamed {
                register: Register {
                    session_id,
                    pid: self.caller.claude_pid,
                    cwd,
                    project_dir,
                    transcript_path: self.input.transcript_path.clone(),
                },
                name: naming.name,
                project_root: path(naming.project_root),
                git_root: path(naming.git_root),
                default_summary,
            })
            .context("cannot register the session")
    }

    fn consume(&mut self, class: Class) -> anyhow::Result<Inbox> {
        let req = Consume {
            caller: self.caller.clone(),
            class,
            peek: false,
            max_bytes: CONSUME_BYTES,
            handout: mesh_client::handout_token(),
        };
        let inbox = self
            .retrying(req.handout, |conn| conn.consume(req.clone()))
            .context("cannot fetch the session's messages")?;
        if !inbox.messages.is_empty() {
            self.handout = Some(req.handout);
        }
        Ok(inbox)
    }

    /// Send a retry-safe request (one carrying a hand-out token). When the connection breaks
    /// (the daemon died, perhaps after committing the hand-out), reconnect within the deadline
    /// (a restarted daemon, or one started on demand) and send it again: the daemon answers
    /// the same token with the same messages, so none is lost and none is shown twice.
    ///
    /// If the hook's alarm ends it before it printed what it took (the hook itself stalled: a
    /// suspended laptop, a starved CPU, while the answer waited in the socket), the alarm first
    /// sends a `GiveBack` of `handout` on the connection ([`deadline::last_words`]): the daemon
    /// then puts the mail back instead of counting it as shown.
    fn retrying<T>(
        &mut self,
        handout: u64,
        mut call: impl FnMut(&mut Connection) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        // A frame of a few bytes always encodes; were it not to, the alarm just says nothing.
        let mut give_back = Vec::new();
        let request = mesh_proto::Request::GiveBack(GiveBack { handout });
        let _ = mesh_proto::write_frame(&mut give_back, &request);
        loop {
            self.budget()?;
            deadline::last_words(self.conn.as_fd().as_raw_fd(), &give_back);
            match call(&mut self.conn) {
                Err(e) if e.is_connection_lost() && !self.deadline.expired() => {
                    // The old socket closes when a new connection replaces it: until the
                    // request goes again, the alarm has nothing to say on it.
                    deadline::forget_last_words();
                    match connect(&self.state, self.deadline, true) {
                        Ok(conn) => self.conn = conn,
                        Err(_) => return Err(e),
                    }
                }
                done => return done,
            }
        }
    }

    /// Consume `class` and render it as additional context (nothing when nothing is pending).
    fn inject(&mut self, class: Class) -> anyhow::Result<Option<Output>> {
        Ok(context(self.consume(class)?))
    }
}

/// Messages handed out, as additional context (nothing when there are none).
fn context(inbox: Inbox) -> Option<Output> {
    if inbox.messages.is_empty() {
        return None;
    }
    Some(Output::Context(render::render(
        &inbox.messages,
        inbox.remaining,
        Frame::Context,
        &render::mesh_command,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_exactly_one_json_object() {
        let ctx = serde_json::to_value(ContextJson {
            specific: SpecificJson {
                event: "PostToolUse",
                context: "a \"quoted\"\nline",
            },
        })
        .unwrap();
        assert_eq!(
            ctx,
            serde_json::json!({"hookSpecificOutput": {"hookEventName": "PostToolUse",
                "additionalContext": "a \"quoted\"\nline"}})
        );
        let block = serde_json::to_value(BlockJson {
            decision: "block",
            reason: "r",
        })
        .unwrap();
        assert_eq!(
            block,
            serde_json::json!({"decision": "block", "reason": "r"})
        );
    }
}
