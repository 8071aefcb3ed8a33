//! The store: the one owner of `mesh.db`.
//!
//! A dedicated thread owns the SQLite connection (`Connection` is not `Sync`, and SQLite work
//! must never block a tokio worker). Requests arrive as jobs over a channel. The thread takes
//! every job that is waiting, runs them in ONE transaction (a savepoint per job, so a failing
//! job rolls back alone) and commits once: group commit, so concurrent senders share the cost
//! of the fsync. Only after the commit succeeds does a caller get its result; side effects
//! that must not happen for uncommitted data (waking a blocked asker) are queued as
//! [`Ctx::after_commit`] effects and run after the commit, never before.
//!
//! Durability: every commit is `synchronous=FULL` (fsync'd before anyone hears of it), except a
//! batch made only of *soft* jobs ([`Store::call_soft`]): writes of state that the next hook
//! call rewrites anyway (a session's busy/idle flag, a re-registration). Those commit with
//! `synchronous=NORMAL`: in WAL mode that survives a crash of the daemon, and only a power loss
//! can take them back. WAL frames are fsync'd in order, so the next FULL commit makes every
//! soft write before it durable too: nothing durable can ever depend on a soft write that is
//! lost.
//!
//! Requests that only read (who am I, list, a message's status, an empty inbox) do not queue
//! behind the writer: [`Store::read`] runs them on the calling thread, on one of a few
//! read-only connections, in a read transaction (WAL lets readers run beside the writer and
//! shows them only committed data). On the hook's hot path this saves two cross-thread
//! wake-ups, which in a VM cost more than the query itself.

pub mod federation;
mod hints;
pub mod hosts;
pub mod inspect;
pub mod messages;
pub mod outbox;
pub mod remote;
pub mod retention;
mod schema;
pub mod sessions;
pub mod waking;

use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use mesh_proto::{AskResult, ErrorCode, WireError};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode as SqlCode, OpenFlags};
use tokio::sync::{oneshot, watch};

pub use hints::MailHints;
pub use schema::SCHEMA_VERSION;

/// Most jobs run in one transaction.
const MAX_BATCH: usize = 512;

/// Read-only connections kept open for [`Store::read`]; more are opened under load and closed
/// after use.
const MAX_IDLE_READERS: usize = 4;

/// A question whose asker is blocked on an open connection.
#[derive(Debug)]
pub struct Waiter {
    /// The asked session; its death wakes the asker with `PeerGone`.
    pub target_key: Option<i64>,
    pub tx: oneshot::Sender<AskResult>,
}

/// State owned by the store thread besides the database.
#[derive(Debug, Default)]
pub struct Waiters {
    by_question: HashMap<i64, Waiter>,
}

impl Waiters {
    pub fn insert(&mut self, question_id: i64, waiter: Waiter) {
        // Drop the entries of askers that gave up, so the map cannot grow without bound.
        if self.by_question.len() >= 64 {
            self.by_question.retain(|_, w| !w.tx.is_closed());
        }
        self.by_question.insert(question_id, waiter);
    }

    /// The waiter for a question, if its asker is still listening.
    pub fn take(&mut self, question_id: i64) -> Option<Waiter> {
        self.by_question
            .remove(&question_id)
            .filter(|w| !w.tx.is_closed())
    }

    /// Every live waiter whose question went to `key`.
    pub fn take_for_target(&mut self, key: i64) -> Vec<Waiter> {
        let ids: Vec<i64> = self
            .by_question
            .iter()
            .filter(|(_, w)| w.target_key == Some(key))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter_map(|id| self.take(id)).collect()
    }

    /// Whether the asker of `question_id` is blocked waiting for its answer.
    pub fn is_waiting(&self, question_id: i64) -> bool {
        self.by_question
            .get(&question_id)
            .is_some_and(|w| !w.tx.is_closed())
    }

    /// Number of askers currently blocked (the daemon does not idle-exit while any wait).
    pub fn active(&self) -> usize {
        self.by_question
            .values()
            .filter(|w| !w.tx.is_closed())
            .count()
    }
}

type Effect = Box<dyn FnOnce() + Send>;

/// What a read sees: a connection inside a transaction, and the database's path (for errors).
#[derive(Debug)]
pub struct Reader<'a> {
    /// Private to the store's modules: every query is a typed function in `store/`, none is
    /// written elsewhere in the daemon.
    conn: &'a Connection,
    path: &'a Path,
}

impl Reader<'_> {
    pub fn path(&self) -> &Path {
        self.path
    }
}

