//! Whether the child has bracketed paste on (`ESC [ ? 2004 h`, off with `… l`), read from what
//! it writes to its terminal. With it on, a wake line is typed as a paste (`ESC[200~` text
//! `ESC[201~`) followed by Enter: Claude Code then submits it whatever its length and however
//! fast it arrives. The text never holds an ESC ([`mesh_proto::sanitize::typed`]), so it cannot end
//! the paste early.

/// Parser state over the child's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    Csi,
    /// `ESC [ ?`, collecting parameters.
    Private,
}

/// Follows DEC private mode 2004 in a byte stream, across chunk boundaries.
#[derive(Debug, Clone)]
pub struct PasteMode {
    on: bool,
    state: State,
    params: Vec<u8>,
}

impl Default for PasteMode {
    fn default() -> Self {
        Self {
            on: false,
            state: State::Ground,
            params: Vec::new(),
        }
    }
}

const MODE: &[u8] = b"2004";

impl PasteMode {
    /// Whether the child last turned bracketed paste on.
    pub fn on(&self) -> bool {
        self.on
    }

    /// Bytes the child wrote, in order.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state = match (self.state, b) {
                (_, 0x1b) => State::Esc,
                (State::Esc, b'[') => State::Csi,
                (State::Csi, b'?') => {
                    self.params.clear();
                    State::Private
                }
                (State::Private, b'0'..=b'9' | b';') if self.params.len() < 64 => {
                    self.params.push(b);
                    State::Private
                }
                (State::Private, b'h' | b'l') => {
                    if self.params.split(|p| *p == b';').any(|p| p == MODE) {
                        self.on = b == b'h';
                    }
                    State::Ground
                }
                _ => State::Ground,
            };
        }
    }
}

/// The bytes that type `line` (already sanitized) and press Enter: a bracketed paste when the
/// child has it on, else the bare text (the caller then waits before the Enter).
pub fn typed(line: &str, paste: bool) -> Vec<u8> {
    if paste {
        [b"\x1b[200~", line.as_bytes(), b"\x1b[201~\r"].concat()
    } else {
        line.as_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(chunks: &[&[u8]]) -> bool {
        let mut p = PasteMode::default();
        for c in chunks {
            p.feed(c);
        }
        p.on()
    }

    #[test]
    fn follows_mode_2004_on_and_off() {
        assert!(!after(&[]));
        assert!(after(&[b"hello \x1b[?2004h world"]));
        assert!(!after(&[b"\x1b[?2004h", b"\x1b[?2004l"]));
        // Several modes in one sequence, as terminals allow.
        assert!(after(&[b"\x1b[?1004;2004h"]));
        assert!(!after(&[b"\x1b[?2004h\x1b[?1049;2004l"]));
        // Other modes leave it alone.
        assert!(!after(&[b"\x1b[?1049h\x1b[?25l"]));
        assert!(after(&[b"\x1b[?2004h\x1b[?1049l"]));
        // Not a private mode; or a prefix of the number.
        assert!(!after(&[b"\x1b[2004h"]));
        assert!(!after(&[b"\x1b[?20045h"]));
    }

    #[test]
    fn a_sequence_split_across_chunks_is_still_seen() {
        assert!(after(&[b"\x1b", b"[?20", b"04", b"h"]));
        assert!(after(&[b"abc\x1b[", b"?2004h"]));
        // An ESC in the middle restarts the parse.
        assert!(after(&[b"\x1b[?20\x1b[?2004h"]));
    }

    #[test]
    fn a_wake_line_is_a_bracketed_paste_and_enter_when_paste_is_on() {
        assert_eq!(typed("hi", true), b"\x1b[200~hi\x1b[201~\r");
        assert_eq!(typed("hi", false), b"hi");
    }
}
