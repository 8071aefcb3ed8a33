//! The session registry: who is running, under which name, in which process.
//!
//! A row is one Claude Code *process lineage*: `/clear` (same process, new session id) updates
//! the row found by (pid, start time); `--resume` (new process, same session id) updates the
//! row found by session id. Mail addressed to the row's key follows it either way.

use std::collections::HashMap;

use mesh_proto::{AskResult, ErrorCode, Scope, SessionInfo, WireError};
use rusqlite::{OptionalExtension, Row, params};

use super::{Ctx, Reader};

/// A row of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub key: i64,
    pub session_id: String,
    pub pid: u32,
    pub start_time: u64,
    pub name: String,
    pub name_norm: String,
    pub cwd: String,
    pub project_root: Option<String>,
    pub git_root: Option<String>,
    pub transcript_path: Option<String>,
    pub summary: String,
    pub idle: bool,
    pub live: bool,
    pub registered_ms: i64,
    pub last_active_ms: i64,
}

/// `summary` is the session's own, or else its default (folder and branch, set at registration).
const COLUMNS: &str = "key, session_id, pid, start_time, name, name_norm, cwd, project_root, git_root, \
                       transcript_path, CASE WHEN summary <> '' THEN summary ELSE default_summary END, \
                       idle, live, registered_ms, last_active_ms";

fn from_row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        key: key_at(r, 0)?,
        session_id: r.get(1)?,
        pid: r.get(2)?,
        // Checked: a start time that does not fit is an error, never a wrapped value.
        start_time: r.get::<_, u64>(3)?,
        name: r.get(4)?,
        name_norm: r.get(5)?,
        cwd: r.get(6)?,
        project_root: r.get(7)?,
        git_root: r.get(8)?,
        transcript_path: r.get(9)?,
        summary: r.get(10)?,
        idle: r.get(11)?,
        live: r.get(12)?,
        registered_ms: r.get(13)?,
        last_active_ms: r.get(14)?,
    })
}

/// The session key in column `idx`: a rowid, which SQLite assigns from 1 up; a negative one
/// (written by something else) is an error, so that [`SessionRow::wire_key`] cannot fail.
fn key_at(r: &Row<'_>, idx: usize) -> rusqlite::Result<i64> {
    let key: i64 = r.get(idx)?;
    if key < 0 {
        return Err(rusqlite::Error::IntegralValueOutOfRange(idx, key));
    }
    Ok(key)
}

impl SessionRow {
    /// The key as the wire carries it. Infallible: `key` is never negative (a row is read by
    /// `from_row`, which checks it, and `unsigned_abs` of a non-negative value is itself).
    pub fn wire_key(&self) -> u64 {
        self.key.unsigned_abs()
    }

    /// The wire form, moving the strings (list builds a thousand of these).
    pub fn into_info(self, pending: u32) -> SessionInfo {
        SessionInfo {
            key: self.wire_key(),
            session_id: self.session_id,
            name: self.name,
            pid: self.pid,
            cwd: self.cwd,
            project_root: self.project_root,
            git_root: self.git_root,
            transcript_path: self.transcript_path,
            summary: self.summary,
            idle: self.idle,
            live: self.live,
            registered_ms: self.registered_ms,
            last_active_ms: self.last_active_ms,
            pending,
        }
    }

    pub fn info(&self, pending: u32) -> SessionInfo {
        SessionInfo {
            key: self.wire_key(),
            session_id: self.session_id.clone(),
            name: self.name.clone(),
            pid: self.pid,
            cwd: self.cwd.clone(),
            project_root: self.project_root.clone(),
            git_root: self.git_root.clone(),
            transcript_path: self.transcript_path.clone(),
            summary: self.summary.clone(),
            idle: self.idle,
            live: self.live,
            registered_ms: self.registered_ms,
            last_active_ms: self.last_active_ms,
            pending,
        }
    }
}

pub use super::norm;

/// What a SessionStart tells us, after the daemon checked the process itself.
#[derive(Debug, Clone)]
pub struct Registration {
    pub session_id: String,
    pub pid: u32,
    /// Read by the daemon from the OS, never from the client.
    pub start_time: u64,
    pub name: String,
    pub cwd: String,
    pub project_root: Option<String>,
    pub git_root: Option<String>,
    pub transcript_path: Option<String>,
    /// Shown until the session sets a summary of its own.
    pub default_summary: String,
}

