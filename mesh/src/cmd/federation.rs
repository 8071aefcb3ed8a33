//! The mesh across machines: `mesh join <nats-url>` writes `federation.toml`, creates this
//! device's key when it has none and restarts the daemon; `mesh leave` removes the file (the
//! key stays: joining again keeps this machine's identity) and restarts it; `mesh keys` shows
//! this device's fingerprint (from `device.key`, without the daemon) and every known host's
//! (`FederationStatus`); `mesh keys trust <host> <fingerprint>` accepts a host's new key.
//!
//! What another machine announced (host names, fingerprints) is shown through
//! [`sanitize::terminal_line`]; `--json` stays exact.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context;
use mesh::display::{now_ms, relative_time, shorten_home};
use mesh_daemon::federation::config::{self, DEFAULT_TEAM, FederationConfig, short_hostname};
use mesh_daemon::federation::keys::{DeviceKey, Fingerprint, KeyError};
use mesh_daemon::federation::transport::{CredentialFile, check_credential_file};
use mesh_daemon::paths::StateDir;
use mesh_proto::{FederationReport, FederationStatus, HostKey, TrustKey, sanitize};
use serde::Serialize;

use super::exit::Failure;
use super::stop::restart_daemon;
use super::{JsonFlag, connect, emit, emit_json, render_fields};

#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// The NATS server: nats://HOST:PORT (also tls://, ws://, wss://; several comma-separated)
    pub url: String,
    /// This machine's name in the mesh (default: the one of an earlier join, else the short
    /// host name); sessions here are addressed as name@HOST
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// The team: machines of one team see each other (default: the one of an earlier join,
    /// else `default`)
    #[arg(long, value_name = "NAME")]
    pub team: Option<String>,
    /// NATS credentials file (.creds: a user JWT and its nkey seed)
    #[arg(long, value_name = "FILE", conflicts_with = "nkey")]
    pub creds: Option<PathBuf>,
    /// NATS nkey seed file (a user nkey the server knows)
    #[arg(long, value_name = "FILE")]
    pub nkey: Option<PathBuf>,
    /// The CA certificate(s) that sign the server's TLS certificate (PEM)
    #[arg(long = "tls-ca", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Switch to another team even while mail for the current one still waits in the outbox
    /// (it was sealed for that team's machines and will not reach them from the new team)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, clap::Args)]
pub struct LeaveArgs {
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: Option<KeysAction>,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysAction {
    /// Accept a host's new key, after comparing its fingerprint with `mesh keys` on that host
    #[command(
        after_help = "Examples:\n  mesh keys trust ci 3f2a:9c01:77d0:1b4e:0a5c:e2f1:6d38:90ab:4c17:d2e6:8f05:b931:5a7e:c480:1d6b:e92f\n  mesh keys trust ci 3f2a9c0177d01b4e0a5ce2f16d3890ab4c17d2e68f05b9315a7ec4801d6be92f --json"
    )]
    Trust(TrustArgs),
}

#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// The host, as `mesh keys` names it
    pub host: String,
    /// The fingerprint it offers now (64 hex digits; `:`, `-` and spaces are ignored)
    pub fingerprint: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

impl KeysArgs {
    /// `--json`, given to `keys` or to its subcommand.
    pub fn json(&self) -> bool {
        self.out.json
            || match &self.action {
                Some(KeysAction::Trust(t)) => t.out.json,
                None => false,
            }
    }
}

fn state_dir() -> anyhow::Result<StateDir> {
    StateDir::from_env().context("cannot locate the mesh state directory")
}

fn bad(message: impl Into<String>) -> anyhow::Error {
    Failure::bad_input("invalid_argument", message).into()
}

