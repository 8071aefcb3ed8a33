//! The edits themselves, on one [`Doc`] at a time: our hooks and status line in
//! `~/.claude/settings.json`, our MCP server in `~/.claude.json`. Install appends at the end of
//! containers; uninstall removes exactly our elements and any container that became empty by
//! that removal, which reverses the appends byte for byte.

use std::path::Path;

use serde::Serialize;

use super::command::{hook_command, ours_hook, ours_statusline, shell_quote, statusline_command};
use super::error::ConfigError;
use super::jsontext::{Container, Doc, Malformed, Node};
use crate::hook_event::{HookEvent, INSTALL_TIMEOUT_S};

/// Our MCP server's name in `mcpServers`.
pub const MCP_SERVER_NAME: &str = "claude-mesh";

#[derive(Serialize)]
struct HookCommand<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    command: &'a str,
    timeout: u32,
}

#[derive(Serialize)]
struct HookGroup<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    matcher: Option<&'static str>,
    hooks: [HookCommand<'a>; 1],
}

#[derive(Serialize)]
struct StatusLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    command: &'a str,
}

#[derive(Serialize)]
struct McpServer<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    command: &'a str,
    args: [&'static str; 1],
    env: serde_json::Map<String, serde_json::Value>,
}

fn mcp_server(mesh: &str) -> McpServer<'_> {
    McpServer {
        kind: "stdio",
        command: mesh,
        args: ["mcp"],
        env: serde_json::Map::new(),
    }
}

/// One file being edited, with what we tell the user about it.
pub(crate) struct Editor<'p> {
    pub path: &'p Path,
    pub doc: Doc,
    pub summary: Vec<String>,
    pub notes: Vec<String>,
}

