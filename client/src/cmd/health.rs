//! `mesh health [--json]` (skeleton; being written).

use std::process::ExitCode;

use super::JsonFlag;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub out: JsonFlag,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mesh health` is not written yet")
}
