//! Human-readable formatting shared by the CLI, the hooks and the status line: relative ages,
//! `~`-shortened paths, short ids, session states, local timestamps and aligned tables.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use mesh_proto::SessionInfo;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How long ago `then_ms` was, e.g. `just now`, `42s ago`, `3m ago`, `5h ago`, `2d ago`.
/// A time in the future (clock skew) is `just now`.
pub fn relative_time(now_ms: i64, then_ms: i64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        s if s < 1 => "just now".to_owned(),
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// `path` with a leading `home` replaced by `~` (whole path components only).
pub fn shorten_home(path: &str, home: Option<&Path>) -> String {
    let Some(home) = home.filter(|h| !h.as_os_str().is_empty() && h != &Path::new("/")) else {
        return path.to_owned();
    };
    match Path::new(path).strip_prefix(home) {
        Ok(rest) if rest.as_os_str().is_empty() => "~".to_owned(),
        Ok(rest) => format!("~/{}", rest.display()),
        Err(_) => path.to_owned(),
    }
}

/// `$HOME`, for [`shorten_home`].
pub fn home_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(Into::into)
}

/// The first 8 characters of a session id.
pub fn short_id(session_id: &str) -> &str {
    match session_id.char_indices().nth(8) {
        Some((i, _)) => &session_id[..i],
        None => session_id,
    }
}

/// `offline`, `idle` or `busy`.
pub fn session_state(s: &SessionInfo) -> &'static str {
    if !s.live {
        "offline"
    } else if s.idle {
        "idle"
    } else {
        "busy"
    }
}

/// A local timestamp such as `2025-11-23 19:06:12 +0100` (UTC if the local time is unknown).
pub fn local_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    // time_t is 64-bit on every platform this runs on.
    let t = secs as libc::time_t;
    // SAFETY: `tm` is plain data; localtime_r only writes into it and is thread-safe.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return format!("{ms} ms");
    }
    let off = tm.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off.abs() / 60,
        off.abs() % 60
    )
}

/// Left-aligned columns separated by two spaces; the last column is not padded. Every cell is
/// shown on one line with its control and hidden characters visible
/// ([`mesh_proto::sanitize::terminal_line`]): a name, a path or a summary cannot break a row.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| mesh_proto::sanitize::terminal_line(cell))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                line.extend(std::iter::repeat_n(
                    ' ',
                    w.saturating_sub(cell.chars().count()),
                ));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let now = 1_000_000_000;
        assert_eq!(relative_time(now, now), "just now");
        assert_eq!(relative_time(now, now + 5_000), "just now");
        assert_eq!(relative_time(now, now - 999), "just now");
        assert_eq!(relative_time(now, now - 42_000), "42s ago");
        assert_eq!(relative_time(now, now - 3 * 60_000 - 59_000), "3m ago");
        assert_eq!(relative_time(now, now - 5 * 3_600_000), "5h ago");
        assert_eq!(relative_time(now, now - 2 * 86_400_000), "2d ago");
        assert_eq!(
            relative_time(now, i64::MIN),
            format!("{}d ago", i64::MAX / 1000 / 86_400)
        );
    }

    #[test]
    fn home_is_shortened_on_component_boundaries() {
        let home = Some(Path::new("/home/al"));
        assert_eq!(shorten_home("/home/al", home), "~");
        assert_eq!(shorten_home("/home/al/src/x", home), "~/src/x");
        assert_eq!(shorten_home("/home/alice/src", home), "/home/alice/src");
        assert_eq!(shorten_home("/tmp", home), "/tmp");
        assert_eq!(shorten_home("/tmp", None), "/tmp");
        assert_eq!(shorten_home("/tmp", Some(Path::new("/"))), "/tmp");
    }

    #[test]
    fn short_ids_respect_char_boundaries() {
        assert_eq!(short_id("0123456789abcdef"), "01234567");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id("ééééééééé"), "éééééééé");
    }

    #[test]
    fn tables_align() {
        let t = render_table(
            &["NAME", "PID", "CWD"],
            &[
                vec!["backend".into(), "1".into(), "~/b".into()],
                vec!["ui".into(), "12345".into(), "~/ui".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME     PID    CWD\nbackend  1      ~/b\nui       12345  ~/ui\n"
        );
        let t = render_table(
            &["NAME", "CWD"],
            &[vec!["a\nb".into(), "\u{1b}]0;x\u{7}".into()]],
        );
        assert_eq!(t, "NAME  CWD\na␤b   ␛]0;x␇\n");
    }

    #[test]
    fn timestamps_have_the_expected_shape() {
        let s = local_timestamp(1_700_000_000_000);
        assert_eq!(s.len(), "2023-11-14 22:13:20 +0000".len(), "{s}");
        assert!(s.starts_with("2023-11-1"), "{s}");
    }
}
