//! The mesh across machines (issue 16): device keys, sealed envelopes, `federation.toml`, the
//! NATS transport, and the tasks that join them to the store: the forwarder (outbox -> NATS),
//! the receiver (NATS -> store, acknowledged after the commit), key announcements (trust on
//! first use, pinned) and presence. docs/design/federation.md explains the design.

pub mod config;
pub mod envelope;
pub mod keys;
pub mod quiet;
pub mod transport;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use mesh_proto::sanitize;
use mesh_proto::{FederationReport, StreamState, WireError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::federation::{self as fed_store, Received};
use crate::store::hosts::{self, HostRow, KeyVerdict};
use crate::store::{Identity, outbox, remote};
use crate::store::{Store, now_ms};
use config::FederationConfig;
use envelope::{Envelope, Presence};
use keys::{DeviceKey, PublicKey};
use transport::{ConnectOptions, ServerFacts, StreamPlan, Transport};

/// How often a daemon tells every other host of the team which sessions it runs. A host not
/// heard from for [`crate::store::federation::PRESENCE_TIMEOUT_MS`] leaves the lists.
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(5);

/// Most envelopes in flight to the server at once (their PubAcks awaited together).
const MAX_IN_FLIGHT: usize = 256;

/// Most deliveries taken from the server at once and committed together (each by its own
/// store job, in one transaction), then acknowledged.
const MAX_RECEIVE_BATCH: usize = 256;

/// Back-off after a failure talking to the server.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A delivery from a device whose key announcement is in the keys stream but not yet read
/// here (it is usually a moment behind) is handed back this many times, each after
/// [`redelivery_delay`] (about nine minutes in all), before it is dropped. A device that never
/// announced a key is dropped at once.
const UNKNOWN_SENDER_TRIES: u64 = 60;

/// How often a daemon checks that the streams and its key announcement are still there.
const STREAM_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// How long lookups of key announcements pause after one failed.
const LOOKUP_PAUSE: Duration = Duration::from_secs(60);

/// Longest wait before a delivery handed back comes again.
const REDELIVERY_MAX: Duration = Duration::from_secs(10);

/// How long a delivery handed back (`Settle::Retry`) waits before the server offers it again:
/// [`RETRY_MIN`], doubling with each redelivery, at most [`REDELIVERY_MAX`]. A receiver that
/// cannot take mail (a full disk) or a sender not known yet must not turn into a busy loop of
/// deliveries.
fn redelivery_delay(redelivered: u64) -> Duration {
    let doublings = u32::try_from(redelivered.min(6)).unwrap_or(6);
    RETRY_MIN.saturating_mul(1 << doublings).min(REDELIVERY_MAX)
}

/// Longest last error kept for `mesh health`, in bytes.
const MAX_ERROR_BYTES: usize = 1024;

/// What `federation.toml` and the device key say, read at the daemon's start.
#[derive(Debug, Clone)]
pub enum Setup {
    /// No `federation.toml`: this machine is not part of a mesh; nothing connects anywhere.
    Off,
    /// `federation.toml` is there but cannot be used (the daemon runs locally and `mesh
    /// health` says why).
    Broken { reason: String },
    /// Joined: the daemon takes part in the mesh.
    On(Federation),
}

impl Setup {
    /// Read the files of the state directory `dir`.
    pub fn load(dir: &Path) -> Setup {
        Self::load_retaining(dir, None)
    }

    /// [`Setup::load`], for a daemon that forgets delivered mail after `retain`
    /// ([`crate::server::Config::retain`]): mail that comes in older than that could be a
    /// replay of mail already forgotten, and is refused.
    pub fn load_retaining(dir: &Path, retain: Option<Duration>) -> Setup {
        let config = match FederationConfig::load(dir) {
            Ok(None) => return Setup::Off,
            Ok(Some(c)) => c,
            Err(e) => {
                return Setup::Broken {
                    reason: e.to_string(),
                };
            }
        };
        let key = match DeviceKey::load(&FederationConfig::key_path(dir)) {
            Ok(k) => k,
            Err(e) => {
                return Setup::Broken {
                    reason: e.to_string(),
                };
            }
        };
        Setup::On(Federation::new(config, key, retain))
    }

    /// The running federation, if joined.
    pub fn federation(&self) -> Option<&Federation> {
        match self {
            Setup::On(f) => Some(f),
            _ => None,
        }
    }
}

/// This daemon's part of the mesh: its configuration, its key, and what it knows of the server.
/// Cheap to clone.
#[derive(Clone)]
pub struct Federation {
    inner: Arc<Inner>,
}

struct Inner {
    config: FederationConfig,
    key: DeviceKey,
    identity: Identity,
    team_id: String,
    state: Mutex<State>,
    transport: tokio::sync::OnceCell<Transport>,
    /// Wakes the presence task at once (a new host pinned: tell it who runs here).
    presence_now: Notify,
    /// How long delivered mail is kept ([`Setup::load_retaining`]).
    retain: Option<Duration>,
    /// The keys stream's sequence up to which every announcement has been handled here (pinned,
    /// or refused for good): mail from a device whose latest announcement is at or below it,
    /// and that is still unknown, will stay unknown.
    keys_read: AtomicU64,
    /// An announcement could not be recorded (the store failed): `keys_read` proves nothing.
    keys_lossy: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    facts: Option<ServerFacts>,
    last_error: Option<String>,
    /// When a lookup of a key announcement last failed ([`Federation::unknown_sender`]).
    lookup_failed: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("host", &self.inner.identity.host)
            .field("device", &self.inner.identity.device)
            .finish_non_exhaustive()
    }
}

