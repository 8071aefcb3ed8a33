//! `mesh reply <message-id> <text…>`: answer a question.

use std::process::ExitCode;

use anyhow::Context;
use mesh::json::RepliedJson;
use mesh_client::{CallerFromEnv, format_message_id, parse_message_id};
use mesh_proto::{Caller, Reply};

use super::{JsonFlag, body_from, connect, emit, emit_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The question's id: 42, #42 or m42
    #[arg(value_parser = parse_message_id)]
    pub message_id: u64,
    /// The answer, at most 256 KiB (words are joined by spaces; `-` reads it from stdin)
    #[arg(required = true)]
    pub text: Vec<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let body = body_from(&args.text)?;
    let replied = connect()?
        .reply(Reply {
            caller: Caller::from_env(),
            message_id: args.message_id,
            body,
        })
        .with_context(|| format!("cannot answer {}", format_message_id(args.message_id)))?;
    if args.out.json {
        emit_json(&RepliedJson {
            answer: (&replied.answer).into(),
        })?;
    } else {
        emit(&format!(
            "answered {} (answer {} to {})\n",
            format_message_id(args.message_id),
            format_message_id(replied.answer.id),
            mesh_proto::sanitize::terminal_line(&replied.answer.to.name)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