pub(crate) use super::db;

/// Register or re-register a session; it is live and busy afterwards.
pub fn register(ctx: &mut Ctx<'_>, reg: Registration) -> Result<SessionRow, WireError> {
    let by_process: Option<i64> = ctx
        .conn
        .prepare_cached(
            "SELECT key FROM sessions WHERE pid = ?1 AND start_time = ?2 ORDER BY key DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![reg.pid, reg.start_time], |r| r.get(0))
                .optional()
        })
        .map_err(|e| db(ctx, e))?;
    let key = match by_process {
        Some(key) => Some(key),
        None => ctx
            .conn
            .prepare_cached(
                "SELECT key FROM sessions WHERE session_id = ?1 ORDER BY key DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![reg.session_id], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| db(ctx, e))?,
    };
    // One statement for both cases: a NULL key inserts a new row, an existing key updates it.
    let key: i64 = ctx
        .conn
        .prepare_cached(
            "INSERT INTO sessions (key, session_id, pid, start_time, name, name_norm, cwd, project_root,
                                   git_root, transcript_path, registered_ms, last_active_ms,
                                   default_summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)
             ON CONFLICT(key) DO UPDATE SET session_id = excluded.session_id, pid = excluded.pid,
                 start_time = excluded.start_time, name = excluded.name, name_norm = excluded.name_norm,
                 cwd = excluded.cwd, project_root = excluded.project_root, git_root = excluded.git_root,
                 transcript_path = excluded.transcript_path, idle = 0, live = 1,
                 last_active_ms = excluded.last_active_ms, default_summary = excluded.default_summary
             RETURNING key",
        )
        .and_then(|mut s| {
            s.query_row(
                params![
                    key,
                    reg.session_id,
                    reg.pid,
                    reg.start_time,
                    reg.name,
                    norm(&reg.name),
                    reg.cwd,
                    reg.project_root,
                    reg.git_root,
                    reg.transcript_path,
                    ctx.now_ms,
                    reg.default_summary
                ],
                |r| r.get(0),
            )
        })
        .map_err(|e| db(ctx, e))?;
    by_key(ctx, key)?
        .ok_or_else(|| WireError::new(ErrorCode::Internal, "registered session vanished"))
}

pub fn by_key(ctx: &Reader<'_>, key: i64) -> Result<Option<SessionRow>, WireError> {
    ctx.conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM sessions WHERE key = ?1"))
        .and_then(|mut s| s.query_row(params![key], from_row).optional())
        .map_err(|e| db(ctx, e))
}

/// End the registration whose current session id is `session_id` (a late SessionEnd of an
/// id that was since replaced matches nothing). Its mail stays queued.
pub fn deregister(ctx: &mut Ctx<'_>, session_id: &str) -> Result<Option<i64>, WireError> {
    let key: Option<i64> = ctx
        .conn
        .prepare_cached("SELECT key FROM sessions WHERE session_id = ?1 AND live = 1")
        .and_then(|mut s| s.query_row(params![session_id], |r| r.get(0)).optional())
        .map_err(|e| db(ctx, e))?;
    if let Some(key) = key {
        set_dead(ctx, key)?;
    }
    Ok(key)
}

/// The process `(pid, start)` of session `key` has gone. Marks the row dead unless it was
/// re-registered with another process meanwhile, and wakes askers waiting on it.
pub fn process_exited(
    ctx: &mut Ctx<'_>,
    key: i64,
    pid: u32,
    start: u64,
) -> Result<bool, WireError> {
    let n = ctx
        .conn
        .prepare_cached("SELECT count(*) FROM sessions WHERE key = ?1 AND pid = ?2 AND start_time = ?3 AND live = 1")
        .and_then(|mut s| s.query_row(params![key, pid, start], |r| r.get::<_, i64>(0)))
        .map_err(|e| db(ctx, e))?;
    if n == 0 {
        return Ok(false);
    }
    set_dead(ctx, key)?;
    Ok(true)
}

