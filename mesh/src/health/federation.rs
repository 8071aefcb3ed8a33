//! `federation.*`: the mesh across machines. Outside a mesh (no `federation.toml`) a single
//! `federation` line says so. Joined: `federation.config` (the file and the device key, read
//! here with the daemon's own bounded readers), then what the daemon reports
//! (`FederationStatus`): `federation.server`, `federation.jetstream`, `federation.features`,
//! `federation.streams` (the last three only while connected), `federation.keys` and
//! `federation.outbox`. Everything the daemon reports about the server or another machine is
//! shown through [`sanitize::terminal_line`].

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use mesh_client::connection::{ConnectOptions, Connection};
use mesh_daemon::federation::config::{FederationConfig, redact_url};
use mesh_daemon::federation::keys::DeviceKey;
use mesh_proto::{FederationReport, FederationStatus, HostKey, sanitize};

use super::check::{Check, Inputs, human_duration};

/// An outbox entry older than this means the server has not taken mail for a while.
pub const OUTBOX_STALE_MS: i64 = 60_000;
/// Bound on the connection and the status request.
const TIMEOUT: Duration = Duration::from_millis(1500);

/// What this machine's files say.
enum Local {
    /// No `federation.toml`.
    NotJoined,
    /// The file or the key cannot be used (the failed `federation.config` check).
    Broken(Check),
    Joined(FederationConfig, String),
}

fn local(state: &Path) -> Local {
    const NAME: &str = "federation.config";
    let file = state.join(mesh_daemon::federation::config::FILE);
    let config = match FederationConfig::load(state) {
        Ok(None) => return Local::NotJoined,
        Ok(Some(c)) => c,
        Err(e) => {
            return Local::Broken(Check::fail(
                NAME,
                format!("{}: {e}", file.display()),
                "fix the file, or join again: `mesh join <nats-url>` rewrites it (`mesh leave` removes it)",
            ));
        }
    };
    let key_path = FederationConfig::key_path(state);
    match DeviceKey::load(&key_path) {
        Ok(key) => Local::Joined(config, key.fingerprint().to_string()),
        Err(e) => Local::Broken(Check::fail(
            NAME,
            format!("device key: {e}"),
            "the step the message names (`mesh join <nats-url>` creates a missing key)",
        )),
    }
}

/// The daemon's report; `Err`: why it could not be had.
fn report(socket: &Path) -> Result<FederationReport, String> {
    let opts = ConnectOptions {
        autostart: false,
        deadline: TIMEOUT,
        handshake_timeout: TIMEOUT,
        request_timeout: Some(TIMEOUT),
    };
    let mut conn = Connection::connect(socket, &opts).map_err(|e| e.to_string())?;
    conn.call_typed(FederationStatus {})
        .map_err(|e| e.to_string())
}

/// The `federation` checks. `daemon_answered`: `daemon.reachable` passed (else only the
/// local files are checked: the daemon's own failure is reported above).
pub(super) fn checks(inputs: &Inputs, daemon_answered: bool, now_ms: i64) -> Vec<Check> {
    let state = inputs.state.root();
    let local = local(state);
    let report = daemon_answered.then(|| report(&inputs.state.socket()));
    from_parts(local, report, now_ms)
}

