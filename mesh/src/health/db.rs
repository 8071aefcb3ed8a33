//! `db.*`: the database, read through the daemon crate's read-only inspection (it owns the
//! schema): file and WAL size and the oldest kept rows, schema version, `PRAGMA quick_check`,
//! sessions, and how long the oldest undelivered message has waited.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use mesh_daemon::store::CORRUPT_DIR_PREFIX;
use mesh_daemon::store::inspect::{InspectError, Inspection, Kept, inspect};

use super::check::{Check, human_bytes, human_duration, quote};

/// Mail older than this is worth a warning: its recipient has not run a hook for that long.
pub const STALE_MAIL_MS: i64 = 60 * 60 * 1000;
/// A WAL larger than this means checkpoints are not keeping up.
const BIG_WAL: u64 = 64 << 20;

/// Every `db.*` check.
pub(super) fn checks(db: &Path, now_ms: i64) -> Vec<Check> {
    let mut out = set_aside(db).into_iter().collect::<Vec<_>>();
    out.extend(current(db, now_ms));
    out
}

/// `db.recovered`: damaged databases moved aside (by the daemon at start, or by hand with the
/// fix of `db.integrity`), in `corrupt-*` directories beside the database. Mail queued in them
/// is not delivered, so each is a failure until someone has looked and removed it.
fn set_aside(db: &Path) -> Option<Check> {
    let dir = db.parent()?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(CORRUPT_DIR_PREFIX)
                && e.file_type().is_ok_and(|t| t.is_dir())
        })
        .map(|e| e.path())
        .collect();
    if found.is_empty() {
        return None;
    }
    found.sort();
    let list = found
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let rm = found.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" ");
    Some(Check::fail(
        "db.recovered",
        format!(
            "a damaged database was moved aside and the daemon started on a fresh one: {list}; \
             mail queued in it was not delivered"
        ),
        format!(
            "look at it (`sqlite3 <dir>/mesh.db .recover` may save its rows), then remove it: rm -r {rm}"
        ),
    ))
}

fn current(db: &Path, now_ms: i64) -> Vec<Check> {
    let shown = db.display();
    // What the daemon checks at start: a regular file (not a symbolic link) it can write.
    if let Err(e) = mesh_daemon::paths::check_db_file(db) {
        // The database, or one of SQLite's files beside it, that is not a regular file.
        let odd = mesh_daemon::paths::db_files(db)
            .into_iter()
            .find(|path| std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_file()));
        let fix = if let Some(odd) = odd {
            format!("rm {} && mesh restart", quote(&odd))
        } else if e.raw_os_error() == Some(libc::EROFS) || e.to_string().contains("read-only") {
            format!(
                "remount its filesystem read-write (`findmnt -T {}` names it), then mesh restart",
                quote(db)
            )
        } else {
            format!("chmod u+w {} && mesh restart", quote(db))
        };
        return vec![Check::fail("db.file", e.to_string(), fix)];
    }
    let seen = match inspect(db) {
        Ok(seen) => seen,
        Err(InspectError::Missing(_)) => {
            return vec![Check::ok(
                "db.file",
                format!("{shown} does not exist yet; the daemon creates it when it first starts"),
            )];
        }
        Err(e @ InspectError::Io { .. }) => {
            return vec![Check::fail(
                "db.file",
                e.to_string(),
                format!("check its owner and permissions: ls -l {}", quote(db)),
            )];
        }
    };
    let mut out = vec![file(&seen, now_ms)];
    let expected = Inspection::expected_schema_version();
    if let Ok(v) = seen.schema_version {
        out.push(schema(v, expected));
    }
    out.push(integrity(&seen));
    if let Ok(s) = seen.sessions {
        let note = if s.offline > 0 {
            " (ended sessions are kept so mail to their names waits for the next one, until retention prunes those without pending mail)"
        } else {
            ""
        };
        out.push(Check::ok(
            "db.sessions",
            format!("{} live, {} ended{note}", s.live, s.offline),
        ));
    }
    if let Ok(u) = seen.undelivered {
        out.push(mail(u.count, u.oldest_created_ms, now_ms));
    }
    out
}

fn file(seen: &Inspection, now_ms: i64) -> Check {
    let wal = match seen.wal_bytes {
        Some(n) => format!("WAL {}", human_bytes(n)),
        None => "no WAL (closed cleanly)".to_owned(),
    };
    let kept = match &seen.kept {
        Ok(k) => format!("; {}", kept(k, now_ms)),
        Err(_) => String::new(),
    };
    let detail = format!(
        "{}, {}, {wal}{kept}",
        seen.path.display(),
        human_bytes(seen.size_bytes)
    );
    match seen.wal_bytes {
        Some(n) if n > BIG_WAL => Check::warn(
            "db.file",
            format!("{detail}: the WAL is large, checkpoints are not keeping up"),
            "mesh restart",
        ),
        _ => Check::ok("db.file", detail),
    }
}