fn set_dead(ctx: &mut Ctx<'_>, key: i64) -> Result<(), WireError> {
    ctx.conn
        .prepare_cached("UPDATE sessions SET live = 0, idle = 0 WHERE key = ?1")
        .and_then(|mut s| s.execute(params![key]))
        .map_err(|e| db(ctx, e))?;
    let gone = ctx.waiters.take_for_target(key);
    if !gone.is_empty() {
        ctx.after_commit(move || {
            for w in gone {
                let _ = w.tx.send(AskResult::PeerGone);
            }
        });
    }
    Ok(())
}

/// `(key, pid, start)` of every session believed live.
pub fn live_processes(ctx: &Reader<'_>) -> Result<Vec<(i64, u32, u64)>, WireError> {
    ctx.conn
        .prepare_cached("SELECT key, pid, start_time FROM sessions WHERE live = 1")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, u64>(2)?)))?
                .collect()
        })
        .map_err(|e| db(ctx, e))
}

pub fn set_idle(ctx: &mut Ctx<'_>, key: i64, idle: bool) -> Result<(), WireError> {
    ctx.conn
        .prepare_cached("UPDATE sessions SET idle = ?2, last_active_ms = ?3 WHERE key = ?1")
        .and_then(|mut s| s.execute(params![key, idle, ctx.now_ms]))
        .map_err(|e| db(ctx, e))?;
    Ok(())
}

pub fn set_summary(ctx: &mut Ctx<'_>, key: i64, summary: &str) -> Result<(), WireError> {
    if summary.len() > mesh_proto::MAX_SUMMARY_LEN {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "the summary is {} bytes; the limit is {}",
                summary.len(),
                mesh_proto::MAX_SUMMARY_LEN
            ),
        ));
    }
    let clean: String = summary
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    ctx.conn
        .prepare_cached("UPDATE sessions SET summary = ?2, last_active_ms = ?3 WHERE key = ?1")
        .and_then(|mut s| s.execute(params![key, clean.trim(), ctx.now_ms]))
        .map_err(|e| db(ctx, e))?;
    Ok(())
}

pub fn touch(ctx: &mut Ctx<'_>, key: i64) -> Result<(), WireError> {
    ctx.conn
        .prepare_cached("UPDATE sessions SET last_active_ms = ?2 WHERE key = ?1")
        .and_then(|mut s| s.execute(params![key, ctx.now_ms]))
        .map_err(|e| db(ctx, e))?;
    Ok(())
}

/// How a caller identified itself, with every process already checked against the OS.
#[derive(Debug, Clone, Default)]
pub struct CallerProcs {
    /// `CLAUDE_PID` and that process's start time, if it exists.
    pub claude: Option<(u32, u64)>,
    /// The connecting process and its ancestors with start times, nearest first (read from the
    /// OS only if `claude` does not already identify the session).
    pub lineage: crate::procinfo::LazyLineage,
    /// `CLAUDE_CODE_SESSION_ID`.
    pub session_id: Option<String>,
}

/// Find the caller's live session (docs/interface.md, "Identity"), or `None`: the user.
pub fn resolve_caller(
    ctx: &Reader<'_>,
    who: &CallerProcs,
) -> Result<Option<SessionRow>, WireError> {
    let mut by_process = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE pid = ?1 AND start_time = ?2 AND live = 1 ORDER BY key DESC LIMIT 1"
        ))
        .map_err(|e| db(ctx, e))?;
    let mut find = |pid: u32, start: u64| {
        by_process
            .query_row(params![pid, start], from_row)
            .optional()
            .map_err(|e| db(ctx, e))
    };
    if let Some((pid, start)) = who.claude
        && let Some(row) = find(pid, start)?
    {
        return Ok(Some(row));
    }
    // Only now is the lineage read from the OS (once per connection, cached).
    for &(pid, start) in who.lineage.get() {
        if let Some(row) = find(pid, start)? {
            return Ok(Some(row));
        }
    }
    match &who.session_id {
        Some(id) => ctx
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM sessions WHERE session_id = ?1 AND live = 1 ORDER BY key DESC LIMIT 1"
            ))
            .and_then(|mut s| s.query_row(params![id], from_row).optional())
            .map_err(|e| db(ctx, e)),
        None => Ok(None),
    }
}

