//! Read-only inspection of a `mesh.db`, for `mesh health`: file and WAL sizes, schema version,
//! `PRAGMA quick_check`, session counts and the oldest undelivered message.
//!
//! The database is opened with `SQLITE_OPEN_READ_ONLY` and `query_only`: this never creates
//! the file and never writes to it, and it works beside a running daemon (WAL lets a reader
//! see the last commit without blocking the writer). A file that is not a database, or is
//! damaged, is reported in the fields, never as a panic: each part is read on its own, so a
//! corrupt table still leaves the schema version readable.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::SCHEMA_VERSION;

/// How long a read waits for a lock (only a checkpoint or WAL recovery by the daemon takes
/// one a reader must wait for).
const BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// At most this many problems are collected from `PRAGMA quick_check`.
const MAX_PROBLEMS: u32 = 10;

/// What [`inspect`] found. Each part that could not be read says why (`Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub path: PathBuf,
    /// Size of the database file in bytes.
    pub size_bytes: u64,
    /// Size of `<db>-wal`; `None` when there is none (the daemon checkpoints and removes it
    /// when it closes the database cleanly).
    pub wal_bytes: Option<u64>,
    /// `PRAGMA user_version`: the schema version the database was migrated to.
    pub schema_version: Result<u32, String>,
    /// `PRAGMA quick_check`: empty when it says `ok`, else the problems it lists (at most 10).
    pub quick_check: Result<Vec<String>, String>,
    pub sessions: Result<SessionCounts, String>,
    pub undelivered: Result<Undelivered, String>,
    /// Every message kept, and the oldest kept rows (what retention has not pruned yet).
    pub kept: Result<Kept, String>,
}

impl Inspection {
    /// The schema version this build writes (the daemon migrates older databases on start).
    pub fn expected_schema_version() -> u32 {
        SCHEMA_VERSION
    }
}

/// Registered sessions, as the database records them (a stopped daemon cannot notice a
/// session that ended meanwhile; it does at its next start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounts {
    /// Sessions recorded as running.
    pub live: u64,
    /// Sessions that ended; kept so that mail to their name waits for the next session.
    pub offline: u64,
}

/// Messages not yet handed to their recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undelivered {
    pub count: u64,
    /// Creation time of the oldest one, ms since the epoch; `None` when there is none.
    pub oldest_created_ms: Option<i64>,
}

/// What the database keeps: every message, delivered or not, and the oldest kept rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub messages: u64,
    /// Creation time of the oldest message kept, ms since the epoch.
    pub oldest_message_ms: Option<i64>,
    /// Last activity of the oldest ended session kept, ms since the epoch.
    pub oldest_ended_session_ms: Option<i64>,
}

