//! `mesh::claude_config` on temp HOMEs: install, idempotence, dry run, exact undo,
//! refusal of invalid JSON, status line ownership, quoting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use mesh::claude_config::{
    ConfigError, Plan, Registration, StatusLineState, check, claude_json_path, settings_path,
};
use serde_json::{Value, json};

const SETTINGS: &str = r#"{
  "$schema": "https://json.schemastore.org/claude-code-settings.json",
  "model": "opus",
  "permissions": {
    "allow": ["Bash(ls:*)"]
  },
  "hooks": {
    "PreToolUse": [
      {
        "matcher": "Bash",
        "hooks": [{"type": "command", "command": "/usr/local/bin/guard"}]
      }
    ],
    "Stop": [
      {
        "hooks": [
          {
            "type": "command",
            "command": "notify-send done"
          }
        ]
      }
    ]
  },
  "statusLine": {
    "type": "command",
    "command": "bash ~/.claude/statusline.sh"
  },
  "zeta": 1.50,
  "alpha": "\u00e9"
}
"#;

const CLAUDE_JSON: &str = r#"{
  "numStartups": 42,
  "projects": {
    "/home/u/src": {
      "mcpServers": {},
      "allowedTools": []
    }
  },
  "mcpServers": {
    "github": {
      "type": "stdio",
      "command": "gh-mcp",
      "args": [],
      "env": {"TOKEN": "x"}
    }
  },
  "userID": "abc",
  "zz": [1, 2.0, 3e10]
}"#;

struct Home {
    dir: tempfile::TempDir,
    mesh: PathBuf,
}

impl Home {
    fn new() -> Home {
        Home::with_bin_dir("bin")
    }

    fn with_bin_dir(bin: &str) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let mesh = dir.path().join(bin).join("mesh");
        fs::create_dir_all(mesh.parent().unwrap()).unwrap();
        fs::write(&mesh, "").unwrap();
        Home { dir, mesh }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn populated(self) -> Home {
        fs::create_dir_all(self.path().join(".claude")).unwrap();
        fs::write(settings_path(self.path()), SETTINGS).unwrap();
        fs::write(claude_json_path(self.path()), CLAUDE_JSON).unwrap();
        self
    }

    fn settings(&self) -> Option<String> {
        fs::read_to_string(settings_path(self.path())).ok()
    }

    fn claude_json(&self) -> Option<String> {
        fs::read_to_string(claude_json_path(self.path())).ok()
    }

