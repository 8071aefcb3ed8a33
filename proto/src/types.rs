//! Requests, responses and the records they carry. One struct per request variant.
//!
//! Timestamps are milliseconds since the Unix epoch. Message ids are daemon-assigned integers.

use serde::{Deserialize, Serialize};

use crate::WireError;

#[cfg(test)]
use proptest_derive::Arbitrary;

/// Who is calling. The daemon resolves it to a session (docs/interface.md, "Identity"): the
/// process `claude_pid` if set and registered; else the nearest registered ancestor of the
/// connecting process (the daemon reads the peer PID from the socket itself); else the session
/// whose current id is `session_id`. A caller that resolves to nothing acts as the user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Caller {
    /// `CLAUDE_PID`, when the environment has it.
    pub claude_pid: Option<u32>,
    /// `CLAUDE_CODE_SESSION_ID`, when the environment has it.
    pub session_id: Option<String>,
}

/// What a message is for, and the rules that follow from it. Every decision that depends on
/// the kind (which kinds wake an idle session, which are urgent, what the database calls them)
/// is a method here, so adding a kind is this enum, these methods (the compiler lists the
/// matches to extend) and its text in the hook's and the MCP server's renderers.
///
/// `Task` and `Question` (and `Answer`, to an asker that stopped waiting) are urgent: injected
/// at the next hook of any kind. `Note` waits for the next prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum Kind {
    Task,
    Note,
    Question,
    Answer,
}

impl Kind {
    /// Every kind, in wire order.
    pub const ALL: [Kind; 4] = [Kind::Task, Kind::Note, Kind::Question, Kind::Answer];

    /// Its name: in the database (`messages.kind`), in `--json` output and in frames. A stored
    /// spelling never changes: databases keep it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Task => "task",
            Kind::Note => "note",
            Kind::Question => "question",
            Kind::Answer => "answer",
        }
    }

    /// The kind spelled `s` in the database ([`Kind::as_str`]); anything else is an error, never
    /// a guess.
    pub fn from_db(s: &str) -> Result<Kind, UnknownKind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }

    /// Whether this kind is delivered at every hook (not only at the next prompt): the kinds of
    /// [`Class::Urgent`], what `post-tool-use` injects and what a Stop hook blocks for.
    pub const fn is_urgent(self) -> bool {
        match self {
            Kind::Task | Kind::Question | Kind::Answer => true,
            Kind::Note => false,
        }
    }

    /// Whether this kind, waiting for an idle session, is worth waking it for: `mesh run`'s
    /// supervisor types a wake line and the desktop notifier tells the human. An answer is for
    /// an asker that stopped waiting, and a note is for information: neither wakes anyone.
    pub const fn wakes(self) -> bool {
        match self {
            Kind::Task | Kind::Question => true,
            Kind::Note | Kind::Answer => false,
        }
    }

    /// Whether `send` queues this kind. A question goes through `ask` (it can be waited on) and
    /// an answer through `reply` (it names its question).
    pub const fn is_sent(self) -> bool {
        match self {
            Kind::Task | Kind::Note => true,
            Kind::Question | Kind::Answer => false,
        }
    }

    /// Whether a consume of `class` takes this kind.
    pub const fn in_class(self, class: Class) -> bool {
        match class {
            Class::All => true,
            Class::Urgent => self.is_urgent(),
        }
    }
}

/// A kind name that no [`Kind`] has (read from a database written by something else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKind(pub String);

impl std::fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown message kind {:?}", self.0)
    }
}

impl std::error::Error for UnknownKind {}

#[cfg(test)]
mod kind_tests {
    use super::*;

    /// A kind missing from `ALL` would never be read back from the database, nor get its SQL.
    #[test]
    fn all_lists_every_kind_once_and_reads_back() {
        for k in Kind::ALL {
            // Exhaustive: a new variant fails to compile here until it is in ALL.
            let listed = match k {
                Kind::Task | Kind::Note | Kind::Question | Kind::Answer => Kind::ALL.contains(&k),
            };
            assert!(listed);
            assert_eq!(Kind::from_db(k.as_str()), Ok(k));
            assert_eq!(
                Kind::ALL
                    .iter()
                    .filter(|o| o.as_str() == k.as_str())
                    .count(),
                1
            );
        }
        let err = Kind::from_db("bogus").unwrap_err();
        assert_eq!(err, UnknownKind("bogus".to_owned()));
        assert!(err.to_string().contains("\"bogus\""), "{err}");
        assert!(Kind::from_db("Task").is_err(), "the spelling is exact");
    }

