//! `mesh ask <peer> <question…> [--timeout SECS]`: ask and block until the answer arrives;
//! prints it. Exit 3 when it times out, 1 when the peer ends before answering.
//!
//! The wait is the MCP server's `ask_peer` wait ([`crate::mcp::link::ask`]): the question is
//! queued first (its id comes back at once), then awaited; when the daemon restarts or dies
//! meanwhile, the wait reconnects (starting a daemon if needed) and goes on for the same
//! question, never asking it again.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use mesh_client::json::AskJson;
use mesh_client::{CallerFromEnv, format_message_id};
use mesh_daemon::paths::StateDir;
use mesh_proto::{AskResult, Caller, Message, Status};

use super::{JsonFlag, body_from, emit, emit_json};
use crate::mcp::link::{self, AskEnd, AskPlan, AskSwitch, Daemon};

/// `mesh ask`'s exit status when no answer came in time.
pub const EXIT_TIMED_OUT: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A session name or an id prefix (4+ characters)
    pub peer: String,
    /// The question (words are joined by spaces; `-` reads it from stdin)
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
    let ended = link::ask(&daemon, plan, &AskSwitch::default())
        .with_context(|| format!("cannot ask `{}`", args.peer))?;
    let outcome = match ended {
        AskEnd::Done(outcome) => outcome,
        // Nothing cancels this ask (Ctrl-C ends the process).
        AskEnd::Cancelled => anyhow::bail!("cannot ask `{}`: cancelled", args.peer),
        AskEnd::LostWhileQueuing(e) => anyhow::bail!(
            "cannot ask `{}`: {e}; the daemon went away while the question was being queued, so \
             it may or may not have reached the peer (`mesh list` shows its pending count)",
            args.peer
        ),
    };
    if args.out.json {
        emit_json(&AskJson::from(outcome.as_ref()))?;
    }
    let id = format_message_id(outcome.question.id);
    let peer = &outcome.question.to.name;
    match &outcome.result {
        AskResult::Answered(answer) => {
            if !args.out.json {
                let mut body = answer.body.clone();
                if !body.ends_with('\n') {
                    body.push('\n');
                }
                emit(&body)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AskResult::TimedOut => {
            eprintln!(
                "mesh: no answer from {peer} within {}s; {}",
                args.timeout,
                gave_up(&outcome.question)
            );
            Ok(ExitCode::from(EXIT_TIMED_OUT))
        }
        AskResult::PeerGone => {
            eprintln!(
                "mesh: {peer} is not running (it ended before answering); question {id} stays \
                 queued for it (its next session receives it), and an answer would wait in your \
                 inbox (`mesh inbox`)"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What becomes of a question whose asker stopped waiting.
pub fn gave_up(question: &Message) -> String {
    let id = format_message_id(question.id);
    let peer = &question.to.name;
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
