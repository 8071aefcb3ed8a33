//! NATS decentralized authentication ("operator mode") for a test: an [`Operator`] with one
//! account that has JetStream, user `.creds` files ([`Creds`]) signed by that account (with
//! optional publish/subscribe permissions, an expiry, or revoked), and the server configuration
//! that trusts the operator and preloads the account ([`Operator::server_config`], for
//! [`NatsServer::with_config`](super::NatsServer::with_config)).
//!
//! The JWTs are NATS JWT v2 as `nsc` writes them: header `{"typ":"JWT","alg":"ed25519-nkey"}`,
//! claims `jti`/`iat`/`iss`/`sub`/`name`/`nats{type, version: 2, …}`, each part base64url
//! without padding, signed with the issuer's nkey (Ed25519). Keys come from the `nkeys` crate
//! (the one async-nats uses); nothing else is needed.
//!
//! The operator also has a system account (no JetStream), named in the operator JWT and the
//! configuration (`system_account`): without one, both flavors (2.9 and 2.15) refuse to start
//! JetStream in operator mode ("system account not setup").

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nkeys::KeyPair;
use serde_json::{Value, json};

/// Seconds since the epoch, as JWTs count time.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Base64url without padding (RFC 4648 §5), as JWTs and the CONNECT `sig` are encoded.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

static JTI_SEQ: AtomicU64 = AtomicU64::new(0);

/// A JWT with `claims` (to which `jti`, `iat`, `iss` are added unless present), signed by
/// `issuer`.
fn encode(issuer: &KeyPair, mut claims: Value) -> String {
    let iat = now_secs();
    let jti = format!(
        "TK{:X}X{}X{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        std::process::id(),
        JTI_SEQ.fetch_add(1, Ordering::SeqCst)
    );
    if let Some(o) = claims.as_object_mut() {
        o.entry("jti").or_insert(json!(jti));
        o.entry("iat").or_insert(json!(iat));
        o.entry("iss").or_insert(json!(issuer.public_key()));
    }
    let header = base64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = base64url(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{body}");
    let sig = issuer
        .sign(signing_input.as_bytes())
        .unwrap_or_else(|e| panic!("nkeys sign: {e}"));
    format!("{signing_input}.{}", base64url(&sig))
}

/// A user's permissions, as the user JWT carries them (`nats.pub`/`nats.sub`): subjects
/// allowed, everything else denied. An empty list allows nothing of that kind.
#[derive(Debug, Clone, Default)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

/// How to make a user ([`Operator::user_with`]).
#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    /// `None`: everything allowed.
    pub permissions: Option<Permissions>,
    /// Expiry (`exp`, seconds since the epoch); `None`: never.
    pub expires: Option<i64>,
}

/// A fresh user nkey, as `nk -gen user` makes it: its seed (`SU…`) and its public key (`U…`),
/// for a server that lists its users by nkey (`authorization { users: [ { nkey: U… } ] }`).
pub fn user_nkey() -> (String, String) {
    let kp = KeyPair::new_user();
    (
        kp.seed().expect("a generated key pair has its seed"),
        kp.public_key(),
    )
}

/// A user's credentials: its JWT and nkey seed.
#[derive(Debug, Clone)]
pub struct Creds {
    pub name: String,
    /// The user's public nkey (`U…`).
    pub public_key: String,
    pub jwt: String,
    /// The user's nkey seed (`SU…`).
    pub seed: String,
}

impl Creds {
    /// The `.creds` file text, in the layout `nsc` writes.
    pub fn file_text(&self) -> String {
        format!(
            "-----BEGIN NATS USER JWT-----\n{}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n",
            self.jwt, self.seed
        )
    }

    /// Writes the `.creds` file at `path`, mode 0600.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        fs::write(path, self.file_text())?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
    }

    /// The CONNECT fields that authenticate as this user on a server whose INFO gave `nonce`:
    /// `jwt` and `sig` (the nonce signed with the user's seed, base64url).
    pub fn connect_fields(&self, nonce: &str) -> io::Result<Value> {
        let kp = KeyPair::from_seed(&self.seed).map_err(io::Error::other)?;
        let sig = kp.sign(nonce.as_bytes()).map_err(io::Error::other)?;
        Ok(json!({"jwt": self.jwt, "sig": base64url(&sig)}))
    }
}