/// A file given on the command line: a readable regular file whose content the daemon can use
/// (a `.creds` file with its JWT and seed, a user nkey seed, PEM certificates), checked now so
/// that a wrong file fails the join rather than every connection after it; made absolute (the
/// daemon runs from another directory).
fn credential_file(flag: &str, kind: CredentialFile, path: &Path) -> anyhow::Result<PathBuf> {
    let absolute =
        std::path::absolute(path).map_err(|e| bad(format!("{flag} {}: {e}", path.display())))?;
    let meta = std::fs::metadata(&absolute).map_err(|e| {
        bad(format!(
            "{flag} {}: cannot read it: {e}",
            absolute.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(bad(format!(
            "{flag} {}: not a regular file",
            absolute.display()
        )));
    }
    check_credential_file(kind, &absolute).map_err(|e| bad(format!("{flag}: {e}")))?;
    Ok(absolute)
}

/// What a rejoin changes, one `field: old -> new` per difference.
fn changes(old: &FederationConfig, new: &FederationConfig) -> Vec<String> {
    let path = |p: &Option<PathBuf>| {
        p.as_deref()
            .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string())
    };
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name}: {a} -> {b}"));
        }
    };
    field("url", old.redacted_url(), new.redacted_url());
    field("host", old.host.clone(), new.host.clone());
    field("team", old.team.clone(), new.team.clone());
    field("creds", path(&old.creds), path(&new.creds));
    field("nkey", path(&old.nkey), path(&new.nkey));
    field("tls-ca", path(&old.tls_ca), path(&new.tls_ca));
    out
}

#[derive(Serialize)]
struct JoinJson {
    host: String,
    team: String,
    url: String,
    device_id: String,
    fingerprint: String,
    /// A daemon was running and was restarted (false: none ran, one was started).
    restarted: bool,
    /// The daemon running now.
    daemon_pid: u32,
    /// `device.key` was created by this join (false: the existing key was kept).
    key_created: bool,
    /// Joined before: what changed (`field: old -> new`); empty on a first join or no change.
    changed: Vec<String>,
    /// Joined before (`federation.toml` existed).
    rejoined: bool,
}