/// What a job sees: the connection inside the batch transaction, the waiters, and the clock.
/// It derefs to a [`Reader`], so every read-only query runs in either place.
pub struct Ctx<'a> {
    reader: Reader<'a>,
    pub waiters: &'a mut Waiters,
    /// The batch's timestamp, ms since the epoch.
    pub now_ms: i64,
    store: &'a Store,
    effects: Vec<Effect>,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("now_ms", &self.now_ms)
            .finish_non_exhaustive()
    }
}

impl<'a> Deref for Ctx<'a> {
    type Target = Reader<'a>;

    fn deref(&self) -> &Reader<'a> {
        &self.reader
    }
}

impl Ctx<'_> {
    /// Run `f` after the batch commits; dropped if this job or the commit fails.
    pub fn after_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.effects.push(Box::new(f));
    }

    /// A handle to the store, for effects that must queue follow-up work.
    pub fn store(&self) -> Store {
        self.store.clone()
    }
}

trait Job: Send {
    /// Run inside the batch transaction; false if the job failed (its savepoint rolls back).
    fn run(&mut self, ctx: &mut Ctx<'_>) -> bool;
    /// Its writes must be fsync'd before its result is released (see the module docs).
    fn durable(&self) -> bool;
    /// Report to the caller once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), WireError>);
}

struct CallJob<T, F> {
    f: Option<F>,
    durable: bool,
    result: Option<Result<T, WireError>>,
    tx: oneshot::Sender<Result<T, WireError>>,
}

impl<T, F> Job for CallJob<T, F>
where
    T: Send,
    F: FnOnce(&mut Ctx<'_>) -> Result<T, WireError> + Send,
{
    fn run(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Some(f) = self.f.take() else { return false };
        let res = f(ctx);
        let ok = res.is_ok();
        self.result = Some(res);
        ok
    }

    fn durable(&self) -> bool {
        self.durable
    }

    fn finish(self: Box<Self>, commit: Result<(), WireError>) {
        let out = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(e),
            (None, Ok(())) => Err(WireError::new(ErrorCode::Internal, "store job did not run")),
        };
        let _ = self.tx.send(out);
    }
}

enum Msg {
    Job(Box<dyn Job>),
    Close,
}

/// This machine in the mesh, once the daemon has read `federation.toml` and its device key
/// ([`Store::set_identity`]). Without it nothing crosses machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// This device's id (32 hex).
    pub device: String,
    /// This machine's host name in the mesh.
    pub host: String,
}

