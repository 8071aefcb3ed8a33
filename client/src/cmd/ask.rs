//! `mesh ask <peer> <question…> [--timeout SECS]`: ask and block until the answer arrives;
//! prints it. Exit 3 when it times out, 1 when the peer ends before answering.

use std::process::ExitCode;

use anyhow::Context;
use mesh_client::json::AskJson;
use mesh_client::{CallerFromEnv, format_message_id};
use mesh_proto::{Ask, AskResult, Caller};

use super::{JsonFlag, body_from, connect, emit, emit_json};

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
    let outcome = connect()?
        .ask(Ask {
            caller: Caller::from_env(),
            to: args.peer.clone(),
            question,
            timeout_ms: args.timeout.saturating_mul(1000),
        })
        .with_context(|| format!("cannot ask `{}`", args.peer))?;
    if args.out.json {
        emit_json(&AskJson::from(&outcome))?;
    }
    let id = format_message_id(outcome.question.id);
    let peer = mesh_proto::sanitize::terminal_line(&outcome.question.to.name);
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
                "mesh: no answer from {peer} within {}s (question {id}); `mesh message {id}` shows whether it is answered later",
                args.timeout
            );
            Ok(ExitCode::from(EXIT_TIMED_OUT))
        }
        AskResult::PeerGone => {
            eprintln!("mesh: {peer} ended before answering question {id}");
            Ok(ExitCode::FAILURE)
        }
    }
}
