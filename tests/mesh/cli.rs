//! The command line itself: every command's help with examples, `mesh hook` without an event,
//! shell completions and the manual page; always the real `mesh` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;

use mesh_testkit::Mesh;

fn run(mesh: &Mesh, args: &[&str]) -> Output {
    mesh.mesh().args(args).output().unwrap()
}

fn stdout_of(mesh: &Mesh, args: &[&str]) -> String {
    let out = run(mesh, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        mesh_testkit::output_text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands `mesh --help` lists (but `help`).
fn subcommands(mesh: &Mesh) -> Vec<String> {
    let help = stdout_of(mesh, &["--help"]);
    let (_, commands) = help.split_once("Commands:\n").unwrap();
    let names: Vec<String> = commands
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() > 15, "{names:?}");
    names
}

#[test]
fn every_command_help_ends_with_examples() {
    let mesh = Mesh::without_daemon();
    for name in subcommands(&mesh) {
        let help = stdout_of(&mesh, &[&name, "--help"]);
        let (_, examples) = help
            .rsplit_once("\nExamples:\n")
            .unwrap_or_else(|| panic!("`mesh {name} --help`: no Examples: {help}"));
        let lines = examples.lines().filter(|l| l.contains("mesh ")).count();
        assert!((2..=3).contains(&lines), "`mesh {name} --help`: {examples}");
    }
}

#[test]
fn mesh_hook_help_is_help_and_no_event_exits_0() {
    let mesh = Mesh::without_daemon();
    for flag in ["--help", "-h"] {
        let out = run(&mesh, &["hook", flag]);
        let text = mesh_testkit::output_text(&out);
        assert!(out.status.success(), "{text}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Usage: mesh hook"), "{text}");
        assert!(stdout.contains("post-tool-use"), "{text}");
        assert!(!text.contains("unknown hook event"), "{text}");
    }
    let out = run(&mesh, &["hook"]);
    let text = mesh_testkit::output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(out.stdout.is_empty(), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("mesh hook: "), "{stderr}");
}

#[test]
fn completions_cover_every_command_and_load_in_bash() {
    let mesh = Mesh::without_daemon();
    let bash = stdout_of(&mesh, &["completions", "bash"]);
    for name in subcommands(&mesh) {
        assert!(
            bash.contains(&name),
            "`{name}` missing from the bash completions"
        );
    }
    // The script loads and registers a completion for `mesh`.
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "source <('{}' completions bash) && complete -p mesh",
                mesh_testkit::mesh_bin()
            ),
        ])
        .output()
        .unwrap();
    let text = mesh_testkit::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("complete ")
            && String::from_utf8_lossy(&out.stdout)
                .trim_end()
                .ends_with(" mesh"),
        "{text}"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&mesh, &["completions", shell]);
        assert!(
            script.contains("mesh") && script.contains("send"),
            "{shell}"
        );
    }
    let out = run(&mesh, &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[test]
fn the_man_page_is_roff_naming_every_command() {
    let mesh = Mesh::without_daemon();
    let page = stdout_of(&mesh, &["man"]);
    assert!(page.contains(".TH mesh 1"), "{page}");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH SUBCOMMANDS",
    ] {
        assert!(page.contains(section), "{section}: {page}");
    }
    for name in subcommands(&mesh) {
        assert!(
            page.contains(&format!("mesh\\-{name}(1)")),
            "{name}: {page}"
        );
    }
    // When groff is installed: the page renders without a warning.
    if let Ok(mut groff) = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        std::io::Write::write_all(groff.stdin.as_mut().unwrap(), page.as_bytes()).unwrap();
        drop(groff.stdin.take());
        let out = groff.wait_with_output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    }
    // One page per command.
    let dir = mesh.home.path().join("man1");
    stdout_of(&mesh, &["man", "--dir", dir.to_str().unwrap()]);
    for page in ["mesh.1", "mesh-send.1", "mesh-completions.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}

#[test]
fn the_body_limit_is_in_the_help_of_send_ask_and_reply() {
    let mesh = Mesh::without_daemon();
    for name in ["send", "ask", "reply"] {
        let help = stdout_of(&mesh, &[name, "--help"]);
        assert!(
            help.contains("at most 256 KiB"),
            "`mesh {name} --help`: {help}"
        );
    }
}

#[test]
fn a_hook_warning_says_its_cause_once() {
    let mesh = Mesh::without_daemon();
    let mut hook = mesh
        .mesh()
        .args(["hook", "stop"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(hook.stdin.as_mut().unwrap(), b"{bad").unwrap();
    drop(hook.stdin.take());
    let out = hook.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.starts_with("mesh hook: stdin is not valid JSON"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("key must be a string").count(),
        1,
        "{stderr}"
    );
}