/// What the database keeps, and how old its oldest rows are (retention prunes delivered mail
/// and ended sessions after `CLAUDE_MESH_RETAIN_DAYS` of the daemon, 30 by default).
fn kept(k: &Kept, now_ms: i64) -> String {
    let age = |ms: i64| human_duration(u64::try_from(now_ms.saturating_sub(ms)).unwrap_or(0));
    let messages = match k.oldest_message_ms {
        Some(ms) if k.messages > 0 => format!(
            "{} message{} kept, the oldest {} old",
            k.messages,
            if k.messages == 1 { "" } else { "s" },
            age(ms)
        ),
        _ => "no messages kept".to_owned(),
    };
    let sessions = match k.oldest_ended_session_ms {
        Some(ms) => format!(", the oldest ended session last active {} ago", age(ms)),
        None => String::new(),
    };
    format!(
        "{messages}{sessions} (delivered mail and ended sessions are pruned after CLAUDE_MESH_RETAIN_DAYS, 30 by default)"
    )
}

fn schema(version: u32, expected: u32) -> Check {
    const NAME: &str = "db.schema";
    match version.cmp(&expected) {
        Ordering::Equal => Check::ok(
            NAME,
            format!("version {version}, the one this binary writes"),
        ),
        Ordering::Less => Check::warn(
            NAME,
            format!(
                "version {version}, this binary writes {expected}: the daemon upgrades it when it restarts"
            ),
            "mesh restart",
        ),
        Ordering::Greater => Check::fail(
            NAME,
            format!(
                "version {version}, newer than this binary knows ({expected}): a newer mesh wrote it, and this one's daemon refuses to open it"
            ),
            "upgrade mesh to the version that wrote it, then `mesh install`",
        ),
    }
}

/// The fix for a damaged database is `mesh restart`: the daemon checks the database at start,
/// moves a damaged one aside (with its WAL, into `corrupt-<UTC stamp>/` beside it) and starts on
/// a fresh one. This says so, for the detail (the fix itself stays a command to paste).
fn move_aside(db: &Path) -> String {
    let dir = db.parent().unwrap_or(Path::new("."));
    format!(
        "; a restart moves it into {}/{CORRUPT_DIR_PREFIX}<time>/ and starts on an empty database (mail queued in it is not delivered)",
        dir.display()
    )
}

fn integrity(seen: &Inspection) -> Check {
    const NAME: &str = "db.integrity";
    match &seen.quick_check {
        Ok(problems) if problems.is_empty() => Check::ok(NAME, "quick_check: ok"),
        Ok(problems) => Check::fail(
            NAME,
            format!(
                "quick_check found {}{}: {}",
                problems.len(),
                if problems.len() >= 10 {
                    " or more problems"
                } else {
                    " problem(s)"
                },
                problems.join("; "),
            ) + &move_aside(&seen.path),
            "mesh restart",
        ),
        Err(why) => Check::fail(
            NAME,
            format!("cannot read the database: {why}{}", move_aside(&seen.path)),
            "mesh restart",
        ),
    }
}

fn mail(count: u64, oldest_ms: Option<i64>, now_ms: i64) -> Check {
    const NAME: &str = "db.mail";
    let Some(oldest) = oldest_ms.filter(|_| count > 0) else {
        return Check::ok(NAME, "no undelivered messages");
    };
    let age = now_ms.saturating_sub(oldest).max(0);
    let waiting = format!(
        "{count} undelivered message{}, the oldest waiting for {}",
        if count == 1 { "" } else { "s" },
        human_duration(u64::try_from(age).unwrap_or(0))
    );
    if age > STALE_MAIL_MS {
        Check::warn(
            NAME,
            format!(
                "{waiting}: its recipient has not run a Claude Code hook since (ended, or idle); it gets the mail at its next prompt or when a session of that name starts (undelivered mail is never pruned; the PENDING column of `mesh list --all` shows who has mail)"
            ),
            "mesh list --all",
        )
    } else {
        Check::ok(NAME, waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::Level;
    use super::*;

    #[test]
    fn mail_age() {
        assert_eq!(mail(0, None, 10).level, Level::Ok);
        let fresh = mail(2, Some(1_000), 1_000 + 60_000);
        assert_eq!(fresh.level, Level::Ok);
        assert!(fresh.detail.contains("2 undelivered messages"), "{fresh:?}");
        let stale = mail(1, Some(0), STALE_MAIL_MS + 1);
        assert_eq!(stale.level, Level::Warn);
        assert!(stale.fix.unwrap().starts_with("mesh list"));
        assert_eq!(mail(1, Some(5_000), 0).level, Level::Ok, "clock skew");
    }

    #[test]
    fn schema_versions() {
        assert_eq!(schema(1, 1).level, Level::Ok);
        assert_eq!(schema(0, 1).level, Level::Warn);
        assert_eq!(schema(2, 1).level, Level::Fail);
    }

    #[test]
    fn the_fix_for_a_damaged_database_is_a_restart() {
        let fix = move_aside(Path::new("/home/a b/.claude-mesh/mesh.db"));
        assert!(fix.starts_with("; a restart moves it"), "{fix}");
        assert!(
            fix.contains("/home/a b/.claude-mesh/corrupt-<time>/"),
            "{fix}"
        );
    }
}