pub fn join(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let state = state_dir()?;
    let root = state.root();
    // A file that cannot be read any more is replaced (that is what joining again is for).
    let old = FederationConfig::load(root).ok().flatten();
    // A rejoin keeps the host and team it had unless told otherwise: other machines know this
    // one by its host name.
    let host = args
        .host
        .clone()
        .or_else(|| old.as_ref().map(|o| o.host.clone()))
        .unwrap_or_else(short_hostname);
    let team = args
        .team
        .clone()
        .or_else(|| old.as_ref().map(|o| o.team.clone()))
        .unwrap_or_else(|| DEFAULT_TEAM.to_owned());
    let new = FederationConfig {
        url: args.url.trim().to_owned(),
        host,
        team,
        creds: args
            .creds
            .as_deref()
            .map(|p| credential_file("--creds", CredentialFile::Creds, p))
            .transpose()?,
        nkey: args
            .nkey
            .as_deref()
            .map(|p| credential_file("--nkey", CredentialFile::Nkey, p))
            .transpose()?,
        tls_ca: args
            .tls_ca
            .as_deref()
            .map(|p| credential_file("--tls-ca", CredentialFile::TlsCa, p))
            .transpose()?,
        replicas: None,
    };
    new.validate().map_err(|e| bad(e.to_string()))?;
    // Mail in the outbox is for the current team's machines: switching teams would strand it
    // (the new team's streams never reach them), so it must go first, or be given up knowingly.
    if let Some(o) = &old
        && o.team != new.team
        && !args.force
        && let Some(unsent) = unsent_mail()
        && unsent > 0
    {
        return Err(Failure::bad_input(
            "outbox_not_empty",
            format!(
                "{unsent} message(s) for team `{}` still wait in the outbox to be handed to the \
                 NATS server; joining team `{}` now would strand them. Let them go first (`mesh \
                 health` shows federation.outbox; the NATS server must be reachable), or join \
                 with --force to switch anyway",
                o.team, new.team
            ),
        )
        .into());
    }
    state.ensure()?;
    let new = FederationConfig {
        replicas: old.as_ref().and_then(|o| o.replicas),
        ..new
    };
    let changed = old.as_ref().map(|o| changes(o, &new)).unwrap_or_default();
    // The key first: one that exists but cannot be used stops the join before anything is
    // written. It is never replaced: it is this machine's identity, which other machines pinned.
    let key_path = FederationConfig::key_path(root);
    let (key, key_created) =
        DeviceKey::load_or_create(&key_path).context("this device's key cannot be used")?;
    new.save(root)
        .with_context(|| format!("cannot write {}", root.join(config::FILE).display()))?;
    let done = restart_daemon(&state).with_context(|| {
        format!(
            "joined ({} is written), but the daemon did not restart: run `mesh restart`",
            config::FILE
        )
    })?;
    let public = key.public();
    let doc = JoinJson {
        host: new.host.clone(),
        team: new.team.clone(),
        url: new.redacted_url(),
        device_id: public.device_id().to_string(),
        fingerprint: public.fingerprint().to_string(),
        restarted: done.stopped_pid.is_some(),
        daemon_pid: done.pid,
        key_created,
        changed,
        rejoined: old.is_some(),
    };
    if args.out.json {
        emit_json(&doc)?;
        return Ok(ExitCode::SUCCESS);
    }
    let home = mesh::display::home_dir();
    let shown_key = shorten_home(&key_path.to_string_lossy(), home.as_deref());
    let mut text = format!(
        "joined the mesh at {} as host {}, team {}\n",
        doc.url, doc.host, doc.team
    );
    if doc.rejoined && doc.changed.is_empty() {
        text.push_str("(joined before with the same settings)\n");
    }
    for c in &doc.changed {
        text.push_str(&format!("changed {c}\n"));
    }
    text.push_str(&render_fields(&[
        ("fingerprint", doc.fingerprint.clone()),
        ("device id", doc.device_id.clone()),
    ]));
    text.push_str(&if key_created {
        format!("created this device's key: {shown_key}\n")
    } else {
        format!("kept this device's key ({shown_key}): this machine keeps its identity\n")
    });
    text.push_str(&format!(
        "mesh daemon {} {} (pid {})\n",
        done.version,
        if doc.restarted {
            "restarted"
        } else {
            "started"
        },
        done.pid
    ));
    text.push_str(&format!(
        "next: `mesh join {} --team {}` on your other machines, then compare this fingerprint with `mesh keys` on each; `mesh health` shows whether the daemon reached the server\n",
        doc.url, doc.team
    ));
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct LeaveJson {
    /// `federation.toml` was there and is removed.
    left: bool,
    /// The daemon was restarted (only after leaving).
    restarted: bool,
    /// The device key kept for a later join, if there is one.
    key: Option<String>,
    /// Messages that were still waiting in the outbox: they stay queued, and go when this
    /// machine joins the same team again.
    unsent: u64,
}

/// How many messages wait in the running daemon's outbox (`None`: no daemon to ask, or it does
/// not say).
fn unsent_mail() -> Option<u64> {
    let mut conn = connect().ok()?;
    conn.call_typed(FederationStatus {})
        .ok()
        .filter(|r| r.configured)
        .map(|r| r.outbox_depth)
}

pub fn leave(args: LeaveArgs) -> anyhow::Result<ExitCode> {
    let state = state_dir()?;
    let root = state.root();
    // Said, not refused: they stay queued and go when this machine joins the same team again.
    let unsent = if FederationConfig::load(root).ok().flatten().is_some() {
        unsent_mail().unwrap_or(0)
    } else {
        0
    };
    let left = FederationConfig::remove(root)
        .with_context(|| format!("cannot remove {}", root.join(config::FILE).display()))?;
    let key_path = FederationConfig::key_path(root);
    let key = key_path
        .symlink_metadata()
        .is_ok()
        .then(|| key_path.to_string_lossy().into_owned());
    let done = if left {
        Some(restart_daemon(&state).context(
            "left the mesh, but the daemon did not restart: run `mesh restart` (until then it stays connected)",
        )?)
    } else {
        None
    };
    if args.out.json {
        emit_json(&LeaveJson {
            left,
            restarted: done.is_some(),
            key,
            unsent,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    match &done {
        Some(d) => text.push_str(&format!(
            "left the mesh: this machine is on its own again (mesh daemon {} restarted, pid {})\n",
            d.version, d.pid
        )),
        None => text.push_str("not part of a mesh (no federation.toml): nothing to leave\n"),
    }
    if unsent > 0 {
        text.push_str(&format!(
            "{unsent} message(s) for other machines were still waiting to be sent: they stay \
             queued, and go when this machine joins the same team again\n"
        ));
    }
    if let Some(k) = &key {
        let shown = shorten_home(k, mesh::display::home_dir().as_deref());
        text.push_str(&format!(
            "kept this device's key ({shown}): joining again keeps this machine's identity; \
             to get a new identity, delete it first (`rm {shown}`) and then join\n"
        ));
    }
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub fn keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(KeysAction::Trust(t)) => {
            let json = t.out.json || args.out.json;
            trust(t, json)
        }
        None => list_keys(args.out.json),
    }
}

/// A known host, for `mesh keys --json`.
#[derive(Serialize)]
struct HostJson<'a> {
    host: &'a str,
    device_id: &'a str,
    fingerprint: &'a str,
    /// Its pinned key is in use (false: it offers another key, refused until trusted).
    trusted: bool,
    offered_fingerprint: Option<&'a str>,
    first_seen_ms: i64,
    last_seen_ms: Option<i64>,
    live_sessions: u32,
}

impl<'a> From<&'a HostKey> for HostJson<'a> {
    fn from(h: &'a HostKey) -> Self {
        Self {
            host: &h.host,
            device_id: &h.device_id,
            fingerprint: &h.fingerprint,
            trusted: h.offered_fingerprint.is_none(),
            offered_fingerprint: h.offered_fingerprint.as_deref(),
            first_seen_ms: h.first_seen_ms,
            last_seen_ms: h.last_seen_ms,
            live_sessions: h.live_sessions,
        }
    }
}

#[derive(Serialize)]
struct KeysJson<'a> {
    /// `federation.toml` exists.
    joined: bool,
    host: Option<&'a str>,
    team: Option<&'a str>,
    /// The team's opaque id: what the NATS server sees (subjects `mesh.<team_id>.*`, streams
    /// `MESH_<TEAM_ID>_*`), for its operator's permissions (packaging/nats-server.conf).
    team_id: Option<String>,
    /// This device's, from `device.key` (`null` when it has none).
    device_id: Option<String>,
    fingerprint: Option<String>,
    /// Why `device.key` could not be read, if it exists and cannot.
    key_error: Option<String>,
    /// Every known host (`null` when the daemon could not be asked, or outside a mesh).
    hosts: Option<Vec<HostJson<'a>>>,
    /// Why the daemon could not be asked, if so.
    daemon_error: Option<String>,
    /// The daemon takes part in the mesh (`false`: it started before `mesh join`; `null`: not
    /// asked).
    daemon_joined: Option<bool>,
}

