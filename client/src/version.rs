//! Versions of this package compared the semver way: below both [`crate::error`] (an older
//! daemon is told apart from a newer one) and the app's `mesh health`.

use std::cmp::Ordering;

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

#[cfg(test)]
mod tests {
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
}
