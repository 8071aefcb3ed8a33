//! `mesh statusline`: the status-line badge, `[backend · 3 peers · ✉2]`.
//!
//! Claude Code runs the status-line command often (on every update of its UI), so this takes the
//! hook's fast path: dispatched before clap and logging, blocking socket, hard deadline. It reads
//! Claude Code's status-line JSON on stdin (only `session_id` is used; malformed input is treated
//! as absent, since `CLAUDE_PID` and the ancestor walk can still identify the session), connects
//! WITHOUT starting a daemon, asks `WhoAmI` and `List` (machine scope, live sessions) and prints
//! one line. Peers are the live sessions other than this one. The mail count is this session's
//! pending messages, shown only when there are any (`[backend · 1 peer]` otherwise: an
//! always-present `✉0` is noise in a line the user sees all day). When the oldest of them (the
//! next to be shown to the model) comes from a session on another machine, its address follows:
//! `[backend · 1 peer · ✉2 from api@laptop]` (one more request, a peek that takes nothing,
//! made only while mail is pending).
//!
//! It prints nothing at all, and exits 0, when the daemon is down or slow, when this is not a
//! registered session, or on any error: a status line is no place for error messages.

use std::ffi::OsStr;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Duration;

use mesh_client::caller::{CLAUDE_PID_ENV, caller_from_values};
use mesh_daemon::paths::StateDir;
use mesh_proto::{Class, Consume, List, Scope, SessionInfo, WhoAmI};

use crate::shim::deadline::{Alarm, Deadline};
use crate::shim::{connect, input};

/// Deadline of the whole call.
const DEADLINE: Duration = Duration::from_millis(1000);
/// Longest session name shown.
const MAX_NAME_CHARS: usize = 32;
/// Longest host name shown after a remote sender's name.
const MAX_HOST_CHARS: usize = 32;

/// Always exits 0 and prints nothing when anything is missing.
pub fn main() -> ExitCode {
    let deadline = Deadline::arm(DEADLINE, Alarm::Quiet);
    panic::set_hook(Box::new(|_| {}));
    if let Ok(Some(badge)) = panic::catch_unwind(AssertUnwindSafe(|| run(&deadline))) {
        deadline.disarm();
        let mut out = std::io::stdout().lock();
        let _ = out
            .write_all(badge.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
    }
    ExitCode::SUCCESS
}

fn run(deadline: &Deadline) -> Option<String> {
    let session_id = input::read_stdin(input::MAX_INPUT)
        .ok()
        .and_then(|bytes| input::parse(&bytes).ok())
        .and_then(|i| i.session_id);
    let caller = caller_from_values(
        std::env::var_os(CLAUDE_PID_ENV).as_deref(),
        session_id.as_deref().map(OsStr::new),
    );
    let state = StateDir::from_env().ok()?;
    let mut conn = connect(&state, deadline, false).ok()?;
    let me = conn
        .whoami(WhoAmI {
            caller: caller.clone(),
        })
        .ok()?
        .session?;
    conn.set_request_timeout(Some(deadline.remaining())).ok()?;
    let peers = conn
        .list(List {
            caller: caller.clone(),
            scope: Scope::Machine,
            include_offline: false,
        })
        .ok()?;
    let next_sender = if me.pending > 0 {
        conn.consume(Consume {
            caller,
            class: Class::All,
            peek: true,
            // At least one message always comes: the oldest.
            max_bytes: 1,
            handout: 0,
        })
        .ok()
        .and_then(|inbox| inbox.messages.into_iter().next())
        .map(|m| m.from.name)
    } else {
        None
    };
    Some(badge(&me, &peers.sessions, next_sender.as_deref()))
}

/// `[name · N peers · ✉M]`; the mail part only when M > 0, followed by `from name@host` when
/// the next message (`next_sender`) comes from another machine.
fn badge(me: &SessionInfo, sessions: &[SessionInfo], next_sender: Option<&str>) -> String {
    let peers = sessions
        .iter()
        .filter(|s| s.live && s.key != me.key)
        .count();
    let name = mesh_proto::sanitize::terminal_cut(&me.name, MAX_NAME_CHARS);
    let mut out = format!(
        "[{name} · {peers} peer{}",
        if peers == 1 { "" } else { "s" }
    );
    if me.pending > 0 {
        out.push_str(&format!(" · ✉{}", me.pending));
        // Local session names never contain `@`; `user@host` is the user on another machine.
        if let Some((name, host)) = next_sender.and_then(|n| n.rsplit_once('@')) {
            out.push_str(&format!(
                " from {}@{}",
                mesh_proto::sanitize::terminal_cut(name, MAX_NAME_CHARS),
                mesh_proto::sanitize::terminal_cut(host, MAX_HOST_CHARS)
            ));
        }
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(key: u64, name: &str, live: bool, pending: u32) -> SessionInfo {
        SessionInfo {
            key,
            session_id: format!("id-{key}"),
            name: name.into(),
            pid: 1,
            cwd: "/".into(),
            project_root: None,
            git_root: None,
            transcript_path: None,
            summary: String::new(),
            idle: false,
            live,
            registered_ms: 0,
            last_active_ms: 0,
            pending,
        }
    }

    #[test]
    fn badge_counts_other_live_sessions_and_shows_mail_only_when_some() {
        let me = session(1, "backend", true, 2);
        let all = [
            me.clone(),
            session(2, "frontend", true, 0),
            session(3, "docs", true, 0),
            session(4, "old", false, 0),
        ];
        assert_eq!(badge(&me, &all, None), "[backend · 2 peers · ✉2]");
        let quiet = session(1, "backend", true, 0);
        assert_eq!(badge(&quiet, &all[..2], None), "[backend · 1 peer]");
        assert_eq!(badge(&quiet, &all[..1], None), "[backend · 0 peers]");
    }

    #[test]
    fn mail_from_another_machine_names_its_sender_with_the_host() {
        let me = session(1, "backend", true, 2);
        assert_eq!(
            badge(&me, &[], Some("api@laptop")),
            "[backend · 0 peers · ✉2 from api@laptop]"
        );
        // A local sender or the local user: the badge as always.
        assert_eq!(badge(&me, &[], Some("api")), "[backend · 0 peers · ✉2]");
        assert_eq!(badge(&me, &[], Some("user")), "[backend · 0 peers · ✉2]");
        // No mail: no sender, whatever is passed.
        let quiet = session(1, "backend", true, 0);
        assert_eq!(
            badge(&quiet, &[], Some("api@laptop")),
            "[backend · 0 peers]"
        );
        // Another machine's names are cut and shown visibly.
        let far = format!("{}@{}\u{1b}[2J{}", "n".repeat(40), "h", "o".repeat(40));
        assert_eq!(
            badge(&me, &[], Some(&far)),
            format!(
                "[backend · 0 peers · ✉2 from {}…@h␛[2J{}…]",
                "n".repeat(32),
                "o".repeat(27)
            )
        );
    }

    #[test]
    fn hostile_names_cannot_drive_the_terminal() {
        let me = session(1, "\u{1b}]0;pwned\u{7}evil\u{1b}[2J\nna\u{202e}me", true, 0);
        assert_eq!(
            badge(&me, &[], None),
            "[␛]0;pwned␇evil␛[2J␤na<U+202E>me · 0 peers]"
        );
        let long = session(1, &"x".repeat(100), true, 0);
        assert_eq!(
            badge(&long, &[], None),
            format!("[{}… · 0 peers]", "x".repeat(32))
        );
    }
}
