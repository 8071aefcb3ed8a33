//! What the user has typed into the supervised session, as far as the supervisor can tell from
//! the bytes passing through: whether Claude Code's input line may hold something, whether a
//! prompt was just submitted, and when the last key came. The supervisor cannot see the input
//! box, so anything it cannot account for (cursor keys, history, Tab, other control keys)
//! makes the line [`Line::Unknown`], which counts as half-typed until Enter or Ctrl-C clears
//! it: a wake line is typed only into a line known to be empty.

use std::time::Instant;

/// The input line, as far as the bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Empty,
    /// This many characters typed (and not erased) since the line was last empty.
    Typed(usize),
    /// Something was edited in a way the supervisor cannot follow.
    Unknown,
}

/// Where the escape-sequence parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [` …, collecting parameter bytes.
    Csi,
    /// After `ESC O` (SS3): one more byte.
    Ss3,
}

/// The bracketed-paste markers a terminal wraps pasted text in.
const PASTE_START: &[u8] = b"200~";
const PASTE_END: &[u8] = b"201~";

/// Tracks the user's input. Feed it every byte read from the user's terminal, in order.
#[derive(Debug, Clone)]
pub struct Typing {
    line: Line,
    last_input: Option<Instant>,
    /// Enter on a non-empty line since [`Typing::reset_submitted`].
    submitted: bool,
    esc: Esc,
    csi: Vec<u8>,
    in_paste: bool,
    /// The last character typed was a backslash (`\` + Enter is a newline in Claude Code).
    backslash: bool,
}

impl Default for Typing {
    fn default() -> Self {
        Self {
            line: Line::Empty,
            last_input: None,
            submitted: false,
            esc: Esc::None,
            csi: Vec::new(),
            in_paste: false,
            backslash: false,
        }
    }
}

impl Typing {
    pub fn line(&self) -> Line {
        self.line
    }

    /// When the user last typed anything.
    pub fn last_input(&self) -> Option<Instant> {
        self.last_input
    }

    /// Whether a prompt was submitted since [`Typing::reset_submitted`].
    pub fn submitted(&self) -> bool {
        self.submitted
    }

    /// The session went idle again: what was submitted before has been handled.
    pub fn reset_submitted(&mut self) {
        self.submitted = false;
    }

    /// Bytes the user typed, at `now`.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) {
        if bytes.is_empty() {
            return;
        }
        self.last_input = Some(now);
        for &b in bytes {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        match self.esc {
            Esc::Start => {
                self.esc = match b {
                    b'[' => {
                        self.csi.clear();
                        Esc::Csi
                    }
                    b'O' => Esc::Ss3,
                    // Alt+key, or Esc then a key: an edit we cannot follow.
                    _ => {
                        self.unknown();
                        Esc::None
                    }
                };
                return;
            }
            Esc::Ss3 => {
                // F1–F4 or an application-mode cursor key.
                self.esc = Esc::None;
                self.unknown();
                return;
            }
            Esc::Csi => {
                self.csi.push(b);
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::None;
                    self.csi_done();
                } else if self.csi.len() > 32 {
                    // Not a sequence we know; stop collecting.
                    self.esc = Esc::None;
                    self.unknown();
                }
                return;
            }
            Esc::None => {}
        }
        if b == 0x1b {
            self.esc = Esc::Start;
            return;
        }
        if self.in_paste {
            // Pasted text, newlines included, lands in the line without submitting it.
            if !is_continuation(b) {
                self.add_char();
            }
            return;
        }
        let after_backslash = std::mem::replace(&mut self.backslash, false);
        match b {
            b'\r' | b'\n' if after_backslash => self.add_char(),
            b'\r' | b'\n' => {
                if self.line != Line::Empty {
                    self.submitted = true;
                }
                self.line = Line::Empty;
            }
            // Ctrl-C clears Claude Code's input (or, on an empty one, starts to exit).
            0x03 => self.line = Line::Empty,
            0x7f | 0x08 => {
                self.line = match self.line {
                    Line::Typed(n) if n > 1 => Line::Typed(n - 1),
                    Line::Typed(_) | Line::Empty => Line::Empty,
                    Line::Unknown => Line::Unknown,
                }
            }
            b if b < 0x20 => self.unknown(),
            b'\\' => {
                self.add_char();
                self.backslash = true;
            }
            b if is_continuation(b) => {}
            _ => self.add_char(),
        }
    }

    fn csi_done(&mut self) {
        let seq = std::mem::take(&mut self.csi);
        match seq.as_slice() {
            s if s == PASTE_START => self.in_paste = true,
            s if s == PASTE_END => self.in_paste = false,
            // Focus in / out: the terminal reporting, not the user editing.
            b"I" | b"O" => {}
            _ => self.unknown(),
        }
    }

    fn add_char(&mut self) {
        self.line = match self.line {
            Line::Empty => Line::Typed(1),
            Line::Typed(n) => Line::Typed(n.saturating_add(1)),
            Line::Unknown => Line::Unknown,
        };
    }

    fn unknown(&mut self) {
        self.line = Line::Unknown;
    }
}

