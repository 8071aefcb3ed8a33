//! `mesh whoami`: which session this command runs in, or that it acts as the user.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use mesh::display::session_state;
use mesh::json::WhoAmIJson;
use mesh_client::CallerFromEnv;
use mesh_proto::{Caller, WhoAmI};

use super::stdout::warn;
use super::{JsonFlag, connect, emit, emit_json, render_fields, session_cwd};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub out: JsonFlag,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let me = connect()?
        .whoami(WhoAmI {
            caller: Caller::from_env(),
        })
        .context("cannot ask the daemon who this is")?;
    // What naming ignored or cut in the session's `.claude-mesh.json` (the daemon only logs
    // it): re-read here, client-side, as naming reads it.
    let problems = me
        .session
        .as_ref()
        .and_then(|s| mesh::health::config_problems(Path::new(&s.cwd), None))
        .map(|r| r.problems)
        .unwrap_or_default();
    if args.out.json {
        emit_json(&WhoAmIJson::new(me.session.as_ref()))?;
        for p in &problems {
            warn(p);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(s) = me.session else {
        emit("not inside a Claude Code session: acting as the user\n")?;
        return Ok(ExitCode::SUCCESS);
    };
    let mut fields = vec![
        ("name", s.name.clone()),
        ("id", s.session_id.clone()),
        ("pid", s.pid.to_string()),
        ("cwd", session_cwd(&s)),
        ("state", session_state(&s).to_owned()),
        ("pending", s.pending.to_string()),
    ];
    if !s.summary.is_empty() {
        fields.push(("summary", s.summary.clone()));
    }
    for p in problems {
        fields.push(("config", p));
    }
    emit(&render_fields(&fields))?;
    Ok(ExitCode::SUCCESS)
}
