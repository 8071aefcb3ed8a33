//! The CLI's subcommands (one module each) and what they share: connecting, the caller, the
//! `--json` flag, message bodies from arguments or stdin, and output that survives a closed
//! pipe (`mesh list | head`).
//!
//! Human-readable output (to a terminal or not) goes through [`emit`], which shows every control
//! and hidden character visibly ([`sanitize::terminal`]): a body, an answer, a transcript, a
//! path, a name or a client-chosen id can never clear the screen, set the window title, write
//! the clipboard (OSC 52), overwrite a line with a bare CR or reorder text with a bidi override.
//! One-line fields (names, ids, paths, summaries) are also shown with [`sanitize::terminal_line`]
//! so that none can start a line of its own. `--json` ([`emit_json`]) stays exact. Lines on
//! stderr go through [`warn`] (or, for an error, `main`'s handler): the same rule.

pub mod ask;
pub mod completions;
pub mod exit;
pub mod federation;
pub mod health;
pub mod history;
pub mod inbox;
pub mod install;
pub mod list;
pub mod message;
pub mod progress;
pub mod reply;
pub mod run;
pub mod send;
pub mod start;
pub mod statusline;
pub mod stdout;
pub mod stop;
pub mod whoami;

use std::io::{self, Read};

use anyhow::Context;
use mesh::display::{home_dir, relative_time, short_id, shorten_home};
use mesh_client::{ConnectOptions, Connection, connect_or_start, format_message_id};
use mesh_daemon::paths::StateDir;
use mesh_proto::sanitize;
use mesh_proto::{Message, Party, SessionInfo};
use serde::Serialize;

/// `--json`, for every command that prints data.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JsonFlag {
    /// Print exactly one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

/// Log to stderr (never stdout: hooks and the MCP server speak JSON there), filtered by
/// `CLAUDE_MESH_LOG` (e.g. `debug`), else at `default` (warnings; nothing with `--json`).
pub fn init_tracing(default: &str) {
    // Colours only for a terminal: a script or a log file gets plain lines.
    init_tracing_to(
        io::stderr,
        default,
        io::IsTerminal::is_terminal(&io::stderr()),
    );
}

/// Log to `writer`, filtered by `CLAUDE_MESH_LOG`, else at `default` level and above.
pub fn init_tracing_to<W>(writer: W, default: &str, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLAUDE_MESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

/// Connect to the daemon, starting it on demand (the CLI's 5 s budget).
pub fn connect() -> anyhow::Result<Connection> {
    let state = StateDir::from_env().context("cannot locate the mesh state directory")?;
    let _wait = progress::waiting("waiting for the mesh daemon (starting it if needed)");
    Ok(connect_or_start(&state, &ConnectOptions::default())?)
}

/// The message body: the words joined by spaces, or stdin when the only word is `-`. A body
/// over [`mesh_proto::MAX_BODY_LEN`] is refused here, quoting that limit (bad input, exit 7).
pub fn body_from(words: &[String]) -> anyhow::Result<String> {
    if let [only] = words
        && only == "-"
    {
        // Bounded: one byte past the largest body tells "too long" without reading on (stdin
        // may be endless, e.g. /dev/zero).
        let mut bytes = Vec::new();
        io::stdin()
            .lock()
            .take(mesh_proto::MAX_BODY_LEN as u64 + 2)
            .read_to_end(&mut bytes)
            .context("cannot read the message from stdin")?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
        }
        if bytes.len() > mesh_proto::MAX_BODY_LEN {
            return Err(too_long("the message on stdin is too long").into());
        }
        return String::from_utf8(bytes).map_err(|_| {
            exit::Failure::bad_input(
                "invalid_argument",
                "cannot read the message from stdin: it is not UTF-8 text",
            )
            .into()
        });
    }
    let body = words.join(" ");
    if body.len() > mesh_proto::MAX_BODY_LEN {
        return Err(too_long(&format!("the message is {} bytes", body.len())).into());
    }
    Ok(body)
}

/// A body over the limit: `what`, then the limit that applies.
fn too_long(what: &str) -> exit::Failure {
    exit::Failure::bad_input(
        "too_large",
        format!(
            "{what}: the limit is {} KiB ({} bytes) per message; send a shorter one, or point \
             the peer to a file",
            mesh_proto::MAX_BODY_LEN / 1024,
            mesh_proto::MAX_BODY_LEN
        ),
    )
}

/// Write human-readable text to stdout, every control and hidden character but `\n` and `\t`
/// shown visibly ([`sanitize::terminal`]); a closed pipe (the reader went away) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    stdout::write_stdout(&sanitize::terminal(text))
}

/// Write one pretty-printed JSON document and a newline to stdout, exact (JSON escapes control
/// characters itself).
pub fn emit_json(doc: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(doc).context("cannot encode the JSON output")?;
    text.push('\n');
    stdout::write_stdout(&text)
}

/// `name: value` lines with the values aligned, each value on one line
/// ([`sanitize::terminal_line`]: a name, a path or a summary cannot start a line).
pub fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{:<width$}  {}\n",
                format!("{k}:"),
                sanitize::terminal_line(v)
            )
        })
        .collect()
}

/// `backend (01234567)`, or `user`; shown safely on one line.
pub fn party(p: &Party) -> String {
    let name = sanitize::terminal_line(&p.name);
    match &p.session_id {
        Some(id) => format!("{name} ({})", sanitize::terminal_line(short_id(id))),
        None => name,
    }
}

/// A message as the inbox shows it: a header line, then the body indented.
pub fn render_message_brief(m: &Message, now_ms: i64) -> String {
    let id = format_message_id(m.id);
    let mut out = format!(
        "{id}  {}  from {}  {}",
        m.kind.as_str(),
        party(&m.from),
        relative_time(now_ms, m.created_ms)
    );
    if let Some(q) = m.in_reply_to {
        out.push_str(&format!("  (answer to {})", format_message_id(q)));
    }
    out.push('\n');
    for line in m.body.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    if m.kind == mesh_proto::Kind::Question {
        out.push_str(&format!("  (answer with: mesh reply {id} <text>)\n"));
    }
    out
}

/// `~/src/backend` style cwd of a session, shown safely on one line.
pub fn session_cwd(s: &SessionInfo) -> String {
    sanitize::terminal_line(&shorten_home(&s.cwd, home_dir().as_deref()))
}

#[cfg(test)]
mod tests {
    use mesh_proto::{Kind, Status};

    use super::*;

    #[test]
    fn fields_align() {
        assert_eq!(
            render_fields(&[("id", "m1".into()), ("status", "queued".into())]),
            "id:      m1\nstatus:  queued\n"
        );
    }

    #[test]
    fn brief_message_shows_id_kind_sender_age_and_body() {
        let m = Message {
            id: 42,
            kind: Kind::Question,
            from: Party {
                name: "backend".into(),
                session_id: Some("0123456789".into()),
            },
            to: Party {
                name: "user".into(),
                session_id: None,
            },
            body: "line one\nline two".into(),
            in_reply_to: None,
            status: Status::Delivered,
            created_ms: 0,
            delivered_ms: Some(0),
            answered_ms: None,
        };
        assert_eq!(
            render_message_brief(&m, 180_000),
            "m42  question  from backend (01234567)  3m ago\n  line one\n  line two\n  (answer with: mesh reply m42 <text>)\n"
        );
    }
}
