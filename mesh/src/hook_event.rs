//! The Claude Code hook events mesh registers, each named once: Claude Code's name
//! (`SessionStart`, the key in `settings.json` and the `hook_event_name` of its input) and the
//! argument of `mesh hook` (`session-start`), with what install writes for it (matcher,
//! time-out) and the deadline the hook keeps.
//!
//! `mesh install` registers [`HookEvent::ALL`], `mesh health` checks the same list, and `mesh
//! hook <event>` dispatches on the enum. Adding an event is a variant in the list below (the
//! compiler then asks for its arms here) and its handler arm in the hook shim.

use std::ffi::OsStr;
use std::time::Duration;

/// Declares [`HookEvent`] and [`HookEvent::ALL`] from one list, so that no variant can be
/// missing from `ALL` (install's and health's list).
macro_rules! hook_events {
    ($($(#[$m:meta])* $variant:ident,)*) => {
        /// One hook event.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum HookEvent {
            $($(#[$m])* $variant,)*
        }

        impl HookEvent {
            /// Every event, in the order install writes them.
            pub const ALL: [Self; [$(stringify!($variant)),*].len()] = [$(Self::$variant),*];
        }
    };
}

hook_events! {
    /// Registers the session (busy), injects all pending mail.
    SessionStart,
    /// Marks the session busy, injects all pending mail.
    UserPromptSubmit,
    /// Injects urgent mail; runs after every tool call.
    PostToolUse,
    /// Hands out urgent mail as the reason to block the stop; else marks the session idle.
    Stop,
    /// Deregisters the session id.
    SessionEnd,
}

/// Deadline of a hook call, from its start to its exit.
pub const HOOK_DEADLINE: Duration = Duration::from_millis(2000);
/// Deadline of `session-end` (all SessionEnd hooks together get about 1.5 s).
pub const SESSION_END_DEADLINE: Duration = Duration::from_millis(1000);
/// Hook time-out install registers with Claude Code, in seconds: well above every deadline,
/// so the hook always ends itself first.
pub const INSTALL_TIMEOUT_S: u32 = 10;

impl HookEvent {
    /// Claude Code's name of the event (the `hooks` key, `hook_event_name`, `hookEventName`).
    pub const fn claude_name(self) -> &'static str {
        match self {
            Self::SessionStart => "SessionStart",
            Self::UserPromptSubmit => "UserPromptSubmit",
            Self::PostToolUse => "PostToolUse",
            Self::Stop => "Stop",
            Self::SessionEnd => "SessionEnd",
        }
    }

    /// The argument of `mesh hook <event>` (the documented form).
    pub const fn arg(self) -> &'static str {
        match self {
            Self::SessionStart => "session-start",
            Self::UserPromptSubmit => "user-prompt-submit",
            Self::PostToolUse => "post-tool-use",
            Self::Stop => "stop",
            Self::SessionEnd => "session-end",
        }
    }

    /// The `matcher` install writes for the event's hook group (tool events only).
    pub const fn matcher(self) -> Option<&'static str> {
        match self {
            Self::PostToolUse => Some("*"),
            Self::SessionStart | Self::UserPromptSubmit | Self::Stop | Self::SessionEnd => None,
        }
    }

    /// How long the hook may take, from its start to its exit.
    pub const fn deadline(self) -> Duration {
        match self {
            Self::SessionEnd => SESSION_END_DEADLINE,
            Self::SessionStart | Self::UserPromptSubmit | Self::PostToolUse | Self::Stop => {
                HOOK_DEADLINE
            }
        }
    }

    /// `session-start` (the documented form), or Claude Code's own `SessionStart`.
    pub fn parse(arg: &OsStr) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|e| arg == e.arg() || arg == e.claude_name())
    }

    /// The arguments of `mesh hook`, for messages: `a, b, c or d`.
    pub fn expected() -> String {
        let args = Self::ALL.map(Self::arg);
        match args.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

impl std::fmt::Display for HookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.arg())
    }
}

/// `mesh hook <event>` when clap parses it (the usual path parses before clap, with
/// [`HookEvent::parse`], so that an unknown event still exits 0).
impl clap::ValueEnum for HookEvent {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.arg()).alias(self.claude_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_in_both_spellings() {
        for (arg, ev) in [
            ("session-start", HookEvent::SessionStart),
            ("SessionStart", HookEvent::SessionStart),
            ("user-prompt-submit", HookEvent::UserPromptSubmit),
            ("UserPromptSubmit", HookEvent::UserPromptSubmit),
            ("post-tool-use", HookEvent::PostToolUse),
            ("PostToolUse", HookEvent::PostToolUse),
            ("stop", HookEvent::Stop),
            ("Stop", HookEvent::Stop),
            ("session-end", HookEvent::SessionEnd),
            ("SessionEnd", HookEvent::SessionEnd),
        ] {
            assert_eq!(HookEvent::parse(OsStr::new(arg)), Some(ev), "{arg}");
        }
        for ev in HookEvent::ALL {
            assert_eq!(HookEvent::parse(OsStr::new(ev.arg())), Some(ev));
            assert_eq!(HookEvent::parse(OsStr::new(ev.claude_name())), Some(ev));
        }
        for bad in ["pre-tool-use", "PreToolUse", "", "STOP", "session_start"] {
            assert_eq!(HookEvent::parse(OsStr::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn names_are_distinct() {
        let mut names: Vec<&str> = HookEvent::ALL
            .iter()
            .flat_map(|e| [e.arg(), e.claude_name()])
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 2 * HookEvent::ALL.len());
        assert_eq!(
            HookEvent::expected(),
            "session-start, user-prompt-submit, post-tool-use, stop or session-end"
        );
    }

    #[test]
    fn deadlines_end_before_claude_codes_time_out() {
        for ev in HookEvent::ALL {
            assert!(ev.deadline() < Duration::from_secs(INSTALL_TIMEOUT_S.into()));
        }
        assert!(HookEvent::SessionEnd.deadline() <= Duration::from_secs(1));
        assert_eq!(HookEvent::PostToolUse.matcher(), Some("*"));
        assert_eq!(HookEvent::Stop.matcher(), None);
    }

    #[test]
    fn clap_accepts_both_spellings() {
        use clap::ValueEnum;
        assert_eq!(
            HookEvent::from_str("post-tool-use", false),
            Ok(HookEvent::PostToolUse)
        );
        assert_eq!(
            HookEvent::from_str("PostToolUse", false),
            Ok(HookEvent::PostToolUse)
        );
        assert!(HookEvent::from_str("pre-tool-use", false).is_err());
    }
}