    #[test]
    fn rules() {
        let which =
            |f: fn(Kind) -> bool| Kind::ALL.into_iter().filter(|k| f(*k)).collect::<Vec<_>>();
        assert_eq!(
            which(Kind::is_urgent),
            [Kind::Task, Kind::Question, Kind::Answer]
        );
        assert_eq!(which(Kind::wakes), [Kind::Task, Kind::Question]);
        assert_eq!(which(Kind::is_sent), [Kind::Task, Kind::Note]);
        assert_eq!(which(|k| k.in_class(Class::All)), Kind::ALL);
        assert_eq!(which(|k| k.in_class(Class::Urgent)), which(Kind::is_urgent));
        // What wakes a session is urgent too: a woken session's next hook takes it.
        assert!(Kind::ALL.iter().all(|k| !k.wakes() || k.is_urgent()));
    }
}

/// Delivery state of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum Status {
    Queued,
    Delivered,
    Answered,
    /// A question whose asker stopped waiting (timed out, left) before it was handed to the
    /// peer: it never will be. An answer to it (by id) still goes to the asker's inbox.
    Withdrawn,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Delivered => "delivered",
            Status::Answered => "answered",
            Status::Withdrawn => "withdrawn",
        }
    }
}

/// Which peers `list` shows, relative to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum Scope {
    /// Every session of this user on this machine.
    Machine,
    /// Sessions in the caller's git repository.
    Repo,
    /// Sessions in the caller's working directory.
    Directory,
}

/// Which pending messages a consume takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum Class {
    /// Everything pending.
    All,
    /// Tasks, questions and answers; notes stay queued.
    Urgent,
}

/// A session as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct SessionInfo {
    /// Daemon-internal key; stable across `/clear` and `--resume`.
    pub key: u64,
    /// Current Claude Code session id.
    pub session_id: String,
    pub name: String,
    pub pid: u32,
    pub cwd: String,
    pub project_root: Option<String>,
    pub git_root: Option<String>,
    pub transcript_path: Option<String>,
    pub summary: String,
    pub idle: bool,
    pub live: bool,
    pub registered_ms: i64,
    pub last_active_ms: i64,
    /// Messages waiting for this session.
    pub pending: u32,
}

/// One side of a message: a session's name (and id), or the human user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Party {
    /// Session name, or `user` for a command run outside any session.
    pub name: String,
    /// The session's id at the time, `None` for the user.
    pub session_id: Option<String>,
}

/// A message with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Message {
    pub id: u64,
    pub kind: Kind,
    pub from: Party,
    pub to: Party,
    pub body: String,
    /// For an answer: the question it answers.
    pub in_reply_to: Option<u64>,
    pub status: Status,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
    pub answered_ms: Option<i64>,
}

/// A request together with the response that answers it: the pairing the daemon implements
/// and the client expects, written once, in the `requests!` list of this module.
pub trait Call: Into<Request> {
    /// What a successful answer carries (`()` for [`Response::Done`]).
    type Reply;
    /// The request's name, for error messages (`"WhoAmI"`).
    const NAME: &'static str;
    /// The expected answer; any other response is an error naming it ([`Response::name`]).
    fn reply(response: Response) -> Result<Self::Reply, &'static str>;
}

