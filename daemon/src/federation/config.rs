//! `federation.toml` in the state directory: where the NATS server is and who this machine
//! is on it. Without the file the daemon connects nowhere.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::envelope::valid_host;
use super::keys::{OpenRegularError, hex, open_regular};

/// The configuration file, in the state directory.
pub const FILE: &str = "federation.toml";
/// This device's secret key, in the state directory.
pub const KEY_FILE: &str = "device.key";
/// Largest `federation.toml` read, in bytes.
pub const MAX_FILE: u64 = 64 * 1024;
/// Largest `url` value, in bytes.
pub const MAX_URL: usize = 4096;
/// The team when none is given.
pub const DEFAULT_TEAM: &str = "default";

fn default_team() -> String {
    DEFAULT_TEAM.to_owned()
}

/// The contents of `federation.toml`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// One NATS server URL (`nats://`, `tls://`, `ws://`, `wss://`), or several joined by ','.
    pub url: String,
    /// This machine's name in the mesh (`name@host`).
    pub host: String,
    #[serde(default = "default_team")]
    pub team: String,
    /// A NATS `.creds` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creds: Option<PathBuf>,
    /// An nkey seed file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<PathBuf>,
    /// A CA certificate for TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Stream replicas; `None` = detect from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
}

/// Why `federation.toml` could not be read, written or removed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{} is a symbolic link: it must be a regular file; run `mesh join` again", path.display())]
    Symlink { path: PathBuf },
    #[error("{} is not a regular file: remove it and run `mesh join` again", path.display())]
    NotRegular { path: PathBuf },
    #[error("{} is over {MAX_FILE} bytes: it is not a claude-mesh federation file", path.display())]
    TooLarge { path: PathBuf },
    #[error("{} is not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        reason: InvalidConfig,
    },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// A value of `federation.toml` that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidConfig {
    #[error(
        "url {0:?} is not a NATS server URL: use nats://HOST:PORT (or tls://, ws://, wss://; several joined by ',')"
    )]
    Url(String),
    #[error(
        "host {0:?} is not a valid host name: 1-64 characters of letters, digits, '.', '_' and '-', not starting with '.' or '-'"
    )]
    Host(String),
    #[error(
        "team {0:?} is not a valid team name: 1-64 characters of letters, digits, '.', '_' and '-', not starting with '.' or '-'"
    )]
    Team(String),
    #[error("replicas must be between 1 and 5")]
    Replicas,
}

impl ConfigError {
    fn io(path: &Path, source: io::Error) -> ConfigError {
        ConfigError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Whether `url` is one NATS server URL or several joined by ','.
pub fn valid_url(url: &str) -> bool {
    url.len() <= MAX_URL
        && url.split(',').all(|one| {
            let one = one.trim_matches(' ');
            let rest = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .find_map(|scheme| {
                    one.get(..scheme.len())
                        .filter(|s| s.eq_ignore_ascii_case(scheme))
                        .map(|_| &one[scheme.len()..])
                });
            rest.is_some_and(|rest| {
                !rest.is_empty()
                    && !rest.starts_with('/')
                    && rest.chars().all(|c| !c.is_whitespace() && !c.is_control())
            })
        })
}

impl FederationConfig {
    /// A configuration with the default team and no credentials.
    pub fn new(url: impl Into<String>, host: impl Into<String>) -> FederationConfig {
        FederationConfig {
            url: url.into(),
            host: host.into(),
            team: default_team(),
            creds: None,
            nkey: None,
            tls_ca: None,
            replicas: None,
        }
    }

    /// `federation.toml` in `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// `device.key` in `state_dir`.
    pub fn key_path(state_dir: &Path) -> PathBuf {
        state_dir.join(KEY_FILE)
    }

    /// Checks url, host, team and replicas.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if !valid_url(&self.url) {
            return Err(InvalidConfig::Url(self.url.clone()));
        }
        if !valid_host(&self.host) {
            return Err(InvalidConfig::Host(self.host.clone()));
        }
        if !valid_host(&self.team) {
            return Err(InvalidConfig::Team(self.team.clone()));
        }
        if self.replicas.is_some_and(|r| !(1..=5).contains(&r)) {
            return Err(InvalidConfig::Replicas);
        }
        Ok(())
    }

