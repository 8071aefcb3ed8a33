//! Reading a peer's Claude Code transcript (the JSONL file its SessionStart hook reported):
//! its turns, one at a time, never the whole file in memory.
//!
//! A transcript holds one JSON object per line. Turns are the records
//! `{"type": "user" | "assistant", "message": {"role", "content"}}`; every other record type
//! (summaries, attachments, API request blobs, queue operations, anything newer) is skipped, and
//! so is a line that does not parse (the last one, while Claude Code is writing it). A turn's
//! index counts turns from the start of the file, from 0.
//!
//! Redaction (the default): long tool inputs and results and file contents are cut, each line
//! to [`LINE_CAP`] characters and each tool block to [`BLOCK_LINES`] lines, with a note of what
//! was cut. `raw` gives the full text. A search ([`search`]) matches the full text and cuts
//! only the excerpts it returns. Only the same user's sessions can be read: the daemon
//! serves only its own user, and the transcripts are that user's files.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use mesh_proto::{RemoteSession, SessionInfo};
use serde::Serialize;
use serde_json::Value;

/// Redaction: a line longer than this many characters is cut.
pub const LINE_CAP: usize = 300;
/// Redaction: a tool input or result longer than this many lines is cut.
pub const BLOCK_LINES: usize = 12;
/// Lines longer than this are not parsed at all (API blobs can be huge; no turn is).
const MAX_RECORD_BYTES: usize = 16 << 20;
/// At most this many bytes of a transcript are scanned (1 GiB, far above any real session's);
/// past it the turns are not read. Also never more than the file's size when it was opened,
/// so a file that keeps growing cannot keep a reader going.
pub const MAX_TRANSCRIPT_BYTES: u64 = 1 << 30;

/// How many bytes at the end of the transcript at `path` are past [`MAX_TRANSCRIPT_BYTES`] and
/// so never read (0 for every transcript of a normal size): a reader must say so, since the
/// latest turns are among them.
pub fn unread_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len().saturating_sub(MAX_TRANSCRIPT_BYTES))
}

/// The note a reader shows when [`unread_bytes`] is not 0.
pub fn unread_note(unread: u64) -> Option<String> {
    (unread > 0).then(|| {
        format!(
            "only the first {} MiB of this transcript were read: its last {unread} bytes (its \
             latest turns) were not",
            MAX_TRANSCRIPT_BYTES >> 20
        )
    })
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Turn {
    /// Position among the transcript's turns, from 0.
    pub index: usize,
    /// `user` or `assistant`.
    pub role: String,
    /// As the transcript records it (RFC 3339), when it does.
    pub timestamp: Option<String>,
    /// Text blocks as they are; tool calls and results as `[tool_use Bash] …` /
    /// `[tool_result] …` blocks; thinking left out.
    pub text: String,
}

/// Call `each` with every turn, in order. Returns the number of turns.
pub fn for_each_turn(
    path: &Path,
    raw: bool,
    mut each: impl FnMut(Turn) -> std::ops::ControlFlow<()>,
) -> io::Result<usize> {
    let mut reader = BufReader::new(open(path)?);
    let mut line = Vec::new();
    let mut index = 0;
    loop {
        match next_line(&mut reader, &mut line, MAX_RECORD_BYTES)? {
            None => return Ok(index),
            Some(false) => continue, // longer than any turn: skipped unread
            Some(true) => {}
        }
        // Most records are not turns, and some are large (API request shapes, prompt
        // snapshots): look at their type before building the whole record.
        let Ok(head) = serde_json::from_slice::<Head>(&line) else {
            continue; // a partial last line, or not JSON at all
        };
        if !matches!(head.kind.as_deref(), Some("user" | "assistant")) {
            continue;
        }
        let Ok(record) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let Some(turn) = to_turn(&record, index, raw) else {
            continue;
        };
        index += 1;
        if each(turn).is_break() {
            return Ok(index);
        }
    }
}

/// Open a transcript for reading without ever blocking on it: non-blocking (a FIFO would
/// wait for a writer forever), then only a regular file is accepted (not a FIFO, a device
/// such as /dev/zero, a socket or a directory), and reading stops at its size at open time
/// and at [`MAX_TRANSCRIPT_BYTES`] ([`mesh_daemon::paths::open_regular`], links followed).
pub fn open(path: &Path) -> io::Result<io::Take<File>> {
    let file = mesh_daemon::paths::open_regular(path, std::fs::OpenOptions::new().read(true), true)
        .map_err(|e| match mesh_daemon::paths::refusal(&e) {
            Some(r) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "not a regular file ({}); a transcript is a JSONL file",
                    r.what
                ),
            ),
            None => e,
        })?;
    let meta = file.metadata()?;
    Ok(file.take(meta.len().min(MAX_TRANSCRIPT_BYTES)))
}