/// Normalised form of a name, for case-insensitive addressing.
pub fn norm(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Handle to the store thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Msg>,
    path: PathBuf,
    /// Idle read-only connections for [`Store::read`].
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Counts the store thread's commits ([`Store::subscribe_commits`]).
    commits: Arc<watch::Sender<u64>>,
    /// Sessions that may have urgent mail waiting (kept by the store thread).
    hints: Arc<MailHints>,
    /// This machine in the mesh across machines, once the daemon joined one.
    identity: Arc<std::sync::OnceLock<Arc<Identity>>>,
    /// Told when an envelope was committed to the outbox (the forwarder waits on it).
    outbox: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Joins the store thread; returned by [`Store::open`].
#[derive(Debug)]
pub struct StoreThread(JoinHandle<()>);

impl StoreThread {
    /// Wait for the thread to finish its last batch and close the database.
    pub fn join(self) {
        let _ = self.0.join();
    }
}

impl Store {
    /// Open (creating if needed) and migrate the database, then start the store thread.
    pub fn open(path: &Path) -> Result<(Store, StoreThread), WireError> {
        let mut conn = open_connection(path).map_err(|e| sql_error(&e, path))?;
        schema::migrate(&mut conn).map_err(|e| sql_error(&e, path))?;
        Self::start(conn, path)
    }

    /// [`Store::open`] for the daemon's start: a damaged database (not a database at all, or
    /// failing `PRAGMA quick_check`) is moved aside, with its `-wal` and `-shm`, into
    /// `<dir>/corrupt-<UTC stamp>/`, and the daemon starts on a fresh one. Failing instead would
    /// make the service manager restart it forever. Any other error (permissions, a full disk,
    /// a newer schema) fails as before: those are not fixed by starting afresh.
    pub fn open_or_recover(
        path: &Path,
    ) -> Result<(Store, StoreThread, Option<Recovered>), WireError> {
        let damage = match open_checked(path) {
            Ok(conn) => return Self::start(conn, path).map(|(s, t)| (s, t, None)),
            Err(Opened::Damaged(why)) => why,
            Err(Opened::Failed(e)) => return Err(e),
        };
        let moved_to = move_aside(path).map_err(|e| {
            WireError::new(
                ErrorCode::Storage,
                format!(
                    "database {} is damaged ({damage}) and cannot be moved aside: {e}",
                    path.display()
                ),
            )
        })?;
        let (store, thread) = Self::open(path)?;
        Ok((
            store,
            thread,
            Some(Recovered {
                moved_to,
                reason: damage,
            }),
        ))
    }

    fn start(conn: Connection, path: &Path) -> Result<(Store, StoreThread), WireError> {
        let (tx, rx) = mpsc::channel();
        let store = Store {
            tx,
            path: path.to_owned(),
            readers: Arc::default(),
            commits: Arc::new(watch::Sender::new(0)),
            hints: Arc::default(),
            identity: Arc::default(),
            outbox: Arc::default(),
        };
        let handle = store.clone();
        let thread = std::thread::Builder::new()
            .name("mesh-store".into())
            .spawn(move || store_thread(conn, rx, handle))
            .map_err(|e| {
                WireError::new(
                    ErrorCode::Internal,
                    format!("cannot start the store thread: {e}"),
                )
            })?;
        Ok((store, StoreThread(thread)))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which sessions may have urgent mail waiting: a hint only (see [`MailHints`]).
    pub fn hints(&self) -> &MailHints {
        &self.hints
    }

    /// This machine in the mesh, if it joined one (set once, at the daemon's start).
    pub fn identity(&self) -> Option<Arc<Identity>> {
        self.identity.get().cloned()
    }

    /// Make this store part of a mesh: from now on sends may go to other machines, and mail
    /// from them is handed out with receipts. Set once; later calls change nothing.
    pub fn set_identity(&self, id: Identity) {
        let _ = self.identity.set(Arc::new(id));
    }

    /// Wake the outbox forwarder: an envelope was committed (called after the commit).
    pub fn outbox_changed(&self) {
        self.outbox.notify_one();
    }

    /// Resolves once an envelope was committed to the outbox since the last wake-up (a permit
    /// is kept if none waited).
    pub async fn outbox_committed(&self) {
        self.outbox.notified().await;
    }

    /// Told after every commit of the store thread, before its callers hear of it: anything
    /// that watches the database (`mesh run` supervisors) reads again then, and never polls.
    pub fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Run `f` in the store thread, inside a transaction; the result arrives after the commit.
    pub async fn call<T, F>(&self, f: F) -> Result<T, WireError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ctx<'_>) -> Result<T, WireError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(f, tx, true)?;
        rx.await.map_err(|_| shutting_down())?
    }

    /// [`Store::call`] for soft state (see the module docs): its writes are committed, but when
    /// its whole batch is soft the commit does not wait for the fsync.
    pub async fn call_soft<T, F>(&self, f: F) -> Result<T, WireError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ctx<'_>) -> Result<T, WireError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(f, tx, false)?;
        rx.await.map_err(|_| shutting_down())?
    }

    /// Run `f` on this thread in a read transaction on a read-only connection: it sees what is
    /// committed, and never waits for the store thread. For short queries only (it blocks the
    /// calling thread, a tokio worker).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Reader<'_>) -> Result<T, WireError>,
    ) -> Result<T, WireError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_reader(&self.path).map_err(|e| sql_error(&e, &self.path))?,
        };
        let reader = Reader {
            conn: &conn,
            path: &self.path,
        };
        exec_cached(&conn, "BEGIN").map_err(|e| sql_error(&e, &self.path))?;
        let out = f(&reader);
        // Ending a read transaction cannot lose anything; a failure here means the
        // connection is in a bad state, so it is not reused.
        if exec_cached(&conn, "COMMIT").is_ok() {
            let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        out
    }

    /// Like [`Store::call`] but without waiting for the result (for follow-up work).
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce(&mut Ctx<'_>) -> Result<(), WireError> + Send + 'static,
    {
        let (tx, _rx) = oneshot::channel();
        let _ = self.submit(f, tx, true);
    }

    /// Blocking variant of [`Store::call`], for use outside the async runtime.
    pub fn call_blocking<T, F>(&self, f: F) -> Result<T, WireError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ctx<'_>) -> Result<T, WireError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(f, tx, true)?;
        rx.blocking_recv().map_err(|_| shutting_down())?
    }

    fn submit<T, F>(
        &self,
        f: F,
        tx: oneshot::Sender<Result<T, WireError>>,
        durable: bool,
    ) -> Result<(), WireError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ctx<'_>) -> Result<T, WireError> + Send + 'static,
    {
        let job = CallJob {
            f: Some(f),
            durable,
            result: None,
            tx,
        };
        self.tx
            .send(Msg::Job(Box::new(job)))
            .map_err(|_| shutting_down())
    }

    /// Ask the store thread to finish the jobs already queued and close the database. Use
    /// [`StoreThread::join`] to wait for it.
    pub fn close(&self) {
        let _ = self.tx.send(Msg::Close);
    }
}

