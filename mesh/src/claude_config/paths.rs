//! Where Claude Code keeps the files we edit.

use std::path::{Path, PathBuf};

/// `~/.claude/settings.json` under `home`.
pub fn settings_path(home: &Path) -> PathBuf {
    home.join(".claude").join("settings.json")
}

/// `~/.claude.json` under `home`.
pub fn claude_json_path(home: &Path) -> PathBuf {
    home.join(".claude.json")
}