fn from_parts(
    local: Local,
    report: Option<Result<FederationReport, String>>,
    now_ms: i64,
) -> Vec<Check> {
    let mut out = Vec::new();
    let sign_in = match &local {
        Local::Joined(config, _) => Some(sign_in(config)),
        _ => None,
    };
    let fingerprint = match local {
        Local::NotJoined => {
            return vec![match report {
                Some(Ok(r)) if r.configured => Check::warn(
                    "federation",
                    "not joined (no federation.toml), but the daemon still takes part in the \
                     mesh it was started with",
                    "mesh restart",
                ),
                _ => Check::ok("federation", "not joined (local only)"),
            }];
        }
        Local::Broken(check) => {
            out.push(check);
            None
        }
        Local::Joined(config, fingerprint) => {
            out.push(Check::ok(
                "federation.config",
                format!(
                    "host {}, team {}, server {}; device key 0600",
                    sanitize::terminal_line(&config.host),
                    sanitize::terminal_line(&config.team),
                    sanitize::terminal_line(&config.redacted_url())
                ),
            ));
            Some(fingerprint)
        }
    };
    let r = match report {
        // The daemon is down: `daemon.reachable` says so and how to fix it.
        None => return out,
        Some(Err(e)) => {
            out.push(Check::fail(
                "federation.server",
                format!(
                    "the daemon did not report on the mesh: {}",
                    sanitize::terminal_line(&e)
                ),
                "mesh restart",
            ));
            return out;
        }
        Some(Ok(r)) => r,
    };
    if !r.configured {
        out.push(Check::warn(
            "federation.server",
            "the daemon runs without the mesh (it started before `mesh join`, or it cannot \
             take part)",
            "mesh restart",
        ));
        return out;
    }
    if let Some(e) = &r.config_error {
        // One `federation.config` line: the daemon's failure replaces the files' success.
        out.retain(|c| c.name != "federation.config");
        out.push(Check::fail(
            "federation.config",
            format!(
                "the daemon cannot use the configuration: {}",
                sanitize::terminal_line(e)
            ),
            "fix what it names, then `mesh restart` (`mesh join <nats-url>` rewrites the file)",
        ));
        return out;
    }
    out.push(server(&r, sign_in.as_deref()));
    if r.connected {
        out.push(jetstream(&r));
        out.push(features(&r));
        out.push(streams(&r));
    }
    out.push(keys(&r, fingerprint.as_deref()));
    out.push(outbox(&r, now_ms));
    out
}

/// How this machine signs in to the NATS server, as `federation.toml` says: for the fix of a
/// refusal.
fn sign_in(config: &FederationConfig) -> String {
    if let Some(p) = &config.creds {
        format!(
            "the user of the credentials file {}",
            sanitize::terminal_line(&p.display().to_string())
        )
    } else if let Some(p) = &config.nkey {
        format!(
            "the nkey of {}",
            sanitize::terminal_line(&p.display().to_string())
        )
    } else if config.url.split(',').any(|u| {
        let rest = u.split_once("://").map_or(u, |(_, r)| r);
        rest.split('/').next().unwrap_or("").contains('@')
    }) {
        "the user and password in the URL".to_owned()
    } else {
        "this machine, which gives no credentials".to_owned()
    }
}

/// What to do when the daemon cannot connect, by what it said (`transport::TransportError`'s
/// messages): a refusal of the credentials, a credentials file it cannot use, or anything else.
fn not_connected_fix(last_error: &str, sign_in: Option<&str>) -> String {
    const JOIN: &str = "`mesh join <nats-url> --creds FILE` (or `--nkey FILE`) sets others";
    if last_error.contains("refused the credentials") {
        let who = sign_in.unwrap_or("this machine's credentials");
        // A .creds file is read again at every reconnect (transport.rs): replacing it is enough.
        let renew = if who.starts_with("the user of the credentials file") {
            " and put them in that file (the daemon reads it again at each reconnect)"
        } else {
            ""
        };
        format!(
            "the NATS server refused {who}: it may belong to an account the server does not \
             know (another operator's), or be revoked or expired; get valid credentials from \
             whoever runs the server{renew}; {JOIN}"
        )
    } else if last_error.contains("cannot read NATS credentials file")
        || last_error.contains("cannot read nkey seed file")
    {
        format!("make the file it names readable and valid (as `nsc` writes it); {JOIN}")
    } else {
        "check that the NATS server runs and this machine reaches it (and its credentials); \
         `mesh join <nats-url>` changes the address"
            .to_owned()
    }
}

fn server(r: &FederationReport, sign_in: Option<&str>) -> Check {
    const NAME: &str = "federation.server";
    let url = sanitize::terminal_line(&redact_url(&r.url));
    if r.connected {
        let version = r.server_version.as_deref().unwrap_or("of unknown version");
        return Check::ok(
            NAME,
            format!(
                "connected to {url} (nats-server {})",
                sanitize::terminal_line(version)
            ),
        );
    }
    let why = r
        .last_error
        .as_deref()
        .map_or_else(String::new, |e| format!(": {}", sanitize::terminal_line(e)));
    Check::fail(
        NAME,
        format!("not connected to {url}{why}; mail to other machines waits in the outbox"),
        not_connected_fix(r.last_error.as_deref().unwrap_or(""), sign_in),
    )
}

