//! Reading what Claude Code writes on a shim's stdin: one JSON object, read with a size cap and
//! parsed leniently (every field optional, unknown fields ignored, a field of an unexpected
//! type treated as absent), because its shape changes between Claude Code versions.

use std::io::{self, Read};

use serde::Deserialize;
use serde::de::IgnoredAny;

/// The most stdin a shim reads. A PostToolUse payload carries the whole tool response, which
/// can be megabytes; beyond this the shim fails open instead of reading (and parsing) forever.
pub(crate) const MAX_INPUT: usize = 4 * 1024 * 1024;

/// The fields of a hook's (or the status line's) input that the shims use.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct HookInput {
    /// The current Claude Code session id (changes on `/clear`).
    #[serde(deserialize_with = "lenient_string")]
    pub session_id: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub cwd: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub transcript_path: Option<String>,
    /// The event Claude Code fired, e.g. `PostToolUse`.
    #[serde(deserialize_with = "lenient_string")]
    pub hook_event_name: Option<String>,
    /// Stop only: this stop follows an earlier block.
    #[serde(deserialize_with = "lenient_bool")]
    pub stop_hook_active: bool,
}

/// Why the input was not usable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InputError {
    #[error("cannot read stdin: {0}")]
    Read(#[from] io::Error),
    #[error("stdin is larger than {} MiB; ignoring this call", MAX_INPUT / (1024 * 1024))]
    TooLarge,
    #[error("stdin is empty (expected Claude Code's JSON)")]
    Empty,
    #[error("stdin is not a JSON object")]
    NotAnObject,
    #[error("stdin is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Read all of stdin, up to `cap` bytes.
pub(crate) fn read_stdin(cap: usize) -> Result<Vec<u8>, InputError> {
    read_capped(io::stdin().lock(), cap)
}

fn read_capped(reader: impl Read, cap: usize) -> Result<Vec<u8>, InputError> {
    let mut buf = Vec::with_capacity(8 * 1024);
    reader.take(cap as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > cap {
        return Err(InputError::TooLarge);
    }
    Ok(buf)
}

/// Parse the input, which must be one JSON object; empty or whitespace-only input is an error
/// of its own.
pub(crate) fn parse(bytes: &[u8]) -> Result<HookInput, InputError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(InputError::Empty),
        Some(b'{') => Ok(serde_json::from_slice(bytes)?),
        Some(_) => Err(InputError::NotAnObject),
    }
}

/// A string, or anything else (`null`, a number, an object…) taken as absent.
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StrOrAny {
        Str(String),
        Any(IgnoredAny),
    }
    Ok(match StrOrAny::deserialize(d)? {
        StrOrAny::Str(s) => Some(s).filter(|s| !s.trim().is_empty()),
        StrOrAny::Any(_) => None,
    })
}

/// A boolean, or anything else taken as false.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrAny {
        Bool(bool),
        Any(IgnoredAny),
    }
    Ok(matches!(BoolOrAny::deserialize(d)?, BoolOrAny::Bool(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_observed_shapes_and_ignores_unknown_fields() {
        let i = parse(
            br#"{"session_id":"7f69","transcript_path":"/t.jsonl","cwd":"/home/me/proj",
                "hook_event_name":"Stop","stop_hook_active":true,"last_assistant_message":"hi",
                "tool_response":{"deeply":[{"nested":[1,2,{"x":null}]}]},"new_field_2030":42}"#,
        )
        .unwrap();
        assert_eq!(i.session_id.as_deref(), Some("7f69"));
        assert_eq!(i.cwd.as_deref(), Some("/home/me/proj"));
        assert_eq!(i.transcript_path.as_deref(), Some("/t.jsonl"));
        assert_eq!(i.hook_event_name.as_deref(), Some("Stop"));
        assert!(i.stop_hook_active);
    }

    #[test]
    fn wrong_types_and_missing_fields_are_absent() {
        let i = parse(
            br#"{"session_id":42,"cwd":null,"transcript_path":["x"],"stop_hook_active":"yes"}"#,
        )
        .unwrap();
        assert_eq!(i.session_id, None);
        assert_eq!(i.cwd, None);
        assert_eq!(i.transcript_path, None);
        assert!(!i.stop_hook_active);
        let i = parse(b"{}").unwrap();
        assert_eq!(i.session_id, None);
        assert!(!i.stop_hook_active);
        assert_eq!(parse(br#"{"session_id":"  "}"#).unwrap().session_id, None);
    }

    #[test]
    fn rejects_empty_malformed_and_non_objects() {
        assert!(matches!(parse(b""), Err(InputError::Empty)));
        assert!(matches!(parse(b" \n\t"), Err(InputError::Empty)));
        for bad in [&b"{"[..], b"{\"a\":1}x", b"{\"session_id\":\"a\",}"] {
            assert!(matches!(parse(bad), Err(InputError::Json(_))), "{bad:?}");
        }
        for bad in [&b"not json"[..], b"[1,2]", b"\"x\"", b"null", b"42"] {
            assert!(
                matches!(parse(bad), Err(InputError::NotAnObject)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reads_up_to_the_cap_and_refuses_more() {
        assert_eq!(read_capped(&b"abc"[..], 3).unwrap(), b"abc");
        assert!(matches!(
            read_capped(&b"abcd"[..], 3),
            Err(InputError::TooLarge)
        ));
        // Reading stops right after the cap: an endless stream is not read to its end.
        assert!(matches!(
            read_capped(io::repeat(b'x'), 1024),
            Err(InputError::TooLarge)
        ));
    }
}
