//! Part 2: whole-process wall time of the `mesh` CLI, interleaved with exec of an empty Rust
//! binary (the limit).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::Plan;
use crate::procs::{Daemon, time_exec};
use crate::report::{Report, Stats, fmt_stats, progress, ratio, row, stats};

/// Returns the empty binary's exec time, the limit for part 5's `mesh list` too.
pub fn run(plan: &Plan, daemon: &Daemon, empty: &Path, report: &mut Report) -> Stats {
    progress("2. whole-process wall time: mesh send, mesh list, empty binary");
    let mut send_cmd = daemon.mesh();
    send_cmd.args(["send", "sink", "bench", "message"]);
    let mut list_cmd = daemon.mesh();
    list_cmd.arg("list");
    let mut empty_cmd = Command::new(empty);
    empty_cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for _ in 0..5 {
        time_exec(&mut empty_cmd);
        time_exec(&mut send_cmd);
        time_exec(&mut list_cmd);
    }
    let (mut e, mut s, mut l) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so that drift (page cache, frequency) hits all three alike.
    for _ in 0..plan.exec_runs {
        e.push(time_exec(&mut empty_cmd));
        s.push(time_exec(&mut send_cmd));
        l.push(time_exec(&mut list_cmd));
    }
    let (e, s, l) = (stats(e), stats(s), stats(l));
    let empty_size = fs::metadata(empty).map_or(0, |m| m.len());
    report.rows.push(row(
        "2a",
        format!("`mesh send sink …` process wall time (n={})", s.n),
        fmt_stats(&s),
        format!(
            "exec of empty Rust binary ({:.0} kB): {}",
            empty_size as f64 / 1e3,
            fmt_stats(&e)
        ),
        ratio(s.median, e.median),
    ));
    report.rows.push(row(
        "2b",
        format!("`mesh list` process wall time, 2 sessions (n={})", l.n),
        fmt_stats(&l),
        format!("same: {}", fmt_stats(&e)),
        ratio(l.median, e.median),
    ));
    e
}