fn jetstream(r: &FederationReport) -> Check {
    const NAME: &str = "federation.jetstream";
    if r.jetstream {
        Check::ok(NAME, "JetStream is on for this account")
    } else {
        Check::fail(
            NAME,
            "the server does not offer JetStream to this account: mail cannot be stored",
            "run nats-server with JetStream (`-js`, or `jetstream {}` in its configuration) and \
             enable it for this account",
        )
    }
}

fn features(r: &FederationReport) -> Check {
    let version = r
        .server_version
        .as_deref()
        .map_or_else(|| "unknown".to_owned(), sanitize::terminal_line);
    let features = if r.features.is_empty() {
        "none of the 2.11+ features (the mesh works without them)".to_owned()
    } else {
        r.features
            .iter()
            .map(|f| sanitize::terminal_line(f))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Check::ok(
        "federation.features",
        format!("server {version}: {features}"),
    )
}

fn streams(r: &FederationReport) -> Check {
    const NAME: &str = "federation.streams";
    let missing: Vec<String> = r
        .streams
        .iter()
        .filter(|s| !s.present)
        .map(|s| sanitize::terminal_line(&s.name))
        .collect();
    if !missing.is_empty() {
        return Check::fail(
            NAME,
            format!("missing: {}", missing.join(", ")),
            "mesh restart (the daemon creates them; its account needs the JetStream API)",
        );
    }
    if r.streams.is_empty() {
        return Check::warn(
            NAME,
            "the daemon has not checked the streams yet",
            "`mesh health` again in a few seconds",
        );
    }
    let list: Vec<String> = r
        .streams
        .iter()
        .map(|s| {
            format!(
                "{} ({} messages)",
                sanitize::terminal_line(&s.name),
                s.messages
            )
        })
        .collect();
    Check::ok(NAME, list.join(", "))
}

/// A host as a human reads it: `ci (3f2a:9c01:…)`.
fn short(fingerprint: &str) -> String {
    let f = sanitize::terminal_line(fingerprint);
    match f.char_indices().nth(9) {
        Some((i, _)) => format!("{}…", &f[..i]),
        None => f,
    }
}

fn keys(r: &FederationReport, local_fingerprint: Option<&str>) -> Check {
    const NAME: &str = "federation.keys";
    let mut detail = format!("this device {}", sanitize::terminal_line(&r.fingerprint));
    if let Some(local) = local_fingerprint
        && !r.fingerprint.is_empty()
        && local != r.fingerprint
    {
        return Check::fail(
            NAME,
            format!(
                "the daemon uses key {} but device.key holds {}: the key file changed under it",
                sanitize::terminal_line(&r.fingerprint),
                sanitize::terminal_line(local)
            ),
            "mesh restart",
        );
    }
    let changed: Vec<&HostKey> = r
        .hosts
        .iter()
        .filter(|h| h.offered_fingerprint.is_some())
        .collect();
    if r.hosts.is_empty() {
        detail.push_str("; no other host known yet");
    } else {
        let known: Vec<String> = r
            .hosts
            .iter()
            .map(|h| {
                format!(
                    "{} ({})",
                    sanitize::terminal_line(&h.host),
                    short(&h.fingerprint)
                )
            })
            .collect();
        let _ = write!(detail, "; {} known: {}", r.hosts.len(), known.join(", "));
    }
    if changed.is_empty() {
        return Check::ok(NAME, detail);
    }
    let mut what = String::new();
    let mut fixes = Vec::new();
    for h in &changed {
        let host = sanitize::terminal_line(&h.host);
        let offered = sanitize::terminal_line(h.offered_fingerprint.as_deref().unwrap_or(""));
        let _ = write!(
            what,
            "{}host {host} offers a new key {offered} instead of the trusted {}",
            if what.is_empty() { "" } else { "; " },
            sanitize::terminal_line(&h.fingerprint)
        );
        fixes.push(format!("mesh keys trust {host} {offered}"));
    }
    Check::fail(
        NAME,
        format!(
            "{what}: mail sealed with the offered key is refused and nothing is sealed for it \
             until you accept it (mail with the trusted key still flows)"
        ),
        format!(
            "compare the fingerprint with `mesh keys` on that machine, then {}",
            fixes.join("; ")
        ),
    )
}

fn outbox(r: &FederationReport, now_ms: i64) -> Check {
    const NAME: &str = "federation.outbox";
    let Some(oldest) = r.outbox_oldest_ms.filter(|_| r.outbox_depth > 0) else {
        return Check::ok(NAME, "empty: every message was handed to the server");
    };
    let age = now_ms.saturating_sub(oldest).max(0);
    let detail = format!(
        "{} waiting, the oldest for {}",
        r.outbox_depth,
        human_duration(age.unsigned_abs())
    );
    if age > OUTBOX_STALE_MS {
        Check::warn(
            NAME,
            format!("{detail}: the NATS server is not taking mail (unreachable?)"),
            "see federation.server; the outbox drains by itself once the server is back",
        )
    } else {
        Check::ok(NAME, detail)
    }
}

#[cfg(test)]
mod tests {
    use mesh_proto::StreamState;

    use super::super::check::Level;
    use super::*;

    fn joined() -> FederationReport {
        FederationReport {
            configured: true,
            url: "nats://127.0.0.1:4222".into(),
            host: "laptop".into(),
            team: "default".into(),
            device_id: "00".repeat(16),
            fingerprint: "aaaa:bbbb".into(),
            connected: true,
            server_version: Some("2.9.10".into()),
            jetstream: true,
            streams: vec![StreamState {
                name: "MESH_X_MAIL".into(),
                present: true,
                messages: 3,
            }],
            ..FederationReport::default()
        }
    }

    fn host(name: &str, offered: Option<&str>) -> HostKey {
        HostKey {
            host: name.into(),
            device_id: "11".repeat(16),
            fingerprint: "1111:2222:3333".into(),
            offered_fingerprint: offered.map(str::to_owned),
            first_seen_ms: 0,
            last_seen_ms: None,
            live_sessions: 0,
        }
    }

    fn names(checks: &[Check]) -> Vec<&str> {
        checks.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn outside_a_mesh_one_line() {
        let c = from_parts(Local::NotJoined, Some(Ok(FederationReport::default())), 0);
        assert_eq!(names(&c), ["federation"]);
        assert_eq!(c[0].level, Level::Ok);
        assert_eq!(c[0].detail, "not joined (local only)");
        let c = from_parts(Local::NotJoined, Some(Ok(joined())), 0);
        assert_eq!(c[0].level, Level::Warn, "{c:?}");
    }

    #[test]
    fn joined_and_connected_every_check() {
        let c = from_parts(
            Local::Broken(Check::fail("federation.config", "x", "y")),
            Some(Ok(joined())),
            0,
        );
        assert_eq!(
            names(&c),
            [
                "federation.config",
                "federation.server",
                "federation.jetstream",
                "federation.features",
                "federation.streams",
                "federation.keys",
                "federation.outbox"
            ]
        );
        assert!(c[1..].iter().all(|c| c.level == Level::Ok), "{c:#?}");
        assert!(c[3].detail.contains("2.9.10"), "{c:#?}");
    }

    #[test]
    fn not_connected_skips_what_needs_the_server() {
        let mut r = joined();
        r.connected = false;
        r.last_error = Some("connection refused\x1b[2J".into());
        let c = from_parts(Local::NotJoined, None, 0);
        assert_eq!(names(&c), ["federation"]);
        let c = from_parts(
            Local::Broken(Check::fail("federation.config", "x", "y")),
            Some(Ok(r)),
            0,
        );
        assert_eq!(
            names(&c),
            [
                "federation.config",
                "federation.server",
                "federation.keys",
                "federation.outbox"
            ]
        );
        assert_eq!(c[1].level, Level::Fail);
        assert!(c[1].detail.contains("connection refused"), "{c:#?}");
        assert!(!c[1].detail.contains('\x1b'), "sanitized: {c:#?}");
    }

    #[test]
    fn a_changed_key_fails_naming_host_both_fingerprints_and_the_fix() {
        let mut r = joined();
        r.hosts = vec![host("ci", None), host("dev", Some("9999:8888:7777"))];
        let c = keys(&r, Some("aaaa:bbbb"));
        assert_eq!(c.level, Level::Fail, "{c:?}");
        assert!(c.detail.contains("dev"), "{c:?}");
        assert!(c.detail.contains("9999:8888:7777"), "{c:?}");
        assert!(c.detail.contains("1111:2222:3333"), "{c:?}");
        assert!(
            c.fix
                .as_deref()
                .unwrap()
                .contains("mesh keys trust dev 9999:8888:7777"),
            "{c:?}"
        );
        r.hosts.pop();
        let c = keys(&r, Some("aaaa:bbbb"));
        assert_eq!(c.level, Level::Ok, "{c:?}");
        assert!(c.detail.contains("1 known: ci (1111:2222…)"), "{c:?}");
        // The daemon's key is not the file's.
        assert_eq!(keys(&r, Some("cccc")).level, Level::Fail);
    }

    #[test]
    fn the_daemons_config_error_is_the_one_config_line() {
        let mut r = joined();
        r.config_error = Some("bad url".into());
        let local = Local::Joined(
            FederationConfig::new("nats://127.0.0.1:4222", "laptop"),
            "aaaa:bbbb".into(),
        );
        let c = from_parts(local, Some(Ok(r)), 0);
        assert_eq!(names(&c), ["federation.config"], "{c:#?}");
        assert_eq!(c[0].level, Level::Fail);
        assert!(c[0].detail.contains("bad url"), "{c:#?}");
    }

    #[test]
    fn a_refusal_of_the_credentials_says_whose_and_what_to_do() {
        let mut config = FederationConfig::new("nats://127.0.0.1:4222", "laptop");
        config.creds = Some("/home/u/laptop.creds".into());
        let mut r = joined();
        r.connected = false;
        r.last_error = Some(
            "cannot connect to the NATS server: NATS server at nats://127.0.0.1:4222 refused \
             the credentials: authorization violation"
                .into(),
        );
        let c = from_parts(
            Local::Joined(config.clone(), "aaaa:bbbb".into()),
            Some(Ok(r.clone())),
            0,
        );
        let fix = c[1].fix.as_deref().unwrap();
        assert_eq!(c[1].level, Level::Fail, "{c:#?}");
        assert!(
            fix.contains("refused the user of the credentials file /home/u/laptop.creds")
                && fix.contains("revoked or expired")
                && fix.contains("put them in that file")
                && fix.contains("--creds FILE"),
            "{fix}"
        );
        // A credentials file the daemon cannot use.
        r.last_error = Some(
            "cannot connect to the NATS server: cannot read NATS credentials file \
             /home/u/laptop.creds: bad"
                .into(),
        );
        let c = from_parts(
            Local::Joined(config.clone(), "aaaa:bbbb".into()),
            Some(Ok(r.clone())),
            0,
        );
        assert!(
            c[1].fix.as_deref().unwrap().contains("readable and valid"),
            "{c:#?}"
        );
        // Others: the nkey, a password in the URL, nothing.
        config.creds = None;
        config.nkey = Some("/k/seed.nk".into());
        assert_eq!(sign_in(&config), "the nkey of /k/seed.nk");
        config.nkey = None;
        config.url = "nats://127.0.0.1:1,nats://u:p@127.0.0.1:2".into();
        assert_eq!(sign_in(&config), "the user and password in the URL");
        config.url = "nats://127.0.0.1:1/x@y".into();
        assert_eq!(sign_in(&config), "this machine, which gives no credentials");
        // Unreachable: the old advice.
        r.last_error = Some("NATS server unreachable at nats://127.0.0.1:9: refused".into());
        let c = from_parts(Local::Joined(config, "aaaa:bbbb".into()), Some(Ok(r)), 0);
        assert!(
            c[1].fix
                .as_deref()
                .unwrap()
                .contains("runs and this machine reaches it"),
            "{c:#?}"
        );
    }

    #[test]
    fn an_old_outbox_warns() {
        let mut r = joined();
        assert_eq!(outbox(&r, 0).level, Level::Ok);
        r.outbox_depth = 4;
        r.outbox_oldest_ms = Some(1_000);
        let c = outbox(&r, 31_000);
        assert_eq!(
            (c.level, c.detail.as_str()),
            (Level::Ok, "4 waiting, the oldest for 30s")
        );
        let c = outbox(&r, 1_000 + OUTBOX_STALE_MS + 1_000);
        assert_eq!(c.level, Level::Warn, "{c:?}");
        assert!(c.detail.contains("unreachable"), "{c:?}");
    }
}
