//! The user's terminal: raw mode for the life of the supervisor (restored on drop, whatever
//! happens), its size, and its settings to start the child's terminal with.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::termios::{self, OptionalActions, Termios, Winsize};

/// The terminal in raw mode; dropping it restores the settings it had.
#[derive(Debug)]
pub struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    /// Put standard input's terminal in raw mode. `Ok(None)` when standard input is not a
    /// terminal (nothing to do).
    pub fn enable() -> std::io::Result<Option<Self>> {
        let fd = rustix::stdio::stdin();
        if !termios::isatty(fd) {
            return Ok(None);
        }
        let saved = termios::tcgetattr(fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(fd, OptionalActions::Now, &raw)?;
        Ok(Some(Self { fd, saved }))
    }

    /// Put the terminal back in raw mode (after the process was stopped and continued: the
    /// shell restores its own settings when it takes the terminal back).
    pub fn reapply(&self) {
        let mut raw = self.saved.clone();
        raw.make_raw();
        let _ = termios::tcsetattr(self.fd, OptionalActions::Now, &raw);
    }

    /// Give the terminal its own settings back for a while (the process is about to stop).
    pub fn restore(&self) {
        let _ = termios::tcsetattr(self.fd, OptionalActions::Now, &self.saved);
    }

    /// The settings the terminal had before raw mode.
    pub fn saved(&self) -> &Termios {
        &self.saved
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The size of the user's terminal (standard output's, else standard input's), if either is a
/// terminal.
pub fn size() -> Option<Winsize> {
    [rustix::stdio::stdout(), rustix::stdio::stdin()]
        .into_iter()
        .filter(|fd| termios::isatty(fd))
        .find_map(|fd| termios::tcgetwinsize(fd).ok())
        .filter(|w| w.ws_row > 0 && w.ws_col > 0)
}

/// Start the child's terminal with the user's settings (erase character, UTF-8 input…), as
/// `script` and terminal multiplexers do.
pub fn copy_settings(from: &Termios, to: impl AsFd) -> std::io::Result<()> {
    termios::tcsetattr(to, OptionalActions::Now, from)?;
    Ok(())
}
