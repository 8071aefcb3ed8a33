//! SQLite limits: raw commits with the bundled SQLite the daemon links, WAL and
//! `synchronous=FULL`, in the directory of the daemon's database.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::procs::thread_cpu_us;
use crate::report::{Stats, progress, stats, us};

pub fn raw_open(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .unwrap();
    assert!(mode.eq_ignore_ascii_case("wal"), "journal mode {mode}");
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn
}

pub const RAW_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS m (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL, created_ms INTEGER NOT NULL)";

pub const RAW_INSERT: &str = "INSERT INTO m (kind, body, created_ms) VALUES ('task', ?1, ?2)";

/// The daemon's own INSERT of a task from the user to session `sink` (messages::insert).
const MESH_INSERT: &str = "INSERT INTO messages (kind, from_key, from_name, from_session_id, to_key, to_name,
     to_name_norm, to_session_id, body, in_reply_to, created_ms, delivered_ms)
     VALUES ('task', NULL, 'user', NULL, 1, 'sink', 'sink', 'sink-session-0001', ?1, NULL, ?2, NULL)";

/// Raw SQLite on one connection: `insert` (one row) per transaction, WAL, synchronous=FULL,
/// for `dur`, after running `schema`. Returns commits/s, the latency of each commit and the
/// CPU time per commit (this thread's).
pub fn raw_sqlite_single(
    path: &Path,
    schema: &str,
    insert: &str,
    dur: Duration,
) -> (f64, Stats, f64) {
    let conn = raw_open(path);
    conn.execute_batch(schema).unwrap();
    let mut stmt = conn.prepare(insert).unwrap();
    // Warm up: the first commits create the WAL file.
    for i in 0..20 {
        stmt.execute(rusqlite::params![format!("warm {i}"), i])
            .unwrap();
    }
    let mut lat = Vec::new();
    let cpu0 = thread_cpu_us();
    let start = Instant::now();
    let mut i = 0i64;
    while start.elapsed() < dur {
        let t = Instant::now();
        stmt.execute(rusqlite::params!["benchmark task body", i])
            .unwrap();
        lat.push(us(t.elapsed()));
        i += 1;
    }
    let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    let cpu = (thread_cpu_us() - cpu0) / lat.len() as f64;
    (rate, stats(lat), cpu)
}

/// Raw SQLite, `threads` threads with a connection each, same INSERTs, for `dur`: commits/s.
fn raw_sqlite_threads(path: &Path, threads: usize, dur: Duration) -> f64 {
    raw_open(path).execute_batch(RAW_SCHEMA).unwrap();
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (path, barrier) = (path.to_owned(), barrier.clone());
            thread::spawn(move || {
                let conn = raw_open(&path);
                let mut stmt = conn.prepare(RAW_INSERT).unwrap();
                barrier.wait();
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < dur {
                    stmt.execute(rusqlite::params!["benchmark task body", t as i64])
                        .unwrap();
                    n += 1;
                }
                (n, Instant::now())
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut total = 0;
    let mut end = start;
    for h in handles {
        let (n, e) = h.join().unwrap();
        total += n;
        end = end.max(e);
    }
    total as f64 / (end - start).as_secs_f64()
}

/// The SQLite limits measured at the start of the run, used by parts 1, 3 and 4.
#[derive(Debug, Clone)]
pub struct Sqlite {
    /// Where the raw databases live: the daemon's state directory (same disk as `mesh.db`).
    pub dir: PathBuf,
    /// Single connection, minimal table: commits/s, latency per commit, CPU per commit.
    pub rate: f64,
    pub commit: Stats,
    pub cpu: f64,
    /// 8 threads × own connection on one file: commits/s.
    pub rate8: f64,
    /// Single connection, the daemon's schema and INSERT (4 WAL pages per message).
    pub mesh_rate: f64,
    pub mesh_commit: Stats,
    pub mesh_cpu: f64,
}

/// Measure raw SQLite in `dir`, for `dur` per variant; `schema_db` is a database a real daemon
/// created (copied, so that the daemon's schema variant inserts into the real indexes).
pub fn measure(dir: &Path, schema_db: &Path, dur: Duration) -> Sqlite {
    progress("raw SQLite commits (1 connection, then 8 threads × own connection)");
    let (rate, commit, cpu) = raw_sqlite_single(&dir.join("raw.db"), RAW_SCHEMA, RAW_INSERT, dur);
    let rate8 = raw_sqlite_threads(&dir.join("raw8.db"), 8, dur);
    let mesh_schema_copy = dir.join("raw-mesh-schema.db");
    fs::copy(schema_db, &mesh_schema_copy).unwrap();
    let (mesh_rate, mesh_commit, mesh_cpu) =
        raw_sqlite_single(&mesh_schema_copy, "", MESH_INSERT, dur);
    Sqlite {
        dir: dir.to_owned(),
        rate,
        commit,
        cpu,
        rate8,
        mesh_rate,
        mesh_commit,
        mesh_cpu,
    }
}
