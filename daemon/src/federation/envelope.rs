//! What travels between daemons: the clear [`Frame`] (opaque ids and a sealed box) and the
//! sealed [`Envelope`] inside it, plus the clear key [`Announce`]ment.
//!
//! Everything here is decoded from bytes another machine controls: decoding is bounded
//! ([`MAX_FRAME`]) and every field is validated against the limits below; anything over is an
//! error, never truncated. Text from a peer is still untrusted after validation: print it only
//! through `mesh_proto::sanitize`.

use serde::{Deserialize, Serialize};

use super::keys::{self, DeviceId, DeviceKey, PublicKey};

/// Version of [`Frame`] and [`Announce`].
pub const VERSION: u8 = 1;
/// Largest frame, in bytes (NATS' default max payload is 1 MB).
pub const MAX_FRAME: usize = 900 * 1024;
/// Largest announcement, in bytes.
pub const MAX_ANNOUNCE: usize = 1024;
/// Largest body of a mail.
pub const MAX_BODY: usize = mesh_proto::MAX_BODY_LEN;
/// Largest session name, in bytes.
pub const MAX_NAME: usize = 128;
/// Largest host or team name, in bytes.
pub const MAX_HOST: usize = 64;
/// Largest session id.
pub const MAX_SESSION_ID: usize = mesh_proto::MAX_SESSION_ID_LEN;
/// Largest summary.
pub const MAX_SUMMARY: usize = mesh_proto::MAX_SUMMARY_LEN;
/// Most sessions in one presence.
pub const MAX_PRESENCE_SESSIONS: usize = 256;
/// Largest global message id, in bytes.
pub const MAX_GID: usize = 80;
/// Largest frame id: a gid with the receipt suffix.
pub const MAX_ID: usize = MAX_GID + 2;

/// The wire frame: postcard of this struct, published in clear. `v` = [`VERSION`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub v: u8,
    pub kind: EnvelopeKind,
    pub from: DeviceId,
    pub to: DeviceId,
    /// The dedupe/global id, opaque ([`Envelope::id`]).
    pub id: String,
    /// [`keys::seal`] of the postcard of the [`Envelope`], under [`aad`].
    pub sealed: Vec<u8>,
}

/// Which envelope a frame carries.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnvelopeKind {
    Mail,
    Receipt,
    Presence,
}

impl EnvelopeKind {
    fn tag(self) -> u8 {
        match self {
            EnvelopeKind::Mail => 1,
            EnvelopeKind::Receipt => 2,
            EnvelopeKind::Presence => 3,
        }
    }
}

/// What is sealed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Envelope {
    Mail(Mail),
    Receipt(Receipt),
    Presence(Presence),
}

/// A message for a session on the recipient's machine (an answer carries `in_reply_to`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub gid: String,
    pub kind: mesh_proto::Kind,
    pub from_name: String,
    pub from_session_id: Option<String>,
    pub to_name: String,
    pub to_session_id: Option<String>,
    pub body: String,
    /// The gid of the question this answers.
    pub in_reply_to: Option<String>,
    pub created_ms: i64,
}

/// What became of a message the recipient's machine received.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub gid: String,
    pub delivered_ms: Option<i64>,
    pub answered_ms: Option<i64>,
}

/// A machine's live sessions (heartbeat).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    pub host: String,
    pub sent_ms: i64,
    pub leaving: bool,
    pub sessions: Vec<PresenceSession>,
}

/// One live session in a [`Presence`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PresenceSession {
    pub session_id: String,
    pub name: String,
    pub summary: String,
    pub idle: bool,
    pub pending: u32,
}

/// Key announcement (clear: public information), postcard; published to the keys stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    pub v: u8,
    pub public_key: [u8; 32],
    pub host: String,
    pub team: String,
    pub sent_ms: i64,
}

impl Announce {
    /// The announced key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_bytes(self.public_key)
    }
}

