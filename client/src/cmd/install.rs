//! `mesh install` / `mesh uninstall` (skeleton; being written).

use std::process::ExitCode;

use super::JsonFlag;

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Print what would change (a diff of each file) and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Install no service unit; clients start the daemon on demand
    #[arg(long)]
    pub no_service: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Print what would change and change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

pub fn install(_args: InstallArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mesh install` is not written yet")
}

pub fn uninstall(_args: UninstallArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mesh uninstall` is not written yet")
}
