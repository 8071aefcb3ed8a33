//! `mesh list [--all] [--scope machine|repo|directory|mesh]`: the peers as a table; run inside
//! a session, its own row is marked `(you)` (`"you": true` in `--json`). `--scope mesh` adds the
//! sessions of the other machines of the mesh (their host in the HOST column; this machine's
//! rows show its own host, or `-` when it joined no mesh).

use std::process::ExitCode;

use anyhow::Context;
use mesh::display::{now_ms, relative_time, render_table, session_state, short_id};
use mesh::json::{ListJson, remote_state, scope_str};
use mesh_client::CallerFromEnv;
use mesh_proto::{Caller, List, ListScoped, MeshPeers, Reach, Scope, WhoAmI, sanitize};

use super::{JsonFlag, connect, emit, emit_json, session_cwd};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Include sessions that are no longer running
    #[arg(long)]
    pub all: bool,
    /// Every session on this machine, only those in this git repository or directory, or
    /// every session of every machine in the mesh (`mesh join`)
    #[arg(long, value_enum, default_value_t = ScopeArg::Machine)]
    pub scope: ScopeArg,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScopeArg {
    Machine,
    Repo,
    Directory,
    Mesh,
}

impl ScopeArg {
    /// The local scope and the machines the list covers.
    pub fn split(self) -> (Scope, Reach) {
        match self {
            ScopeArg::Machine => (Scope::Machine, Reach::Machine),
            ScopeArg::Repo => (Scope::Repo, Reach::Machine),
            ScopeArg::Directory => (Scope::Directory, Reach::Machine),
            ScopeArg::Mesh => (Scope::Machine, Reach::Mesh),
        }
    }

    /// As `--json` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeArg::Mesh => "mesh",
            other => scope_str(other.split().0),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (scope, reach) = args.scope.split();
    let caller = Caller::from_env();
    let mut conn = connect()?;
    // Which row is this command's own session (README "Who am I?").
    let me = conn
        .whoami(WhoAmI {
            caller: caller.clone(),
        })
        .context("cannot ask the daemon who this is")?
        .session
        .map(|s| s.key);
    let peers = conn
        .call_typed(ListScoped {
            list: List {
                caller,
                scope,
                include_offline: args.all,
            },
            reach,
        })
        .context("cannot list sessions")?;
    if reach == Reach::Mesh && peers.host.is_none() && !args.out.json {
        super::stdout::warn(
            "this machine is not part of a mesh: only its own sessions (`mesh join <nats-url>` joins one)",
        );
    }
    if args.out.json {
        emit_json(&ListJson::new(args.scope.as_str(), args.all, &peers, me))?;
        return Ok(ExitCode::SUCCESS);
    }
    if peers.local.is_empty() && peers.remote.is_empty() {
        emit(if args.all {
            "no sessions\n"
        } else {
            "no live sessions (use --all to include offline ones)\n"
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows = rows(&peers, me, now_ms());
    // Every cell is shown on one line, control characters visible (render_table).
    emit(&render_table(
        &[
            "NAME",
            "HOST",
            "ID",
            "PID",
            "STATE",
            "PENDING",
            "LAST ACTIVE",
            "CWD",
            "SUMMARY",
        ],
        &rows,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The table's rows: this machine's sessions (`me`: the key of the caller's own), then other
/// machines'.
fn rows(peers: &MeshPeers, me: Option<u64>, now: i64) -> Vec<Vec<String>> {
    let host = peers.host.clone().unwrap_or_else(|| "-".to_owned());
    let local = peers.local.iter().map(|s| {
        vec![
            if Some(s.key) == me {
                format!("{} (you)", s.name)
            } else {
                s.name.clone()
            },
            host.clone(),
            short_id(&s.session_id).to_owned(),
            s.pid.to_string(),
            session_state(s).to_owned(),
            s.pending.to_string(),
            relative_time(now, s.last_active_ms),
            session_cwd(s),
            sanitize::terminal_cut(&s.summary, 48),
        ]
    });
    // Another machine's: no pid or folder of ours; "last active" is when it was last heard of.
    let remote = peers.remote.iter().map(|r| {
        vec![
            r.name.clone(),
            r.host.clone(),
            short_id(&r.session_id).to_owned(),
            "-".to_owned(),
            remote_state(r).to_owned(),
            r.pending.to_string(),
            relative_time(now, r.seen_ms),
            "-".to_owned(),
            sanitize::terminal_cut(&r.summary, 48),
        ]
    });
    local.chain(remote).collect()
}

#[cfg(test)]
mod tests {
    use mesh_proto::{RemoteSession, SessionInfo};

    use super::*;

    #[test]
    fn remote_rows_show_their_host_and_no_pid_or_folder() {
        let local = SessionInfo {
            key: 1,
            session_id: "0123456789abcdef".into(),
            name: "api".into(),
            pid: 42,
            cwd: "/srv/api".into(),
            project_root: None,
            git_root: None,
            transcript_path: None,
            summary: String::new(),
            idle: true,
            live: true,
            registered_ms: 0,
            last_active_ms: 0,
            pending: 0,
        };
        let remote = RemoteSession {
            host: "ci".into(),
            session_id: "fedcba9876543210".into(),
            name: "tests".into(),
            summary: "the suite\x1b[2J".into(),
            idle: false,
            pending: 3,
            live: true,
            seen_ms: 58_000,
        };
        let peers = MeshPeers {
            host: Some("laptop".into()),
            local: vec![local],
            remote: vec![remote],
        };
        let rows = rows(&peers, Some(1), 60_000);
        assert_eq!(
            rows[0][..6],
            ["api (you)", "laptop", "01234567", "42", "idle", "0"]
        );
        assert_eq!(
            rows[1][..8],
            ["tests", "ci", "fedcba98", "-", "busy", "3", "2s ago", "-"]
        );
        assert!(!rows[1][8].contains('\x1b'), "{:?}", rows[1][8]);
        let table = render_table(&["NAME", "HOST"], &rows);
        assert!(!table.contains('\x1b'), "{table}");
    }
}