fn shutting_down() -> WireError {
    WireError::new(
        ErrorCode::ShuttingDown,
        "the daemon is shutting down; retry in a moment",
    )
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "cannot switch the database to WAL mode (got {mode})"
            )),
        ));
    }
    // FULL, not NORMAL: in WAL mode NORMAL already survives a crash of the daemon (kill -9),
    // but may lose the last commits on power loss. A message id is a promise that the message
    // is kept, so we pay for the fsync on every commit, and group commit spreads that cost
    // over every request waiting in the same batch.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    keep_plans(&conn)?;
    Ok(conn)
}

/// Make cached statements stay prepared. Without the query planner stability guarantee,
/// SQLite marks a statement whose plan could depend on a bound value (any `col = ?` its
/// planner weighs as a filter), and rusqlite's statement cache clears the bindings of every
/// statement it takes back, which expires such a statement: the next use parsed and planned
/// it again, on every hook call. Our plans never depend on the values (there are no
/// `sqlite_stat` tables, and the lookups are written for their indexes), so nothing is lost.
fn keep_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// A damaged database that [`Store::open_or_recover`] moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The directory now holding the damaged files.
    pub moved_to: PathBuf,
    /// What was wrong, as SQLite said it.
    pub reason: String,
}

/// The prefix of the directories damaged databases are moved to (`mesh health` looks for them).
pub const CORRUPT_DIR_PREFIX: &str = "corrupt-";

enum Opened {
    /// The file is not a usable database: move it aside.
    Damaged(String),
    /// Anything else: report it.
    Failed(WireError),
}

/// Open, check and migrate.
fn open_checked(path: &Path) -> Result<Connection, Opened> {
    let classify = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(SqlCode::DatabaseCorrupt | SqlCode::NotADatabase) => Opened::Damaged(e.to_string()),
        _ => Opened::Failed(sql_error(&e, path)),
    };
    let mut conn = open_connection(path).map_err(classify)?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(classify)?;
    if problems != ["ok"] {
        return Err(Opened::Damaged(format!(
            "quick_check: {}",
            problems.join("; ")
        )));
    }
    schema::migrate(&mut conn).map_err(classify)?;
    Ok(conn)
}

/// Move `path`, `path-wal` and `path-shm` into a new `corrupt-<stamp>` directory beside them.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let stamp = crate::paths::utc_stamp(SystemTime::now());
    let mut aside = dir.join(format!("{CORRUPT_DIR_PREFIX}{stamp}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = dir.join(format!("{CORRUPT_DIR_PREFIX}{stamp}-{n}"));
    }
    std::fs::create_dir(&aside)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    for suffix in ["", "-wal", "-shm"] {
        let from = dir.join(format!("{name}{suffix}"));
        match std::fs::rename(&from, aside.join(format!("{name}{suffix}"))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(aside)
}

/// A connection for [`Store::read`]: it refuses writes (`query_only`), and waits for the
/// writer's lock only in the rare moments a checkpoint or recovery needs it.
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "query_only", true)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    keep_plans(&conn)?;
    Ok(conn)
}

/// [`sql_error`] for the database `r` reads: what every store query maps its error with.
pub(crate) fn db(r: &Reader<'_>, e: rusqlite::Error) -> WireError {
    sql_error(&e, r.path())
}

/// Map a SQLite error to the wire, with a message that says what to do.
pub fn sql_error(e: &rusqlite::Error, path: &Path) -> WireError {
    match e.sqlite_error_code() {
        Some(SqlCode::DiskFull) => WireError::new(
            ErrorCode::DiskFull,
            format!(
                "disk full: cannot write {}; free some space and retry (nothing was accepted)",
                path.display()
            ),
        ),
        Some(SqlCode::DatabaseCorrupt | SqlCode::NotADatabase) => WireError::new(
            ErrorCode::Storage,
            format!(
                "database {} is corrupt ({e}); run `mesh health`",
                path.display()
            ),
        ),
        Some(SqlCode::DatabaseBusy | SqlCode::DatabaseLocked) => WireError::new(
            ErrorCode::Storage,
            format!(
                "the database {} is locked by another program ({e}); nothing was accepted: \
                 close whatever holds it (an open `sqlite3` shell, a backup tool), then retry",
                path.display()
            ),
        ),
        Some(SqlCode::ReadOnly | SqlCode::PermissionDenied | SqlCode::CannotOpen) => {
            WireError::new(
                ErrorCode::Storage,
                format!(
                    "cannot write database {} ({e}); check its permissions and free space",
                    path.display()
                ),
            )
        }
        _ => WireError::new(
            ErrorCode::Storage,
            format!("database error on {}: {e}", path.display()),
        ),
    }
}

