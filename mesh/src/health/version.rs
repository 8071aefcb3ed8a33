//! The binary's own version, and the daemon's compared with it.

use std::cmp::Ordering;

use mesh_client::version::compare_versions;

use super::check::{Check, Inputs};

/// `binary.version`: this binary's version and where it is.
pub(super) fn binary(inputs: &Inputs) -> Check {
    match &inputs.mesh_bin {
        Some(path) => Check::ok(
            "binary.version",
            format!("mesh {} at {}", inputs.version, path.display()),
        ),
        None => Check::warn(
            "binary.version",
            format!(
                "mesh {}, but the path of this binary cannot be found (deleted or replaced while running?)",
                inputs.version
            ),
            "mesh health",
        ),
    }
}

/// `daemon.version`: the version the daemon announced against this binary's.
pub(super) fn daemon(daemon_version: &str, ours: &str, mesh_bin: Option<&str>) -> Check {
    const NAME: &str = "daemon.version";
    match compare_versions(daemon_version, ours) {
        Ordering::Equal => Check::ok(
            NAME,
            format!("the daemon runs {daemon_version}, the same version as this binary"),
        ),
        Ordering::Less => Check::fail(
            NAME,
            format!(
                "the daemon runs {daemon_version}, older than this binary ({ours}): it was started before an upgrade and lacks its fixes"
            ),
            "mesh restart",
        ),
        Ordering::Greater => Check::warn(
            NAME,
            format!(
                "the daemon runs {daemon_version}, newer than this binary ({ours}): another, newer mesh started it"
            ),
            format!(
                "upgrade this binary ({}) to {daemon_version} or later, then run `mesh install`",
                mesh_bin.unwrap_or("mesh")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::Level;
    use super::*;

    #[test]
    fn older_daemon_fails_newer_warns() {
        let older = daemon("0.0.1", "0.1.0", None);
        assert_eq!(older.level, Level::Fail);
        assert_eq!(older.fix.as_deref(), Some("mesh restart"));
        let newer = daemon("0.2.0", "0.1.0", Some("/bin/mesh"));
        assert_eq!(newer.level, Level::Warn);
        assert!(newer.fix.unwrap().contains("/bin/mesh"));
        assert_eq!(daemon("0.1.0", "0.1.0", None).level, Level::Ok);
    }
}
