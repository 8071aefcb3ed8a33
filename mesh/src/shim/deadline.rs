//! A hard deadline for short-lived shims (hooks, the status line): a real-time interval timer
//! whose SIGALRM handler writes one static line to stderr and `_exit(0)`s, so a daemon that hangs
//! (or a stdin that never closes) can never make Claude Code wait, whatever the code is doing at
//! that moment. Socket timeouts are derived from the same deadline, ending [`MARGIN`] before the
//! alarm, so in the ordinary failure case the socket gives up first and the shim reports a
//! proper error; the alarm is the backstop.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long before the alarm the socket operations must have given up.
pub(crate) const MARGIN: Duration = Duration::from_millis(150);

/// What the alarm says before it ends the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alarm {
    /// `mesh hook`: one warning line on stderr.
    Hook,
    /// `mesh statusline`: nothing (a status line has nowhere useful to say it).
    Quiet,
}

/// The armed deadline of this process.
#[derive(Debug)]
pub(crate) struct Deadline {
    /// When socket operations must have given up ([`MARGIN`] before the alarm).
    io_end: Instant,
}

impl Deadline {
    /// Arm the alarm to end the process after `total`. If the timer cannot be armed (it never
    /// fails in practice), the socket timeouts still bound every wait.
    pub(crate) fn arm(total: Duration, alarm: Alarm) -> Self {
        let start = Instant::now();
        let handler: extern "C" fn(libc::c_int) = match alarm {
            Alarm::Hook => on_alarm_hook,
            Alarm::Quiet => on_alarm_quiet,
        };
        // SAFETY: the handler only calls async-signal-safe functions (write, _exit); the
        // structures passed are fully initialised and outlive the calls.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as usize as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            if libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()) == 0 {
                set_timer(total);
            }
        }
        Self {
            io_end: start + total.saturating_sub(MARGIN),
        }
    }

    /// Time left for socket I/O; at least 1 ms (a zero timeout means "forever" to the OS).
    pub(crate) fn remaining(&self) -> Duration {
        self.io_end
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    /// Whether the I/O budget is used up.
    pub(crate) fn expired(&self) -> bool {
        Instant::now() >= self.io_end
    }

    /// Cancel the alarm: called once all daemon I/O is done and only bounded local work (writing
    /// a few KB to stdout) remains, so that messages already marked delivered are not lost to a
    /// late alarm between the daemon's answer and the output.
    pub(crate) fn disarm(&self) {
        set_timer(Duration::ZERO);
    }
}

fn set_timer(after: Duration) {
    let value = libc::timeval {
        tv_sec: after.as_secs() as libc::time_t,
        tv_usec: after.subsec_micros() as libc::suseconds_t,
    };
    let timer = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: value,
    };
    // SAFETY: `timer` is a valid itimerval; the old value is not requested.
    unsafe {
        libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut());
    }
}

/// The most bytes of [`last_words`].
const LAST_WORDS_MAX: usize = 64;
static LAST_FD: AtomicI32 = AtomicI32::new(-1);
static LAST_LEN: AtomicUsize = AtomicUsize::new(0);
static LAST_BUF: [AtomicU8; LAST_WORDS_MAX] = [const { AtomicU8::new(0) }; LAST_WORDS_MAX];

/// What the hook's alarm writes to `fd` before it ends the process: `frame`, a whole request
/// frame (a `GiveBack` of the hand-out the hook is about to take, so that mail it took but never
/// printed goes back to the queue). Set before each request that hands mail out; at most
/// [`LAST_WORDS_MAX`] bytes (longer: nothing is written). Kept in atomics, so the handler reads
/// it without locks; write(2) is async-signal-safe. Requests on a connection are handled in
/// order, so the daemon sees it after the request that took the mail, whatever it answered.
pub(crate) fn last_words(fd: RawFd, frame: &[u8]) {
    LAST_LEN.store(0, Ordering::SeqCst);
    if frame.len() > LAST_WORDS_MAX {
        return;
    }
    for (slot, byte) in LAST_BUF.iter().zip(frame) {
        slot.store(*byte, Ordering::Relaxed);
    }
    LAST_FD.store(fd, Ordering::SeqCst);
    LAST_LEN.store(frame.len(), Ordering::SeqCst);
}

/// No last words: the socket they were for is closed.
pub(crate) fn forget_last_words() {
    LAST_LEN.store(0, Ordering::SeqCst);
}

extern "C" fn on_alarm_hook(_sig: libc::c_int) {
    const MSG: &[u8] = b"mesh hook: gave up at the hook's deadline (its stdin never ended, or the mesh daemon did not answer in time)\n";
    let len = LAST_LEN.load(Ordering::SeqCst);
    let fd = LAST_FD.load(Ordering::SeqCst);
    let mut frame = [0u8; LAST_WORDS_MAX];
    for (byte, slot) in frame.iter_mut().zip(&LAST_BUF).take(len) {
        *byte = slot.load(Ordering::Relaxed);
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffers are a static and a local
    // array that outlive the calls.
    unsafe {
        if len > 0 && fd >= 0 {
            libc::write(fd, frame.as_ptr().cast(), len);
        }
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(0);
    }
}

extern "C" fn on_alarm_quiet(_sig: libc::c_int) {
    // SAFETY: _exit(2) is async-signal-safe.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_ends_margin_before_the_alarm_and_never_reaches_zero() {
        let d = Deadline {
            io_end: Instant::now() + Duration::from_secs(1),
        };
        assert!(d.remaining() <= Duration::from_secs(1));
        assert!(!d.expired());
        let past = Deadline {
            io_end: Instant::now(),
        };
        assert_eq!(past.remaining(), Duration::from_millis(1));
        assert!(past.expired());
    }
}