/// A UTF-8 continuation byte: part of the character before it.
fn is_continuation(b: u8) -> bool {
    (0x80..0xc0).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(bytes: &[u8]) -> Typing {
        let mut t = Typing::default();
        t.feed(bytes, Instant::now());
        t
    }

    #[test]
    fn typing_and_erasing_tracks_the_line() {
        assert_eq!(typed(b"").line(), Line::Empty);
        assert_eq!(typed(b"").last_input(), None);
        assert_eq!(typed(b"hi").line(), Line::Typed(2));
        assert_eq!(typed(b"hi\x7f").line(), Line::Typed(1));
        assert_eq!(typed(b"hi\x7f\x7f").line(), Line::Empty);
        assert_eq!(typed(b"hi\x7f\x7f\x7f\x7f").line(), Line::Empty);
        assert_eq!(typed(b"h\x08").line(), Line::Empty);
        // Multi-byte characters count once.
        assert_eq!(typed("é日".as_bytes()).line(), Line::Typed(2));
        assert_eq!(typed("é\x7f".as_bytes()).line(), Line::Empty);
    }

    #[test]
    fn enter_submits_a_non_empty_line_and_ctrl_c_clears_it() {
        let t = typed(b"fix it\r");
        assert_eq!(t.line(), Line::Empty);
        assert!(t.submitted());
        let t = typed(b"\r");
        assert!(!t.submitted(), "Enter on an empty line submits nothing");
        let mut t = typed(b"half\x03");
        assert_eq!(t.line(), Line::Empty);
        assert!(!t.submitted());
        t.feed(b"x\r", Instant::now());
        assert!(t.submitted());
        t.reset_submitted();
        assert!(!t.submitted());
    }

    #[test]
    fn backslash_enter_is_a_newline_not_a_submit() {
        let t = typed(b"one\\\rtwo");
        assert!(!t.submitted());
        assert_eq!(t.line(), Line::Typed(8));
    }

    #[test]
    fn edits_it_cannot_follow_make_the_line_unknown_until_enter_or_ctrl_c() {
        for keys in [
            &b"\x1b[A"[..], // Up: history recall
            b"ab\x1b[D",    // Left
            b"\t",          // Tab completion
            b"\x1bb",       // Alt+b
            b"\x1bOA",      // application-mode Up
            b"\x0b",        // Ctrl-K
            b"\x1b[3~",     // Delete
        ] {
            let t = typed(keys);
            assert_eq!(t.line(), Line::Unknown, "{keys:?}");
            let mut t2 = t.clone();
            t2.feed(b"\x7f\x7f\x7f", Instant::now());
            assert_eq!(t2.line(), Line::Unknown, "backspace cannot clear {keys:?}");
            let mut t3 = t.clone();
            t3.feed(b"\r", Instant::now());
            assert_eq!(t3.line(), Line::Empty);
            assert!(
                t3.submitted(),
                "Enter after {keys:?} may submit a recalled prompt"
            );
            let mut t4 = t;
            t4.feed(b"\x03", Instant::now());
            assert_eq!(t4.line(), Line::Empty);
        }
    }

    #[test]
    fn escape_sequences_split_across_reads_are_still_parsed() {
        let mut t = Typing::default();
        t.feed(b"\x1b", Instant::now());
        t.feed(b"[", Instant::now());
        t.feed(b"I", Instant::now());
        assert_eq!(t.line(), Line::Empty, "focus-in is not an edit");
    }

    #[test]
    fn a_bracketed_paste_types_text_and_its_newlines_do_not_submit() {
        let t = typed(b"\x1b[200~line one\rline two\x1b[201~");
        assert_eq!(t.line(), Line::Typed(17));
        assert!(!t.submitted());
        let t = typed(b"\x1b[200~x\x1b[201~\r");
        assert!(t.submitted());
    }
}