/// Milliseconds since the epoch (the clock every stored timestamp uses).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn store_thread(conn: Connection, rx: mpsc::Receiver<Msg>, store: Store) {
    let mut waiters = Waiters::default();
    // `synchronous=NORMAL` is in force (the last batch was soft).
    let mut relaxed = false;
    let mut closing = false;
    while !closing {
        let Ok(first) = rx.recv() else { break };
        let mut batch = Vec::new();
        match first {
            Msg::Job(j) => batch.push(j),
            Msg::Close => closing = true,
        }
        while !closing && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => batch.push(j),
                Ok(Msg::Close) => closing = true,
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            run_batch(&conn, &mut relaxed, &mut waiters, &store, batch);
        }
    }
    // Fail whatever raced with the close.
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Job(j) = msg {
            j.finish(Err(shutting_down()));
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!("closing the database: {e}");
    }
    tracing::debug!("store thread stopped");
}

fn run_batch(
    conn: &Connection,
    relaxed: &mut bool,
    waiters: &mut Waiters,
    store: &Store,
    mut batch: Vec<Box<dyn Job>>,
) {
    let path = store.path.as_path();
    // A batch of soft jobs only commits without waiting for the fsync (module docs). The level
    // is switched only when it changes; a durable batch never runs unless FULL is in force.
    let soft = !batch.iter().any(|j| j.durable());
    if *relaxed != soft {
        let level = if soft { "NORMAL" } else { "FULL" };
        match conn.pragma_update(None, "synchronous", level) {
            Ok(()) => *relaxed = soft,
            Err(e) if soft => tracing::warn!("cannot relax synchronous for a soft batch: {e}"),
            Err(e) => {
                let err = sql_error(&e, path);
                tracing::error!("cannot restore synchronous=FULL: {}", err.message);
                for job in batch {
                    job.finish(Err(err.clone()));
                }
                return;
            }
        }
    }
    if let Err(e) = exec_cached(conn, "BEGIN IMMEDIATE") {
        let err = sql_error(&e, path);
        tracing::error!("cannot begin a transaction: {}", err.message);
        for job in batch {
            job.finish(Err(err.clone()));
        }
        return;
    }
    let mut ctx = Ctx {
        reader: Reader { conn, path },
        waiters,
        now_ms: now_ms(),
        store,
        effects: Vec::new(),
    };
    if let [job] = batch.as_mut_slice() {
        // One job (the usual case when one hook asks at a time): the transaction is its
        // savepoint. If it fails, nothing is committed.
        if !job.run(&mut ctx) {
            if let Err(e) = exec_cached(conn, "ROLLBACK") {
                tracing::error!("rollback of a failed job: {e}");
            }
            for job in batch {
                job.finish(Ok(()));
            }
            return;
        }
    } else {
        for job in batch.iter_mut() {
            let mark = ctx.effects.len();
            if let Err(e) = exec_cached(ctx.conn, "SAVEPOINT job") {
                tracing::error!("savepoint: {e}");
            }
            let ok = job.run(&mut ctx);
            if !ok {
                ctx.effects.truncate(mark);
                if let Err(e) = exec_cached(ctx.conn, "ROLLBACK TO job") {
                    tracing::error!("savepoint rollback: {e}");
                }
            }
            if let Err(e) = exec_cached(ctx.conn, "RELEASE job") {
                tracing::error!("savepoint end: {e}");
            }
        }
    }
    let effects = std::mem::take(&mut ctx.effects);
    let commit = exec_cached(conn, "COMMIT").map_err(|e| {
        let err = sql_error(&e, path);
        tracing::error!("commit failed: {}", err.message);
        if let Err(e) = exec_cached(conn, "ROLLBACK") {
            tracing::error!("rollback after failed commit: {e}");
        }
        err
    });
    if commit.is_ok() {
        store.commits.send_modify(|n| *n = n.wrapping_add(1));
        for effect in effects {
            effect();
        }
    }
    for job in batch {
        job.finish(commit.clone());
    }
}

/// A statement without parameters or rows, prepared once per connection: transaction control,
/// which every read and every batch runs (`execute_batch` would parse it every time).
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests;
