//! The NATS transport: moves opaque bytes between daemons through NATS JetStream (mail, key
//! announcements) and core NATS (presence). It knows nothing about the store, the keys or the
//! envelopes: team and device ids come in as the opaque hex strings the subjects carry.
//!
//! Subjects (team = 16 hex, device = 32 hex):
//! - `mesh.<team>.to.<device>`: mail, stream `MESH_<TEAM>_MAIL` (WorkQueue: a message leaves
//!   the stream once its recipient acked it), read by the durable pull consumer `d<device>`.
//! - `mesh.<team>.keys.<device>`: key announcements, stream `MESH_<TEAM>_KEYS`, the last one
//!   per subject kept.
//! - `mesh.<team>.presence.<device>`: presence, core NATS (nothing stored).
//!
//! Nothing here relies on a server feature newer than 2.9 (Debian's `nats-server`); the
//! features a newer server has are reported by [`Transport::server_facts`] for the caller to
//! decide.
//!
//! Anything received is untrusted: a payload larger than [`MAX_PAYLOAD`] is dropped (counted in
//! [`Transport::dropped`], logged at warn), a subject that does not end in a device id is
//! skipped the same way.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use async_nats::{ConnectErrorKind, HeaderMap, ServerAddr};
use futures::StreamExt;

/// The largest payload accepted on receive; larger ones are dropped and counted.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// How long a publish waits for its PubAck, and an ack for the server's confirmation.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// `text` cut to at most `max` bytes (at a character boundary, `…` marking the cut): what a
/// server says (its version, its error messages) is untrusted and kept only bounded.
pub fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Longest wait for the server to answer a lookup ([`Transport::announced`]): a healthy one
/// answers in a millisecond, and a receiver waiting on it holds its batch.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest server version string kept (`2.15.1`, `2.11.0-RC.1`; the server says what it likes).
const MAX_VERSION_BYTES: usize = 64;

/// How long JetStream waits for the ack of a delivered mail before it delivers it again.
pub const MAIL_ACK_WAIT: Duration = Duration::from_secs(10);

