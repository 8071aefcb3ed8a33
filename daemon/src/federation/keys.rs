//! This device's X25519 key (`device.key`), the ids derived from public keys, and the sealed
//! box every federated payload travels in.
//!
//! A device is one daemon (one state directory). Its id is the first 16 bytes of SHA-256 of
//! its public key, the fingerprint users compare out of band the whole SHA-256. [`seal`] and
//! [`open`] are `crypto_box::ChaChaBox` (X25519 + XChaCha20-Poly1305) with a fresh random
//! 24-byte nonce per call and caller-chosen associated data (bound inside the box: see
//! [`seal`]).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crypto_box::ChaChaBox;
use crypto_box::aead::{Aead, AeadCore, OsRng};
use sha2::{Digest, Sha256};

/// Bytes of a secret or public key.
pub const KEY_LEN: usize = 32;
/// Bytes of the nonce that starts every sealed box.
pub const NONCE_LEN: usize = 24;
/// Bytes [`seal`] adds to the plaintext: the nonce, the associated data's digest and the
/// Poly1305 tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + AAD_DIGEST_LEN + 16;

/// This device's secret key. `Debug` prints only the device id.
pub struct DeviceKey {
    secret: crypto_box::SecretKey,
    /// The public half, derived once (a scalar multiplication, too slow to repeat per
    /// envelope).
    public: PublicKey,
    /// The boxes of the peers this key talks to: each holds the X25519 shared secret, computed
    /// once per peer rather than once per envelope.
    boxes: std::sync::Mutex<std::collections::HashMap<[u8; KEY_LEN], ChaChaBox>>,
}

/// Most peer boxes kept ([`DeviceKey`]'s cache); past it the cache starts again.
const MAX_BOXES: usize = 1024;

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("device_id", &format_args!("{}", self.device_id()))
            .finish_non_exhaustive()
    }
}

