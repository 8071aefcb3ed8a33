//! The binary's own version, and the daemon's compared with it.

use std::cmp::Ordering;

use super::{Check, Inputs};

/// Compare dotted versions the semver way: numeric parts compare as numbers (`0.10.0` >
/// `0.9.1`), missing parts are 0, a pre-release (`1.0.0-rc.1`) is older than its release, and
/// build metadata (`+abc`) is ignored. Non-numeric parts count as 0.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (Vec<u64>, Option<&str>) {
        let v = v.trim().trim_start_matches('v');
        let v = v.split_once('+').map_or(v, |(core, _build)| core);
        let (core, pre) = match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (v, None),
        };
        let mut nums: Vec<u64> = core.split('.').map(|p| p.parse().unwrap_or(0)).collect();
        nums.resize(nums.len().max(3), 0);
        (nums, pre)
    }
    let (na, pa) = split(a);
    let (nb, pb) = split(b);
    let len = na.len().max(nb.len());
    let pad = |mut v: Vec<u64>| {
        v.resize(len, 0);
        v
    };
    pad(na).cmp(&pad(nb)).then_with(|| match (pa, pb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    })
}

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
            "run `mesh health` again with the installed binary",
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
    use super::super::Level;
    use super::*;

    #[test]
    fn versions_compare_like_semver() {
        use Ordering::*;
        for (a, b, want) in [
            ("0.1.0", "0.1.0", Equal),
            ("0.0.1", "0.1.0", Less),
            ("0.9.1", "0.10.0", Less),
            ("1.0", "1.0.0", Equal),
            ("1.0.0-rc.1", "1.0.0", Less),
            ("1.0.0+build.7", "1.0.0", Equal),
            ("1.2.3.4", "1.2.3", Greater),
            ("v2.0.0", "1.9.9", Greater),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

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