/// A record's type, and nothing else of it.
#[derive(Debug, serde::Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Read the next line (with its newline) into `line`, holding at most `max` bytes of it:
/// `Some(true)` when it fitted, `Some(false)` when it was longer (then it is read through to its
/// end and dropped, never held whole), `None` at the end of the file.
fn next_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    line.clear();
    let (mut any, mut fits) = (false, true);
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(any.then_some(fits));
        }
        any = true;
        let (len, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if fits && line.len() + len <= max {
            line.extend_from_slice(&buf[..len]);
        } else {
            fits = false;
            line.clear();
        }
        reader.consume(len);
        if done {
            return Ok(Some(fits));
        }
    }
}

/// The last `n` turns, oldest first, and how many turns the transcript has.
pub fn last_turns(path: &Path, n: usize, raw: bool) -> io::Result<(Vec<Turn>, usize)> {
    let mut last = VecDeque::with_capacity(n.min(1024));
    let total = for_each_turn(path, raw, |t| {
        if n > 0 {
            if last.len() == n {
                last.pop_front();
            }
            last.push_back(t);
        }
        std::ops::ControlFlow::Continue(())
    })?;
    Ok((last.into(), total))
}

/// The turn at `index`, if the transcript has it.
pub fn turn(path: &Path, index: usize, raw: bool) -> io::Result<Option<Turn>> {
    let mut found = None;
    for_each_turn(path, raw, |t| {
        if t.index == index {
            found = Some(t);
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })?;
    Ok(found)
}

/// A search: a case-insensitive literal text, or a regular expression.
#[derive(Debug)]
pub enum Query {
    Substring(regex_automata::meta::Regex),
    Regex(regex_automata::meta::Regex),
}

impl Query {
    /// The one rule by which `mesh search` and the `search_history` tool read a query: written
    /// as `/pattern/` (or with `regex` set, the CLI's `--regex`) a regular expression, anything
    /// else a literal text matched case-insensitively. The error says what is wrong with a
    /// regular expression.
    pub fn parse(text: &str, regex: bool) -> Result<Self, String> {
        if regex {
            return Query::regex(text);
        }
        match text
            .trim()
            .strip_prefix('/')
            .and_then(|r| r.strip_suffix('/'))
        {
            Some(pattern) if !pattern.is_empty() => Query::regex(pattern),
            _ => Query::substring(text),
        }
    }

    /// A literal text, matched case-insensitively (an error only for a text too long to
    /// search for).
    pub fn substring(text: &str) -> Result<Self, String> {
        let literal = regex_syntax::escape(text);
        regex_automata::meta::Regex::builder()
            .syntax(regex_automata::util::syntax::Config::new().case_insensitive(true))
            .build(&literal)
            .map(Query::Substring)
            .map_err(|e| format!("cannot search for this text: {e}"))
    }

    /// A regular expression (Rust `regex` syntax); the error says what is wrong with it.
    pub fn regex(pattern: &str) -> Result<Self, String> {
        regex_automata::meta::Regex::new(pattern)
            .map(Query::Regex)
            .map_err(|e| {
                format!(
                    "invalid regular expression `{pattern}`: {}",
                    regex_error(&e)
                )
            })
    }

    /// Where in `line` the query first matches (a byte range), if it does.
    fn find(&self, line: &str) -> Option<std::ops::Range<usize>> {
        match self {
            Query::Substring(r) | Query::Regex(r) => r.find(line).map(|m| m.range()),
        }
    }
}

/// What is wrong in a pattern: the syntax error's own words (`unclosed group`) and the pattern
/// with a caret under the place, not the builder's "error parsing pattern 0".
fn regex_error(e: &regex_automata::meta::BuildError) -> String {
    let Some(syntax) = std::error::Error::source(e) else {
        return e.to_string();
    };
    // regex-syntax says "regex parse error:\n    <pattern>\n    ^^^\nerror: <what>".
    let text = syntax.to_string();
    let text = text.strip_prefix("regex parse error:\n").unwrap_or(&text);
    match text.rsplit_once("\nerror: ") {
        Some((picture, what)) => format!("{what}\n{picture}"),
        None => text.to_string(),
    }
}

/// A matching line, with the lines around it in its turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    pub turn: usize,
    pub role: String,
    /// The line's position in the turn's full (unredacted) text, from 0.
    pub line: usize,
    /// Up to `context` lines before, the matching line, and up to `context` after.
    pub excerpt: Vec<String>,
}

