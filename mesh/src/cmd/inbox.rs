//! `mesh inbox [--peek]`: this session's pending messages, consumed (marked delivered) unless
//! `--peek`. Without `--peek` it drains everything pending, batch by batch.

use std::process::ExitCode;

use anyhow::Context;
use mesh::display::now_ms;
use mesh::json::InboxJson;
use mesh_client::CallerFromEnv;
use mesh_proto::{Caller, Class, Consume, Inbox};

use super::{JsonFlag, connect, emit, emit_json, render_message_brief};

/// Bodies per batch (the daemon caps it further if it wants).
const BATCH_BYTES: u32 = 1024 * 1024;
/// Bound on batches, in case a daemon keeps reporting more pending.
const MAX_BATCHES: usize = 1000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show the messages without marking them delivered
    #[arg(long)]
    pub peek: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut conn = connect()?;
    let caller = Caller::from_env();
    let mut inbox = Inbox {
        messages: Vec::new(),
        remaining: 0,
    };
    for _ in 0..MAX_BATCHES {
        let req = Consume {
            caller: caller.clone(),
            class: Class::All,
            peek: args.peek,
            max_bytes: BATCH_BYTES,
            handout: mesh_client::handout_token(),
        };
        // Retry-safe: if the daemon dies before answering, the same token on a new connection
        // gets the same messages.
        let batch = match conn.consume(req.clone()) {
            Err(e) if e.is_connection_lost() => {
                conn = connect()?;
                conn.consume(req)
            }
            other => other,
        }
        .context("cannot read the inbox")?;
        let done = args.peek || batch.remaining == 0 || batch.messages.is_empty();
        inbox.messages.extend(batch.messages);
        inbox.remaining = batch.remaining;
        if done {
            break;
        }
    }
    if args.out.json {
        emit_json(&InboxJson::new(args.peek, &inbox))?;
        return Ok(ExitCode::SUCCESS);
    }
    if inbox.messages.is_empty() {
        emit("no messages\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    let mut text = inbox
        .messages
        .iter()
        .map(|m| render_message_brief(m, now))
        .collect::<Vec<_>>()
        .join("\n");
    if inbox.remaining > 0 {
        text.push_str(&format!("\n({} more pending)\n", inbox.remaining));
    }
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}
