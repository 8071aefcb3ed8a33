//! `mesh history <peer> [-n N] [--raw]` and `mesh search <peer> <query> [--regex] [--raw]`: a
//! peer's recent turns, or the lines of its transcript that match, read from the transcript
//! path its SessionStart hook reported ([`mesh::transcript`]). Redacted unless `--raw`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use mesh::transcript::{self, Match, PeerError, Query, Turn};
use mesh_client::CallerFromEnv;
use mesh_proto::{Caller, List, ListScoped, MeshPeers, Reach, Scope, SessionInfo, sanitize};
use serde::Serialize;

use super::{JsonFlag, connect, emit, emit_json};

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The peer: its name, or a prefix (4+ characters) of its session id
    pub peer: String,
    /// How many of the last turns
    #[arg(short = 'n', long = "turns", default_value_t = 10)]
    pub turns: usize,
    /// Full text: no cutting of long lines and tool output
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// The peer: its name, or a prefix (4+ characters) of its session id
    pub peer: String,
    /// Text to find (case-insensitive), or a regular expression written `/pattern/` (or with
    /// --regex); the same rule as the MCP tool `search_history`
    pub query: String,
    /// Treat the query as a regular expression
    #[arg(long)]
    pub regex: bool,
    /// Lines of context around each match (at most 1000)
    #[arg(short = 'C', long, default_value_t = 2,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=1000))]
    pub context: usize,
    /// Full text: no cutting of long lines and tool output
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// At most this many matches are shown.
const MAX_MATCHES: usize = 50;

/// The peer's session and its transcript. A session of another machine (`name@host`) is
/// refused: transcripts stay on their machine.
fn transcript_of(peer: &str) -> anyhow::Result<(SessionInfo, PathBuf)> {
    let found: MeshPeers = connect()?
        .call_typed(ListScoped {
            list: List {
                caller: Caller::from_env(),
                scope: Scope::Machine,
                include_offline: true,
            },
            reach: Reach::Mesh,
        })
        .context("cannot list the sessions")?;
    let sessions = found.local;
    let s = transcript::find_local_peer(&sessions, &found.remote, peer, found.host.as_deref())
        .map_err(|e| {
            let class = match &e {
                PeerError::Remote { .. } => super::exit::Class::BadInput("remote_peer"),
                PeerError::NotFound(_) => {
                    // Refused because nothing answers to `peer` (exit 4), or several sessions do
                    // (exit 7).
                    let wanted = peer.trim().to_lowercase();
                    let wanted = wanted.rsplit_once('@').map_or(wanted.as_str(), |(n, _)| n);
                    let answers = sessions.iter().any(|s| {
                        s.name.to_lowercase() == wanted
                            || (wanted.len() >= 4
                                && s.session_id.to_lowercase().starts_with(wanted))
                    });
                    if answers {
                        super::exit::Class::BadInput("ambiguous_peer")
                    } else {
                        super::exit::Class::UnknownPeer
                    }
                }
            };
            super::exit::Failure::new(class, e.to_string())
        })?;
    let path = transcript::path_of(s).map_err(anyhow::Error::msg)?;
    Ok((s.clone(), path.to_owned()))
}

#[derive(Serialize)]
struct HistoryJson<'a> {
    peer: &'a str,
    session_id: &'a str,
    transcript: &'a PathBuf,
    total_turns: usize,
    turns: &'a [Turn],
    /// Bytes past the most a transcript is read (its latest turns): 0 but for giant files.
    unread_bytes: u64,
}

pub fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let (s, path) = transcript_of(&args.peer)?;
    let (turns, total) = transcript::last_turns(&path, args.turns, args.raw)
        .with_context(|| format!("cannot read the transcript {}", path.display()))?;
    if args.out.json {
        emit_json(&HistoryJson {
            peer: &s.name,
            session_id: &s.session_id,
            transcript: &path,
            total_turns: total,
            turns: &turns,
            unread_bytes: transcript::unread_bytes(&path),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "{} ({}): last {} of {} turns{}\n",
        sanitize::terminal_line(&s.name),
        sanitize::terminal_line(&s.session_id),
        turns.len(),
        total,
        if args.raw {
            ""
        } else {
            " (redacted; --raw for all)"
        }
    );
    out.push('\n');
    // A timestamp is whatever the transcript says: on its header line, it must stay one line.
    let shown: Vec<Turn> = turns
        .iter()
        .cloned()
        .map(|mut t| {
            t.timestamp = t.timestamp.as_deref().map(sanitize::terminal_line);
            t
        })
        .collect();
    out.push_str(&transcript::render_turns(&shown));
    if let Some(note) = transcript::unread_note(transcript::unread_bytes(&path)) {
        out.push_str(&format!("note: {note}\n"));
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct SearchJson<'a> {
    peer: &'a str,
    session_id: &'a str,
    transcript: &'a PathBuf,
    matches: &'a [Match],
    /// More matches than were returned.
    truncated: bool,
    /// As in `mesh history --json`.
    unread_bytes: u64,
}

pub fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let query = Query::parse(&args.query, args.regex)
        .map_err(|e| super::exit::Failure::bad_input("bad_pattern", e))?;
    let (s, path) = transcript_of(&args.peer)?;
    let (matches, more) = transcript::search(&path, &query, args.context, MAX_MATCHES, args.raw)
        .with_context(|| format!("cannot read the transcript {}", path.display()))?;
    if args.out.json {
        emit_json(&SearchJson {
            peer: &s.name,
            session_id: &s.session_id,
            transcript: &path,
            matches: &matches,
            truncated: more,
            unread_bytes: transcript::unread_bytes(&path),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if matches.is_empty() {
        let note = transcript::unread_note(transcript::unread_bytes(&path))
            .map_or_else(String::new, |n| format!("note: {n}\n"));
        emit(&format!(
            "no match for `{}` in {}'s transcript\n{note}",
            sanitize::terminal_line(&args.query),
            sanitize::terminal_line(&s.name)
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = transcript::render_matches(&matches);
    if let Some(note) = transcript::unread_note(transcript::unread_bytes(&path)) {
        out.push_str(&format!("note: {note}\n"));
    }
    if more {
        out.push_str(&format!(
            "… more matches than the first {MAX_MATCHES}; narrow the query\n"
        ));
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}
