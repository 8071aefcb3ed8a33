//! Claude Code configuration in a test's temp HOME: the hooks in `~/.claude/settings.json` and
//! the MCP server in `~/.claude.json`, as `mesh install` writes them (see
//! `shared/CLAUDE_CODE.md`, "Settings Claude Code reads").

use std::fs;
use std::path::Path;

use serde_json::{Map, Value, json};

/// The five hook events we register, with the `mesh hook` argument for each.
pub const EVENTS: [(&str, &str); 5] = [
    ("SessionStart", "session-start"),
    ("UserPromptSubmit", "user-prompt-submit"),
    ("PostToolUse", "post-tool-use"),
    ("Stop", "stop"),
    ("SessionEnd", "session-end"),
];

/// One shell command per hook event (Claude Code runs each with `/bin/sh -c`).
#[derive(Debug, Clone)]
pub struct HookCommands(pub Vec<(String, String)>);

impl HookCommands {
    /// `<mesh> hook <event-kebab>` for each of the five events.
    pub fn mesh(mesh_bin: &Path) -> Self {
        let mesh = sh_quote(&mesh_bin.to_string_lossy());
        Self(
            EVENTS
                .iter()
                .map(|(event, kebab)| ((*event).to_owned(), format!("{mesh} hook {kebab}")))
                .collect(),
        )
    }

    /// `<script> <Event>` for each of the five events.
    pub fn script(script: &Path) -> Self {
        let script = sh_quote(&script.to_string_lossy());
        Self(
            EVENTS
                .iter()
                .map(|(event, _)| ((*event).to_owned(), format!("{script} {event}")))
                .collect(),
        )
    }
}

fn read_object(path: &Path) -> Map<String, Value> {
    match fs::read_to_string(path) {
        Ok(s) => match serde_json::from_str(&s) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        },
        Err(_) => Map::new(),
    }
}

fn write_object(path: &Path, value: Map<String, Value>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("tmp-write");
    fs::write(
        &tmp,
        serde_json::to_string_pretty(&Value::Object(value)).unwrap(),
    )
    .unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// Register `hooks` in `<home>/.claude/settings.json` (matcher `*`, timeout 10 s), replacing
/// any hooks there and keeping other settings.
pub fn write_hooks(home: &Path, hooks: &HookCommands) {
    let path = home.join(".claude/settings.json");
    let mut settings = read_object(&path);
    let mut by_event = Map::new();
    for (event, command) in &hooks.0 {
        by_event.insert(
            event.clone(),
            json!([{"matcher": "*", "hooks": [
                {"type": "command", "command": command, "timeout": 10}
            ]}]),
        );
    }
    settings.insert("hooks".into(), Value::Object(by_event));
    write_object(&path, settings);
}

/// Register a stdio MCP server named `claude-mesh` (user scope) in `<home>/.claude.json`,
/// keeping everything else in that file.
pub fn write_mcp_server(home: &Path, command: &Path, args: &[&str]) {
    let path = home.join(".claude.json");
    let mut state = read_object(&path);
    let servers = state
        .entry("mcpServers")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("mcpServers is an object");
    servers.insert(
        "claude-mesh".into(),
        json!({"type": "stdio", "command": command.to_string_lossy(), "args": args, "env": {}}),
    );
    write_object(&path, state);
}

/// What `mesh install` will write: the five hooks and the MCP server, both running `mesh_bin`.
pub fn write_mesh_config(home: &Path, mesh_bin: &Path) {
    write_hooks(home, &HookCommands::mesh(mesh_bin));
    write_mcp_server(home, mesh_bin, &["mcp"]);
}

/// Quote `s` for `/bin/sh`.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}