fn list_keys(json: bool) -> anyhow::Result<ExitCode> {
    let state = state_dir()?;
    let root = state.root();
    let config = FederationConfig::load(root).with_context(|| {
        format!(
            "cannot read {}: `mesh join <nats-url>` rewrites it",
            root.join(config::FILE).display()
        )
    })?;
    let key_path = FederationConfig::key_path(root);
    let (key, key_error) = match DeviceKey::load(&key_path) {
        Ok(k) => (Some(k), None),
        Err(KeyError::Missing { .. }) => (None, None),
        Err(e) => (None, Some(e.to_string())),
    };
    // The daemon knows the other hosts only inside a mesh.
    let (report, daemon_error) = if config.is_some() {
        match connect().and_then(|mut c| {
            c.call_typed(FederationStatus {})
                .context("cannot ask the daemon about the mesh")
        }) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    } else {
        (None, None)
    };
    let public = key.as_ref().map(DeviceKey::public);
    let doc = KeysJson {
        joined: config.is_some(),
        host: config.as_ref().map(|c| c.host.as_str()),
        team: config.as_ref().map(|c| c.team.as_str()),
        team_id: config.as_ref().map(FederationConfig::team_id),
        device_id: public.map(|p| p.device_id().to_string()),
        fingerprint: public.map(|p| p.fingerprint().to_string()),
        key_error,
        hosts: report
            .as_ref()
            .map(|r| r.hosts.iter().map(HostJson::from).collect()),
        daemon_error,
        daemon_joined: report.as_ref().map(|r| r.configured),
    };
    if json {
        emit_json(&doc)?;
        return Ok(ExitCode::SUCCESS);
    }
    emit(&render_keys(&doc, report.as_ref(), &key_path))?;
    if let Some(e) = &doc.daemon_error {
        super::stdout::warn(&format!(
            "cannot list the other hosts: {e} (`mesh health` says what is wrong)"
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn render_keys(doc: &KeysJson<'_>, report: Option<&FederationReport>, key_path: &Path) -> String {
    let line = |s: &str| sanitize::terminal_line(s);
    let mut out = String::new();
    let mut fields = Vec::new();
    match (doc.host, doc.team) {
        (Some(host), Some(team)) => fields.push(("this host", format!("{host} (team {team})"))),
        _ => fields.push((
            "this host",
            "not part of a mesh (`mesh join <nats-url>` joins one)".to_owned(),
        )),
    }
    match (&doc.fingerprint, &doc.key_error) {
        (Some(f), _) => {
            fields.push(("fingerprint", f.clone()));
            fields.push(("device id", doc.device_id.clone().unwrap_or_default()));
        }
        (None, Some(e)) => fields.push(("fingerprint", format!("unknown: {e}"))),
        (None, None) => fields.push((
            "fingerprint",
            format!(
                "none yet: `mesh join` creates this device's key ({})",
                key_path.display()
            ),
        )),
    }
    out.push_str(&render_fields(&fields));
    let Some(r) = report else {
        return out;
    };
    if !r.configured {
        out.push_str(
            "the daemon runs without the mesh (it started before `mesh join`): `mesh restart`\n",
        );
        return out;
    }
    if r.hosts.is_empty() {
        out.push_str("no other host known yet (they appear once they announce their key)\n");
        return out;
    }
    let now = now_ms();
    out.push_str("\nknown hosts:\n");
    for h in &r.hosts {
        let seen = h.last_seen_ms.map_or_else(
            || "never heard".to_owned(),
            |t| format!("seen {}", relative_time(now, t)),
        );
        match &h.offered_fingerprint {
            None => {
                out.push_str(&format!(
                    "{}  trusted, {seen}, {} live sessions\n",
                    line(&h.host),
                    h.live_sessions
                ));
                out.push_str(&format!("  fingerprint  {}\n", line(&h.fingerprint)));
            }
            Some(offered) => {
                out.push_str(&format!(
                    "{}  REFUSED: it offers a new key; mail sealed with that key is refused, and nothing is sealed for it, until you accept it (the trusted key still works)\n",
                    line(&h.host)
                ));
                out.push_str(&format!("  trusted      {}\n", line(&h.fingerprint)));
                out.push_str(&format!("  offered      {}\n", line(offered)));
                out.push_str(&format!(
                    "  accept it (after comparing with `mesh keys` on {0}): mesh keys trust {0} {1}\n",
                    line(&h.host),
                    line(offered)
                ));
            }
        }
        out.push_str(&format!("  device id    {}\n", line(&h.device_id)));
    }
    out
}

#[derive(Serialize)]
struct TrustJson {
    host: String,
    /// The fingerprint trusted now.
    fingerprint: String,
    /// The one trusted before, if the host was known.
    previous_fingerprint: Option<String>,
    /// The trusted key changed.
    changed: bool,
}

fn trust(args: TrustArgs, json: bool) -> anyhow::Result<ExitCode> {
    let fingerprint = Fingerprint::from_str(args.fingerprint.trim()).map_err(|e| {
        bad(format!(
            "{:?} is not a key fingerprint ({e}): copy it from `mesh keys` on that host",
            args.fingerprint
        ))
    })?;
    let mut conn = connect()?;
    let before = conn
        .call_typed(FederationStatus {})
        .context("cannot ask the daemon about the mesh")?;
    let previous = before
        .hosts
        .iter()
        .find(|h| h.host == args.host)
        .map(|h| h.fingerprint.clone());
    let after = conn
        .call_typed(TrustKey {
            host: args.host.clone(),
            fingerprint: fingerprint.to_string(),
        })
        .with_context(|| format!("cannot trust that key for {}", args.host))?;
    let doc = TrustJson {
        changed: previous.as_deref() != Some(after.fingerprint.as_str()),
        host: after.host,
        fingerprint: after.fingerprint,
        previous_fingerprint: previous,
    };
    if json {
        emit_json(&doc)?;
        return Ok(ExitCode::SUCCESS);
    }
    let host = sanitize::terminal_line(&doc.host);
    let text = match (&doc.previous_fingerprint, doc.changed) {
        (Some(_), false) => format!("{host}: {} was trusted already\n", doc.fingerprint),
        (Some(old), true) => format!(
            "{host}: now trusts {} (was {}); its mail is accepted again\n",
            doc.fingerprint,
            sanitize::terminal_line(old)
        ),
        (None, _) => format!("{host}: now trusts {}\n", doc.fingerprint),
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, team: &str) -> FederationConfig {
        FederationConfig {
            url: url.into(),
            host: "laptop".into(),
            team: team.into(),
            creds: None,
            nkey: None,
            tls_ca: None,
            replicas: None,
        }
    }

    fn host(name: &str, offered: Option<&str>) -> HostKey {
        HostKey {
            host: name.into(),
            device_id: "11".repeat(16),
            fingerprint: "1111:2222".into(),
            offered_fingerprint: offered.map(str::to_owned),
            first_seen_ms: 0,
            last_seen_ms: Some(now_ms()),
            live_sessions: 2,
        }
    }

    #[test]
    fn keys_show_trusted_and_refused_hosts_safely() {
        let report = FederationReport {
            configured: true,
            hosts: vec![
                host("ci", None),
                host("dev", Some("9999:8888")),
                host("evil\x1b]0;owned\x07", None),
            ],
            ..FederationReport::default()
        };
        let doc = KeysJson {
            joined: true,
            host: Some("laptop"),
            team: Some("default"),
            team_id: Some("e55298a942cd1f78".into()),
            device_id: Some("ab".repeat(16)),
            fingerprint: Some("abcd:ef01".into()),
            key_error: None,
            hosts: None,
            daemon_error: None,
            daemon_joined: Some(true),
        };
        let text = render_keys(&doc, Some(&report), Path::new("/k"));
        assert!(
            text.contains("this host:    laptop (team default)"),
            "{text}"
        );
        assert!(text.contains("fingerprint:  abcd:ef01"), "{text}");
        assert!(
            text.contains("ci  trusted, seen just now, 2 live sessions"),
            "{text}"
        );
        assert!(text.contains("dev  REFUSED"), "{text}");
        assert!(text.contains("trusted      1111:2222"), "{text}");
        assert!(text.contains("offered      9999:8888"), "{text}");
        assert!(text.contains("mesh keys trust dev 9999:8888"), "{text}");
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
        // The daemon outside the mesh: said, with the fix.
        let report = FederationReport::default();
        let text = render_keys(&doc, Some(&report), Path::new("/k"));
        assert!(text.contains("`mesh restart`"), "{text}");
    }

    #[test]
    fn a_rejoin_says_what_changed() {
        let a = config("nats://a:4222", "default");
        assert!(changes(&a, &a).is_empty());
        let mut b = config("nats://b:4222", "default");
        b.creds = Some("/k/x.creds".into());
        assert_eq!(
            changes(&a, &b),
            [
                "url: nats://a:4222 -> nats://b:4222",
                "creds: (none) -> /k/x.creds"
            ]
        );
    }
}