/// Why `device.key` could not be created or read. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no device key at {}: run `mesh join` again", path.display())]
    Missing { path: PathBuf },
    #[error("{} already exists: refusing to overwrite this device's key", path.display())]
    Exists { path: PathBuf },
    #[error("{} is a symbolic link: the device key must be a regular file; remove it and run `mesh join` again", path.display())]
    Symlink { path: PathBuf },
    #[error("{} is not a regular file: remove it and run `mesh join` again", path.display())]
    NotRegular { path: PathBuf },
    #[error("{} is owned by uid {owner}, not by this user (uid {uid}): remove it and run `mesh join` again", path.display())]
    WrongOwner { path: PathBuf, owner: u32, uid: u32 },
    #[error("{} is readable or writable by others (mode {mode:03o}): run `chmod 600 {}`", path.display(), path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{} holds {len} bytes, not {KEY_LEN}: it is not a device key; remove it and run `mesh join` again", path.display())]
    WrongSize { path: PathBuf, len: u64 },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl KeyError {
    fn io(path: &Path, source: io::Error) -> KeyError {
        KeyError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl DeviceKey {
    /// A fresh random key (the operating system's generator).
    pub fn generate() -> DeviceKey {
        DeviceKey::from_secret(crypto_box::SecretKey::generate(&mut OsRng))
    }

    /// A key from its 32 secret bytes.
    pub fn from_secret_bytes(bytes: [u8; KEY_LEN]) -> DeviceKey {
        DeviceKey::from_secret(crypto_box::SecretKey::from_bytes(bytes))
    }

    fn from_secret(secret: crypto_box::SecretKey) -> DeviceKey {
        let public = PublicKey(secret.public_key().to_bytes());
        DeviceKey {
            secret,
            public,
            boxes: std::sync::Mutex::default(),
        }
    }

    /// Run `f` with the box between this key and `peer` (its shared secret computed once).
    fn with_box<T>(&self, peer: &PublicKey, f: impl FnOnce(&ChaChaBox) -> T) -> T {
        let mut boxes = self.boxes.lock().unwrap_or_else(|p| p.into_inner());
        if boxes.len() >= MAX_BOXES && !boxes.contains_key(&peer.0) {
            boxes.clear();
        }
        let cbox = boxes
            .entry(peer.0)
            .or_insert_with(|| ChaChaBox::new(&peer.to_box_key(), &self.secret));
        f(cbox)
    }

    /// Generates a key and writes it to `path`, which must not exist (never replaced, never
    /// written through a symbolic link): 32 raw secret bytes, mode 0600, fsync'd with the
    /// directory. The file appears whole: it is written under a temporary name (`O_CREAT|
    /// O_EXCL`) and linked to `path`, which fails if `path` exists, so a concurrent
    /// [`DeviceKey::load`] never sees it half-written.
    pub fn create(path: &Path) -> Result<DeviceKey, KeyError> {
        let key = DeviceKey::generate();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            key.device_id()
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            file.write_all(&key.secret.to_bytes())?;
            file.sync_all()?;
            std::fs::hard_link(&tmp, path)
        })();
        let _ = std::fs::remove_file(&tmp);
        written.map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => KeyError::Exists {
                path: path.to_owned(),
            },
            _ => KeyError::io(path, e),
        })?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| KeyError::io(dir, e))?;
        Ok(key)
    }

    /// Reads the key at `path`. It must be a regular file (opened with `O_NOFOLLOW|O_NONBLOCK`,
    /// so neither a link nor a FIFO is followed or waited on), owned by this user, with no
    /// group or other permission bits, of exactly 32 bytes.
    pub fn load(path: &Path) -> Result<DeviceKey, KeyError> {
        let file = open_regular(path).map_err(|e| match e {
            OpenRegularError::Missing => KeyError::Missing {
                path: path.to_owned(),
            },
            OpenRegularError::Symlink => KeyError::Symlink {
                path: path.to_owned(),
            },
            OpenRegularError::NotRegular => KeyError::NotRegular {
                path: path.to_owned(),
            },
            OpenRegularError::Io(e) => KeyError::io(path, e),
        })?;
        let meta = file.metadata().map_err(|e| KeyError::io(path, e))?;
        let uid = rustix::process::getuid().as_raw();
        if meta.uid() != uid {
            return Err(KeyError::WrongOwner {
                path: path.to_owned(),
                owner: meta.uid(),
                uid,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        if meta.len() != KEY_LEN as u64 {
            return Err(KeyError::WrongSize {
                path: path.to_owned(),
                len: meta.len(),
            });
        }
        let mut bytes = Vec::with_capacity(KEY_LEN + 1);
        file.take(KEY_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| KeyError::io(path, e))?;
        let secret: [u8; KEY_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::WrongSize {
                    path: path.to_owned(),
                    len: bytes.len() as u64,
                })?;
        Ok(DeviceKey::from_secret_bytes(secret))
    }

    /// This device's key at `path`: the one there (checked as [`DeviceKey::load`] does), or a
    /// new one created there (as [`DeviceKey::create`] does) if there is none. Also `true` if
    /// it was created. For `mesh join`, which keeps an existing key so that the fingerprint
    /// others pinned stays valid; two racing calls end up with the same key.
    pub fn load_or_create(path: &Path) -> Result<(DeviceKey, bool), KeyError> {
        match DeviceKey::load(path) {
            Ok(key) => Ok((key, false)),
            Err(KeyError::Missing { .. }) => match DeviceKey::create(path) {
                Ok(key) => Ok((key, true)),
                Err(KeyError::Exists { .. }) => Ok((DeviceKey::load(path)?, false)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The public half, announced to the team.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// This device's id (= `self.public().device_id()`).
    pub fn device_id(&self) -> DeviceId {
        self.public().device_id()
    }

    /// This device's fingerprint (= `self.public().fingerprint()`).
    pub fn fingerprint(&self) -> Fingerprint {
        self.public().fingerprint()
    }

    /// The `Nats-Msg-Id` this device publishes the envelope of id `id` under: the same for the
    /// same id (a retried publish is a duplicate the server drops), and unpredictable to anyone
    /// without this key (32 hex of a hash keyed with the secret). JetStream's dedupe window is
    /// the whole stream's, and envelope ids are in clear on the wire: were they the dedupe ids,
    /// a process with the NATS credentials could publish first under the id of a receipt it can
    /// foresee (`<gid>.r`) and have the genuine one dropped as a duplicate.
    pub fn dedupe_id(&self, id: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"claude-mesh dedupe\0");
        h.update(self.secret.to_bytes());
        h.update(id.as_bytes());
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What [`open_regular`] refused.
#[derive(Debug)]
pub(crate) enum OpenRegularError {
    Missing,
    Symlink,
    NotRegular,
    Io(io::Error),
}

/// Opens `path` for reading without following a final symbolic link and without blocking on
/// a FIFO or a device, and checks (fstat) that it is a regular file ([`crate::paths::open_regular`]).
pub(crate) fn open_regular(path: &Path) -> Result<File, OpenRegularError> {
    crate::paths::open_regular(path, OpenOptions::new().read(true), false).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            return OpenRegularError::Missing;
        }
        match crate::paths::refusal(&e) {
            Some(r) if r.is_symlink() => OpenRegularError::Symlink,
            Some(_) => OpenRegularError::NotRegular,
            None => OpenRegularError::Io(e),
        }
    })
}

/// A device's public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PublicKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The first 16 bytes of SHA-256 of the key.
    pub fn device_id(&self) -> DeviceId {
        let digest = self.fingerprint().0;
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        DeviceId(id)
    }

    /// SHA-256 of the key.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(Sha256::digest(self.0).into())
    }

    /// Whether this is a point of small order (libsodium's list, the top bit ignored as X25519
    /// ignores it): with such a key the shared secret is one of at most 8 values whatever the
    /// other secret key, so anyone could read what is sealed for it and forge what comes from
    /// it. Refuse
    /// such keys wherever a key is learnt ([`super::envelope::read_announce`] does).
    pub fn is_weak(&self) -> bool {
        const SMALL_ORDER: [[u8; KEY_LEN]; 7] = [
            [0; 32],
            [
                1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0,
            ],
            [
                0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
                0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
                0x5f, 0x49, 0xb8, 0x00,
            ],
            [
                0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83,
                0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd,
                0xd0, 0x9f, 0x11, 0x57,
            ],
            {
                let mut p_minus_1 = [0xff; 32];
                p_minus_1[0] = 0xec;
                p_minus_1[31] = 0x7f;
                p_minus_1
            },
            {
                let mut p = [0xff; 32];
                p[0] = 0xed;
                p[31] = 0x7f;
                p
            },
            {
                let mut p_plus_1 = [0xff; 32];
                p_plus_1[0] = 0xee;
                p_plus_1[31] = 0x7f;
                p_plus_1
            },
        ];
        let mut key = self.0;
        key[31] &= 0x7f;
        SMALL_ORDER.contains(&key)
    }

    fn to_box_key(self) -> crypto_box::PublicKey {
        crypto_box::PublicKey::from_bytes(self.0)
    }
}

/// A device's id: names its subjects and consumer. Written as 32 lowercase hex digits.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct DeviceId([u8; 16]);

impl DeviceId {
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        DeviceId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// A string that is not what it should be an id or fingerprint of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    #[error("a device id is 32 lowercase hexadecimal digits")]
    DeviceId,
    #[error("a fingerprint is 64 hexadecimal digits (separators ':', ' ' or '-' allowed)")]
    Fingerprint,
}

impl FromStr for DeviceId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ParseIdError::DeviceId);
        }
        let mut id = [0u8; 16];
        unhex(s.as_bytes(), &mut id).ok_or(ParseIdError::DeviceId)?;
        Ok(DeviceId(id))
    }
}

