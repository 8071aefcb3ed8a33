//! `mesh send <peer> <text…> [--kind task|note]`: queue a message; prints its id (one line per
//! recipient, with the recipient, for `*`).

use std::process::ExitCode;

use mesh::json::SentJson;
use mesh_client::{CallerFromEnv, format_message_id};
use mesh_proto::{Caller, Kind, SendMessage};

use super::stdout::warn;
use super::{JsonFlag, body_from, connect, emit, emit_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A session name, an id prefix (4+ characters), or `*` for every live peer
    pub peer: String,
    /// The message, at most 256 KiB (words are joined by spaces; `-` reads it from stdin)
    #[arg(required = true)]
    pub text: Vec<String>,
    /// `task` is shown to the peer at its next step and keeps it from stopping; `note` waits
    /// for its next prompt
    #[arg(long, value_enum, default_value_t = KindArg::Task)]
    pub kind: KindArg,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    Task,
    Note,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let body = body_from(&args.text)?;
    let kind = match args.kind {
        KindArg::Task => Kind::Task,
        KindArg::Note => Kind::Note,
    };
    let mut sent = connect()?
        .send(SendMessage {
            caller: Caller::from_env(),
            to: args.peer.clone(),
            kind,
            body: body.clone(),
        })
        .map_err(|e| {
            if crate::link::unconfirmed(&e) {
                // Not the error's own advice ("run the command again"): that may send it twice.
                return anyhow::Error::new(super::exit::Failure::new(
                    super::exit::client_class(&e),
                    format!(
                        "the daemon did not confirm the send to `{}` ({}): {}",
                        args.peer,
                        crate::link::unconfirmed_why(&e),
                        crate::link::MAYBE_SENT
                    ),
                ));
            }
            anyhow::Error::new(e).context(format!("cannot send to `{}`", args.peer))
        })?;
    // The daemon does not repeat the text per recipient.
    for m in &mut sent.messages {
        m.body.clone_from(&body);
    }
    if args.out.json {
        emit_json(&SentJson::new(&sent.messages))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.peer == "*" {
        if sent.messages.is_empty() {
            warn("no live peers: nothing was sent");
        }
        let lines: String = sent
            .messages
            .iter()
            .map(|m| {
                format!(
                    "{}  {}\n",
                    format_message_id(m.id),
                    mesh_proto::sanitize::terminal_line(&m.to.name)
                )
            })
            .collect();
        emit(&lines)?;
    } else {
        let lines: String = sent
            .messages
            .iter()
            .map(|m| format!("{}\n", format_message_id(m.id)))
            .collect();
        emit(&lines)?;
    }
    Ok(ExitCode::SUCCESS)
}