/// Why there is nothing to inspect.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// No database file (the daemon creates it when it first starts).
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    /// The file cannot be looked at (permissions, not a regular file, …).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Inspect the database at `path` without creating or changing it.
pub fn inspect(path: &Path) -> Result<Inspection, InspectError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(InspectError::Missing(path.to_owned()));
        }
        Err(source) => {
            return Err(InspectError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.is_file() {
        return Err(InspectError::Io {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        });
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_bytes = fs::metadata(PathBuf::from(wal)).ok().map(|m| m.len());

    let mut out = Inspection {
        path: path.to_owned(),
        size_bytes: meta.len(),
        wal_bytes,
        schema_version: Err(String::new()),
        quick_check: Err(String::new()),
        sessions: Err(String::new()),
        undelivered: Err(String::new()),
        kept: Err(String::new()),
    };
    let conn = match open_read_only(path, wal_bytes.is_none()) {
        Ok(c) => c,
        Err(e) => {
            let why = e.to_string();
            out.schema_version = Err(why.clone());
            out.quick_check = Err(why.clone());
            out.sessions = Err(why.clone());
            out.undelivered = Err(why.clone());
            out.kept = Err(why);
            return Ok(out);
        }
    };
    let text = |e: rusqlite::Error| e.to_string();
    out.schema_version = conn
        .pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0))
        .map_err(text);
    out.quick_check = quick_check(&conn).map_err(text);
    out.sessions = conn
        .query_row(
            "SELECT coalesce(sum(live <> 0), 0), coalesce(sum(live = 0), 0) FROM sessions",
            [],
            |r| {
                Ok(SessionCounts {
                    live: count(r.get(0)?),
                    offline: count(r.get(1)?),
                })
            },
        )
        .map_err(text);
    // Served by the partial indexes on undelivered mail, not a scan of every message.
    out.undelivered = conn
        .query_row(
            "SELECT count(*), min(created_ms) FROM messages WHERE delivered_ms IS NULL",
            [],
            |r| {
                Ok(Undelivered {
                    count: count(r.get(0)?),
                    oldest_created_ms: r.get(1)?,
                })
            },
        )
        .map_err(text);
    // Ids grow with time: the first message is the oldest (no scan for the minimum).
    out.kept = conn
        .query_row(
            "SELECT (SELECT count(*) FROM messages),
                    (SELECT created_ms FROM messages ORDER BY id LIMIT 1),
                    (SELECT min(last_active_ms) FROM sessions WHERE live = 0)",
            [],
            |r| {
                Ok(Kept {
                    messages: count(r.get(0)?),
                    oldest_message_ms: r.get(1)?,
                    oldest_ended_session_ms: r.get(2)?,
                })
            },
        )
        .map_err(text);
    Ok(out)
}

/// A SQL count as a `u64` (SQLite integers are signed).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Open without creating or writing anything. A database with no `-wal` file is not open
/// anywhere (a running daemon always has one), and a plain read-only open would create an
/// empty `-wal` and `-shm` beside it, so it is opened `immutable` instead: no side files, no
/// locks. Should a daemon start during those few milliseconds, its writes go to its new WAL,
/// not to the file being read.
fn open_read_only(path: &Path, immutable: bool) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if immutable {
        Connection::open_with_flags(
            format!("file:{}?immutable=1", uri_path(path)),
            flags | OpenFlags::SQLITE_OPEN_URI,
        )?
    } else {
        Connection::open_with_flags(path, flags)?
    };
    conn.pragma_update(None, "query_only", true)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// `path` as the path part of a `file:` URI: every byte but unreserved ones and `/` is