/// Every line of every turn that matches, with `context` lines around it, at most `limit`
/// matches (the first ones). Returns the matches and whether there were more.
///
/// The query is matched against the full text of each turn, whatever `raw` says: redaction
/// cuts only what a match shows (each excerpt line to [`LINE_CAP`] characters, the matching
/// line around its match), so a line deep in a long tool output is found all the same. A
/// match's `line` counts in the turn's full text.
pub fn search(
    path: &Path,
    query: &Query,
    context: usize,
    limit: usize,
    raw: bool,
) -> io::Result<(Vec<Match>, bool)> {
    let mut out = Vec::new();
    let mut more = false;
    for_each_turn(path, true, |t| {
        let lines: Vec<&str> = t.text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let Some(found) = query.find(l) else {
                continue;
            };
            if out.len() == limit {
                more = true;
                return std::ops::ControlFlow::Break(());
            }
            let from = i.saturating_sub(context);
            let to = i.saturating_add(context).saturating_add(1).min(lines.len());
            let excerpt = (from..to)
                .map(|k| match (raw, k == i) {
                    (true, _) => lines[k].to_owned(),
                    (false, true) => cut_around(lines[k], found.clone()),
                    (false, false) => cut_line(lines[k]),
                })
                .collect();
            out.push(Match {
                turn: t.index,
                role: t.role.clone(),
                line: i,
                excerpt,
            });
        }
        std::ops::ControlFlow::Continue(())
    })?;
    Ok((out, more))
}

/// Why a transcript of `peer` cannot be read from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// `peer` is the address of a session on another machine (`name@host`): transcripts stay
    /// on the machine where Claude Code wrote them; nothing reads them across the mesh.
    Remote { name: String, host: String },
    /// No session, or several, answer to `peer` on this machine ([`find_peer`]'s error).
    NotFound(String),
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::Remote { name, host } => write!(
                f,
                "`{name}@{host}` is a session on another machine ({host}): transcripts stay on \
                 their machine, and the mesh never carries them. Ask it instead (ask_peer, or \
                 `mesh ask {name}@{host}`), or read its history on {host} itself"
            ),
            PeerError::NotFound(e) => f.write_str(e),
        }
    }
}

/// [`find_peer`] for a peer named as the messaging commands and tools take it: a name or id
/// prefix, or an address `name@host`. `here` is this machine's host in the mesh (`None` when
/// it joined none): `name@here` is this machine's session `name`; an address on any other host
/// is [`PeerError::Remote`], whether or not such a session exists, and so is a bare name that
/// no session of this machine answers to but a session of another machine (`remote`, as the
/// daemon lists them) is named.
pub fn find_local_peer<'a>(
    sessions: &'a [SessionInfo],
    remote: &[RemoteSession],
    peer: &str,
    here: Option<&str>,
) -> Result<&'a SessionInfo, PeerError> {
    let trimmed = peer.trim();
    match trimmed.rsplit_once('@') {
        Some((name, host)) if here.is_some_and(|h| h.eq_ignore_ascii_case(host)) => {
            find_peer(sessions, name).map_err(PeerError::NotFound)
        }
        Some((name, host)) => Err(PeerError::Remote {
            name: name.to_owned(),
            host: host.to_owned(),
        }),
        None => find_peer(sessions, trimmed).map_err(|e| {
            // The remote one that a bare name would address, the live one first.
            let mut named: Vec<&RemoteSession> = remote
                .iter()
                .filter(|r| r.name.eq_ignore_ascii_case(trimmed))
                .collect();
            named.sort_by_key(|r| !r.live);
            match named.first() {
                Some(r) => PeerError::Remote {
                    name: r.name.clone(),
                    host: r.host.clone(),
                },
                None => PeerError::NotFound(e),
            }
        }),
    }
}

