//! Desktop notifications: when a task or question has waited longer than
//! [`crate::Config::notify_after`] for a live session that is idle (its Stop hook marked it so,
//! and no prompt came since) and not supervised by `mesh run` (which wakes it by itself, see
//! [`crate::supervise`]), tell the human which session has mail, once per message:
//! `notify-send` on Linux, `osascript` on macOS. Where neither exists the notifier says so once
//! in the log and does not run.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_proto::{Kind, sanitize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Store, waking};
use crate::supervise::Supervisors;

/// One session with mail that waited too long.
pub use crate::store::waking::IdleMail as Waiting;

/// Live idle sessions whose tasks or questions ([`mesh_proto::Kind::wakes`]) were queued
/// before `before_ms`.
pub fn waiting(store: &Store, before_ms: i64) -> Result<Vec<Waiting>, mesh_proto::WireError> {
    store.read(|r| waking::idle_sessions(r, before_ms))
}

/// The notification program of this platform, if it is installed.
fn notifier() -> Option<PathBuf> {
    let program = if cfg!(target_os = "macos") {
        "osascript"
    } else {
        "notify-send"
    };
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The most characters of a name and a folder a notification shows: both come from the session
/// (its folder, its `.claude-mesh.json`), so they are cleaned and bounded.
const NAME_CHARS: usize = 64;
const PATH_CHARS: usize = 200;

/// Title and body of the notification for `w`.
pub fn text(w: &Waiting, now_ms: i64) -> (String, String) {
    let n = w.message_ids.len();
    let kinds: Vec<&str> = Kind::ALL
        .into_iter()
        .filter(|k| k.wakes())
        .map(Kind::as_str)
        .collect();
    let kinds = kinds.join(" or ");
    let minutes = ((now_ms - w.oldest_ms).max(0) / 60_000).max(1);
    (
        format!(
            "claude-mesh: {} has mail",
            sanitize::notification(&w.name, NAME_CHARS)
        ),
        format!(
            "{n} message{} ({kinds}) waiting for {minutes} min while the session is idle. Open it ({}) and press Enter to let it read them.",
            if n == 1 { "" } else { "s" },
            sanitize::notification(&w.cwd, PATH_CHARS)
        ),
    )
}

fn show(program: &PathBuf, title: &str, body: &str) {
    let mut cmd = std::process::Command::new(program);
    if cfg!(target_os = "macos") {
        // AppleScript string literals: escape backslashes and quotes.
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        cmd.arg("-e").arg(format!(
            "display notification \"{}\" with title \"{}\"",
            q(body),
            q(title)
        ));
    } else {
        cmd.args(["--app-name=claude-mesh", title, body]);
    }
    // Arguments only, never a shell: nothing in a name or a path is interpreted.
    match cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            // Reap it without blocking the runtime.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => tracing::warn!("cannot run {}: {e}", program.display()),
    }
}

/// Start the notifier: every `after / 3` (at most 10 s) look for mail that waited longer
/// than `after`.
pub fn start(
    store: Store,
    supervisors: Arc<Supervisors>,
    after: Duration,
    tasks: &TaskTracker,
    stop: CancellationToken,
) {
    let Some(program) = notifier() else {
        tracing::info!(
            "desktop notifications are off: neither notify-send nor osascript is installed"
        );
        return;
    };
    let every = (after / 3).clamp(Duration::from_millis(100), Duration::from_secs(10));
    tasks.spawn(async move {
        let mut notified: HashSet<i64> = HashSet::new();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let now = crate::store::now_ms();
            let found = match waiting(
                &store,
                now - i64::try_from(after.as_millis()).unwrap_or(now),
            ) {
                Ok(mut found) => {
                    let supervised = supervisors.supervised_keys();
                    found.retain(|w| !supervised.contains(&w.key));
                    found
                }
                Err(e) => {
                    tracing::warn!("notifications: {}", e.message);
                    continue;
                }
            };
            // Forget what is no longer waiting, so the set stays small.
            let still: HashSet<i64> = found
                .iter()
                .flat_map(|w| w.message_ids.iter().copied())
                .collect();
            notified.retain(|id| still.contains(id));
            for w in found {
                if w.message_ids.iter().all(|id| notified.contains(id)) {
                    continue;
                }
                notified.extend(w.message_ids.iter().copied());
                let (title, body) = text(&w, now);
                tracing::info!(session = %w.name, "notifying: {body}");
                show(&program, &title, &body);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_shows_a_hostile_folder_and_name_cleaned_and_bounded() {
        let w = Waiting {
            key: 1,
            name: "api\u{1b}]0;x\u{7}".into(),
            cwd: format!(
                "/tmp/<a href=\"https://evil\">x</a>\n\u{202e}{}",
                "d".repeat(500)
            ),
            message_ids: vec![1, 2],
            oldest_ms: 0,
        };
        let (title, body) = text(&w, 120_000);
        assert_eq!(title, "claude-mesh: api has mail");
        assert!(
            body.starts_with("2 messages (task or question) waiting for 2 min"),
            "{body}"
        );
        for bad in ['<', '>', '\n', '\u{1b}', '\u{7}', '\u{202e}'] {
            assert!(
                !title.contains(bad) && !body.contains(bad),
                "{bad:?} in {body:?}"
            );
        }
        assert!(body.contains("‹a href=\"https://evil\"›x‹/a›"), "{body}");
        assert!(body.chars().count() < 400, "{}", body.chars().count());
    }
}