    /// Every file under HOME except our fake binary, with contents: "nothing changed" checks.
    fn snapshot(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut stack = vec![self.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path != self.mesh {
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    out.push((path, text));
                }
            }
        }
        out.sort();
        out
    }

    fn backups(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self
            .snapshot()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.to_string_lossy().contains(".mesh-backup-"))
            .collect();
        out.sort();
        out
    }

    fn install(&self) -> Plan {
        let plan = Plan::install(self.path(), &self.mesh).unwrap();
        plan.apply().unwrap();
        plan
    }

    fn uninstall(&self) -> Plan {
        let plan = Plan::uninstall(self.path()).unwrap();
        plan.apply().unwrap();
        plan
    }

    fn mesh_str(&self) -> &str {
        self.mesh.to_str().unwrap()
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn all_current(home: &Home) {
    let status = check(home.path(), &home.mesh).unwrap();
    for (event, reg) in &status.hooks {
        assert!(
            matches!(
                reg,
                Registration::Registered {
                    current: true,
                    exists: true,
                    ..
                }
            ),
            "{event}: {reg:?}"
        );
    }
    assert!(matches!(
        status.mcp,
        Registration::Registered {
            current: true,
            exists: true,
            ..
        }
    ));
    assert!(status.problems().is_empty(), "{:?}", status.problems());
}

#[test]
fn fresh_home_install_idempotent_and_uninstall_leaves_no_files() {
    let home = Home::new();
    let status = check(home.path(), &home.mesh).unwrap();
    assert_eq!(status.problems().len(), 6, "5 hooks + MCP missing");
    assert_eq!(status.status_line, StatusLineState::None);

    let plan = Plan::install(home.path(), &home.mesh).unwrap();
    assert_eq!(plan.changes().len(), 2);
    let applied = plan.apply().unwrap();
    assert_eq!(applied.changed.len(), 2);
    assert!(applied.backups.is_empty(), "nothing to back up");

    let mesh = home.mesh_str();
    let settings = parse(&home.settings().unwrap());
    let hook = |cmd: &str| json!({"type": "command", "command": format!("{mesh} hook {cmd}"), "timeout": 10});
    let expected = json!({
        "hooks": {
            "SessionStart": [{"hooks": [hook("session-start")]}],
            "UserPromptSubmit": [{"hooks": [hook("user-prompt-submit")]}],
            "PostToolUse": [{"matcher": "*", "hooks": [hook("post-tool-use")]}],
            "Stop": [{"hooks": [hook("stop")]}],
            "SessionEnd": [{"hooks": [hook("session-end")]}],
        },
        "statusLine": {"type": "command", "command": format!("{mesh} statusline")},
    });
    assert_eq!(settings, expected);
    let claude = parse(&home.claude_json().unwrap());
    assert_eq!(
        claude,
        json!({"mcpServers": {"claude-mesh": {"type": "stdio", "command": mesh, "args": ["mcp"], "env": {}}}})
    );
    // Laid out like Claude Code's own files: two-space indentation, trailing newline.
    assert!(
        home.settings()
            .unwrap()
            .starts_with("{\n  \"hooks\": {\n    \"SessionStart\": [\n")
    );
    assert!(home.claude_json().unwrap().ends_with("}\n"));
    all_current(&home);
    assert!(matches!(
        check(home.path(), &home.mesh).unwrap().status_line,
        StatusLineState::Ours(_)
    ));

    let before = home.snapshot();
    let again = Plan::install(home.path(), &home.mesh).unwrap();
    assert!(again.is_noop() && again.diff().is_empty());
    assert_eq!(again.apply().unwrap(), Default::default());
    assert_eq!(
        home.snapshot(),
        before,
        "second install writes nothing, backs up nothing"
    );

    let plan = home.uninstall();
    assert!(
        plan.changes().iter().all(|c| c.new.is_none()),
        "files left empty are removed"
    );
    assert_eq!(home.settings(), None);
    assert_eq!(home.claude_json(), None);
    assert!(Plan::uninstall(home.path()).unwrap().is_noop());
}

#[test]
fn populated_home_keeps_everything_and_uninstall_restores_bytes() {
    let home = Home::new().populated();
    let plan = home.install();
    assert!(
        plan.notes()
            .iter()
            .any(|n| n.contains("bash ~/.claude/statusline.sh") && n.contains("statusline")),
        "{:?}",
        plan.notes()
    );
    let summary: Vec<&String> = plan.changes().iter().flat_map(|c| &c.summary).collect();
    assert_eq!(summary.len(), 6, "{summary:?}"); // 5 hooks + MCP; status line left alone

    let settings_text = home.settings().unwrap();
    let settings = parse(&settings_text);
    let original = parse(SETTINGS);
    for key in [
        "$schema",
        "model",
        "permissions",
        "statusLine",
        "zeta",
        "alpha",
    ] {
        assert_eq!(settings[key], original[key], "{key}");
    }
    assert_eq!(
        settings["hooks"]["PreToolUse"],
        original["hooks"]["PreToolUse"]
    );
    assert_eq!(settings["hooks"]["Stop"][0], original["hooks"]["Stop"][0]);
    assert_eq!(settings["hooks"]["Stop"].as_array().unwrap().len(), 2);
    // Bytes before our first insertion are untouched; unrelated key order and spelling kept.
    let stop_user = SETTINGS.find("\"notify-send done\"").unwrap();
    assert_eq!(settings_text[..stop_user], SETTINGS[..stop_user]);
    assert!(settings_text.contains("\"zeta\": 1.50,\n  \"alpha\": \"\\u00e9\"\n}\n"));
    let claude_text = home.claude_json().unwrap();
    let servers_end = CLAUDE_JSON.find("\n  },\n  \"userID\"").unwrap();
    assert_eq!(claude_text[..servers_end], CLAUDE_JSON[..servers_end]);
    assert!(claude_text.ends_with("  \"userID\": \"abc\",\n  \"zz\": [1, 2.0, 3e10]\n}"));
    let claude = parse(&claude_text);
    assert_eq!(
        claude["mcpServers"]["github"],
        parse(CLAUDE_JSON)["mcpServers"]["github"]
    );
    assert_eq!(claude["projects"], parse(CLAUDE_JSON)["projects"]);
    all_current(&home);
    assert_eq!(
        check(home.path(), &home.mesh).unwrap().status_line,
        StatusLineState::Other(Some("bash ~/.claude/statusline.sh".into()))
    );

    // Backups hold the originals.
    let backups = home.backups();
    assert_eq!(backups.len(), 2, "{backups:?}");
    let backed: Vec<String> = backups
        .iter()
        .map(|b| fs::read_to_string(b).unwrap())
        .collect();
    assert!(backed.contains(&SETTINGS.to_owned()) && backed.contains(&CLAUDE_JSON.to_owned()));
    let name = backups[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let stamp = name.rsplit("mesh-backup-").next().unwrap();
    assert!(stamp.len() == 15 && stamp.as_bytes()[8] == b'T', "{name}");

    // Second install: no write, no backup.
    let before = home.snapshot();
    assert!(Plan::install(home.path(), &home.mesh).unwrap().is_noop());
    home.install();
    assert_eq!(home.snapshot(), before);

    home.uninstall();
    assert_eq!(home.settings().unwrap(), SETTINGS);
    assert_eq!(home.claude_json().unwrap(), CLAUDE_JSON);
    assert!(Plan::uninstall(home.path()).unwrap().is_noop());
}

#[test]
fn dry_run_shows_a_diff_and_changes_nothing() {
    let home = Home::new().populated();
    let before = home.snapshot();
    let plan = Plan::install(home.path(), &home.mesh).unwrap();
    let diff = plan.diff();
    let mesh = home.mesh_str();
    assert!(
        diff.contains(&format!("+++ {}", settings_path(home.path()).display())),
        "{diff}"
    );
    assert!(
        diff.contains(&format!("+++ {}", claude_json_path(home.path()).display())),
        "{diff}"
    );
    assert!(
        diff.contains(&format!(
            "+            \"command\": \"{mesh} hook session-start\","
        )),
        "{diff}"
    );
    assert!(diff.contains("+    \"claude-mesh\": {"), "{diff}");
    assert!(diff.contains("@@ "), "{diff}");
    assert!(
        !diff
            .lines()
            .any(|l| l.starts_with('-') && !l.starts_with("---")),
        "only additions: {diff}"
    );
    assert_eq!(home.snapshot(), before, "planning writes nothing");

    home.install();
    let plan = Plan::uninstall(home.path()).unwrap();
    assert!(
        plan.diff()
            .contains(&format!("-            \"command\": \"{mesh} hook stop\","))
    );
    let before = home.snapshot();
    drop(plan);
    assert_eq!(home.snapshot(), before);
}

#[test]
fn invalid_json_in_either_file_refuses_and_touches_nothing() {
    for broken in ["settings", "claude"] {
        let home = Home::new().populated();
        let (bad, path) = match broken {
            "settings" => (r#"{"hooks": {"#, settings_path(home.path())),
            _ => (r#"{"numStartups": 1,}"#, claude_json_path(home.path())),
        };
        fs::write(&path, bad).unwrap();
        let before = home.snapshot();
        for result in [
            Plan::install(home.path(), &home.mesh),
            Plan::uninstall(home.path()),
        ] {
            match result {
                Err(ConfigError::InvalidJson { path: p, .. }) => assert_eq!(p, path),
                other => panic!("expected InvalidJson, got {other:?}"),
            }
        }
        let message = Plan::install(home.path(), &home.mesh)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("not valid JSON") && message.contains("nothing was changed"),
            "{message}"
        );
        assert!(check(home.path(), &home.mesh).is_err());
        assert_eq!(home.snapshot(), before);
    }

    // The other file missing: not created either.
    let home = Home::new();
    fs::create_dir_all(home.path().join(".claude")).unwrap();
    fs::write(settings_path(home.path()), "not json").unwrap();
    assert!(Plan::install(home.path(), &home.mesh).is_err());
    assert_eq!(home.claude_json(), None);

    // Valid JSON of the wrong shape is refused the same way.
    let home = Home::new();
    fs::create_dir_all(home.path().join(".claude")).unwrap();
    fs::write(settings_path(home.path()), r#"{"hooks": []}"#).unwrap();
    let err = Plan::install(home.path(), &home.mesh).unwrap_err();
    assert!(
        matches!(err, ConfigError::UnexpectedShape { .. }),
        "{err:?}"
    );
    fs::write(settings_path(home.path()), "[]").unwrap();
    assert!(Plan::install(home.path(), &home.mesh).is_err());
    assert_eq!(home.claude_json(), None);
}

#[test]
fn status_line_ours_is_updated_and_removed_others_left_alone() {
    // A status line of ours from a binary that has moved: rewritten in place, removed on uninstall.
    let home = Home::new();
    fs::create_dir_all(home.path().join(".claude")).unwrap();
    let original = "{\n  \"statusLine\": {\n    \"type\": \"command\",\n    \"command\": \"/old/place/mesh statusline\"\n  }\n}\n";
    fs::write(settings_path(home.path()), original).unwrap();
    assert!(matches!(
        check(home.path(), &home.mesh).unwrap().status_line,
        StatusLineState::Ours(Registration::Registered {
            current: false,
            exists: false,
            ..
        })
    ));
    let plan = home.install();
    assert!(plan.notes().is_empty());
    assert!(
        plan.changes()[0]
            .summary
            .iter()
            .any(|s| s.starts_with("updated status line"))
    );
    assert_eq!(
        parse(&home.settings().unwrap())["statusLine"]["command"],
        format!("{} statusline", home.mesh_str())
    );
    assert!(matches!(
        check(home.path(), &home.mesh).unwrap().status_line,
        StatusLineState::Ours(Registration::Registered {
            current: true,
            exists: true,
            ..
        })
    ));
    home.uninstall();
    assert_eq!(
        home.settings(),
        None,
        "only our status line was in it: file removed"
    );

    // Someone else's status line stays through install and uninstall.
    let home = Home::new();
    fs::create_dir_all(home.path().join(".claude")).unwrap();
    let theirs = "{\"statusLine\": {\"type\": \"command\", \"command\": \"starship prompt\"}}";
    fs::write(settings_path(home.path()), theirs).unwrap();
    let plan = home.install();
    assert_eq!(plan.notes().len(), 1);
    assert_eq!(
        parse(&home.settings().unwrap())["statusLine"]["command"],
        "starship prompt"
    );
    home.uninstall();
    assert_eq!(home.settings().unwrap(), theirs);
}

#[test]
fn path_with_spaces_is_quoted_and_recognised() {
    let home = Home::with_bin_dir("My Tools/it's here");
    home.install();
    let mesh = home.mesh_str();
    let quoted = format!("'{}'", mesh.replace('\'', r"'\''"));
    let settings = parse(&home.settings().unwrap());
    assert_eq!(
        settings["hooks"]["Stop"][0]["hooks"][0]["command"],
        format!("{quoted} hook stop")
    );
    assert_eq!(
        settings["statusLine"]["command"],
        format!("{quoted} statusline")
    );
    // The MCP command is an argv entry, not shell text: unquoted.
    assert_eq!(
        parse(&home.claude_json().unwrap())["mcpServers"]["claude-mesh"]["command"],
        mesh
    );
    all_current(&home);
    assert!(Plan::install(home.path(), &home.mesh).unwrap().is_noop());
    home.uninstall();
    assert_eq!(home.settings(), None);

    let relative = Plan::install(home.path(), Path::new("bin/mesh")).unwrap_err();
    assert!(matches!(relative, ConfigError::BadMeshPath { .. }));
}

#[test]
fn hand_made_registration_is_adopted_and_other_hooks_in_a_group_survive() {
    let home = Home::new();
    fs::create_dir_all(home.path().join(".claude")).unwrap();
    // As the README told users to write it, plus a user hook sharing the PostToolUse group.
    let original = r#"{"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "mesh hook stop", "timeout": 10}]}], "PostToolUse": [{"matcher": "*", "hooks": [{"type": "command", "command": "lint"}, {"type": "command", "command": "mesh hook post-tool-use"}]}]}}"#;
    fs::write(settings_path(home.path()), original).unwrap();
    let status = check(home.path(), &home.mesh).unwrap();
    assert!(
        matches!(&status.hooks[3].1, Registration::Registered { program, current: false, .. } if program == "mesh")
    );
    let plan = home.install();
    let summary = &plan.changes()[0].summary;
    assert!(
        summary.contains(&"updated hook Stop (was `mesh hook stop`)".to_owned()),
        "{summary:?}"
    );
    let settings = parse(&home.settings().unwrap());
    assert_eq!(
        settings["hooks"]["Stop"].as_array().unwrap().len(),
        1,
        "no duplicate"
    );
    assert_eq!(
        settings["hooks"]["PostToolUse"].as_array().unwrap().len(),
        1
    );
    all_current(&home);

    home.uninstall();
    let settings = parse(&home.settings().unwrap());
    assert_eq!(
        settings,
        json!({"hooks": {"PostToolUse": [{"matcher": "*", "hooks": [{"type": "command", "command": "lint"}]}]}})
    );
}

#[test]
fn one_line_files_round_trip() {
    let home = Home::new();
    fs::create_dir_all(home.path().join(".claude")).unwrap();
    let settings =
        r#"{"model":"opus","hooks":{"Stop":[{"hooks":[{"type":"command","command":"x"}]}]}}"#;
    let claude = r#"{"a":1,"mcpServers":{"other":{"command":"o"}}}"#;
    fs::write(settings_path(home.path()), settings).unwrap();
    fs::write(claude_json_path(home.path()), claude).unwrap();
    home.install();
    assert!(
        !home.settings().unwrap().contains('\n'),
        "stays on one line"
    );
    all_current(&home);
    home.uninstall();
    assert_eq!(home.settings().unwrap(), settings);
    assert_eq!(home.claude_json().unwrap(), claude);
}

#[test]
fn file_changed_after_planning_is_not_overwritten() {
    let home = Home::new().populated();
    let plan = Plan::install(home.path(), &home.mesh).unwrap();
    let changed = CLAUDE_JSON.replace("42", "43");
    fs::write(claude_json_path(home.path()), &changed).unwrap();
    let err = plan.apply().unwrap_err();
    assert!(
        matches!(err, ConfigError::ChangedMeanwhile { .. }),
        "{err:?}"
    );
    assert_eq!(home.settings().unwrap(), SETTINGS);
    assert_eq!(home.claude_json().unwrap(), changed);
    assert!(home.backups().is_empty());
}

#[test]
fn writes_keep_mode_and_go_through_symlinks() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new().populated();
    let real = home.path().join("dotfiles.claude.json");
    fs::rename(claude_json_path(home.path()), &real).unwrap();
    std::os::unix::fs::symlink(&real, claude_json_path(home.path())).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
    home.install();
    assert!(
        fs::symlink_metadata(claude_json_path(home.path()))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(fs::read_to_string(&real).unwrap().contains("claude-mesh"));
    assert_eq!(
        fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o640
    );
    home.uninstall();
    assert_eq!(fs::read_to_string(&real).unwrap(), CLAUDE_JSON);
}
