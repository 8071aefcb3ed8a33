//! `db.*`: the database, read through the daemon crate's read-only inspection (it owns the
//! schema): file and WAL size, schema version, `PRAGMA quick_check`, sessions, and how long the
//! oldest undelivered message has waited.

use std::cmp::Ordering;
use std::path::Path;
use std::time::SystemTime;

use mesh_daemon::store::inspect::{InspectError, Inspection, inspect};

use super::{Check, human_bytes, human_duration, quote};
use crate::claude_config::shell_quote;

/// Mail older than this is worth a warning: its recipient has not run a hook for that long.
pub const STALE_MAIL_MS: i64 = 60 * 60 * 1000;
/// A WAL larger than this means checkpoints are not keeping up.
const BIG_WAL: u64 = 64 << 20;

/// Every `db.*` check.
pub(super) fn checks(db: &Path, now_ms: i64) -> Vec<Check> {
    let shown = db.display();
    let seen = match inspect(db) {
        Ok(seen) => seen,
        Err(InspectError::Missing(_)) => {
            return vec![Check::warn(
                "db.file",
                format!("{shown} does not exist yet; the daemon creates it when it first starts"),
                "mesh restart",
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
    let mut out = vec![file(&seen)];
    let expected = Inspection::expected_schema_version();
    if let Ok(v) = seen.schema_version {
        out.push(schema(v, expected));
    }
    out.push(integrity(&seen));
    if let Ok(s) = seen.sessions {
        let note = if s.offline > 0 {
            " (ended sessions are kept so mail to their names waits for the next one)"
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

fn file(seen: &Inspection) -> Check {
    let wal = match seen.wal_bytes {
        Some(n) => format!("WAL {}", human_bytes(n)),
        None => "no WAL (closed cleanly)".to_owned(),
    };
    let detail = format!(
        "{}, {}, {wal}",
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

/// The fix for a damaged database: stop the daemon, move the database and its WAL aside
/// (together, so a recovery attempt sees them paired), start afresh.
fn move_aside(db: &Path) -> String {
    let dir = db.parent().unwrap_or(Path::new("."));
    let name = db
        .file_name()
        .map_or_else(|| "mesh.db".into(), |n| n.to_string_lossy());
    let aside = dir.join(format!("corrupt-{}", stamp()));
    format!(
        "mesh stop && mkdir {aside} && mv {dir}/{star}* {aside}/ && mesh restart (this starts an empty database; the damaged one stays in {shown}, and mail queued in it is not delivered)",
        aside = quote(&aside),
        dir = quote(dir),
        star = shell_quote(&name),
        shown = aside.display(),
    )
}

/// UTC `YYYYmmddTHHMMSS`, for the name of the directory a damaged database is moved to.
fn stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
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
                problems.join("; ")
            ),
            move_aside(&seen.path),
        ),
        Err(why) => Check::fail(
            NAME,
            format!("cannot read the database: {why}"),
            move_aside(&seen.path),
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
                "{waiting}: its recipient has not run a Claude Code hook since (ended, or idle); it gets the mail at its next prompt or when a session of that name starts"
            ),
            "mesh list --all (the PENDING column shows who has mail)",
        )
    } else {
        Check::ok(NAME, waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Level;
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
    fn stamp_is_a_utc_timestamp() {
        let s = stamp();
        assert_eq!(s.len(), 15, "{s}");
        assert_eq!(&s[8..9], "T");
        assert!(s.starts_with("20"), "{s}");
    }

    #[test]
    fn move_aside_quotes_paths() {
        let fix = move_aside(Path::new("/home/a b/.claude-mesh/mesh.db"));
        assert!(
            fix.starts_with("mesh stop && mkdir '/home/a b/.claude-mesh/corrupt-"),
            "{fix}"
        );
        assert!(
            fix.contains(" && mv '/home/a b/.claude-mesh'/mesh.db* '/home/a b/"),
            "{fix}"
        );
        assert!(fix.contains("&& mesh restart"), "{fix}");
    }
}