/// The request list: each request's struct (its variant of [`Request`], in wire order) and the
/// [`Response`] variant that answers it, with that variant's payload type (none for a unit
/// variant). Generates [`Request`], `From<X> for Request`, [`Request::name`] and the [`Call`]
/// impls. Adding a request: append a line here (and a struct below), handle it in the daemon.
macro_rules! requests {
    ($($(#[$m:meta])* $name:ident => $resp:ident $(($reply:ty))?),* $(,)?) => {
        /// A request from a client. Append-only: never reorder or remove a variant.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(test, derive(Arbitrary))]
        pub enum Request { $($(#[$m])* $name($name)),* }

        impl Request {
            /// The variant's name, e.g. `"WhoAmI"`.
            pub fn name(&self) -> &'static str {
                match self { $(Request::$name(_) => stringify!($name)),* }
            }
        }

        $(
            impl From<$name> for Request {
                fn from(r: $name) -> Self {
                    Request::$name(r)
                }
            }

            impl Call for $name {
                type Reply = requests!(@reply_type $($reply)?);
                const NAME: &'static str = stringify!($name);
                fn reply(response: Response) -> Result<Self::Reply, &'static str> {
                    requests!(@reply_match response, $resp $($reply)?)
                }
            }
        )*
    };
    (@reply_type) => { () };
    (@reply_type $reply:ty) => { $reply };
    (@reply_match $r:ident, $resp:ident) => {
        match $r {
            Response::$resp => Ok(()),
            other => Err(other.name()),
        }
    };
    (@reply_match $r:ident, $resp:ident $reply:ty) => {
        match $r {
            Response::$resp(reply) => Ok(reply),
            other => Err(other.name()),
        }
    };
}

requests! {
    /// Liveness and latency check.
    Ping => Pong(Pong),
    /// Register (or re-register) a Claude Code session; sent by the SessionStart hook.
    Register => Registered(SessionInfo),
    /// Remove a registration, only if its current session id still matches.
    Deregister => Deregistered(Deregistered),
    /// Mark the caller's session busy or idle.
    SetIdle => Done,
    /// Who is the caller?
    WhoAmI => Me(Me),
    /// Sessions, live or all.
    List => Peers(Peers),
    /// Queue a task or note.
    SendMessage => Sent(Sent),
    /// Queue a question and wait for its answer (or time-out, or the peer's death). A wait that
    /// times out, or a client that closes the connection while it waits, withdraws a question
    /// the peer has not been shown yet ([`Status::Withdrawn`]); a zero wait only queues it.
    Ask => Asked(AskOutcome),
    /// Wait again for the answer to an earlier question (after a reconnect). Ends like [`Ask`]'s
    /// wait; a withdrawn question awaited again goes back to the queue.
    AwaitAnswer => Asked(AskOutcome),
    /// Answer a question.
    Reply => Replied(Replied),
    /// Take (or peek at) the caller's pending messages.
    Consume => Inbox(Inbox),
    /// One message and its status.
    MessageStatus => Message(Message),
    /// Set the caller's session summary (shown by `list`).
    SetSummary => Done,
    /// A hook's poll: who the caller is and, only when it is a session whose current id is
    /// the caller's, its pending messages of a class, taken. Never acts as the user.
    Poll => Polled(Polled),
    /// `mesh run`: watch the session of a supervised process. The daemon answers with a
    /// [`Supervision`] at once and pushes another whenever it changes, until the client closes
    /// the connection (which then carries nothing else).
    Supervise => Supervision(Supervision),
    /// [`Poll`], bounded by the time its reader waits: see [`PollBy`].
    PollBy => Polled(Polled),
    /// [`Consume`], bounded by the time its reader waits: see [`ConsumeBy`].
    ConsumeBy => Inbox(Inbox),
    /// [`Register`] with the session's name worked out by the client: see [`RegisterNamed`].
    RegisterNamed => Registered(SessionInfo),
    /// 5: the sessions of this machine and, with `mesh`, of every machine in the mesh.
    ListScoped => MeshPeers(MeshPeers),
    /// 5: the state of the mesh across machines (`mesh health`, `mesh keys`).
    FederationStatus => Federation(FederationReport),
    /// 5: accept a host's new key (`mesh keys trust <host> <fingerprint>`).
    TrustKey => Trusted(HostKey),
    /// 6: a hand-out that never reached its reader (a hook that could not write its output)
    /// goes back to the queue: see [`GiveBack`].
    GiveBack => GivenBack(GivenBack),
}

/// The response list, in wire order; generates [`Response`] and [`Response::name`].
macro_rules! responses {
    ($($(#[$m:meta])* $name:ident $(($payload:ty))?),* $(,)?) => {
        /// A response from the daemon. Append-only, like [`Request`].
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(test, derive(Arbitrary))]
        pub enum Response { $($(#[$m])* $name $(($payload))?),* }

        impl Response {
            /// The variant's name, e.g. `"Polled"`, for error messages.
            pub fn name(&self) -> &'static str {
                match self { $(Response::$name { .. } => stringify!($name)),* }
            }
        }
    };
}

responses! {
    /// The request failed; the connection stays usable.
    Error(WireError),
    Pong(Pong),
    Registered(SessionInfo),
    Deregistered(Deregistered),
    /// A request that has nothing to report succeeded.
    Done,
    Me(Me),
    Peers(Peers),
    Sent(Sent),
    Asked(AskOutcome),
    Replied(Replied),
    Inbox(Inbox),
    Message(Message),
    Polled(Polled),
    Supervision(Supervision),
    MeshPeers(MeshPeers),
    Federation(FederationReport),
    Trusted(HostKey),
    GivenBack(GivenBack),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Ping {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Pong {
    pub pid: u32,
    pub uptime_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Register {
    pub session_id: String,
    /// The Claude Code process; `None`: the daemon takes the nearest ancestor of the connecting
    /// process that is not a shell or wrapper.
    pub pid: Option<u32>,
    pub cwd: String,
    /// `CLAUDE_PROJECT_DIR`.
    pub project_dir: Option<String>,
    pub transcript_path: Option<String>,
}

/// A [`Register`] whose session the client has named itself, by the same rules the daemon
/// applies to a plain [`Register`] (the hook runs in the session's own process, next to its
/// files): the daemon then reads no file of the session's folder, so no folder can stall it,
/// and no thread hand-off is paid on the hook's path. The daemon still cleans the name and
/// bounds every field; a client can name itself anything it could name itself by its cwd (the
/// trust boundary is the user, see README "Trust boundary").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct RegisterNamed {
    pub register: Register,
    pub name: String,
    pub project_root: Option<String>,
    pub git_root: Option<String>,
    /// The summary shown until the session sets one.
    pub default_summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Deregister {
    pub session_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Deregistered {
    /// False when the session id no longer matched (a late SessionEnd) or was unknown.
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct SetIdle {
    pub caller: Caller,
    pub idle: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct WhoAmI {
    pub caller: Caller,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Me {
    /// `None`: the caller is not inside a session and acts as the user.
    pub session: Option<SessionInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct List {
    pub caller: Caller,
    pub scope: Scope,
    /// Include sessions that are no longer running.
    pub include_offline: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Peers {
    pub sessions: Vec<SessionInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct SendMessage {
    pub caller: Caller,
    /// A name (case-insensitive), an id prefix of at least 4 characters, or `*`.
    pub to: String,
    /// `Task` or `Note`.
    pub kind: Kind,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Sent {
    /// One per recipient (several for `*`). Since protocol 4 each `body` is empty: the sender
    /// has the text, and repeating it per recipient could make the answer to a committed
    /// broadcast larger than a frame.
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Ask {
    pub caller: Caller,
    pub to: String,
    pub question: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct AwaitAnswer {
    pub caller: Caller,
    pub question_id: u64,
    pub timeout_ms: u64,
}

/// How an ask ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum AskResult {
    Answered(Message),
    /// No answer in time; [`AskOutcome::question`]'s status says whether the question was
    /// withdrawn (the peer had not seen it) or stays (delivered: an answer goes to the inbox).
    TimedOut,
    /// The asked session ended while the question waited.
    PeerGone,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct AskOutcome {
    pub question: Message,
    pub result: AskResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Reply {
    pub caller: Caller,
    pub message_id: u64,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Replied {
    pub answer: Message,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Consume {
    pub caller: Caller,
    pub class: Class,
    /// Look without marking anything delivered.
    pub peek: bool,
    /// Stop adding messages once their bodies exceed this many bytes (at least one message is
    /// always returned when any is pending). 0 means the daemon's default, which is also the
    /// most it grants (1 MiB): an answer always fits in a frame.
    pub max_bytes: u32,
    /// A client-chosen id for this hand-out, making it safe to retry: when the answer is lost
    /// (the daemon died after committing the delivery, before its answer arrived), sending the
    /// same request again with the same `handout` returns the same messages instead of taking
    /// new ones. Use a fresh random non-zero value per hand-out; 0 means no retry safety.
    /// Kept for an hour.
    pub handout: u64,
}

/// One round trip for the hook on every tool call: [`WhoAmI`] and [`Consume`] together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Poll {
    pub caller: Caller,
    pub class: Class,
    /// As in [`Consume::max_bytes`].
    pub max_bytes: u32,
    /// As in [`Consume::handout`].
    pub handout: u64,
}

/// A [`Poll`] whose reader waits only until `deadline_ms` (ms since the Unix epoch, this
/// machine's clock). A hand-out counts as delivered only when a reader got it, so the daemon
/// refuses work past the deadline (`DeadlineExceeded`, nothing taken), and puts back what it took
/// when the deadline passed before its answer could leave (a stall, a locked database, a slow
/// disk) or when the answer could not be written. The answer is [`Polled`], as for [`Poll`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct PollBy {
    pub poll: Poll,
    pub deadline_ms: u64,
}

/// A [`Consume`] bounded like [`PollBy`]; the answer is [`Inbox`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct ConsumeBy {
    pub consume: Consume,
    pub deadline_ms: u64,
}

/// The answer to [`Poll`]. `session`: the caller's session (`None`: not inside one). `inbox` is
/// empty unless that session's current id is the caller's `session_id` (when given): a caller
/// the daemon knows under an older id (a `/clear` whose SessionStart hook failed) must
/// re-register before it takes anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Polled {
    pub session: Option<SessionInfo>,
    pub inbox: Inbox,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Inbox {
    pub messages: Vec<Message>,
    /// Messages of the requested class still pending after this batch.
    pub remaining: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct MessageStatus {
    pub message_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct SetSummary {
    pub caller: Caller,
    /// At most [`crate::MAX_SUMMARY_LEN`] bytes; empty clears it.
    pub summary: String,
}

/// See [`Request::Supervise`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Supervise {
    /// The process `mesh run` started (Claude Code). Its session is the live session whose
    /// process is this one or a descendant of it. It must belong to the daemon's user.
    pub pid: u32,
}

/// The state of a supervised session, pushed to its supervisor ([`Request::Supervise`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Supervision {
    /// The supervised session, once its SessionStart hook registered it. `idle` is what its
    /// hooks last said (the Stop hook sets it; a prompt or a tool call clears it).
    pub session: Option<SessionInfo>,
    /// Tasks and questions waiting for it, oldest first (at most [`Supervision::MAX_WAITING`];
    /// notes and answers do not wake a session).
    pub waiting: Vec<Waiting>,
}

impl Supervision {
    pub const MAX_WAITING: usize = 16;
}

/// A task or question waiting for a supervised session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Waiting {
    pub id: u64,
    pub kind: Kind,
    /// The sender's session name, or `user`.
    pub from: String,
}

/// Which machines a [`ListScoped`] covers (`mesh list --scope machine|mesh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum Reach {
    /// This machine only (what [`List`] shows).
    Machine,
    /// This machine and every other machine of the team that is heard from.
    Mesh,
}

/// [`List`], with the machines it covers. Answered with [`MeshPeers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct ListScoped {
    pub list: List,
    pub reach: Reach,
}

/// Sessions here and on other machines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct MeshPeers {
    /// This machine's host name in the mesh; `None` when it has not joined one.
    pub host: Option<String>,
    /// This machine's sessions, as [`Peers`] lists them.
    pub local: Vec<SessionInfo>,
    /// Other machines' sessions, as their daemons last announced them (only with
    /// [`Reach::Mesh`]).
    pub remote: Vec<RemoteSession>,
}

/// A session on another machine, as its daemon announced it (presence). Every text field came
/// from another machine: untrusted, shown only sanitized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct RemoteSession {
    pub host: String,
    pub session_id: String,
    pub name: String,
    pub summary: String,
    pub idle: bool,
    pub pending: u32,
    /// Its machine was heard from within the presence timeout, listing it.
    pub live: bool,
    /// When its machine last listed it, ms since the epoch (this machine's clock).
    pub seen_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct FederationStatus {}

/// The mesh across machines as this daemon sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct FederationReport {
    /// `federation.toml` exists and was read: the daemon takes part in a mesh.
    pub configured: bool,
    /// Why the configuration or the device key could not be used, if so.
    pub config_error: Option<String>,
    pub url: String,
    pub host: String,
    pub team: String,
    /// This device's id (names its subjects) and key fingerprint.
    pub device_id: String,
    pub fingerprint: String,
    /// Connected to the NATS server now.
    pub connected: bool,
    /// The server's version, from its INFO on connect.
    pub server_version: Option<String>,
    /// JetStream answered on this account.
    pub jetstream: bool,
    /// Server features this daemon detected and uses or could use (e.g. `per-message-ttl`).
    pub features: Vec<String>,
    /// The streams the mesh needs, and whether each is present.
    pub streams: Vec<StreamState>,
    /// Envelopes committed here and not yet acknowledged by the server.
    pub outbox_depth: u64,
    /// When the oldest of them was committed, ms since the epoch.
    pub outbox_oldest_ms: Option<i64>,
    /// Every known host and its pinned key.
    pub hosts: Vec<HostKey>,
    /// The last error talking to NATS, if the last attempt failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct StreamState {
    pub name: String,
    pub present: bool,
    pub messages: u64,
}

/// A host of the mesh and its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct HostKey {
    pub host: String,
    pub device_id: String,
    /// The fingerprint of the pinned (trusted) key.
    pub fingerprint: String,
    /// A different key that announced itself under this host name and is refused until the
    /// user trusts it.
    pub offered_fingerprint: Option<String>,
    pub first_seen_ms: i64,
    /// When its presence was last heard, if ever.
    pub last_seen_ms: Option<i64>,
    /// Its sessions listed in its last presence that is still current.
    pub live_sessions: u32,
}

/// Trust `fingerprint` as `host`'s key from now on (it must be the key that host offers now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct TrustKey {
    pub host: String,
    pub fingerprint: String,
}

/// Give back the hand-out made under `handout` (the token of a [`Consume`] or [`Poll`]): a
/// reader that took mail and then could not pass it on (a hook whose output could not be
/// written: the pipe to Claude Code closed, the disk full) puts it back in the queue, as if it
/// had never been taken. The token is the capability (random, known only to the reader that
/// made it): an unknown or forgotten token gives back nothing. Only messages still delivered
/// and not answered go back; the token is forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct GiveBack {
    pub handout: u64,
}

/// The answer to [`GiveBack`]: how many messages went back to the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct GivenBack {
    pub messages: u32,
}

#[cfg(test)]
mod call_tests {
    use super::*;

    fn caller() -> Caller {
        Caller::default()
    }

    /// postcard encodes an enum by its variant index (a varint, one byte here): the generated
    /// enums must keep the order of the wire.
    fn tag<T: Serialize>(v: &T) -> u8 {
        postcard::to_allocvec(v).unwrap()[0]
    }

    #[test]
    fn variants_keep_their_wire_index() {
        let requests: [(Request, &str); 22] = [
            (Ping {}.into(), "Ping"),
            (
                Register {
                    session_id: "s".into(),
                    pid: None,
                    cwd: "/".into(),
                    project_dir: None,
                    transcript_path: None,
                }
                .into(),
                "Register",
            ),
            (
                Deregister {
                    session_id: "s".into(),
                }
                .into(),
                "Deregister",
            ),
            (
                SetIdle {
                    caller: caller(),
                    idle: true,
                }
                .into(),
                "SetIdle",
            ),
            (WhoAmI { caller: caller() }.into(), "WhoAmI"),
            (
                List {
                    caller: caller(),
                    scope: Scope::Machine,
                    include_offline: false,
                }
                .into(),
                "List",
            ),
            (
                SendMessage {
                    caller: caller(),
                    to: "x".into(),
                    kind: Kind::Note,
                    body: "b".into(),
                }
                .into(),
                "SendMessage",
            ),
            (
                Ask {
                    caller: caller(),
                    to: "x".into(),
                    question: "q".into(),
                    timeout_ms: 0,
                }
                .into(),
                "Ask",
            ),
            (
                AwaitAnswer {
                    caller: caller(),
                    question_id: 1,
                    timeout_ms: 0,
                }
                .into(),
                "AwaitAnswer",
            ),
            (
                Reply {
                    caller: caller(),
                    message_id: 1,
                    body: "b".into(),
                }
                .into(),
                "Reply",
            ),
            (consume().into(), "Consume"),
            (MessageStatus { message_id: 1 }.into(), "MessageStatus"),
            (
                SetSummary {
                    caller: caller(),
                    summary: String::new(),
                }
                .into(),
                "SetSummary",
            ),
            (poll().into(), "Poll"),
            (Supervise { pid: 1 }.into(), "Supervise"),
            (
                PollBy {
                    poll: poll(),
                    deadline_ms: 1,
                }
                .into(),
                "PollBy",
            ),
            (
                ConsumeBy {
                    consume: consume(),
                    deadline_ms: 1,
                }
                .into(),
                "ConsumeBy",
            ),
            (
                RegisterNamed {
                    register: Register {
                        session_id: "s".into(),
                        pid: None,
                        cwd: "/".into(),
                        project_dir: None,
                        transcript_path: None,
                    },
                    name: "n".into(),
                    project_root: None,
                    git_root: None,
                    default_summary: String::new(),
                }
                .into(),
                "RegisterNamed",
            ),
            (
                ListScoped {
                    list: List {
                        caller: caller(),
                        scope: Scope::Machine,
                        include_offline: false,
                    },
                    reach: Reach::Mesh,
                }
                .into(),
                "ListScoped",
            ),
            (FederationStatus {}.into(), "FederationStatus"),
            (
                TrustKey {
                    host: "h".into(),
                    fingerprint: "f".into(),
                }
                .into(),
                "TrustKey",
            ),
            (GiveBack { handout: 7 }.into(), "GiveBack"),
        ];
        for (index, (req, name)) in requests.iter().enumerate() {
            assert_eq!(usize::from(tag(req)), index, "{name}");
            assert_eq!(req.name(), *name);
        }
        let inbox = Inbox {
            messages: Vec::new(),
            remaining: 0,
        };
        let responses: [(Response, &str); 6] = [
            (
                Response::Error(WireError::new(crate::ErrorCode::Internal, "x")),
                "Error",
            ),
            (Response::Done, "Done"),
            (Response::Inbox(inbox.clone()), "Inbox"),
            (
                Response::Polled(Polled {
                    session: None,
                    inbox,
                }),
                "Polled",
            ),
            (
                Response::Supervision(Supervision {
                    session: None,
                    waiting: Vec::new(),
                }),
                "Supervision",
            ),
            (
                Response::Federation(FederationReport::default()),
                "Federation",
            ),
        ];
        for ((resp, name), index) in responses.iter().zip([0u8, 4, 10, 12, 13, 15]) {
            assert_eq!(tag(resp), index, "{name}");
            assert_eq!(resp.name(), *name);
        }
    }

    fn poll() -> Poll {
        Poll {
            caller: caller(),
            class: Class::Urgent,
            max_bytes: 0,
            handout: 0,
        }
    }

    fn consume() -> Consume {
        Consume {
            caller: caller(),
            class: Class::All,
            peek: false,
            max_bytes: 0,
            handout: 0,
        }
    }

    #[test]
    fn each_request_takes_its_own_answer_and_names_others() {
        assert_eq!(SetIdle::reply(Response::Done), Ok(()));
        assert_eq!(SetSummary::reply(Response::Done), Ok(()));
        let me = Me { session: None };
        assert_eq!(WhoAmI::reply(Response::Me(me.clone())), Ok(me.clone()));
        assert_eq!(SetIdle::reply(Response::Me(me)), Err("Me"));
        assert_eq!(WhoAmI::reply(Response::Done), Err("Done"));
        let polled = Polled {
            session: None,
            inbox: Inbox {
                messages: Vec::new(),
                remaining: 3,
            },
        };
        // The bounded forms are answered like the plain ones.
        assert_eq!(
            Poll::reply(Response::Polled(polled.clone())),
            Ok(polled.clone())
        );
        assert_eq!(
            PollBy::reply(Response::Polled(polled.clone())),
            Ok(polled.clone())
        );
        assert_eq!(ConsumeBy::reply(Response::Polled(polled)), Err("Polled"));
        assert_eq!(<PollBy as Call>::NAME, "PollBy");
        assert_eq!(<RegisterNamed as Call>::NAME, "RegisterNamed");
    }
}