impl Federation {
    fn new(config: FederationConfig, key: DeviceKey, retain: Option<Duration>) -> Federation {
        let identity = Identity {
            device: key.device_id().to_string(),
            host: config.host.clone(),
        };
        let team_id = config.team_id();
        Federation {
            inner: Arc::new(Inner {
                config,
                key,
                identity,
                team_id,
                state: Mutex::default(),
                transport: tokio::sync::OnceCell::new(),
                presence_now: Notify::new(),
                retain,
                keys_read: AtomicU64::new(0),
                keys_lossy: AtomicBool::new(false),
            }),
        }
    }

    /// This machine in the mesh.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self, what: &str, e: &dyn std::fmt::Display) {
        // Errors can quote the server (an `-ERR` line, an API error description): bounded.
        let msg = transport::bounded(format!("{what}: {e}"), MAX_ERROR_BYTES);
        tracing::warn!(target: "mesh::federation", "{msg}");
        self.state().last_error = Some(msg);
    }

    /// Connect and serve the mesh until `stop`: every task on `tasks`. Returns at once.
    pub fn start(&self, store: Store, tasks: &TaskTracker, stop: CancellationToken) {
        store.set_identity(self.inner.identity.clone());
        let fed = self.clone();
        let spawner = tasks.clone();
        tasks.spawn(async move { fed.run(store, spawner, stop).await });
    }

    async fn run(self, store: Store, tasks: TaskTracker, stop: CancellationToken) {
        let cfg = &self.inner.config;
        let opts = ConnectOptions {
            url: cfg.url.clone(),
            creds: cfg.creds.clone(),
            nkey: cfg.nkey.clone(),
            tls_ca: cfg.tls_ca.clone(),
            name: format!("claude-mesh {}", self.inner.identity.device),
            inbox_prefix: Some(format!("_INBOX_{}", self.inner.identity.device)),
        };
        let Some(transport) = self
            .retry("cannot connect to the NATS server", &stop, || {
                Transport::connect(&opts)
            })
            .await
        else {
            return;
        };
        {
            let mut st = self.state();
            st.facts = Some(transport.server_facts());
            st.last_error = None;
        }
        tracing::info!(
            target: "mesh::federation",
            host = %self.inner.identity.host,
            device = %self.inner.identity.device,
            server = ?transport.server_facts().version,
            "connected to the NATS server"
        );
        let plan = StreamPlan {
            team: self.inner.team_id.clone(),
            replicas: cfg.replicas,
        };
        let streams = self.retry("cannot create the mesh's streams", &stop, || {
            transport.ensure_streams(&plan)
        });
        if streams.await.is_none() {
            return;
        }
        let _ = self.inner.transport.set(transport.clone());
        let announce = self.announcement();
        let announced = self.retry("cannot announce this device's key", &stop, || {
            transport.announce(
                &self.inner.team_id,
                &self.inner.identity.device,
                announce.clone(),
            )
        });
        if announced.await.is_none() {
            return;
        }
        tasks.spawn(
            self.clone()
                .keys(transport.clone(), store.clone(), stop.clone()),
        );
        tasks.spawn(
            self.clone()
                .receive(transport.clone(), store.clone(), stop.clone()),
        );
        tasks.spawn(
            self.clone()
                .forward(transport.clone(), store.clone(), stop.clone()),
        );
        tasks.spawn(
            self.clone()
                .presence_in(transport.clone(), store.clone(), stop.clone()),
        );
        tasks.spawn(
            self.clone()
                .keep_streams(transport.clone(), plan, stop.clone()),
        );
        self.presence_out(transport, store, stop).await;
    }

    /// Every [`STREAM_CHECK_INTERVAL`], checks that the team's streams are on the server and
    /// this device's key announcement is in the keys stream; when not (a server whose store was
    /// wiped, or whose JetStream was turned off and on), creates the streams again (a no-op for
    /// streams that exist) and announces the key again. The consumers of mail and announcements
    /// recreate themselves once the streams are back.
    async fn keep_streams(self, t: Transport, plan: StreamPlan, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(STREAM_CHECK_INTERVAL) => {}
                () = stop.cancelled() => return,
            }
            if !t.is_connected() {
                continue;
            }
            let team = &self.inner.team_id;
            let device = &self.inner.identity.device;
            let states = tokio::time::timeout(transport::ACK_TIMEOUT, t.stream_states(team)).await;
            let missing = states.is_ok_and(|s| s.iter().any(|(_, present, _)| !present));
            // The streams are there: is this device's announcement? (Not asked of a server
            // whose permissions do not allow the lookup: it would fail every time.)
            let gone = missing
                || (!self.lookups_paused()
                    && match t.announced(team, device).await {
                        Ok(found) => found.is_none(),
                        Err(_) => {
                            self.state().lookup_failed = Some(tokio::time::Instant::now());
                            false
                        }
                    });
            if !gone {
                continue;
            }
            tracing::warn!(target: "mesh::federation", "the streams or this device's key announcement are gone from the server: creating the streams and announcing the key again");
            let again = async {
                t.ensure_streams(&plan).await?;
                t.announce(team, device, self.announcement()).await
            };
            if let Err(e) = again.await {
                self.failed("cannot create the streams again", &e);
            }
        }
    }

    /// Whether lookups of key announcements are paused: one failed less than [`LOOKUP_PAUSE`]
    /// ago (a server whose permissions do not allow them answers nothing).
    fn lookups_paused(&self) -> bool {
        self.state()
            .lookup_failed
            .is_some_and(|at| at.elapsed() < LOOKUP_PAUSE)
    }

    /// This device's key announcement, as of now.
    fn announcement(&self) -> Vec<u8> {
        envelope::announce_bytes(&envelope::Announce {
            v: 1,
            public_key: *self.inner.key.public().as_bytes(),
            host: self.inner.identity.host.clone(),
            // The team's opaque id, not its name: the operator sees ids only.
            team: self.inner.team_id.clone(),
            sent_ms: now_ms(),
        })
    }

    /// Key announcements: pin new hosts, refuse changed keys (loudly).
    async fn keys(self, t: Transport, store: Store, stop: CancellationToken) {
        let Some(mut stream) = self
            .retry("cannot read the key announcements", &stop, || {
                t.announcements(&self.inner.team_id)
            })
            .await
        else {
            return;
        };
        // When this device last put its own announcement back (see below).
        let mut restored: Option<tokio::time::Instant> = None;
        // The announcement handled in the previous turn (every turn handles one, to the end).
        let mut handled = 0;
        loop {
            self.inner.keys_read.fetch_max(handled, Ordering::Release);
            let next = tokio::select! {
                n = stream.next() => n,
                () = stop.cancelled() => return,
            };
            let a = match next {
                None => return,
                Some(Err(e)) => {
                    self.failed("key announcements", &e);
                    continue;
                }
                Some(Ok(a)) => a,
            };
            if a.restarted {
                // The stream was created again: what was read of the old one proves nothing.
                self.inner.keys_read.store(0, Ordering::Release);
                handled = 0;
            }
            handled = handled.max(a.sequence);
            let ann = match envelope::read_announce(&a.payload) {
                Ok(ann) => ann,
                Err(e) => {
                    if quiet::allow() {
                        tracing::warn!(target: "mesh::federation", "ignored a malformed key announcement: {e}");
                    }
                    continue;
                }
            };
            let key = PublicKey::from_bytes(ann.public_key);
            if key.device_id().to_string() != a.device || ann.team != self.inner.team_id {
                if quiet::allow() {
                    tracing::warn!(target: "mesh::federation", "ignored a key announcement whose device or team does not match its subject");
                }
                continue;
            }
            if key == self.inner.key.public() {
                // This device's key under another name: someone with the credentials replaced
                // its announcement (one is kept per device), and machines joining now would pin
                // this key under that name. Put ours back (at most once a minute: two daemons
                // given the same key file would otherwise answer each other forever).
                if !ann.host.eq_ignore_ascii_case(&self.inner.identity.host)
                    && restored.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                {
                    tracing::error!(
                        target: "mesh::federation",
                        "this device's key was announced as host `{}`: announcing it again as `{}`",
                        ann.host,
                        self.inner.identity.host
                    );
                    restored = Some(tokio::time::Instant::now());
                    if let Err(e) = t
                        .announce(
                            &self.inner.team_id,
                            &self.inner.identity.device,
                            self.announcement(),
                        )
                        .await
                    {
                        self.failed("cannot announce this device's key", &e);
                    }
                }
                continue;
            }
            if ann.host.eq_ignore_ascii_case(&self.inner.identity.host) {
                if quiet::allow() {
                    tracing::error!(
                        target: "mesh::federation",
                        "another device ({}) announces itself as this machine's host name `{}`: \
                         its mail is refused. Give one of the two machines another name (`mesh join \
                         <url> --host <name>`)",
                        key.fingerprint(),
                        sanitize::terminal_cut(&ann.host, 64)
                    );
                }
                continue;
            }
            let host = ann.host.clone();
            let verdict = store
                .call(move |ctx| hosts::observe_key(ctx, &host, &key))
                .await;
            match verdict {
                Ok(KeyVerdict::Pinned) => {
                    tracing::info!(target: "mesh::federation", host = %ann.host, fingerprint = %key.fingerprint(), "a new host joined the mesh; its key is pinned (trust on first use)");
                    store.outbox_changed();
                    self.inner.presence_now.notify_one();
                }
                Ok(KeyVerdict::Known) => {}
                Ok(KeyVerdict::OtherHost(pinned_as)) => {
                    if quiet::allow() {
                        tracing::warn!(
                            target: "mesh::federation",
                            "ignored an announcement of host `{}`: its key is the one pinned for host \
                             `{pinned_as}`",
                            ann.host
                        );
                    }
                }
                Ok(KeyVerdict::TooMany) => {
                    if quiet::allow() {
                        tracing::warn!(
                            target: "mesh::federation",
                            "not pinning the key of host `{}`: {} hosts are known already",
                            ann.host,
                            hosts::MAX_HOSTS
                        );
                    }
                }
                Ok(KeyVerdict::Changed { pinned, offered }) => {
                    if quiet::allow() {
                        tracing::error!(
                            target: "mesh::federation",
                            "the key of host `{}` CHANGED: pinned {pinned_fp}, now offered {offered_fp}. \
                             Mail sealed with the new key is refused, and mail for that host still goes \
                             to the pinned key only, until you check the new fingerprint on that machine \
                             (`mesh keys`) and accept it: `mesh keys trust {} {offered_fp}`",
                            ann.host,
                            ann.host,
                            pinned_fp = pinned.fingerprint(),
                            offered_fp = offered.fingerprint(),
                        );
                    }
                }
                Err(e) => {
                    self.inner.keys_lossy.store(true, Ordering::Release);
                    self.failed("cannot record a host's key", &e);
                }
            }
        }
    }

    /// The sender of an envelope from `device`: its host, if `device` is the key pinned for it.
    /// The pinned key stays trusted while another key is offered under the same host name:
    /// anyone with the NATS credentials can announce a key under any name, and that must not
    /// cut a trusted machine off (the offered key is the one refused, until trusted).
    fn sender(store: &Store, device: &str) -> Result<Sender, WireError> {
        store.read(|r| {
            if let Some(h) = hosts::host_by_device(r, device)? {
                return Ok(Sender::Trusted(h));
            }
            let offered = hosts::hosts(r)?.into_iter().find(|h| {
                h.offered_key
                    .is_some_and(|k| PublicKey::from_bytes(k).device_id().to_string() == device)
            });
            Ok(match offered {
                Some(h) => Sender::Refused(h.host),
                None => Sender::Unknown,
            })
        })
    }

    /// This device's mail: each envelope opened, committed (once, by its global id), and only
    /// then acknowledged.
    async fn receive(self, t: Transport, store: Store, stop: CancellationToken) {
        let Some(mut stream) = self
            .retry("cannot read this device's mail", &stop, || {
                t.mail(&self.inner.team_id, &self.inner.identity.device)
            })
            .await
        else {
            return;
        };
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                () = stop.cancelled() => return,
            };
            let mut batch = match next {
                None => return,
                Some(Err(e)) => {
                    self.failed("mail", &e);
                    continue;
                }
                Some(Ok(d)) => vec![d],
            };
            // Whatever else has already arrived goes with it: each delivery is still its own
            // store job (committed once, by its global id), but the store thread commits the
            // jobs that wait together in one transaction, so a backlog costs one fsync per
            // batch instead of one per message. Each is settled after that commit.
            let mut ended = false;
            while batch.len() < MAX_RECEIVE_BATCH {
                match stream.next().now_or_never() {
                    Some(Some(Ok(d))) => batch.push(d),
                    Some(Some(Err(e))) => {
                        self.failed("mail", &e);
                        break;
                    }
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            let settles = batch.into_iter().map(|delivery| {
                let (fed, store, t) = (&self, &store, &t);
                async move {
                    let redelivered = delivery.redelivered();
                    let settle = fed.take(t, store, &delivery.payload, redelivered).await;
                    let result = match settle {
                        Settle::Ack => delivery.ack().await,
                        Settle::Retry => delivery.nak(redelivery_delay(redelivered)).await,
                    };
                    if let Err(e) = result {
                        fed.failed("cannot settle a delivery", &e);
                    }
                }
            });
            futures::future::join_all(settles).await;
            if ended {
                return;
            }
        }
    }

    /// What to do with mail from a device whose key is not known here: worth waiting for only
    /// if its key is announced in the keys stream and merely not read here yet. A failed
    /// lookup (a server whose permissions lack `STREAM.MSG.GET` on the keys stream answers
    /// nothing, so the request times out) pauses lookups for [`LOOKUP_PAUSE`]: meanwhile such
    /// mail is handed back with the growing delay, a bounded number of times.
    async fn unknown_sender(&self, t: &Transport, device: &str, redelivered: u64) -> Settle {
        let retry_or_drop = || {
            if redelivered < UNKNOWN_SENDER_TRIES {
                return Settle::Retry;
            }
            if quiet::allow() {
                tracing::error!(target: "mesh::federation", device, "dropped mail from a device whose key never arrived");
            }
            Settle::Ack
        };
        if self.lookups_paused() {
            return retry_or_drop();
        }
        let read = (!self.inner.keys_lossy.load(Ordering::Acquire))
            .then(|| self.inner.keys_read.load(Ordering::Acquire));
        match t.announced(&self.inner.team_id, device).await {
            Ok(Some(seq)) if read.is_none_or(|read| seq > read) => retry_or_drop(),
            Ok(announced) => {
                if quiet::allow() {
                    tracing::error!(
                        target: "mesh::federation",
                        device,
                        "dropped mail from a device {}",
                        if announced.is_some() {
                            "whose key announcement was not accepted here"
                        } else {
                            "that never announced a key"
                        }
                    );
                }
                Settle::Ack
            }
            Err(e) => {
                self.state().lookup_failed = Some(tokio::time::Instant::now());
                self.failed("cannot look up a sender's key announcement", &e);
                retry_or_drop()
            }
        }
    }

    /// What to do with one delivery's payload.
    async fn take(&self, t: &Transport, store: &Store, payload: &[u8], redelivered: u64) -> Settle {
        let frame = match envelope::read_frame(payload) {
            Ok(f) => f,
            Err(e) => {
                if quiet::allow() {
                    tracing::warn!(target: "mesh::federation", "dropped a malformed envelope: {e}");
                }
                return Settle::Ack;
            }
        };
        let device = frame.from.to_string();
        let host = match Self::sender(store, &device) {
            Ok(Sender::Trusted(h)) => h,
            Ok(Sender::Refused(host)) => {
                if quiet::allow() {
                    tracing::error!(
                        target: "mesh::federation",
                        "REFUSED mail claiming to be from host `{}`: it is sealed with a key that is \
                         not the one pinned for that host (`mesh keys` shows both)",
                        sanitize::terminal_cut(&host, 64)
                    );
                }
                return Settle::Ack;
            }
            Ok(Sender::Unknown) if device == self.inner.identity.device => {
                if quiet::allow() {
                    tracing::error!(target: "mesh::federation", "REFUSED mail that claims to come from this device (a replay of its own mail to another machine)");
                }
                return Settle::Ack;
            }
            Ok(Sender::Unknown) => return self.unknown_sender(t, &device, redelivered).await,
            Err(e) => {
                self.failed("cannot look up a sender", &e);
                return Settle::Retry;
            }
        };
        let env = match envelope::open_frame(&self.inner.key, &host.key(), &frame) {
            Ok(env) => env,
            Err(e) => {
                if quiet::allow() {
                    tracing::error!(target: "mesh::federation", host = %host.host, "REFUSED an envelope that does not open with its sender's pinned key: {e}");
                }
                return Settle::Ack;
            }
        };
        let me = self.inner.identity.clone();
        let from = host.host.clone();
        let res = match env {
            Envelope::Mail(m) if self.too_old(m.created_ms) => Ok(Received::Refused(format!(
                "mail written {} s ago, older than this machine keeps mail: it could be a \
                 replay of mail already forgotten",
                (now_ms() - m.created_ms) / 1000
            ))),
            Envelope::Mail(m) => {
                store
                    .call(move |ctx| fed_store::receive_mail(ctx, &from, &m))
                    .await
            }
            Envelope::Receipt(r) => {
                store
                    .call(move |ctx| fed_store::receive_receipt(ctx, &me, &from, &r))
                    .await
            }
            Envelope::Presence(_) => Ok(Received::Refused("presence sent as mail".into())),
        };
        match res {
            Ok(Received::Refused(why)) => {
                if quiet::allow() {
                    tracing::warn!(target: "mesh::federation", host = %host.host, "not accepted: {why}");
                }
                Settle::Ack
            }
            Ok(Received::New | Received::Duplicate) => Settle::Ack,
            Err(e) => {
                // Not committed (a full disk, say): the server keeps it and hands it back.
                self.failed("cannot store mail from another machine", &e);
                Settle::Retry
            }
        }
    }

    /// The outbox, oldest first, to the server: each envelope sealed for its host's pinned key,
    /// published with a dedupe id derived from its id ([`DeviceKey::dedupe_id`]) as
    /// `Nats-Msg-Id`, and deleted once the server acknowledged it.
    async fn forward(self, t: Transport, store: Store, stop: CancellationToken) {
        let mut backoff = None;
        loop {
            let batch = match store.read(|r| outbox::sendable(r, MAX_IN_FLIGHT)) {
                Ok(b) => b,
                Err(e) => {
                    self.failed("cannot read the outbox", &e);
                    if !pause(&stop, &mut backoff).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = store.outbox_committed() => continue,
                    () = stop.cancelled() => return,
                }
            }
            let publishes = batch.iter().map(|(out, key)| {
                let t = t.clone();
                let fed = self.clone();
                async move {
                    let env: Envelope = match postcard::from_bytes(&out.envelope) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::error!(target: "mesh::federation", seq = out.seq, "dropped an outbox entry that does not decode: {e}");
                            return Ok(out.seq);
                        }
                    };
                    let sealed = envelope::seal_frame(&fed.inner.key, key, &env)
                        .map_err(|e| e.to_string())?;
                    let device = key.device_id().to_string();
                    let dedupe = fed.inner.key.dedupe_id(&out.dedupe);
                    t.publish_mail(&fed.inner.team_id, &device, &dedupe, sealed)
                        .await
                        .map(|_| out.seq)
                        .map_err(|e| e.to_string())
                }
            });
            let results = futures::future::join_all(publishes).await;
            let mut done = Vec::with_capacity(results.len());
            let mut failure = None;
            for r in results {
                match r {
                    Ok(seq) => done.push(seq),
                    Err(e) => failure = Some(e),
                }
            }
            if !done.is_empty() {
                // Soft: a deletion lost to a crash publishes again, and the dedupe id (and
                // the receiver's global id) make that a no-op.
                if let Err(e) = store.call_soft(move |ctx| outbox::sent(ctx, &done)).await {
                    self.failed("cannot clear the outbox", &e);
                }
            }
            if let Some(e) = failure {
                self.failed("cannot publish to the NATS server", &e);
                if !pause(&stop, &mut backoff).await {
                    return;
                }
            } else {
                backoff = None;
                self.state().last_error = None;
            }
        }
    }

    /// Presence from other hosts.
    async fn presence_in(self, t: Transport, store: Store, stop: CancellationToken) {
        let Some(mut stream) = self
            .retry("cannot listen for presence", &stop, || {
                t.presence(&self.inner.team_id, &self.inner.identity.device)
            })
            .await
        else {
            return;
        };
        loop {
            let payload = tokio::select! {
                n = stream.next() => match n { Some(p) => p, None => return },
                () = stop.cancelled() => return,
            };
            let Ok(frame) = envelope::read_frame(&payload) else {
                continue;
            };
            let Ok(Sender::Trusted(host)) = Self::sender(&store, &frame.from.to_string()) else {
                continue;
            };
            let Ok(Envelope::Presence(p)) =
                envelope::open_frame(&self.inner.key, &host.key(), &frame)
            else {
                continue;
            };
            // An older presence than the newest taken from that host (replayed, or overtaken)
            // is ignored by the store, which remembers across restarts.
            let name = host.host.clone();
            if let Err(e) = store
                .call_soft(move |ctx| remote::apply_presence(ctx, &name, &p))
                .await
            {
                self.failed("cannot record presence", &e);
            }
        }
    }

    /// This machine's sessions, to every trusted host, every [`PRESENCE_INTERVAL`] (and at
    /// once when a host joins); "leaving" when the daemon stops.
    async fn presence_out(self, t: Transport, store: Store, stop: CancellationToken) {
        loop {
            self.announce_presence(&t, &store, false).await;
            tokio::select! {
                () = tokio::time::sleep(PRESENCE_INTERVAL) => {}
                () = self.inner.presence_now.notified() => {}
                () = stop.cancelled() => break,
            }
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.announce_presence(&t, &store, true),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), t.flush()).await;
    }

    async fn announce_presence(&self, t: &Transport, store: &Store, leaving: bool) {
        let read = store.read(|r| {
            let sessions = if leaving {
                Vec::new()
            } else {
                fed_store::local_presence(r)?
            };
            Ok((sessions, hosts::hosts(r)?))
        });
        let (sessions, hosts) = match read {
            Ok(x) => x,
            Err(e) => {
                self.failed("cannot read the sessions for presence", &e);
                return;
            }
        };
        let presence = Envelope::Presence(Presence {
            host: self.inner.identity.host.clone(),
            sent_ms: now_ms(),
            leaving,
            sessions,
        });
        // To each host's pinned key (a key merely offered under its name learns nothing).
        for h in &hosts {
            let Ok(sealed) = envelope::seal_frame(&self.inner.key, &h.key(), &presence) else {
                continue;
            };
            if let Err(e) = t
                .publish_presence(&self.inner.team_id, &h.device_id, sealed)
                .await
            {
                self.failed("cannot publish presence", &e);
                return;
            }
        }
    }

    /// The mesh as `mesh health` and `mesh keys` show it.
    pub async fn report(&self, store: &Store) -> FederationReport {
        let cfg = &self.inner.config;
        let (facts, last_error) = {
            let st = self.state();
            (st.facts.clone(), st.last_error.clone())
        };
        let transport = self.inner.transport.get();
        let connected = transport.is_some_and(Transport::is_connected);
        // Down after the first connect: why, when the server or the reconnects said (e.g. the
        // credentials expired or were revoked), before any older error.
        let last_error = transport
            .and_then(Transport::connection_error)
            .map(|e| {
                // It can quote the server's `-ERR`: bounded like every kept error.
                transport::bounded(
                    format!("disconnected from the NATS server: {e}"),
                    MAX_ERROR_BYTES,
                )
            })
            .or(last_error);
        let streams = match transport {
            Some(t) if connected => {
                tokio::time::timeout(Duration::from_secs(2), t.stream_states(&self.inner.team_id))
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, present, messages)| StreamState {
                        name,
                        present,
                        messages,
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let now = now_ms();
        let read = store.read(|r| {
            let (depth, oldest) = outbox::outbox_depth(r)?;
            let sessions = remote::remote_sessions(r, now, false)?;
            let hosts = hosts::hosts(r)?
                .iter()
                .map(|h| hosts::host_key(h, remote::live_count(&sessions, &h.host)))
                .collect::<Vec<_>>();
            Ok((depth, oldest, hosts))
        });
        let (outbox_depth, outbox_oldest_ms, hosts, read_error) = match read {
            Ok((d, o, h)) => (d, o, h, None),
            Err(e) => (0, None, Vec::new(), Some(e.message)),
        };
        FederationReport {
            configured: true,
            config_error: None,
            url: cfg.redacted_url(),
            host: self.inner.identity.host.clone(),
            team: cfg.team.clone(),
            device_id: self.inner.identity.device.clone(),
            fingerprint: self.inner.key.public().fingerprint().to_string(),
            connected,
            server_version: facts.as_ref().map(|f| f.version.clone()),
            jetstream: facts.as_ref().is_some_and(|f| f.jetstream),
            features: facts
                .map(|f| f.features.iter().map(|s| (*s).to_owned()).collect())
                .unwrap_or_default(),
            streams,
            outbox_depth,
            outbox_oldest_ms,
            hosts,
            last_error: last_error.or(read_error),
        }
    }
}

impl Federation {
    /// Whether mail written at `created_ms` (its sender's clock) is older than this daemon
    /// keeps mail, less a margin for clocks that disagree (half the retention, at most a day).
    /// Retention forgets a delivered message's global id with it, so such mail could be a
    /// captured envelope published again, and its id would no longer say so.
    fn too_old(&self, created_ms: i64) -> bool {
        let Some(retain) = self.inner.retain else {
            return false;
        };
        let retain_ms = i64::try_from(retain.as_millis()).unwrap_or(i64::MAX);
        let margin = (retain_ms / 2).min(24 * 3600 * 1000);
        created_ms < now_ms().saturating_sub(retain_ms - margin)
    }
}

/// Who sealed an envelope.
enum Sender {
    Trusted(HostRow),
    /// A key that a known host name offers but the user has not trusted.
    Refused(String),
    /// No announcement of this device yet.
    Unknown,
}

enum Settle {
    Ack,
    Retry,
}

impl Federation {
    /// Run `attempt` until it succeeds, each failure reported as `what` and followed by the
    /// next back-off step; `None` once `stop` comes.
    async fn retry<T, E, Fut>(
        &self,
        what: &str,
        stop: &CancellationToken,
        mut attempt: impl FnMut() -> Fut,
    ) -> Option<T>
    where
        E: std::fmt::Display,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut backoff = None;
        loop {
            let result = tokio::select! {
                r = attempt() => r,
                () = stop.cancelled() => return None,
            };
            match result {
                Ok(v) => return Some(v),
                Err(e) => {
                    self.failed(what, &e);
                    if !pause(stop, &mut backoff).await {
                        return None;
                    }
                }
            }
        }
    }
}

