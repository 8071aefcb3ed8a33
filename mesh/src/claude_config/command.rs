//! The command strings we register (`<mesh> hook <event>`, `<mesh> statusline`) and how we
//! recognise ours later: the first shell word is a program whose file name is `mesh`, and the
//! remaining words are exactly `hook <event>` or `statusline`. This also matches a hand-made
//! registration that follows the README (`mesh hook stop`) and one left by a `mesh` binary
//! that has since moved.

use std::borrow::Cow;
use std::path::Path;

/// Quotes `s` for a POSIX shell when it needs it (single quotes, `'` written as `'\''`).
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"_-./,:@%+=".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

/// `<quoted mesh> hook <event>`.
pub fn hook_command(mesh: &str, event: &str) -> String {
    format!("{} hook {event}", shell_quote(mesh))
}

/// `<quoted mesh> statusline`.
pub fn statusline_command(mesh: &str) -> String {
    format!("{} statusline", shell_quote(mesh))
}

/// Splits off the first shell word (unquoting `'…'`, `"…"` and `\x`); None if a quote is open.
fn first_word(cmd: &str) -> Option<(String, &str)> {
    let cmd = cmd.trim_start();
    let mut word = String::new();
    let mut chars = cmd.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => return Some((word, &cmd[i..])),
            '\'' => loop {
                match chars.next()?.1 {
                    '\'' => break,
                    c => word.push(c),
                }
            },
            '"' => loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => word.push(chars.next()?.1),
                    c => word.push(c),
                }
            },
            '\\' => word.push(chars.next()?.1),
            c => word.push(c),
        }
    }
    Some((word, ""))
}

/// If `cmd` runs a `mesh` binary, its program (as written, unquoted) and remaining words.
pub fn parse_mesh_command(cmd: &str) -> Option<(String, Vec<&str>)> {
    let (program, rest) = first_word(cmd)?;
    let is_mesh = Path::new(&program).file_name().is_some_and(|n| n == "mesh");
    is_mesh.then(|| (program, rest.split_whitespace().collect()))
}

/// The program of `cmd` if it is our hook for `event`.
pub fn ours_hook(cmd: &str, event: &str) -> Option<String> {
    let (program, args) = parse_mesh_command(cmd)?;
    (args == ["hook", event]).then_some(program)
}

/// The program of `cmd` if it is our status line.
pub fn ours_statusline(cmd: &str) -> Option<String> {
    let (program, args) = parse_mesh_command(cmd)?;
    (args == ["statusline"]).then_some(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote("/usr/bin/mesh"), "/usr/bin/mesh");
        assert_eq!(shell_quote("/My Apps/mesh"), "'/My Apps/mesh'");
        assert_eq!(shell_quote("/a'b/mesh"), r"'/a'\''b/mesh'");
    }

    #[test]
    fn recognises_ours_through_quoting() {
        for mesh in ["/usr/bin/mesh", "/My Apps/mesh", "/a'b c/mesh", "mesh"] {
            let cmd = hook_command(mesh, "session-start");
            assert_eq!(
                ours_hook(&cmd, "session-start").as_deref(),
                Some(mesh),
                "{cmd}"
            );
            assert_eq!(ours_hook(&cmd, "stop"), None);
            let status = statusline_command(mesh);
            assert_eq!(ours_statusline(&status).as_deref(), Some(mesh));
        }
        assert_eq!(
            ours_hook("\"/x y/mesh\" hook stop", "stop").as_deref(),
            Some("/x y/mesh")
        );
        assert_eq!(ours_hook("/usr/bin/meshy hook stop", "stop"), None);
        assert_eq!(ours_hook("/usr/bin/mesh hook stop && rm x", "stop"), None);
        assert_eq!(ours_statusline("bash ~/.claude/statusline.sh"), None);
        assert_eq!(ours_statusline("'/unterminated/mesh statusline"), None);
    }
}
