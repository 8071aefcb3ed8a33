//! `mesh ask <peer> <question…> [--timeout SECS]`: ask and block until the answer arrives;
//! prints it. Exit 3 when it times out, 5 when the peer ends before answering, 130 when
//! interrupted (Ctrl-C, SIGTERM); each time it says what became of the question.
//!
//! The wait is the MCP server's `ask_peer` wait ([`crate::link::ask`]): the question is
//! queued first (its id comes back at once), then awaited; when the daemon restarts or dies
//! meanwhile, the wait reconnects (starting a daemon if needed) and goes on for the same
//! question, never asking it again.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use mesh::json::AskJson;
use mesh_client::{CallerFromEnv, format_message_id};
use mesh_daemon::paths::StateDir;
use mesh_proto::{AskResult, Caller, Message, MessageStatus, Status};

use super::exit::{Class, Failure};
use super::progress::waiting;
use super::{JsonFlag, body_from, emit, emit_json};
use crate::link::{self, AskEnd, AskPlan, AskSwitch, Daemon};

/// The write end of the pipe that wakes [`cancel_on_interrupt`]'s thread; -1 before it exists.
static WAKE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    let fd = WAKE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; one byte from a static buffer to our pipe.
        unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
    }
}

/// On the first SIGINT or SIGTERM, cancel the ask (its connection is shut down, so the daemon
/// sees the asker leave at once and withdraws an unseen question), instead of dying silently;
/// a second one kills as usual. Best effort: without the pipe, the signals keep their default.
fn cancel_on_interrupt(switch: Arc<AskSwitch>) {
    let mut fds = [-1; 2];
    // SAFETY: pipe(2) fills two ints; fcntl on the fds it returned.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return;
        }
        // Not inherited by a daemon this ask starts.
        for fd in fds {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    WAKE.store(fds[1], Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name("mesh-ask-signal".into())
        .spawn(move || {
            let mut byte = 0u8;
            // SAFETY: read(2) of one byte into a local.
            let n = unsafe { libc::read(fds[0], (&raw mut byte).cast(), 1) };
            if n == 1 {
                for sig in [libc::SIGINT, libc::SIGTERM] {
                    // SAFETY: restoring the default disposition has no preconditions.
                    unsafe { libc::signal(sig, libc::SIG_DFL) };
                }
                switch.cancel();
            }
        });
    if spawned.is_err() {
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only loads an atomic and calls write(2), both async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// What became of question `id` once its asker was interrupted: the daemon withdraws it if
/// the peer has not seen it, a moment after it sees the connection close.
fn after_interrupt(id: u64) -> String {
    let Ok(mut conn) = super::connect() else {
        return format!(
            "`mesh message {}` shows what became of the question",
            format_message_id(id)
        );
    };
    let end = Instant::now() + Duration::from_secs(1);
    loop {
        match conn.message_status(MessageStatus { message_id: id }) {
            Ok(q) if q.status != Status::Queued || Instant::now() >= end => return gave_up(&q),
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => {
                return format!(
                    "`mesh message {}` shows what became of the question",
                    format_message_id(id)
                );
            }
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A session name or an id prefix (4+ characters)
    pub peer: String,
    /// The question, at most 256 KiB (words are joined by spaces; `-` reads it from stdin)
    #[arg(required = true)]
    pub question: Vec<String>,
    /// Seconds to wait for the answer
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=7 * 86_400))]
    pub timeout: u64,
    #[command(flatten)]
    pub out: JsonFlag,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let question = body_from(&args.question)?;
    let state = StateDir::from_env().context("cannot locate the mesh state directory")?;
    let daemon = Daemon::new(state, Caller::from_env());
    let plan = AskPlan {
        to: args.peer.clone(),
        question,
        deadline: Instant::now() + Duration::from_secs(args.timeout),
    };
    let switch = Arc::new(AskSwitch::default());
    cancel_on_interrupt(Arc::clone(&switch));
    let ended = {
        let _wait = waiting(format!(
            "waiting for {} to answer (Ctrl-C gives up)",
            args.peer
        ));
        link::ask(&daemon, plan, &switch)
    }
    .with_context(|| format!("cannot ask `{}`", args.peer))?;
    let outcome = match ended {
        AskEnd::Done(outcome) => outcome,
        AskEnd::Cancelled => {
            let note = match switch.question() {
                Some(id) => after_interrupt(id),
                None => format!(
                    "the question may or may not have been queued (`mesh list` shows {}'s pending count)",
                    args.peer
                ),
            };
            return Err(Failure::new(Class::Interrupted, format!("interrupted; {note}")).into());
        }
        AskEnd::LostWhileQueuing(e) => anyhow::bail!(
            "cannot ask `{}`: {e}; the daemon went away while the question was being queued, so \
             it may or may not have reached the peer (`mesh list` shows its pending count)",
            args.peer
        ),
    };
    let id = format_message_id(outcome.question.id);
    let peer = mesh_proto::sanitize::terminal_line(&outcome.question.to.name);
    match &outcome.result {
        AskResult::Answered(answer) => {
            if args.out.json {
                emit_json(&AskJson::from(outcome.as_ref()))?;
            } else {
                let mut body = answer.body.clone();
                if !body.ends_with('\n') {
                    body.push('\n');
                }
                emit(&body)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        // Failures of their own class (exit 3 and 5; `--json`: an error document).
        AskResult::TimedOut => Err(Failure::new(
            Class::Timeout,
            format!(
                "no answer from {peer} within {}s; {}",
                args.timeout,
                gave_up(&outcome.question)
            ),
        )
        .into()),
        AskResult::PeerGone => Err(Failure::new(
            Class::PeerGone,
            format!(
                "{peer} is not running (it ended before answering); question {id} stays \
                 queued for it (its next session receives it), and an answer would wait in your \
                 inbox (`mesh inbox`)"
            ),
        )
        .into()),
    }
}

/// What becomes of a question whose asker stopped waiting.
pub fn gave_up(question: &Message) -> String {
    let id = format_message_id(question.id);
    let peer = mesh_proto::sanitize::terminal_line(&question.to.name);
    match question.status {
        Status::Withdrawn => format!(
            "{peer} had not seen question {id}, so it is withdrawn: {peer} will not be shown it"
        ),
        Status::Answered => format!("question {id} was answered: `mesh message {id}`"),
        Status::Delivered => format!(
            "{peer} has seen question {id}: an answer may still come, and would wait in your \
             inbox (`mesh inbox`; `mesh message {id}` shows its status)"
        ),
        Status::Queued => format!(
            "question {id} stays queued for {peer}; an answer would wait in your inbox \
             (`mesh inbox`; `mesh message {id}` shows its status)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use mesh_proto::{Kind, Party};

    use super::*;

    #[test]
    fn what_became_of_a_question_shows_the_peer_name_safely() {
        let evil = "ev\u{1b}]0;pwned\u{7}il\r\n\u{9b}2J\u{202e}name";
        for status in [
            Status::Queued,
            Status::Delivered,
            Status::Withdrawn,
            Status::Answered,
        ] {
            let q = Message {
                id: 42,
                kind: Kind::Question,
                from: Party {
                    name: "user".into(),
                    session_id: None,
                },
                to: Party {
                    name: evil.into(),
                    session_id: Some("s".into()),
                },
                body: "?".into(),
                in_reply_to: None,
                status,
                created_ms: 0,
                delivered_ms: None,
                answered_ms: None,
            };
            let text = gave_up(&q);
            assert!(text.contains("m42"), "{text}");
            assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() || mesh_proto::sanitize::is_hidden(c)),
                "{status:?}: {text:?}"
            );
        }
    }
}
