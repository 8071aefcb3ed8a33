//! Writing the commands' output (stdout, and the `mesh: …` line on stderr): below every command
//! and the error path ([`super::exit`]), so that none of them imports it from the module that
//! declares them.

use std::io::{self, Write};

use anyhow::Context;
use mesh_proto::sanitize;

/// Write `text` to stdout as it is. A reader that went away (a closed pipe) is not an error.
pub(crate) fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
        _ => Ok(()),
    }
}

/// One `mesh: …` line on stderr, shown like stdout ([`sanitize::terminal`]): it can quote names.
pub fn warn(text: &str) {
    eprintln!("mesh: {}", sanitize::terminal(text));
}
