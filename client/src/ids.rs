//! Message ids as users type and see them. The canonical display is `m42` (safe to paste into
//! a shell, unlike `#42`); `42`, `#42`, `m42` and `M42` are all accepted.

use std::fmt;

/// A message id that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMessageId(String);

impl fmt::Display for InvalidMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid message id `{}`: expected a number such as 42, #42 or m42",
            self.0
        )
    }
}

impl std::error::Error for InvalidMessageId {}

/// Parse `42`, `#42`, `m42` or `M42`.
pub fn parse_message_id(s: &str) -> Result<u64, InvalidMessageId> {
    let t = s.trim();
    let digits = t
        .strip_prefix('#')
        .or_else(|| t.strip_prefix('m'))
        .or_else(|| t.strip_prefix('M'))
        .unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidMessageId(s.to_owned()));
    }
    digits.parse().map_err(|_| InvalidMessageId(s.to_owned()))
}

/// The display form of a message id: `m42`.
pub fn format_message_id(id: u64) -> String {
    format!("m{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_all_forms() {
        for s in ["42", "#42", "m42", "M42", " m42 "] {
            assert_eq!(parse_message_id(s), Ok(42), "{s}");
        }
        assert_eq!(parse_message_id(&format_message_id(7)), Ok(7));
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "#",
            "m",
            "x42",
            "4 2",
            "-1",
            "+1",
            "m-1",
            "##1",
            "mm1",
            "1e3",
            "99999999999999999999999",
        ] {
            let err = parse_message_id(s).unwrap_err();
            assert!(err.to_string().contains("expected a number"), "{s}: {err}");
        }
    }
}
