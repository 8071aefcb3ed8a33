//! `mesh`: the claude-mesh command line. This file only parses arguments and dispatches; each
//! subcommand lives in its own module under `cmd/` (adding one is a variant of [`Command`], an
//! arm in [`main`] and a module). Errors print as `mesh: <error>: <cause chain>` with exit 1;
//! usage errors exit 2 (clap); `mesh ask` exits 3 on time-out.

mod cmd;
mod daemon_cmd;
mod hook;
mod link;
mod mcp;
mod shim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Let the Claude Code sessions on this machine find and message each other.
#[derive(Debug, Parser)]
#[command(name = "mesh", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground
    Daemon(daemon_cmd::DaemonArgs),
    /// List live sessions (peers)
    List(cmd::list::Args),
    /// Show this session's id, name, cwd and pid
    Whoami(cmd::whoami::Args),
    /// Queue a message for a peer; prints its message id
    Send(cmd::send::Args),
    /// Ask a peer a question and wait for the answer; prints it
    Ask(cmd::ask::Args),
    /// Answer a question
    Reply(cmd::reply::Args),
    /// Read (and by default consume) this session's messages
    Inbox(cmd::inbox::Args),
    /// Show one message and its status, with timestamps
    Message(cmd::message::Args),
    /// A peer's last turns, from its Claude Code transcript (redacted unless --raw)
    History(cmd::history::HistoryArgs),
    /// Lines of a peer's transcript that match a text or a regular expression, with context
    Search(cmd::history::SearchArgs),
    /// Start the daemon now (through the service manager where a unit is installed)
    Start(cmd::stop::Args),
    /// Stop the daemon (queued mail survives)
    Stop(cmd::stop::Args),
    /// Restart the daemon (queued mail survives)
    Restart(cmd::stop::Args),
    /// Install the service unit and register hooks, MCP server and status line with Claude Code
    Install(cmd::install::InstallArgs),
    /// Undo exactly what `mesh install` did
    Uninstall(cmd::install::UninstallArgs),
    /// Diagnose every layer of the installation; non-zero exit if anything is wrong
    Health(cmd::health::Args),
    /// Claude Code hook shim: reads the hook's JSON on stdin, prints hook JSON, always exits 0
    Hook {
        /// The event (Claude Code's own name is accepted too)
        event: mesh::hook_event::HookEvent,
    },
    /// MCP server over stdio (registered with Claude Code as `claude-mesh`)
    Mcp,
    /// Status-line badge: reads Claude Code's status-line JSON on stdin
    Statusline,
    /// Run Claude Code under a supervisor that wakes it when mail arrives while it is idle
    Run(cmd::run::Args),
}

fn main() -> ExitCode {
    // Hooks and the status line run on every tool call of every session: dispatch them before
    // clap and before any logging is set up, so they cost little more than the exec itself.
    let mut argv = std::env::args_os().skip(1);
    match (argv.next(), argv.next(), argv.next()) {
        (Some(cmd), Some(event), None) if cmd == "hook" => return hook::main(&event),
        (Some(cmd), None, None) if cmd == "statusline" => return cmd::statusline::main(),
        _ => {}
    }
    let cli = Cli::parse();
    // `mesh daemon` goes first and alone: it sets up its own logging and tokio runtime.
    // `mesh run` logs to a file: the terminal belongs to Claude Code.
    if !matches!(cli.command, Command::Daemon(_) | Command::Run(_)) {
        cmd::init_tracing();
    }
    let result = match cli.command {
        Command::Daemon(args) => daemon_cmd::run(args).map(|()| ExitCode::SUCCESS),
        Command::List(args) => cmd::list::run(args),
        Command::Whoami(args) => cmd::whoami::run(args),
        Command::Send(args) => cmd::send::run(args),
        Command::Ask(args) => cmd::ask::run(args),
        Command::Reply(args) => cmd::reply::run(args),
        Command::Inbox(args) => cmd::inbox::run(args),
        Command::Message(args) => cmd::message::run(args),
        Command::History(args) => cmd::history::history(args),
        Command::Search(args) => cmd::history::search(args),
        Command::Start(args) => cmd::start::start(args),
        Command::Stop(args) => cmd::stop::stop(args),
        Command::Restart(args) => cmd::stop::restart(args),
        Command::Install(args) => cmd::install::install(args),
        Command::Uninstall(args) => cmd::install::uninstall(args),
        Command::Health(args) => cmd::health::run(args),
        Command::Hook { event } => Ok(hook::main_for(event)),
        Command::Mcp => mcp::run(),
        Command::Statusline => Ok(cmd::statusline::main()),
        Command::Run(args) => cmd::run::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Errors can quote peer-controlled text (names, paths): shown safely.
            eprintln!(
                "mesh: {}",
                mesh_proto::sanitize::terminal(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mesh").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn send_takes_words_and_flags_anywhere() {
        let cli = parse(&[
            "send", "backend", "run", "the", "tests", "--kind", "note", "--json",
        ])
        .unwrap();
        let Command::Send(args) = cli.command else {
            panic!("not send")
        };
        assert_eq!(args.peer, "backend");
        assert_eq!(args.text, ["run", "the", "tests"]);
        assert_eq!(args.kind, cmd::send::KindArg::Note);
        assert!(args.out.json);
        assert!(parse(&["send", "backend"]).is_err(), "text is required");
    }

    #[test]
    fn message_ids_accept_all_forms_and_bad_ones_are_usage_errors() {
        for id in ["42", "#42", "m42"] {
            let cli = parse(&["reply", id, "yes"]).unwrap();
            let Command::Reply(args) = cli.command else {
                panic!("not reply")
            };
            assert_eq!(args.message_id, 42);
        }
        let err = parse(&["message", "x42"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn ask_timeout_defaults_to_300_and_must_be_positive() {
        let cli = parse(&["ask", "backend", "ready?"]).unwrap();
        let Command::Ask(args) = cli.command else {
            panic!("not ask")
        };
        assert_eq!(args.timeout, 300);
        assert!(parse(&["ask", "backend", "x", "--timeout", "0"]).is_err());
    }

    #[test]
    fn list_scopes() {
        let cli = parse(&["list", "--all", "--scope", "repo"]).unwrap();
        let Command::List(args) = cli.command else {
            panic!("not list")
        };
        assert!(args.all);
        assert_eq!(args.scope, cmd::list::ScopeArg::Repo);
        assert!(parse(&["list", "--scope", "galaxy"]).is_err());
    }
}
