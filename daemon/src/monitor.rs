//! Liveness monitor: one watcher task per live session, woken by the OS when the process
//! exits (see [`crate::liveness`]), plus a periodic sweep as a safety net (and the only
//! mechanism for processes that died while the daemon was not running). The sweep also prunes
//! what retention lets go ([`crate::store::retention`]), off the hooks' path.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Store, messages, retention, sessions};
use crate::{liveness, procinfo};

/// Spawns and tracks watcher tasks.
#[derive(Debug, Clone)]
pub struct Monitor {
    store: Store,
    watched: Arc<Mutex<HashSet<(i64, u32, u64)>>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Retention age ([`crate::Config::retain`]); `None`: nothing is pruned.
    retain: Option<Duration>,
}

/// Most prune jobs one sweep runs (each deletes at most [`retention::BATCH`] rows); what is
/// left waits for the next sweep.
const MAX_PRUNE_JOBS: usize = 40;

impl Monitor {
    pub fn new(store: Store, tasks: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            store,
            watched: Arc::default(),
            tasks,
            shutdown,
            retain: None,
        }
    }

    /// Prune what is older than `retain` at every sweep.
    pub fn retaining(mut self, retain: Option<Duration>) -> Self {
        self.retain = retain;
        self
    }

    /// Delete what retention lets go, a bounded batch per store job so hooks and sends queued
    /// behind it wait for one batch at most.
    async fn prune(&self) {
        let Some(age) = self.retain else { return };
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let mut after = 0;
        let (mut messages, mut sessions) = (0, 0);
        for _ in 0..MAX_PRUNE_JOBS {
            let done = self
                .store
                .call(move |ctx| retention::prune(ctx, age_ms, after, retention::BATCH))
                .await;
            match done {
                Ok(p) => {
                    messages += p.messages;
                    sessions += p.sessions;
                    after = p.scanned_to;
                    if p.done {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!("pruning old mail and sessions: {}", e.message);
                    break;
                }
            }
            if self.shutdown.is_cancelled() {
                break;
            }
        }
        if messages + sessions > 0 {
            tracing::info!(
                messages,
                sessions,
                "pruned delivered mail and ended sessions older than {age:?}"
            );
        }
    }

    /// Watch session `key` running as `(pid, start)` until that process exits.
    pub fn watch(&self, key: i64, pid: u32, start: u64) {
        let id = (key, pid, start);
        if let Ok(mut w) = self.watched.lock()
            && !w.insert(id)
        {
            return;
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = liveness::exited(pid, start) => this.exited(key, pid, start).await,
                () = this.shutdown.cancelled() => {}
            }
            if let Ok(mut w) = this.watched.lock() {
                w.remove(&id);
            }
        });
    }

    async fn exited(&self, key: i64, pid: u32, start: u64) {
        match self
            .store
            .call(move |ctx| sessions::process_exited(ctx, key, pid, start))
            .await
        {
            Ok(true) => tracing::info!(key, pid, "session process exited"),
            Ok(false) => {}
            Err(e) => tracing::warn!(key, pid, "recording a session's exit failed: {e}"),
        }
    }

    /// Check every session believed live against the OS; watch the live ones, retire the rest.
    pub async fn sweep(&self) {
        // The same job forgets the hand-outs past their retry window, off the hooks' path.
        let live = match self
            .store
            .call(|ctx| {
                // Not a reason to skip the liveness check (a full disk, say): the next sweep
                // tries again.
                if let Err(e) = messages::forget_old_handouts(ctx) {
                    tracing::warn!("forgetting old hand-outs: {}", e.message);
                }
                sessions::live_processes(ctx)
            })
            .await
        {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!("liveness sweep: {e}");
                return;
            }
        };
        let checked = tokio::task::spawn_blocking(move || {
            live.into_iter()
                .map(|(k, p, s)| (k, p, s, procinfo::is_alive(p, s)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (key, pid, start, alive) in checked {
            if alive {
                self.watch(key, pid, start);
            } else {
                self.exited(key, pid, start).await;
            }
        }
    }

    /// Sweep now and then every `every` until shutdown.
    pub fn start_sweeping(&self, every: Duration) {
        let this = self.clone();
        self.tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    // Pruning runs here, not in the sweep the daemon awaits before it serves:
                    // a large backlog must not delay the start.
                    _ = tick.tick() => {
                        this.sweep().await;
                        this.prune().await;
                    }
                    () = this.shutdown.cancelled() => break,
                }
            }
        });
    }
}