/// Sleep the next back-off step; false if `stop` came first.
async fn pause(stop: &CancellationToken, backoff: &mut Option<Duration>) -> bool {
    let d = backoff.map_or(RETRY_MIN, |d| (d * 2).min(RETRY_MAX));
    *backoff = Some(d);
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = stop.cancelled() => false,
    }
}

/// The report of a daemon whose `federation.toml` cannot be used.
pub fn broken_report(reason: &str) -> FederationReport {
    FederationReport {
        configured: true,
        config_error: Some(reason.to_owned()),
        ..FederationReport::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_server_says_is_kept_bounded() {
        use transport::bounded;
        assert_eq!(bounded("2.15.1".into(), 64), "2.15.1");
        assert_eq!(bounded("x".repeat(64), 64), "x".repeat(64));
        assert_eq!(bounded("x".repeat(70), 64), format!("{}…", "x".repeat(61)));
        let wide = bounded("é".repeat(100), 64);
        assert!(wide.len() <= 64 && wide.ends_with('…'), "{wide}");
    }

    #[test]
    fn mail_handed_back_waits_longer_each_time_and_not_forever() {
        assert_eq!(redelivery_delay(0), RETRY_MIN);
        assert_eq!(redelivery_delay(1), RETRY_MIN * 2);
        assert_eq!(redelivery_delay(5), RETRY_MIN * 32);
        assert_eq!(redelivery_delay(6), REDELIVERY_MAX);
        assert_eq!(redelivery_delay(u64::MAX), REDELIVERY_MAX);
        // An unknown sender's mail is waited for about nine minutes in all.
        let total: Duration = (0..UNKNOWN_SENDER_TRIES).map(redelivery_delay).sum();
        assert!(
            (Duration::from_secs(480)..Duration::from_secs(660)).contains(&total),
            "{total:?}"
        );
    }
}
