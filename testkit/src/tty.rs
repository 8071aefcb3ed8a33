//! A program in a real pseudo-terminal, for integration tests: [`Tty::spawn`] starts it as the
//! leader of a new session with the pty as its controlling terminal (`pty_process::blocking`),
//! a reader thread collects everything it prints, and the test types bytes into it and waits
//! for text to appear.
//!
//! What the program printed can be looked at three ways:
//! - [`Tty::output`]: the raw bytes, escape sequences and all (see [`Tty::wait_for_bytes`]);
//! - [`Tty::text`]: the bytes as text with escape sequences removed ([`strip_ansi`]); cursor
//!   moves become a space (horizontal) or a newline (vertical), so words a full-screen program
//!   spaces out with cursor moves stay apart. Full-screen programs redraw only what changed, so
//!   this is a log of what was drawn, not what is visible; [`Tty::mark`] / [`Tty::since`]
//!   look only at what came after a point;
//! - [`Tty::screen`]: what a terminal of that size would show now, from a small VT100 emulator
//!   (cursor movement, erasing, scroll regions, the alternate screen; no colours). Good for
//!   assertions on the current state and for failure messages.
//!
//! Dropping a [`Tty`] whose program still runs kills the program's process group.

use std::fmt;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use pty_process::blocking::Command;

/// Enter (the terminal sends CR).
pub const ENTER: &[u8] = b"\r";
/// Ctrl-C (ETX; the line discipline turns it into SIGINT unless the program set raw mode).
pub const CTRL_C: &[u8] = b"\x03";
/// Ctrl-D (EOT).
pub const CTRL_D: &[u8] = b"\x04";
/// Escape.
pub const ESC: &[u8] = b"\x1b";

/// `text` as a terminal sends a paste when the program enabled bracketed paste mode
/// (`ESC[?2004h`): between `ESC[200~` and `ESC[201~`. ESC characters in `text` are dropped, so
/// the text cannot end the paste early.
pub fn bracketed_paste(text: &str) -> Vec<u8> {
    let mut out = b"\x1b[200~".to_vec();
    out.extend(text.bytes().filter(|&b| b != 0x1b));
    out.extend_from_slice(b"\x1b[201~");
    out
}

struct State {
    bytes: Vec<u8>,
    /// The reader saw end of file (EIO: every descriptor of the terminal's other end closed).
    eof: bool,
    screen: Screen,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A program running in a pseudo-terminal. See the module documentation.
pub struct Tty {
    pty: Arc<pty_process::blocking::Pty>,
    child: Mutex<Child>,
    pid: u32,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    started: Instant,
}

impl fmt::Debug for Tty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tty")
            .field("pid", &self.pid)
            .field("output_bytes", &lock(&self.shared.state).bytes.len())
            .finish()
    }
}