/// Sessions ordered by name, then age. A table scan sorted here: SQLite would walk the name
/// index and fetch each row separately, ten times slower for a thousand sessions.
fn all_rows(ctx: &Reader<'_>, include_offline: bool) -> Result<Vec<SessionRow>, WireError> {
    let sql = if include_offline {
        format!("SELECT {COLUMNS} FROM sessions NOT INDEXED")
    } else {
        format!("SELECT {COLUMNS} FROM sessions NOT INDEXED WHERE live = 1")
    };
    let mut rows: Vec<SessionRow> = ctx
        .conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_map([], from_row)?.collect())
        .map_err(|e| db(ctx, e))?;
    rows.sort_unstable_by(|a, b| a.name_norm.cmp(&b.name_norm).then(a.key.cmp(&b.key)));
    Ok(rows)
}

/// Pending message counts: by recipient key, and by name for mail whose addressee is gone.
struct Pending {
    by_key: HashMap<i64, u32>,
    orphaned_by_name: HashMap<String, u32>,
}

impl Pending {
    fn load(ctx: &Reader<'_>) -> Result<Self, WireError> {
        let by_key = ctx
            .conn
            .prepare_cached(
                "SELECT to_key, count(*) FROM messages WHERE delivered_ms IS NULL AND to_key IS NOT NULL GROUP BY to_key",
            )
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(|e| db(ctx, e))?;
        let orphaned_by_name = ctx
            .conn
            .prepare_cached(
                "SELECT to_name_norm, count(*) FROM messages m WHERE delivered_ms IS NULL AND to_name_norm IS NOT NULL
                 AND (to_key IS NULL OR NOT EXISTS (SELECT 1 FROM sessions s WHERE s.key = m.to_key AND s.live = 1))
                 GROUP BY to_name_norm",
            )
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(|e| db(ctx, e))?;
        Ok(Self {
            by_key,
            orphaned_by_name,
        })
    }

    /// What `row` would receive if it consumed now (for a dead row: what waits on its key).
    fn of(&self, row: &SessionRow) -> u32 {
        let own = self.by_key.get(&row.key).copied().unwrap_or(0);
        if !row.live {
            return own;
        }
        // Mail to a dead row of the same name is counted on the dead row too (by_key);
        // orphaned_by_name already excludes mail whose addressee is live.
        own + self
            .orphaned_by_name
            .get(&row.name_norm)
            .copied()
            .unwrap_or(0)
    }
}

/// SQL condition on `messages` selecting what session `?1` (key) named `?2` (normalised) would
/// receive: mail to its key, plus mail to its name whose addressee is not live. Written as two
/// lookups in the partial "pending" indexes: an `OR` across the two columns would make SQLite
/// scan every message ever sent (they are never deleted), slowing every hook as the database
/// ages. Combine with `delivered_ms IS NULL`.
pub(crate) const PENDING_FOR_SESSION: &str = "id IN (
    SELECT id FROM messages WHERE to_key = ?1 AND delivered_ms IS NULL
    UNION ALL
    SELECT id FROM messages m WHERE to_name_norm = ?2 AND delivered_ms IS NULL
      AND (to_key IS NULL OR (to_key != ?1 AND NOT EXISTS
           (SELECT 1 FROM sessions s WHERE s.key = m.to_key AND s.live = 1))))";

/// The pending count of one session (what it would receive if it consumed now), by index.
pub fn pending_of(ctx: &Reader<'_>, row: &SessionRow) -> Result<u32, WireError> {
    // An offline row counts only what waits on its key (its name's mail goes to live peers).
    let name = row.live.then_some(row.name_norm.as_str());
    ctx.conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM messages WHERE delivered_ms IS NULL AND {PENDING_FOR_SESSION}"
        ))
        .and_then(|mut s| s.query_row(params![row.key, name], |r| r.get(0)))
        .map_err(|e| db(ctx, e))
}

/// The most one `list` answer carries, in bytes of its sessions' text: half a frame
/// ([`mesh_proto::MAX_FRAME_LEN`]). Every field a client registers is bounded
/// ([`mesh_proto::MAX_PATH_LEN`] and friends), so even the largest session fits many times;
/// thousands of ordinary ones fit whole. Past it, live sessions come first, then the most
/// recently active ended ones.
pub const LIST_BYTES: usize = mesh_proto::MAX_FRAME_LEN / 2;

