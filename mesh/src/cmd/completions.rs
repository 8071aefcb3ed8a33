//! `mesh completions <shell>` (a completion script on stdout, clap_complete) and `mesh man`
//! (the roff manual page on stdout, or one page per subcommand in a folder, clap_mangen).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  mesh completions bash > ~/.local/share/bash-completion/completions/mesh
  mesh completions zsh > ~/.zfunc/_mesh
  mesh completions fish > ~/.config/fish/completions/mesh.fish")]
pub struct CompletionsArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  mesh man > ~/.local/share/man/man1/mesh.1
  mesh man --dir ~/.local/share/man/man1")]
pub struct ManArgs {
    /// Write one page per command (mesh.1, mesh-send.1, …) into this folder instead
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Print the completion script for `args.shell`.
pub fn completions(args: CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "mesh", &mut script);
    super::stdout::write_stdout(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

/// Print the manual page, or write every page into `args.dir`.
pub fn man(args: ManArgs, cli: clap::Command) -> anyhow::Result<ExitCode> {
    match args.dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cli)
                .render(&mut page)
                .context("cannot render the manual page")?;
            super::stdout::write_stdout(&String::from_utf8_lossy(&page))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cli, &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            println!("wrote the manual pages into {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
