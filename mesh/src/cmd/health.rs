//! `mesh health [--json]`: run every check of [`mesh::health`] and print one line per
//! check (or one JSON document); exit 1 when any check failed, 0 otherwise (warnings do not
//! fail). Never starts the daemon.

use std::process::ExitCode;

use anyhow::Context;
use mesh::health::{self, Inputs};

use super::{JsonFlag, emit, emit_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub out: JsonFlag,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inputs = Inputs::from_env().context("cannot locate the mesh state directory")?;
    let report = health::run(&inputs);
    if args.out.json {
        emit_json(&report)?;
    } else {
        emit(&format!(
            "{}\n{}\n",
            health::render(&report),
            report.summary()
        ))?;
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