/// What a session costs in a `list` answer: its text fields plus the numbers and their
/// encoding.
fn list_cost(r: &SessionRow) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    r.session_id.len()
        + r.name.len()
        + r.cwd.len()
        + opt(&r.project_root)
        + opt(&r.git_root)
        + opt(&r.transcript_path)
        + r.summary.len()
        + 64
}

/// Sessions for `list`, relative to `scope_cwd` / `scope_git_root` for the narrower scopes,
/// within [`LIST_BYTES`].
pub fn list(
    ctx: &Reader<'_>,
    scope: Scope,
    scope_cwd: Option<&str>,
    scope_git_root: Option<&str>,
    include_offline: bool,
) -> Result<Vec<SessionInfo>, WireError> {
    let pending = Pending::load(ctx)?;
    let mut rows: Vec<SessionRow> = all_rows(ctx, include_offline)?
        .into_iter()
        .filter(|r| match scope {
            Scope::Machine => true,
            Scope::Repo => match scope_git_root {
                Some(g) => r.git_root.as_deref() == Some(g),
                None => scope_cwd.is_some_and(|c| r.cwd == c),
            },
            Scope::Directory => scope_cwd.is_some_and(|c| r.cwd == c),
        })
        .collect();
    if rows.iter().map(list_cost).sum::<usize>() > LIST_BYTES {
        // Keep the live ones and the most recent ended ones, in the usual order.
        let mut by_recency: Vec<(bool, i64, i64, usize)> = rows
            .iter()
            .map(|r| (r.live, r.last_active_ms, r.key, list_cost(r)))
            .collect();
        by_recency.sort_unstable_by(|a, b| b.cmp(a));
        let mut used = 0;
        let kept: std::collections::HashSet<i64> = by_recency
            .into_iter()
            .take_while(|&(_, _, _, cost)| {
                used += cost;
                used <= LIST_BYTES
            })
            .map(|(_, _, key, _)| key)
            .collect();
        rows.retain(|r| kept.contains(&r.key));
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let pending = pending.of(&r);
            r.into_info(pending)
        })
        .collect())
}

/// Who a message is for.
#[derive(Debug, Clone)]
pub enum Target {
    /// One session (live, or offline: mail waits for it or the next session of its name).
    /// `by_id`: the address was an id prefix, so the mail is for that session only and never
    /// follows its name to another session.
    One { row: Box<SessionRow>, by_id: bool },
    /// `*`: every live session but the sender.
    All(Vec<SessionRow>),
    /// A session on another machine (`name@host`, or a bare name only another machine has).
    Remote(super::remote::RemoteTarget),
    /// `*@*` (every live session of the team but the sender) or `*@host`.
    Many {
        local: Vec<SessionRow>,
        remote: Vec<super::remote::RemoteTarget>,
    },
}

/// A session found by its exact session id.
pub fn by_session_id(ctx: &Reader<'_>, session_id: &str) -> Result<Option<SessionRow>, WireError> {
    Ok(query_rows(ctx, "session_id = ?1", session_id)?
        .into_iter()
        .max_by_key(|r| (r.live, r.last_active_ms, r.key)))
}

/// The session of a name: its live one (the most recently active of several), else its most
/// recently active ended one.
pub fn by_name(ctx: &Reader<'_>, name_norm: &str) -> Result<Option<SessionRow>, WireError> {
    Ok(query_rows(ctx, "name_norm = ?1", name_norm)?
        .into_iter()
        .max_by_key(|r| (r.live, r.last_active_ms, r.key)))
}