    /// Reads `federation.toml` from `state_dir`: `None` if there is none. The file must be a
    /// regular file (never followed through a link, never waited on) of at most [`MAX_FILE`]
    /// bytes, and its values valid.
    pub fn load(state_dir: &Path) -> Result<Option<FederationConfig>, ConfigError> {
        let path = Self::path(state_dir);
        let file = match open_regular(&path) {
            Ok(file) => file,
            Err(OpenRegularError::Missing) => return Ok(None),
            Err(OpenRegularError::Symlink) => return Err(ConfigError::Symlink { path }),
            Err(OpenRegularError::NotRegular) => return Err(ConfigError::NotRegular { path }),
            Err(OpenRegularError::Io(e)) => return Err(ConfigError::io(&path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ConfigError::io(&path, e))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(ConfigError::TooLarge { path });
        }
        let text =
            String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 { path: path.clone() })?;
        let config: FederationConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.message().to_owned(),
        })?;
        config
            .validate()
            .map_err(|reason| ConfigError::Invalid { path, reason })?;
        Ok(Some(config))
    }

    /// Writes `federation.toml` in `state_dir` atomically (a 0600 temporary file, fsync'd,
    /// renamed over it, the directory fsync'd). Refuses invalid values.
    pub fn save(&self, state_dir: &Path) -> Result<(), ConfigError> {
        let path = Self::path(state_dir);
        self.validate().map_err(|reason| ConfigError::Invalid {
            path: path.clone(),
            reason,
        })?;
        let text = toml::to_string(self).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let tmp = state_dir.join(format!(".{FILE}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(ConfigError::io(&path, e));
        }
        File::open(state_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ConfigError::io(state_dir, e))
    }

    /// Removes `federation.toml` from `state_dir`: whether there was one.
    pub fn remove(state_dir: &Path) -> Result<bool, ConfigError> {
        let path = Self::path(state_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ConfigError::io(&path, e)),
        }
    }

    /// `url` fit to show (`mesh health`, logs): any `user:password@` of each URL replaced by
    /// `***@`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The team's opaque id on the wire: the first 8 bytes of
    /// SHA-256("claude-mesh team\0" ‖ team), as 16 lowercase hex digits.
    pub fn team_id(&self) -> String {
        team_id(&self.team)
    }
}

/// See [`FederationConfig::redacted_url`].
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match one.find("://") {
            Some(scheme_end) => {
                let (scheme, rest) = one.split_at(scheme_end + 3);
                let authority_end = rest.find('/').unwrap_or(rest.len());
                match rest[..authority_end].rfind('@') {
                    Some(at) => format!("{scheme}***{}", &rest[at..]),
                    None => one.to_owned(),
                }
            }
            None => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// See [`FederationConfig::team_id`].
pub fn team_id(team: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"claude-mesh team\0");
    hash.update(team.as_bytes());
    hex(&hash.finalize()[..8])
}

/// This machine's host name up to the first '.', made a valid host name (see
/// [`valid_host`]); "localhost" if nothing is left.
pub fn short_hostname() -> String {
    let uname = rustix::system::uname();
    host_from(&String::from_utf8_lossy(uname.nodename().to_bytes()))
}