/// percent-encoded (a `?` or `#` in a directory name must not end the path).
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA quick_check({MAX_PROBLEMS})"))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut problems = Vec::new();
    for row in rows {
        let line = row?;
        if line != "ok" {
            problems.push(line);
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn missing_database_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mesh.db");
        assert!(matches!(inspect(&db), Err(InspectError::Missing(p)) if p == db));
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    }

    #[test]
    fn reads_a_live_database_beside_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mesh.db");
        let (store, thread) = Store::open(&db).unwrap();
        store
            .call_blocking(|ctx| {
                ctx.conn
                    .execute_batch(
                        "INSERT INTO sessions (session_id, pid, start_time, name, name_norm, cwd,
                            live, registered_ms, last_active_ms)
                         VALUES ('a', 1, 1, 'a', 'a', '/', 1, 0, 0), ('b', 2, 2, 'b', 'b', '/', 0, 0, 0),
                                ('c', 3, 3, 'c', 'c', '/', 0, 0, 0);
                         INSERT INTO messages (kind, from_name, to_name, body, created_ms, delivered_ms)
                         VALUES ('task', 'a', 'b', 'x', 5000, NULL), ('task', 'a', 'b', 'y', 7000, NULL),
                                ('task', 'a', 'c', 'z', 1000, 2000);",
                    )
                    .map_err(|e| crate::store::sql_error(&e, ctx.path()))
            })
            .unwrap();
        let seen = inspect(&db).unwrap();
        assert_eq!(seen.schema_version, Ok(SCHEMA_VERSION));
        assert_eq!(seen.quick_check, Ok(vec![]));
        assert_eq!(
            seen.sessions,
            Ok(SessionCounts {
                live: 1,
                offline: 2
            })
        );
        assert_eq!(
            seen.undelivered,
            Ok(Undelivered {
                count: 2,
                oldest_created_ms: Some(5000)
            })
        );
        assert!(seen.size_bytes > 0);
        assert!(seen.wal_bytes.is_some_and(|n| n > 0), "{seen:?}");
        store.close();
        thread.join();

        // After a clean close the WAL is gone; inspecting reads the same and writes nothing.
        let before = fs::read(&db).unwrap();
        assert_eq!(files(dir.path()), ["mesh.db"]);
        let again = inspect(&db).unwrap();
        assert_eq!(
            files(dir.path()),
            ["mesh.db"],
            "no -wal or -shm left behind"
        );
        assert_eq!(again.sessions, seen.sessions);
        assert_eq!(again.undelivered, seen.undelivered);
        assert_eq!(fs::read(&db).unwrap(), before);
    }

    #[test]
    fn odd_characters_in_the_path() {
        assert_eq!(uri_path(Path::new("/a b/c?d#e%")), "/a%20b/c%3Fd%23e%25");
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("we?ird #dir%20");
        fs::create_dir(&sub).unwrap();
        let db = sub.join("mesh.db");
        let (store, thread) = Store::open(&db).unwrap();
        store.close();
        thread.join();
        assert_eq!(inspect(&db).unwrap().schema_version, Ok(SCHEMA_VERSION));
        assert_eq!(files(&sub), ["mesh.db"]);
    }

    #[test]
    fn empty_database_has_no_mail() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mesh.db");
        let (store, thread) = Store::open(&db).unwrap();
        store.close();
        thread.join();
        let seen = inspect(&db).unwrap();
        assert_eq!(
            seen.undelivered,
            Ok(Undelivered {
                count: 0,
                oldest_created_ms: None
            })
        );
        assert_eq!(
            seen.sessions,
            Ok(SessionCounts {
                live: 0,
                offline: 0
            })
        );
    }

    #[test]
    fn garbage_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mesh.db");
        fs::write(&db, vec![0x5a; 8192]).unwrap();
        let seen = inspect(&db).unwrap();
        assert_eq!(seen.size_bytes, 8192);
        let why = seen.quick_check.unwrap_err();
        assert!(why.contains("not a database"), "{why}");
        assert!(seen.schema_version.is_err());
        assert_eq!(fs::read(&db).unwrap(), vec![0x5a; 8192], "never written");
    }

    #[test]
    fn damaged_pages_fail_the_quick_check() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mesh.db");
        let (store, thread) = Store::open(&db).unwrap();
        store
            .call_blocking(|ctx| {
                for i in 0..200 {
                    ctx.conn
                        .execute(
                            "INSERT INTO messages (kind, from_name, body, created_ms) VALUES ('note', 'a', ?1, ?2)",
                            (format!("{i:0>400}"), i),
                        )
                        .map_err(|e| crate::store::sql_error(&e, ctx.path()))?;
                }
                Ok(())
            })
            .unwrap();
        store.close();
        thread.join();
        // Scribble over the middle of the file, past the header and the schema page.
        let mut bytes = fs::read(&db).unwrap();
        assert!(bytes.len() > 16 * 4096, "{}", bytes.len());
        for b in &mut bytes[8 * 4096..12 * 4096] {
            *b = 0xa5;
        }
        fs::write(&db, &bytes).unwrap();
        let seen = inspect(&db).unwrap();
        assert_eq!(seen.schema_version, Ok(SCHEMA_VERSION));
        let problems = match &seen.quick_check {
            Ok(p) => p.clone(),
            Err(e) => vec![e.clone()],
        };
        assert!(!problems.is_empty(), "{seen:?}");
    }
}
