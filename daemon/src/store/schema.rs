//! The database schema as append-only migrations, applied in order and recorded in SQLite's
//! `user_version`. Never edit a released migration: add a new one.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: sessions and messages.
    "CREATE TABLE sessions (
        key             INTEGER PRIMARY KEY,
        session_id      TEXT NOT NULL,
        pid             INTEGER NOT NULL,
        start_time      INTEGER NOT NULL,
        name            TEXT NOT NULL,
        name_norm       TEXT NOT NULL,
        cwd             TEXT NOT NULL,
        project_root    TEXT,
        git_root        TEXT,
        transcript_path TEXT,
        summary         TEXT NOT NULL DEFAULT '',
        idle            INTEGER NOT NULL DEFAULT 0,
        live            INTEGER NOT NULL DEFAULT 1,
        registered_ms   INTEGER NOT NULL,
        last_active_ms  INTEGER NOT NULL
    );
    CREATE INDEX sessions_by_session_id ON sessions(session_id);
    CREATE INDEX sessions_by_process ON sessions(pid, start_time);
    CREATE INDEX sessions_by_name ON sessions(name_norm, live);
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        kind            TEXT NOT NULL,
        from_key        INTEGER,
        from_name       TEXT NOT NULL,
        from_session_id TEXT,
        to_key          INTEGER,
        to_name         TEXT,
        to_name_norm    TEXT,
        to_session_id   TEXT,
        body            TEXT NOT NULL,
        in_reply_to     INTEGER,
        created_ms      INTEGER NOT NULL,
        delivered_ms    INTEGER,
        answered_ms     INTEGER
    );
    CREATE INDEX messages_pending_by_key ON messages(to_key) WHERE delivered_ms IS NULL;
    CREATE INDEX messages_pending_by_name ON messages(to_name_norm) WHERE delivered_ms IS NULL;
    CREATE INDEX messages_by_question ON messages(in_reply_to) WHERE in_reply_to IS NOT NULL;",
    // 2: hand-outs, so that a consume whose answer was lost can be retried (Consume::handout).
    "CREATE TABLE handouts (
        token       INTEGER PRIMARY KEY,
        created_ms  INTEGER NOT NULL,
        message_ids TEXT NOT NULL
    );
    CREATE INDEX handouts_by_age ON handouts(created_ms);",
    // 3: the summary shown until a session sets its own (project folder and git branch).
    "ALTER TABLE sessions ADD COLUMN default_summary TEXT NOT NULL DEFAULT '';",
    // 4: retention (store/retention.rs) keeps a session that asked a question still open; the
    // index finds those without reading every message (only open questions are in it). And a
    // question whose asker gave up before it was handed out is withdrawn (messages.rs
    // `withdraw`): `withdrawn_ms` says when (`delivered_ms` is set too, so it is never handed out).
    // The column came in a later commit than the index: see [`repair`].
    "CREATE INDEX messages_open_questions ON messages(from_key)
        WHERE kind = 'question' AND answered_ms IS NULL;
    ALTER TABLE messages ADD COLUMN withdrawn_ms INTEGER;",
    // 5: the mesh across machines (daemon/src/federation/, store/federation.rs). A message
    // that crosses machines has a global id (`gid`, unique: a redelivered envelope is found and
    // not inserted twice) and the other machine (`remote_host`: the sender of mail that came
    // in, the recipient of mail that goes out). `outbox`: envelopes committed here, waiting for
    // the NATS server's acknowledgement. `hosts`: every host's pinned key (trust on first use)
    // and a different key it offers, refused until trusted; `presence_ms`, the sending time
    // (that host's clock) of the newest presence taken from it, so that a replayed one changes
    // nothing, also after a restart. `remote_sessions`: what each host's presence last listed.
    "ALTER TABLE messages ADD COLUMN gid TEXT;
    ALTER TABLE messages ADD COLUMN remote_host TEXT;
    CREATE UNIQUE INDEX messages_by_gid ON messages(gid) WHERE gid IS NOT NULL;
    CREATE TABLE outbox (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        host        TEXT NOT NULL,
        dedupe      TEXT NOT NULL UNIQUE,
        envelope    BLOB NOT NULL,
        created_ms  INTEGER NOT NULL
    );
    CREATE TABLE hosts (
        host          TEXT PRIMARY KEY,
        device_id     TEXT NOT NULL,
        public_key    BLOB NOT NULL,
        offered_key   BLOB,
        first_seen_ms INTEGER NOT NULL,
        changed_ms    INTEGER,
        last_seen_ms  INTEGER,
        presence_ms   INTEGER
    );
    CREATE INDEX hosts_by_device ON hosts(device_id);
    CREATE TABLE remote_sessions (
        host        TEXT NOT NULL,
        session_id  TEXT NOT NULL,
        name        TEXT NOT NULL,
        name_norm   TEXT NOT NULL,
        summary     TEXT NOT NULL,
        idle        INTEGER NOT NULL,
        pending     INTEGER NOT NULL,
        listed      INTEGER NOT NULL,
        seen_ms     INTEGER NOT NULL,
        PRIMARY KEY (host, session_id)
    );
    CREATE INDEX remote_sessions_by_name ON remote_sessions(name_norm);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Bring the database up to [`SCHEMA_VERSION`], each step in its own transaction. Refuses a
/// database written by a newer build rather than guessing.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<u32> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "database schema version {current} is newer than this build's ({SCHEMA_VERSION}); upgrade mesh"
            )),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
        tx.commit()?;
    }
    repair(conn)?;
    Ok(SCHEMA_VERSION)
}

/// Bring a database that an earlier build left short of its version's schema up to it. Each
/// step looks whether it is needed, so running them again does nothing.
///
/// - `messages.withdrawn_ms`: migration 4 gained its `ALTER TABLE` after it had shipped (commit
///   59e8f86; 4215827 had only the index), so a database migrated to 4 by 4215827 says 4 and has
///   no such column; every read of a message would fail. (`tests/fixtures/schema-v4-4215827.db`.)
fn repair(conn: &mut Connection) -> rusqlite::Result<()> {
    let has_withdrawn: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('messages') WHERE name = 'withdrawn_ms')",
        [],
        |r| r.get(0),
    )?;
    if !has_withdrawn {
        let tx = conn.transaction()?;
        tx.execute_batch("ALTER TABLE messages ADD COLUMN withdrawn_ms INTEGER;")?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_fresh_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        let v: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    /// A database that says 4 but was migrated by a build whose migration 4 had no
    /// `withdrawn_ms` gets the column, once.
    #[test]
    fn a_schema_4_without_withdrawn_ms_is_repaired() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "CREATE INDEX messages_open_questions ON messages(from_key)
                WHERE kind = 'question' AND answered_ms IS NULL;",
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 4).unwrap();
        let columns = |conn: &Connection| -> Vec<String> {
            let mut s = conn
                .prepare("SELECT name FROM pragma_table_info('messages')")
                .unwrap();
            s.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert!(!columns(&conn).iter().any(|c| c == "withdrawn_ms"));
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            columns(&conn)
                .iter()
                .filter(|c| *c == "withdrawn_ms")
                .count(),
            1
        );
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            columns(&conn)
                .iter()
                .filter(|c| *c == "withdrawn_ms")
                .count(),
            1
        );
    }

    #[test]
    fn refuses_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(err.to_string().contains("newer than this build"), "{err}");
    }
}
