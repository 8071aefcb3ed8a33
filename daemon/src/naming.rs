//! A session's name and roots, by the rules of CONTRACT.md ("Identity"). STUB: interface only.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    pub name: String,
    pub project_root: Option<PathBuf>,
    pub git_root: Option<PathBuf>,
}

/// Name a session started in `cwd` with `CLAUDE_PROJECT_DIR` = `project_dir`.
pub fn resolve(cwd: &Path, project_dir: Option<&Path>) -> Naming {
    let name = cwd.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "/".into());
    Naming { name, project_root: project_dir.map(Path::to_path_buf), git_root: None }
}
