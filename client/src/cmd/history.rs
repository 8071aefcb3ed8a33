//! `mesh history <peer> [-n N] [--raw]` and `mesh search <peer> <query> [--regex] [--raw]`: a
//! peer's recent turns, or the lines of its transcript that match, read from the transcript
//! path its SessionStart hook reported ([`mesh_client::transcript`]). Redacted unless `--raw`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use mesh_client::CallerFromEnv;
use mesh_client::transcript::{self, Match, Query, Turn};
use mesh_proto::{Caller, List, Scope, SessionInfo};
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
    /// Text to find (case-insensitive), or with --regex a regular expression
    pub query: String,
    /// Treat the query as a regular expression
    #[arg(long)]
    pub regex: bool,
    /// Lines of context around each match
    #[arg(short = 'C', long, default_value_t = 2)]
    pub context: usize,
    /// Full text: no cutting of long lines and tool output
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// At most this many matches are shown.
const MAX_MATCHES: usize = 50;

/// The peer's session and its transcript.
fn transcript_of(peer: &str) -> anyhow::Result<(SessionInfo, PathBuf)> {
    let peers = connect()?
        .list(List {
            caller: Caller::from_env(),
            scope: Scope::Machine,
            include_offline: true,
        })
        .context("cannot list the sessions")?
        .sessions;
    let wanted = peer.trim().to_lowercase();
    let by_name: Vec<&SessionInfo> = peers
        .iter()
        .filter(|s| s.name.to_lowercase() == wanted)
        .collect();
    // A name: its live session, else its latest.
    let chosen = if !by_name.is_empty() {
        by_name
            .iter()
            .copied()
            .filter(|s| s.live)
            .max_by_key(|s| s.key)
            .or_else(|| by_name.iter().copied().max_by_key(|s| s.key))
    } else if wanted.len() >= 4 {
        let by_id: Vec<&SessionInfo> = peers
            .iter()
            .filter(|s| s.session_id.to_lowercase().starts_with(&wanted))
            .collect();
        if by_id.len() > 1 {
            let names: Vec<String> = by_id
                .iter()
                .map(|s| format!("{} ({})", s.name, s.session_id))
                .collect();
            bail!(
                "`{peer}` matches several sessions: {}; give more of the id",
                names.join(", ")
            );
        }
        by_id.first().copied()
    } else {
        None
    };
    let Some(s) = chosen else {
        bail!("no session is named `{peer}` or has an id starting with it; see `mesh list --all`");
    };
    let Some(path) = s.transcript_path.as_deref().filter(|p| !p.is_empty()) else {
        bail!(
            "session {} ({}) reported no transcript (it registered without its SessionStart hook)",
            s.name,
            s.session_id
        );
    };
    Ok((s.clone(), PathBuf::from(path)))
}

#[derive(Serialize)]
struct HistoryJson<'a> {
    peer: &'a str,
    session_id: &'a str,
    transcript: &'a PathBuf,
    total_turns: usize,
    turns: &'a [Turn],
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
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "{} ({}): last {} of {} turns{}\n",
        s.name,
        s.session_id,
        turns.len(),
        total,
        if args.raw {
            ""
        } else {
            " (redacted; --raw for all)"
        }
    );
    for t in &turns {
        out.push_str(&format!(
            "\n── turn {} · {}{} ──\n{}\n",
            t.index,
            t.role,
            t.timestamp
                .as_deref()
                .map(|ts| format!(" · {ts}"))
                .unwrap_or_default(),
            t.text
        ));
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
}

pub fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let query = if args.regex {
        Query::regex(&args.query).map_err(anyhow::Error::msg)?
    } else {
        Query::substring(&args.query)
    };
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
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if matches.is_empty() {
        emit(&format!(
            "no match for `{}` in {}'s transcript\n",
            args.query, s.name
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    for m in &matches {
        out.push_str(&format!(
            "── turn {} · {} · line {} ──\n",
            m.turn, m.role, m.line
        ));
        for l in &m.excerpt {
            out.push_str(l);
            out.push('\n');
        }
    }
    if more {
        out.push_str(&format!(
            "… more matches than the first {MAX_MATCHES}; narrow the query\n"
        ));
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}
