//! `mesh health`: diagnose every layer of the installation (skeleton; being written).

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One check: one line of `mesh health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short stable identifier, e.g. `daemon.reachable`.
    pub name: String,
    pub level: Level,
    /// What was found, for a human.
    pub detail: String,
    /// The command (or step) that fixes it; set on every warn and fail.
    pub fix: Option<String>,
}

/// Every check, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// True when any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.level == Level::Fail)
    }
}
