//! `mesh health`: diagnose every layer of the installation, one [`Check`] per line, each
//! warning and failure with the command that fixes it.
//!
//! ```no_run
//! use mesh::health::{self, Inputs};
//!
//! let report = health::run(&Inputs::from_env()?);
//! print!("{}", health::render(&report));
//! println!("{}", report.summary());
//! std::process::exit(i32::from(report.failed()));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The checks, in order (names are stable; `--json` consumers rely on them):
//! - `binary.version`: this binary's version and path;
//! - `state.dir`, `state.socket`: exist, belong to us, modes 0700 / 0600;
//! - `service.unit`: systemd user units or the launchd agent: installed, enabled, listening
//!   (socket-activated), running this binary on this state directory;
//! - `daemon.reachable`: connect and handshake WITHOUT starting a daemon (only the service
//!   manager's socket activation may start one), round trip of a ping; `daemon.version`: the
//!   daemon's announced version against this binary's (omitted when no daemon answered);
//! - `federation`: outside a mesh one line, "not joined (local only)"; joined (`mesh join`),
//!   `federation.config` (`federation.toml` and `device.key`, 0600 and ours), then from the
//!   daemon's report `federation.server` (connected, url, server version),
//!   `federation.jetstream`, `federation.features` and `federation.streams` (while connected),
//!   `federation.keys` (this device's fingerprint and the known hosts'; a host whose key
//!   changed fails) and `federation.outbox` (a warning when its oldest entry waits over a
//!   minute);
//! - `db.file`, `db.schema`, `db.integrity`, `db.sessions`, `db.mail`: the database, read-only
//!   (`mesh_daemon::store::inspect`); the last four are omitted when the file is missing, and
//!   schema, sessions and mail when it cannot be read at all (`db.integrity` then fails);
//! - `claude.hooks`, `claude.mcp`, `claude.statusline`: the registration with Claude Code (or a
//!   single `claude.config` when its settings cannot be read);
//! - `project.config`: the `.claude-mesh.json` that names a session started in the current
//!   directory (`CLAUDE_PROJECT_DIR` first): a warning when naming ignores it or cuts its name.
//!
//! Every check is a quick local read; the daemon gets a 1.5 s handshake and 1 s pings, so a
//! healthy installation answers in a few tens of milliseconds.

mod check;
mod claude;
mod daemon;
mod db;
mod federation;
mod project;
mod service;
mod state;
mod version;

use std::fmt::Write as _;

use serde::Serialize;

pub use check::{Check, Inputs, Level};
pub use db::STALE_MAIL_MS;
pub use federation::OUTBOX_STALE_MS;
pub use project::config_problems;

/// Every check, in order. Serialises as `{"ok": bool, "checks": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// True when any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.level == Level::Fail)
    }

    /// The check named `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// How many checks came out at `level`.
    pub fn count(&self, level: Level) -> usize {
        self.checks.iter().filter(|c| c.level == level).count()
    }

    /// One line: `all 14 checks ok`, or how many failed / warned and what to do.
    pub fn summary(&self) -> String {
        let (fails, warns) = (self.count(Level::Fail), self.count(Level::Warn));
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        match (fails, warns) {
            (0, 0) => format!("all {} checks ok", self.checks.len()),
            (0, w) => format!(
                "no failures, {}: the fixes above are optional",
                plural(w, "warning", "warnings")
            ),
            (f, w) => format!(
                "{} failed, {}: run the fix under each, then `mesh health` again",
                plural(f, "check", "checks"),
                plural(w, "warning", "warnings")
            ),
        }
    }
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Doc<'a> {
            ok: bool,
            checks: &'a [Check],
        }
        Doc {
            ok: !self.failed(),
            checks: &self.checks,
        }
        .serialize(s)
    }
}