/// An operator with one account that has JetStream (unlimited), which signs users.
#[derive(Debug)]
pub struct Operator {
    operator: KeyPair,
    account: KeyPair,
    system: KeyPair,
    /// The operator's and the system account's JWTs, made once: a server reloading its
    /// configuration refuses a changed operator.
    operator_jwt: String,
    system_jwt: String,
    /// Users whose JWTs the account revokes (public key, revoked if issued at or before).
    revoked: Vec<(String, i64)>,
}

impl Operator {
    /// A new operator (random keys) with its one account.
    pub fn new() -> Operator {
        let mut op = Operator {
            operator: KeyPair::new_operator(),
            account: KeyPair::new_account(),
            system: KeyPair::new_account(),
            operator_jwt: String::new(),
            system_jwt: String::new(),
            revoked: Vec::new(),
        };
        op.operator_jwt = op.make_operator_jwt();
        op.system_jwt = op.make_system_jwt();
        op
    }

    /// The operator's public nkey (`O…`).
    pub fn public_key(&self) -> String {
        self.operator.public_key()
    }

    /// The account's public nkey (`A…`).
    pub fn account_key(&self) -> String {
        self.account.public_key()
    }

    /// The operator's JWT (self-signed).
    pub fn operator_jwt(&self) -> String {
        self.operator_jwt.clone()
    }

    fn make_operator_jwt(&self) -> String {
        let op = self.operator.public_key();
        encode(
            &self.operator,
            json!({"sub": op, "name": "mesh-test-operator",
                   "nats": {"type": "operator", "version": 2,
                            "system_account": self.system.public_key()}}),
        )
    }

    /// The account's JWT, signed by the operator: JetStream on with no limits, and the
    /// revocations made so far.
    pub fn account_jwt(&self) -> String {
        let revocations: serde_json::Map<String, Value> = self
            .revoked
            .iter()
            .map(|(k, t)| (k.clone(), json!(t)))
            .collect();
        let mut nats = json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
            },
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account",
            "version": 2,
        });
        if !revocations.is_empty() {
            nats["revocations"] = Value::Object(revocations);
        }
        encode(
            &self.operator,
            json!({"sub": self.account.public_key(), "name": "mesh-test-account", "nats": nats}),
        )
    }

    /// The system account's JWT, signed by the operator (no JetStream).
    fn make_system_jwt(&self) -> String {
        encode(
            &self.operator,
            json!({"sub": self.system.public_key(), "name": "SYS", "nats": {
                "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1,
                           "exports": -1, "wildcards": true, "conn": -1, "leaf": -1},
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account", "version": 2}}),
        )
    }

    /// A user of the account with every permission and no expiry.
    pub fn user(&self, name: &str) -> Creds {
        self.user_with(name, &UserSpec::default())
    }

    /// A user of the account as `spec` says.
    pub fn user_with(&self, name: &str, spec: &UserSpec) -> Creds {
        let kp = KeyPair::new_user();
        let mut nats = json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        });
        if let Some(p) = &spec.permissions {
            nats["pub"] = json!({"allow": p.publish});
            nats["sub"] = json!({"allow": p.subscribe});
        }
        let mut claims = json!({"sub": kp.public_key(), "name": name, "nats": nats});
        if let Some(exp) = spec.expires {
            claims["exp"] = json!(exp);
        }
        Creds {
            name: name.to_owned(),
            public_key: kp.public_key(),
            jwt: encode(&self.account, claims),
            seed: kp
                .seed()
                .unwrap_or_else(|e| panic!("nkeys seed of a new user: {e}")),
        }
    }

    /// Revokes `user`'s JWT (and any issued to that key until now) in the account JWT: takes
    /// effect on a server configured after this, or reloaded with [`Operator::server_config`]
    /// ([`NatsServer::reload`](super::NatsServer::reload): the server cuts the user off).
    pub fn revoke(&mut self, user: &Creds) {
        // The JWT was issued at or before now; revoke up to the next second, so that a JWT
        // issued within this second is covered whatever the server's comparison.
        self.revoked.push((user.public_key.clone(), now_secs() + 1));
    }

    /// The server configuration for operator mode: this operator trusted, its account
    /// preloaded into a memory resolver. JetStream, address, port and store come from
    /// [`NatsServer`](super::NatsServer)'s command line.
    pub fn server_config(&self) -> String {
        format!(
            "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\n\
             resolver_preload: {{\n    {}: \"{}\"\n    {}: \"{}\"\n}}\n",
            self.operator_jwt(),
            self.system.public_key(),
            self.account.public_key(),
            self.account_jwt(),
            self.system.public_key(),
            self.system_jwt
        )
    }
}

impl Default for Operator {
    fn default() -> Self {
        Operator::new()
    }
}
