//! Liveness monitor: one watcher task per live session, woken by the OS when the process
//! exits (see [`crate::liveness`]), plus a periodic sweep as a safety net (and the only
//! mechanism for processes that died while the daemon was not running).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Store, messages, sessions};
use crate::{liveness, procinfo};

/// Spawns and tracks watcher tasks.
#[derive(Debug, Clone)]
pub struct Monitor {
    store: Store,
    watched: Arc<Mutex<HashSet<(i64, u32, u64)>>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Monitor {
    pub fn new(store: Store, tasks: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            store,
            watched: Arc::default(),
            tasks,
            shutdown,
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
                    _ = tick.tick() => this.sweep().await,
                    () = this.shutdown.cancelled() => break,
                }
            }
        });
    }
}