/// Why a frame, an envelope or an announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("undecodable {what}")]
    Decode { what: &'static str },
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("frame is for another device")]
    NotForMe,
    #[error("frame does not come from the expected device")]
    WrongSender,
    #[error(transparent)]
    Open(#[from] keys::OpenError),
    #[error(transparent)]
    Seal(#[from] keys::SealError),
    #[error("the sealed envelope does not match its frame's kind or id")]
    Mismatch,
    #[error("{field} is {len} bytes, over the limit of {max}")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} is invalid")]
    Invalid { field: &'static str },
    #[error("{len} presence sessions, over the limit of {MAX_PRESENCE_SESSIONS}")]
    TooManySessions { len: usize },
}

impl Envelope {
    pub fn kind(&self) -> EnvelopeKind {
        match self {
            Envelope::Mail(_) => EnvelopeKind::Mail,
            Envelope::Receipt(_) => EnvelopeKind::Receipt,
            Envelope::Presence(_) => EnvelopeKind::Presence,
        }
    }

    /// The frame id (the `Nats-Msg-Id` is derived from it with the sender's key,
    /// [`super::keys::DeviceKey::dedupe_id`]): a mail's gid, `<gid>.r` for a receipt,
    /// `p-<sent_ms>` for a presence.
    pub fn id(&self) -> String {
        match self {
            Envelope::Mail(m) => m.gid.clone(),
            Envelope::Receipt(r) => format!("{}.r", r.gid),
            Envelope::Presence(p) => format!("p-{}", p.sent_ms),
        }
    }

    /// Checks every field against the limits.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        match self {
            Envelope::Mail(m) => {
                check_gid("gid", &m.gid)?;
                check_len("from_name", &m.from_name, MAX_NAME)?;
                check_opt(
                    "from_session_id",
                    m.from_session_id.as_deref(),
                    MAX_SESSION_ID,
                )?;
                check_len("to_name", &m.to_name, MAX_NAME)?;
                check_opt("to_session_id", m.to_session_id.as_deref(), MAX_SESSION_ID)?;
                check_len("body", &m.body, MAX_BODY)?;
                if let Some(q) = &m.in_reply_to {
                    check_gid("in_reply_to", q)?;
                }
                if m.from_name.is_empty() {
                    return Err(EnvelopeError::Invalid { field: "from_name" });
                }
                if m.to_name.is_empty() && m.to_session_id.is_none() {
                    return Err(EnvelopeError::Invalid { field: "to_name" });
                }
            }
            Envelope::Receipt(r) => check_gid("gid", &r.gid)?,
            Envelope::Presence(p) => {
                check_host("host", &p.host)?;
                if p.sessions.len() > MAX_PRESENCE_SESSIONS {
                    return Err(EnvelopeError::TooManySessions {
                        len: p.sessions.len(),
                    });
                }
                for s in &p.sessions {
                    check_len("session_id", &s.session_id, MAX_SESSION_ID)?;
                    check_len("name", &s.name, MAX_NAME)?;
                    check_len("summary", &s.summary, MAX_SUMMARY)?;
                    if s.session_id.is_empty() {
                        return Err(EnvelopeError::Invalid {
                            field: "session_id",
                        });
                    }
                    if s.name.is_empty() {
                        return Err(EnvelopeError::Invalid { field: "name" });
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), EnvelopeError> {
    if value.len() > max {
        return Err(EnvelopeError::FieldTooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

fn check_opt(field: &'static str, value: Option<&str>, max: usize) -> Result<(), EnvelopeError> {
    value.map_or(Ok(()), |v| check_len(field, v, max))
}

fn check_gid(field: &'static str, gid: &str) -> Result<(), EnvelopeError> {
    check_len(field, gid, MAX_GID)?;
    if gid.is_empty() {
        return Err(EnvelopeError::Invalid { field });
    }
    Ok(())
}

fn check_host(field: &'static str, host: &str) -> Result<(), EnvelopeError> {
    check_len(field, host, MAX_HOST)?;
    if !valid_host(host) {
        return Err(EnvelopeError::Invalid { field });
    }
    Ok(())
}

/// A host (or team) name: 1–64 characters of `[A-Za-z0-9._-]`, not starting with '.' or '-'.
pub fn valid_host(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_HOST
        && !matches!(bytes[0], b'.' | b'-')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The associated data a frame's box is sealed under: a domain tag, the kind, the id
/// (length-prefixed) and both device ids, so a box cannot be replayed under another id or
/// kind, or to another device.
pub fn aad(kind: EnvelopeKind, id: &str, from: DeviceId, to: DeviceId) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 1 + 4 + id.len() + 32);
    out.extend_from_slice(b"claude-mesh/1\0");
    out.push(kind.tag());
    out.extend_from_slice(&u32::try_from(id.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(from.as_bytes());
    out.extend_from_slice(to.as_bytes());
    out
}

/// Validates `env`, seals it from `me` for `to` and returns the postcard of its [`Frame`].
pub fn seal_frame(
    me: &DeviceKey,
    to: &PublicKey,
    env: &Envelope,
) -> Result<Vec<u8>, EnvelopeError> {
    env.validate()?;
    let (kind, id, from, to_id) = (env.kind(), env.id(), me.device_id(), to.device_id());
    let plain =
        postcard::to_allocvec(env).map_err(|_| EnvelopeError::Decode { what: "envelope" })?;
    let sealed = keys::seal(me, to, &aad(kind, &id, from, to_id), &plain)?;
    let frame = Frame {
        v: VERSION,
        kind,
        from,
        to: to_id,
        id,
        sealed,
    };
    let bytes =
        postcard::to_allocvec(&frame).map_err(|_| EnvelopeError::Decode { what: "frame" })?;
    if bytes.len() > MAX_FRAME {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME,
        });
    }
    Ok(bytes)
}

/// Decodes a frame received from NATS (at most [`MAX_FRAME`] bytes, nothing trailing, version
/// [`VERSION`], id within [`MAX_ID`]). Opening it is [`open_frame`].
pub fn read_frame(bytes: &[u8]) -> Result<Frame, EnvelopeError> {
    if bytes.len() > MAX_FRAME {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME,
        });
    }
    let frame: Frame = decode_all(bytes, "frame")?;
    if frame.v != VERSION {
        return Err(EnvelopeError::Version(frame.v));
    }
    check_len("id", &frame.id, MAX_ID)?;
    if frame.id.is_empty() {
        return Err(EnvelopeError::Invalid { field: "id" });
    }
    Ok(frame)
}

/// Opens a frame that `from` sealed for `me`: checks both device ids, opens the box under the
/// frame's [`aad`], checks that the envelope's kind and id are the frame's, and validates every
/// field.
pub fn open_frame(
    me: &DeviceKey,
    from: &PublicKey,
    frame: &Frame,
) -> Result<Envelope, EnvelopeError> {
    if frame.v != VERSION {
        return Err(EnvelopeError::Version(frame.v));
    }
    if frame.to != me.device_id() {
        return Err(EnvelopeError::NotForMe);
    }
    if frame.from != from.device_id() {
        return Err(EnvelopeError::WrongSender);
    }
    let plain = keys::open(
        me,
        from,
        &aad(frame.kind, &frame.id, frame.from, frame.to),
        &frame.sealed,
    )?;
    let env: Envelope = decode_all(&plain, "envelope")?;
    if env.kind() != frame.kind || env.id() != frame.id {
        return Err(EnvelopeError::Mismatch);
    }
    env.validate()?;
    Ok(env)
}

/// Decodes an announcement from the keys stream: bounded; version, host and team checked; a
/// weak (small-order) public key refused.
pub fn read_announce(bytes: &[u8]) -> Result<Announce, EnvelopeError> {
    if bytes.len() > MAX_ANNOUNCE {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: MAX_ANNOUNCE,
        });
    }
    let a: Announce = decode_all(bytes, "announcement")?;
    if a.v != VERSION {
        return Err(EnvelopeError::Version(a.v));
    }
    check_host("host", &a.host)?;
    check_host("team", &a.team)?;
    if a.public_key().is_weak() {
        return Err(EnvelopeError::Invalid {
            field: "public_key",
        });
    }
    Ok(a)
}

/// The postcard of an announcement.
pub fn announce_bytes(a: &Announce) -> Vec<u8> {
    // Serializing plain structs of strings and integers into a Vec cannot fail.
    postcard::to_allocvec(a).unwrap_or_default()
}

/// Postcard-decodes all of `bytes` (trailing bytes are an error).
fn decode_all<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<T, EnvelopeError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        _ => Err(EnvelopeError::Decode { what }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mail(gid: &str) -> Mail {
        Mail {
            gid: gid.to_owned(),
            kind: mesh_proto::Kind::Question,
            from_name: "alice".to_owned(),
            from_session_id: Some("s-1".to_owned()),
            to_name: "bob".to_owned(),
            to_session_id: None,
            body: "the marker PLAINTEXT-42".to_owned(),
            in_reply_to: None,
            created_ms: 1_700_000_000_000,
        }
    }

    fn presence(n: usize) -> Presence {
        Presence {
            host: "laptop".to_owned(),
            sent_ms: 1_700_000_000_123,
            leaving: false,
            sessions: (0..n)
                .map(|i| PresenceSession {
                    session_id: format!("sess-{i}"),
                    name: format!("name{i}"),
                    summary: "working".to_owned(),
                    idle: i % 2 == 0,
                    pending: 3,
                })
                .collect(),
        }
    }

    fn round_trip(env: &Envelope) -> Envelope {
        let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
        let bytes = seal_frame(&a, &b.public(), env).unwrap();
        let frame = read_frame(&bytes).unwrap();
        assert_eq!(frame.v, VERSION);
        assert_eq!(frame.kind, env.kind());
        assert_eq!(frame.id, env.id());
        assert_eq!(frame.from, a.device_id());
        assert_eq!(frame.to, b.device_id());
        open_frame(&b, &a.public(), &frame).unwrap()
    }

    #[test]
    fn every_envelope_round_trips() {
        let mut answer = mail("dev1-7");
        answer.kind = mesh_proto::Kind::Answer;
        answer.in_reply_to = Some("dev2-3".to_owned());
        answer.to_session_id = Some("s-2".to_owned());
        for env in [
            Envelope::Mail(mail("dev1-1")),
            Envelope::Mail(answer),
            Envelope::Receipt(Receipt {
                gid: "dev1-1".to_owned(),
                delivered_ms: Some(5),
                answered_ms: None,
            }),
            Envelope::Presence(presence(3)),
            Envelope::Presence(Presence {
                leaving: true,
                ..presence(0)
            }),
        ] {
            assert_eq!(round_trip(&env), env);
        }
    }

    #[test]
    fn ids_are_as_documented() {
        assert_eq!(Envelope::Mail(mail("g-1")).id(), "g-1");
        let receipt = Receipt {
            gid: "g-1".to_owned(),
            delivered_ms: None,
            answered_ms: Some(9),
        };
        assert_eq!(Envelope::Receipt(receipt).id(), "g-1.r");
        assert_eq!(Envelope::Presence(presence(0)).id(), "p-1700000000123");
    }

    #[test]
    fn the_frame_carries_no_plaintext() {
        let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
        let bytes = seal_frame(&a, &b.public(), &Envelope::Mail(mail("dev1-1"))).unwrap();
        for marker in [&b"PLAINTEXT-42"[..], b"alice", b"bob", b"s-1"] {
            assert!(!bytes.windows(marker.len()).any(|w| w == marker));
        }
        let bytes = seal_frame(&a, &b.public(), &Envelope::Presence(presence(2))).unwrap();
        for marker in [&b"laptop"[..], b"name1", b"sess-0", b"working"] {
            assert!(!bytes.windows(marker.len()).any(|w| w == marker));
        }
    }

    #[test]
    fn a_frame_for_another_device_or_from_another_sender_is_refused() {
        let (a, b, c) = (
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
        );
        let frame =
            read_frame(&seal_frame(&a, &b.public(), &Envelope::Mail(mail("g"))).unwrap()).unwrap();
        assert_eq!(
            open_frame(&c, &a.public(), &frame),
            Err(EnvelopeError::NotForMe)
        );
        assert_eq!(
            open_frame(&b, &c.public(), &frame),
            Err(EnvelopeError::WrongSender)
        );
        // A frame relabelled for c still cannot be opened by c.
        let relabelled = Frame {
            to: c.device_id(),
            ..frame.clone()
        };
        assert!(matches!(
            open_frame(&c, &a.public(), &relabelled),
            Err(EnvelopeError::Open(_))
        ));
        // Nor one relabelled as coming from c (c's key is not the sealer's).
        let relabelled = Frame {
            from: c.device_id(),
            ..frame.clone()
        };
        assert!(matches!(
            open_frame(&b, &c.public(), &relabelled),
            Err(EnvelopeError::Open(_))
        ));
        assert!(open_frame(&b, &a.public(), &frame).is_ok());
    }

    #[test]
    fn a_frame_with_a_swapped_id_or_kind_is_refused() {
        let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
        let frame = read_frame(&seal_frame(&a, &b.public(), &Envelope::Mail(mail("g-1"))).unwrap())
            .unwrap();
        let other_id = Frame {
            id: "g-2".to_owned(),
            ..frame.clone()
        };
        assert!(matches!(
            open_frame(&b, &a.public(), &other_id),
            Err(EnvelopeError::Open(_))
        ));
        let other_kind = Frame {
            kind: EnvelopeKind::Receipt,
            ..frame.clone()
        };
        assert!(matches!(
            open_frame(&b, &a.public(), &other_kind),
            Err(EnvelopeError::Open(_))
        ));
        let other_version = Frame {
            v: 2,
            ..frame.clone()
        };
        assert_eq!(
            open_frame(&b, &a.public(), &other_version),
            Err(EnvelopeError::Version(2))
        );

        // A box sealed under a frame header that disagrees with its content (as a buggy or
        // hostile sender could make it) is refused after opening.
        let env = Envelope::Mail(mail("g-1"));
        let plain = postcard::to_allocvec(&env).unwrap();
        let lying = Frame {
            v: VERSION,
            kind: EnvelopeKind::Mail,
            from: a.device_id(),
            to: b.device_id(),
            id: "g-9".to_owned(),
            sealed: keys::seal(
                &a,
                &b.public(),
                &aad(EnvelopeKind::Mail, "g-9", a.device_id(), b.device_id()),
                &plain,
            )
            .unwrap(),
        };
        assert_eq!(
            open_frame(&b, &a.public(), &lying),
            Err(EnvelopeError::Mismatch)
        );
    }

    #[test]
    fn aad_is_unambiguous() {
        let (x, y) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
        let base = aad(EnvelopeKind::Mail, "ab", x, y);
        assert_ne!(base, aad(EnvelopeKind::Receipt, "ab", x, y));
        assert_ne!(base, aad(EnvelopeKind::Mail, "abc", x, y));
        assert_ne!(base, aad(EnvelopeKind::Mail, "ab", y, x));
        assert_ne!(
            aad(EnvelopeKind::Mail, "a", x, y),
            aad(EnvelopeKind::Mail, "a\u{1}", x, y)
        );
    }

    #[test]
    fn garbage_is_refused() {
        for bytes in [&b""[..], b"\x01", b"hello world", &[0xff; 64][..]] {
            assert!(read_frame(bytes).is_err(), "{bytes:?}");
            assert!(read_announce(bytes).is_err(), "{bytes:?}");
        }
        let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
        let mut bytes = seal_frame(&a, &b.public(), &Envelope::Mail(mail("g"))).unwrap();
        bytes.push(0);
        assert_eq!(
            read_frame(&bytes),
            Err(EnvelopeError::Decode { what: "frame" })
        );
        bytes.pop();
        bytes.pop();
        assert!(read_frame(&bytes).is_err());
        // Oversize input is refused before decoding.
        assert_eq!(
            read_frame(&vec![0u8; MAX_FRAME + 1]),
            Err(EnvelopeError::TooLarge {
                len: MAX_FRAME + 1,
                max: MAX_FRAME
            })
        );
        // A valid frame with a corrupted box.
        let mut frame =
            read_frame(&seal_frame(&a, &b.public(), &Envelope::Mail(mail("g"))).unwrap()).unwrap();
        let last = frame.sealed.len() - 1;
        frame.sealed[last] ^= 1;
        assert!(matches!(
            open_frame(&b, &a.public(), &frame),
            Err(EnvelopeError::Open(_))
        ));
        // A version other than 1.
        let frame = Frame { v: 0, ..frame };
        assert_eq!(
            read_frame(&postcard::to_allocvec(&frame).unwrap()),
            Err(EnvelopeError::Version(0))
        );
    }

    /// Seals `env` without validating it, as a hostile peer could, and opens it.
    fn open_unvalidated(env: &Envelope) -> Result<Envelope, EnvelopeError> {
        let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
        let (kind, id) = (env.kind(), env.id());
        let plain = postcard::to_allocvec(env).unwrap();
        let frame = Frame {
            v: VERSION,
            kind,
            from: a.device_id(),
            to: b.device_id(),
            id: id.clone(),
            sealed: keys::seal(
                &a,
                &b.public(),
                &aad(kind, &id, a.device_id(), b.device_id()),
                &plain,
            )
            .unwrap(),
        };
        open_frame(&b, &a.public(), &frame)
    }

    fn refused_both_ways(env: Envelope, field: &'static str) {
        let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
        let sealed = seal_frame(&a, &b.public(), &env);
        let opened = open_unvalidated(&env);
        for result in [sealed.map(|_| ()), opened.map(|_| ())] {
            match result {
                Err(
                    EnvelopeError::FieldTooLong { field: f, .. }
                    | EnvelopeError::Invalid { field: f },
                ) => {
                    assert_eq!(f, field)
                }
                Err(EnvelopeError::TooManySessions { .. }) => assert_eq!(field, "sessions"),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_limit_is_enforced_on_sealing_and_on_opening() {
        let at = |n: usize| "x".repeat(n);
        // At the limits: accepted.
        let mut m = mail(&at(MAX_GID));
        m.from_name = at(MAX_NAME);
        m.to_name = at(MAX_NAME);
        m.from_session_id = Some(at(MAX_SESSION_ID));
        m.to_session_id = Some(at(MAX_SESSION_ID));
        m.body = at(MAX_BODY);
        m.in_reply_to = Some(at(MAX_GID));
        assert_eq!(
            round_trip(&Envelope::Mail(m.clone())),
            Envelope::Mail(m.clone())
        );
        let mut p = presence(MAX_PRESENCE_SESSIONS);
        p.host = at(MAX_HOST);
        for s in &mut p.sessions {
            s.summary = at(MAX_SUMMARY);
            s.name = at(MAX_NAME);
        }
        p.sessions[0].session_id = at(MAX_SESSION_ID);
        assert_eq!(
            round_trip(&Envelope::Presence(p.clone())),
            Envelope::Presence(p.clone())
        );

        // One over: refused.
        let over = |f: &dyn Fn(&mut Mail), field| {
            let mut m = mail("g");
            f(&mut m);
            refused_both_ways(Envelope::Mail(m), field);
        };
        over(&|m| m.gid = at(MAX_GID + 1), "gid");
        over(&|m| m.gid = String::new(), "gid");
        over(&|m| m.from_name = at(MAX_NAME + 1), "from_name");
        over(&|m| m.from_name = String::new(), "from_name");
        over(&|m| m.to_name = at(MAX_NAME + 1), "to_name");
        over(&|m| m.to_name = String::new(), "to_name");
        over(
            &|m| m.from_session_id = Some(at(MAX_SESSION_ID + 1)),
            "from_session_id",
        );
        over(
            &|m| m.to_session_id = Some(at(MAX_SESSION_ID + 1)),
            "to_session_id",
        );
        over(&|m| m.body = at(MAX_BODY + 1), "body");
        over(&|m| m.in_reply_to = Some(at(MAX_GID + 1)), "in_reply_to");
        over(&|m| m.in_reply_to = Some(String::new()), "in_reply_to");
        refused_both_ways(
            Envelope::Receipt(Receipt {
                gid: at(MAX_GID + 1),
                delivered_ms: None,
                answered_ms: None,
            }),
            "gid",
        );
        let over = |f: &dyn Fn(&mut Presence), field| {
            let mut p = presence(2);
            f(&mut p);
            refused_both_ways(Envelope::Presence(p), field);
        };
        over(&|p| p.host = at(MAX_HOST + 1), "host");
        over(&|p| p.host = String::new(), "host");
        over(&|p| p.host = "-laptop".to_owned(), "host");
        over(&|p| p.host = "lap top".to_owned(), "host");
        over(
            &|p| p.sessions = presence(MAX_PRESENCE_SESSIONS + 1).sessions,
            "sessions",
        );
        over(
            &|p| p.sessions[1].session_id = at(MAX_SESSION_ID + 1),
            "session_id",
        );
        over(&|p| p.sessions[1].session_id = String::new(), "session_id");
        over(&|p| p.sessions[1].name = at(MAX_NAME + 1), "name");
        over(&|p| p.sessions[1].name = String::new(), "name");
        over(&|p| p.sessions[1].summary = at(MAX_SUMMARY + 1), "summary");
    }

    #[test]
    fn the_largest_valid_envelopes_fit_in_a_frame() {
        // The field limits keep every valid envelope under MAX_FRAME, so a valid envelope is
        // never refused for its size.
        let mut p = presence(MAX_PRESENCE_SESSIONS);
        p.host = "h".repeat(MAX_HOST);
        for s in &mut p.sessions {
            s.summary = "s".repeat(MAX_SUMMARY);
            s.session_id = "i".repeat(MAX_SESSION_ID);
            s.name = "n".repeat(MAX_NAME);
            s.pending = u32::MAX;
        }
        let mut m = mail(&"g".repeat(MAX_GID));
        m.body = "b".repeat(MAX_BODY);
        m.from_name = "n".repeat(MAX_NAME);
        m.to_name = "n".repeat(MAX_NAME);
        m.from_session_id = Some("i".repeat(MAX_SESSION_ID));
        m.to_session_id = Some("i".repeat(MAX_SESSION_ID));
        m.in_reply_to = Some("g".repeat(MAX_GID));
        let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
        for env in [Envelope::Presence(p), Envelope::Mail(m)] {
            let len = seal_frame(&a, &b.public(), &env).map(|f| f.len());
            assert!(matches!(len, Ok(n) if n <= MAX_FRAME), "{len:?}");
        }
    }

    #[test]
    fn valid_host_follows_the_label_rule() {
        for ok in [
            "laptop",
            "dev-server",
            "ci_box.2",
            "a",
            "A9",
            "0host",
            &"h".repeat(64),
        ] {
            assert!(valid_host(ok), "{ok:?}");
        }
        for bad in [
            "",
            ".x",
            "-x",
            "a b",
            "a@b",
            "é",
            "a/b",
            "a\n",
            &"h".repeat(65),
            "a*",
            "a>",
        ] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn announcements_round_trip_and_are_validated() {
        let key = DeviceKey::generate();
        let a = Announce {
            v: VERSION,
            public_key: *key.public().as_bytes(),
            host: "laptop".to_owned(),
            team: "default".to_owned(),
            sent_ms: 12,
        };
        let read = read_announce(&announce_bytes(&a)).unwrap();
        assert_eq!(read, a);
        assert_eq!(read.public_key().device_id(), key.device_id());
        for (bad, err) in [
            (
                Announce {
                    public_key: [0; 32],
                    ..a.clone()
                },
                EnvelopeError::Invalid {
                    field: "public_key",
                },
            ),
            (Announce { v: 2, ..a.clone() }, EnvelopeError::Version(2)),
            (
                Announce {
                    host: "-x".to_owned(),
                    ..a.clone()
                },
                EnvelopeError::Invalid { field: "host" },
            ),
            (
                Announce {
                    team: String::new(),
                    ..a.clone()
                },
                EnvelopeError::Invalid { field: "team" },
            ),
            (
                Announce {
                    host: "h".repeat(65),
                    ..a.clone()
                },
                EnvelopeError::FieldTooLong {
                    field: "host",
                    len: 65,
                    max: MAX_HOST,
                },
            ),
        ] {
            assert_eq!(read_announce(&announce_bytes(&bad)), Err(err));
        }
        let mut long = announce_bytes(&a);
        long.push(0);
        assert!(read_announce(&long).is_err());
        assert!(matches!(
            read_announce(&vec![0; MAX_ANNOUNCE + 1]),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn read_frame_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = read_frame(&bytes);
            let _ = read_announce(&bytes);
        }

        #[test]
        fn mutated_frames_never_panic_and_never_open_altered(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
            let env = Envelope::Mail(mail("dev-1"));
            let mut bytes = seal_frame(&a, &b.public(), &env).unwrap();
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            if let Ok(frame) = read_frame(&bytes) {
                // Whatever opens is exactly what was sealed.
                if let Ok(opened) = open_frame(&b, &a.public(), &frame) {
                    prop_assert_eq!(opened, env);
                }
            }
        }
    }
}
