//! `mesh run` supervisors ([`mesh_proto::Request::Supervise`]): each holds one connection on
//! which the daemon pushes the state of the supervised session (idle or busy, and the tasks and
//! questions waiting for it) whenever it changes. The supervisor decides when to type a wake
//! line; the daemon only tells it what it needs to know, at once and without being polled.
//!
//! Change detection: each supervising connection subscribes to the store's commits
//! ([`Store::subscribe_commits`]), re-reads its session after each (one read on the pool of
//! read-only connections) and sends a frame only when what matters to it changed.
//!
//! Supervised sessions get no desktop notification ([`crate::notify`]): their supervisor wakes
//! them itself. [`Supervisors::supervised_keys`] tells which they are.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use mesh_proto::{Supervision, WireError};

use crate::procinfo::{self, StartTime};
use crate::store::sessions::{self, SessionRow};
use crate::store::{Reader, Store, waking};

/// The process a supervisor watches over: the one `mesh run` started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    pub start: StartTime,
}

/// A session found for a supervisor: its key, and its process then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    key: i64,
    pid: u32,
}

/// The supervisors connected now.
#[derive(Debug, Default)]
pub struct Supervisors {
    next_id: AtomicU64,
    /// Supervisor id → the session last found for it (key, and the pid it was found with).
    entries: Mutex<HashMap<u64, Option<Found>>>,
}

/// A connected supervisor; it leaves the registry when dropped.
#[derive(Debug)]
pub struct Registration<'a> {
    id: u64,
    target: Target,
    supervisors: &'a Supervisors,
}

impl Supervisors {
    pub fn add(&self, target: Target) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, None);
        Registration {
            id,
            target,
            supervisors: self,
        }
    }

    /// The sessions a connected supervisor watches over.
    pub fn supervised_keys(&self) -> HashSet<i64> {
        self.lock()
            .values()
            .filter_map(|f| f.map(|f| f.key))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Option<Found>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Registration<'_> {
    /// The supervised session's state now; remembers which session it is.
    pub fn state(&self, store: &Store) -> Result<Supervision, WireError> {
        let known = self.supervisors.lock().get(&self.id).copied().flatten();
        let (found, supervision) = store.read(|r| state(r, self.target, known))?;
        if let Some(f) = self.supervisors.lock().get_mut(&self.id) {
            *f = found;
        }
        Ok(supervision)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.supervisors.lock().remove(&self.id);
    }
}

/// What a supervisor acts on: which session, whether it is idle, and which mail waits. The
/// rest of [`Supervision`] (activity times, counts) changes on every hook and is not worth a
/// frame of its own.
pub fn same_for_supervisor(a: &Supervision, b: &Supervision) -> bool {
    let view = |s: &Supervision| {
        (
            s.session
                .as_ref()
                .map(|i| (i.key, i.session_id.clone(), i.idle, i.live)),
            s.waiting.iter().map(|w| w.id).collect::<Vec<_>>(),
        )
    };
    view(a) == view(b)
}

/// The live session of `target`: the one whose process it is, else the one whose process
/// descends from it most closely (Claude Code started through a wrapper script). `known`, the
/// session found last time, holds while it is live in the same process (no lineage walk).
fn find(
    r: &Reader<'_>,
    target: Target,
    known: Option<Found>,
) -> Result<Option<SessionRow>, WireError> {
    if let Some(f) = known
        && let Some(row) = sessions::by_key(r, f.key)?
        && row.live
        && row.pid == f.pid
    {
        return Ok(Some(row));
    }
    let mut best: Option<(usize, i64)> = None;
    for (key, pid, start) in sessions::live_processes(r)? {
        let distance = if pid == target.pid && start == target.start {
            Some(0)
        } else {
            procinfo::lineage(pid, 16)
                .iter()
                .position(|p| p.pid == target.pid && p.start == target.start)
        };
        if let Some(d) = distance
            && best.is_none_or(|(b, _)| d < b)
        {
            best = Some((d, key));
        }
    }
    match best {
        Some((_, key)) => sessions::by_key(r, key),
        None => Ok(None),
    }
}

fn state(
    r: &Reader<'_>,
    target: Target,
    known: Option<Found>,
) -> Result<(Option<Found>, Supervision), WireError> {
    let Some(row) = find(r, target, known)? else {
        return Ok((
            None,
            Supervision {
                session: None,
                waiting: Vec::new(),
            },
        ));
    };
    let waiting = waking::for_session(r, &row)?;
    let pending = sessions::pending_of(r, &row)?;
    Ok((
        Some(Found {
            key: row.key,
            pid: row.pid,
        }),
        Supervision {
            session: Some(row.info(pending)),
            waiting,
        },
    ))
}
