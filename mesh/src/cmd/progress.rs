//! Progress where a person waits: a line on stderr saying what a command waits for, shown only
//! when the wait lasts longer than a second and stderr is a terminal (never into a pipe or a
//! log, and never on the hook path, which does not use this module). The line is erased when
//! the wait ends.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mesh_proto::sanitize;

/// How long a wait goes unmentioned.
const QUIET_FOR: Duration = Duration::from_secs(1);

/// A wait in progress; dropping it ends the wait (and erases the line if it was shown).
pub struct Waiting {
    done: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<bool>>,
}

/// Start waiting for `what` (e.g. "waiting for beta to answer (Ctrl-C gives up)"); said on
/// stderr after a second, if stderr is a terminal, as one line ([`sanitize::terminal_line`]: it
/// may name a peer).
pub fn waiting(what: impl Into<String>) -> Waiting {
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let thread = std::io::stderr().is_terminal().then(|| {
        let what = sanitize::terminal_line(&what.into());
        let done = Arc::clone(&done);
        std::thread::Builder::new()
            .name("mesh-progress".into())
            .spawn(move || {
                let (lock, cvar) = &*done;
                let Ok(guard) = lock.lock() else {
                    return false;
                };
                let Ok((guard, _)) = cvar.wait_timeout_while(guard, QUIET_FOR, |d| !*d) else {
                    return false;
                };
                if *guard {
                    return false;
                }
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "{what}…");
                let _ = err.flush();
                true
            })
            .ok()
    });
    Waiting {
        done,
        thread: thread.flatten(),
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.done;
        if let Ok(mut d) = lock.lock() {
            *d = true;
        }
        cvar.notify_all();
        if let Some(t) = self.thread.take()
            && t.join().unwrap_or(false)
        {
            // Erase the line: what comes next starts at column 0 of a clean line.
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
