//! Why planning or applying a Claude Code configuration change failed. Every message names the
//! file and says what to do; nothing has been written when planning fails.

use std::io;
use std::path::PathBuf;

/// Why a [`Plan`](super::Plan) could not be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file exists but is not valid JSON: we refuse to touch either file.
    #[error(
        "{} is not valid JSON ({source}); nothing was changed: fix or move the file away, then run the command again",
        path.display()
    )]
    InvalidJson {
        path: PathBuf,
        source: serde_json::Error,
    },

    /// The JSON is valid but a value we must edit has an unexpected type.
    #[error(
        "{}: `{key}` is not {expected}; nothing was changed: fix that value by hand, then run the command again",
        path.display()
    )]
    UnexpectedShape {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },

    /// The path of the `mesh` binary to register is not absolute or not UTF-8.
    #[error("the mesh binary path {} must be absolute and valid UTF-8", path.display())]
    BadMeshPath { path: PathBuf },

    /// The file changed between planning and applying (Claude Code writes `~/.claude.json`
    /// often); nothing was written.
    #[error("{} changed while the edit was being prepared; nothing was changed: run the command again", path.display())]
    ChangedMeanwhile { path: PathBuf },

    /// Reading, backing up or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl ConfigError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> ConfigError {
        let path = path.into();
        move |source| ConfigError::Io {
            action,
            path,
            source,
        }
    }
}
