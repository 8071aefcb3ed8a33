//! Facts about the machine and the build, for the report's header.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use crate::procs::mesh_bin;

/// The trimmed stdout of `cmd`, if it ran and succeeded.
fn command_line(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The header lines: date, commit, CPUs and kernel, the temp dir's filesystem, the binary.
pub fn machine(dir: &Path) -> Vec<String> {
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let fs_line = command_line(Command::new("df").arg("-T").arg(dir))
        .and_then(|s| {
            let line = s.lines().nth(1)?.to_owned();
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(format!("{} on {} ({})", f.get(1)?, f.first()?, f.last()?))
        })
        .unwrap_or_else(|| "?".into());
    let mount_opts = command_line(
        Command::new("findmnt")
            .args(["-n", "-o", "OPTIONS", "-T"])
            .arg(dir),
    )
    .unwrap_or_else(|| "?".into());
    let date = command_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .unwrap_or_else(|| "?".into());
    let repo = env!("CARGO_MANIFEST_DIR");
    let commit = command_line(
        Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(repo),
    )
    .map(|c| {
        let dirty = command_line(
            Command::new("git")
                .args(["status", "--porcelain"])
                .current_dir(repo),
        )
        .is_some_and(|s| !s.is_empty());
        if dirty {
            format!("{c} (working tree has uncommitted changes)")
        } else {
            c
        }
    })
    .unwrap_or_else(|| "? (not a git checkout)".into());
    let mesh = mesh_bin();
    let mesh_size = fs::metadata(mesh).map_or(0, |m| m.len());
    vec![
        format!("- date: {date}"),
        format!("- git commit: {commit}"),
        format!("- machine: {nproc} CPUs ({cpu}), Linux {kernel}"),
        format!(
            "- temp dir: `{}`, filesystem {fs_line}, mount options `{mount_opts}`",
            dir.display()
        ),
        format!(
            "- mesh binary: `{mesh}` ({:.1} MB, {})",
            mesh_size as f64 / 1e6,
            if std::env::var_os("MESH_BENCH_BIN").is_some_and(|b| !b.is_empty()) {
                "`$MESH_BENCH_BIN`"
            } else {
                "the profile `cargo bench` built"
            }
        ),
    ]
}