/// SHA-256 of a public key: what users compare out of band (`mesh keys`). Written as 64
/// lowercase hex digits in 16 groups of 4 joined by ':'.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = hex(&self.0);
        for (i, group) in digits.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            // Hex digits are ASCII.
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl FromStr for Fingerprint {
    type Err = ParseIdError;

    /// Case-insensitive; ':', ' ' and '-' separators anywhere (or none); 64 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(|b| !matches!(b, b':' | b' ' | b'-'))
            .map(|b| b.to_ascii_lowercase())
            .collect();
        if digits.len() != 64 {
            return Err(ParseIdError::Fingerprint);
        }
        let mut bytes = [0u8; 32];
        unhex(&digits, &mut bytes).ok_or(ParseIdError::Fingerprint)?;
        Ok(Fingerprint(bytes))
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes lowercase hex `digits` into `out` (exactly twice its length), or `None`.
fn unhex(digits: &[u8], out: &mut [u8]) -> Option<()> {
    fn nibble(d: u8) -> Option<u8> {
        match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

/// Sealing failed: only for a plaintext beyond the cipher's limit (far over any frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not seal the envelope")]
pub struct SealError;

/// A sealed box that does not open: wrong key, wrong associated data, altered or truncated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the envelope does not open: not sealed by that device for this one, or altered")]
pub struct OpenError;

/// Bytes of the associated data's digest sealed in front of the plaintext.
const AAD_DIGEST_LEN: usize = 32;

/// What binds `aad` to a box: SHA-256 of a domain tag and `aad`.
fn aad_digest(aad: &[u8]) -> [u8; AAD_DIGEST_LEN] {
    let mut hash = Sha256::new();
    hash.update(b"claude-mesh aad\0");
    hash.update(aad);
    hash.finalize().into()
}

/// Seals `plaintext` from `me` for `to`, authenticating `aad` (not included in the output):
/// `nonce (24 bytes) ‖ box`.
///
/// `crypto_box` 0.9 refuses non-empty associated data (its secretbox is an AEAD without it),
/// so the associated data is bound inside the box instead: the box holds SHA-256 of it in
/// front of the plaintext, and [`open`] checks it. The whole box is authenticated, so a box
/// opened under other associated data is refused exactly as a real AEAD would refuse it.
pub fn seal(
    me: &DeviceKey,
    to: &PublicKey,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let nonce = ChaChaBox::generate_nonce(&mut OsRng);
    let mut inner = Vec::with_capacity(AAD_DIGEST_LEN + plaintext.len());
    inner.extend_from_slice(&aad_digest(aad));
    inner.extend_from_slice(plaintext);
    let ciphertext = me
        .with_box(to, |cbox| cbox.encrypt(&nonce, inner.as_slice()))
        .map_err(|_| SealError)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens what `from` sealed for `me` with [`seal`] under the same `aad`.
pub fn open(
    me: &DeviceKey,
    from: &PublicKey,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(OpenError);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = crypto_box::Nonce::from_slice(nonce);
    let mut inner = me
        .with_box(from, |cbox| cbox.decrypt(nonce, ciphertext))
        .map_err(|_| OpenError)?;
    if inner.get(..AAD_DIGEST_LEN) != Some(&aad_digest(aad)[..]) {
        return Err(OpenError);
    }
    Ok(inner.split_off(AAD_DIGEST_LEN))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn dedupe_ids_are_stable_per_key_and_unforeseeable_without_it() {
        let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
        let id = a.dedupe_id("dev-0123.r");
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        // The same key again (a retried publish, or after a restart): the same id.
        assert_eq!(id, a.dedupe_id("dev-0123.r"));
        let again = DeviceKey::from_secret_bytes(a.secret.to_bytes());
        assert_eq!(id, again.dedupe_id("dev-0123.r"));
        // Another envelope, or another key: another id; nothing of the envelope id shows.
        assert_ne!(id, a.dedupe_id("dev-0123"));
        assert_ne!(id, b.dedupe_id("dev-0123.r"));
        assert!(!id.contains("0123"));
    }

    #[test]
    fn seal_open_round_trip() {
        let (alice, bob) = (DeviceKey::generate(), DeviceKey::generate());
        let sealed = seal(&alice, &bob.public(), b"aad", b"hello bob").unwrap();
        assert_eq!(sealed.len(), b"hello bob".len() + SEAL_OVERHEAD);
        assert!(!sealed.windows(9).any(|w| w == b"hello bob"));
        let opened = open(&bob, &alice.public(), b"aad", &sealed).unwrap();
        assert_eq!(opened, b"hello bob");
        // Empty plaintext too.
        let sealed = seal(&alice, &bob.public(), b"", b"").unwrap();
        assert_eq!(open(&bob, &alice.public(), b"", &sealed).unwrap(), b"");
    }

    #[test]
    fn open_refuses_wrong_aad_sender_recipient_and_alterations() {
        let (alice, bob, eve) = (
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
        );
        let sealed = seal(&alice, &bob.public(), b"mail:1", b"secret").unwrap();
        assert_eq!(
            open(&bob, &alice.public(), b"mail:2", &sealed),
            Err(OpenError)
        );
        assert_eq!(open(&bob, &alice.public(), b"", &sealed), Err(OpenError));
        assert_eq!(
            open(&bob, &eve.public(), b"mail:1", &sealed),
            Err(OpenError)
        );
        assert_eq!(
            open(&eve, &alice.public(), b"mail:1", &sealed),
            Err(OpenError)
        );
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x01;
            assert_eq!(
                open(&bob, &alice.public(), b"mail:1", &flipped),
                Err(OpenError),
                "byte {i}"
            );
        }
        for len in 0..sealed.len() {
            assert_eq!(
                open(&bob, &alice.public(), b"mail:1", &sealed[..len]),
                Err(OpenError),
                "len {len}"
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(
            open(&bob, &alice.public(), b"mail:1", &longer),
            Err(OpenError)
        );
        assert_eq!(
            open(&bob, &alice.public(), b"mail:1", &sealed).unwrap(),
            b"secret"
        );
    }

    #[test]
    fn a_box_cannot_be_reflected_back_to_its_sender() {
        // X25519 gives both ends the same shared key, so the box is bound to its direction
        // only by the associated data, which names both devices (as envelope::aad does).
        let (alice, bob) = (DeviceKey::generate(), DeviceKey::generate());
        let aad =
            |from: &DeviceKey, to: &DeviceKey| [from.device_id().0, to.device_id().0].concat();
        let sealed = seal(&alice, &bob.public(), &aad(&alice, &bob), b"x").unwrap();
        assert_eq!(
            open(&alice, &bob.public(), &aad(&bob, &alice), &sealed),
            Err(OpenError)
        );
        assert_eq!(
            open(&bob, &alice.public(), &aad(&alice, &bob), &sealed).unwrap(),
            b"x"
        );
    }

    #[test]
    fn weak_public_keys_are_recognised() {
        let mut weak = Vec::new();
        for top in [0x00u8, 0x80] {
            for hex_key in [
                "0000000000000000000000000000000000000000000000000000000000000000",
                "0100000000000000000000000000000000000000000000000000000000000000",
                "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
                "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
                "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
                "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
                "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            ] {
                let mut bytes = [0u8; 32];
                unhex(hex_key.as_bytes(), &mut bytes).unwrap();
                bytes[31] |= top;
                weak.push(PublicKey::from_bytes(bytes));
            }
        }
        // Each really is weak: the box it derives with any secret key is one of at most 8
        // (crypto_box reduces the clamped scalar mod the group order, so the shared point
        // depends on the secret only modulo the point's order), where a sound key gives as
        // many boxes as secret keys.
        let nonce = crypto_box::Nonce::default();
        let distinct_boxes = |key: &PublicKey| {
            let mut boxes: Vec<Vec<u8>> = (0..64)
                .map(|_| {
                    ChaChaBox::new(&key.to_box_key(), &DeviceKey::generate().secret)
                        .encrypt(&nonce, &b"m"[..])
                        .unwrap()
                })
                .collect();
            boxes.sort();
            boxes.dedup();
            boxes.len()
        };
        for key in &weak {
            assert!(key.is_weak(), "{key:?}");
            assert!(distinct_boxes(key) <= 8, "{key:?}");
        }
        assert_eq!(distinct_boxes(&DeviceKey::generate().public()), 64);
        for _ in 0..64 {
            assert!(!DeviceKey::generate().public().is_weak());
        }
    }

    #[test]
    fn every_seal_has_a_fresh_nonce() {
        let (alice, bob) = (DeviceKey::generate(), DeviceKey::generate());
        let a = seal(&alice, &bob.public(), b"x", b"same").unwrap();
        let b = seal(&alice, &bob.public(), b"x", b"same").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn ids_and_fingerprints_derive_from_the_public_key() {
        // Pinned: SHA-256 of 32 zero bytes.
        let key = PublicKey::from_bytes([0; 32]);
        let fp = key.fingerprint();
        assert_eq!(
            hex(fp.as_bytes()),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert_eq!(
            key.device_id().to_string(),
            "66687aadf862bd776c8fc18b8e9f8e20"
        );
        assert_eq!(
            fp.to_string(),
            "6668:7aad:f862:bd77:6c8f:c18b:8e9f:8e20:0897:1485:6ee2:33b3:902a:591d:0d5f:2925"
        );
        let dk = DeviceKey::generate();
        assert_eq!(dk.device_id(), dk.public().device_id());
        assert_eq!(dk.fingerprint(), dk.public().fingerprint());
        assert_ne!(dk.device_id(), DeviceKey::generate().device_id());
    }

    #[test]
    fn device_id_parses_only_32_lowercase_hex() {
        let id = DeviceKey::generate().device_id();
        assert_eq!(id.to_string().parse::<DeviceId>(), Ok(id));
        assert_eq!(id.to_string().len(), 32);
        for bad in [
            "",
            "66687aadf862bd776c8fc18b8e9f8e2",
            "66687aadf862bd776c8fc18b8e9f8e200",
            "66687AADF862BD776C8FC18B8E9F8E20",
            "66687aadf862bd776c8fc18b8e9f8e2g",
            "6668:7aadf862bd776c8fc18b8e9f8e2",
            "66687aadf862bd776c8fc18b8e9f8e2é",
        ] {
            assert_eq!(
                bad.parse::<DeviceId>(),
                Err(ParseIdError::DeviceId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fingerprint_parses_leniently_but_completely() {
        let fp = DeviceKey::generate().fingerprint();
        let shown = fp.to_string();
        assert_eq!(shown.len(), 64 + 15);
        assert_eq!(shown.split(':').count(), 16);
        assert_eq!(shown.parse::<Fingerprint>(), Ok(fp));
        let bare = hex(fp.as_bytes());
        assert_eq!(bare.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(bare.to_uppercase().parse::<Fingerprint>(), Ok(fp));
        assert_eq!(shown.replace(':', " ").parse::<Fingerprint>(), Ok(fp));
        assert_eq!(
            shown
                .replace(':', "-")
                .to_uppercase()
                .parse::<Fingerprint>(),
            Ok(fp)
        );
        for bad in [
            String::new(),
            bare[..63].to_owned(),
            format!("{bare}0"),
            format!("{}g", &bare[..63]),
            shown.replace(':', "."),
            format!("{bare}\n"),
        ] {
            assert_eq!(
                bad.parse::<Fingerprint>(),
                Err(ParseIdError::Fingerprint),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let bytes = [0xabu8; 32];
        let key = DeviceKey::from_secret_bytes(bytes);
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.device_id().to_string()), "{shown}");
        assert!(!shown.contains(&hex(&bytes)), "{shown}");
        assert!(!shown.contains(&format!("{bytes:?}")[..10]), "{shown}");
        assert!(!shown.contains("171, 171"), "{shown}");
    }

    #[test]
    fn create_then_load_is_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let created = DeviceKey::create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(meta.len(), 32);
        let loaded = DeviceKey::load(&path).unwrap();
        assert_eq!(loaded.public(), created.public());
        // The loaded key opens what was sealed for the created one.
        let other = DeviceKey::generate();
        let sealed = seal(&other, &created.public(), b"", b"x").unwrap();
        assert_eq!(open(&loaded, &other.public(), b"", &sealed).unwrap(), b"x");
    }

    #[test]
    fn create_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let first = DeviceKey::create(&path).unwrap();
        let err = DeviceKey::create(&path).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err:?}");
        assert_eq!(DeviceKey::load(&path).unwrap().public(), first.public());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["device.key"]);
        // Nor through a dangling symbolic link.
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
        assert!(DeviceKey::create(&link).is_err());
        assert!(!dir.path().join("target").exists());
    }

    #[test]
    fn load_or_create_creates_once_then_keeps_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let (first, created) = DeviceKey::load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = DeviceKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.public(), first.public());
        // A key file that is unsafe is reported, not replaced.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = DeviceKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, KeyError::Permissions { .. }), "{err:?}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            DeviceKey::load_or_create(&path).unwrap().0.public(),
            first.public()
        );
        // Racing creators agree on one key.
        let path = dir.path().join("raced.key");
        let keys: Vec<PublicKey> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| DeviceKey::load_or_create(&path).unwrap().0.public()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(DeviceKey::load(&path).unwrap().public(), keys[0]);
    }

    #[test]
    fn load_refuses_missing_group_other_bits_and_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let err = DeviceKey::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("mesh join"), "{err}");

        DeviceKey::create(&path).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o602, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = DeviceKey::load(&path).unwrap_err();
            assert!(
                matches!(err, KeyError::Permissions { .. }),
                "{mode:o}: {err:?}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("chmod 600 {}", path.display())),
                "{err}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        DeviceKey::load(&path).unwrap();

        for len in [0usize, 31, 33, 64] {
            let p = dir.path().join(format!("k{len}"));
            std::fs::write(&p, vec![7u8; len]).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            let err = DeviceKey::load(&p).unwrap_err();
            assert!(matches!(err, KeyError::WrongSize { .. }), "{len}: {err:?}");
        }
    }

    #[test]
    fn load_refuses_a_symlink_a_directory_and_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.key");
        DeviceKey::create(&real).unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = DeviceKey::load(&link).unwrap_err();
        assert!(matches!(err, KeyError::Symlink { .. }), "{err:?}");

        let err = DeviceKey::load(dir.path()).unwrap_err();
        assert!(matches!(err, KeyError::NotRegular { .. }), "{err:?}");

        // A FIFO with no writer: a blocking open would hang this test forever.
        let fifo = dir.path().join("fifo.key");
        mkfifo(&fifo);
        let err = DeviceKey::load(&fifo).unwrap_err();
        assert!(matches!(err, KeyError::NotRegular { .. }), "{err:?}");
    }

    pub(crate) fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
    }

    #[test]
    fn load_refuses_a_file_owned_by_someone_else() {
        // Only root can make a file owned by another user; elsewhere the check is exercised by
        // the uid comparison alone.
        if !rustix::process::getuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        DeviceKey::create(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let err = DeviceKey::load(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::WrongOwner { owner: 65534, .. }),
            "{err:?}"
        );
    }
}