/// The session `peer` names among `sessions`, by the daemon's rule (README "Names"): a name
/// (case-insensitive; its live session, else its latest), or a prefix of at least 4
/// characters of a session id. A name that is also an id prefix of another session is an
/// error that lists both, as several sessions matching an id prefix is. The error says what
/// to do.
pub fn find_peer<'a>(sessions: &'a [SessionInfo], peer: &str) -> Result<&'a SessionInfo, String> {
    let wanted = peer.trim().to_lowercase();
    let by_name: Vec<&SessionInfo> = sessions
        .iter()
        .filter(|s| s.name.to_lowercase() == wanted)
        .collect();
    let named = by_name
        .iter()
        .copied()
        .filter(|s| s.live)
        .max_by_key(|s| s.key)
        .or_else(|| by_name.iter().copied().max_by_key(|s| s.key));
    let by_id: Vec<&SessionInfo> = if wanted.len() >= 4 {
        sessions
            .iter()
            .filter(|s| s.session_id.to_lowercase().starts_with(&wanted))
            .collect()
    } else {
        Vec::new()
    };
    let list = |several: &[&SessionInfo]| {
        several
            .iter()
            .map(|s| format!("{} ({})", s.name, s.session_id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (named, by_id.as_slice()) {
        (Some(n), ids) if ids.iter().any(|i| i.key != n.key) => {
            let mut all = vec![n];
            all.extend(ids.iter().copied().filter(|i| i.key != n.key));
            Err(format!(
                "`{peer}` is the name of one session and an id prefix of another: {}; give more of the id of the one you mean",
                list(&all)
            ))
        }
        (Some(n), _) => Ok(n),
        (None, [one]) => Ok(one),
        (None, []) => Err(format!(
            "no session is named `{peer}` or has an id starting with it; list them with `mesh list --all` (or list_peers)"
        )),
        (None, several) => Err(format!(
            "`{peer}` matches several sessions: {}; give more of the id",
            list(several)
        )),
    }
}

/// The transcript a session reported, or why there is none.
pub fn path_of(s: &SessionInfo) -> Result<&Path, String> {
    s.transcript_path
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(Path::new)
        .ok_or_else(|| {
            format!(
                "session {} ({}) reported no transcript (it registered without its SessionStart hook)",
                s.name, s.session_id
            )
        })
}

/// Turns as text: a header line per turn, then its text.
pub fn render_turns(turns: &[Turn]) -> String {
    let mut out = String::new();
    for t in turns {
        out.push_str(&format!(
            "── turn {} · {}{} ──\n",
            t.index,
            t.role,
            t.timestamp
                .as_deref()
                .map(|ts| format!(" · {ts}"))
                .unwrap_or_default(),
        ));
        quoted(&mut out, t.text.lines());
    }
    out
}

/// Matches as text: where each is, then its excerpt.
pub fn render_matches(matches: &[Match]) -> String {
    let mut out = String::new();
    for m in matches {
        out.push_str(&format!(
            "── turn {} · {} · line {} ──\n",
            m.turn, m.role, m.line
        ));
        quoted(&mut out, m.excerpt.iter().flat_map(|l| l.lines()));
    }
    out
}

/// A transcript's text under its header, each line behind `│ `: only the headers start a line,
/// so no line of the text (a peer's, or a tool's output) can pass for a header of its own.
fn quoted<'a>(out: &mut String, lines: impl Iterator<Item = &'a str>) {
    for line in lines {
        out.push_str("│ ");
        out.push_str(line);
        out.push('\n');
    }
}

/// A transcript record as a turn, or `None` for every other kind of record.
fn to_turn(record: &Value, index: usize, raw: bool) -> Option<Turn> {
    let role = match record.get("type")?.as_str()? {
        r @ ("user" | "assistant") => r,
        _ => return None,
    };
    let content = record.get("message")?.get("content")?;
    let mut blocks: Vec<String> = Vec::new();
    match content {
        Value::String(s) => blocks.push(cut_lines(s, raw, usize::MAX)),
        Value::Array(items) => {
            for item in items {
                if let Some(b) = block(item, raw) {
                    blocks.push(b);
                }
            }
        }
        _ => return None,
    }
    Some(Turn {
        index,
        role: role.to_owned(),
        timestamp: record
            .get("timestamp")
            .and_then(Value::as_str)
            .map(str::to_owned),
        text: blocks.join("\n"),
    })
}

/// One content block as text.
fn block(item: &Value, raw: bool) -> Option<String> {
    match item.get("type")?.as_str()? {
        "text" => Some(cut_lines(item.get("text")?.as_str()?, raw, usize::MAX)),
        "tool_use" => {
            let name = item.get("name").and_then(Value::as_str).unwrap_or("tool");
            let input = item.get("input").map(tool_input).unwrap_or_default();
            Some(format!(
                "[tool_use {name}]\n{}",
                cut_lines(&input, raw, BLOCK_LINES)
            ))
        }
        "tool_result" => {
            let text = match item.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                        Some("text") => p.get("text").and_then(Value::as_str).map(str::to_owned),
                        Some(other) => Some(format!("[{other}]")),
                        None => None,
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                Some(other) => pretty(other),
                None => String::new(),
            };
            Some(format!(
                "[tool_result]\n{}",
                cut_lines(&text, raw, BLOCK_LINES)
            ))
        }
        "image" => Some("[image]".to_owned()),
        // Private reasoning, and block types this reader does not know.
        _ => None,
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A tool call's input as a person reads it: a `key: value` line per field, a text value as it
/// is (one with several lines below its key, indented), any other value as compact JSON.
fn tool_input(input: &Value) -> String {
    let compact = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    match input {
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) if !s.contains('\n') => format!("{k}: {s}"),
                Value::String(s) => {
                    let body: Vec<String> = s.lines().map(|l| format!("  {l}")).collect();
                    format!("{k}:\n{}", body.join("\n"))
                }
                other => format!("{k}: {}", compact(other)),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::String(s) => s.clone(),
        other => compact(other),
    }
}

/// Redaction of one block: each line to [`LINE_CAP`] characters, at most `max_lines` lines.
fn cut_lines(text: &str, raw: bool, max_lines: usize) -> String {
    if raw {
        return text.to_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = lines.iter().take(max_lines).map(|l| cut_line(l)).collect();
    if lines.len() > max_lines {
        out.push(format!("… [{} more lines]", lines.len() - max_lines));
    }
    out.join("\n")
}

/// Redaction of one line: its first [`LINE_CAP`] characters, with a note of what was cut.
fn cut_line(line: &str) -> String {
    let n = line.chars().count();
    if n <= LINE_CAP {
        return line.to_owned();
    }
    let kept: String = line.chars().take(LINE_CAP).collect();
    format!("{kept}… [{} more characters]", n - LINE_CAP)
}

/// Redaction of a matching line: [`LINE_CAP`] characters of it around the match at `found`
/// (a byte range), with notes of what was cut on either side.
fn cut_around(line: &str, found: std::ops::Range<usize>) -> String {
    let n = line.chars().count();
    if n <= LINE_CAP {
        return line.to_owned();
    }
    let at = line
        .get(..found.start)
        .map_or(0, |before| before.chars().count());
    // Some context before the match, the rest after it, never past the end.
    let start = at.saturating_sub(LINE_CAP / 4).min(n - LINE_CAP);
    if start == 0 {
        return cut_line(line);
    }
    let kept: String = line.chars().skip(start).take(LINE_CAP).collect();
    let after = n - start - LINE_CAP;
    let mut out = format!("[{start} characters before] …{kept}");
    if after > 0 {
        out.push_str(&format!("… [{after} more characters]"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn transcript(lines: &[&str]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f
    }

    fn session(key: u64, name: &str, id: &str, live: bool) -> SessionInfo {
        SessionInfo {
            key,
            session_id: id.into(),
            name: name.into(),
            pid: 1,
            cwd: "/".into(),
            project_root: None,
            git_root: None,
            transcript_path: None,
            summary: String::new(),
            idle: false,
            live,
            registered_ms: 0,
            last_active_ms: 0,
            pending: 0,
        }
    }

    #[test]
    fn a_peer_is_found_by_the_daemons_rule_for_names_and_id_prefixes() {
        let all = [
            session(1, "cafe", "1234-named", true),
            session(2, "other", "cafe0001-other", true),
            session(3, "app", "aaaa-old", false),
            session(4, "app", "bbbb-new", true),
        ];
        let err = find_peer(&all, "CAFE").unwrap_err();
        assert!(
            err.contains("1234-named") && err.contains("cafe0001-other"),
            "{err}"
        );
        assert_eq!(find_peer(&all, "cafe0").unwrap().key, 2);
        assert_eq!(find_peer(&all, "1234").unwrap().key, 1);
        assert_eq!(find_peer(&all, "app").unwrap().key, 4, "the live one");
        assert_eq!(find_peer(&all, "aaaa").unwrap().key, 3);
        assert!(find_peer(&all, "nobody").is_err());
    }

    #[test]
    fn an_address_on_another_machine_is_refused_and_one_on_this_machine_is_found() {
        let all = [session(1, "api", "1234-api", true)];
        let remote = [RemoteSession {
            host: "devbox".into(),
            session_id: "5678-bob".into(),
            name: "bob".into(),
            summary: String::new(),
            idle: false,
            pending: 0,
            live: true,
            seen_ms: 0,
        }];
        // A bare name only another machine has is that machine's session.
        assert_eq!(
            find_local_peer(&all, &remote, "BOB", Some("laptop")).unwrap_err(),
            PeerError::Remote {
                name: "bob".into(),
                host: "devbox".into()
            }
        );
        let err = find_local_peer(&all, &[], "bob@devbox", Some("laptop")).unwrap_err();
        assert_eq!(
            err,
            PeerError::Remote {
                name: "bob".into(),
                host: "devbox".into()
            }
        );
        let text = err.to_string();
        assert!(text.contains("transcripts stay on their machine"), "{text}");
        assert!(text.contains("`mesh ask bob@devbox`"), "{text}");
        // Not joined: any address is another machine's.
        assert!(matches!(
            find_local_peer(&all, &[], "api@laptop", None),
            Err(PeerError::Remote { .. })
        ));
        assert_eq!(
            find_local_peer(&all, &remote, "api@LAPTOP", Some("laptop"))
                .unwrap()
                .key,
            1
        );
        assert_eq!(
            find_local_peer(&all, &remote, " api ", Some("laptop"))
                .unwrap()
                .key,
            1
        );
        assert!(matches!(
            find_local_peer(&all, &remote, "nobody@laptop", Some("laptop")),
            Err(PeerError::NotFound(_))
        ));
    }

    const USER: &str = r#"{"type":"user","timestamp":"2026-11-23T10:00:00Z","message":{"role":"user","content":"fix the login form"}}"#;

    #[test]
    fn a_line_over_the_cap_is_skipped_without_being_held_and_the_next_is_read() {
        let data = b"short\n0123456789abcdef\nnext\npartial";
        let mut reader = io::BufReader::with_capacity(4, &data[..]);
        let mut line = Vec::new();
        let mut got = Vec::new();
        while let Some(fits) = next_line(&mut reader, &mut line, 8).unwrap() {
            assert!(line.len() <= 8, "held {} bytes", line.len());
            got.push((fits, String::from_utf8(line.clone()).unwrap()));
        }
        assert_eq!(
            got,
            [
                (true, "short\n".to_owned()),
                (false, String::new()),
                (true, "next\n".to_owned()),
                (true, "partial".to_owned()),
            ]
        );
    }
    const ASSISTANT: &str = r#"{"type":"assistant","message":{"role":"assistant","content":[{"type":"thinking","thinking":"secret"},{"type":"text","text":"Looking at it."},{"type":"tool_use","name":"Bash","input":{"command":"cargo test"}}]}}"#;
    const RESULT: &str = r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"test result: FAILED"}]}]}}"#;

    #[test]
    fn turns_skip_other_records_bad_lines_and_a_partial_last_line() {
        let f = transcript(&[
            r#"{"type":"summary","summary":"old"}"#,
            USER,
            "not json",
            r#"{"type":"queue-operation","operation":"enqueue"}"#,
            ASSISTANT,
            RESULT,
            r#"{"type":"assistant","message":{"role":"assis"#,
        ]);
        let (turns, total) = last_turns(f.path(), 10, false).unwrap();
        assert_eq!(total, 3);
        assert_eq!(turns.len(), 3);
        assert_eq!(turns[0].text, "fix the login form");
        assert_eq!(turns[0].timestamp.as_deref(), Some("2026-11-23T10:00:00Z"));
        assert_eq!(turns[1].role, "assistant");
        assert!(turns[1].text.contains("Looking at it."));
        assert!(turns[1].text.contains("[tool_use Bash]"));
        assert!(turns[1].text.contains("cargo test"));
        assert!(!turns[1].text.contains("secret"), "thinking is left out");
        assert!(turns[2].text.contains("[tool_result]\ntest result: FAILED"));
        let (two, total) = last_turns(f.path(), 2, false).unwrap();
        assert_eq!(total, 3);
        assert_eq!(two.iter().map(|t| t.index).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(turn(f.path(), 1, false).unwrap().unwrap(), turns[1]);
        assert_eq!(turn(f.path(), 3, false).unwrap(), None);
    }

    #[test]
    fn redaction_cuts_long_lines_and_long_tool_output_unless_raw() {
        let long_line = "x".repeat(LINE_CAP + 50);
        let many: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
        let record = serde_json::json!({
            "type": "user",
            "message": {"role": "user", "content": [
                {"type": "text", "text": long_line},
                {"type": "tool_result", "content": many.join("\n")},
            ]},
        })
        .to_string();
        let f = transcript(&[&record]);
        let t = turn(f.path(), 0, false).unwrap().unwrap();
        assert!(t.text.contains("… [50 more characters]"), "{}", t.text);
        assert!(
            t.text
                .contains(&format!("… [{} more lines]", 40 - BLOCK_LINES))
        );
        assert!(!t.text.contains("line 39"));
        let raw = turn(f.path(), 0, true).unwrap().unwrap();
        assert!(raw.text.contains(&long_line) && raw.text.contains("line 39"));
    }

    #[test]
    fn one_query_rule_and_a_long_match_shown_around_it() {
        let find = |q: &str, re: bool, line: &str| Query::parse(q, re).unwrap().find(line);
        assert_eq!(find("/fo+/", false, "xfooo"), Some(1..5));
        assert_eq!(
            find(" /fo+/ ", false, "xfooo"),
            Some(1..5),
            "trimmed for the slashes"
        );
        assert_eq!(find("fo+", false, "xfooo"), None, "plain text is a literal");
        assert_eq!(
            find("FO+", false, "a fo+ b"),
            Some(2..5),
            "case-insensitive"
        );
        assert_eq!(find("fo+", true, "xfooo"), Some(1..5));
        assert_eq!(find("/", false, "a/b"), Some(1..2));
        assert_eq!(find("ÉTÉ", false, "un été"), Some(3..8));
        assert!(Query::parse("/(/", false).is_err());
        let line = format!("{}needle{}", "a".repeat(1000), "b".repeat(1000));
        let shown = cut_around(&line, 1000..1006);
        assert!(shown.starts_with(&format!("[{} characters before] …", 1000 - LINE_CAP / 4)));
        assert!(shown.contains("needle"), "{shown}");
        assert!(shown.ends_with(&format!(
            "… [{} more characters]",
            2006 - 1000 + LINE_CAP / 4 - LINE_CAP
        )));
        assert_eq!(cut_around("short needle", 6..12), "short needle");
        // Near the start: cut as any line.
        assert_eq!(cut_around(&line[999..], 1..7), cut_line(&line[999..]));
    }

    #[test]
    fn search_by_substring_or_regex_with_context() {
        let f = transcript(&[USER, ASSISTANT, RESULT]);
        let (m, more) =
            search(f.path(), &Query::substring("LOGIN").unwrap(), 1, 10, false).unwrap();
        assert!(!more);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].turn, m[0].line), (0, 0));
        let q = Query::regex(r"result: (FAILED|ok)").unwrap();
        let (m, _) = search(f.path(), &q, 1, 10, false).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].turn, 2);
        assert_eq!(m[0].excerpt, ["[tool_result]", "test result: FAILED"]);
        let (m, more) = search(f.path(), &Query::substring("e").unwrap(), 0, 2, false).unwrap();
        assert_eq!(m.len(), 2);
        assert!(more);
        let err = Query::regex("a(b").unwrap_err();
        assert!(
            err.starts_with("invalid regular expression `a(b`: unclosed group\n"),
            "{err}"
        );
        assert!(err.contains('^') && !err.contains("pattern 0"), "{err}");
    }
}