/// Resolve an address that may name another machine (docs/interface.md, "Addresses"):
/// `name@host`, `*@host`, `*@*`; a bare name is this machine's session of that name, else the
/// one remote session of that name (several: ambiguous, listed). `fed`: this machine in the
/// mesh (`None`: not in one, and every address is local, as [`resolve_target`] reads it).
pub fn resolve_address(
    ctx: &Reader<'_>,
    fed: Option<&super::Identity>,
    to: &str,
    sender: Option<i64>,
    now_ms: i64,
) -> Result<Target, WireError> {
    use super::remote as fed_store;
    let to = to.trim();
    let Some(fed) = fed else {
        if to.contains('@') {
            return Err(WireError::new(
                ErrorCode::UnknownPeer,
                format!(
                    "`{to}` names a host, but this machine is not part of a mesh (`mesh join \
                     <nats-url>` joins one)"
                ),
            ));
        }
        return resolve_target(ctx, to, sender);
    };
    let Some((name, host)) = to.rsplit_once('@') else {
        return match resolve_target(ctx, to, sender) {
            Err(e) if e.code == ErrorCode::UnknownPeer && to != "*" => {
                let found = fed_store::remote_named(ctx, None, &norm(to))?;
                match found.as_slice() {
                    [] => Err(e),
                    [(one, _)] => Ok(Target::Remote(one.clone())),
                    many => Err(WireError::new(
                        ErrorCode::AmbiguousPeer,
                        format!(
                            "`{to}` is on {} machines: {}; address one as name@host",
                            many.len(),
                            many.iter()
                                .map(|(t, _)| t.address())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                }
            }
            other => other,
        };
    };
    let (name, host) = (name.trim(), host.trim());
    if host == "*" {
        if name != "*" {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                format!("`{to}`: `*@*` is everyone; a name takes one host (`{name}@<host>`)"),
            ));
        }
        let local: Vec<SessionRow> = all_rows(ctx, false)?
            .into_iter()
            .filter(|r| Some(r.key) != sender)
            .collect();
        let remote = fed_store::remote_live(ctx, None, now_ms)?;
        if local.is_empty() && remote.is_empty() {
            return Err(WireError::new(
                ErrorCode::UnknownPeer,
                "no live peers on any machine to send to (`mesh list --scope mesh` shows who runs)",
            ));
        }
        return Ok(Target::Many { local, remote });
    }
    if host.eq_ignore_ascii_case(&fed.host) {
        return resolve_target(ctx, name, sender);
    }
    let Some(host) = fed_store::known_host(ctx, host)? else {
        return Err(WireError::new(
            ErrorCode::UnknownPeer,
            format!(
                "no machine named `{host}` in the mesh (`mesh keys` lists the known hosts, `mesh \
                 list --scope mesh` their sessions)"
            ),
        ));
    };
    if name == "*" {
        let remote = fed_store::remote_live(ctx, Some(&host), now_ms)?;
        if remote.is_empty() {
            return Err(WireError::new(
                ErrorCode::UnknownPeer,
                format!("no live sessions on {host} to send to"),
            ));
        }
        return Ok(Target::Many {
            local: Vec::new(),
            remote,
        });
    }
    let found = fed_store::remote_named(ctx, Some(&host), &norm(name))?;
    match found.as_slice() {
        [(one, _)] => Ok(Target::Remote(one.clone())),
        [] => Err(WireError::new(
            ErrorCode::UnknownPeer,
            format!(
                "no session named `{name}` on {host} (`mesh list --scope mesh` shows the \
                 sessions of every machine)"
            ),
        )),
        many => Err(WireError::new(
            ErrorCode::AmbiguousPeer,
            format!(
                "{} sessions on {host} are named `{name}` (ids {}); ask one of them to take \
                 another name",
                many.len(),
                many.iter()
                    .map(|(t, _)| short_id(&t.session_id).to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Resolve an address: `*`, a name (case-insensitive), or an id prefix of >= 4 characters.
///
/// A name means its live session (two live sessions of one name: ambiguous), else its most
/// recently active ended one. An id prefix means the live sessions whose id starts with it,
/// else every known one (more than one: ambiguous). When the address is both a name and an id
/// prefix of another session, neither wins: it is an [`ErrorCode::AmbiguousPeer`] error that
/// lists both. `sender` is excluded from `*`; addressing oneself is refused.
pub fn resolve_target(
    ctx: &Reader<'_>,
    to: &str,
    sender: Option<i64>,
) -> Result<Target, WireError> {
    let to = to.trim();
    if to.is_empty() {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            "no recipient given: name a peer, an id, or `*`",
        ));
    }
    if to == "*" {
        let all: Vec<SessionRow> = all_rows(ctx, false)?
            .into_iter()
            .filter(|r| Some(r.key) != sender)
            .collect();
        if all.is_empty() {
            return Err(WireError::new(
                ErrorCode::UnknownPeer,
                "no live peers to send to (`mesh list` shows who runs)",
            ));
        }
        return Ok(Target::All(all));
    }
    let wanted = norm(to);
    let named = query_rows(ctx, "name_norm = ?1", &wanted)?;
    let live_named: Vec<&SessionRow> = named.iter().filter(|r| r.live).collect();
    if live_named.len() > 1 {
        return Err(ambiguous(to, &live_named));
    }
    // A known name that is offline: its most recent session keeps the mail (a `--resume` of it,
    // or the next session of that name, receives it).
    let by_name: Option<&SessionRow> = live_named
        .first()
        .copied()
        .or_else(|| named.iter().max_by_key(|r| (r.last_active_ms, r.key)));
    let matches = if wanted.len() >= 4 {
        query_rows(
            ctx,
            "substr(lower(session_id), 1, length(?1)) = ?1",
            &wanted,
        )?
    } else {
        Vec::new()
    };
    let live: Vec<&SessionRow> = matches.iter().filter(|r| r.live).collect();
    let by_id: Vec<&SessionRow> = if live.is_empty() {
        matches.iter().collect()
    } else {
        live
    };
    let row = match (by_name, by_id.as_slice()) {
        (Some(n), [i]) if n.key != i.key => return Err(name_or_id(to, n, i)),
        (Some(n), ids) if ids.len() > 1 => {
            let mut all = vec![n];
            all.extend(ids.iter().copied().filter(|i| i.key != n.key));
            return Err(ambiguous(to, &all));
        }
        (Some(n), _) => Target::One {
            row: Box::new(n.clone()),
            by_id: false,
        },
        (None, [i]) => Target::One {
            row: Box::new((*i).clone()),
            by_id: true,
        },
        (None, []) => return Err(unknown(ctx, to)?),
        (None, ids) => return Err(ambiguous(to, ids)),
    };
    if let Target::One { row, .. } = &row
        && Some(row.key) == sender
    {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "`{to}` is this session itself ({}, id {}); address a peer (`mesh list` shows them)",
                row.name,
                short_id(&row.session_id)
            ),
        ));
    }
    Ok(row)
}

fn unknown(ctx: &Reader<'_>, to: &str) -> Result<WireError, WireError> {
    let mut names: Vec<String> = all_rows(ctx, false)?.into_iter().map(|r| r.name).collect();
    names.dedup();
    let known = if names.is_empty() {
        "no sessions are running".to_owned()
    } else {
        format!("live peers: {}", names.join(", "))
    };
    Ok(WireError::new(
        ErrorCode::UnknownPeer,
        format!(
            "no peer named or with id `{to}` ({known}; `mesh list --all` shows every known session)"
        ),
    ))
}

/// `to` is the name of one session and an id prefix of another.
fn name_or_id(to: &str, named: &SessionRow, id: &SessionRow) -> WireError {
    let live = |r: &SessionRow| if r.live { "live" } else { "offline" };
    WireError::new(
        ErrorCode::AmbiguousPeer,
        format!(
            "`{to}` is both the name of {} (id {}, {}, {}) and an id prefix of {} (id {}, {}, {}); \
             address one by a longer id prefix",
            named.name,
            short_id(&named.session_id),
            named.cwd,
            live(named),
            id.name,
            short_id(&id.session_id),
            id.cwd,
            live(id)
        ),
    )
}

fn query_rows(ctx: &Reader<'_>, filter: &str, arg: &str) -> Result<Vec<SessionRow>, WireError> {
    ctx.conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE {filter} ORDER BY key"
        ))
        .and_then(|mut s| s.query_map(params![arg], from_row)?.collect())
        .map_err(|e| db(ctx, e))
}

fn ambiguous(to: &str, rows: &[&SessionRow]) -> WireError {
    let list: Vec<String> = rows
        .iter()
        .map(|r| {
            // The folder is anyone's choice of name: shown on one line, controls visible.
            format!(
                "{} (id {}, {}, {})",
                r.name,
                short_id(&r.session_id),
                mesh_proto::sanitize::terminal_line(&r.cwd),
                if r.live { "live" } else { "offline" }
            )
        })
        .collect();
    WireError::new(
        ErrorCode::AmbiguousPeer,
        format!(
            "`{to}` matches {} sessions: {}; address one by id (at least 4 characters)",
            rows.len(),
            list.join("; ")
        ),
    )
}

/// The first 8 characters of a session id, for display.
pub fn short_id(id: &str) -> &str {
    id.char_indices().nth(8).map_or(id, |(end, _)| &id[..end])
}
