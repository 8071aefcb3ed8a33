//! `mesh list [--all] [--scope machine|repo|directory]`: the peers as a table; run inside a
//! session, its own row is marked `(you)` (`"you": true` in `--json`).

use std::process::ExitCode;

use anyhow::Context;
use mesh::display::{now_ms, relative_time, render_table, session_state, short_id};
use mesh::json::ListJson;
use mesh_client::CallerFromEnv;
use mesh_proto::{Caller, List, Scope, WhoAmI, sanitize};

use super::{JsonFlag, connect, emit, emit_json, session_cwd};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Include sessions that are no longer running
    #[arg(long)]
    pub all: bool,
    /// Every session on this machine, or only those in this git repository or directory
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
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Machine => Scope::Machine,
            ScopeArg::Repo => Scope::Repo,
            ScopeArg::Directory => Scope::Directory,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scope = Scope::from(args.scope);
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
        .list(List {
            caller,
            scope,
            include_offline: args.all,
        })
        .context("cannot list sessions")?;
    if args.out.json {
        emit_json(&ListJson::new(scope, args.all, &peers.sessions, me))?;
        return Ok(ExitCode::SUCCESS);
    }
    if peers.sessions.is_empty() {
        emit(if args.all {
            "no sessions\n"
        } else {
            "no live sessions (use --all to include offline ones)\n"
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    let rows: Vec<Vec<String>> = peers
        .sessions
        .iter()
        .map(|s| {
            vec![
                if Some(s.key) == me {
                    format!("{} (you)", s.name)
                } else {
                    s.name.clone()
                },
                short_id(&s.session_id).to_owned(),
                s.pid.to_string(),
                session_state(s).to_owned(),
                s.pending.to_string(),
                relative_time(now, s.last_active_ms),
                session_cwd(s),
                sanitize::terminal_cut(&s.summary, 48),
            ]
        })
        .collect();
    emit(&render_table(
        &[
            "NAME",
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
