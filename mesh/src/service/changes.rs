//! What a service operation reports: the [`Changes`] it made, or the [`ServiceError`] that
//! stopped it.

use std::path::PathBuf;

use super::render::RenderError;

/// What installing, stopping or uninstalling changed, for the user to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Files created or rewritten (unchanged files are not listed).
    pub written: Vec<PathBuf>,
    /// Files removed (and folders install created, left empty).
    pub removed: Vec<PathBuf>,
    /// Service-manager commands run, as a shell would show them.
    pub commands: Vec<String>,
    /// Steps that failed without failing the whole operation (uninstall is best effort).
    pub warnings: Vec<String>,
}

/// Failure of a service operation.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("no usable service manager: {0}")]
    Unavailable(String),
}