impl Tty {
    /// Start `cmd` in a new pty of `rows` x `cols` (set before the program starts). The
    /// program's stdin, stdout and stderr are the pty (unless `cmd` set them), it is the leader
    /// of a new session and process group, and the pty is its controlling terminal. Set `TERM`
    /// in `cmd` for programs that look at it (the test's own environment is inherited unless
    /// `cmd` clears it).
    pub fn spawn(cmd: Command, rows: u16, cols: u16) -> Self {
        let (pty, pts) = pty_process::blocking::open().expect("open a pty");
        pty.resize(pty_process::Size::new(rows, cols))
            .expect("set the pty size");
        // `spawn` closes our copy of the terminal's other end, so reads end with EIO once the
        // program (and everything it started on the terminal) has exited.
        let child = cmd
            .spawn(pts)
            .unwrap_or_else(|e| panic!("spawn a program in a pty: {e}"));
        let pid = child.id();
        let pty = Arc::new(pty);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                bytes: Vec::new(),
                eof: false,
                screen: Screen::new(rows, cols),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let reader = {
            let pty = pty.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("tty-{pid}-reader"))
                .spawn(move || read_loop(&pty, &shared))
                .expect("spawn the pty reader thread")
        };
        Self {
            pty,
            child: Mutex::new(child),
            pid,
            shared,
            reader: Some(reader),
            started: Instant::now(),
        }
    }

    /// The program's process id (also its process group and session id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Type `bytes` (they arrive as one `write` on the terminal's master side).
    pub fn write(&self, bytes: &[u8]) {
        (&*self.pty)
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write {bytes:?} to the pty of pid {}: {e}", self.pid));
    }

    /// Everything the program printed so far, raw.
    pub fn output(&self) -> Vec<u8> {
        lock(&self.shared.state).bytes.clone()
    }

    /// The raw output after `mark`.
    pub fn output_since(&self, mark: usize) -> Vec<u8> {
        let state = lock(&self.shared.state);
        state.bytes[mark.min(state.bytes.len())..].to_vec()
    }

    /// Everything printed so far as text, escape sequences stripped ([`strip_ansi`]).
    pub fn text(&self) -> String {
        strip_ansi(&lock(&self.shared.state).bytes)
    }

    /// The current end of the output (a byte offset into [`Tty::output`]), for [`Tty::since`]
    /// and [`Tty::wait_for_since`].
    pub fn mark(&self) -> usize {
        lock(&self.shared.state).bytes.len()
    }

    /// What was printed after `mark`, as text ([`strip_ansi`]).
    pub fn since(&self, mark: usize) -> String {
        strip_ansi(&self.output_since(mark))
    }

    /// What the terminal shows now: one line per row, trailing blanks and blank rows at the
    /// bottom removed.
    pub fn screen(&self) -> String {
        lock(&self.shared.state).screen.render()
    }

    /// Whether the reader saw the end of the output (the program exited and nothing else holds
    /// the terminal).
    pub fn eof(&self) -> bool {
        lock(&self.shared.state).eof
    }

    /// Wait until `cond` holds, checking after every chunk of output (and at least every
    /// 50 ms). Fails at `timeout`, or as soon as the output ended with `cond` still false; the
    /// error names `what` and shows the screen and the tail of [`Tty::text`].
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Self) -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        let end = start + timeout;
        loop {
            let eof = self.eof();
            if cond(self) {
                return Ok(());
            }
            let now = Instant::now();
            if eof {
                return Err(format!(
                    "waiting for {what}: the program's output ended after {:?} ({})\n{}",
                    start.elapsed(),
                    self.status_note(),
                    self.describe()
                ));
            }
            if now >= end {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what} ({})\n{}",
                    self.status_note(),
                    self.describe()
                ));
            }
            let state = lock(&self.shared.state);
            let len = state.bytes.len();
            let wait = (end - now).min(Duration::from_millis(50));
            let _ = self
                .shared
                .changed
                .wait_timeout_while(state, wait, |s| s.bytes.len() == len && !s.eof);
        }
    }

    /// Wait until [`Tty::text`] contains `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        self.wait_until(&format!("{needle:?} in the output"), timeout, |t| {
            t.text().contains(needle)
        })
    }

    /// Wait until the text printed after `mark` contains `needle`.
    pub fn wait_for_since(
        &self,
        mark: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        self.wait_until(
            &format!("{needle:?} in the output after byte {mark}"),
            timeout,
            |t| t.since(mark).contains(needle),
        )
    }

    /// Wait until the raw output contains `needle` (e.g. an escape sequence).
    pub fn wait_for_bytes(&self, needle: &[u8], timeout: Duration) -> Result<(), String> {
        self.wait_until(
            &format!("{:?} in the raw output", String::from_utf8_lossy(needle)),
            timeout,
            |t| contains_bytes(&lock(&t.shared.state).bytes, needle),
        )
    }

    /// Wait until the screen ([`Tty::screen`]) shows `needle`.
    pub fn wait_for_screen(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        self.wait_until(&format!("{needle:?} on the screen"), timeout, |t| {
            t.screen().contains(needle)
        })
    }

    /// Change the terminal size; the kernel sends SIGWINCH to the foreground process group.
    pub fn resize(&self, rows: u16, cols: u16) {
        self.pty
            .resize(pty_process::Size::new(rows, cols))
            .unwrap_or_else(|e| panic!("resize the pty to {rows}x{cols}: {e}"));
        lock(&self.shared.state).screen.resize(rows, cols);
    }

    /// Send signal `sig` (e.g. `libc::SIGTERM`) to the program.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid as i32, sig) };
    }

    /// Send signal `sig` to the program's whole process group.
    pub fn signal_group(&self, sig: i32) {
        // SAFETY: kill(2) on the process group of our own child, a session leader.
        unsafe { libc::kill(-(self.pid as i32), sig) };
    }

    /// The exit status, if the program has exited (without waiting).
    pub fn try_exit(&self) -> Option<ExitStatus> {
        lock(&self.child).try_wait().ok().flatten()
    }

    /// Wait up to `timeout` for the program to exit; `None` if it is still running. After it
    /// exited, waits (at most 2 s more) for the rest of its output, so that [`Tty::text`] is
    /// complete.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let status = crate::poll(timeout, || self.try_exit())?;
        let state = lock(&self.shared.state);
        let _ = self
            .shared
            .changed
            .wait_timeout_while(state, Duration::from_secs(2), |s| !s.eof);
        Some(status)
    }

    /// The screen and the tail of the text, for failure messages.
    pub fn describe(&self) -> String {
        let text = self.text();
        let tail: String = {
            let chars: Vec<char> = text.chars().collect();
            chars[chars.len().saturating_sub(2000)..].iter().collect()
        };
        let len = self.mark();
        format!(
            "pid {} after {:?}, {len} bytes of output\n--- screen:\n{}\n--- last 2000 \
             characters of the text:\n{tail}\n---",
            self.pid,
            self.started.elapsed(),
            self.screen(),
        )
    }

    fn status_note(&self) -> String {
        match self.try_exit() {
            Some(status) => format!("the program exited: {status}"),
            None => "the program is still running".to_owned(),
        }
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        {
            let mut child = lock(&self.child);
            if child.try_wait().ok().flatten().is_none() {
                // SAFETY: kill(2) on the process group of our own child, a session leader.
                unsafe { libc::kill(-(self.pid as i32), libc::SIGKILL) };
                let _ = child.wait();
            }
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The reader thread: poll (so that it notices `stop` even while a grandchild keeps the
/// terminal open), read, append, notify. EIO on the master means every descriptor of the other
/// end is closed: the end of the output.
fn read_loop(pty: &pty_process::blocking::Pty, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stop.load(Ordering::SeqCst) {
        let mut pfd = libc::pollfd {
            fd: pty.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one valid pollfd that lives on this stack frame.
        let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if ready == 0 {
            continue;
        }
        match (&*pty).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut state = lock(&shared.state);
                state.bytes.extend_from_slice(&buf[..n]);
                state.screen.feed(&buf[..n]);
                drop(state);
                shared.changed.notify_all();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    lock(&shared.state).eof = true;
    shared.changed.notify_all();
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

// --- escape sequences -------------------------------------------------------------------------

/// One step of a terminal byte stream.
enum Token<'a> {
    /// A printable character.
    Char(char),
    /// A C0 control byte (CR, LF, BS, TAB, ...).
    Control(u8),
    /// `ESC [ <private> <params> <intermediates> <final>`.
    Csi {
        private: Option<u8>,
        params: &'a [u8],
        final_byte: u8,
    },
    /// `ESC <byte>` (with the designated charset byte for `ESC ( x` and the like skipped).
    Esc(u8),
    /// OSC, DCS, APC, PM, SOS strings: ignored.
    String,
}

/// The next token of `bytes` and its length; `None` when `bytes` ends inside a token.
fn next_token(bytes: &[u8]) -> Option<(Token<'_>, usize)> {
    let b = *bytes.first()?;
    if b == 0x1b {
        let kind = *bytes.get(1)?;
        return match kind {
            b'[' => {
                let mut i = 2;
                let private = match bytes.get(i) {
                    Some(&p @ (b'?' | b'>' | b'<' | b'=')) => {
                        i += 1;
                        Some(p)
                    }
                    Some(_) => None,
                    None => return None,
                };
                let start = i;
                while matches!(bytes.get(i), Some(0x30..=0x3f)) {
                    i += 1;
                }
                let params = &bytes[start..i];
                while matches!(bytes.get(i), Some(0x20..=0x2f)) {
                    i += 1;
                }
                let final_byte = *bytes.get(i)?;
                Some((
                    Token::Csi {
                        private,
                        params,
                        final_byte,
                    },
                    i + 1,
                ))
            }
            b']' | b'P' | b'X' | b'^' | b'_' => {
                // Ends with ST (ESC \) or, for OSC, BEL.
                let mut i = 2;
                loop {
                    match *bytes.get(i)? {
                        0x07 => return Some((Token::String, i + 1)),
                        0x1b => {
                            let _ = bytes.get(i + 1)?;
                            return Some((Token::String, i + 2));
                        }
                        _ => i += 1,
                    }
                }
            }
            b'(' | b')' | b'*' | b'+' | b'-' | b'.' | b'/' | b'#' | b'%' | b' ' => {
                let _ = bytes.get(2)?;
                Some((Token::Esc(kind), 3))
            }
            _ => Some((Token::Esc(kind), 2)),
        };
    }
    if b < 0x20 || b == 0x7f {
        return Some((Token::Control(b), 1));
    }
    if b < 0x80 {
        return Some((Token::Char(char::from(b)), 1));
    }
    let len = match b {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return Some((Token::Char(char::REPLACEMENT_CHARACTER), 1)),
    };
    if bytes.len() < len {
        // A character cut at the end: wait for the rest, unless it is already invalid.
        return match std::str::from_utf8(bytes) {
            Err(e) if e.error_len().is_some() => {
                Some((Token::Char(char::REPLACEMENT_CHARACTER), 1))
            }
            _ => None,
        };
    }
    match std::str::from_utf8(&bytes[..len]) {
        Ok(s) => Some((Token::Char(s.chars().next()?), len)),
        Err(_) => Some((Token::Char(char::REPLACEMENT_CHARACTER), 1)),
    }
}

/// `bytes` as text, without escape sequences: cursor moves to another row (`CSI A B E F H f d`,
/// `ESC D E M`) and LF become a newline, horizontal ones (`CSI C G \``, TAB) a space; CR,
/// other controls, colours, modes, OSC strings (titles, hyperlinks) disappear. Invalid UTF-8
/// becomes U+FFFD; an incomplete sequence at the end is dropped.
pub fn strip_ansi(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let Some((token, len)) = next_token(&bytes[i..]) else {
            break;
        };
        i += len;
        match token {
            Token::Char(c) => out.push(c),
            Token::Control(b'\n' | 0x0b | 0x0c) => out.push('\n'),
            Token::Control(b'\t') => out.push(' '),
            Token::Csi { final_byte, .. } => match final_byte {
                b'A' | b'B' | b'E' | b'F' | b'H' | b'f' | b'd' => out.push('\n'),
                b'C' | b'G' | b'`' | b'I' => out.push(' '),
                _ => {}
            },
            Token::Esc(b'D' | b'E' | b'M') => out.push('\n'),
            Token::Control(_) | Token::Esc(_) | Token::String => {}
        }
    }
    out
}

// --- a small screen emulator ------------------------------------------------------------------

/// Display width of `c` in a terminal: 0 for combining marks and zero-width characters, 2 for
/// East Asian wide characters and most emoji, else 1. An approximation, good enough for the
/// characters test programs print.
fn char_width(c: char) -> usize {
    let u = u32::from(c);
    match u {
        0x0300..=0x036f | 0x200b..=0x200f | 0x20d0..=0x20ff | 0xfe00..=0xfe0f => 0,
        0x1100..=0x115f
        | 0x2e80..=0x303e
        | 0x3041..=0x33ff
        | 0x3400..=0x4dbf
        | 0x4e00..=0x9fff
        | 0xa000..=0xa4cf
        | 0xac00..=0xd7a3
        | 0xf900..=0xfaff
        | 0xfe30..=0xfe4f
        | 0xff00..=0xff60
        | 0xffe0..=0xffe6
        | 0x1f300..=0x1f64f
        | 0x1f900..=0x1f9ff
        | 0x20000..=0x3fffd => 2,
        _ => 1,
    }
}

/// The visible state of a terminal: a grid of characters, the cursor, the scroll region, the
/// alternate screen. `'\0'` marks the second cell of a wide character.
struct Screen {
    rows: usize,
    cols: usize,
    grid: Vec<Vec<char>>,
    /// The main screen while the alternate one is shown.
    main: Option<Vec<Vec<char>>>,
    row: usize,
    col: usize,
    /// The cursor is past the last column: the next character goes to the next line.
    wrap_pending: bool,
    saved: (usize, usize),
    top: usize,
    bottom: usize,
    /// An incomplete token from the end of the last chunk.
    pending: Vec<u8>,
}

impl Screen {
    fn new(rows: u16, cols: u16) -> Self {
        let (rows, cols) = (usize::from(rows.max(1)), usize::from(cols.max(1)));
        Self {
            rows,
            cols,
            grid: vec![vec![' '; cols]; rows],
            main: None,
            row: 0,
            col: 0,
            wrap_pending: false,
            saved: (0, 0),
            top: 0,
            bottom: rows - 1,
            pending: Vec::new(),
        }
    }

    fn resize(&mut self, rows: u16, cols: u16) {
        let (rows, cols) = (usize::from(rows.max(1)), usize::from(cols.max(1)));
        for grid in std::iter::once(&mut self.grid).chain(self.main.as_mut()) {
            grid.resize(rows, vec![' '; cols]);
            for line in grid.iter_mut() {
                line.resize(cols, ' ');
            }
        }
        self.rows = rows;
        self.cols = cols;
        self.row = self.row.min(rows - 1);
        self.col = self.col.min(cols - 1);
        self.top = 0;
        self.bottom = rows - 1;
        self.wrap_pending = false;
    }

    fn render(&self) -> String {
        let mut lines: Vec<String> = self
            .grid
            .iter()
            .map(|line| {
                let s: String = line.iter().filter(|&&c| c != '\0').collect();
                s.trim_end().to_owned()
            })
            .collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines.join("\n")
    }

    fn feed(&mut self, bytes: &[u8]) {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(bytes);
        let mut i = 0;
        while i < data.len() {
            let Some((token, len)) = next_token(&data[i..]) else {
                break;
            };
            self.apply(token);
            i += len;
        }
        self.pending = data[i..].to_vec();
        if self.pending.len() > 4096 {
            // A runaway string (an OSC never terminated): give up on it.
            self.pending.clear();
        }
    }

    fn apply(&mut self, token: Token<'_>) {
        match token {
            Token::Char(c) => self.put(c),
            Token::Control(b) => self.control(b),
            Token::Csi {
                private,
                params,
                final_byte,
            } => self.csi(private, params, final_byte),
            Token::Esc(b) => self.esc(b),
            Token::String => {}
        }
    }

    fn put(&mut self, c: char) {
        let width = char_width(c);
        if width == 0 {
            return;
        }
        if self.wrap_pending || self.col + width > self.cols {
            self.col = 0;
            self.linefeed();
        }
        self.wrap_pending = false;
        self.grid[self.row][self.col] = c;
        if width == 2 && self.col + 1 < self.cols {
            self.grid[self.row][self.col + 1] = '\0';
        }
        self.col += width;
        if self.col >= self.cols {
            self.col = self.cols - 1;
            self.wrap_pending = true;
        }
    }

    fn control(&mut self, b: u8) {
        match b {
            b'\r' => {
                self.col = 0;
                self.wrap_pending = false;
            }
            b'\n' | 0x0b | 0x0c => {
                self.linefeed();
                self.wrap_pending = false;
            }
            0x08 => {
                self.col = self.col.saturating_sub(1);
                self.wrap_pending = false;
            }
            b'\t' => self.col = ((self.col / 8 + 1) * 8).min(self.cols - 1),
            _ => {}
        }
    }

    fn linefeed(&mut self) {
        if self.row == self.bottom {
            self.scroll_up(1);
        } else if self.row + 1 < self.rows {
            self.row += 1;
        }
    }

    fn blank(&self) -> Vec<char> {
        vec![' '; self.cols]
    }

    /// Move the lines of the scroll region up by `n`, blank lines entering at the bottom.
    fn scroll_up(&mut self, n: usize) {
        for _ in 0..n.min(self.bottom - self.top + 1) {
            self.grid.remove(self.top);
            let blank = self.blank();
            self.grid.insert(self.bottom, blank);
        }
    }

    fn scroll_down(&mut self, n: usize) {
        for _ in 0..n.min(self.bottom - self.top + 1) {
            self.grid.remove(self.bottom);
            let blank = self.blank();
            self.grid.insert(self.top, blank);
        }
    }

    fn esc(&mut self, b: u8) {
        match b {
            b'7' => self.saved = (self.row, self.col),
            b'8' => {
                (self.row, self.col) = self.saved;
                self.wrap_pending = false;
            }
            b'D' => self.linefeed(),
            b'E' => {
                self.col = 0;
                self.linefeed();
            }
            b'M' => {
                if self.row == self.top {
                    self.scroll_down(1);
                } else {
                    self.row = self.row.saturating_sub(1);
                }
            }
            b'c' => *self = Self::new(self.rows as u16, self.cols as u16),
            _ => {}
        }
    }

    fn csi(&mut self, private: Option<u8>, params: &[u8], final_byte: u8) {
        let nums: Vec<usize> = params
            .split(|&b| b == b';')
            .map(|p| {
                std::str::from_utf8(p)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        let arg = |i: usize, default: usize| match nums.get(i) {
            Some(&0) | None => default,
            Some(&n) => n,
        };
        if let Some(p) = private {
            if p == b'?' && matches!(final_byte, b'h' | b'l') {
                for &mode in &nums {
                    if matches!(mode, 47 | 1047 | 1049) {
                        self.alternate(final_byte == b'h', mode == 1049);
                    }
                }
            }
            return;
        }
        let (last_row, last_col) = (self.rows - 1, self.cols - 1);
        match final_byte {
            b'A' => self.row = self.row.saturating_sub(arg(0, 1)),
            b'B' => self.row = (self.row + arg(0, 1)).min(last_row),
            b'C' => self.col = (self.col + arg(0, 1)).min(last_col),
            b'D' => self.col = self.col.saturating_sub(arg(0, 1)),
            b'E' => {
                self.row = (self.row + arg(0, 1)).min(last_row);
                self.col = 0;
            }
            b'F' => {
                self.row = self.row.saturating_sub(arg(0, 1));
                self.col = 0;
            }
            b'G' | b'`' => self.col = (arg(0, 1) - 1).min(last_col),
            b'd' => self.row = (arg(0, 1) - 1).min(last_row),
            b'H' | b'f' => {
                self.row = (arg(0, 1) - 1).min(last_row);
                self.col = (arg(1, 1) - 1).min(last_col);
            }
            b'J' => {
                let (row, col) = (self.row, self.col);
                let (from, to) = match nums.first().copied().unwrap_or(0) {
                    0 => ((row, col), (last_row, self.cols)),
                    1 => ((0, 0), (row, col + 1)),
                    _ => ((0, 0), (last_row, self.cols)),
                };
                for r in from.0..=to.0 {
                    let start = if r == from.0 { from.1 } else { 0 };
                    let end = if r == to.0 { to.1 } else { self.cols };
                    for cell in &mut self.grid[r][start.min(self.cols)..end.min(self.cols)] {
                        *cell = ' ';
                    }
                }
            }
            b'K' => {
                let col = self.col;
                let line = &mut self.grid[self.row];
                let range = match nums.first().copied().unwrap_or(0) {
                    0 => col..line.len(),
                    1 => 0..col + 1,
                    _ => 0..line.len(),
                };
                for cell in &mut line[range] {
                    *cell = ' ';
                }
            }
            b'X' => {
                let end = (self.col + arg(0, 1)).min(self.cols);
                for cell in &mut self.grid[self.row][self.col..end] {
                    *cell = ' ';
                }
            }
            b'P' => {
                let n = arg(0, 1).min(self.cols - self.col);
                let line = &mut self.grid[self.row];
                line.drain(self.col..self.col + n);
                line.resize(self.cols, ' ');
            }
            b'@' => {
                let n = arg(0, 1).min(self.cols - self.col);
                let line = &mut self.grid[self.row];
                for _ in 0..n {
                    line.insert(self.col, ' ');
                }
                line.truncate(self.cols);
            }
            b'L' | b'M' if (self.top..=self.bottom).contains(&self.row) => {
                let saved_top = self.top;
                self.top = self.row;
                if final_byte == b'L' {
                    self.scroll_down(arg(0, 1));
                } else {
                    self.scroll_up(arg(0, 1));
                }
                self.top = saved_top;
                self.col = 0;
            }
            b'S' => self.scroll_up(arg(0, 1)),
            b'T' => self.scroll_down(arg(0, 1)),
            b'r' => {
                let top = arg(0, 1) - 1;
                let bottom = arg(1, self.rows) - 1;
                if top < bottom && bottom < self.rows {
                    (self.top, self.bottom) = (top, bottom);
                } else {
                    (self.top, self.bottom) = (0, last_row);
                }
                (self.row, self.col) = (0, 0);
            }
            b's' => self.saved = (self.row, self.col),
            b'u' => (self.row, self.col) = self.saved,
            _ => return,
        }
        self.wrap_pending = false;
    }

    /// Switch to (`on`) or back from the alternate screen; 1049 also saves and restores the
    /// cursor.
    fn alternate(&mut self, on: bool, cursor: bool) {
        if on && self.main.is_none() {
            if cursor {
                self.saved = (self.row, self.col);
            }
            let blank = vec![self.blank(); self.rows];
            self.main = Some(std::mem::replace(&mut self.grid, blank));
        } else if !on && let Some(main) = self.main.take() {
            self.grid = main;
            if cursor {
                (self.row, self.col) = self.saved;
            }
        }
        self.wrap_pending = false;
    }
}