/// Run every check (never starts a daemon, never writes anything).
pub fn run(inputs: &Inputs) -> Report {
    // Ask the service manager before connecting: with socket activation the connection itself
    // starts the daemon. Who owns the daemon also decides what starts it.
    let facts = service::probe(inputs);
    let activated = service::activation_pending(&facts);
    let start = service::start_fix(&facts, &inputs.state.socket());
    let on_demand = service::on_demand(&facts);
    let mut checks = vec![
        version::binary(inputs),
        state::dir(&inputs.state, inputs.state_from_env, &start, on_demand),
        state::socket(&inputs.state.socket(), &start, on_demand),
        state::files(&inputs.state),
        service::check(&facts, inputs),
    ];
    let seen = daemon::probe(&inputs.state.socket());
    checks.extend(daemon::checks(&seen, &facts, activated, inputs));
    checks.extend(federation::checks(
        inputs,
        seen.outcome.is_ok(),
        crate::display::now_ms(),
    ));
    checks.extend(db::checks(&inputs.state.db(), crate::display::now_ms()));
    checks.extend(claude::checks(inputs));
    checks.push(project::check(
        inputs.cwd.as_deref(),
        inputs.project_dir.as_deref(),
    ));
    let mut report = Report { checks };
    note_db_blocks_daemon(&mut report);
    report
}

/// A daemon that is down because it cannot open the database comes back only after the
/// database is fixed: say so where the user looks first.
fn note_db_blocks_daemon(report: &mut Report) {
    // A damaged database no longer keeps the daemon down (it is moved aside at start); a
    // schema newer than this binary does.
    let db_broken = report
        .get("db.schema")
        .is_some_and(|c| c.level == Level::Fail);
    if !db_broken {
        return;
    }
    if let Some(c) = report
        .checks
        .iter_mut()
        .find(|c| c.name == "daemon.reachable" && c.level == Level::Fail)
    {
        c.detail.push_str(
            "; the database was written by a newer mesh (see below), and this daemon refuses it",
        );
        c.fix = Some("the fix of the db.schema check below".to_owned());
    }
}

/// The report for a terminal: one line per check (`ok    name   detail`), and under each
/// warning and failure an indented `fix:` line.
pub fn render(report: &Report) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in &report.checks {
        let _ = writeln!(
            out,
            "{:<6}{:<width$}  {}",
            c.level.as_str(),
            c.name,
            c.detail
        );
        if let Some(fix) = &c.fix {
            let _ = writeln!(out, "{:6}{:width$}  fix: {fix}", "", "");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(levels: &[Level]) -> Report {
        Report {
            checks: levels
                .iter()
                .enumerate()
                .map(|(i, l)| Check {
                    name: format!("c{i}"),
                    level: *l,
                    detail: "d".into(),
                    fix: (*l != Level::Ok).then(|| "mesh restart".into()),
                })
                .collect(),
        }
    }

    #[test]
    fn json_has_ok_and_checks() {
        let r = report(&[Level::Ok, Level::Warn]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["checks"][1]["level"], "warn");
        assert_eq!(v["checks"][1]["fix"], "mesh restart");
        assert!(v["checks"][0]["fix"].is_null());
        let v = serde_json::to_value(report(&[Level::Fail])).unwrap();
        assert_eq!(v["ok"], false);
    }

    #[test]
    fn render_aligns_and_shows_fixes() {
        let mut r = report(&[Level::Ok, Level::Fail]);
        r.checks[1].name = "daemon.reachable".into();
        let want = format!(
            "ok    c0                d\nfail  daemon.reachable  d\n{}fix: mesh restart\n",
            " ".repeat(6 + "daemon.reachable".len() + 2)
        );
        assert_eq!(render(&r), want);
    }

    #[test]
    fn summaries() {
        assert_eq!(report(&[Level::Ok; 3]).summary(), "all 3 checks ok");
        assert!(
            report(&[Level::Warn])
                .summary()
                .starts_with("no failures, 1 warning")
        );
        assert!(
            report(&[Level::Fail, Level::Fail, Level::Warn])
                .summary()
                .starts_with("2 checks failed, 1 warning")
        );
    }
}
