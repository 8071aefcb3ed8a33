//! `mesh message <message-id>`: one message, its status and its timestamps.

use std::process::ExitCode;

use anyhow::Context;
use mesh::display::{local_timestamp, now_ms, relative_time};
use mesh::json::MessageJson;
use mesh_client::{format_message_id, parse_message_id};
use mesh_proto::MessageStatus;

use super::{JsonFlag, connect, emit, emit_json, party, render_fields};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The message's id: 42, #42 or m42
    #[arg(value_parser = parse_message_id)]
    pub message_id: u64,
    #[command(flatten)]
    pub out: JsonFlag,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let m = connect()?
        .message_status(MessageStatus {
            message_id: args.message_id,
        })
        .with_context(|| format!("cannot look up {}", format_message_id(args.message_id)))?;
    if args.out.json {
        emit_json(&MessageJson::from(&m))?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    let when = |ms: Option<i64>| match ms {
        Some(ms) => format!("{} ({})", local_timestamp(ms), relative_time(now, ms)),
        None => "-".to_owned(),
    };
    let mut fields = vec![
        ("id", format_message_id(m.id)),
        ("kind", m.kind.as_str().to_owned()),
        ("status", m.status.as_str().to_owned()),
        ("from", party(&m.from)),
        ("to", party(&m.to)),
    ];
    if let Some(q) = m.in_reply_to {
        fields.push(("in reply to", format_message_id(q)));
    }
    fields.push(("created", when(Some(m.created_ms))));
    fields.push(("delivered", when(m.delivered_ms)));
    fields.push(("answered", when(m.answered_ms)));
    let mut text = render_fields(&fields);
    text.push_str("body:\n");
    for line in m.body.lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}