/// `name` up to the first '.', every character outside `[A-Za-z0-9_-]` replaced by '-',
/// leading '-' dropped, at most 64 characters; "localhost" if nothing is left.
pub fn host_from(name: &str) -> String {
    let first = name.split('.').next().unwrap_or_default();
    let cleaned: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed: String = cleaned.trim_start_matches('-').chars().take(64).collect();
    if valid_host(&trimmed) {
        trimmed
    } else {
        "localhost".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn full() -> FederationConfig {
        FederationConfig {
            url: "nats://127.0.0.1:4222,tls://nats.example.com:4443".to_owned(),
            host: "laptop".to_owned(),
            team: "acme".to_owned(),
            creds: Some(PathBuf::from("/home/u/.nats/u.creds")),
            nkey: Some(PathBuf::from("/home/u/.nats/u.nk")),
            tls_ca: Some(PathBuf::from("/etc/ssl/ca.pem")),
            replicas: Some(3),
        }
    }

    #[test]
    fn save_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(FederationConfig::load(dir.path()).unwrap(), None);
        for config in [
            full(),
            FederationConfig::new("nats://127.0.0.1:4222", "ci-box"),
        ] {
            config.save(dir.path()).unwrap();
            let path = dir.path().join(FILE);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o600);
            assert_eq!(FederationConfig::load(dir.path()).unwrap(), Some(config));
        }
        // Only the file itself is left: no temporary files.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE]);
        // Optional fields left out are not written.
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(
            !text.contains("creds") && !text.contains("replicas"),
            "{text}"
        );
        assert!(FederationConfig::remove(dir.path()).unwrap());
        assert!(!FederationConfig::remove(dir.path()).unwrap());
        assert_eq!(FederationConfig::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_minimal_file_gets_the_default_team() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "url = \"nats://h:4222\"\nhost = \"box\"\n",
        )
        .unwrap();
        let config = FederationConfig::load(dir.path()).unwrap().unwrap();
        assert_eq!(config, FederationConfig::new("nats://h:4222", "box"));
        assert_eq!(config.team, "default");
    }

    #[test]
    fn unknown_fields_and_bad_toml_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(
            &path,
            "url = \"nats://h:4222\"\nhost = \"box\"\npassword = \"x\"\n",
        )
        .unwrap();
        let err = FederationConfig::load(dir.path()).unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        assert!(
            shown.contains("unknown field") && shown.contains("password"),
            "{shown}"
        );
        assert!(shown.contains(&path.display().to_string()), "{shown}");

        std::fs::write(&path, "host = \"box\"\n").unwrap();
        let shown = FederationConfig::load(dir.path()).unwrap_err().to_string();
        assert!(shown.contains("url"), "{shown}");

        std::fs::write(&path, "url = [\n").unwrap();
        assert!(matches!(
            FederationConfig::load(dir.path()),
            Err(ConfigError::Parse { .. })
        ));

        std::fs::write(&path, b"url = \"\xff\"\n").unwrap();
        assert!(matches!(
            FederationConfig::load(dir.path()),
            Err(ConfigError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn bad_urls_hosts_teams_and_replicas_are_refused() {
        for ok in [
            "nats://127.0.0.1:4222",
            "NATS://h",
            "tls://nats.example.com:4443",
            "ws://h:8080",
            "wss://h",
            "nats://a:1, nats://b:2,nats://c:3",
            "nats://user:pass@h:4222",
        ] {
            assert!(valid_url(ok), "{ok:?}");
        }
        for bad in [
            "",
            "127.0.0.1:4222",
            "http://h:4222",
            "nats://",
            "nats:///x",
            "nats://h:4222,",
            "nats://a b",
            "nats://a\n",
            "nats//h",
        ] {
            assert!(!valid_url(bad), "{bad:?}");
        }
        assert!(!valid_url(&format!("nats://{}", "h".repeat(MAX_URL))));

        let dir = tempfile::tempdir().unwrap();
        let h65 = "h".repeat(65);
        let cases = [
            (
                FederationConfig {
                    url: "http://x".into(),
                    ..full()
                },
                InvalidConfig::Url("http://x".into()),
            ),
            (
                FederationConfig {
                    host: "-x".into(),
                    ..full()
                },
                InvalidConfig::Host("-x".into()),
            ),
            (
                FederationConfig {
                    host: "a@b".into(),
                    ..full()
                },
                InvalidConfig::Host("a@b".into()),
            ),
            (
                FederationConfig {
                    host: h65.clone(),
                    ..full()
                },
                InvalidConfig::Host(h65),
            ),
            (
                FederationConfig {
                    team: "".into(),
                    ..full()
                },
                InvalidConfig::Team("".into()),
            ),
            (
                FederationConfig {
                    replicas: Some(0),
                    ..full()
                },
                InvalidConfig::Replicas,
            ),
        ];
        for (config, expected) in cases {
            // Refused when saving...
            match config.save(dir.path()) {
                Err(ConfigError::Invalid { reason, .. }) => assert_eq!(reason, expected),
                other => panic!("{config:?}: {other:?}"),
            }
            assert!(!dir.path().join(FILE).exists());
            // ...and when loading a file written by hand.
            std::fs::write(dir.path().join(FILE), toml::to_string(&config).unwrap()).unwrap();
            match FederationConfig::load(dir.path()) {
                Err(ConfigError::Invalid { reason, .. }) => assert_eq!(reason, expected),
                other => panic!("{config:?}: {other:?}"),
            }
            std::fs::remove_file(dir.path().join(FILE)).unwrap();
        }
    }

    #[test]
    fn oversize_fifo_symlink_and_directory_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut big = String::from("url = \"nats://h:4222\"\nhost = \"box\"\n");
        big.push_str(&"#".repeat(MAX_FILE as usize));
        std::fs::write(&path, big).unwrap();
        assert!(matches!(
            FederationConfig::load(dir.path()),
            Err(ConfigError::TooLarge { .. })
        ));
        std::fs::remove_file(&path).unwrap();

        super::super::keys::tests::mkfifo(&path);
        assert!(matches!(
            FederationConfig::load(dir.path()),
            Err(ConfigError::NotRegular { .. })
        ));
        std::fs::remove_file(&path).unwrap();

        let real = dir.path().join("real.toml");
        std::fs::write(&real, "url = \"nats://h:4222\"\nhost = \"box\"\n").unwrap();
        std::os::unix::fs::symlink(&real, &path).unwrap();
        let err = FederationConfig::load(dir.path()).unwrap_err();
        assert!(matches!(err, ConfigError::Symlink { .. }), "{err:?}");
        std::fs::remove_file(&path).unwrap();

        std::fs::create_dir(&path).unwrap();
        assert!(matches!(
            FederationConfig::load(dir.path()),
            Err(ConfigError::NotRegular { .. })
        ));
    }

    #[test]
    fn save_replaces_a_symlink_rather_than_writing_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "untouched").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(FILE)).unwrap();
        full().save(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched");
        assert_eq!(FederationConfig::load(dir.path()).unwrap(), Some(full()));
    }

    #[test]
    fn redacted_url_hides_credentials() {
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
        assert_eq!(redact_url("nats://u:secret@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("nats://tok@h"), "nats://***@h");
        assert_eq!(
            redact_url("tls://a:b@h1:1, nats://h2:2,wss://x:p@w@h3/path@x"),
            "tls://***@h1:1, nats://h2:2,wss://***@h3/path@x"
        );
        let config = FederationConfig::new("nats://me:pw@h:4222", "box");
        assert!(!config.redacted_url().contains("pw"));
    }

    #[test]
    fn team_id_is_stable() {
        assert_eq!(team_id("default"), "e55298a942cd1f78");
        assert_eq!(full().team_id(), "348521ca51d2d6c1");
        assert_eq!(
            FederationConfig::new("nats://h", "x").team_id(),
            "e55298a942cd1f78"
        );
    }

    #[test]
    fn key_path_is_device_key_in_the_state_dir() {
        assert_eq!(
            FederationConfig::key_path(Path::new("/s")),
            Path::new("/s/device.key")
        );
        assert_eq!(
            FederationConfig::path(Path::new("/s")),
            Path::new("/s/federation.toml")
        );
    }

    #[test]
    fn host_names_are_made_valid() {
        assert_eq!(host_from("laptop.example.com"), "laptop");
        assert_eq!(host_from("Dev_Box-2"), "Dev_Box-2");
        assert_eq!(host_from("my box"), "my-box");
        assert_eq!(host_from("--x"), "x");
        assert_eq!(host_from("émile"), "mile");
        assert_eq!(host_from(""), "localhost");
        assert_eq!(host_from(".hidden"), "localhost");
        assert_eq!(host_from("---"), "localhost");
        assert_eq!(host_from(&"h".repeat(100)), "h".repeat(64));
        let here = short_hostname();
        assert!(valid_host(&here), "{here:?}");
        let uname = rustix::system::uname();
        let node = String::from_utf8_lossy(uname.nodename().to_bytes()).into_owned();
        assert_eq!(here, host_from(&node));
    }
}
