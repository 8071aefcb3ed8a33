//! `mesh`: the claude-mesh command line. This file only parses arguments and dispatches; each
//! subcommand lives in its own module under `cmd/` (adding one is a variant of [`Command`], an
//! arm in [`main`] and a module). Errors print as `mesh: <error>: <cause chain>` on stderr, or
//! with `--json` as one `{"error": …}` document on stdout, with the exit status of their class
//! (`cmd/exit.rs`); usage errors exit 2 (clap).

mod cmd;
mod daemon_cmd;
mod hook;
mod link;
mod mcp;
mod shim;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
    #[command(
        after_help = "Examples:\n  mesh daemon\n  CLAUDE_MESH_LOG=debug mesh daemon --idle-timeout 0"
    )]
    Daemon(daemon_cmd::DaemonArgs),
    /// List live sessions (peers)
    #[command(
        after_help = "Examples:\n  mesh list\n  mesh list --all --scope repo\n  mesh list --scope mesh --json"
    )]
    List(cmd::list::Args),
    /// Show this session's id, name, cwd and pid
    #[command(after_help = "Examples:\n  mesh whoami\n  mesh whoami --json")]
    Whoami(cmd::whoami::Args),
    /// Queue a message for a peer; prints its message id
    #[command(
        after_help = "Examples:\n  mesh send backend run the tests and report what fails\n  git diff | mesh send reviewer -\n  mesh send '*' --kind note I am moving the store module, keep out of it for now"
    )]
    Send(cmd::send::Args),
    /// Ask a peer a question and wait for the answer; prints it
    #[command(
        after_help = "Examples:\n  mesh ask backend 'is the migration done?'\n  mesh ask backend --timeout 60 'which port does the API listen on?'\n  mesh ask backend --json 'ready to merge?' | jq -r .answer.body"
    )]
    Ask(cmd::ask::Args),
    /// Answer a question
    #[command(
        after_help = "Examples:\n  mesh reply m42 yes, merged into main\n  mesh reply 42 - < answer.txt"
    )]
    Reply(cmd::reply::Args),
    /// Read (and by default consume) this session's messages
    #[command(after_help = "Examples:\n  mesh inbox\n  mesh inbox --peek --json")]
    Inbox(cmd::inbox::Args),
    /// Show one message and its status, with timestamps
    #[command(after_help = "Examples:\n  mesh message m42\n  mesh message 42 --json")]
    Message(cmd::message::Args),
    /// A peer's last turns, from its Claude Code transcript (redacted unless --raw)
    #[command(after_help = "Examples:\n  mesh history backend\n  mesh history backend -n 3 --raw")]
    History(cmd::history::HistoryArgs),
    /// Lines of a peer's transcript that match a text or a regular expression, with context
    #[command(
        after_help = "Examples:\n  mesh search backend 'connection refused'\n  mesh search backend --regex 'test result: FAILED|panicked' -C 5\n  mesh search backend '/fail(ed|ure)/' --json"
    )]
    Search(cmd::history::SearchArgs),
    /// Start the daemon now (through the service manager where a unit is installed)
    #[command(after_help = "Examples:\n  mesh start\n  mesh start --json")]
    Start(cmd::stop::Args),
    /// Stop the daemon (queued mail survives)
    #[command(after_help = "Examples:\n  mesh stop\n  mesh stop --json")]
    Stop(cmd::stop::Args),
    /// Restart the daemon (queued mail survives)
    #[command(after_help = "Examples:\n  mesh restart\n  mesh restart --json")]
    Restart(cmd::stop::Args),
    /// Join a mesh across machines through a NATS server (JetStream); restarts the daemon
    #[command(
        after_help = "Examples:\n  mesh join nats://nats.example.com:4222\n  mesh join tls://nats.example.com:4222 --host laptop --team backend --creds ~/nats/laptop.creds\n  mesh join nats://127.0.0.1:4222 --json"
    )]
    Join(cmd::federation::JoinArgs),
    /// Leave the mesh across machines (this device's key is kept); restarts the daemon
    #[command(after_help = "Examples:\n  mesh leave\n  mesh leave --json")]
    Leave(cmd::federation::LeaveArgs),
    /// This device's key fingerprint and every known host's; `mesh keys trust` accepts a new one
    #[command(
        after_help = "Examples:\n  mesh keys\n  mesh keys --json\n  mesh keys trust ci 3f2a9c0177d01b4e0a5ce2f16d3890ab4c17d2e68f05b9315a7ec4801d6be92f"
    )]
    Keys(cmd::federation::KeysArgs),
    /// Install the service unit and register hooks, MCP server and status line with Claude Code
    #[command(
        after_help = "Examples:\n  mesh install --dry-run\n  mesh install\n  mesh install --no-service"
    )]
    Install(cmd::install::InstallArgs),
    /// Undo exactly what `mesh install` did
    #[command(after_help = "Examples:\n  mesh uninstall --dry-run\n  mesh uninstall")]
    Uninstall(cmd::install::UninstallArgs),
    /// Diagnose every layer of the installation; non-zero exit if anything is wrong
    #[command(
        after_help = "Examples:\n  mesh health\n  mesh health --json | jq '.checks[] | select(.level != \"ok\")'"
    )]
    Health(cmd::health::Args),
    /// Claude Code hook shim: reads the hook's JSON on stdin, prints hook JSON, always exits 0
    ///
    /// Claude Code runs it (`mesh install` registers one per event); without a known event it
    /// prints one `mesh hook:` line on stderr and exits 0, like every hook.
    #[command(after_help = "Examples:
  echo '{\"session_id\": \"abc\", \"hook_event_name\": \"Stop\"}' | mesh hook stop
  mesh hook post-tool-use < hook-input.json")]
    Hook {
        /// The event (Claude Code's own name is accepted too)
        event: mesh::hook_event::HookEvent,
    },
    /// MCP server over stdio (registered with Claude Code as `claude-mesh`)
    #[command(
        after_help = "Examples:\n  mesh mcp\n  mesh install --dry-run\n  claude mcp add claude-mesh -- mesh mcp"
    )]
    Mcp,
    /// Status-line badge: reads Claude Code's status-line JSON on stdin
    #[command(
        after_help = "Examples:\n  echo '{\"session_id\": \"abc\"}' | mesh statusline\n  mesh statusline < status.json"
    )]
    Statusline,
    /// Run Claude Code under a supervisor that wakes it when mail arrives while it is idle
    #[command(after_help = "Examples:\n  mesh run\n  mesh run --resume\n  mesh run -- --help")]
    Run(cmd::run::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(cmd::completions::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command with --dir
    Man(cmd::completions::ManArgs),
}

fn main() -> ExitCode {
    // Hooks and the status line run on every tool call of every session: dispatch them before
    // clap and before any logging is set up, so they cost little more than the exec itself.
    let mut argv = std::env::args_os().skip(1);
    match (argv.next(), argv.next(), argv.next()) {
        // `mesh hook --help` (any flag) is clap's; `mesh hook` alone exits 0 like every hook.
        (Some(cmd), Some(event), None)
            if cmd == "hook" && !event.as_encoded_bytes().starts_with(b"-") =>
        {
            return hook::main(&event);
        }
        (Some(cmd), None, None) if cmd == "hook" => return hook::no_event(),
        (Some(cmd), None, None) if cmd == "statusline" => return cmd::statusline::main(),
        _ => {}
    }
    let cli = Cli::parse();
    // `mesh daemon` goes first and alone: it sets up its own logging and tokio runtime.
    // `mesh run` logs to a file: the terminal belongs to Claude Code.
    let json = cli.command.wants_json();
    if !matches!(cli.command, Command::Daemon(_) | Command::Run(_)) {
        // `--json`: one document on stdout and nothing on stderr, so no warnings either
        // (`CLAUDE_MESH_LOG` still turns them on).
        cmd::init_tracing(if json { "off" } else { "warn" });
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
        Command::Join(args) => cmd::federation::join(args),
        Command::Leave(args) => cmd::federation::leave(args),
        Command::Keys(args) => cmd::federation::keys(args),
        Command::Install(args) => cmd::install::install(args),
        Command::Uninstall(args) => cmd::install::uninstall(args),
        Command::Health(args) => cmd::health::run(args),
        Command::Hook { event } => Ok(hook::main_for(event)),
        Command::Mcp => mcp::run(),
        Command::Statusline => Ok(cmd::statusline::main()),
        Command::Run(args) => cmd::run::run(args),
        Command::Completions(args) => cmd::completions::completions(args, Cli::command()),
        Command::Man(args) => cmd::completions::man(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(e) => cmd::exit::report(&e, json),
    }
}

impl Command {
    /// Whether the command was given `--json` (its failure is then a JSON document too).
    fn wants_json(&self) -> bool {
        match self {
            Command::List(a) => a.out.json,
            Command::Whoami(a) => a.out.json,
            Command::Send(a) => a.out.json,
            Command::Ask(a) => a.out.json,
            Command::Reply(a) => a.out.json,
            Command::Inbox(a) => a.out.json,
            Command::Message(a) => a.out.json,
            Command::History(a) => a.out.json,
            Command::Search(a) => a.out.json,
            Command::Start(a) | Command::Stop(a) | Command::Restart(a) => a.out.json,
            Command::Join(a) => a.out.json,
            Command::Leave(a) => a.out.json,
            Command::Keys(a) => a.json(),
            Command::Install(a) => a.out.json,
            Command::Uninstall(a) => a.out.json,
            Command::Health(a) => a.out.json,
            // No `--json` (exhaustive, so that a new command is decided here).
            Command::Daemon(_)
            | Command::Hook { .. }
            | Command::Mcp
            | Command::Statusline
            | Command::Run(_)
            | Command::Completions(_)
            | Command::Man(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
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

    /// The words of the `mesh …` command in an example line: from the word `mesh` up to a pipe
    /// or a redirection, with shell quotes removed.
    fn example_words(line: &str) -> Option<Vec<String>> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut in_word = false;
        let mut quote = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    in_word = true;
                }
                (None, '|' | '<' | '>') if words.first().is_some_and(|w| w == "mesh") => break,
                (None, '|') => {
                    words.clear();
                    in_word = false;
                    word.clear();
                }
                (None, c) if c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                    // `VAR=value mesh …`: the environment is not an argument.
                    if words.len() == 1 && words[0].contains('=') {
                        words.clear();
                    }
                }
                (None, c) => {
                    word.push(c);
                    in_word = true;
                }
            }
        }
        if in_word {
            words.push(word);
        }
        (words.first().map(String::as_str) == Some("mesh")).then_some(words)
    }

    #[test]
    fn example_lines_split_like_a_shell() {
        assert_eq!(
            example_words("git diff | mesh send '*' --kind note a b > x").unwrap(),
            ["mesh", "send", "*", "--kind", "note", "a", "b"]
        );
        assert_eq!(
            example_words("CLAUDE_MESH_LOG=debug mesh daemon").unwrap(),
            ["mesh", "daemon"]
        );
        assert_eq!(example_words("claude mcp add x -- mesh mcp"), None);
    }

    /// Every command's help ends with two or three examples, each of which parses.
    #[test]
    fn every_help_ends_with_examples_that_parse() {
        let mut cli = Cli::command();
        for sub in cli.get_subcommands_mut() {
            let name = sub.get_name().to_string();
            let help = sub.render_long_help().to_string();
            let (_, examples) = help
                .rsplit_once("Examples:\n")
                .unwrap_or_else(|| panic!("`mesh {name} --help` has no Examples: {help}"));
            let lines: Vec<&str> = examples.lines().filter(|l| l.contains("mesh ")).collect();
            assert!(
                (2..=3).contains(&lines.len()),
                "`mesh {name} --help`: {lines:?}"
            );
            let mut parsed = 0;
            for line in lines {
                let Some(words) = example_words(line) else {
                    continue;
                };
                let cli = Cli::try_parse_from(&words)
                    .unwrap_or_else(|e| panic!("`mesh {name} --help` example {line:?}: {e}"));
                let _ = cli;
                parsed += 1;
            }
            assert!(
                parsed >= 2,
                "`mesh {name} --help`: {parsed} runnable examples"
            );
        }
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
        let cli = parse(&["list", "--scope", "mesh"]).unwrap();
        let Command::List(args) = cli.command else {
            panic!("not list")
        };
        assert_eq!(args.scope, cmd::list::ScopeArg::Mesh);
        assert_eq!(args.scope.split().1, mesh_proto::Reach::Mesh);
    }
}