impl Editor<'_> {
    fn shape(&self, key: &str, expected: &'static str) -> ConfigError {
        ConfigError::UnexpectedShape {
            path: self.path.to_path_buf(),
            key: key.to_owned(),
            expected,
        }
    }

    fn malformed(&self) -> impl Fn(Malformed) -> ConfigError + '_ {
        move |Malformed| self.shape("(document)", "JSON this tool can edit")
    }

    fn root(&self) -> Result<Container, ConfigError> {
        self.doc
            .root
            .container()
            .filter(|_| self.doc.root.members().is_some())
            .ok_or_else(|| self.shape("(top level)", "an object"))
    }

    /// The object member `key` of the root, checked to be an object.
    fn object(&self, key: &str) -> Result<Option<Node>, ConfigError> {
        match self.doc.root.get(key) {
            None => Ok(None),
            Some(m) if m.value.members().is_some() => Ok(Some(m.value.clone())),
            Some(_) => Err(self.shape(key, "an object")),
        }
    }

    fn container(
        &self,
        node: &Node,
        key: &str,
        expected: &'static str,
    ) -> Result<Container, ConfigError> {
        node.container().ok_or_else(|| self.shape(key, expected))
    }

    /// Command-string nodes of the hooks of `event`: (group index, item index, node, text).
    fn hook_commands(&self, event: &str) -> Result<Vec<(usize, usize, Node, String)>, ConfigError> {
        let Some(hooks) = self.object("hooks")? else {
            return Ok(Vec::new());
        };
        let Some(arr) = hooks.get(event) else {
            return Ok(Vec::new());
        };
        let groups = arr
            .value
            .items()
            .ok_or_else(|| self.shape(&format!("hooks.{event}"), "an array"))?;
        let mut out = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            let Some(items) = group.get("hooks").and_then(|m| m.value.items()) else {
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                if let Some(cmd) = item.get("command").map(|m| &m.value)
                    && let Some(text) = cmd.as_str()
                {
                    out.push((g, i, cmd.clone(), text.to_owned()));
                }
            }
        }
        Ok(out)
    }

    pub fn install_hooks(&mut self, mesh: &str) -> Result<(), ConfigError> {
        for ev in HookEvent::ALL {
            let (event, arg) = (ev.claude_name(), ev.arg());
            let want = hook_command(mesh, arg);
            let commands = self.hook_commands(event)?;
            if commands.iter().any(|(_, _, _, c)| *c == want) {
                continue;
            }
            if let Some((_, _, node, old)) = commands
                .iter()
                .find(|(_, _, _, c)| ours_hook(c, arg).is_some())
            {
                self.doc
                    .replace_value(node, &want)
                    .map_err(self.malformed())?;
                self.summary
                    .push(format!("updated hook {event} (was `{old}`)"));
                continue;
            }
            let group = HookGroup {
                matcher: ev.matcher(),
                hooks: [HookCommand {
                    kind: "command",
                    command: &want,
                    timeout: INSTALL_TIMEOUT_S,
                }],
            };
            let hooks = match self.object("hooks")? {
                Some(hooks) => hooks,
                None => {
                    let root = self.root()?;
                    self.doc
                        .insert_member(&root, "hooks", &serde_json::Map::new())
                        .map_err(self.malformed())?;
                    self.object("hooks")?
                        .ok_or_else(|| self.shape("hooks", "an object"))?
                }
            };
            match hooks.get(event) {
                None => {
                    let c = self.container(&hooks, "hooks", "an object")?;
                    self.doc
                        .insert_member(&c, event, &[group])
                        .map_err(self.malformed())?;
                }
                Some(m) => {
                    let c = m.value.items().and(m.value.container());
                    let c = c.ok_or_else(|| self.shape(&format!("hooks.{event}"), "an array"))?;
                    self.doc.append_item(&c, &group).map_err(self.malformed())?;
                }
            }
            self.summary.push(format!("added hook {event}: {want}"));
        }
        Ok(())
    }

    pub fn uninstall_hooks(&mut self) -> Result<(), ConfigError> {
        for ev in HookEvent::ALL {
            let (event, arg) = (ev.claude_name(), ev.arg());
            while let Some((g, i, _, old)) = self
                .hook_commands(event)?
                .into_iter()
                .find(|(_, _, _, c)| ours_hook(c, arg).is_some())
            {
                self.remove_hook(event, g, i)?;
                self.summary.push(format!("removed hook {event}: {old}"));
            }
        }
        Ok(())
    }

    /// Removes item `i` of group `g` of `event`, then each container this left empty.
    fn remove_hook(&mut self, event: &str, g: usize, i: usize) -> Result<(), ConfigError> {
        let path = self.path;
        let bad = move || ConfigError::UnexpectedShape {
            path: path.to_path_buf(),
            key: format!("hooks.{event}"),
            expected: "an array of hook groups",
        };
        let group_items = |doc: &Doc| {
            let arr = &doc.root.get("hooks")?.value.get(event)?.value;
            Some((
                arr.container()?,
                arr.items()?.get(g)?.get("hooks")?.value.container()?,
            ))
        };
        let (_, items) = group_items(&self.doc).ok_or_else(bad)?;
        self.doc.remove(&items, i).map_err(self.malformed())?;
        let (groups, items) = group_items(&self.doc).ok_or_else(bad)?;
        if items.len() > 0 {
            return Ok(());
        }
        self.doc.remove(&groups, g).map_err(self.malformed())?;
        let hooks = self.object("hooks")?.ok_or_else(bad)?;
        let groups = hooks
            .get(event)
            .and_then(|m| m.value.container())
            .ok_or_else(bad)?;
        if groups.len() > 0 {
            return Ok(());
        }
        let index = hooks.index_of(event).ok_or_else(bad)?;
        self.doc
            .remove(&self.container(&hooks, "hooks", "an object")?, index)
            .map_err(self.malformed())?;
        let hooks = self.object("hooks")?.ok_or_else(bad)?;
        if hooks.container().is_some_and(|c| c.len() == 0) {
            self.remove_root_member("hooks")?;
        }
        Ok(())
    }

    fn remove_root_member(&mut self, key: &str) -> Result<(), ConfigError> {
        if let Some(index) = self.doc.root.index_of(key) {
            let root = self.root()?;
            self.doc.remove(&root, index).map_err(self.malformed())?;
        }
        Ok(())
    }

    pub fn install_statusline(&mut self, mesh: &str) -> Result<(), ConfigError> {
        let want = statusline_command(mesh);
        let Some(existing) = self.doc.root.get("statusLine").map(|m| m.value.clone()) else {
            let root = self.root()?;
            let line = StatusLine {
                kind: "command",
                command: &want,
            };
            self.doc
                .insert_member(&root, "statusLine", &line)
                .map_err(self.malformed())?;
            self.summary.push(format!("added status line: {want}"));
            return Ok(());
        };
        let command = existing.get("command").map(|m| m.value.clone());
        match command.as_ref().and_then(|c| c.as_str().map(|s| (c, s))) {
            Some((_, cmd)) if cmd == want => {}
            Some((node, cmd)) if ours_statusline(cmd).is_some() => {
                let old = cmd.to_owned();
                self.doc
                    .replace_value(node, &want)
                    .map_err(self.malformed())?;
                self.summary
                    .push(format!("updated status line (was `{old}`)"));
            }
            other => {
                let shown = other.map_or("(not a command)", |(_, cmd)| cmd);
                let quoted = shell_quote(mesh);
                self.notes.push(format!(
                    "a status line of your own is set (`{shown}`), so it was left alone; to show the mesh badge in it, \
                     add the output of `{quoted} statusline` to what it prints: it reads the same JSON on stdin, so in a \
                     script that saved stdin with `input=$(cat)`, append `$(printf '%s' \"$input\" | {quoted} statusline)`"
                ));
            }
        }
        Ok(())
    }

    pub fn uninstall_statusline(&mut self) -> Result<(), ConfigError> {
        let cmd = self
            .doc
            .root
            .get("statusLine")
            .and_then(|m| m.value.get("command"))
            .and_then(|m| m.value.as_str());
        if let Some(cmd) = cmd.filter(|c| ours_statusline(c).is_some()) {
            let line = format!("removed status line: {cmd}");
            self.remove_root_member("statusLine")?;
            self.summary.push(line);
        }
        Ok(())
    }

    pub fn install_mcp(&mut self, mesh: &str) -> Result<(), ConfigError> {
        let server = mcp_server(mesh);
        let Some(servers) = self.object("mcpServers")? else {
            let root = self.root()?;
            let value = [(MCP_SERVER_NAME, &server)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>();
            self.doc
                .insert_member(&root, "mcpServers", &value)
                .map_err(self.malformed())?;
            self.summary
                .push(format!("added MCP server {MCP_SERVER_NAME}: {mesh} mcp"));
            return Ok(());
        };
        match servers.get(MCP_SERVER_NAME) {
            None => {
                let c = self.container(&servers, "mcpServers", "an object")?;
                self.doc
                    .insert_member(&c, MCP_SERVER_NAME, &server)
                    .map_err(self.malformed())?;
                self.summary
                    .push(format!("added MCP server {MCP_SERVER_NAME}: {mesh} mcp"));
            }
            Some(m) => {
                let command = m.value.get("command").and_then(|c| c.value.as_str());
                let args: Option<Vec<&str>> = m
                    .value
                    .get("args")
                    .and_then(|a| a.value.items())
                    .map(|items| items.iter().filter_map(Node::as_str).collect());
                if command == Some(mesh) && args.as_deref() == Some(&["mcp"][..]) {
                    return Ok(());
                }
                let old = command.unwrap_or("?").to_owned();
                let node = m.value.clone();
                self.doc
                    .replace_value(&node, &server)
                    .map_err(self.malformed())?;
                self.summary.push(format!(
                    "updated MCP server {MCP_SERVER_NAME} (was `{old}`)"
                ));
            }
        }
        Ok(())
    }

    pub fn uninstall_mcp(&mut self) -> Result<(), ConfigError> {
        let Some(servers) = self.object("mcpServers")? else {
            return Ok(());
        };
        let Some(index) = servers.index_of(MCP_SERVER_NAME) else {
            return Ok(());
        };
        let c = self.container(&servers, "mcpServers", "an object")?;
        self.doc.remove(&c, index).map_err(self.malformed())?;
        self.summary
            .push(format!("removed MCP server {MCP_SERVER_NAME}"));
        if self
            .object("mcpServers")?
            .and_then(|s| s.container())
            .is_some_and(|c| c.len() == 0)
        {
            self.remove_root_member("mcpServers")?;
        }
        Ok(())
    }
}