/// The dedupe window of the mail stream: a publish with a `Nats-Msg-Id` seen within it is
/// acknowledged as a duplicate and not stored again.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// Idle heartbeat of the pull requests: a consumer that misses two of them is recreated.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// How long one pull request stays open on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// Back-off bounds when a consumer has to be recreated (server restarting, unreachable).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How to reach the NATS server (from `federation.toml`).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// One URL or several, comma-separated (`nats://`, `tls://`); user and password may be in
    /// the URL (`nats://user:pass@host:4222`).
    pub url: String,
    /// A NATS credentials file (JWT + nkey seed), read again at every (re)connect: replacing
    /// it with fresh credentials needs no restart.
    pub creds: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`).
    pub nkey: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for TLS.
    pub tls_ca: Option<PathBuf>,
    /// The connection name the server shows (e.g. `claude-mesh <host>`).
    pub name: String,
    /// The prefix of this connection's reply subjects (`_INBOX_<device>`), so that a server
    /// can let each machine subscribe to its own replies only (packaging/nats-server.conf).
    /// `None`: NATS' default `_INBOX`.
    pub inbox_prefix: Option<String>,
}

/// What the server said about itself when we connected (its INFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    pub version: String,
    pub jetstream: bool,
    /// 1 + the other servers of its cluster it advertised.
    pub cluster_size: usize,
    /// Features of newer servers this one has: `per-message-ttl`, `sync-always` (2.11+).
    pub features: Vec<&'static str>,
}

/// Which team's streams to create, and how replicated.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub team: String,
    /// `None`: min(3, cluster size). An existing stream's replicas are changed only when set.
    pub replicas: Option<usize>,
}

/// JetStream's answer to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubAck {
    pub sequence: u64,
    /// The message id was seen within the dedupe window: nothing new was stored.
    pub duplicate: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("bad NATS server address {url:?}: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("cannot read {what} {path}: {detail}")]
    Credentials {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("NATS server unreachable at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("NATS server at {url} refused the credentials: {detail}")]
    AuthRefused { url: String, detail: String },
    #[error("TLS with the NATS server at {url} failed: {detail}")]
    Tls { url: String, detail: String },
    #[error("the NATS server has no JetStream (start it with -js)")]
    NoJetStream,
    #[error("{what} timed out after {after:?} (NATS server unreachable?)")]
    Timeout { what: String, after: Duration },
    #[error("{what}: {detail}")]
    Nats { what: String, detail: String },
}

impl TransportError {
    fn nats(what: impl Into<String>, err: impl std::fmt::Display) -> TransportError {
        TransportError::Nats {
            what: what.into(),
            detail: err.to_string(),
        }
    }
}

/// The stream names of a team: (mail, keys).
pub fn stream_names(team: &str) -> (String, String) {
    let upper = team.to_ascii_uppercase();
    (format!("MESH_{upper}_MAIL"), format!("MESH_{upper}_KEYS"))
}

/// The durable consumer that reads a device's mail.
pub fn mail_consumer_name(device: &str) -> String {
    format!("d{device}")
}

fn mail_subject(team: &str, device: &str) -> String {
    format!("mesh.{team}.to.{device}")
}

fn keys_subject(team: &str, device: &str) -> String {
    format!("mesh.{team}.keys.{device}")
}

fn presence_subject(team: &str, device: &str) -> String {
    format!("mesh.{team}.presence.{device}")
}

/// A device id as the subjects carry it: 32 lowercase hex digits.
fn is_device_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An address with its password hidden, for error messages.
fn redact(addr: &ServerAddr) -> String {
    let mut url = addr.clone().into_inner();
    if !url.password().unwrap_or("").is_empty() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

/// Decodes `%XX` escapes (user and password in a URL are percent-encoded).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses "major.minor.patch[-suffix]" into numbers (missing parts are 0).
fn parse_version(v: &str) -> (u64, u64, u64) {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let mut parts = core
        .split('.')
        .map(|p| p.trim().parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

fn features_of(version: &str) -> Vec<&'static str> {
    if parse_version(version) >= (2, 11, 0) {
        vec!["per-message-ttl", "sync-always"]
    } else {
        Vec::new()
    }
}

/// The largest credentials or nkey seed file read (an `nsc` one is about 1 KiB).
const MAX_CREDS: u64 = 64 * 1024;
/// The largest CA file checked by [`check_credential_file`] (a system bundle is about 200 KiB).
const MAX_CA: u64 = 4 * 1024 * 1024;

/// A file that gives access to the NATS server, as `federation.toml` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialFile {
    /// A `.creds` file: a user JWT and its nkey seed.
    Creds,
    /// A file holding a user nkey seed (`SU…`).
    Nkey,
    /// The CA certificate(s), PEM, that sign the server's TLS certificate.
    TlsCa,
}

impl CredentialFile {
    fn what(self) -> &'static str {
        match self {
            CredentialFile::Creds => "NATS credentials file",
            CredentialFile::Nkey => "nkey seed file",
            CredentialFile::TlsCa => "TLS CA file",
        }
    }

    fn max(self) -> u64 {
        match self {
            CredentialFile::Creds | CredentialFile::Nkey => MAX_CREDS,
            CredentialFile::TlsCa => MAX_CA,
        }
    }

    fn error(self, path: &std::path::Path, detail: impl Into<String>) -> TransportError {
        TransportError::Credentials {
            what: self.what(),
            path: path.to_owned(),
            detail: detail.into(),
        }
    }

    /// The file's text, read to at most [`CredentialFile::max`] bytes, on a blocking thread
    /// (the daemon's runtime thread serves the hooks). A FIFO or a device there is refused, not
    /// waited on.
    async fn read(self, path: &std::path::Path) -> Result<String, TransportError> {
        let owned = path.to_owned();
        let bytes = tokio::task::spawn_blocking(move || self.bytes(&owned))
            .await
            .map_err(|e| self.error(path, e.to_string()))??;
        self.text(path, bytes)
    }

    /// At most [`CredentialFile::max`] + 1 bytes of a regular file (a link is followed: these
    /// are the user's own files, wherever they keep them).
    fn bytes(self, path: &std::path::Path) -> Result<Vec<u8>, TransportError> {
        use std::io::Read;
        let mut bytes = Vec::new();
        crate::paths::open_regular(path, std::fs::OpenOptions::new().read(true), true)
            .and_then(|f| f.take(self.max() + 1).read_to_end(&mut bytes))
            .map_err(|e| self.error(path, e.to_string()))?;
        Ok(bytes)
    }

    fn text(self, path: &std::path::Path, bytes: Vec<u8>) -> Result<String, TransportError> {
        if bytes.len() as u64 > self.max() {
            return Err(self.error(
                path,
                format!("over {} bytes: not a {}", self.max(), self.what()),
            ));
        }
        String::from_utf8(bytes).map_err(|_| self.error(path, "not text"))
    }

    /// Whether `text` is what the daemon needs from this kind of file.
    fn parse(self, path: &std::path::Path, text: &str) -> Result<(), TransportError> {
        match self {
            CredentialFile::Creds => parse_creds(text).map(drop),
            CredentialFile::Nkey => parse_nkey_seed(text).map(drop),
            CredentialFile::TlsCa => text
                .contains("-----BEGIN CERTIFICATE-----")
                .then_some(())
                .ok_or_else(|| "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into()),
        }
        .map_err(|detail| self.error(path, detail))
    }
}

/// Checks a credentials, nkey seed or CA file the way the daemon will use it (read bounded,
/// parsed), so that `mesh join` refuses a file that cannot work instead of a daemon that then
/// fails to connect. Blocking: for the CLI, not for the daemon.
pub fn check_credential_file(
    kind: CredentialFile,
    path: &std::path::Path,
) -> Result<(), TransportError> {
    let bytes = kind.bytes(path)?;
    let text = kind.text(path, bytes)?;
    kind.parse(path, &text)
}

/// A `.creds` file's user JWT and nkey key pair: the first two blocks framed by `---…---`
/// lines (`-----BEGIN NATS USER JWT-----` … and `-----BEGIN USER NKEY SEED-----` …).
async fn read_creds(path: &std::path::Path) -> Result<(String, nkeys::KeyPair), TransportError> {
    let kind = CredentialFile::Creds;
    let text = kind.read(path).await?;
    parse_creds(&text).map_err(|detail| kind.error(path, detail))
}

fn parse_creds(text: &str) -> Result<(String, nkeys::KeyPair), String> {
    let (jwt, seed) = creds_blocks(text)
        .ok_or("no user JWT and nkey seed blocks in it (as `nsc` writes them)")?;
    let key =
        nkeys::KeyPair::from_seed(seed).map_err(|e| format!("its nkey seed is not valid: {e}"))?;
    Ok((jwt.to_owned(), key))
}

/// An nkey seed file's key pair: a user seed (`SU…`), alone in the file.
fn parse_nkey_seed(text: &str) -> Result<nkeys::KeyPair, String> {
    let seed = text.trim();
    if !seed.starts_with("SU") {
        return Err("not a user nkey seed (one line starting with SU)".into());
    }
    nkeys::KeyPair::from_seed(seed).map_err(|e| format!("not a valid nkey seed: {e}"))
}

/// The JWT and the seed of a credentials file's text.
fn creds_blocks(text: &str) -> Option<(&str, &str)> {
    let frame = |l: &str| l.len() >= 6 && l.starts_with("---") && l.ends_with("---");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut blocks = lines.windows(3).filter_map(|w| {
        let body_ok = !w[1].is_empty()
            && w[1]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='));
        (frame(w[0]) && body_ok && frame(w[2])).then_some(w[1])
    });
    Some((blocks.next()?, blocks.next()?))
}

/// How long a refusal of the credentials stays the reason the connection is down although a
/// later attempt failed otherwise (the server closing the connection it refused shows as an I/O
/// error): longer than the longest reconnect delay, so that a server that keeps refusing is
/// reported as refusing, and one that went away since is reported as such soon after.
const REFUSAL_STICKS: Duration = Duration::from_secs(10);

/// Why the connection is down, as [`note_event`] and the credentials callback saw it.
#[derive(Debug, Default)]
struct Down {
    /// The latest reason.
    latest: Option<String>,
    /// The latest refusal of the credentials, and when.
    refused: Option<(String, std::time::Instant)>,
    /// The credentials file could not be used at the last attempt (the callback's error: the
    /// client itself says only "failed signing nonce").
    creds: Option<TransportError>,
}

impl Down {
    fn reason(&self) -> Option<String> {
        match &self.refused {
            Some((why, at)) if at.elapsed() < REFUSAL_STICKS => Some(why.clone()),
            _ => self.latest.clone(),
        }
    }

    /// The error to report, `url` the server address(es) as shown: a credentials file that
    /// cannot be used now first, then a refusal of the credentials, then the latest reason.
    fn error(&self, url: &str) -> Option<TransportError> {
        if let Some(e) = &self.creds {
            return Some(e.clone());
        }
        let why = self.reason()?;
        let url = url.to_owned();
        Some(if is_refusal(&why) {
            TransportError::AuthRefused { url, detail: why }
        } else {
            TransportError::Unreachable { url, detail: why }
        })
    }
}

fn is_refusal(e: &str) -> bool {
    let lower = e.to_lowercase();
    lower.contains("authorization") || lower.contains("authentication")
}

/// Keeps why the connection went down: the server's `-ERR` that ended it (credentials expired
/// or revoked) and each failed reconnect's reason; forgotten once connected again.
fn note_event(slot: &std::sync::Mutex<Down>, event: async_nats::Event) {
    use async_nats::{ClientError, Event, ServerError};
    let mut down = slot.lock().unwrap_or_else(|p| p.into_inner());
    let why = match event {
        Event::Connected => {
            *down = Down::default();
            return;
        }
        Event::ServerError(ServerError::AuthorizationViolation) => {
            "authorization violation".to_owned()
        }
        // Other `-ERR`s (a permissions violation, a slow consumer) leave the connection up.
        Event::ServerError(ServerError::Other(e)) if is_refusal(&e) => e,
        Event::ClientError(ClientError::Other(e)) => e,
        _ => return,
    };
    if is_refusal(&why) {
        down.refused = Some((why.clone(), std::time::Instant::now()));
    }
    down.latest = Some(why);
}

/// A connection to the NATS server. Cheap to clone; reconnects by itself forever after the
/// first connect succeeded.
#[derive(Debug, Clone)]
pub struct Transport {
    client: async_nats::Client,
    js: jetstream::Context,
    dropped: Arc<AtomicU64>,
    /// What the server or the last reconnect said when the connection went down (see
    /// [`note_event`]).
    down_because: Arc<std::sync::Mutex<Down>>,
    /// The server address(es) as errors show them (no password).
    shown: String,
}

impl Transport {
    /// Connects. The first connect fails fast with a clear error (unreachable, credentials
    /// refused, TLS); afterwards the client reconnects forever.
    pub async fn connect(opts: &ConnectOptions) -> Result<Transport, TransportError> {
        let mut addrs = Vec::new();
        for part in opts.url.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let addr: ServerAddr = part.parse().map_err(|e: std::io::Error| {
                TransportError::BadUrl {
                    // Never echo a password: only the part before any '@'-userinfo is safe
                    // to show when it does not even parse.
                    url: part.rsplit('@').next().unwrap_or(part).to_string(),
                    detail: e.to_string(),
                }
            })?;
            addrs.push(addr);
        }
        let Some(first) = addrs.first().cloned() else {
            return Err(TransportError::BadUrl {
                url: opts.url.clone(),
                detail: "no server address".into(),
            });
        };
        let shown = addrs.iter().map(redact).collect::<Vec<_>>().join(",");

        let down_because = Arc::new(std::sync::Mutex::new(Down::default()));
        let mut o = match &opts.creds {
            Some(path) => {
                // Read now, to fail fast on a file that cannot be used; and again at every
                // (re)connect, so that a file replaced by fresh credentials (after the old ones
                // expired or were revoked) is used without a restart, as NATS' Go client does.
                read_creds(path).await?;
                let path = path.clone();
                let slot = down_because.clone();
                // The callback's answer replaces every other credential: keep the URL's.
                let user = first.username().map(|u| {
                    (
                        percent_decode(u),
                        percent_decode(first.password().unwrap_or("")),
                    )
                });
                async_nats::ConnectOptions::with_auth_callback(move |nonce| {
                    let path = path.clone();
                    let user = user.clone();
                    let slot = slot.clone();
                    async move {
                        let read = read_creds(&path).await;
                        slot.lock().unwrap_or_else(|p| p.into_inner()).creds =
                            read.as_ref().err().cloned();
                        let (jwt, key) =
                            read.map_err(|e| async_nats::AuthError::new(e.to_string()))?;
                        let signature = key
                            .sign(&nonce)
                            .map_err(|e| async_nats::AuthError::new(e.to_string()))?;
                        let mut auth = async_nats::Auth::new();
                        auth.jwt = Some(jwt);
                        auth.signature = Some(signature);
                        if let Some((name, pass)) = user {
                            auth.username = Some(name);
                            auth.password = Some(pass);
                        }
                        Ok(auth)
                    }
                })
            }
            None => async_nats::ConnectOptions::new(),
        };
        if let Some(path) = &opts.nkey {
            let kind = CredentialFile::Nkey;
            let seed = kind.read(path).await?;
            kind.parse(path, &seed)?;
            o = o.nkey(seed.trim().to_string());
        }
        if let Some(user) = first.username() {
            let pass = first.password().unwrap_or("");
            o = o.user_and_password(percent_decode(user), percent_decode(pass));
        }
        if let Some(ca) = &opts.tls_ca {
            o = o.add_root_certificates(ca.clone()).require_tls(true);
        }
        let name = if opts.name.is_empty() {
            "claude-mesh".to_string()
        } else {
            opts.name.clone()
        };
        if let Some(prefix) = &opts.inbox_prefix {
            o = o.custom_inbox_prefix(prefix.clone());
        }
        let slot = down_because.clone();
        o = o
            .event_callback(move |event| {
                let slot = slot.clone();
                async move { note_event(&slot, event) }
            })
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .request_timeout(Some(ACK_TIMEOUT))
            .reconnect_delay_callback(|attempts| {
                // 0, 100 ms, 200 ms, ... up to 2 s: a restarted server is found again quickly.
                Duration::from_millis(100 * (attempts.min(20) as u64).saturating_sub(1))
            });

        let client = o.connect(addrs).await.map_err(|e| {
            // async-nats' error often shows its source already: say it once.
            let shown_e = e.to_string();
            let detail = match std::error::Error::source(&e).map(|s| s.to_string()) {
                Some(src) if !shown_e.contains(&src) => format!("{shown_e}: {src}"),
                _ => shown_e,
            };
            match e.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    TransportError::AuthRefused {
                        url: shown.clone(),
                        detail,
                    }
                }
                ConnectErrorKind::Tls => TransportError::Tls {
                    url: shown.clone(),
                    detail,
                },
                ConnectErrorKind::ServerParse => TransportError::BadUrl {
                    url: shown.clone(),
                    detail,
                },
                _ => TransportError::Unreachable {
                    url: shown.clone(),
                    detail,
                },
            }
        })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(ACK_TIMEOUT);
        Ok(Transport {
            client,
            js,
            dropped: Arc::new(AtomicU64::new(0)),
            down_because,
            shown,
        })
    }

    /// Why the connection is down, when the server said so (it refused the credentials: they
    /// expired or were revoked since the first connect), the credentials file cannot be used
    /// now, or a reconnect failed otherwise; `None` while connected.
    pub fn connection_error(&self) -> Option<TransportError> {
        if self.is_connected() {
            return None;
        }
        self.down_because
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .error(&self.shown)
    }

    /// What the server said in its INFO (the latest one, after a reconnect).
    pub fn server_facts(&self) -> ServerFacts {
        let info = self.client.server_info();
        ServerFacts {
            features: features_of(&info.version),
            jetstream: info.jetstream,
            cluster_size: 1 + info.connect_urls.len(),
            version: bounded(info.version, MAX_VERSION_BYTES),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Payloads (or subjects) received and dropped because they were out of bounds.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until everything published so far reached the server.
    pub async fn flush(&self) -> Result<(), TransportError> {
        tokio::time::timeout(ACK_TIMEOUT, self.client.flush())
            .await
            .map_err(|_| TransportError::Timeout {
                what: "flush".into(),
                after: ACK_TIMEOUT,
            })?
            .map_err(|e| TransportError::nats("flush", e))
    }

    /// Creates the team's streams, or updates them where they differ from what we need.
    /// Idempotent. A stream is never deleted: one whose retention or storage differs (which
    /// cannot be updated) is left as it is, with a warning.
    pub async fn ensure_streams(&self, plan: &StreamPlan) -> Result<(), TransportError> {
        if !self.client.server_info().jetstream {
            return Err(TransportError::NoJetStream);
        }
        let (mail, keys) = stream_names(&plan.team);
        // A clustered server says so in its INFO (its cluster's name) as soon as it starts,
        // while the other servers' addresses come only once its routes are up: a daemon that
        // connects early must not settle for one replica. Three, then fewer if the cluster
        // has too few servers for that.
        let info = self.client.server_info();
        let clustered = info.cluster.as_deref().is_some_and(|c| !c.is_empty());
        let counts: Vec<usize> = match plan.replicas {
            Some(n) => vec![n.max(1)],
            None if clustered => {
                let mut c = vec![3, self.server_facts().cluster_size.clamp(1, 3), 1];
                c.dedup();
                c
            }
            None => vec![self.server_facts().cluster_size.clamp(1, 3)],
        };
        let mut last = None;
        for replicas in counts {
            match self.ensure_team_streams(plan, &mail, &keys, replicas).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::debug!(replicas, "team streams not created: {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(TransportError::NoJetStream))
    }

    async fn ensure_team_streams(
        &self,
        plan: &StreamPlan,
        mail: &str,
        keys: &str,
        replicas: usize,
    ) -> Result<(), TransportError> {
        let (mail, keys) = (mail.to_owned(), keys.to_owned());
        let mail_cfg = stream::Config {
            name: mail,
            subjects: vec![format!("mesh.{}.to.*", plan.team)],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: replicas,
            ..Default::default()
        };
        let keys_cfg = stream::Config {
            name: keys,
            subjects: vec![format!("mesh.{}.keys.*", plan.team)],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_messages_per_subject: 1,
            num_replicas: replicas,
            ..Default::default()
        };
        self.ensure_stream(mail_cfg, plan.replicas.is_some())
            .await?;
        self.ensure_stream(keys_cfg, plan.replicas.is_some()).await
    }

    async fn ensure_stream(
        &self,
        want: stream::Config,
        set_replicas: bool,
    ) -> Result<(), TransportError> {
        let what = format!("stream {}", want.name);
        match self.js.get_stream(&want.name).await {
            Ok(existing) => {
                let have = existing.cached_info().config.clone();
                if have.retention != want.retention || have.storage != want.storage {
                    tracing::warn!(
                        stream = %want.name,
                        retention = ?have.retention,
                        storage = ?have.storage,
                        "stream exists with another retention or storage; left as it is"
                    );
                    return Ok(());
                }
                let mut merged = have.clone();
                merged.subjects = want.subjects;
                if want.retention == stream::RetentionPolicy::WorkQueue {
                    merged.duplicate_window = want.duplicate_window;
                    merged.max_age = Duration::ZERO;
                } else {
                    merged.max_messages_per_subject = want.max_messages_per_subject;
                }
                if set_replicas {
                    merged.num_replicas = want.num_replicas;
                }
                if merged != have {
                    tracing::info!(stream = %want.name, "updating stream configuration");
                    self.js
                        .update_stream(merged)
                        .await
                        .map_err(|e| TransportError::nats(format!("update {what}"), e))?;
                }
                Ok(())
            }
            Err(e) => {
                let not_found = matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                );
                if !not_found {
                    return Err(TransportError::nats(format!("look up {what}"), e));
                }
                match self.js.create_stream(want).await {
                    Ok(_) => Ok(()),
                    // Another daemon created it meanwhile: fine, it has the same config.
                    Err(e)
                        if matches!(
                            e.kind(),
                            jetstream::context::CreateStreamErrorKind::JetStream(ref j)
                                if j.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST
                        ) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(TransportError::nats(format!("create {what}"), e)),
                }
            }
        }
    }

    /// For each of the team's streams (mail, keys): its name, whether it exists, how many
    /// messages it holds. A stream that cannot be looked up counts as absent.
    pub async fn stream_states(&self, team: &str) -> Vec<(String, bool, u64)> {
        let (mail, keys) = stream_names(team);
        let mut out = Vec::with_capacity(2);
        for name in [mail, keys] {
            let state = match self.js.get_stream(&name).await {
                Ok(s) => (true, s.cached_info().state.messages),
                Err(_) => (false, 0),
            };
            out.push((name, state.0, state.1));
        }
        out
    }

    async fn js_publish(
        &self,
        what: &str,
        subject: String,
        headers: HeaderMap,
        payload: Vec<u8>,
    ) -> Result<PubAck, TransportError> {
        let fut = async {
            let ack = self
                .js
                .publish_with_headers(subject, headers, payload.into())
                .await
                .map_err(|e| TransportError::nats(what, e))?
                .await
                .map_err(|e| TransportError::nats(what, e))?;
            Ok::<_, TransportError>(PubAck {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        };
        tokio::time::timeout(ACK_TIMEOUT, fut)
            .await
            .map_err(|_| TransportError::Timeout {
                what: what.to_string(),
                after: ACK_TIMEOUT,
            })?
    }

    /// Publishes mail to a device, with `Nats-Msg-Id: msg_id` (JetStream stores a repeat
    /// within the dedupe window only once), and waits for the PubAck (at most [`ACK_TIMEOUT`]).
    pub async fn publish_mail(
        &self,
        team: &str,
        to_device: &str,
        msg_id: &str,
        payload: Vec<u8>,
    ) -> Result<PubAck, TransportError> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        self.js_publish(
            "publish mail",
            mail_subject(team, to_device),
            headers,
            payload,
        )
        .await
    }

    /// This device's mail: the durable pull consumer `d<device>` (created if absent) on
    /// `mesh.<team>.to.<device>`, explicit ack, [`MAIL_ACK_WAIT`], no delivery limit. Each
    /// delivery must be acked after it was committed; an unacked one comes again.
    pub async fn mail(&self, team: &str, device: &str) -> Result<MailStream, TransportError> {
        let (stream_name, _) = stream_names(team);
        let durable = mail_consumer_name(device);
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: mail_subject(team, device),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: MAIL_ACK_WAIT,
            max_deliver: -1,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        };
        let mut mail = MailStream {
            js: self.js.clone(),
            stream_name,
            durable,
            config,
            messages: None,
            backoff: None,
            dropped: self.dropped.clone(),
        };
        // The first subscription fails loudly (no stream, no permission); later ones retry.
        mail.open().await?;
        Ok(mail)
    }

    /// Announces this device's key (JetStream, acked; the stream keeps the last per device).
    pub async fn announce(
        &self,
        team: &str,
        device: &str,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        self.js_publish(
            "announce key",
            keys_subject(team, device),
            HeaderMap::new(),
            payload,
        )
        .await
        .map(|_| ())
    }

    /// The stream sequence of the announcement the keys stream holds under `device`'s subject
    /// (it keeps the latest per device), `None` if there is none. Mail from a device nobody
    /// announced can be dropped at once; mail from one whose announcement is there but not
    /// yet read is worth waiting for.
    pub async fn announced(&self, team: &str, device: &str) -> Result<Option<u64>, TransportError> {
        const WHAT: &str = "look up a key announcement";
        let (_, stream_name) = stream_names(team);
        let fut = async {
            let stream = self
                .js
                .get_stream_no_info(&stream_name)
                .await
                .map_err(|e| TransportError::nats(WHAT, e))?;
            match stream
                .get_last_raw_message_by_subject(&keys_subject(team, device))
                .await
            {
                Ok(m) => Ok(Some(m.sequence)),
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(TransportError::nats(WHAT, e)),
            }
        };
        tokio::time::timeout(LOOKUP_TIMEOUT, fut)
            .await
            .map_err(|_| TransportError::Timeout {
                what: WHAT.into(),
                after: LOOKUP_TIMEOUT,
            })?
    }

    /// Every device's latest key announcement, then new ones as they come.
    pub async fn announcements(&self, team: &str) -> Result<AnnouncementStream, TransportError> {
        let (_, stream_name) = stream_names(team);
        let mut s = AnnouncementStream {
            js: self.js.clone(),
            stream_name,
            prefix: format!("mesh.{team}.keys."),
            messages: None,
            next_seq: None,
            created: None,
            restarted: false,
            backoff: None,
            dropped: self.dropped.clone(),
        };
        s.open().await?;
        Ok(s)
    }

    /// Publishes presence to one device (core NATS: nobody listening, nothing kept).
    pub async fn publish_presence(
        &self,
        team: &str,
        to_device: &str,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        self.client
            .publish(presence_subject(team, to_device), payload.into())
            .await
            .map_err(|e| TransportError::nats("publish presence", e))
    }

    /// Presence sent to this device. The subscription is renewed by the client after a
    /// reconnect. Core NATS keeps nothing: what is published before the server has the
    /// subscription (or while it is down) is lost, which a heartbeat tolerates.
    pub async fn presence(
        &self,
        team: &str,
        device: &str,
    ) -> Result<PresenceStream, TransportError> {
        let sub = self
            .client
            .subscribe(presence_subject(team, device))
            .await
            .map_err(|e| TransportError::nats("subscribe to presence", e))?;
        Ok(PresenceStream {
            sub,
            dropped: self.dropped.clone(),
        })
    }
}

fn next_backoff(prev: Option<Duration>) -> Duration {
    match prev {
        None => BACKOFF_MIN,
        Some(d) => (d * 2).min(BACKOFF_MAX),
    }
}

fn oversize(dropped: &AtomicU64, what: &str, len: usize) -> bool {
    if len > MAX_PAYLOAD {
        dropped.fetch_add(1, Ordering::Relaxed);
        if super::quiet::allow() {
            tracing::warn!(len, max = MAX_PAYLOAD, "dropped an oversized {what}");
        }
        true
    } else {
        false
    }
}

/// One delivered mail. Ack it after committing it; until then (or after a nak) JetStream
/// delivers it again.
pub struct Delivery {
    pub payload: Vec<u8>,
    msg: jetstream::Message,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("len", &self.payload.len())
            .field("subject", &self.msg.subject)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Acknowledges and waits for the server's confirmation (at most [`ACK_TIMEOUT`]). Once
    /// this returns Ok the mail has left the stream, but a server killed with SIGKILL shortly
    /// after may not have written the ack and deliver it again after its restart (seen in
    /// the tests on 2.9 and 2.15): the receiver must commit idempotently (by global id).
    ///
    /// The ack is a request on the connection's shared reply subscription: the server answers
    /// an ack that has a reply subject once it has processed it. (`double_ack` of async-nats
    /// does the same through a subscription of its own, made and dropped for every message:
    /// two more protocol operations per message on both sides.)
    pub async fn ack(self) -> Result<(), TransportError> {
        let reply = self
            .msg
            .reply
            .clone()
            .ok_or_else(|| TransportError::nats("ack", "a delivery without a reply subject"))?;
        let client = self.msg.context.client();
        tokio::time::timeout(ACK_TIMEOUT, client.request(reply, AckKind::Ack.into()))
            .await
            .map_err(|_| TransportError::Timeout {
                what: "ack".into(),
                after: ACK_TIMEOUT,
            })?
            .map(|_| ())
            .map_err(|e| TransportError::nats("ack", e))
    }

    /// Asks for the mail to be delivered again after `delay` rather than after the ack wait
    /// (a delayed nak: nats-server 2.7.1 and later).
    pub async fn nak(self, delay: Duration) -> Result<(), TransportError> {
        self.msg
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| TransportError::nats("nak", e))
    }

    /// How many times this mail was delivered before (0 the first time).
    pub fn redelivered(&self) -> u64 {
        self.msg
            .info()
            .map(|i| u64::try_from(i.delivered.saturating_sub(1)).unwrap_or(0))
            .unwrap_or(0)
    }

    /// The mail's sequence in the stream.
    pub fn stream_sequence(&self) -> u64 {
        self.msg.info().map(|i| i.stream_sequence).unwrap_or(0)
    }
}

/// A device's mail (see [`Transport::mail`]). Survives a server restart: the pull is
/// recreated when it fails.
pub struct MailStream {
    js: jetstream::Context,
    stream_name: String,
    durable: String,
    config: consumer::pull::Config,
    messages: Option<consumer::pull::Stream>,
    backoff: Option<Duration>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for MailStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailStream")
            .field("stream", &self.stream_name)
            .field("consumer", &self.durable)
            .finish_non_exhaustive()
    }
}

impl MailStream {
    async fn open(&mut self) -> Result<(), TransportError> {
        let what = format!("consumer {} on {}", self.durable, self.stream_name);
        let stream = self
            .js
            .get_stream_no_info(&self.stream_name)
            .await
            .map_err(|e| TransportError::nats(format!("open {what}"), e))?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(&self.durable, self.config.clone())
            .await
            .map_err(|e| TransportError::nats(format!("open {what}"), e))?;
        let messages = consumer
            .stream()
            .heartbeat(PULL_HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(|e| TransportError::nats(format!("pull from {what}"), e))?;
        self.messages = Some(messages);
        Ok(())
    }

    /// The next mail. An `Err` is transient (server gone, consumer being recreated): keep
    /// calling; the stream backs off and recreates its pull. Never ends.
    pub async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        loop {
            if self.messages.is_none() {
                if let Some(d) = self.backoff {
                    tokio::time::sleep(d).await;
                }
                if let Err(e) = self.open().await {
                    self.backoff = Some(next_backoff(self.backoff));
                    return Some(Err(e));
                }
            }
            let messages = self.messages.as_mut()?;
            match messages.next().await {
                Some(Ok(msg)) => {
                    self.backoff = None;
                    if oversize(&self.dropped, "mail", msg.payload.len()) {
                        // Terminate it: it would otherwise come again forever.
                        if let Err(e) = msg.ack_with(AckKind::Term).await {
                            tracing::warn!(error = %e, "could not terminate an oversized mail");
                        }
                        continue;
                    }
                    return Some(Ok(Delivery {
                        payload: msg.payload.to_vec(),
                        msg,
                    }));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, consumer = %self.durable, "mail pull failed; recreating it");
                    self.messages = None;
                    self.backoff = Some(next_backoff(self.backoff));
                    return Some(Err(TransportError::nats("mail pull", e)));
                }
                None => {
                    self.messages = None;
                    self.backoff = Some(next_backoff(self.backoff));
                }
            }
        }
    }
}

/// One device's key announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The device id taken from the subject (32 lowercase hex; others are dropped).
    pub device: String,
    pub payload: Vec<u8>,
    /// Its sequence in the keys stream.
    pub sequence: u64,
    /// The first announcement read from a keys stream created again (a wiped server): the
    /// sequences of the old one mean nothing in it.
    pub restarted: bool,
}

/// Key announcements (see [`Transport::announcements`]): the latest per device first, then
/// live ones. Survives a server restart: the ordered consumer is recreated from the next
/// sequence it has not seen.
pub struct AnnouncementStream {
    js: jetstream::Context,
    stream_name: String,
    prefix: String,
    messages: Option<consumer::pull::Ordered>,
    /// The stream sequence to resume from after a failure (None: last per subject).
    next_seq: Option<u64>,
    /// When the stream being read was created: another time on a reopen means a new stream.
    created: Option<async_nats::datetime::DateTime>,
    /// The stream was found created again: the next announcement says so.
    restarted: bool,
    backoff: Option<Duration>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AnnouncementStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnouncementStream")
            .field("stream", &self.stream_name)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl AnnouncementStream {
    async fn open(&mut self) -> Result<(), TransportError> {
        let what = format!("announcements from {}", self.stream_name);
        let stream = self
            .js
            .get_stream(&self.stream_name)
            .await
            .map_err(|e| TransportError::nats(format!("open {what}"), e))?;
        // Go on after the last announcement read, unless this is another stream than the one
        // read so far (created again, on a wiped server): then from its start.
        let created = stream.cached_info().created;
        if self
            .created
            .replace(created)
            .is_some_and(|was| was != created)
        {
            self.next_seq = None;
            self.restarted = true;
        }
        let resume = self.next_seq;
        let deliver_policy = match resume {
            None => consumer::DeliverPolicy::LastPerSubject,
            Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: format!("{}*", self.prefix),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| TransportError::nats(format!("open {what}"), e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| TransportError::nats(format!("read {what}"), e))?;
        self.messages = Some(messages);
        Ok(())
    }

    /// The next announcement. An `Err` is transient: keep calling. Never ends.
    pub async fn next(&mut self) -> Option<Result<Announcement, TransportError>> {
        loop {
            if self.messages.is_none() {
                if let Some(d) = self.backoff {
                    tokio::time::sleep(d).await;
                }
                if let Err(e) = self.open().await {
                    self.backoff = Some(next_backoff(self.backoff));
                    return Some(Err(e));
                }
            }
            let messages = self.messages.as_mut()?;
            match messages.next().await {
                Some(Ok(msg)) => {
                    self.backoff = None;
                    let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
                    if sequence > 0 {
                        self.next_seq = Some(sequence + 1);
                    }
                    if oversize(&self.dropped, "key announcement", msg.payload.len()) {
                        continue;
                    }
                    let device = msg.subject.as_str().strip_prefix(self.prefix.as_str());
                    let Some(device) = device.filter(|d| is_device_id(d)) else {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        if super::quiet::allow() {
                            tracing::warn!(
                                "dropped a key announcement on a subject without a device id"
                            );
                        }
                        continue;
                    };
                    return Some(Ok(Announcement {
                        device: device.to_string(),
                        payload: msg.payload.to_vec(),
                        sequence,
                        restarted: std::mem::take(&mut self.restarted),
                    }));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "announcements consumer failed; recreating it");
                    self.messages = None;
                    self.backoff = Some(next_backoff(self.backoff));
                    return Some(Err(TransportError::nats("announcements", e)));
                }
                None => {
                    self.messages = None;
                    self.backoff = Some(next_backoff(self.backoff));
                }
            }
        }
    }
}

/// Presence sent to this device (see [`Transport::presence`]).
pub struct PresenceStream {
    sub: async_nats::Subscriber,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for PresenceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceStream").finish_non_exhaustive()
    }
}

impl PresenceStream {
    /// The next presence payload; `None` only once the connection is closed for good.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            let msg = self.sub.next().await?;
            if oversize(&self.dropped, "presence", msg.payload.len()) {
                continue;
            }
            return Some(msg.payload.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_stays_the_reason_over_the_io_error_that_follows_it() {
        use async_nats::{ClientError, Event, ServerError};
        let slot = std::sync::Mutex::new(Down::default());
        let reason = || slot.lock().unwrap().reason();
        // A permissions violation does not end a connection.
        note_event(
            &slot,
            Event::ServerError(ServerError::Other(
                "Permissions Violation for Publish to \"x\"".into(),
            )),
        );
        assert_eq!(reason(), None);
        note_event(
            &slot,
            Event::ClientError(ClientError::Other("IO error".into())),
        );
        assert_eq!(reason().as_deref(), Some("IO error"));
        note_event(
            &slot,
            Event::ServerError(ServerError::Other("User Authentication Expired".into())),
        );
        note_event(&slot, Event::Disconnected);
        note_event(
            &slot,
            Event::ClientError(ClientError::Other("IO error".into())),
        );
        assert_eq!(reason().as_deref(), Some("User Authentication Expired"));
        note_event(
            &slot,
            Event::ClientError(ClientError::Other("authorization violation".into())),
        );
        assert_eq!(reason().as_deref(), Some("authorization violation"));
        // Long after the last refusal, the latest reason.
        slot.lock().unwrap().refused.as_mut().unwrap().1 -= REFUSAL_STICKS;
        note_event(
            &slot,
            Event::ClientError(ClientError::Other("IO error".into())),
        );
        assert_eq!(reason().as_deref(), Some("IO error"));
        // A credentials file the callback could not use says so, before anything else.
        slot.lock().unwrap().creds = Some(TransportError::Credentials {
            what: "NATS credentials file",
            path: "/x.creds".into(),
            detail: "no user JWT".into(),
        });
        let e = slot.lock().unwrap().error("nats://h:4222").unwrap();
        assert!(matches!(e, TransportError::Credentials { .. }), "{e}");
        slot.lock().unwrap().creds = None;
        let e = slot.lock().unwrap().error("nats://h:4222").unwrap();
        assert!(matches!(e, TransportError::Unreachable { .. }), "{e}");
        note_event(&slot, Event::Connected);
        assert_eq!(reason(), None);
        assert!(slot.lock().unwrap().error("nats://h:4222").is_none());
    }

    #[test]
    fn creds_blocks_of_the_nsc_layout() {
        let text = "-----BEGIN NATS USER JWT-----\neyJ0eXAi.eyJqdGki.c2ln\n------END NATS USER \
                    JWT------\n\n************************* IMPORTANT \
                    *************************\nNKEY Seed printed below.\n\n-----BEGIN USER \
                    NKEY SEED-----\nSUACSSL3UAHUDX\n------END USER NKEY SEED------\n\n*****\n";
        assert_eq!(
            creds_blocks(text),
            Some(("eyJ0eXAi.eyJqdGki.c2ln", "SUACSSL3UAHUDX"))
        );
        assert_eq!(
            creds_blocks(&text.replace('\n', "\r\n")),
            Some(("eyJ0eXAi.eyJqdGki.c2ln", "SUACSSL3UAHUDX"))
        );
        // The seed's block empty, or only one block: not credentials.
        assert_eq!(creds_blocks(&text.replace("SUACSSL3UAHUDX", "")), None);
        assert_eq!(creds_blocks("-----BEGIN NATS USER JWT-----\n"), None);
        assert_eq!(creds_blocks("---\nabc\n---\n"), None, "frames too short");
    }

    #[test]
    fn versions_and_features() {
        assert_eq!(parse_version("2.9.10"), (2, 9, 10));
        assert_eq!(parse_version("2.11.0-RC.1"), (2, 11, 0));
        assert!(features_of("2.9.10").is_empty());
        assert_eq!(
            features_of("2.15.1"),
            vec!["per-message-ttl", "sync-always"]
        );
        assert!(features_of("garbage").is_empty());
    }

    #[test]
    fn device_ids_and_names() {
        assert!(is_device_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_device_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_device_id("*"));
        assert_eq!(
            stream_names("00ff00ff00ff00ff"),
            (
                "MESH_00FF00FF00FF00FF_MAIL".to_string(),
                "MESH_00FF00FF00FF00FF_KEYS".to_string()
            )
        );
        assert_eq!(percent_decode("p%40ss%2"), "p@ss%2");
    }

    #[test]
    fn passwords_are_redacted() {
        let addr: ServerAddr = "nats://bob:s3cret@example.org:4222"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let shown = redact(&addr);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("bob"), "{shown}");
    }
}
